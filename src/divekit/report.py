"""``divekit report``: every run in an output folder, its results beside the book's published
ones, as Markdown and as one self-contained HTML page with the training curves inlined."""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

from divekit import io
from divekit.experiments.book import format_value as _fmt
from divekit.experiments.registry import get_experiment, section_key
from divekit.experiments.runner import SUMMARY_NAME

log = logging.getLogger("divekit")
SUMMARY_KEYS = ("experiment", "section", "title", "impl", "data", "epochs", "train_seconds", "final", "reference")


def find_runs(root: str | Path) -> list[tuple[Path, dict]]:
    """(run folder, summary) for every finished run under ``root``, in name order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root} (give the --out folder your runs went to)")
    runs = []
    for path in sorted(root.rglob(SUMMARY_NAME)):
        try:
            summary = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            log.warning(f"skipped {path}: not a readable run summary ({e}); delete that run folder or run it again")
            continue
        missing = [key for key in SUMMARY_KEYS if not isinstance(summary, dict) or key not in summary]
        if missing:
            log.warning(f"skipped {path}: not a divekit run summary (no {', '.join(missing)}); "
                        "delete that run folder or run it again")
            continue
        runs.append((path.parent, summary))
    return runs



def result_rows(root: Path, runs: list[tuple[Path, dict]]) -> list[dict]:
    """One row per (run, metric): the book's metrics where it publishes them, else our final ones."""
    rows = []
    for run_dir, summary in runs:
        base = {"run": str(run_dir.relative_to(root)), "experiment": summary["experiment"], "section": summary["section"],
                "impl": summary["impl"], "data": summary["data"], "epochs": summary["epochs"],
                "seconds": summary["train_seconds"]}
        if summary["reference"]:
            for ref in summary["reference"]:
                reached = {True: "yes", False: "no", None: "–"}[ref["reached"]]
                rows.append({**base, "metric": ref["metric"], "ours": _fmt(ref["ours"]), "book": _fmt(ref["book"]),
                             "builds": f"{_fmt(ref['spread'][0])}–{_fmt(ref['spread'][1])}", "reached": reached})
        else:
            for metric, value in summary["final"].items():
                if metric != "seconds" and not metric.endswith("_per_s"):
                    rows.append({**base, "metric": metric, "ours": _fmt(value), "book": "–", "builds": "–", "reached": "–"})
    return rows


COLUMNS = ("run", "experiment", "section", "impl", "data", "epochs", "metric", "ours", "book", "builds", "reached")
HEADLINE_COLUMNS = ("experiment", "section", "metric", "ours", "book", "builds", "reached")


def _book_variant(summary: dict) -> str:
    """The experiment's name, followed by the options that chose which of the book's numbers it was
    held to, where they differ from the experiment's defaults: "rnn-scratch --random-sampling",
    "linear-regression --loss mse_loss" (see ``book_results``)."""
    when = summary["reference"][0].get("when", {})
    defaults = get_experiment(summary["experiment"]).defaults
    flags = [f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}")
             for name, value in when.items() if value != defaults.get(name)]
    return " ".join([summary["experiment"], *flags])


def headline_rows(runs: list[tuple[Path, dict]]) -> list[dict]:
    """One row per experiment (and per book variant of it) compared with the book: its headline
    metric (test accuracy where the book publishes one, else its first published metric) for each
    impl's latest run."""
    latest: dict[tuple[str, str], dict] = {}
    for _, summary in runs:  # runs come in name order, and run names end in their start time
        if summary["reference"]:
            latest[_book_variant(summary), summary["impl"]] = summary
    by_experiment: dict[str, list[dict]] = {}
    for (experiment, _), summary in sorted(latest.items(), key=lambda item: item[0][1], reverse=True):  # scratch first
        by_experiment.setdefault(experiment, []).append(summary)
    rows = []
    for experiment, summaries in by_experiment.items():
        names = [ref["metric"] for ref in summaries[0]["reference"]]
        metric = "test_acc" if "test_acc" in names else names[0]
        refs = [next((r for r in s["reference"] if r["metric"] == metric), None) for s in summaries]
        pairs = [(s["impl"], r) for s, r in zip(summaries, refs) if r is not None]
        book = pairs[0][1]
        rows.append({
            "experiment": experiment, "section": summaries[0]["section"], "metric": metric,
            "ours": " / ".join(f"{_fmt(r['ours'])} ({impl})" for impl, r in pairs),
            "book": _fmt(book["book"]), "builds": f"{_fmt(book['spread'][0])}–{_fmt(book['spread'][1])}",
            "reached": " / ".join({True: "yes", False: "no", None: "–"}[r["reached"]] for _, r in pairs),
        })
    return sorted(rows, key=lambda row: section_key(row["section"]))


def to_markdown(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_html(root: Path, runs: list[tuple[Path, dict]], rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td class='{c} {r[c] if c == 'reached' else ''}'>{html.escape(str(r[c]))}</td>" for c in COLUMNS) + "</tr>"
        for r in rows
    )
    figures = []
    for run_dir, summary in runs:
        png = run_dir / "curves.png"
        if png.exists():
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            caption = html.escape(f"{run_dir.relative_to(root)}: {summary['title']} (D2L {summary['section']}, {summary['impl']})")
            figures.append(f"<figure><img src='data:image/png;base64,{data}' alt='{caption}'><figcaption>{caption}</figcaption></figure>")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>divekit report</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "td.yes{background:#dfd}td.no{background:#fdd}figure{display:inline-block;margin:1em}img{max-width:640px}"
        "</style></head><body><h1>divekit runs</h1>"
        "<p>Book numbers are d2l's published results; <em>builds</em> is the spread across the book's own builds.</p>"
        f"<table><tr>{head}</tr>{body}</table>{''.join(figures)}</body></html>\n"
    )


def write_report(root: str | Path) -> tuple[Path, Path, str]:
    """Write ``report.md`` and ``report.html`` into ``root``; return their paths and the Markdown."""
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no finished runs (no {SUMMARY_NAME}) under {root}; run `divekit run NAME --out {root}` first")
    rows = result_rows(root, runs)
    markdown = (
        "## By experiment\n\n" + to_markdown(headline_rows(runs), HEADLINE_COLUMNS)
        + "\n## Every metric of every run\n\n" + to_markdown(rows)
    )
    io.write_text(root / "report.md", "# divekit runs\n\n" + markdown)
    io.write_text(root / "report.html", to_html(root, runs, rows))
    return root / "report.md", root / "report.html", markdown
