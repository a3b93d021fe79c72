"""The experiments of the book, one name each (``divekit list`` shows them).

An :class:`Experiment` says where it comes from (book section, data set, what it reproduces),
which config class holds its options, and how to build a :class:`Setup` from a config: the model,
the task, the optimizer and the loaders. Running it is the runner's job.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from divekit.experiments.config import RunConfig
from divekit.train.tasks import Task


@dataclass
class Setup:
    """Everything the trainer needs, built from a config."""

    model: nn.Module
    task: Task
    optimizer: torch.optim.Optimizer
    train_loader: Iterable
    eval_loader: Iterable | None
    eval_name: str = "val"
    data_name: str = ""
    scheduler: object | None = None
    # after training: extra results to report, e.g. the error in the learned w and b
    finish: Callable[[nn.Module], dict] | None = None
    # after training: figures to save in the run folder as NAME.png, e.g. predictions
    figures: Callable[[nn.Module], dict] | None = None


@dataclass
class DemoResult:
    """What a demonstration produces instead of a training run: numbers and figures, and
    optionally a table of rows (e.g. a trajectory) written as metrics.csv and text files written
    into the run folder under the given names."""

    results: dict
    figures: dict = field(default_factory=dict)  # name -> matplotlib Figure, saved as NAME.png
    rows: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file name -> text, e.g. a Kaggle submission.csv


@dataclass(frozen=True)
class Experiment:
    """A named experiment: ``build`` makes a :class:`Setup` for the trainer, or, for a
    demonstration that trains nothing through the trainer (a figure, a trajectory), ``demo``
    computes a :class:`DemoResult` directly."""

    name: str
    section: str  # the book's section numbers, e.g. "3.1-3.3"
    title: str
    dataset: str
    reproduces: str  # what the run shows, in one line
    config: type[RunConfig]
    build: Callable[[RunConfig, torch.device], Setup] | None = field(default=None, repr=False)
    demo: Callable[[RunConfig, torch.device], DemoResult] | None = field(default=None, repr=False)
    user_data: str | None = None  # "classification" or "regression" when --data is accepted

    def __post_init__(self):
        if (self.build is None) == (self.demo is None):
            raise ValueError(f"experiment {self.name!r} needs exactly one of build (a training run) or demo")


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in _REGISTRY:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    _REGISTRY[experiment.name] = experiment
    return experiment


def get_experiment(name: str) -> Experiment:
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise KeyError(f"no experiment named {name!r}{hint} (`divekit list` shows them all)")
    return _REGISTRY[name]


def all_experiments() -> list[Experiment]:
    """Every registered experiment, in the book's order of sections."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda e: section_key(e.section))


def section_key(section: str) -> tuple[int, ...]:
    """"4.2-4.3" -> (4, 2): the first section number, as integers."""
    first = re.match(r"[\d.]+", section)
    return tuple(int(part) for part in first.group().strip(".").split(".")) if first else (999,)


_INFRASTRUCTURE = {"book", "common", "config", "registry", "runner"}


def _load_all() -> None:
    """Import every experiment module of this package (each registers its experiments when
    imported); done lazily so that ``divekit --help`` stays quick."""
    import importlib
    import pkgutil

    import divekit.experiments as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{package.__name__}.{module.name}")
