"""Figures of chapters 8-9: token frequencies on log-log axes (Zipf's law, D2L §8.3.3) and
sequence predictions against time (D2L §8.1). Matplotlib's object API, no display needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure


def plot_frequencies(freqs: Mapping[str, Sequence[int]]) -> Figure:
    """Frequency against rank on log-log axes, one line per entry (e.g. unigram, bigram, trigram).

    A straight line is Zipf's law, n_i proportional to 1 / i^alpha.
    """
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for label, counts in freqs.items():
        ax.plot(range(1, len(counts) + 1), counts, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("token rank: x")
    ax.set_ylabel("frequency: n(x)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


def plot_series(time: Sequence[float], series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                xlabel: str = "time", ylabel: str = "x") -> Figure:
    """Several curves against time; ``series`` maps a label to (times, values), so curves may
    start at different times (k-step-ahead predictions start k steps late)."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
    for label, (t, values) in series.items():
        ax.plot(t, values, label=label, linewidth=1)
    ax.set_xlim(min(time), max(time))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig
