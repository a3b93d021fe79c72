"""Synthetic regression data (D2L §3.2.1, §4.5.2): y = X w + b + noise, X ~ N(0, 1)."""

from __future__ import annotations

import torch

from divekit.data.base import Split


def synthetic_regression(
    w: torch.Tensor | list[float],
    b: float,
    num_examples: int,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Split:
    """``num_examples`` examples with features X (N, len(w)) and targets y (N, 1)."""
    w = torch.as_tensor(w, dtype=torch.float32).reshape(-1)  # (D,); the book's §4.5 passes a (D, 1) column
    if num_examples < 1:
        raise ValueError(f"num_examples must be at least 1, got {num_examples}")
    X = torch.randn(num_examples, len(w), generator=generator)
    y = X @ w + b + noise * torch.randn(num_examples, generator=generator)
    return Split(X, y.reshape(-1, 1))
