"""Optimizers by name: divekit's scratch ones and torch.optim's, interchangeable in the trainer."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from divekit.optim import scratch

_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "scratch-sgd": lambda params, lr, weight_decay, momentum: scratch.SGD(params, lr, weight_decay=weight_decay),
    "sgd": lambda params, lr, weight_decay, momentum: torch.optim.SGD(params, lr, momentum=momentum, weight_decay=weight_decay),
    "adam": lambda params, lr, weight_decay, momentum: torch.optim.Adam(params, lr, weight_decay=weight_decay),
    "adamw": lambda params, lr, weight_decay, momentum: torch.optim.AdamW(params, lr, weight_decay=weight_decay),
    "adagrad": lambda params, lr, weight_decay, momentum: torch.optim.Adagrad(params, lr, weight_decay=weight_decay),
    "rmsprop": lambda params, lr, weight_decay, momentum: torch.optim.RMSprop(params, lr, momentum=momentum, weight_decay=weight_decay),
}
OPTIMIZERS = tuple(_OPTIMIZERS)


def create_optimizer(
    name: str, params: Iterable, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.0
) -> torch.optim.Optimizer:
    """Make the optimizer called ``name`` (see ``OPTIMIZERS``) over ``params``."""
    if name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if momentum and name not in ("sgd", "rmsprop"):
        raise ValueError(f"optimizer {name!r} takes no momentum; use sgd or rmsprop")
    return _OPTIMIZERS[name](params, lr, weight_decay, momentum)
