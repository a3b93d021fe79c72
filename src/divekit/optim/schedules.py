"""Learning-rate schedules (D2L §11.11), usable with any optimizer.

Each schedule is a ``torch.optim.lr_scheduler.LRScheduler``: it sets ``group["lr"]`` of every
parameter group of the optimizer (divekit's scratch optimizers read it at each step, as torch's
do), is stepped with ``scheduler.step()`` after ``optimizer.step()`` (per epoch or per update, as
the trainer's ``scheduler_interval`` says), and saves and restores with ``state_dict``. The
learning rate is a closed-form function of the step count ``t`` (``last_epoch``) and each group's
initial learning rate ``base_lr``:

* :class:`SquareRootScheduler`  base_lr / sqrt(t + 1)
* :class:`FactorScheduler`      max(stop_factor_lr, base_lr factor^t)
* :class:`StepScheduler`        base_lr gamma^(t // step_size)                (= torch's StepLR)
* :class:`MultiStepScheduler`   base_lr gamma^(number of milestones <= t)     (= torch's MultiStepLR)
* :class:`CosineScheduler`      final_lr + (base_lr - final_lr) (1 + cos(pi t / T)) / 2 up to T,
                                then final_lr                 (= torch's CosineAnnealingLR up to T)

Every schedule takes an optional linear **warm-up**: for the first ``warmup_steps`` steps the
learning rate rises linearly from ``warmup_begin_lr`` to ``base_lr``, and the schedule's own clock
starts after it. Warm-up keeps the first updates of a freshly initialised network small, when its
gradients are largest and least informative. ``final_lr``, ``stop_factor_lr`` and
``warmup_begin_lr`` are absolute learning rates, as in the book and in torch's ``eta_min``.
"""

from __future__ import annotations

import bisect
import math

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["Schedule", "SquareRootScheduler", "FactorScheduler", "StepScheduler", "MultiStepScheduler",
           "CosineScheduler", "SCHEDULES", "create_schedule"]


class Schedule(LRScheduler):
    """A learning rate ``lr_at(t, base_lr)`` after an optional linear warm-up.

    Subclasses set their hyperparameters, then call ``super().__init__`` (which sets the initial
    learning rate, t = 0), and define :meth:`lr_at`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, warmup_steps: int = 0, warmup_begin_lr: float = 0.0,
                 last_epoch: int = -1):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps}")
        if warmup_begin_lr < 0:
            raise ValueError(f"warmup_begin_lr must be non-negative, got {warmup_begin_lr}")
        self.warmup_steps = warmup_steps
        self.warmup_begin_lr = warmup_begin_lr
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float) -> float:
        """The learning rate ``t`` steps after the warm-up, for a group whose initial rate is ``base_lr``."""
        raise NotImplementedError(f"{type(self).__name__} must define lr_at()")

    def learning_rate(self, t: int, base_lr: float) -> float:
        """The learning rate at step ``t``, warm-up included."""
        if t < self.warmup_steps:  # linear from warmup_begin_lr (t = 0) towards base_lr (t = warmup_steps)
            return self.warmup_begin_lr + (base_lr - self.warmup_begin_lr) * t / self.warmup_steps
        return self.lr_at(t - self.warmup_steps, base_lr)

    def get_lr(self) -> list[float]:
        return [self.learning_rate(self.last_epoch, base_lr) for base_lr in self.base_lrs]


class SquareRootScheduler(Schedule):
    """lr = base_lr / sqrt(t + 1): the decay that convex SGD analyses ask for (D2L §11.11.2)."""

    def lr_at(self, t, base_lr):
        return base_lr * (t + 1.0) ** -0.5


class FactorScheduler(Schedule):
    """lr = max(stop_factor_lr, base_lr * factor^t): multiplicative decay with a floor (D2L §11.11.3.1).
    The rate of step (or epoch) t, which is what the book's training loop trains at: its
    ``FactorScheduler`` is called after each epoch and so returns the next one's rate, base_lr *
    factor^(t + 1) for call t (its plot of scheduler(t) is this curve one step ahead)."""

    def __init__(self, optimizer, factor: float = 1.0, stop_factor_lr: float = 1e-7, **warmup):
        if not 0 < factor <= 1:
            raise ValueError(f"factor must be in (0, 1], got {factor}")
        self.factor = factor
        self.stop_factor_lr = stop_factor_lr
        super().__init__(optimizer, **warmup)

    def lr_at(self, t, base_lr):
        return max(self.stop_factor_lr, base_lr * self.factor**t)


class StepScheduler(Schedule):
    """lr = base_lr * gamma^(t // step_size): piecewise constant, multiplied by gamma every
    ``step_size`` steps (torch's ``StepLR``)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, **warmup):
        if step_size < 1:
            raise ValueError(f"step_size must be at least 1, got {step_size}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, **warmup)

    def lr_at(self, t, base_lr):
        return base_lr * self.gamma ** (t // self.step_size)


class MultiStepScheduler(Schedule):
    """lr = base_lr * gamma^k after the k-th of the ``milestones``: piecewise constant, dropped at
    chosen steps (D2L §11.11.3.2, the book's MultiFactorScheduler; torch's ``MultiStepLR``)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, **warmup):
        milestones = sorted(int(m) for m in milestones)
        if not milestones or milestones[0] < 1:
            raise ValueError(f"milestones must be positive step numbers, got {milestones}")
        self.milestones = milestones
        self.gamma = gamma
        super().__init__(optimizer, **warmup)

    def lr_at(self, t, base_lr):
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class CosineScheduler(Schedule):
    """Cosine decay from base_lr to ``final_lr`` over the ``max_update - warmup_steps`` steps after
    the warm-up, then constant (D2L §11.11.3.3, Loshchilov & Hutter 2016):
    lr = final_lr + (base_lr - final_lr) (1 + cos(pi t / T)) / 2 with T = max_update - warmup_steps.
    Without warm-up this is torch's ``CosineAnnealingLR(T_max=max_update, eta_min=final_lr)`` for
    t <= max_update (torch's then rises again; this one stays at ``final_lr``, as the book's)."""

    def __init__(self, optimizer, max_update: int, final_lr: float = 0.0, **warmup):
        if max_update <= warmup.get("warmup_steps", 0):
            raise ValueError(f"max_update ({max_update}) must exceed warmup_steps ({warmup.get('warmup_steps', 0)})")
        self.max_update = max_update
        self.final_lr = final_lr
        super().__init__(optimizer, **warmup)

    def lr_at(self, t, base_lr):
        num_steps = self.max_update - self.warmup_steps
        if t >= num_steps:
            return self.final_lr
        return self.final_lr + (base_lr - self.final_lr) * (1 + math.cos(math.pi * t / num_steps)) / 2


SCHEDULES = {
    "square-root": SquareRootScheduler,
    "factor": FactorScheduler,
    "step": StepScheduler,
    "multistep": MultiStepScheduler,
    "cosine": CosineScheduler,
}


def create_schedule(name: str, optimizer: torch.optim.Optimizer, **kwargs) -> Schedule:
    """The schedule called ``name`` (a key of ``SCHEDULES``) over ``optimizer``'s groups."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return SCHEDULES[name](optimizer, **kwargs)
