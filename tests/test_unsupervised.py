"""k-means and PCA against brute force and torch.linalg (D2L §1.3.2)."""

import itertools

import pytest
import torch

from divekit.models.unsupervised import kmeans, pca, squared_distances


def blobs(n_per_blob=50, spread=0.3, seed=0):
    """Four well-separated Gaussian blobs in 2-D and the blob of each point."""
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], dtype=torch.float64)
    labels = torch.arange(4).repeat_interleave(n_per_blob)
    return means[labels] + spread * torch.randn(len(labels), 2, generator=g, dtype=torch.float64), labels


def brute_force_nearest(X, centers):
    """Each example's nearest center by explicit loops (first one on ties)."""
    nearest = []
    for x in X.tolist():
        distances = [sum((a - b) ** 2 for a, b in zip(x, c)) for c in centers.tolist()]
        nearest.append(min(range(len(distances)), key=distances.__getitem__))
    return torch.tensor(nearest)


def test_squared_distances_match_cdist():
    X, C = torch.randn(9, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(squared_distances(X, C), torch.cdist(X, C) ** 2)


@pytest.mark.parametrize("init", ["k-means++", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_assignments_are_the_nearest_centers(init, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(60, 3, generator=g, dtype=torch.float64)
    result = kmeans(X, 5, iters=100, init=init, generator=g)
    assert torch.equal(result.assignments, brute_force_nearest(X, result.centers))
    # converged: each center is the mean of its examples
    for j in range(5):
        members = X[result.assignments == j]
        if len(members):
            torch.testing.assert_close(result.centers[j], members.mean(dim=0))
    inertia = sum(float(((x - result.centers[a]) ** 2).sum()) for x, a in zip(X, result.assignments))
    assert result.inertia == pytest.approx(inertia)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_kmeans_inertia_never_increases(init):
    g = torch.Generator().manual_seed(7)
    X = torch.cat([torch.randn(200, 2, generator=g) * s + m for s, m in ((1.0, 0.0), (2.0, 3.0), (0.5, -4.0))])
    result = kmeans(X.double(), 8, iters=50, init=init, generator=g)
    history = result.inertia_history
    assert len(history) >= 3, "several iterations should run on overlapping clusters"
    assert all(later <= earlier + 1e-9 for earlier, later in itertools.pairwise(history))
    assert history[-1] == result.inertia


def test_kmeans_plus_plus_recovers_well_separated_blobs():
    X, labels = blobs()
    for seed in range(5):
        result = kmeans(X, 4, generator=torch.Generator().manual_seed(seed))
        # one cluster per blob: the same partition up to renaming the clusters
        pairs = set(zip(labels.tolist(), result.assignments.tolist()))
        assert len(pairs) == 4 and len({c for _, c in pairs}) == 4
        assert result.inertia < 200 * 2 * 0.3**2 * 1.5  # about N * D * spread^2


def test_kmeans_stops_after_iters():
    X = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    result = kmeans(X, 6, iters=1, init="random", generator=torch.Generator().manual_seed(0))
    assert len(result.inertia_history) == 2  # the first assignment and the one after the single update
    assert torch.equal(result.assignments, brute_force_nearest(X, result.centers))


def test_kmeans_with_k_equal_to_n_and_duplicates():
    X = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    result = kmeans(X, 3, generator=torch.Generator().manual_seed(0))
    assert result.inertia == 0.0 and result.centers.shape == (3, 2)


@pytest.mark.parametrize(
    "X, k, kwargs, message",
    [
        (torch.randn(5), 2, {}, "shape \\(N, D\\)"),
        (torch.randn(5, 2), 6, {}, "1 <= k <= N = 5"),
        (torch.randn(5, 2), 2, {"init": "forgy"}, "unknown init 'forgy'"),
        (torch.randn(5, 2), 2, {"iters": 0}, "iters must be at least 1"),
    ],
)
def test_kmeans_rejects_bad_arguments(X, k, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kmeans(X, k, **kwargs)


def test_pca_components_match_the_covariance_eigenvectors():
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(5, 5, generator=g, dtype=torch.float64)
    X = torch.randn(300, 5, generator=g, dtype=torch.float64) @ mixing + 3.0
    result = pca(X, 3)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(X.T))  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    torch.testing.assert_close(result.explained_variance, eigenvalues[:3])
    for j in range(3):  # equal up to sign
        v, w = result.components[j], eigenvectors[:, j]
        torch.testing.assert_close(v * torch.sign(v @ w), w)
    torch.testing.assert_close(result.components @ result.components.T, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(result.projection, (X - X.mean(0)) @ result.components.T)
    torch.testing.assert_close(result.projection.var(dim=0), result.explained_variance)


def test_pca_explained_variance_is_sorted_and_all_components_reconstruct():
    X = torch.randn(40, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * torch.arange(1.0, 7.0)
    full = pca(X, 6)
    assert bool((full.explained_variance[:-1] >= full.explained_variance[1:]).all())
    torch.testing.assert_close(full.reconstruct(), X)
    torch.testing.assert_close(full.explained_variance.sum(), X.var(dim=0).sum())  # total variance kept
    # fewer components: the error is the variance left out, (N - 1) * sum of the dropped eigenvalues
    two = pca(X, 2)
    error = ((two.reconstruct() - X) ** 2).sum()
    torch.testing.assert_close(error, (len(X) - 1) * full.explained_variance[2:].sum())


def test_pca_finds_the_direction_of_a_line():
    t = torch.linspace(-5, 5, 101, dtype=torch.float64)
    direction = torch.tensor([3.0, 4.0], dtype=torch.float64) / 5
    X = t[:, None] * direction + torch.tensor([1.0, -2.0], dtype=torch.float64)
    result = pca(X, 1)
    torch.testing.assert_close(result.components[0], direction)  # sign: largest entry positive
    torch.testing.assert_close(result.projection[:, 0], t)


@pytest.mark.parametrize("X, k, message", [(torch.randn(1, 3), 1, "N >= 2"), (torch.randn(10, 3), 4, "min\\(N, D\\) = 3")])
def test_pca_rejects_bad_arguments(X, k, message):
    with pytest.raises(ValueError, match=message):
        pca(X, k)


def test_kmeans_refuses_values_it_cannot_measure_and_pca_takes_16_bit_data():
    X = torch.randn(20, 3)
    bad = X.clone()
    bad[4, 1] = float("nan")
    for init in ("k-means++", "random"):
        with pytest.raises(ValueError, match="kmeans needs finite X"):
            kmeans(bad, 2, init=init)
    with pytest.raises(ValueError, match=r"too large for squared distances in torch.float32; pass X.double\(\)"):
        kmeans(X * 1e19, 2)
    with pytest.raises(ValueError, match="too large for squared distances"):  # finite to the first row, not between
        kmeans(torch.tensor([[0.0], [1.5e19], [-1.5e19]]), 2)
    assert kmeans((X * 1e19).double(), 2, generator=torch.Generator().manual_seed(0)).inertia > 0
    for dtype in (torch.float16, torch.bfloat16):
        half, full = pca(X.to(dtype), 2), pca(X.to(dtype).float(), 2)
        torch.testing.assert_close(half.components, full.components)


def test_distances_are_computed_a_chunk_of_rows_at_a_time(monkeypatch):
    import divekit.models.unsupervised as unsupervised

    X, centers = torch.randn(50, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    whole = squared_distances(X, centers)
    monkeypatch.setattr(unsupervised, "DIFFERENCES_PER_CHUNK", 3 * 7 * 4)  # 4 rows at a time
    torch.testing.assert_close(squared_distances(X, centers), whole)
    torch.testing.assert_close(whole, torch.cdist(X, centers) ** 2)
