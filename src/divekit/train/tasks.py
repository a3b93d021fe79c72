"""Tasks: how a batch becomes a loss and metric sums. The trainer runs any task; a model knows
nothing about losses, metrics or training.

A task's ``step`` returns the loss to minimise (a scalar) and a dict of sums to accumulate on the
device; ``summarize`` turns the epoch's totals into the metrics a person reads. Sequence tasks can
keep recurrent state across batches by overriding ``start_epoch``; tasks with several losses
(SSD, BERT) return each as its own sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from divekit.ops.scratch.losses import targets_like

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar to call backward on
    sums: dict[str, torch.Tensor | float]  # quantities to add up over the epoch


class Task:
    """Base class. ``count_key`` names the sum that counts examples (or tokens) for throughput."""

    count_key = "count"
    count_unit = "examples"
    monitor: tuple[str, str] | None = None  # the metric that says which epoch is best, and "max" or "min"
    state_batch_dim = 0  # the batch dimension of state_dict()'s tensors (processes' rows are joined along it)
    # True where step's loss is already scaled for data-parallel training (distributed.whole_minibatch_mean):
    # the trainer then leaves out the loader's share weighting, which serves means over a share's examples
    whole_minibatch_loss = False

    def start_epoch(self, training: bool) -> None:
        """Called before each pass over a loader (e.g. to reset recurrent state)."""

    def state_dict(self) -> dict:
        """State the task carries from one batch to the next (saved in a checkpoint written within
        an epoch); none by default."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s state."""

    def step(self, model: nn.Module, batch, training: bool) -> StepOutput:
        raise NotImplementedError(f"{type(self).__name__} must define step(model, batch, training)")

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must define summarize(totals)")


class Classification(Task):
    """Minibatch classification (D2L §3.6): mean loss over the batch, accuracy from argmax.

    ``loss_fn(logits, y)`` returns per-example losses (shape (B,)), so scratch and fast losses
    plug in alike.
    """

    monitor = ("acc", "max")

    def __init__(self, loss_fn: LossFn):
        self.loss_fn = loss_fn

    def step(self, model, batch, training):
        return self.score(model(batch.X), batch.y)

    def score(self, logits: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """The loss and sums of logits (N, C) against classes y (N,)."""
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
    D2L §4.5.3); the reported loss stays the data loss alone, as the book plots it. Beside the loss,
    the root-mean-square error in the target's units (``target_std``: the std a standardised target
    was divided by) and R^2 = 1 - SSE / SST, the share of the targets' variance explained.
    """

    monitor = ("loss", "min")

    def __init__(self, loss_fn: LossFn, penalty: Callable[[nn.Module], torch.Tensor] | None = None,
                 target_std: float = 1.0):
        self.loss_fn = loss_fn
        self.penalty = penalty
        self.target_std = target_std

    def step(self, model, batch, training):
        y_hat = model(batch.X)
        y = targets_like(batch.y, y_hat)
        losses = self.loss_fn(y_hat, y)
        loss = losses.mean()
        # R^2's spread, sum y^2 - (sum y)^2 / n, cancels all but its last digits where the mean is far from the
        # spread (years about 2000 +- 2): its sums in float64 (float32 on a Mac's GPU, which has no float64)
        wide = torch.float32 if y.device.type == "mps" else torch.float64
        y_wide = y.detach().to(wide)
        sums = {"loss": loss.detach().float() * len(y), "count": len(y), "values": y.numel(),
                "sse": (y_hat.detach().to(wide) - y_wide).square().sum(), "y_sum": y_wide.sum(),
                "y_sq_sum": y_wide.square().sum()}
        if training and self.penalty is not None:
            loss = loss + self.penalty(model)
        return StepOutput(loss, sums)

    def summarize(self, totals):
        n = totals["values"]
        sst = totals["y_sq_sum"] - totals["y_sum"] ** 2 / n  # sum of (y - mean)^2
        return {"loss": totals["loss"] / totals["count"], "rmse": (totals["sse"] / n) ** 0.5 * self.target_std,
                "r2": 1 - totals["sse"] / sst if sst > 0 else float("nan")}


class HousePriceRegression(Task):
    """Kaggle's house prices (D2L §4.10): minimise the mean squared error of the prices (the book's
    ``nn.MSELoss``); report it as "loss" and the competition's metric as "log_rmse":

        log rmse = sqrt(mean_n (log max(y_hat_n, 1) - log y_n)^2)

    which weighs a 10% error alike on cheap and dear houses (clamping at 1 keeps the log finite).
    """

    def step(self, model, batch, training):
        y_hat = model(batch.X)  # (B, 1)
        y = targets_like(batch.y, y_hat)
        squared_error = F.mse_loss(y_hat, y, reduction="none")
        log_error = torch.log(y_hat.detach().clamp(min=1)) - torch.log(y)
        return StepOutput(squared_error.mean(), {"loss": squared_error.detach().sum(),
                                                 "squared_log_error": (log_error**2).sum(), "count": len(y)})

    def summarize(self, totals):
        n = totals["count"]
        return {"loss": totals["loss"] / n, "log_rmse": math.sqrt(totals["squared_log_error"] / n)}


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
        loss = losses.sum() / max(len(losses), 1)  # the mean; 0 (not 0 / 0) for a batch of ignored pixels only
        matrix = confusion_matrix(logits.detach().argmax(dim=1), batch.masks, self.num_classes, self.ignore_index)
        return StepOutput(loss, {"loss": losses.detach().float().sum(), "pixels": len(losses),
                                 "confusion": matrix, "count": len(batch)})

    def summarize(self, totals):
        from divekit.metrics.segmentation import mean_iou, pixel_accuracy

        return {"loss": totals["loss"] / max(totals["pixels"], 1), "acc": pixel_accuracy(totals["confusion"]),
                "miou": mean_iou(totals["confusion"], self.ignore_index)}
