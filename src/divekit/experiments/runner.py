"""Run an experiment into a run folder, or resume one.

A run folder holds ``config.json`` (the experiment and every option), ``metrics.csv`` (one row per
epoch), ``curves.png``, ``checkpoint.pt`` and, when training finishes, ``summary.json`` with the
final metrics beside the book's published ones, and the figures of the experiment's probes.

How ``divekit run NAME`` flows: the CLI makes the experiment's options (every value checked),
:func:`new_run_dir` makes a fresh folder, and :func:`run_experiment` writes ``config.json``, then
for a recipe :func:`prepare_training` builds its parts (data loaders, the model from the registry
on the run's ops twin, the task, the optimizer) and a :class:`~divekit.train.engine.Trainer`,
trains, runs the probes and writes the summary; for a demo it calls the function.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import divekit
from divekit import io
from divekit.experiments.book import changed_options, compare, format_value as _fmt
from divekit.experiments.parts import LoadContext, Loaded, Probe
from divekit.experiments.registry import Demo, Experiment, Options, Parts, Recipe, get_experiment
from divekit.options import from_dict
from divekit.ops import get_ops
from divekit.optim import create_optimizer
from divekit.train.callbacks import CurvesFigure
from divekit.train.device import choose_device, prefer_channels_last, seed_everything
from divekit.train.engine import METRICS_NAME, Trainer, history_to_csv
from divekit.train.tasks import Task

log = logging.getLogger("divekit")

CONFIG_NAME = "config.json"
SUMMARY_NAME = "summary.json"


@dataclass
class Setup:
    """Everything a recipe's training needs, built from its parts for one run."""

    model: nn.Module
    task: Task
    optimizer: torch.optim.Optimizer
    data: Loaded
    probes: tuple[Probe, ...] = ()
    scheduler: object | None = None


def build_setup(recipe: Recipe, parts: Parts, device: torch.device) -> Setup:
    """Load the data, build the model from the registry on the run's ops twin, the task and the optimizer."""
    from divekit.models.registry import create_model, get_model

    ops = get_ops(parts.train.impl)
    data = parts.data.load(LoadContext(parts.train, parts.user, recipe.user_data_kind, device))
    config_fields = {f.name for f in dataclasses.fields(get_model(recipe.model).config)}
    sizes = {name: value for name, value in data.model_fields.items() if name in config_fields}
    model = prefer_channels_last(create_model(recipe.model, ops, **sizes, **parts.model_args).to(device), ops, device)
    optimizer = create_optimizer(parts.train.optimizer, model.parameters(), impl=parts.train.impl, lr=parts.train.lr)
    return Setup(model, parts.task.build(ops, data), optimizer, data, parts.probes)


def build_trainer(train, setup: Setup, device: torch.device, *, out_dir: str | Path | None, progress: bool = True,
                  callbacks=()) -> Trainer:
    """The trainer of a run, as the CLI makes it: the training options' epochs, precision,
    compilation and gradient clipping (with the clip function of its ``--impl``)."""
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
        eval_name=setup.data.eval_name,
        progress=progress,
        callbacks=[*([CurvesFigure(out_dir)] if out_dir is not None else []), *callbacks],
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

    def fit(self, resume: bool = False) -> list[dict]:
        return self.trainer.fit(self.setup.data.train, self.setup.data.eval, resume=resume)


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
    seed_everything(parts.train.seed)
    device = choose_device(parts.train.device)
    setup = build_setup(recipe, parts, device)
    trainer = build_trainer(parts.train, setup, device, out_dir=out_dir, progress=progress, callbacks=callbacks)
    return Training(recipe, options, parts, device, setup, trainer)


def new_run_dir(out_root: str | Path, experiment: Experiment, options: Options) -> Path:
    """Make ``OUT/NAME-IMPL-YYYYmmdd-HHMMSS`` (with a counter if that exists already), exclusively:
    two runs started in the same second get two folders."""
    impl = getattr(options, "impl", None)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out_root) / "-".join(part for part in (experiment.name, impl, stamp) if part)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        run_dir = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"could not make a new run folder beside {base}; clean up {base.parent}")


def run_experiment(experiment: Experiment, options: Options, run_dir: str | Path, *, progress: bool = True) -> dict:
    """Run ``experiment`` with ``options`` into ``run_dir`` and return the summary."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_NAME).exists():
        raise FileExistsError(f"{run_dir} already holds a run; use `divekit resume {run_dir}` to continue it")
    record = {
        "experiment": experiment.name,
        "config": options.to_dict(),
        "divekit": divekit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    io.write_json(run_dir / CONFIG_NAME, record)
    if isinstance(experiment, Demo):
        return _demo(experiment, options, run_dir)
    return _train(experiment, options, run_dir, resume=False, progress=progress)


def resume_run(run_dir: str | Path, *, progress: bool = True) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint to the configured epochs."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_NAME).exists():
        raise FileNotFoundError(f"{run_dir} is not a divekit run folder (no {CONFIG_NAME})")
    record = io.read_json(run_dir / CONFIG_NAME)
    experiment = get_experiment(record["experiment"])
    if isinstance(experiment, Demo):
        raise ValueError(f"{experiment.name} is a demonstration without checkpoints; run it again instead of resuming")
    options = from_dict(experiment.options, record["config"], str(run_dir / CONFIG_NAME))
    return _train(experiment, options, run_dir, resume=True, progress=progress)


def _demo(experiment: Demo, options: Options, run_dir: Path) -> dict:
    values = options.to_dict()
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

    for name, figure in figures.items():
        save_figure(figure, run_dir / f"{name}.png")


def _train(recipe: Recipe, options: Options, run_dir: Path, *, resume: bool, progress: bool) -> dict:
    training = prepare_training(recipe, options, out_dir=run_dir, progress=progress)
    log.info(f"{recipe.name} ({recipe.section}, impl {training.parts.train.impl}) on {training.setup.data.name} "
             f"with {training.device}; run folder {run_dir}")
    history = training.fit(resume=resume)
    results = {}
    for probe in training.setup.probes:
        probe_results, figures = probe.run(training.setup.model, training.setup.data, training.device)
        results.update(probe_results)
        _save_figures(figures, run_dir)
    return _summarize(recipe, options, run_dir, training.device, data_name=training.setup.data.name, history=history,
                      results=results, train_seconds=sum(r["seconds"] for r in history))


def _summarize(experiment: Experiment, options: Options, run_dir: Path, device, *, data_name: str,
               history: list[dict], results: dict, train_seconds: float) -> dict:
    """Write summary.json (final metrics, results, the book's numbers beside ours) and log it."""
    final = {k: v for k, v in history[-1].items() if k != "epoch"} if history else {}
    config = options.to_dict()
    impl = config.get("impl", experiment.default_impl)
    changed = changed_options(experiment.make_options().to_dict(), config, experiment.name, impl)
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
        "config": config,
    }
    io.write_json(run_dir / SUMMARY_NAME, summary)
    for key, value in results.items():
        log.info(f"{key}: {value}")
    if changed and reference:
        flags = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in changed.items())
        log.info(f"not compared with the book: this run changed the book's settings ({flags})")
    for row in reference:
        verdict = {True: "reached", False: "NOT reached", None: "not compared"}[row["reached"]]
        low, high = row["spread"]
        log.info(f"{row['metric']}: ours {_fmt(row['ours'])}, book {_fmt(row['book'])} (builds {_fmt(low)}-{_fmt(high)}): {verdict}")
    return summary
