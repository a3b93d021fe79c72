"""Start-up stays quick (issue 17): `divekit --help`, `divekit list` and a demonstration's
`divekit run NAME --help` import neither torch nor matplotlib nor numpy, each checked in a fresh
process. The rule that keeps it so: an experiment module imports at module level only what is
torch-free (the registry, the parts, the options and the ``Annotated`` aliases its demos' signatures
name); torch, matplotlib and every torch-importing divekit module are imported inside the functions
that use them, and names only annotations use come under ``if TYPE_CHECKING:``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from divekit.experiments import book
from divekit.experiments.registry import Recipe, all_experiments, get_experiment

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "matplotlib", "numpy")
# `python -m divekit ARGS`, then the heavy modules it loaded, as the last line of stderr
CHILD = f"""
import json, runpy, sys
try:
    runpy.run_module("divekit", run_name="__main__", alter_sys=True)
finally:
    print("LOADED " + json.dumps([name for name in {HEAVY!r} if name in sys.modules]), file=sys.stderr)
"""


def heavy_modules_loaded(*args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), f"divekit {' '.join(args)} printed nothing"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("LOADED "), done.stderr
    return json.loads(last.removeprefix("LOADED "))


@pytest.mark.parametrize("args", [("--help",), ("list",), ("run", "conv-edge", "--help"),
                                  ("run", "kaggle-house", "--help"), ("resume", "--help")], ids=" ".join)
def test_help_and_list_import_no_torch_matplotlib_or_numpy(args):
    loaded = heavy_modules_loaded(*args)
    assert loaded == [], (f"`divekit {' '.join(args)}` imported {', '.join(loaded)}; "
                          f"`python -X importtime -m divekit {' '.join(args)}` shows which module did")


def test_a_recipes_help_imports_no_matplotlib():
    assert "matplotlib" not in heavy_modules_loaded("run", "lenet", "--help")


@pytest.mark.xfail(strict=True, reason="a recipe's options include its model's config, which is defined beside the "
                                       "model in a module that imports torch")
def test_a_recipes_help_imports_no_torch():
    assert "torch" not in heavy_modules_loaded("run", "lenet", "--help")


def test_descriptions_from_the_parts_alone_are_those_from_all_the_defaults():
    """`divekit list` describes a recipe from its options other than the model's; the same line
    as from all of its defaults (the model's config included)."""
    recipes = [e for e in all_experiments() if isinstance(e, Recipe)]
    assert any(book.when_options(e.name, e.default_impl) for e in recipes)  # linear-regression's --loss
    for e in recipes:
        assert e.description == book.describe(e.name, e.default_impl, e.defaults), e.name


def test_a_book_entry_chosen_by_a_model_option_is_described_from_all_the_defaults(monkeypatch):
    entry = {"source": "test", "metrics": {"test_acc": {"book": 0.5, "spread": [0.4, 0.6], "better": "higher"}}}
    table = {"mlp": {"fast": [{**entry, "when": {"num_hiddens": 1}},
                              {**entry, "metrics": {"test_acc": {**entry["metrics"]["test_acc"], "book": 0.8}},
                               "when": {"num_hiddens": 256}}]}}
    monkeypatch.setattr(book, "_table", lambda: table)
    assert book.when_options("mlp", "fast") == {"num_hiddens"}
    assert get_experiment("mlp").description == "book: test_acc 0.8 (builds 0.4–0.6)"
