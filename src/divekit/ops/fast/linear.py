"""Affine layers on PyTorch's kernels: twins of :mod:`divekit.ops.scratch.linear`. The layers are
torch's own; the scratch ones share their arguments, parameter names and initial draws."""

from __future__ import annotations

from torch.nn import Embedding, Flatten, Linear

__all__ = ["Embedding", "Flatten", "Linear"]
