"""The book's training-curve figure (D2L §3.6 Animator) as a file, not a notebook widget.

Losses go on the left axes (log scale when they span more than two decades), other metrics such
as accuracy on the right, all against the epoch. Uses matplotlib's object API with the Agg
canvas, so it works without a display.
"""

from __future__ import annotations

from matplotlib.figure import Figure

_NOT_PLOTTED = ("epoch", "seconds")


def plot_history(history: list[dict], title: str | None = None) -> Figure:
    """One figure of every per-epoch metric in ``history`` (a list of records with "epoch")."""
    epochs = [r["epoch"] for r in history]
    keys = [k for k in dict.fromkeys(k for r in history for k in r) if k not in _NOT_PLOTTED and not k.endswith("_per_s")]
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
        values = [r[k] for r in history for k in panel_keys if k in r]
        positive = [v for v in values if v > 0]
        if panel_keys is loss_keys and positive and len(positive) == len(values) and max(positive) > 100 * min(positive):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig
