"""Optimizers by name, each as a twin: divekit's scratch class (:mod:`divekit.optim.scratch`,
D2L §11) and its ``torch.optim`` counterpart, interchangeable in the trainer.

``create_optimizer("adam", params, impl="scratch", lr=0.01)`` makes the ``--impl``'s class; a name
prefixed with ``scratch-`` takes the scratch class whatever the impl. Learning-rate schedules that
work with either are in :mod:`divekit.optim.schedules`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch

from divekit.optim import scratch


class OptimizerTwins(NamedTuple):
    scratch: type[torch.optim.Optimizer]
    fast: type[torch.optim.Optimizer] | None  # None where torch.optim has no counterpart
    defaults: dict  # hyperparameters this name sets (momentum's beta)


OPTIMIZERS: dict[str, OptimizerTwins] = {
    "sgd": OptimizerTwins(scratch.SGD, torch.optim.SGD, {}),
    "momentum": OptimizerTwins(scratch.SGD, torch.optim.SGD, {"momentum": 0.9}),
    "adagrad": OptimizerTwins(scratch.AdaGrad, torch.optim.Adagrad, {}),
    "rmsprop": OptimizerTwins(scratch.RMSProp, torch.optim.RMSprop, {}),
    "adadelta": OptimizerTwins(scratch.Adadelta, torch.optim.Adadelta, {}),
    "adam": OptimizerTwins(scratch.Adam, torch.optim.Adam, {}),
    "adamw": OptimizerTwins(scratch.AdamW, torch.optim.AdamW, {}),
    "yogi": OptimizerTwins(scratch.Yogi, None, {}),
}
TAKES_MOMENTUM = ("sgd", "momentum")
FUSED = ("adam", "adamw")  # torch.optim classes run with fused=True: one kernel for all parameters on CPU and CUDA
SCRATCH_PREFIX = "scratch-"
NAMES = (*OPTIMIZERS, *(SCRATCH_PREFIX + name for name in OPTIMIZERS))  # every name create_optimizer takes


def optimizer_class(name: str, impl: str) -> type[torch.optim.Optimizer]:
    """The class called ``name`` for ``impl`` ("scratch" or "fast")."""
    base = name.removeprefix(SCRATCH_PREFIX)
    if base not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)} "
                         f"(or {SCRATCH_PREFIX}NAME for the scratch class whatever --impl)")
    twins = OPTIMIZERS[base]
    if impl == "scratch" or name.startswith(SCRATCH_PREFIX):
        return twins.scratch
    if twins.fast is None:
        raise ValueError(f"torch.optim has no {base}; use --impl scratch or --optimizer {SCRATCH_PREFIX}{base}")
    return twins.fast


def create_optimizer(name: str, params: Iterable, *, impl: str = "fast", lr: float, weight_decay: float = 0.0,
                     momentum: float | None = None) -> torch.optim.Optimizer:
    """Make the optimizer called ``name`` (see ``OPTIMIZERS``) of ``impl`` over ``params``.

    Hyperparameters not named here (betas, eps, RMSProp's alpha) keep torch's defaults; construct
    the classes directly to change them. torch's Adam and AdamW run fused (one kernel updates every
    parameter; torch's default on the CPU is a Python loop over them) where all parameters are
    floating-point tensors on the CPU or a CUDA device.
    """
    base = name.removeprefix(SCRATCH_PREFIX)
    if momentum is not None and base not in TAKES_MOMENTUM:
        raise ValueError(f"optimizer {name!r} takes no momentum; use one of {', '.join(TAKES_MOMENTUM)}")
    cls = optimizer_class(name, impl)
    hyper = dict(OPTIMIZERS[base].defaults)
    if momentum is not None:
        hyper["momentum"] = momentum
    params = [_listed(p) if isinstance(p, dict) else p for p in params]  # a group's generator is read once here
    if cls is OPTIMIZERS[base].fast and base in FUSED and _fusable(params):
        hyper["fused"] = True
    return cls(params, lr=lr, weight_decay=weight_decay, **hyper)


def _listed(group: dict) -> dict:
    """A param-group dict whose "params" is a list (torch takes a tensor, or any iterable, once)."""
    tensors = group.get("params", [])
    return {**group, "params": [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)}


def _fusable(params: list) -> bool:
    """Every parameter (of plain tensors or of param-group dicts) a floating-point tensor on the CPU or CUDA."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    return bool(tensors) and all(isinstance(t, torch.Tensor) and t.is_floating_point() and not t.is_sparse
                                 and t.device.type in ("cpu", "cuda") for t in tensors)
