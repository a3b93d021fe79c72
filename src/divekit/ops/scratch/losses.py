"""Softmax and losses from tensor operations (D2L §1.2.3, §3.1.3, §3.4, §3.6).

Letters: B batch size, Q number of classes (or labels). Every loss returns one value per example
(or per element), so a caller chooses how to reduce.
"""

from __future__ import annotations

import torch

__all__ = [
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "l1_loss",
    "log_softmax",
    "mse_loss",
    "softmax",
    "squared_loss",
]


def targets_like(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    """``y`` in the shape of the predictions ``y_hat``, the book's ``y.reshape(y_hat.shape)``, where the
    two differ only in axes of size 1 ((B,) targets for (B, 1) predictions); targets laid out otherwise,
    e.g. (Q, B) for (B, Q), are refused rather than paired with the wrong predictions."""
    if y.shape != y_hat.shape and [n for n in y.shape if n != 1] != [n for n in y_hat.shape if n != 1]:
        raise ValueError(f"targets of shape {tuple(y.shape)} do not match predictions of shape {tuple(y_hat.shape)}")
    return y.reshape(y_hat.shape)


def squared_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """l = (y_hat - y)^2 / 2, elementwise (D2L §3.1.3; the 1/2 makes the gradient y_hat - y)."""
    return (y_hat - targets_like(y, y_hat)) ** 2 / 2


def mse_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """l = (y_hat - y)^2, elementwise: ``nn.MSELoss`` without its reduction, the loss of the book's
    concise sections (§3.3, §4.5.4), twice :func:`squared_loss`."""
    return (y_hat - targets_like(y, y_hat)) ** 2


def softmax(X: torch.Tensor) -> torch.Tensor:
    """softmax(X)_ij = exp(X_ij) / sum_k exp(X_ik) over the last axis (D2L §3.6.2).

    Subtracting each row's maximum first leaves the result unchanged and keeps exp from
    overflowing for large logits.
    """
    X_exp = torch.exp(X - X.amax(dim=-1, keepdim=True))
    return X_exp / X_exp.sum(dim=-1, keepdim=True)


def log_softmax(X: torch.Tensor) -> torch.Tensor:
    """log softmax(X) = X - logsumexp(X), with logsumexp(X) = m + log sum exp(X - m), m = max X.
    16-bit floats are taken in float32, as autocast runs torch's cross-entropy."""
    if X.dtype in (torch.float16, torch.bfloat16):
        X = X.float()
    m = X.amax(dim=-1, keepdim=True)
    return X - (m + torch.log(torch.exp(X - m).sum(dim=-1, keepdim=True)))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """l = -log softmax(o)_y for logits o (B, Q) and class indices y (B,), per example (D2L §3.4.6).

    Taking the log of the softmax in one step (rather than log of a probability that may have
    underflowed to 0) keeps the loss finite even for logits of +-1000.
    """
    return -log_softmax(logits).gather(-1, y.long().unsqueeze(-1)).squeeze(-1)


def l1_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """l = |y_hat - y|, elementwise (D2L §1.2.3): its gradient is sign(y_hat - y), of size 1 however
    far off a prediction is, so outliers pull no harder than other points."""
    return (y_hat - targets_like(y, y_hat)).abs()


def huber_loss(y_hat: torch.Tensor, y: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber's robust loss, elementwise, as ``F.huber_loss`` defines ``delta``:

        l = (y_hat - y)^2 / 2                  if |y_hat - y| < delta
        l = delta * (|y_hat - y| - delta / 2)  otherwise

    Squared (smooth) near the target and linear (robust to outliers) far from it; the two pieces
    meet with equal value and slope at |y_hat - y| = delta, so the gradient is clip(y_hat - y, ±delta).
    """
    if not delta > 0:
        raise ValueError(f"huber_loss needs delta > 0, got {delta}; delta = 1 is the usual choice")
    error = y_hat - targets_like(y, y_hat)
    size = error.abs()
    return torch.where(size < delta, error**2 / 2, delta * (size - delta / 2))


def binary_cross_entropy_with_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sigmoid + binary cross-entropy for multi-label classification, elementwise (D2L §1.3.1).

    Each of the Q labels is its own yes/no question: p = sigmoid(o), y in [0, 1], and
    l = -y log p - (1 - y) log(1 - p) = log(1 + exp(o)) - y * o.
    log(1 + exp(o)) = logsumexp(0, o) = m + log(exp(-m) + exp(o - m)) with m = max(o, 0), so no exp
    overflows for o = +-1000 and no log sees an underflowed 0. (The gradient through m cancels,
    leaving dl/do = sigmoid(o) - y everywhere, also at o = 0.)
    """
    y = targets_like(y, logits).to(logits.dtype)
    m = logits.clamp(min=0)
    softplus = m + torch.log(torch.exp(-m) + torch.exp(logits - m))  # log(1 + exp(o))
    return softplus - y * logits
