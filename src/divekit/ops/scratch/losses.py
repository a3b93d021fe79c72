"""Softmax and losses from tensor operations (D2L §3.1.3, §3.4, §3.6).

Letters: B batch size, Q number of classes. Every loss returns one value per example (or per
element), so a caller chooses how to reduce.
"""

from __future__ import annotations

import torch

__all__ = ["cross_entropy", "log_softmax", "softmax", "squared_loss"]


def squared_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """l = (y_hat - y)^2 / 2, elementwise (D2L §3.1.3; the 1/2 makes the gradient y_hat - y)."""
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2


def softmax(X: torch.Tensor) -> torch.Tensor:
    """softmax(X)_ij = exp(X_ij) / sum_k exp(X_ik) over the last axis (D2L §3.6.2).

    Subtracting each row's maximum first leaves the result unchanged and keeps exp from
    overflowing for large logits.
    """
    X_exp = torch.exp(X - X.amax(dim=-1, keepdim=True))
    return X_exp / X_exp.sum(dim=-1, keepdim=True)


def log_softmax(X: torch.Tensor) -> torch.Tensor:
    """log softmax(X) = X - logsumexp(X), with logsumexp(X) = m + log sum exp(X - m), m = max X."""
    m = X.amax(dim=-1, keepdim=True)
    return X - (m + torch.log(torch.exp(X - m).sum(dim=-1, keepdim=True)))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """l = -log softmax(o)_y for logits o (B, Q) and class indices y (B,), per example (D2L §3.4.2).

    Taking the log of the softmax in one step (rather than log of a probability that may have
    underflowed to 0) keeps the loss finite even for logits of +-1000.
    """
    return -log_softmax(logits).gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
