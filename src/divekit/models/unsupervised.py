"""Unsupervised learning (D2L §1.3.2): k-means clustering and principal component analysis.

Letters: N examples, D features, K clusters or components. Both take X float (N, D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KMEANS_INITS = ("k-means++", "random")


@dataclass(frozen=True)
class KMeansResult:
    """``centers`` (K, D); ``assignments`` (N,), each example's nearest center; ``inertia``, the sum
    of squared distances to it; ``inertia_history``, the inertia after each assignment step."""

    centers: torch.Tensor
    assignments: torch.Tensor
    inertia: float
    inertia_history: list[float]


DIFFERENCES_PER_CHUNK = 2 ** 22  # (n, K, D) differences held at once: 16 MB of float32


def squared_distances(X: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """||x_n - c_k||^2 for every example and center: (N, 1, D) - (1, K, D) -> (N, K), for a few
    thousand rows at a time (all 60,000 Fashion-MNIST images against 10 centers at once would be 1.9 GB)."""
    rows = max(1, DIFFERENCES_PER_CHUNK // max(1, centers.shape[0] * X.shape[1]))
    return torch.cat([((chunk[:, None, :] - centers[None, :, :]) ** 2).sum(dim=-1) for chunk in X.split(rows)])


def _initial_centers(X: torch.Tensor, k: int, init: str, generator: torch.Generator | None) -> torch.Tensor:
    """K examples as starting centers: uniformly at random, or by k-means++ (Arthur & Vassilvitskii,
    2007), which picks each next center with probability proportional to its squared distance to
    the nearest center chosen so far, so the centers start spread out."""
    n = len(X)
    if init == "random":
        return X[torch.randperm(n, generator=generator)[:k]].clone()
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    nearest = squared_distances(X, X[chosen]).squeeze(1)  # (N,) distance to the closest chosen center
    for _ in range(1, k):
        if float(nearest.sum()) == 0:  # fewer distinct points than K: any point will do
            weights = torch.ones(n, dtype=X.dtype)
        else:
            weights = nearest
        chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
        nearest = torch.minimum(nearest, squared_distances(X, X[chosen[-1:]]).squeeze(1))
    return X[chosen].clone()


def kmeans(
    X: torch.Tensor,
    k: int,
    *,
    iters: int = 100,
    init: str = "k-means++",
    generator: torch.Generator | None = None,
) -> KMeansResult:
    """Lloyd's algorithm: assign each example to its nearest center, move each center to the mean
    of its examples, repeat until no assignment changes (or ``iters`` rounds).

    Neither step can raise the inertia sum_n ||x_n - c_{a_n}||^2: the assignment minimises it over
    a for fixed centers, the mean minimises it over c for fixed a. A center that loses all its
    examples stays where it is.
    """
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"kmeans needs X of shape (N, D) with N >= 1, got {tuple(X.shape)}")
    if not 1 <= k <= len(X):
        raise ValueError(f"kmeans needs 1 <= k <= N = {len(X)} clusters, got k={k}")
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    if init not in KMEANS_INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(KMEANS_INITS)}")
    X = X if X.is_floating_point() else X.float()
    if not bool(torch.isfinite(X).all()):
        raise ValueError("kmeans needs finite X; drop or fill the rows with NaN or inf first")
    if not bool(torch.isfinite(((X.amax(0) - X.amin(0)) ** 2).sum())):  # bounds every pair's squared distance
        raise ValueError(f"X's values are too large for squared distances in {X.dtype}; pass X.double() or scale it")
    centers = _initial_centers(X, k, init, generator)
    assignments, history = None, []
    for step in range(iters + 1):  # up to `iters` center updates, each followed by an assignment
        distances = squared_distances(X, centers)  # (N, K)
        new_assignments = distances.argmin(dim=1)  # (N,)
        history.append(float(distances.gather(1, new_assignments[:, None]).sum()))
        converged = assignments is not None and torch.equal(new_assignments, assignments)
        assignments = new_assignments
        if converged or step == iters:
            break
        one_hot = torch.nn.functional.one_hot(assignments, k).to(X.dtype)  # (N, K)
        counts = one_hot.sum(dim=0)  # (K,)
        means = one_hot.T @ X / counts.clamp(min=1)[:, None]  # (K, D)
        centers = torch.where(counts[:, None] > 0, means, centers)
    return KMeansResult(centers, assignments, history[-1], history)


@dataclass(frozen=True)
class PCAResult:
    """``components`` (K, D), orthonormal rows, by falling variance; ``explained_variance`` (K,),
    the variance of the data along each; ``mean`` (D,); ``projection`` (N, K), the centred data
    in those coordinates."""

    components: torch.Tensor
    explained_variance: torch.Tensor
    mean: torch.Tensor
    projection: torch.Tensor

    def reconstruct(self) -> torch.Tensor:
        """The data seen through K components, (N, D): projection @ components + mean."""
        return self.projection @ self.components + self.mean


def pca(X: torch.Tensor, k: int) -> PCAResult:
    """Principal component analysis by the SVD of the centred data.

    Xc = X - mean = U S V^T; the rows of V^T are the eigenvectors of the covariance
    Xc^T Xc / (N - 1) = V (S^2 / (N - 1)) V^T, sorted by eigenvalue S^2 / (N - 1); projecting on
    the first K keeps the most variance that any K directions can. Signs are fixed so that each
    component's largest-magnitude entry is positive.
    """
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"pca needs X of shape (N, D) with N >= 2, got {tuple(X.shape)}")
    if not 1 <= k <= min(X.shape):
        raise ValueError(f"pca needs 1 <= k <= min(N, D) = {min(X.shape)} components, got k={k}")
    X = X.float() if not X.is_floating_point() or X.dtype in (torch.float16, torch.bfloat16) else X  # SVD's dtypes
    mean = X.mean(dim=0)  # (D,)
    Xc = X - mean  # (N, D)
    _, S, Vh = torch.linalg.svd(Xc, full_matrices=False)  # S (min(N, D),), Vh (min(N, D), D)
    components = Vh[:k]  # (K, D)
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))  # (K, 1)
    components = components * signs
    explained_variance = S[:k] ** 2 / (len(X) - 1)
    return PCAResult(components, explained_variance, mean, Xc @ components.T)
