"""Primitives for training recurrent networks, from tensor operations (D2L §8.5.4, §9.7.3).

Letters: B batch size, T time steps, V vocabulary size.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from divekit.ops.scratch.losses import cross_entropy

__all__ = ["clip_grad_norm", "masked_cross_entropy", "sequence_mask"]


@torch.no_grad()
def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale all gradients together so that their global norm is at most ``max_norm`` (D2L §8.5.4).

    g <- min(1, theta / ||g||) g, with ||g|| the L2 norm of every gradient stacked into one vector;
    the direction of the update is kept, only its length is capped. Returns ||g|| before clipping.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    scale = torch.clamp(max_norm / norm, max=1.0)  # a tensor: no host sync to decide whether to clip
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return norm


def sequence_mask(valid_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """mask[b, t] = t < valid_lens[b], a (B, T) boolean tensor (D2L §9.7.3)."""
    return torch.arange(max_len, device=valid_lens.device)[None, :] < valid_lens[:, None]


def masked_cross_entropy(logits: torch.Tensor, Y: torch.Tensor, valid_lens: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (B, T) of logits (B, T, V) for targets Y (B, T), zero on padding
    (positions t >= valid_lens[b]). Average with ``.sum() / valid_lens.sum()`` to get the loss per
    real token; the book's ``.mean(dim=1)`` also divides by the padding (d2l-en#2076)."""
    B, T, V = logits.shape
    losses = cross_entropy(logits.reshape(B * T, V), Y.reshape(B * T)).reshape(B, T)
    return losses * sequence_mask(valid_lens, T)
