"""``divekit report``: every finished run in an output folder (an unfinished one is named in a warning), its
results beside the book's published
ones, as Markdown (``report.md``: tables) and as one self-contained HTML page (``report.html``: the
headline table first, then one section per experiment with every figure of every run inlined, the
runs of one experiment overlaid, and each run's metrics and results).

The page needs nothing but a browser: figures are base64 PNGs, the style is inline and there is no
script. Drawing the overlays reads only the runs' ``metrics.csv`` files and uses matplotlib; no
model runs.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
from io import BytesIO
from pathlib import Path

from divekit import io
from divekit.experiments.book import format_value as _fmt, verdict
from divekit.experiments.registry import get_experiment, section_key
from divekit.run_folder import CONFIG_NAME, METRICS_NAME, SUMMARY_NAME, start_stamp

log = logging.getLogger("divekit")
SUMMARY_KEYS = ("experiment", "section", "title", "impl", "data", "epochs", "train_seconds", "final", "reference")


def _started(summary_path: Path) -> tuple[str, int, str]:
    """A run's order by start: its folder name's NAME-IMPL-YYYYmmdd-HHMMSS[-N] stamp and counter, then the path."""
    stamp, counter = start_stamp(summary_path.parent.name) or ("", 0)
    return stamp, counter, str(summary_path)


def find_runs(root: str | Path) -> list[tuple[Path, dict]]:
    """(run folder, summary) for every finished run under ``root``, in the order they started (by
    the time stamp in their folder names, whatever sub-folders they sit in)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root} (give the --out folder your runs went to)")
    runs = []
    for path in sorted(root.rglob(SUMMARY_NAME), key=_started):
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
        try:
            get_experiment(summary["experiment"])
        except KeyError:
            log.warning(f"skipped {path.parent}: its experiment {summary['experiment']!r} is not one this divekit "
                        "has (renamed or removed since the run)")
            continue
        runs.append((path.parent, summary))
    for config in sorted(root.rglob(CONFIG_NAME), key=_started):
        if not (config.parent / SUMMARY_NAME).exists():
            log.warning(f"left out {config.parent}: not finished (still training, stopped or failed); "
                        f"`divekit resume {config.parent}` finishes a stopped run")
    return runs


def _run_name(root: Path, run_dir: Path) -> str:
    """A run's name in the report: its path under the report's folder, or its own name when the report is of
    the run folder itself."""
    return run_dir.name if run_dir == root else str(run_dir.relative_to(root))


def epochs_label(summary: dict) -> str:
    """The number of epochs the trainer ran, or "demonstration" for a demonstration: it has no
    epochs of its own (its summary says 0), even where it trains inside, as kaggle-house does."""
    return str(summary["epochs"]) if summary["epochs"] else "demonstration"


def _is_rate(metric: str) -> bool:
    return metric == "seconds" or metric.endswith("_per_s")


def run_metrics(summary: dict) -> dict:
    """A run's own numbers for the tables: its final epoch's metrics (less time and throughput),
    or, for a demonstration, which has no epochs, the plain numbers among its results."""
    if summary["final"]:
        return {k: v for k, v in summary["final"].items() if not _is_rate(k)}
    return {k: v for k, v in summary.get("results", {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def result_rows(root: Path, runs: list[tuple[Path, dict]]) -> list[dict]:
    """One row per (run, metric): the book's metrics where it publishes them, else our own ones
    (:func:`run_metrics`); a run with neither (a demonstration of figures only) still gets a row."""
    rows = []
    for run_dir, summary in runs:
        base = {"run": _run_name(root, run_dir), "experiment": summary["experiment"], "section": summary["section"],
                "impl": summary["impl"], "data": summary["data"], "epochs": epochs_label(summary),
                "seconds": summary["train_seconds"]}
        if summary["reference"]:
            for ref in summary["reference"]:
                reached = {True: "yes", False: "no", None: "–"}[ref["reached"]]
                rows.append({**base, "metric": ref["metric"], "ours": _fmt(ref["ours"]), "book": _fmt(ref["book"]),
                             "builds": f"{_fmt(ref['spread'][0])}–{_fmt(ref['spread'][1])}", "reached": reached})
        else:
            metrics = run_metrics(summary) or {"–": None}
            for metric, value in metrics.items():
                rows.append({**base, "metric": metric, "ours": _fmt(value), "book": "–", "builds": "–", "reached": "–"})
    return rows


COLUMNS = ("run", "experiment", "section", "impl", "data", "epochs", "metric", "ours", "book", "builds", "reached")
HEADLINE_COLUMNS = ("experiment", "section", "metric", "ours", "book", "builds", "reached")
NOT_COMPARED = "No run here is compared with a number the book publishes."  # the headline when it has no row


def _book_variant(summary: dict) -> str:
    """The experiment's name, followed by the options that chose which of the book's numbers it was
    held to, where they differ from the experiment's defaults: "rnn-scratch --random-sampling",
    "linear-regression --loss mse_loss" (see ``book_results``)."""
    when = summary["reference"][0].get("when", {})
    defaults = get_experiment(summary["experiment"]).defaults
    flags = [f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}")
             for name, value in when.items() if value != defaults.get(name)]
    return " ".join([summary["experiment"], *flags])


def _flags(changed: dict) -> str:
    return " ".join(f"--{name.replace('_', '-')} {value}" for name, value in changed.items())


def headline_rows(runs: list[tuple[Path, dict]]) -> list[dict]:
    """One row per experiment (and per book variant of it) compared with the book: its headline
    metric (test accuracy where the book publishes one, else its first published metric) for each
    impl's latest run that kept the book's settings, or its latest run when none did (so a quick
    check made after a full run does not hide it). Besides the table's columns, a row's "entries"
    hold each impl's value and verdict (``book.verdict``) and the options its run changed."""
    latest: dict[tuple[str, str], dict] = {}
    for _, summary in runs:  # runs come in the order they started (find_runs)
        if summary["reference"]:
            key = _book_variant(summary), summary["impl"]
            if key not in latest or summary.get("comparable", True) or not latest[key].get("comparable", True):
                latest[key] = summary
    by_experiment: dict[str, list[dict]] = {}
    for (experiment, _), summary in sorted(latest.items(), key=lambda item: item[0][1], reverse=True):  # scratch first
        by_experiment.setdefault(experiment, []).append(summary)
    rows = []
    for experiment, summaries in by_experiment.items():
        names = [ref["metric"] for ref in summaries[0]["reference"]]
        metric = "test_acc" if "test_acc" in names else names[0]
        refs = [next((r for r in s["reference"] if r["metric"] == metric), None) for s in summaries]
        pairs = [(s, r) for s, r in zip(summaries, refs) if r is not None]
        books = [(_fmt(r["book"]), f"{_fmt(r['spread'][0])}–{_fmt(r['spread'][1])}") for _, r in pairs]
        if len(set(books)) == 1:  # one reference for every impl
            book, builds = books[0]
        else:  # the book published each impl's own numbers: each beside its impl
            book, builds = (" / ".join(f"{values[i]} ({s['impl']})" for values, (s, _) in zip(books, pairs))
                            for i in (0, 1))
        rows.append({
            "experiment": experiment, "name": summaries[0]["experiment"], "title": summaries[0]["title"],
            "section": summaries[0]["section"], "metric": metric,
            "ours": " / ".join(f"{_fmt(r['ours'])} ({s['impl']})" for s, r in pairs),
            "book": book, "builds": builds,
            "reached": " / ".join({True: "yes", False: "no", None: "–"}[r["reached"]] for _, r in pairs),
            "entries": [{"impl": s["impl"], "ours": _fmt(r["ours"]), "status": verdict(r),
                         "changed": s.get("changed", {})} for s, r in pairs],
        })
    return sorted(rows, key=lambda row: section_key(row["section"]))


def to_markdown(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# -- the HTML page -------------------------------------------------------------------------------

def read_history(path: Path) -> list[dict] | None:
    """A ``metrics.csv`` as per-epoch records, if it is one: its first column "epoch", rising, and
    every other cell a number (or empty: that metric was not recorded that epoch). None for the
    demonstrations' other tables (one row per fold, per point of a curve, ...) and unreadable files."""
    try:
        with open(path, newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            rows = list(reader)
        if not header or header[0] != "epoch" or not rows:
            return None
        history = [{key: float(cell) for key, cell in zip(header, row) if cell != ""} for row in rows]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        return None
    epochs = [record.get("epoch") for record in history]
    if None in epochs or any(b <= a for a, b in zip(epochs, epochs[1:])):
        return None
    return history


def _run_labels(summaries: list[dict], names: list[str]) -> list[str]:
    """Labels that tell runs of one experiment apart: the impl and the options in which their
    configs differ ("fast --seed 1"; where they ran and how often they saved do not count), or the
    run folder's name where nothing differs."""
    configs = [s.get("config", {}) for s in summaries]
    differ = [k for k in dict.fromkeys(k for c in configs for k in c)
              if k not in ("device", "checkpoint_every") and len({repr(c.get(k)) for c in configs}) > 1]
    labels = [" ".join(([str(c["impl"])] if "impl" in differ else [])
                       + [_flags({k: c.get(k)}) for k in differ if k != "impl"]) for c in configs]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({name})" if label else name for label, name in zip(labels, names)]
    return labels


def overlay_png(root: Path, runs: list[tuple[Path, dict]]) -> bytes | None:
    """The training curves of an experiment's runs overlaid, as PNG bytes; None unless at least two
    of the runs have per-epoch histories."""
    from divekit.viz.curves import plot_runs  # matplotlib loads only when a figure is drawn

    found = [(run_dir, summary, read_history(run_dir / METRICS_NAME)) for run_dir, summary in runs]
    found = [(run_dir, summary, history) for run_dir, summary, history in found if history]
    if len(found) < 2:
        return None
    labels = _run_labels([s for _, s, _ in found], [_run_name(root, d) for d, _, _ in found])
    fig = plot_runs({label: history for label, (_, _, history) in zip(labels, found)},
                    title=f"{found[0][1]['experiment']}: {len(found)} runs")
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


STYLE = """
:root{--ok:#1a7f37;--ok-bg:#dafbe1;--bad:#b42318;--bad-bg:#fee4e2;--muted:#57606a;--line:#d0d7de;--soft:#f6f8fa}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;margin:0;background:#fff}
main{max-width:1240px;margin:0 auto;padding:24px 28px 64px}
h1{margin:0 0 4px;font-size:28px}h2{margin:0;font-size:22px}h3{margin:0 0 6px;font-size:16px}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
.lead{color:var(--muted);margin:0 0 18px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid var(--line);padding:5px 10px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}
table.headline{width:100%;margin-bottom:10px}table.headline td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;white-space:nowrap}
.reached{background:var(--ok-bg);color:var(--ok)}.not-reached{background:var(--bad-bg);color:var(--bad)}
.not-compared,.not-judged,.not-measured{background:#eaeef2;color:var(--muted)}
.entry{white-space:nowrap}.impl{color:var(--muted);font-size:13px}
nav.index{margin:18px 0 8px;display:flex;flex-wrap:wrap;gap:6px}
nav.index a{border:1px solid var(--line);border-radius:14px;padding:1px 10px;font-size:13px}
section.experiment{border-top:2px solid var(--line);margin-top:36px;padding-top:18px}
.sec{color:var(--muted);font-weight:400;font-size:15px}
.data{color:var(--muted);margin:2px 0 12px}
article.run{background:var(--soft);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:14px 0}
.meta{color:var(--muted);font-size:13px;margin-bottom:8px}
.tables{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.tables table{background:#fff;font-size:13px}
.figures{display:flex;flex-wrap:wrap;gap:14px;margin-top:12px;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px;max-width:100%;
box-sizing:border-box}
figure.overlay{margin:10px 0}
img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:13px;color:var(--muted);margin-top:4px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
pre{white-space:pre-wrap;margin:0}
td table{font-size:12.5px}
details summary{cursor:pointer;color:var(--muted)}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _badge(verdict: str, title: str = "") -> str:
    tip = f" title='{_e(title)}'" if title else ""
    return f"<span class='badge {verdict.replace(' ', '-')}'{tip}>{_e(verdict)}</span>"


def _changed_note(changed: dict) -> str:
    return f"changed the book's settings: {_flags(changed)}" if changed else ""


def render_value(value) -> str:
    """A result as HTML a person reads: a mapping as a two-column table, a list of records as a
    table with a column per key, a list of rows as a grid, a list of numbers inline, long lists
    folded, text as text; numbers with 4 significant digits."""
    if isinstance(value, dict):
        if not value:
            return "–"
        body = "".join(f"<tr><th>{_e(k)}</th><td>{render_value(v)}</td></tr>" for k, v in value.items())
        return f"<table class='kv'>{body}</table>"
    if isinstance(value, (list, tuple)):
        if not value:
            return "–"
        if all(isinstance(v, dict) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{_e(k)}</th>" for k in keys)
            body = "".join("<tr>" + "".join(f"<td>{render_value(v.get(k))}</td>" for k in keys) + "</tr>"
                           for v in value)
            out = f"<table><tr>{head}</tr>{body}</table>"
        elif all(isinstance(v, (list, tuple)) for v in value):
            out = "<table class='grid'>" + "".join(
                "<tr>" + "".join(f"<td>{render_value(c)}</td>" for c in row) + "</tr>" for row in value
            ) + "</table>"
        else:
            out = "<code>" + ", ".join(render_value(v) for v in value) + "</code>"
        if len(value) > 12:
            return f"<details><summary>{len(value)} entries</summary>{out}</details>"
        return out
    if isinstance(value, str) and ("\n" in value or len(value) > 80):
        return f"<pre>{_e(value)}</pre>"
    return _e(_fmt(value))


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_name(path: Path) -> str:
    """"curves.png" -> "training curves", "fold1_log_rmse.png" -> "fold1 log rmse"."""
    return "training curves" if path.stem == "curves" else path.stem.replace("_", " ")


def _headline_html(rows: list[dict]) -> str:
    if not rows:
        return f"<p class='lead'>{NOT_COMPARED}</p>"
    head = "".join(f"<th>{c}</th>" for c in ("experiment", "§", "metric", "ours", "book", "book's builds", "verdict"))
    body = []
    for r in rows:
        ours = "<br>".join(f"<span class='entry'>{_e(e['ours'])} <span class='impl'>{_e(e['impl'])}</span></span>"
                           for e in r["entries"])
        verdicts = "<br>".join(_badge(e["status"], _changed_note(e["changed"])) for e in r["entries"])
        body.append(
            f"<tr class='headline-row' data-experiment='{_e(r['experiment'])}'>"
            f"<td><a href='#exp-{_e(r['name'])}'>{_e(r['experiment'])}</a><br>"
            f"<span class='impl'>{_e(r['title'])}</span></td>"
            f"<td>{_e(r['section'])}</td><td><code>{_e(r['metric'])}</code></td><td class='num'>{ours}</td>"
            f"<td class='num'>{_e(r['book'])}</td><td class='num'>{_e(r['builds'])}</td><td>{verdicts}</td></tr>")
    return f"<table class='headline'><tr>{head}</tr>{''.join(body)}</table>"


def _run_html(root: Path, run_dir: Path, summary: dict) -> str:
    name = _run_name(root, run_dir)
    changed = summary.get("changed", {})
    meta = [f"impl {summary['impl']}",
            f"{summary['epochs']} epoch{'s' * (summary['epochs'] != 1)}" if summary["epochs"] else "demonstration",
            f"{summary['train_seconds']:.1f} s", summary.get("device", "")]
    if changed:
        meta.append(_changed_note(changed))
    elif summary.get("comparable", True) and summary["reference"]:
        meta.append("the book's settings")
    tables = []
    if summary["reference"]:
        body = "".join(
            f"<tr><td><code>{_e(r['metric'])}</code></td><td>{_e(_fmt(r['ours']))}</td><td>{_e(_fmt(r['book']))}</td>"
            f"<td>{_e(_fmt(r['spread'][0]))}–{_e(_fmt(r['spread'][1]))}</td><td>{_badge(verdict(r))}</td></tr>"
            for r in summary["reference"])
        tables.append("<table class='book'><tr><th>metric</th><th>ours</th><th>book</th><th>book's builds</th>"
                      f"<th>verdict</th></tr>{body}</table>")
    final = {k: v for k, v in summary["final"].items() if not _is_rate(k)}
    if final:
        tables.append(f"<div><h3>final epoch</h3>{render_value(final)}</div>")
    if summary.get("results"):
        tables.append(f"<div><h3>results</h3>{render_value(summary['results'])}</div>")
    pngs = sorted(run_dir.glob("*.png"), key=lambda p: (p.stem != "curves", p.name))
    figures = "".join(
        f"<figure><img src='{_png(p.read_bytes())}' alt='{_e(_figure_name(p))} of {_e(name)}'>"
        f"<figcaption>{_e(_figure_name(p))} <code>{_e(p.name)}</code></figcaption></figure>"
        for p in pngs)
    return (f"<article class='run' id='run-{_e(name)}'><h3>{_e(name)}</h3>"
            f"<div class='meta'>{_e(' · '.join(filter(None, meta)))}</div>"
            f"<div class='tables'>{''.join(tables)}</div>"
            + (f"<div class='figures'>{figures}</div>" if figures else "") + "</article>")


def _experiment_html(root: Path, runs: list[tuple[Path, dict]]) -> str:
    first = runs[0][1]
    overlay = overlay_png(root, runs)
    overlay_html = ""
    if overlay:
        overlay_html = (f"<figure class='overlay'><img src='{_png(overlay)}' alt='training curves of "
                        f"{len(runs)} runs of {_e(first['experiment'])} overlaid'><figcaption>training curves of the "
                        f"runs overlaid (from each run's <code>{METRICS_NAME}</code>)</figcaption></figure>")
    datasets = sorted({s["data"] for _, s in runs})
    return (f"<section class='experiment' id='exp-{_e(first['experiment'])}'>"
            f"<h2>{_e(first['experiment'])} "
            f"<span class='sec'>{_e(first['title'])} · D2L §{_e(first['section'])}</span></h2>"
            f"<div class='data'>{_e('; '.join(datasets))} · {len(runs)} run{'s' * (len(runs) != 1)}</div>"
            + overlay_html + "".join(_run_html(root, d, s) for d, s in runs) + "</section>")


def to_html(root: Path, runs: list[tuple[Path, dict]], headline: list[dict]) -> str:
    """The page: the headline table, an index of the experiments, then a section per experiment."""
    by_experiment: dict[str, list[tuple[Path, dict]]] = {}
    for run_dir, summary in runs:
        by_experiment.setdefault(summary["experiment"], []).append((run_dir, summary))
    order = sorted(by_experiment, key=lambda name: (section_key(by_experiment[name][0][1]["section"]), name))
    verdicts = [e["status"] for row in headline for e in row["entries"]]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("reached", "not reached", "not judged", "not compared", "not measured")
                       if v in verdicts)
    index = "".join(f"<a href='#exp-{_e(name)}'>{_e(name)}</a>" for name in order)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>divekit report: {_e(root.name)}</title><style>{STYLE}</style></head><body><main>"
        "<h1>divekit runs</h1>"
        f"<p class='lead'>{len(runs)} run{'s' * (len(runs) != 1)} of {len(order)} experiment"
        f"{'s' * (len(order) != 1)} in <code>{_e(root)}</code>" + (f" · beside the book: {counts}" if counts else "")
        + ". <em>book</em> is d2l's published number, <em>book's builds</em> the spread across the book's own builds; "
        "a run that changed the book's settings is shown beside it but <em>not compared</em>; a number whose builds "
        "span every value a result could take (a BLEU of 0 to 1) is <em>not judged</em>.</p>"
        + _headline_html(headline)
        + f"<nav class='index'>{index}</nav>"
        + "".join(_experiment_html(root, by_experiment[name]) for name in order)
        + "</main></body></html>\n"
    )


def write_report(root: str | Path) -> tuple[Path, Path, str]:
    """Write ``report.md`` and ``report.html`` into ``root``; return their paths and the Markdown."""
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no finished runs (no {SUMMARY_NAME}) under {root}; run `divekit run NAME --out {root}` first")
    headline = headline_rows(runs)
    markdown = (
        "## By experiment\n\n" + (to_markdown(headline, HEADLINE_COLUMNS) if headline else f"{NOT_COMPARED}\n")
        + "\n## Every metric of every run\n\n" + to_markdown(result_rows(root, runs))
    )
    io.write_text(root / "report.md", "# divekit runs\n\n" + markdown)
    io.write_text(root / "report.html", to_html(root, runs, headline))
    return root / "report.md", root / "report.html", markdown
