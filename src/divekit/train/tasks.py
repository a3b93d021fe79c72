"""Tasks: how a batch becomes a loss and metric sums. The trainer runs any task; a model knows
nothing about losses, metrics or training.

A task's ``step`` returns the loss to minimise (a scalar) and a dict of sums to accumulate on the
device; ``summarize`` turns the epoch's totals into the metrics a person reads. Sequence tasks can
keep recurrent state across batches by overriding ``start_epoch``; tasks with several losses
(SSD, BERT) return each as its own sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar to call backward on
    sums: dict[str, torch.Tensor | float]  # quantities to add up over the epoch


class Task:
    """Base class. ``count_key`` names the sum that counts examples (or tokens) for throughput."""

    count_key = "count"
    count_unit = "examples"

    def start_epoch(self, training: bool) -> None:
        """Called before each pass over a loader (e.g. to reset recurrent state)."""

    def step(self, model: nn.Module, batch, training: bool) -> StepOutput:
        raise NotImplementedError(f"{type(self).__name__} must define step(model, batch, training)")

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must define summarize(totals)")


class Classification(Task):
    """Minibatch classification (D2L §3.6): mean loss over the batch, accuracy from argmax.

    ``loss_fn(logits, y)`` returns per-example losses (shape (B,)), so scratch and fast losses
    plug in alike.
    """

    def __init__(self, loss_fn: LossFn):
        self.loss_fn = loss_fn

    def step(self, model, batch, training):
        X, y = batch.X, batch.y
        logits = model(X)
        losses = self.loss_fn(logits, y)
        loss = losses.mean()
        correct = (logits.argmax(dim=-1) == y).sum()
        # the batch's loss sum is the mean times B: no second reduction over the losses
        return StepOutput(loss, {"loss": loss.detach().float() * len(y), "correct": correct, "count": len(y)})

    def summarize(self, totals):
        n = totals["count"]
        return {"loss": totals["loss"] / n, "acc": totals["correct"] / n}


class Regression(Task):
    """Minibatch regression (D2L §3.1): ``loss_fn(y_hat, y)`` gives per-element losses.

    With a ``penalty(model)``, the training loss adds it (weight decay's lambda * ||w||^2 / 2,
    D2L §4.5.3); the reported loss stays the data loss alone, as the book plots it.
    """

    def __init__(self, loss_fn: LossFn, penalty: Callable[[nn.Module], torch.Tensor] | None = None):
        self.loss_fn = loss_fn
        self.penalty = penalty

    def step(self, model, batch, training):
        X, y = batch.X, batch.y
        y_hat = model(X)
        losses = self.loss_fn(y_hat, y.reshape(y_hat.shape))
        loss = losses.mean()
        sums = {"loss": loss.detach().float() * len(y), "count": len(y)}
        if training and self.penalty is not None:
            loss = loss + self.penalty(model)
        return StepOutput(loss, sums)

    def summarize(self, totals):
        return {"loss": totals["loss"] / totals["count"]}



class PixelClassification(Task):
    """Semantic segmentation (D2L §13.11): a class for every pixel, scored by the cross-entropy of
    the pixels that have a class (those marked ``ignore_index``, VOC's 255 borders, take no part),
    averaged over them, and reported as pixel accuracy and mean IoU from the epoch's confusion
    matrix (:mod:`divekit.metrics.segmentation`).

    The model maps images (B, 3, H, W) to logits (B, C, H, W); ``loss_fn(logits, y)`` takes (N, C)
    and (N,) as a classifier's does, so scratch and fast losses plug in alike.
    """

    count_unit = "images"

    def __init__(self, loss_fn: LossFn, num_classes: int, ignore_index: int = 255):
        self.loss_fn, self.num_classes, self.ignore_index = loss_fn, num_classes, ignore_index

    def step(self, model, batch, training):
        from divekit.metrics.segmentation import confusion_matrix

        logits = model(batch.X)  # (B, C, H, W)
        valid = batch.masks != self.ignore_index  # (B, H, W)
        pixels = logits.permute(0, 2, 3, 1)[valid]  # (N, C): the pixels that have a class
        losses = self.loss_fn(pixels, batch.masks[valid])  # (N,)
        loss = losses.mean()
        matrix = confusion_matrix(logits.detach().argmax(dim=1), batch.masks, self.num_classes, self.ignore_index)
        return StepOutput(loss, {"loss": loss.detach().float() * len(losses), "pixels": len(losses),
                                 "confusion": matrix, "count": len(batch)})

    def summarize(self, totals):
        from divekit.metrics.segmentation import mean_iou, pixel_accuracy

        return {"loss": totals["loss"] / max(totals["pixels"], 1), "acc": pixel_accuracy(totals["confusion"]),
                "miou": mean_iou(totals["confusion"])}
