"""Activations on PyTorch's kernels: twins of :mod:`divekit.ops.scratch.activations`.

The derivatives call the backward kernels that autograd itself runs (``threshold_backward``,
``sigmoid_backward``, ``tanh_backward``) with an upstream gradient of ones. The layers are torch's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn import GELU, ReLU, Sigmoid, Tanh

__all__ = ["GELU", "ReLU", "Sigmoid", "Tanh", "gelu", "relu", "relu_grad", "sigmoid", "sigmoid_grad", "tanh",
           "tanh_grad"]


def gelu(X: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    return F.gelu(X, approximate=approximate)


def relu(X: torch.Tensor) -> torch.Tensor:
    return torch.relu(X)


def relu_grad(X: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.threshold_backward(torch.ones_like(X), X, 0)


def sigmoid(X: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(X)


def sigmoid_grad(X: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.sigmoid_backward(torch.ones_like(X), torch.sigmoid(X))


def tanh(X: torch.Tensor) -> torch.Tensor:
    return torch.tanh(X)


def tanh_grad(X: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.tanh_backward(torch.ones_like(X), torch.tanh(X))
