"""Xavier initialization by ``torch.nn.init``: twins of :mod:`divekit.ops.scratch.init`."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["xavier_normal_", "xavier_uniform_"]


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    return nn.init.xavier_uniform_(tensor, gain=gain)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    return nn.init.xavier_normal_(tensor, gain=gain)
