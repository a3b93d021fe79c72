"""Optimizers from scratch (D2L §3.2.6, §11), as ``torch.optim.Optimizer`` subclasses so that the
trainer, schedulers and checkpoints treat them exactly like torch's own."""

from __future__ import annotations

import torch


class SGD(torch.optim.Optimizer):
    """Minibatch stochastic gradient descent: w <- w - lr * (g + weight_decay * w) (D2L §3.2.6).

    The loss is a mean over the batch, so ``g`` is already the batch average that the book divides
    by the batch size to get.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * w
                w.sub_(group["lr"] * g)
        return loss
