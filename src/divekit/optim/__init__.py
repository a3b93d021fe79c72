"""Optimizers by name: divekit's scratch ones and torch.optim's, interchangeable in the trainer.

``scratch-*`` names are the from-scratch optimizers of :mod:`divekit.optim.scratch` (D2L §11); the
plain names are their ``torch.optim`` counterparts (the fast ones). Learning-rate schedules that
work with either are in :mod:`divekit.optim.schedules`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from divekit.optim import scratch

MakeOptimizer = Callable[..., torch.optim.Optimizer]  # (params, lr, weight_decay, momentum) -> optimizer


def _without_momentum(cls) -> MakeOptimizer:
    return lambda params, lr, weight_decay, momentum: cls(params, lr, weight_decay=weight_decay)


def _with_momentum(cls, default: float = 0.0) -> MakeOptimizer:
    """``momentum`` is None unless the caller gave one; then the optimizer's ``default`` applies."""
    return lambda params, lr, weight_decay, momentum: cls(
        params, lr, momentum=default if momentum is None else momentum, weight_decay=weight_decay)


_OPTIMIZERS: dict[str, MakeOptimizer] = {
    "scratch-sgd": _with_momentum(scratch.SGD),
    "scratch-momentum": _with_momentum(scratch.SGD, default=0.9),
    "scratch-adagrad": _without_momentum(scratch.AdaGrad),
    "scratch-rmsprop": _without_momentum(scratch.RMSProp),
    "scratch-adadelta": _without_momentum(scratch.Adadelta),
    "scratch-adam": _without_momentum(scratch.Adam),
    "scratch-adamw": _without_momentum(scratch.AdamW),
    "scratch-yogi": _without_momentum(scratch.Yogi),
    "sgd": _with_momentum(torch.optim.SGD),
    "adam": _without_momentum(torch.optim.Adam),
    "adamw": _without_momentum(torch.optim.AdamW),
    "adagrad": _without_momentum(torch.optim.Adagrad),
    "adadelta": _without_momentum(torch.optim.Adadelta),
    "rmsprop": _with_momentum(torch.optim.RMSprop),
}
OPTIMIZERS = tuple(_OPTIMIZERS)
# the optimizers whose momentum create_optimizer sets (scratch-momentum's is 0.9 unless given)
TAKES_MOMENTUM = ("scratch-sgd", "scratch-momentum", "sgd", "rmsprop")


def create_optimizer(
    name: str, params: Iterable, *, lr: float, weight_decay: float = 0.0, momentum: float | None = None
) -> torch.optim.Optimizer:
    """Make the optimizer called ``name`` (see ``OPTIMIZERS``) over ``params``.

    Hyperparameters not named here (betas, eps, RMSProp's alpha) keep torch's defaults; construct
    the classes directly to change them.
    """
    if name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if momentum and name not in TAKES_MOMENTUM:
        raise ValueError(f"optimizer {name!r} takes no momentum; use one of {', '.join(TAKES_MOMENTUM)}")
    return _OPTIMIZERS[name](params, lr, weight_decay, momentum)
