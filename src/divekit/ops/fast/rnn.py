"""Recurrent layers and their training primitives on PyTorch's kernels, twins of ``ops.scratch.rnn``.

The layers are ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` (cuDNN's fused kernels on a GPU), with their
arguments written out: torch declares them as ``*args, **kwargs``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from divekit.ops.fast.losses import cross_entropy
from divekit.ops.scratch.rnn import sequence_mask

__all__ = ["GRU", "LSTM", "RNN", "clip_grad_norm", "masked_cross_entropy", "sequence_mask"]
SHARED = ("sequence_mask",)  # the scratch object itself: nothing faster to call


class RNN(nn.RNN):
    """``nn.RNN`` (D2L §8.6)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__(input_size, hidden_size, num_layers, nonlinearity=nonlinearity, bias=bias,
                         batch_first=batch_first, dropout=dropout, bidirectional=bidirectional)


class GRU(nn.GRU):
    """``nn.GRU`` (D2L §9.1.3)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional)


class LSTM(nn.LSTM):
    """``nn.LSTM`` (D2L §9.2.3)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional)


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_``: g <- min(1, theta / (||g|| + 1e-6)) g; returns ||g||."""
    return torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)


def masked_cross_entropy(logits: torch.Tensor, Y: torch.Tensor, valid_lens: torch.Tensor) -> torch.Tensor:
    """The fast ``cross_entropy`` per token (B, T), zero on padding. The logits go in as (B*T, V): on
    the CPU, log-softmax over the last dimension is about 3x faster than over the V of (B, V, T)."""
    B, T, V = logits.shape
    losses = cross_entropy(logits.reshape(B * T, V), Y.reshape(B * T)).reshape(B, T)
    return losses * sequence_mask(valid_lens, T)
