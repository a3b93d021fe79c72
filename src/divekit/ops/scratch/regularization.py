"""Regularization from tensor operations: the L2 penalty of weight decay (D2L §4.5) and
dropout (D2L §4.6).

Weight decay adds lambda * ||w||^2 / 2 to the loss, so each SGD step also shrinks w by
lr * lambda * w; it is applied to weights only, since a bias does not make the function any
less smooth. :class:`WeightDecay` does it the scratch way (§4.5.3, a penalty in the loss); its
fast twin gives the optimizer ``weight_decay`` for the weights' parameter group (§4.5.4), which
adds the same lambda * w to each gradient. Dropout zeroes each activation with probability p during training and scales the
survivors by 1 / (1 - p), so that the expectation is unchanged: E[h'] = (1 - p) * h / (1 - p) = h.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Dropout", "WeightDecay", "dropout", "l2_penalty"]


def l2_penalty(w: torch.Tensor) -> torch.Tensor:
    """||w||^2 / 2 = sum_i w_i^2 / 2, a scalar; its gradient is w itself (D2L §4.5.3)."""
    return (w**2).sum() / 2


def check_dropout_probability(p: float) -> None:
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability p must be between 0 and 1 (the chance of zeroing an entry), got {p}")


def dropout(X: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout (D2L §4.6.4): h' = 0 with probability p, else h / (1 - p); identity when
    not ``training`` (at inference every unit is used and no rescaling is needed)."""
    check_dropout_probability(p)
    if not training or p == 0:
        return X
    if p == 1:
        return X * 0.0  # everything dropped (1 / (1 - p) would divide by zero); a zero gradient flows back
    keep = (torch.rand(X.shape, device=X.device) > p).to(X.dtype)  # 1 with probability 1 - p
    return keep * X / (1 - p)


class Dropout(nn.Module):
    """Dropout as a layer: active in ``train()`` mode, the identity in ``eval()`` mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        check_dropout_probability(p)
        self.p = p

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return dropout(X, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def weights_and_biases(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """A model's parameters split into weights and biases (by name: ``...bias``)."""
    weights = [p for name, p in model.named_parameters() if not name.endswith("bias")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    return weights, biases


class WeightDecay:
    """L2 weight decay with strength ``lambd`` on a model's weights, not its biases (D2L §4.5).

    Use both methods: ``penalty(model)`` is added to the training loss, and ``param_groups(model)``
    is what the optimizer is built on. This twin puts lambd * sum ||w||^2 / 2 into the loss
    (§4.5.3) and leaves the optimizer plain; the fast twin does the opposite (§4.5.4).
    """

    def __init__(self, lambd: float):
        if not lambd >= 0:
            raise ValueError(f"weight decay lambda must be non-negative, got {lambd}")
        self.lambd = lambd

    def penalty(self, model: nn.Module) -> torch.Tensor:
        weights, _ = weights_and_biases(model)
        return self.lambd * sum(l2_penalty(w) for w in weights)

    def param_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": list(model.parameters())}]
