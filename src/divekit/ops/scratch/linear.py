"""Affine layers from tensor operations: the linear layer (D2L §3.1-3.2, §5.4's ``MyLinear``),
flattening, and the embedding lookup (D2L §14.4.1).

Letters: B batch size, D inputs (features), Q outputs, V vocabulary size, E embedding size.

Each layer has ``torch.nn``'s constructor arguments, parameter names and shapes, and draws its
initial values in the same way from the same random stream, so at the same seed a scratch layer
and its torch twin start with identical weights and either loads the other's state dict.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Embedding", "Flatten", "Linear"]


class Linear(nn.Module):
    """A fully connected layer, o = X W^T + b (the book's ``MyLinear``, D2L §5.4).

    ``weight`` (Q, D) and ``bias`` (Q,) start at U(-1/sqrt(D), 1/sqrt(D)), drawn as ``nn.Linear``
    draws them (weight first, then bias), so a model built of these layers starts where its
    ``nn.Linear`` twin starts. A model that wants the book's N(0, 0.01^2) instead re-draws them.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs at least one input and one output, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        out = X @ self.weight.T  # (..., D) @ (D, Q) -> (..., Q)
        return out if self.bias is None else out + self.bias.to(out.dtype)  # bf16 under autocast, as F.linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(nn.Module):
    """Merge dimensions ``start_dim`` to ``end_dim`` into one: (B, C, H, W) -> (B, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        start, end = self.start_dim % X.dim(), self.end_dim % X.dim()
        return X.reshape(*X.shape[:start], math.prod(X.shape[start:end + 1]), *X.shape[end + 1:])


class Embedding(nn.Module):
    """Token index -> learned vector (D2L §9.7.1, §14.4.1): row ``i`` of ``weight`` (V, E) is the
    vector of token ``i``, which is what a linear layer gives a one-hot input, without building the
    one-hot matrix. Starts at N(0, 1), as ``nn.Embedding``."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(f"Embedding needs a positive vocabulary and vector size, got {num_embeddings} x {embedding_dim}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim).normal_())

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.dtype not in (torch.long, torch.int32):
            raise ValueError(f"Embedding takes integer token indices, got {X.dtype}")
        return self.weight[X]  # (...,) -> (..., E); autograd sums the gradients of repeated tokens

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
