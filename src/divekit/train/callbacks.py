"""Callbacks: what happens around training without being the training loop (D2L §3.6's Animator,
made a file): the trainer calls ``on_step_end(trainer, epoch, step)`` after every training step,
``on_epoch_end(trainer, record)`` after every epoch and ``on_fit_end(trainer)`` once when ``fit``
returns or stops on an error."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from divekit.train.engine import Trainer

CURVES_NAME = "curves.png"


class Callback:
    """Base class; override the hooks you need."""

    def on_step_end(self, trainer: Trainer, epoch: int, step: int) -> None:
        """After the optimizer's step ``step`` (from 1) of epoch ``epoch`` (and its checkpoint, if one was due)."""

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        """After an epoch's record (train metrics, evaluation metrics) is in ``trainer.history``."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After training, also when it stopped on an error (e.g. a NaN loss)."""


class CurvesFigure(Callback):
    """Draw the training curves of the history so far into ``out_dir/curves.png`` when training ends."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / CURVES_NAME

    def on_fit_end(self, trainer):
        if not trainer.history:
            return
        from divekit.viz.curves import plot_history  # matplotlib loads only when a plot is made
        from divekit.viz.images import save_figure

        save_figure(plot_history(trainer.history), self.path)
