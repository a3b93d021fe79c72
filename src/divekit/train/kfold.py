"""K-fold cross-validation (D2L §4.10) for any model, task and optimizer, through the trainer.

The N examples are cut, in order, into K contiguous folds of ``N // K`` examples, as the book's
``get_k_fold_data`` does; the last ``N % K`` examples are in no fold (the book drops them). Fold i
is validated on fold i and trained on the other K - 1. After every epoch both parts are evaluated
in full (what the book prints as train and valid log rmse, not a running minibatch average).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from divekit.data.base import Split
from divekit.data.loader import TensorLoader
from divekit.train.callbacks import Callback
from divekit.train.engine import Trainer
from divekit.train.tasks import Task

log = logging.getLogger("divekit")


def k_fold_indices(n: int, k: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, valid) indices of fold ``i`` of ``k`` over ``n`` examples, in order.

    valid = [i * s, (i + 1) * s) with s = n // k; train = the other folds' slices; the last
    n % k examples belong to neither.
    """
    if k < 2:
        raise ValueError(f"k-fold cross-validation needs k >= 2 folds, got k={k}")
    if n < k:
        raise ValueError(f"cannot cut {n} examples into k={k} folds: each fold needs an example"
                         + (f"; use k <= {n}" if n >= 2 else "; k-fold cross-validation needs at least 2 examples"))
    if not 0 <= i < k:
        raise ValueError(f"fold index i must be in [0, {k}), got {i}")
    size = n // k
    valid = torch.arange(i * size, (i + 1) * size)
    train = torch.cat([torch.arange(j * size, (j + 1) * size) for j in range(k) if j != i])
    return train, valid


@dataclass(frozen=True)
class KFoldResult:
    """``folds``: per fold, the final train and valid metrics ("train_<m>", "valid_<m>");
    ``average``: their means over folds; ``history``: one row per fold and epoch."""

    folds: list[dict]
    average: dict[str, float]
    history: list[dict]


def fit_and_evaluate(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Task,
    train: Split,
    valid: Split | None = None,
    *,
    epochs: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> list[dict]:
    """Train ``model`` on shuffled minibatches of ``train``; after each epoch evaluate it on all of
    ``train`` (and ``valid``). One row per epoch: "epoch", "train_<metric>", "valid_<metric>".
    This is the book's ``train`` of §4.10, which records train_ls and test_ls each epoch."""
    full = {"train": TensorLoader(train, max(batch_size, 1024), device=device)}
    if valid is not None:
        full["valid"] = TensorLoader(valid, max(batch_size, 1024), device=device)
    evaluate = EvaluateInFull(full)
    trainer = Trainer(model, task, optimizer, epochs=epochs, device=device, progress=progress,
                      callbacks=[evaluate], verbose=False)
    trainer.fit(TensorLoader(train, batch_size, shuffle=True, seed=seed, device=device))
    return evaluate.rows


class EvaluateInFull(Callback):
    """After each epoch, evaluate the model on every named loader; one row per epoch in ``rows``."""

    def __init__(self, loaders: dict[str, TensorLoader]):
        self.loaders = loaders
        self.rows: list[dict] = []

    def on_epoch_end(self, trainer, record):
        row = {"epoch": record["epoch"]}
        for part, loader in self.loaders.items():
            row.update({f"{part}_{name}": value for name, value in trainer.evaluate(loader).items()})
        self.rows.append(row)


def k_fold(
    make_model: Callable[[], nn.Module],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    task: Task,
    split: Split,
    k: int,
    *,
    epochs: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> KFoldResult:
    """Train a fresh ``make_model()`` with ``make_optimizer(model)`` on each of the ``k`` folds of
    ``split`` for ``epochs`` epochs (shuffled minibatches of ``batch_size``), and report each
    fold's train and valid metrics under ``task`` and their averages over the folds."""
    folds, history = [], []
    for i in range(k):
        train_index, valid_index = k_fold_indices(len(split), k, i)
        train = Split(split.X[train_index], split.y[train_index])
        valid = Split(split.X[valid_index], split.y[valid_index])
        model = make_model()
        rows = fit_and_evaluate(model, make_optimizer(model), task, train, valid, epochs=epochs,
                                batch_size=batch_size, device=device, seed=seed + i, progress=progress)
        rows = [{"fold": i + 1, **row} for row in rows]
        final = {key: value for key, value in rows[-1].items() if key != "epoch"}
        log.info(f"fold {i + 1}/{k}: " + ", ".join(f"{key} {value:.6g}" for key, value in final.items() if key != "fold"))
        folds.append(final)
        history += rows
    metric_names = [key for key in folds[0] if key != "fold"]
    average = {name: sum(fold[name] for fold in folds) / k for name in metric_names}
    return KFoldResult(folds, average, history)
