"""The book's published results and how a run compares with them.

``reference/ch*.json`` (one file per chapter) copies the figures we use from d2l's executed builds:
for each experiment and impl, each metric's published value, the spread across the book's own
builds, and which direction is better. Where the book ran an experiment in more than one way (the
RNN of §8.5 with sequential partitioning and with random sampling), the impl holds a list of
entries, each with a ``"when"`` that names the options a run must have for it to apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any


@cache
def _table() -> dict:
    table = {}
    for path in sorted(resources.files("divekit.experiments").joinpath("reference").iterdir(), key=lambda p: p.name):
        if path.name.startswith("ch") and path.name.endswith(".json"):  # not sections.json, the table of contents
            chapter = json.loads(path.read_text())
            clash = table.keys() & chapter.keys()
            if clash:
                raise ValueError(f"reference/{path.name} repeats experiments {sorted(clash)}")
            table.update(chapter)
    return table


def _entries(experiment: str, impl: str):
    """The book's entries for an impl; an experiment the book ran one way (one impl listed, e.g.
    AlexNet on nn layers) holds both twins to it: they compute the same model."""
    by_impl = _table().get(experiment, {})
    return by_impl.get(impl, next(iter(by_impl.values())) if len(by_impl) == 1 else None)


def book_results(experiment: str, impl: str, config: Mapping[str, Any] | None = None) -> dict | None:
    """The book's entry for an experiment and impl, {"source", "metrics": {name: {...}}}: the
    first whose ``"when"`` options all equal those of ``config`` (entries without one always apply)."""
    entries = _entries(experiment, impl)
    if entries is None:
        return None
    config = config or {}
    for entry in entries if isinstance(entries, list) else [entries]:
        if all(option in config and config[option] == value for option, value in entry.get("when", {}).items()):
            return entry
    return None


def when_options(experiment: str, impl: str) -> set[str]:
    """The options whose values choose among the book's entries for an experiment and impl."""
    entries = _entries(experiment, impl) or []
    return {option for entry in (entries if isinstance(entries, list) else [entries]) for option in entry.get("when", {})}


def compare(experiment: str, impl: str, ours: dict[str, float], config: Mapping[str, Any] | None = None) -> list[dict]:
    """One row per published metric of the entry that fits ``config`` (see :func:`book_results`):
    our value, the book's, the build-to-build spread, and whether we reached it (at least the
    spread's low end for "higher" metrics such as accuracy, at most its high end for "lower" ones
    such as loss, inside the spread for "within" ones: a deterministic result such as the end of a
    gradient-descent trajectory). A "higher" metric whose builds reach down to 0 (a BLEU of 0 to 1
    over the builds) is shown but not compared: no result could fall short of it."""
    entry = book_results(experiment, impl, config)
    if entry is None:
        return []
    rows = []
    for name, ref in entry["metrics"].items():
        value = ours.get(name)
        low, high = ref["spread"]
        if value is None or uninformative(ref):
            reached = None
        elif ref["better"] == "higher":
            reached = value >= low
        elif ref["better"] == "within":
            reached = low <= value <= high
        else:
            reached = value <= high
        rows.append({"metric": name, "ours": value, "book": ref["book"], "spread": [low, high],
                     "better": ref["better"], "reached": reached, "source": entry["source"],
                     "when": entry.get("when", {})})
    return rows


def verdict(row: Mapping[str, Any]) -> str:
    """A comparison row's verdict in words: "reached", "not reached", "not measured" (the run has no
    such number), "not judged" (the book's builds span every value a result could take) or "not
    compared" (the run changed the book's settings: shown beside the book's number, not held to it)."""
    if row["reached"] is not None:
        return "reached" if row["reached"] else "not reached"
    if row["ours"] is None:
        return "not measured"
    return "not judged" if uninformative(row) else "not compared"


def uninformative(ref: Mapping[str, Any]) -> bool:
    """Whether a published metric's builds disagree so much that it cannot tell results apart: a
    "higher is better" metric (accuracy, BLEU: never below 0) whose spread starts at 0 or below."""
    return ref["better"] == "higher" and ref["spread"][0] <= 0


# options that do not change what a run is compared with: which twin, where it runs, its seed, and
# the speed settings that keep the book's arithmetic (not --precision: bf16 changes the numbers)
INCIDENTAL = ("impl", "device", "seed", "compile", "checkpoint_every", "tensorboard")


def changed_options(defaults: Mapping[str, Any], config: Mapping[str, Any], experiment: str, impl: str,
                    after_training: Iterable[str] = ()) -> dict:
    """The options of ``config`` that differ from the experiment's ``defaults`` (the book's
    settings) and make a run not comparable with the book: all but the incidental ones, those that
    only shape what is shown after training (``after_training``: a recipe's probes' options, e.g.
    the prefix a language model continues) and those that choose one of the book's entries (its
    ``"when"``)."""
    entry = book_results(experiment, impl, config) or {}
    kept = set(INCIDENTAL) | set(after_training) | set(entry.get("when", {}))
    return {name: config[name] for name in config if name not in kept and config[name] != defaults.get(name)}


def describe(experiment: str, impl: str, config: Mapping[str, Any] | None = None) -> str:
    """The book's headline number for an experiment run with ``config``, one line:
    "book: test_acc 0.779 (builds 0.772–0.821)"."""
    entry = book_results(experiment, impl, config)
    if entry is None:
        return ""
    metrics = entry["metrics"]
    name = "test_acc" if "test_acc" in metrics else next(iter(metrics))
    ref = metrics[name]
    low, high = ref["spread"]
    low, high = format_value(low), format_value(high)
    spread = "" if low == high else f" (builds {low}–{high})"
    return f"book: {name} {format_value(ref['book'])}{spread}"


def format_value(value) -> str:
    """A metric as a person reads it: 4 significant digits, "–" when there is none."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
