"""Callbacks: what happens around training without being the training loop (D2L §3.6's Animator,
made a file): the trainer calls ``on_step_end(trainer, epoch, step)`` after every training step,
``on_epoch_end(trainer, record)`` after every epoch and ``on_fit_end(trainer)`` once when ``fit``
returns or stops on an error."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from divekit.train.engine import Trainer

from divekit.run_folder import BEST_NAME, CURVES_NAME, TENSORBOARD_DIR


class Callback:
    """Base class; override the hooks you need."""

    def on_step_end(self, trainer: Trainer, epoch: int, step: int) -> None:
        """After the optimizer's step ``step`` (from 1) of epoch ``epoch`` (and its checkpoint, if one was due).
        In a run with flat updates (:mod:`divekit.train.updates`), the optimizer's groups hold flat tensors here."""

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


class BestWeights(Callback):
    """Keep the weights of the epoch with the best validation metric in ``out_dir/best.pt`` beside the
    last checkpoint: the task's ``monitor`` metric (accuracy, highest; a loss, lowest) on the
    evaluation data, when that is a validation split held out of the training data. A book's test
    set (Fashion-MNIST's) is not used to pick an epoch: that would tune on the test set. The best so
    far is the one best.pt holds, so a resumed run keeps choosing among all its epochs (even one
    stopped between an epoch's checkpoint and this callback: that epoch's weights are gone, and it
    does not count). Under several processes every one calls it (FSDP gathers the shards); process 0 writes."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / BEST_NAME
        self.best: tuple[str, float] | None = None  # (metric, value) of best.pt, read from it once

    def on_epoch_end(self, trainer, record):
        monitor = getattr(trainer.task, "monitor", None)
        if monitor is None or trainer.eval_name != "val":
            return
        name, mode = f"val_{monitor[0]}", monitor[1]
        value = record.get(name)
        if value is None:
            return
        from divekit import io
        from divekit.train import distributed

        if self.best is None and distributed.world().main and self.path.exists():
            saved = io.load(self.path)
            self.best = (saved.get("metric"), saved.get("value"))
        better = self.best is None or self.best[0] != name or (value > self.best[1] if mode == "max"
                                                                else value < self.best[1])
        if not distributed.decided_by_main(better):  # process 0 holds best.pt: its verdict, in every process
            return
        state = distributed.full_model_state(trainer.model)  # every process: FSDP gathers the shards
        if distributed.world().main:
            io.save({"model": {k: v.detach().cpu() for k, v in state.items()}, "epoch": record["epoch"],
                     "metric": name, "value": value,
                     "model_card": trainer.run_info.get("model_card")}, self.path)  # what predict checks it against
        self.best = (name, value)


class NotebookCurves(Callback):
    """Show the training curves inline in a Jupyter notebook (Colab, Kaggle), redrawn in place after
    every epoch, as D2L's ``Animator`` does; outside a notebook nothing is shown."""

    def __init__(self):
        self.handle = None

    def on_epoch_end(self, trainer, record):
        from io import BytesIO

        from IPython.display import Image, display

        from divekit.viz.curves import plot_history

        buffer = BytesIO()
        plot_history(trainer.history).savefig(buffer, format="png")
        image = Image(data=buffer.getvalue(), format="png")
        if self.handle is None:
            self.handle = display(image, display_id=True)
        else:
            self.handle.update(image)


class TensorBoardLog(Callback):
    """Every epoch's metrics and the learning rate as TensorBoard scalars in ``out_dir/tensorboard``
    (``tensorboard --logdir runs`` shows all runs side by side). A resumed run appends to the same folder."""

    def __init__(self, out_dir: str | Path):
        self.log_dir = Path(out_dir) / TENSORBOARD_DIR
        self.writer = None

    def on_epoch_end(self, trainer, record):
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir))
        epoch = record["epoch"]
        for name, value in record.items():
            if name != "epoch" and isinstance(value, (int, float)):
                split = next((f"{prefix}/{name[len(prefix) + 1:]}" for prefix in sorted({"train", trainer.eval_name}, key=len, reverse=True)
                              if name.startswith(prefix + "_")), name)  # "train_full_r2" -> "train_full/r2"
                self.writer.add_scalar(split, value, epoch)
        self.writer.add_scalar("lr", trainer.epoch_lr, epoch)  # the rate of the epoch's last step
        self.writer.flush()

    def on_fit_end(self, trainer):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
