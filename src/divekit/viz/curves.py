"""The book's training-curve figure (D2L §3.6 Animator) as a file, not a notebook widget, and the
curves of several runs of one experiment overlaid.

Losses go on the left axes (log scale when they span more than two decades), other metrics such
as accuracy on the right, all against the epoch. Uses matplotlib's object API with the Agg
canvas, so it works without a display, and needs no torch: the report draws these from
``metrics.csv`` files alone.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

_NOT_PLOTTED = ("epoch", "seconds")
LINE_STYLES = ("-", "--", ":", "-.")


def plotted_keys(history: list[dict]) -> list[str]:
    """The metrics of ``history`` that a curve figure draws, in first-seen order: all but the epoch,
    the seconds and the throughputs (``*_per_s``)."""
    keys = dict.fromkeys(k for r in history for k in r)
    return [k for k in keys if k not in _NOT_PLOTTED and not k.endswith("_per_s")]


def _log_scale_if_wide(ax, values: list[float]) -> None:
    """A log y axis where every value is positive and they span more than two decades."""
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) > 100 * min(positive):
        ax.set_yscale("log")


def _epoch_axis(ax, epochs: list) -> None:
    """Whole epochs on the x axis; a single epoch is one tick (the locator's fallback ticks 0.95, 0.975, ...)."""
    ax.set_xlabel("epoch")
    if len(set(epochs)) > 1:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.set_xticks(sorted(set(epochs)))


def plot_history(history: list[dict], title: str | None = None) -> Figure:
    """One figure of every per-epoch metric in ``history`` (a list of records with "epoch")."""
    epochs = [r["epoch"] for r in history]
    keys = plotted_keys(history)
    loss_keys = [k for k in keys if k.endswith("loss")]
    other_keys = [k for k in keys if k not in loss_keys]
    panels = [ks for ks in (loss_keys, other_keys) if ks]
    fig = Figure(figsize=(4.5 * len(panels), 3.5), layout="constrained")
    for i, panel_keys in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        for key in panel_keys:
            points = [(e, r[key]) for e, r in zip(epochs, history) if key in r]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 30 else None,
                    markersize=3, label=key.replace("_", " "))
        if panel_keys is loss_keys:
            _log_scale_if_wide(ax, [r[k] for r in history for k in panel_keys if k in r])
        _epoch_axis(ax, epochs)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, parse_math=False)
    return fig


def plot_runs(histories: dict[str, list[dict]], title: str | None = None, columns: int = 3) -> Figure:
    """Several runs' per-epoch histories overlaid: one panel per metric, one line per run (a run
    that did not record a metric has no line in its panel), each run in the same colour and dash in every panel.

    ``histories`` maps a run's label (e.g. "scratch", "fast --seed 1") to its records with "epoch".
    """
    if not histories:
        raise ValueError("plot_runs needs at least one run's history")
    keys = list(dict.fromkeys(k for history in histories.values() for k in plotted_keys(history)))
    if not keys:
        raise ValueError("the histories have no metric to plot (only epoch, seconds and throughputs)")
    columns = min(columns, len(keys))
    rows = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows + 0.6), layout="constrained")
    styles = {label: {"color": f"C{i % 10}", "linestyle": LINE_STYLES[i % len(LINE_STYLES)]}
              for i, label in enumerate(histories)}  # dashes keep twins that agree exactly both visible
    for i, key in enumerate(keys, 1):
        ax = fig.add_subplot(rows, columns, i)
        values = []
        for label, history in histories.items():
            points = [(r["epoch"], r[key]) for r in history if key in r]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], **styles[label], label=label,
                        marker="o" if len(points) < 30 else None, markersize=3)
                values += [p[1] for p in points]
        if key.endswith("loss"):
            _log_scale_if_wide(ax, values)
        ax.set_title(key.replace("_", " "))
        _epoch_axis(ax, [r["epoch"] for history in histories.values() for r in history])
        ax.grid(True, alpha=0.3)
    longest = max(len(label) for label in histories)
    legend = fig.legend(handles=[Line2D([], [], **style, label=label) for label, style in styles.items()],
                        loc="outside lower center", ncols=max(1, min(len(histories), 4, 24 * columns // longest)))
    for text in legend.get_texts():
        text.set_parse_math(False)  # a run's label (its --data path) with $ is text, not TeX
    if title:
        fig.suptitle(title, parse_math=False)
    return fig
