"""Every registered experiment runs end to end with tiny settings and leaves a complete run folder
(the recipes' and demos' own ``tiny`` option values: a few examples, one epoch, small models), with
each impl it takes."""

import importlib.util
import json
import os

import pytest

from divekit.experiments.registry import Recipe, all_experiments
from divekit.experiments.runner import run_experiment

NEEDS_DATA = {"fashion-mnist": "Fashion-MNIST", "fra-eng": "fra-eng", "kaggle_house": "Kaggle house",
              "airfoil": "airfoil", "wikitext-2": "WikiText-2", "snli": "SNLI",
              "d2l-bert.small": "bert.small"}  # data set folder -> the label its experiments show


def _needs(experiment) -> list[str]:
    """The data set folders an experiment reads that are not packaged with divekit."""
    return [folder for folder, label in NEEDS_DATA.items() if label.lower() in experiment.dataset.lower()]


def _runs():
    """(experiment, impl): each experiment with its default impl, and with the other where it takes --impl."""
    for experiment in all_experiments():
        yield pytest.param(experiment, None, id=experiment.name)
        if "impl" in experiment.defaults:
            other = "scratch" if experiment.default_impl == "fast" else "fast"
            yield pytest.param(experiment, other, id=f"{experiment.name}-{other}")


@pytest.mark.parametrize("experiment, impl", list(_runs()))
def test_every_experiment_runs_with_tiny_settings(experiment, impl, tmp_path):
    data = os.environ.get("DIVEKIT_DATA")
    missing = [folder for folder in _needs(experiment) if not (data and os.path.isdir(os.path.join(data, folder)))]
    if missing:
        pytest.skip(f"set DIVEKIT_DATA to a folder with {', '.join(missing)}")
    if "photos extra" in experiment.dataset and importlib.util.find_spec("skimage") is None:
        pytest.skip("the photos extra (scikit-image) is not installed")
    tiny = dict(experiment.tiny)
    if isinstance(experiment, Recipe):
        tiny = {"epochs": 1, "limit": 64, **tiny}
    values = {**tiny, **({"device": "cpu"} if "device" in experiment.defaults else {}), **({"impl": impl} if impl else {})}
    summary = run_experiment(experiment, experiment.make_options(**values), tmp_path / "run", progress=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "summary.json"} <= files
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["experiment"] == experiment.name
    if isinstance(experiment, Recipe):
        assert {"metrics.csv", "checkpoint.pt", "curves.png"} <= files and summary["epochs"] == 1
        assert summary["final"] and all(v == v for v in summary["final"].values())  # no NaN
    else:
        assert summary["results"] or any(name.endswith(".png") for name in files)
