"""Run an experiment into a run folder, or resume one.

A run folder holds ``config.json`` (the experiment and every option), ``metrics.csv`` (one row per
epoch), ``curves.png``, ``checkpoint.pt`` and, when training finishes, ``summary.json`` with the
final metrics beside the book's published ones.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from pathlib import Path

import torch

import divekit
from divekit import io
from divekit.experiments.config import RunConfig, from_dict
from divekit.experiments.book import compare, format_value as _fmt
from divekit.experiments.registry import Experiment, Setup, get_experiment
from divekit.ops import get_ops
from divekit.train.device import choose_device, seed_everything
from divekit.train.engine import METRICS_NAME, Trainer, history_to_csv

log = logging.getLogger("divekit")

CONFIG_NAME = "config.json"
SUMMARY_NAME = "summary.json"


def new_run_dir(out_root: str | Path, experiment: Experiment, cfg: RunConfig) -> Path:
    """``OUT/NAME-IMPL-YYYYmmdd-HHMMSS`` (with a counter if that exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out_root) / f"{experiment.name}-{cfg.impl}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def run_experiment(experiment: Experiment, cfg: RunConfig, run_dir: str | Path, *, progress: bool = True, callbacks=()) -> dict:
    """Train ``experiment`` with ``cfg`` into ``run_dir`` (created) and return the summary."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_NAME).exists():
        raise FileExistsError(f"{run_dir} already holds a run; use `divekit resume {run_dir}` to continue it")
    if cfg.data is not None and experiment.user_data is None:
        raise ValueError(f"experiment {experiment.name!r} runs on its own data ({experiment.dataset}); it takes no --data")
    record = {
        "experiment": experiment.name,
        "config": cfg.to_dict(),
        "divekit": divekit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    io.write_json(run_dir / CONFIG_NAME, record)
    if experiment.demo is not None:
        return _demo(experiment, cfg, run_dir)
    return _train(experiment, cfg, run_dir, resume=False, progress=progress, callbacks=callbacks)


def _demo(experiment: Experiment, cfg: RunConfig, run_dir: Path) -> dict:
    seed_everything(cfg.seed)
    device = choose_device(cfg.device)
    log.info(f"{experiment.name} ({experiment.section}) on {experiment.dataset}; run folder {run_dir}")
    start = time.perf_counter()
    outcome = experiment.demo(cfg, device)
    if outcome.rows:
        io.write_text(run_dir / METRICS_NAME, history_to_csv(outcome.rows))
    for name, text in outcome.files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"{experiment.name} returned a file named {name!r}; a demonstration's files must be "
                             "plain names inside the run folder")
        io.write_text(run_dir / name, text)
    _save_figures(outcome.figures, run_dir)
    return _summarize(experiment, cfg, run_dir, device, data_name=experiment.dataset, history=[], results=outcome.results,
                      train_seconds=time.perf_counter() - start)


def _save_figures(figures: dict, run_dir: Path) -> None:
    from divekit.viz.images import save_figure

    for name, figure in figures.items():
        save_figure(figure, run_dir / f"{name}.png")


def resume_run(run_dir: str | Path, *, progress: bool = True, callbacks=()) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint to the configured epochs."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_NAME).exists():
        raise FileNotFoundError(f"{run_dir} is not a divekit run folder (no {CONFIG_NAME})")
    record = io.read_json(run_dir / CONFIG_NAME)
    experiment = get_experiment(record["experiment"])
    if experiment.demo is not None:
        raise ValueError(f"{experiment.name} is a demonstration without checkpoints; run it again instead of resuming")
    cfg = from_dict(experiment.config, record["config"])
    return _train(experiment, cfg, run_dir, resume=True, progress=progress, callbacks=callbacks)


def build_trainer(cfg: RunConfig, setup: Setup, device: torch.device, *, out_dir: str | Path | None,
                  progress: bool = True, callbacks=()) -> Trainer:
    """The trainer of an experiment's run, as the CLI makes it: the config's epochs, precision,
    compilation and gradient clipping (with the clip function of its ``--impl``)."""
    return Trainer(
        setup.model,
        setup.task,
        setup.optimizer,
        epochs=cfg.epochs,
        device=device,
        scheduler=setup.scheduler,
        clip_grad_norm=cfg.clip_grad,
        clip_fn=get_ops(cfg.impl).clip_grad_norm,
        precision=cfg.precision,
        compile=cfg.compile,
        out_dir=out_dir,
        eval_name=setup.eval_name,
        progress=progress,
        callbacks=callbacks,
    )


def _train(experiment: Experiment, cfg: RunConfig, run_dir: Path, *, resume: bool, progress: bool, callbacks) -> dict:
    seed_everything(cfg.seed)
    device = choose_device(cfg.device)
    setup = experiment.build(cfg, device)
    trainer = build_trainer(cfg, setup, device, out_dir=run_dir, progress=progress, callbacks=callbacks)
    log.info(f"{experiment.name} ({experiment.section}, impl {cfg.impl}) on {setup.data_name} with {device}; run folder {run_dir}")
    history = trainer.fit(setup.train_loader, setup.eval_loader, resume=resume)
    results = setup.finish(setup.model) if setup.finish is not None else {}
    if setup.figures is not None:
        _save_figures(setup.figures(setup.model), run_dir)
    return _summarize(experiment, cfg, run_dir, device, data_name=setup.data_name, history=history, results=results,
                      train_seconds=sum(r["seconds"] for r in history))


def _summarize(experiment: Experiment, cfg: RunConfig, run_dir: Path, device, *, data_name: str, history: list[dict],
               results: dict, train_seconds: float) -> dict:
    """Write summary.json (final metrics, results, the book's numbers beside ours) and log it."""
    final = {k: v for k, v in history[-1].items() if k != "epoch"} if history else {}
    on_book_data = cfg.data is None and cfg.limit is None  # else the book has nothing to compare with
    reference = compare(experiment.name, cfg.impl, {**final, **results}, dataclasses.asdict(cfg)) if on_book_data else []
    summary = {
        "experiment": experiment.name,
        "section": experiment.section,
        "title": experiment.title,
        "impl": cfg.impl,
        "data": data_name,
        "device": str(device),
        "epochs": len(history),
        "train_seconds": train_seconds,
        "final": final,
        "results": results,
        "reference": reference,
        "config": dataclasses.asdict(cfg),
    }
    io.write_json(run_dir / SUMMARY_NAME, summary)
    for key, value in results.items():
        log.info(f"{key}: {value}")
    for row in reference:
        verdict = {True: "reached", False: "NOT reached", None: "not measured"}[row["reached"]]
        low, high = row["spread"]
        log.info(f"{row['metric']}: ours {_fmt(row['ours'])}, book {_fmt(row['book'])} (builds {_fmt(low)}-{_fmt(high)}): {verdict}")
    return summary
