"""The training engine (D2L §3.6's ``train_ch3``, made for the whole book).

One visible loop runs any :class:`~divekit.train.tasks.Task` on any model with any optimizer:
device choice, bf16 autocast, ``torch.compile``, gradient clipping, a progress bar with live loss
and throughput, evaluation each epoch, metrics to CSV, an atomic checkpoint each epoch and, every
``checkpoint_every`` seconds, within an epoch too, resume from either to the same result as an
uninterrupted run, and callbacks (:mod:`divekit.train.callbacks`: figures and anything else around
the loop). Metric sums stay on the device and are read once per epoch; the loss is looked at every
``log_every`` steps, which is also when a NaN or infinite loss stops the run. No checkpoint is ever
written with a non-finite loss or non-finite parameters: the last good one is kept.
"""

from __future__ import annotations

import contextlib
import csv
from io import StringIO
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from divekit import io
from divekit.console import in_notebook
from divekit.data.batch import Batch
from divekit.train import distributed
from divekit.train.callbacks import Callback
from divekit.run_folder import CHECKPOINT_NAME, METRICS_NAME
from divekit.train.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from divekit.train.device import autocast, reuse_freed_memory
from divekit.train.metrics import MetricSums
from divekit.train.tasks import Task
from divekit.train.updates import ParameterUpdates

log = logging.getLogger("divekit")

EPOCH_LINES = 20  # about how many epoch lines a long run logs


class NonFiniteLossError(RuntimeError):
    """The loss (or, after the last update, a parameter) became NaN or infinite; the last good
    checkpoint is left as it was."""

    def __init__(self, epoch: int, step: int, value: float | str, checkpoint: Path | None, what: str = "loss",
                 low_precision: bool = False):
        self.epoch, self.step, self.value, self.checkpoint = epoch, step, value, checkpoint
        kept = (
            f"the last good checkpoint is kept at {checkpoint}"
            if checkpoint is not None and checkpoint.exists()
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"{what} became {value} at epoch {epoch}, step {step}; training stopped and {kept}. "
            "Try a smaller learning rate (--lr)" + (", gradient clipping (--clip-grad), or fp32 precision (--precision "
                                                     "fp32)." if low_precision else " or gradient clipping (--clip-grad).")
        )



def _to_device(batch, device: torch.device):
    if isinstance(batch, Batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {name: _to_device(value, device) for name, value in batch.items()}
    return batch


def _yields_on(loader, device: torch.device) -> bool:
    """Whether ``loader`` already makes its batches on ``device`` (a TensorLoader does), so the
    per-step move can be skipped."""
    return getattr(loader, "device", None) == device


class Trainer:
    """Fit a model on a task.

    Args:
        model: any ``nn.Module``; it is moved to ``device``.
        task: turns a batch into a loss and metric sums.
        optimizer: any ``torch.optim.Optimizer`` (divekit's scratch optimizers are ones too).
        epochs: total number of epochs (a resumed run continues up to it).
        device: a ``torch.device`` (see :func:`divekit.train.device.choose_device`).
        scheduler: an optional learning-rate scheduler, stepped per epoch or per step
            (``scheduler_interval``).
        clip_grad_norm: clip the global gradient norm to this value (D2L §8.5.5).
        clip_fn: how to clip, ``clip_fn(parameters, max_norm)``: torch's ``clip_grad_norm_`` by
            default, or the scratch ``divekit.ops.scratch.clip_grad_norm``.
        precision: "fp32" or "bf16" (autocast of the forward pass and loss).
        compile: run the forward pass through ``torch.compile``.
        out_dir: where metrics and checkpoints go; ``None`` writes nothing.
        checkpoint_every: seconds between checkpoints within an epoch (``None``: at the end of
            each epoch only; 0: after every step).
        run_info: what the checkpoints belong to (the experiment, its options, its data's
            fingerprint); resuming from a checkpoint with other ``run_info`` is refused.
        eval_name: what the evaluation loader is called in metric names ("test", "val").
        progress: show a progress bar.
        log_every: steps between looks at the loss (progress bar text and the NaN check).
        callbacks: :class:`~divekit.train.callbacks.Callback` objects (e.g. ``CurvesFigure(out_dir)``).
        verbose: log a line per epoch (at DEBUG level when False, e.g. inside cross-validation).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        device: torch.device | str = "cpu",
        scheduler=None,
        scheduler_interval: str = "epoch",
        clip_grad_norm: float | None = None,
        clip_fn: Callable[[list[torch.Tensor], float], torch.Tensor] = torch.nn.utils.clip_grad_norm_,
        precision: str = "fp32",
        compile: bool = False,
        out_dir: str | Path | None = None,
        checkpoint_every: float | None = None,
        run_info: dict | None = None,
        eval_name: str = "val",
        progress: bool = True,
        log_every: int = 50,
        callbacks: Sequence[Callback] = (),
        verbose: bool = True,
    ):
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        if clip_grad_norm is not None and clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm}")
        self.device = torch.device(device)
        if self.device.type == "cpu":
            reuse_freed_memory()
        self.model = model.to(self.device)
        parallel = distributed.data_parallel(self.model, self.device)  # DDP under torchrun, else the model
        self.forward_model = torch.compile(parallel) if compile else parallel
        self.task = task
        self.optimizer = optimizer
        self.compile = compile
        self._updates: ParameterUpdates | None = None  # during fit: how each step updates the parameters
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.epochs = epochs
        self.clip_grad_norm = clip_grad_norm
        self.clip_fn = clip_fn
        self._autocast = autocast(self.device, precision)  # validates the precision now; reusable per step
        self.low_precision = precision != "fp32"
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.run_info = run_info or {}
        self.eval_name = eval_name
        self.progress = progress and distributed.world().main
        self.log_every = max(1, log_every)
        self.callbacks = list(callbacks)
        self.epoch_log_level = logging.INFO if verbose else logging.DEBUG
        self.history: list[dict] = []
        self.epoch_lr: float | None = None  # the learning rate of the last step of the epoch just trained
        self.epoch = 0  # epochs finished
        self.step = 0  # batches of epoch ``self.epoch + 1`` finished (when resumed within an epoch)
        self._resumed_sums: MetricSums | None = None
        self._stop_asked = False  # Ctrl-C or SIGTERM during fit: stop after this step, with its checkpoint

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    # -- the loop ------------------------------------------------------------------------------

    def fit(self, train_loader: Iterable, eval_loader: Iterable | None = None, *, resume: bool = False) -> list[dict]:
        """Train up to ``epochs`` from where the trainer is; with ``resume``, first load
        ``out_dir``'s checkpoint (see :meth:`resume_from_checkpoint`)."""
        if resume:
            self.resume_from_checkpoint()
        # one bar for the whole run: its ETA is the run's; a line per epoch above it
        # off where nobody watches: a log file would fill with the bar's redraws (a notebook's output is no terminal)
        shown = self.progress and (in_notebook() or sys.stderr.isatty())
        self._bar = tqdm(total=None, disable=not shown, leave=False, unit="batch", dynamic_ncols=True)
        try:
            self._updates = ParameterUpdates.for_run(self.model, self.optimizer, self.device, self.compile)
            with self._stop_after_a_step():
                self._fit(train_loader, eval_loader)
        finally:
            if self._updates is not None:
                self._updates.close()
            self._updates = None
            self._bar.close()
            for callback in self.callbacks:
                callback.on_fit_end(self)
        return self.history

    def _fit(self, train_loader: Iterable, eval_loader: Iterable | None) -> None:
        """The epochs left: train, evaluate, checkpoint; stopped where asked (see :meth:`_stop_after_a_step`)."""
        while self.epoch < self.epochs:
            epoch = self.epoch + 1
            record = {"epoch": epoch, **self._train_epoch(train_loader, epoch)}
            if eval_loader is not None:
                metrics = self.evaluate(eval_loader)
                record.update({f"{self.eval_name}_{k}": v for k, v in metrics.items()})
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
            self.history.append(record)
            self.epoch, self.step = epoch, 0
            log.log(self._epoch_level(epoch), _format_record(record, self.epochs))
            with self._updates.per_parameter_state():  # what a checkpoint and the callbacks see
                self._save(MetricSums())
                for callback in self.callbacks:
                    callback.on_epoch_end(self, record)
            if self._stop_asked and self.epoch < self.epochs:  # asked during the evaluation: saved just now
                raise KeyboardInterrupt

    @contextlib.contextmanager
    def _stop_after_a_step(self):
        """Ctrl-C or SIGTERM while one process trains with checkpoints: the step under way finishes, a checkpoint
        of it is written, then KeyboardInterrupt, so a resume continues where it stopped (not from the last
        periodic checkpoint, or nothing); a second one stops at once. Elsewhere (torchrun's processes, a thread,
        no run folder) signals act as they would."""
        import signal
        import threading

        self._stop_asked = False
        if self.checkpoint_path is None or distributed.world().enabled \
                or threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask(signum, frame):
            if self._stop_asked:
                raise KeyboardInterrupt
            self._stop_asked = True
            tqdm.write("stopping after this step, with a checkpoint (again to stop at once)", file=sys.stderr)

        previous = {number: signal.signal(number, ask) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _epoch_level(self, epoch: int) -> int:
        """Log level of an epoch's line: every epoch of a short run; of a long one the first, the last
        and about twenty between (the rest at DEBUG, and all of them in metrics.csv)."""
        every = -(-self.epochs // EPOCH_LINES)
        shown = epoch in (1, self.epochs) or epoch % every == 0
        return self.epoch_log_level if shown else logging.DEBUG

    def _train_epoch(self, loader: Iterable, epoch: int) -> dict:
        """One pass over ``loader``; after a resume within the epoch, its first ``self.step``
        batches (the same ones: the loader's order is fixed per epoch) are skipped and the epoch's
        sums and task state continue from the checkpoint. ``seconds`` then covers what is left, and the
        throughput the examples (tokens, ...) trained in it."""
        self.model.train()
        resumed_at, sums = self.step, self._resumed_sums or MetricSums()
        if resumed_at == 0:
            self.task.start_epoch(training=True)
        self._resumed_sums = None
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        updates = self._updates
        updates.start_epoch([p for p in self.model.parameters() if p.requires_grad])
        window: list[torch.Tensor] = []  # losses since the last look, left on the device
        bar = self._bar
        per_epoch = len(loader) if hasattr(loader, "__len__") else None
        if per_epoch is not None:
            # the first epoch this process trains counts what came before as done
            done = (epoch - 1) * per_epoch + resumed_at if bar.total is None else bar.n
            total = done + (per_epoch - resumed_at) + per_epoch * (self.epochs - epoch)
            if total != bar.total:  # reset: a notebook's bar takes its length only from there
                bar.reset(total=total)
                bar.n = bar.initial = bar.last_print_n = done
        bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)
        self.epoch_lr = self.optimizer.param_groups[0]["lr"]
        start = last_save = time.perf_counter()
        counted_before = sums.totals().get(self.task.count_key, 0.0) if resumed_at else 0.0  # trained before a resume
        step = resumed_at
        on_device = _yields_on(loader, self.device)
        for step, batch in enumerate(loader, 1):
            if step <= resumed_at:
                continue  # trained before the checkpoint this run resumed from
            if not on_device:
                batch = _to_device(batch, self.device)
            with self._autocast:
                out = self.task.step(self.forward_model, batch, training=True)
            if updates.optimizer is not self.optimizer:  # a callback gave the trainer another optimizer
                updates.close()
                updates = self._updates = ParameterUpdates.for_run(self.model, self.optimizer, self.device,
                                                                    self.compile)
            updates.zero_grad()
            share = 1.0 if self.task.whole_minibatch_loss else getattr(loader, "share_weight", 1.0)  # TensorLoader.shard
            (out.loss if share == 1.0 else out.loss * share).backward()
            if self.clip_grad_norm is not None:
                updates.clip(self.clip_fn, self.clip_grad_norm)
            self.epoch_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step trains at
            updates.step()
            if self.scheduler is not None and self.scheduler_interval == "step":
                self.scheduler.step()
            sums.add(out.sums)
            window.append(out.loss.detach())
            if step % self.log_every == 0:
                bar.set_postfix(loss=f"{self._check_losses(window, epoch, step):.4g}", refresh=False)
                window = []
            bar.update()
            self.step = step
            stop = self._stop_asked  # read once: a signal may come between here and the raise
            if stop or self._checkpoint_due(step, time.perf_counter() - last_save):
                if window:
                    self._check_losses(window, epoch, step)
                    window = []
                self._save(sums)
                last_save = time.perf_counter()
            if stop:
                raise KeyboardInterrupt
            for callback in self.callbacks:
                callback.on_step_end(self, epoch, step)
        if window:
            self._check_losses(window, epoch, step)
        totals = sums.totals()
        seconds = time.perf_counter() - start
        record = {f"train_{k}": v for k, v in self.task.summarize(totals).items()}
        record["seconds"] = seconds
        trained = totals.get(self.task.count_key, 0.0) - counted_before  # in these seconds
        record[f"{self.task.count_unit}_per_s"] = trained / max(seconds, 1e-9)
        return record

    def _checkpoint_due(self, step: int, seconds_since_save: float) -> bool:
        """Whether to write a checkpoint after ``step``; under torchrun all processes write together,
        when process 0's clock says so, at the steps where the losses are looked at."""
        if self.checkpoint_every is None:
            return False
        due = seconds_since_save >= self.checkpoint_every
        if not distributed.world().enabled or self.checkpoint_every == 0:
            return due
        return step % self.log_every == 0 and distributed.decided_by_main(due)

    def _check_losses(self, window: list[torch.Tensor], epoch: int, last_step: int) -> float:
        """Stop on the first non-finite loss in ``window`` (which ends at ``last_step``); under
        torchrun the losses are averaged over the processes first, so all stop together."""
        losses = distributed.mean_over_processes(torch.stack(window).float())
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0])
            raise NonFiniteLossError(epoch, last_step - len(window) + 1 + first, float(losses[first]), self.checkpoint_path,
                                     low_precision=self.low_precision)
        return float(losses.mean())

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Metrics of the model over one pass of ``loader``, in eval mode."""
        return evaluate(self.forward_model, self.task, loader, self.device, self._autocast)

    # -- files ---------------------------------------------------------------------------------

    def resume_from_checkpoint(self, expected_run: dict | None = None) -> None:
        """Load ``out_dir``'s checkpoint: model, optimizer, scheduler and random states, the history,
        and, for a checkpoint written within an epoch, that epoch's sums and task state. A
        checkpoint of another run (its ``run_info`` is not ``expected_run``, by default this
        trainer's ``run_info``) is refused with what differs."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {path}")
        state = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                expected_run=self.run_info if expected_run is None else expected_run)
        self.epoch, self.step, self.history = state.epoch, state.step, state.history
        if distributed.world().main and self.out_dir is not None:  # a row lost to a stop between the two files
            io.write_text(self.out_dir / METRICS_NAME, history_to_csv(self.history))
        if state.step:
            self._resumed_sums = MetricSums()
            self._resumed_sums.load_state_dict(state.sums, self.device)
            self.task.load_state_dict(distributed.rows_of_process(_to_device(state.task, self.device),
                                                                  self.task.state_batch_dim))
        where = f"epoch {self.epoch}" + (f" and {self.step} batches of epoch {self.epoch + 1}" if self.step else "")
        log.info(f"resumed from {path} after {where}")

    def _save(self, sums: MetricSums) -> None:
        """Write the checkpoint (then metrics.csv), unless training has diverged: a checkpoint never
        holds non-finite parameters, so the last good one stays. Under torchrun every process
        takes part (the state of the whole run is gathered) and process 0 writes."""
        if self.out_dir is None:
            return
        bad = next((name for name, p in self.model.named_parameters()
                    if not bool(torch.isfinite(distributed.local_part(p)).all())), None)
        bad = distributed.first_found(bad)  # FSDP: each process looks at its shards
        if bad is not None:
            raise NonFiniteLossError(self.epoch + (self.step > 0), self.step, f"non-finite (in {bad})",
                                     self.checkpoint_path, what="a parameter", low_precision=self.low_precision)
        task = distributed.gather_rows(self.task.state_dict(), self.task.state_batch_dim) if self.step else {}
        state = TrainingState(self.epoch, self.step, self.history, sums.state_dict(), task, self.run_info)
        with self._updates.per_parameter_state() if self._updates else contextlib.nullcontext():
            save_checkpoint(self.checkpoint_path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                            state=state)
        if distributed.world().main:
            io.write_text(self.out_dir / METRICS_NAME, history_to_csv(self.history))


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, loader: Iterable, device: torch.device,
             precision_context=contextlib.nullcontext()) -> dict[str, float]:
    """The task's metrics of ``model`` over one pass of ``loader``, in eval mode (the trainer's
    evaluation each epoch, and ``divekit evaluate``)."""
    model.eval()
    task.start_epoch(training=False)
    sums = MetricSums()
    on_device = _yields_on(loader, device)
    for batch in loader:
        if not on_device:
            batch = _to_device(batch, device)
        with precision_context:
            sums.add(task.step(model, batch, training=False).sums)
    return task.summarize(sums.totals())


def history_to_csv(history: list[dict]) -> str:
    columns = list(dict.fromkeys(k for record in history for k in record))
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def _format_record(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}"]
    for key, value in record.items():
        if key == "epoch":
            continue
        if key.endswith("_per_s"):
            parts.append(f"{value:,.0f} {key[:-6]}/s")
        elif key == "seconds":
            parts.append(f"{value:.1f}s")
        else:
            parts.append(f"{key} {value:.4g}")
    return "  ".join(parts)
