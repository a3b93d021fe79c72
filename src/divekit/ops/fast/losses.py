"""Softmax and losses on PyTorch's kernels: twins of :mod:`divekit.ops.scratch.losses`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def squared_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(y_hat, y.reshape(y_hat.shape), reduction="none") / 2


def mse_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(y_hat, y.reshape(y_hat.shape), reduction="none")


def softmax(X: torch.Tensor) -> torch.Tensor:
    return torch.softmax(X, dim=-1)


def log_softmax(X: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(X, dim=-1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y.long(), reduction="none")


def l1_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(y_hat, y.reshape(y_hat.shape), reduction="none")


def huber_loss(y_hat: torch.Tensor, y: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    if not delta > 0:
        raise ValueError(f"huber_loss needs delta > 0, got {delta}; delta = 1 is the usual choice")
    return F.huber_loss(y_hat, y.reshape(y_hat.shape), reduction="none", delta=delta)


def binary_cross_entropy_with_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, y.reshape(logits.shape).to(logits.dtype), reduction="none")
