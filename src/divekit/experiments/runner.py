"""Run an experiment into a run folder, or resume one.

A run folder holds ``config.json`` (the experiment, every option, and the changes a resume made),
``metrics.csv`` (one row per epoch), ``curves.png``, ``checkpoint.pt`` and, when training finishes,
``summary.json`` with the final metrics beside the book's published ones, and the figures of the
experiment's probes. A run folder is made exclusively, a running or resumed run holds a lock on it
(a second process is refused), and a run that fails before it has written anything but its config
leaves no folder behind.

How ``divekit run NAME`` flows: the CLI makes the experiment's options (every value checked),
:func:`new_run_dir` makes a fresh folder, and :func:`run_experiment` writes ``config.json``, then
for a recipe :func:`prepare_training` builds its parts (data loaders, the model from the registry
on the run's ops twin, the task, the optimizer) and a :class:`~divekit.train.engine.Trainer`,
trains, runs the probes and writes the summary; for a demo it calls the function. Under torchrun
every process runs the same code and process 0 alone writes into the run folder
(:mod:`divekit.train.distributed`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import divekit
from divekit import io
from divekit.experiments.book import changed_options, compare, format_value as _fmt, verdict
from divekit.experiments.parts import RESUMABLE, LoadContext, Loaded, Probe
from divekit.experiments.registry import Demo, Experiment, Options, Parts, Recipe, get_experiment
from divekit.options import from_dict
from divekit.run_folder import (BEST_NAME, CHECKPOINT_NAME, CONFIG_NAME, LOCK_NAME, METRICS_NAME, MODEL_CARD,
                                SUMMARY_NAME, stamped_name)
from divekit.ops import get_ops
from divekit.optim import create_optimizer
from divekit.console import in_notebook
from divekit.train import distributed
from divekit.train.callbacks import BestWeights, CurvesFigure, NotebookCurves, TensorBoardLog
from divekit.train.checkpoint import read_checkpoint
from divekit.train.device import choose_device, prefer_channels_last, seed_everything
from divekit.train.engine import Trainer, history_to_csv
from divekit.train.tasks import Task

log = logging.getLogger("divekit")

@dataclass
class Setup:
    """Everything a recipe's training needs, built from its parts for one run."""

    model: nn.Module
    task: Task
    optimizer: torch.optim.Optimizer
    data: Loaded
    probes: tuple[Probe, ...] = ()
    scheduler: object | None = None
    model_config: dict = field(default_factory=dict)  # every field of the model's config, as built


def build_setup(recipe: Recipe, parts: Parts, device: torch.device) -> Setup:
    """Load the data, build the model from the registry on the run's ops twin, the task and the optimizer."""
    from divekit.models.registry import create_model, get_model, model_config

    ops = get_ops(parts.train.impl)
    data = parts.data.load(LoadContext(parts.train, parts.user, recipe.user_data_kind, device))
    distributed.split_data(data.train, data.eval)  # under torchrun: each process its share of every minibatch
    config_fields = {f.name for f in dataclasses.fields(get_model(recipe.model).config)}
    sizes = {name: value for name, value in data.model_fields.items() if name in config_fields}
    config = dataclasses.asdict(model_config(recipe.model, **sizes, **parts.model_args))
    model = prefer_channels_last(create_model(recipe.model, ops, **config).to(device), ops, device)
    model = distributed.shard_model(model, device)  # with --fsdp, before the optimizer sees the parameters
    optimizer = create_optimizer(parts.train.optimizer, model.parameters(), impl=parts.train.impl, lr=parts.train.lr,
                                 weight_decay=parts.train.weight_decay)
    return Setup(model, parts.task.build(ops, data), optimizer, data, parts.probes, model_config=config)


def build_trainer(train, setup: Setup, device: torch.device, *, out_dir: str | Path | None, progress: bool = True,
                  callbacks=(), run_info: dict | None = None) -> Trainer:
    """The trainer of a run, as the CLI makes it: the training options' epochs, precision,
    compilation and gradient clipping (with the clip function of its ``--impl``). Under torchrun,
    only the first process draws figures and writes weights and logs."""
    main = distributed.world().main
    return Trainer(
        setup.model,
        setup.task,
        setup.optimizer,
        epochs=train.epochs,
        device=device,
        scheduler=setup.scheduler,
        clip_grad_norm=train.clip_grad,
        clip_fn=get_ops(train.impl).clip_grad_norm,
        precision=train.precision,
        compile=train.compile,
        out_dir=out_dir,
        checkpoint_every=train.checkpoint_every,
        run_info=run_info,
        eval_name=setup.data.eval_name,
        progress=progress,
        callbacks=[*([CurvesFigure(out_dir)] if out_dir is not None and main else []),
                   *([BestWeights(out_dir)] if out_dir is not None else []),  # every process: FSDP gathers the shards
                   *([NotebookCurves()] if progress and main and in_notebook() else []),
                   *([TensorBoardLog(out_dir)] if train.tensorboard and out_dir is not None and main else []),
                   *callbacks],
    )


@dataclass
class Training:
    """A recipe made ready to train (:func:`prepare_training`)."""

    recipe: Recipe
    options: Options
    parts: Parts
    device: torch.device
    setup: Setup
    trainer: Trainer = field(repr=False)

    def fit(self) -> list[dict]:
        return self.trainer.fit(self.setup.data.train, self.setup.data.eval)


def prepare_training(experiment: str | Recipe, options: Options | None = None, *, out_dir: str | Path | None = None,
                     progress: bool = False, callbacks=(), **values) -> Training:
    """A recipe's data, model, task, optimizer and trainer, as ``divekit run`` builds them, without
    training yet: ``prepare_training("lenet", impl="scratch", epochs=1).fit()``. Seeds torch's
    generators with the run's seed first. ``values`` are options (used when ``options`` is None)."""
    recipe = get_experiment(experiment) if isinstance(experiment, str) else experiment
    if not isinstance(recipe, Recipe):
        raise ValueError(f"{recipe.name} is a demonstration, not a training recipe; run it with `divekit run {recipe.name}`")
    options = options if options is not None else recipe.make_options(**values)
    parts = recipe.parts(options)
    distributed.start()  # under torchrun: join its processes
    seed_everything(parts.train.seed)
    device = distributed.process_device(choose_device(parts.train.device))
    setup = build_setup(recipe, parts, device)
    trainer = build_trainer(parts.train, setup, device, out_dir=out_dir, progress=progress, callbacks=callbacks,
                            run_info=run_info(recipe, options, setup.data))
    return Training(recipe, options, parts, device, setup, trainer)


def run_info(recipe: Recipe, options: Options, data: Loaded) -> dict[str, Any]:
    """What a run's checkpoints belong to: the experiment, every option, and a fingerprint of the
    training data (so a checkpoint cannot continue on other data, another model or the other twin)."""
    return {"experiment": recipe.name, "config": options.to_dict(), "data": data.train.fingerprint()}


def new_run_dir(out_root: str | Path, experiment: Experiment, options: Options) -> Path:
    """Make ``OUT/NAME-IMPL-YYYYmmdd-HHMMSS`` (with a counter if that exists already), exclusively:
    two runs started in the same second get two folders. Under torchrun process 0 makes it and
    the others are told its name."""
    if distributed.world().enabled:
        made = _make_run_dir(out_root, experiment, options) if distributed.world().main else None
        return Path(distributed.gather_objects(made)[0])
    return _make_run_dir(out_root, experiment, options)


def _make_run_dir(out_root: str | Path, experiment: Experiment, options: Options) -> Path:
    for folder in (Path(out_root), *Path(out_root).parents):  # --out itself, or a folder it would be made in
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--out {out_root}: {folder} is a file; pass the folder to make the run folder in")
    impl = getattr(options, "impl", None)
    base = Path(out_root) / stamped_name(experiment.name, impl)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        run_dir = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"could not make a new run folder beside {base}; clean up {base.parent}")


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold ``run_dir``'s lock while training, so that no second process trains into the same folder;
    also clears the temporary files a killed process left there. Under torchrun process 0 holds it."""
    import fcntl

    if not distributed.world().main:
        yield
        return

    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(run_dir / LOCK_NAME).read_text().strip() or "another process"
            raise RuntimeError(f"{run_dir} is being trained by {holder}; wait for it to finish (or stop it) "
                               "before running or resuming it again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}".encode())
        for stale in run_dir.glob(".*.tmp"):  # an atomic write that a killed process never finished
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


@dataclass
class Run:
    """A finished run: its folder and its summary (``summary.json``'s contents)."""

    run_dir: Path
    summary: dict

    def load(self, **kwargs):
        """The trained model ready to predict (:func:`divekit.predict.load`)."""
        from divekit.predict import load

        return load(self.run_dir, **kwargs)

    def _repr_html_(self) -> str:
        """In a notebook: the results beside the book's, then every figure of the run."""
        import base64
        import html

        rows = "".join(f"<tr><td>{html.escape(r['metric'])}</td><td>{_fmt(r['ours'])}</td><td>{_fmt(r['book'])}</td>"
                       f"<td>{verdict(r)}</td></tr>"
                       for r in self.summary["reference"])
        table = (f"<table><tr><th>metric</th><th>ours</th><th>book</th><th></th></tr>{rows}</table>" if rows else "")
        final = ", ".join(f"{k} {_fmt(v)}" for k, v in self.summary["final"].items() if isinstance(v, float))
        figures = "".join(f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" '
                          f'alt="{p.stem}" style="max-width:48%">' for p in sorted(self.run_dir.glob("*.png")))
        return (f"<p><b>{html.escape(self.summary['experiment'])}</b> (D2L §{self.summary['section']}) in "
                f"<code>{html.escape(str(self.run_dir))}</code>. {html.escape(final)}</p>{table}{figures}")


def run(name: str, *, out: str | Path = "runs", progress: bool = True, **options) -> Run:
    """Run the experiment ``name`` with ``options`` (the ``divekit run NAME`` flags, as keywords:
    ``divekit.run("lenet", epochs=2, lr=0.5)``) into a new folder under ``out``, exactly as the
    command does: the same run folder, progress bar, log lines and summary; in a notebook the curves
    also show inline as it trains. A bad option is a ValueError saying what is allowed. It trains in
    this one process; several processes are `divekit run NAME --nproc N` (docs/DISTRIBUTED.md)."""
    from divekit.console import setup_logging

    setup_logging(only_if_unset=True)
    experiment = get_experiment(name)
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(experiment.options)})
    if unknown:
        raise ValueError(f"{name} has no option(s) {', '.join(unknown)}; `divekit run {name} --help` lists its options")
    made = experiment.make_options(**options)
    run_dir = new_run_dir(out, experiment, made)
    return Run(run_dir, run_experiment(experiment, made, run_dir, progress=progress))


def run_experiment(experiment: Experiment, options: Options, run_dir: str | Path, *, progress: bool = True) -> dict:
    """Run ``experiment`` with ``options`` into ``run_dir`` and return the summary. If the run fails
    before it writes anything but its config, the folder is removed again. A demonstration's
    ``preflight(options)`` runs before the run names its data: it refuses what the demonstration needs
    besides its data and cannot have (a BERT's pretrained weights)."""
    run_dir = Path(run_dir)
    if distributed.world().main and (run_dir / CONFIG_NAME).exists():  # (under torchrun, process 0 writes it)
        raise FileExistsError(f"{run_dir} already holds a run; use `divekit resume {run_dir}` to continue it")
    if isinstance(experiment, Demo) and distributed.world().enabled:
        raise ValueError(f"{experiment.name} is a demonstration: it runs in one process, without torchrun or --nproc")
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "experiment": experiment.name,
        "config": options.to_dict(),
        "divekit": divekit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "distributed": distributed.describe(getattr(options, "batch_size", None)),
        "changes": [],
    }
    start = time.perf_counter()
    try:
        with run_lock(run_dir):
            if distributed.world().main:
                io.write_json(run_dir / CONFIG_NAME, record)
            if isinstance(experiment, Demo):
                summary = _demo(experiment, options, run_dir)
            else:
                summary = _train(experiment, options, run_dir, progress=progress)
    except BaseException:
        if distributed.world().main:
            remove_if_unstarted(run_dir)
        raise
    log.info(_closing_line(run_dir, time.perf_counter() - start))
    return summary


def remove_if_unstarted(run_dir: Path) -> None:
    """Remove a run folder that holds nothing but its config and model card (the run failed or was stopped
    before its first checkpoint); one already gone (removed by the run's own process 0) is left as it is."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {CONFIG_NAME, LOCK_NAME, MODEL_CARD}:
        for name in (CONFIG_NAME, LOCK_NAME, MODEL_CARD):
            (run_dir / name).unlink(missing_ok=True)
        run_dir.rmdir()


def read_run_config(run_dir: Path) -> tuple[Experiment, dict]:
    """The experiment and the record of ``run_dir/config.json``, or a one-line error naming the file
    and what is wrong with it."""
    path = run_dir / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a divekit run folder (no {CONFIG_NAME})")
    record = io.read_json(path)  # a file that is not JSON: a ValueError that names it
    if not isinstance(record, dict) or not isinstance(record.get("experiment"), str) \
            or not isinstance(record.get("config"), dict):
        raise ValueError(f"{path} is not a divekit run config: it needs an \"experiment\" name and a \"config\" "
                         "object of options; restore it or start the run again")
    return get_experiment(record["experiment"]), record


def resume_run(run_dir: str | Path, changes: dict[str, Any] | None = None, *, progress: bool = True) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint (written at the end of an epoch, or
    within one). ``changes`` sets options that may change on the way (``RESUMABLE``: more epochs, a
    new learning rate, another device, ...); they apply from here on and are recorded in config.json.
    A config.json edited by hand since the checkpoint is refused: pass the change instead."""
    run_dir = Path(run_dir)
    experiment, record = read_run_config(run_dir)
    saved_record = copy.deepcopy(record)  # config.json as it is, put back if the resume stops before a checkpoint
    if isinstance(experiment, Demo):
        raise ValueError(f"{experiment.name} is a demonstration without checkpoints; run it again instead of resuming")
    changes = dict(changes or {})
    fixed = sorted(set(changes) - set(RESUMABLE))
    if fixed:
        raise ValueError(f"--{fixed[0].replace('_', '-')} cannot change when a run resumes (it shapes the model or the "
                         f"data); a resume may change {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)}")
    recorded = from_dict(experiment.options, record["config"], str(run_dir / CONFIG_NAME))
    checkpoint = run_dir / CHECKPOINT_NAME
    if not checkpoint.exists():
        with run_lock(run_dir):  # a run still training before its first checkpoint: say that instead
            pass
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT_NAME} to resume from (the run stopped before its "
                                "first checkpoint); start it again")
    saved = read_checkpoint(checkpoint)
    saved_config = saved["run"].get("config", {})
    edited = {k: (saved_config.get(k), v) for k, v in recorded.to_dict().items()
              if k in RESUMABLE and k in saved_config and saved_config[k] != v}
    last = (record.get("changes") or [{}])[-1]
    if edited and (last.get("after_epoch"), last.get("step")) == (saved["epoch"], saved["step"]) \
            and all(k in last and last[k] == b for k, (a, b) in edited.items()) and "processes" not in last:
        # a resume recorded these changes and was killed before its first checkpoint (SIGKILL, power loss): undo
        # them, under the run's lock (a resume still training before its first checkpoint looks the same)
        record["config"].update({k: a for k, (a, b) in edited.items()})
        record["changes"].pop()
        saved_record = copy.deepcopy(record)
        with run_lock(run_dir):
            if distributed.world().main:
                io.write_json(run_dir / CONFIG_NAME, record)
        undone = ", ".join(f"--{k.replace('_', '-')} {b}" for k, (a, b) in edited.items())
        log.warning(f"the last resume of {run_dir} stopped before its first checkpoint; its changes ({undone}) are "
                    "undone: pass them again to keep them")
        recorded, edited = from_dict(experiment.options, record["config"], str(run_dir / CONFIG_NAME)), {}
    if edited:  # other differences mean another run's checkpoint: the trainer says so below
        names = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in edited.items())
        flags = " ".join(f"--{k.replace('_', '-')} {b}" for k, (a, b) in edited.items())
        raise ValueError(f"{run_dir / CONFIG_NAME} was edited since the last checkpoint ({names}); put it back, and "
                         f"pass a change as an option instead: `divekit resume {run_dir} {flags}`")
    finished = saved["epoch"]
    epochs = changes.get("epochs", recorded.epochs)
    unsummarized = epochs == finished and not saved["step"] and not (run_dir / SUMMARY_NAME).exists()
    if epochs <= finished and not unsummarized:  # within an epoch too: that epoch is number finished + 1
        done = f"has trained {finished} epochs and part of the next" if saved["step"] else \
            f"has finished its {finished} epochs"
        raise ValueError(f"{run_dir} {done}; pass --epochs N (more than {finished}) to train it further")
    data = record["config"].get("data")
    if isinstance(data, str) and not Path(data).exists():
        raise FileNotFoundError(f"the run's data {data} (its --data, in {run_dir / CONFIG_NAME}) is gone; put it back "
                                "there to resume the run (a resume cannot change --data)")
    options = experiment.make_options(**{**recorded.to_dict(), **changes})
    start = time.perf_counter()
    with run_lock(run_dir):
        training = prepare_training(experiment, options, out_dir=run_dir, progress=progress)
        _model_card(training)  # its fingerprint into the trainer's run_info, for the checkpoints to come
        expected = run_info(experiment, recorded, training.setup.data)
        if "model_card" in saved["run"]:  # checkpoints written before divekit recorded it have none
            expected["model_card"] = training.trainer.run_info["model_card"]
        training.trainer.resume_from_checkpoint(expected_run=expected)
        applied = {k: v for k, v in changes.items() if getattr(recorded, k) != v}
        split, before = distributed.describe(options.batch_size), record.get("distributed") or {"processes": 1}
        applied.update({k: split[k] for k in ("processes", "strategy") if before.get(k) != split[k]})
        record["distributed"] = split
        if applied:
            if "lr" in applied:
                _scale_learning_rate(training.trainer, applied["lr"] / recorded.lr)
            record["config"] = options.to_dict()
            record.setdefault("changes", []).append({"after_epoch": finished, "step": saved["step"], **applied})
            if distributed.world().main:
                io.write_json(run_dir / CONFIG_NAME, record)
        log.info(f"{experiment.name} ({experiment.section}, impl {training.parts.train.impl}) resumed on "
                 f"{training.setup.data.name} with {training.device}; run folder {run_dir}")
        try:
            summary = _finish_training(training, run_dir)
        except BaseException:  # stopped before a checkpoint of the new options: config.json as that checkpoint
            if applied and distributed.world().main and read_checkpoint(checkpoint)["run"] == saved["run"]:
                io.write_json(run_dir / CONFIG_NAME, saved_record)
            raise
    log.info(_closing_line(run_dir, time.perf_counter() - start))
    return summary


def _scale_learning_rate(trainer: Trainer, factor: float) -> None:
    """Multiply every parameter group's learning rate (and a scheduler's base rates) by ``factor``."""
    for group in trainer.optimizer.param_groups:
        group["lr"] *= factor
    if trainer.scheduler is not None and hasattr(trainer.scheduler, "base_lrs"):
        trainer.scheduler.base_lrs = [lr * factor for lr in trainer.scheduler.base_lrs]


def _demo(experiment: Demo, options: Options, run_dir: Path) -> dict:
    values = options.to_dict()
    if experiment.preflight is not None:
        experiment.preflight(options)
    seed_everything(values.get("seed", 0))
    log.info(f"{experiment.name} ({experiment.section}) on {experiment.dataset}; run folder {run_dir}")
    start = time.perf_counter()
    outcome = experiment.function(**values)
    if outcome.rows:
        io.write_text(run_dir / METRICS_NAME, history_to_csv(outcome.rows))
    for name, text in outcome.files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"{experiment.name} returned a file named {name!r}; a demonstration's files must be "
                             "plain names inside the run folder")
        io.write_text(run_dir / name, text)
    _save_figures(outcome.figures, run_dir)
    device = choose_device(values["device"]) if "device" in values else torch.device("cpu")
    return _summarize(experiment, options, run_dir, device, data_name=experiment.dataset, history=[],
                      results=outcome.results, train_seconds=time.perf_counter() - start)


def _save_figures(figures: dict, run_dir: Path) -> None:
    from divekit.viz.images import save_figure

    if not distributed.world().main:
        return

    for name, figure in figures.items():
        save_figure(figure, run_dir / f"{name}.png")


def _train(recipe: Recipe, options: Options, run_dir: Path, *, progress: bool) -> dict:
    training = prepare_training(recipe, options, out_dir=run_dir, progress=progress)
    card = _model_card(training)
    if distributed.world().main:
        io.write_json(run_dir / MODEL_CARD, card)
    log.info(f"{recipe.name} ({recipe.section}, impl {training.parts.train.impl}) on {training.setup.data.name} "
             f"with {training.device}; run folder {run_dir}")
    return _finish_training(training, run_dir)


def _model_card(training: Training) -> dict:
    """The run's model.json (:func:`divekit.predict.model_card`); its fingerprint goes into the trainer's
    ``run_info``, so every checkpoint records which model card its weights belong to."""
    from divekit.predict import card_fingerprint, model_card

    card = model_card(experiment=training.recipe.name, model=training.recipe.model, impl=training.parts.train.impl,
                      config=training.setup.model_config, inputs=training.setup.data.inputs)
    training.trainer.run_info["model_card"] = card_fingerprint(card)
    return card


def _finish_training(training: Training, run_dir: Path) -> dict:
    history = training.fit()
    results = {}
    for probe in training.setup.probes:
        probe_results, figures = probe.run(training.setup.model, training.setup.data, training.device)
        results.update(probe_results)
        _save_figures(figures, run_dir)
    return _summarize(training.recipe, training.options, run_dir, training.device, data_name=training.setup.data.name,
                      history=history, results=results, train_seconds=sum(r["seconds"] for r in history),
                      warnings=_learning_warnings(training, history), idle=_idle_options(training))


def _idle_options(training: Training) -> tuple[str, ...]:
    """Options set away from the book's that left the run the book's: a --limit N above the size of every
    loader's data (its examples, or a language model's tokens). A data part keeps the first N (or N drawn),
    so a loader holding exactly N may have held more: that limit counts as a change."""
    limit, data = training.parts.train.limit, training.setup.data
    if limit is None:
        return ()
    sizes = [_num_examples(loader) for loader in (data.train, data.eval) if loader is not None]
    return ("limit",) if all(size is not None and size < limit for size in sizes) else ()


def _num_examples(loader) -> int | None:
    """The examples a loader holds (a language model's: its corpus's tokens), or None where it does not say."""
    if hasattr(loader, "num_examples"):
        return loader.num_examples
    return len(loader.corpus) if hasattr(loader, "corpus") else None


# a user's classifier whose accuracy is within this of always answering the commonest class has not learned
CHANCE_MARGIN = 0.02


def _learning_warnings(training: Training, history: list[dict]) -> list[str]:
    """What the user should know about a run on their own data that did not learn: a classifier no
    better than always answering its commonest class, and what to change."""
    data, user = training.setup.data, training.parts.user
    split_data = data.info
    if user is None or user.data is None or not history or getattr(split_data, "classes", None) is None:
        return []
    accuracy = history[-1].get(f"{data.eval_name}_acc")
    if accuracy is None or data.eval is None or len(data.eval.data.y) == 0:
        return []
    labels = data.eval.data.y  # the examples the accuracy is measured on (--limit N of them)
    commonest = float(labels.bincount(minlength=len(split_data.classes)).max()) / len(labels)
    if accuracy > commonest + CHANCE_MARGIN:
        return []
    name = training.recipe.name
    advice = (f"`divekit run image-classifier --data {user.data}` (batch norm and Adam, made for small data sets)"
              if name != "image-classifier" and split_data.train.X.dim() == 4 else "more --epochs")
    return [f"{data.eval_name}_acc {accuracy:.3f} is no better than always answering the commonest class "
            f"({commonest:.3f}): the model has not learned from {data.name}. The book's settings for {name} are "
            f"made for its own data; try {advice}, or another --lr"]


def _summarize(experiment: Experiment, options: Options, run_dir: Path, device, *, data_name: str,
               history: list[dict], results: dict, train_seconds: float, warnings: list[str] = (),
               idle: tuple[str, ...] = ()) -> dict:
    """Write summary.json (final metrics, results, the book's numbers beside ours) and log it. ``idle``:
    options that differ from the book's but changed nothing (:func:`_idle_options`)."""
    final = {k: v for k, v in history[-1].items() if k != "epoch"} if history else {}
    config = options.to_dict()
    impl = config.get("impl", experiment.default_impl)
    defaults = experiment.make_options(**({"impl": impl} if "impl" in config else {})).to_dict()
    changed = {name: value for name, value in changed_options(defaults, config, experiment.name, impl,
                                                              experiment.display_options).items() if name not in idle}
    reference = compare(experiment.name, impl, {**final, **results}, config)
    if "data" in changed:  # the user's own data: the book has nothing to say about it
        reference = []
    elif changed:  # not the book's settings: shown beside, not held to
        reference = [{**row, "reached": None} for row in reference]
    summary = {
        "experiment": experiment.name,
        "section": experiment.section,
        "title": experiment.title,
        "impl": impl,
        "data": data_name,
        "device": str(device),
        "epochs": len(history),
        "train_seconds": train_seconds,
        "final": final,
        "results": results,
        "comparable": not changed,
        "changed": changed,
        "reference": reference,
        "warnings": list(warnings),
        "config": config,
    }
    if distributed.world().main:
        io.write_json(run_dir / SUMMARY_NAME, summary)
    compared = {row["metric"] for row in reference}
    for key, value in results.items():
        if key not in compared:  # those are shown beside the book's below
            log.info(_format_result(key, value))
    if changed and reference:
        flags = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in changed.items())
        log.info(f"not compared with the book: this run changed the book's settings ({flags})")
    for row in reference:
        said = verdict(row).replace("not reached", "NOT reached")
        low, high = row["spread"]
        log.info(f"{row['metric']}: ours {_fmt(row['ours'])}, book {_fmt(row['book'])} (builds {_fmt(low)}-{_fmt(high)}): {said}")
    for warning in warnings:
        log.warning(warning)
    return summary


def _format_result(key: str, value) -> str:
    """A result as a person reads it: numbers to 4 digits, a table (a list of records) one row a line."""
    def plain(v):
        if isinstance(v, float):
            return _fmt(v)
        if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
            return "[" + ", ".join(_fmt(float(x)) if isinstance(x, float) else str(x) for x in v) + "]"
        if isinstance(v, dict):
            return ", ".join(f"{k} {plain(x)}" for k, x in v.items())
        return str(v)

    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return "\n".join([f"{key}:"] + [f"  {plain(row)}" for row in value])
    return f"{key}: {plain(value)}"


def _closing_line(run_dir: Path, seconds: float) -> str:
    """Where everything went and what to run next."""
    files = ", ".join(sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")))
    lines = [f"done in {_duration(seconds)}; the run folder {run_dir} holds {files}"]
    if distributed.world().main and (run_dir / BEST_NAME).exists():  # predict, evaluate and export take it
        best = io.load(run_dir / BEST_NAME, mmap=True)  # its epoch and value, not its weights
        lines.append(f"best.pt holds epoch {best['epoch']} ({best['metric']} {_fmt(best['value'])}): predict, "
                     f"evaluate and export use it; --weights last takes the last epoch's")
    example = _PREDICT_EXAMPLES.get(_inputs_kind(run_dir))
    if example:
        lines.append(f"next: `divekit predict {run_dir} {example}`, `divekit evaluate {run_dir} --data ...`, "
                     f"or `divekit report {run_dir.parent}`")
    else:
        lines.append(f"next: `divekit report {run_dir.parent}` compares all the runs there with the book")
    return "\n".join(lines)


_PREDICT_EXAMPLES = {"images": "IMAGE.png ...", "detection": "IMAGE.png ...", "table": "TABLE.csv",
                     "text": '"time traveller"',
                     "translation": '"i\'m home ."'}


def _inputs_kind(run_dir: Path) -> str | None:
    path = run_dir / MODEL_CARD
    if not path.exists():
        return None
    inputs = io.read_json(path).get("inputs")
    return inputs.get("kind") if isinstance(inputs, dict) else None


def _duration(seconds: float) -> str:
    """"1m 52s", "8.3s"."""
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
