"""The optimization chapter's figures (D2L §11.1-11.6): landscapes, convexity, and the paths that
gradient descent and its variants take on them; and the airfoil loss curves (§11.5-11.10).

Every function returns a matplotlib ``Figure`` made with the object API (no pyplot, no display).
Functions of one variable take a callable on tensors; trajectories are tensors of points,
(T + 1,) for one variable and (T + 1, 2) for two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Polygon, Wedge
from matplotlib.ticker import NullFormatter

Function = Callable[[torch.Tensor], torch.Tensor]
TRACE_COLOR = "#ff7f0e"  # the book's orange for the path, over its blue function or contours


def annotate(ax, text: str, xy: tuple[float, float], xytext: tuple[float, float]) -> None:
    """A label at ``xytext`` with an arrow to ``xy`` (the book's ``d2l.annotate``)."""
    ax.annotate(text, xy=xy, xytext=xytext, arrowprops={"arrowstyle": "->"})


def _plot_function(ax, f: Function, lo: float, hi: float, step: float = 0.01) -> None:
    x = torch.arange(lo, hi, step, dtype=torch.float64)
    ax.plot(x.numpy(), f(x).numpy())
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.grid(True, alpha=0.3)


# -- §11.1: why optimization is hard -------------------------------------------------------------

def local_and_global_minimum() -> Figure:
    """f(x) = x cos(pi x) on [-1, 2]: a local minimum near x = -0.3, the global one near x = 1.1."""
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    _plot_function(ax, lambda x: x * torch.cos(math.pi * x), -1.0, 2.0)
    annotate(ax, "local minimum", (-0.3, -0.25), (-0.77, -1.0))
    annotate(ax, "global minimum", (1.1, -0.95), (0.6, 0.8))
    return fig


def saddle_point_1d() -> Figure:
    """f(x) = x^3: the gradient vanishes at x = 0, which is neither a minimum nor a maximum."""
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    _plot_function(ax, lambda x: x**3, -2.0, 2.0)
    annotate(ax, "saddle point", (0, -0.2), (-0.52, -5.0))
    return fig


def saddle_point_2d() -> Figure:
    """f(x, y) = x^2 - y^2: a minimum along x and a maximum along y, so a saddle at the origin
    (its Hessian has eigenvalues 2 and -2)."""
    x, y = torch.meshgrid(torch.linspace(-1.0, 1.0, 101), torch.linspace(-1.0, 1.0, 101), indexing="ij")
    z = x**2 - y**2
    fig = Figure(figsize=(4.5, 4.0), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    ax.plot_wireframe(x.numpy(), y.numpy(), z.numpy(), rstride=10, cstride=10)
    ax.plot([0], [0], [0], "rx", markersize=10)
    ax.set_xticks([-1, 0, 1])
    ax.set_yticks([-1, 0, 1])
    ax.set_zticks([-1, 0, 1])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return fig


def vanishing_gradient() -> Figure:
    """tanh(x): at x = 4 the gradient 1 - tanh(4)^2 is about 0.0013, so descent barely moves."""
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    _plot_function(ax, torch.tanh, -2.0, 5.0)
    annotate(ax, "vanishing gradient", (4, 1), (2, 0.0))
    return fig


# -- §11.2: convexity ----------------------------------------------------------------------------

CONVEXITY_EXAMPLES: dict[str, Function] = {
    "0.5 x^2 (convex)": lambda x: 0.5 * x**2,
    "cos(pi x) (not convex)": lambda x: torch.cos(math.pi * x),
    "exp(0.5 x) (convex)": lambda x: torch.exp(0.5 * x),
}
CHORD = (-1.5, 1.0)  # the segment whose chord each panel draws


def convex_functions() -> Figure:
    """f is convex when every chord lies above the graph: f(l a + (1 - l) b) <= l f(a) + (1 - l) f(b).
    Each panel draws the chord between x = -1.5 and x = 1; only cos(pi x) dips above its chord."""
    fig = Figure(figsize=(9, 3), layout="constrained")
    for ax, (name, f) in zip(fig.subplots(1, 3), CONVEXITY_EXAMPLES.items()):
        _plot_function(ax, f, -2.0, 2.0)
        segment = torch.tensor(CHORD, dtype=torch.float64)
        ax.plot(segment.numpy(), f(segment).numpy(), color=TRACE_COLOR, marker="o")
        ax.set_title(name)
    return fig


# A segment between the jaws of the wedge below: both ends in the set, its middle (0.35, 0) in the open mouth.
PACMAN_SEGMENT = ((0.35, 0.6), (0.35, -0.6))


def convex_sets() -> Figure:
    """A set is convex when it holds the whole segment between any two of its points. The first
    (a disc missing a wedge) is not: the segment between its jaws crosses the gap; the other two are."""
    fig = Figure(figsize=(9, 3), layout="constrained")
    axes = fig.subplots(1, 3)
    hexagon = [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)]
    shapes = [
        (Wedge((0, 0), 1.0, 35, 325), PACMAN_SEGMENT, "not convex"),
        (Polygon(hexagon), ((-0.7, 0.3), (0.6, -0.5)), "convex"),
        (Ellipse((0, 0), 2.0, 1.3), ((-0.8, 0.1), (0.5, 0.4)), "convex"),
    ]
    for ax, (patch, (a, b), title) in zip(axes, shapes):
        patch.set(facecolor="#c6dbef", edgecolor="#1f77b4")
        ax.add_patch(patch)
        ax.plot([a[0], b[0]], [a[1], b[1]], color=TRACE_COLOR, marker="o")
        ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal", title=title)
        ax.set_axis_off()
    return fig



# -- §11.3-11.6: trajectories --------------------------------------------------------------------

def show_trace_1d(f: Function, traces: Mapping[str, torch.Tensor]) -> Figure:
    """One panel per trajectory of a 1-D descent (the book's ``show_trace``): f, and the points
    x_0, x_1, ... on it. The x range covers every point of the trajectory."""
    fig = Figure(figsize=(3.2 * len(traces), 3.0), layout="constrained")
    axes = fig.subplots(1, len(traces), squeeze=False)[0]
    for ax, (name, trace) in zip(axes, traces.items()):
        trace = trace.detach().double().reshape(-1)
        n = float(trace.abs().max())
        _plot_function(ax, f, -n, n + 0.01, step=n / 500)
        ax.plot(trace.numpy(), f(trace).numpy(), "-o", color=TRACE_COLOR, markersize=3)
        ax.set_title(name)
    return fig


def show_trace_2d(f: Function, traces: Mapping[str, torch.Tensor],
                  x1_range: tuple[float, float] = (-5.5, 1.0), x2_range: tuple[float, float] = (-3.0, 1.0)) -> Figure:
    """One panel per trajectory of a 2-D descent (the book's ``show_trace_2d``): contours of f over
    the given ranges, and the path (T + 1, 2) over them. ``f(x)`` reads x1 and x2 as ``x[0]`` and
    ``x[1]``, so the function that was descended draws its own contours. A path that leaves the
    range (one that diverges) is cut at the frame."""
    x1, x2 = torch.meshgrid(torch.arange(*x1_range, 0.05, dtype=torch.float64),
                            torch.arange(*x2_range, 0.05, dtype=torch.float64), indexing="ij")
    fig = Figure(figsize=(3.8 * len(traces), 3.0), layout="constrained")
    axes = fig.subplots(1, len(traces), squeeze=False)[0]
    for ax, (name, trace) in zip(axes, traces.items()):
        trace = trace.detach().double()
        ax.contour(x1.numpy(), x2.numpy(), f(torch.stack([x1, x2])).numpy(), colors="#1f77b4", linewidths=0.8)
        ax.plot(trace[:, 0].numpy(), trace[:, 1].numpy(), "-o", color=TRACE_COLOR, markersize=3)
        ax.set(xlim=x1_range, ylim=x2_range, xlabel="x1", ylabel="x2", title=name)
    return fig


def momentum_weights(betas: Sequence[float] = (0.95, 0.9, 0.6, 0.0), steps: int = 40) -> Figure:
    """Momentum is a leaky average, v_t = sum_tau beta^tau g_(t - tau) (D2L §11.6.1): the weight of
    a gradient tau steps old is beta^tau, and the weights sum to 1 / (1 - beta)."""
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    tau = torch.arange(steps, dtype=torch.float64)
    for beta in betas:
        ax.plot(tau.numpy(), (beta**tau).numpy(), label=f"beta = {beta:.2f}")
    ax.set(xlabel="time (steps ago)", ylabel="weight")
    ax.legend()
    return fig


# -- §11.5-11.10: optimizers on the airfoil data -------------------------------------------------

def loss_curves(groups: Mapping[str, Mapping[str, Sequence[dict]]]) -> Figure:
    """The full-data loss of each run against training time (log scale, as the book's §11.5
    figure) and against the number of examples seen, one row of two panels per group of runs.
    ``groups`` maps a row's title to its runs, and a run's name to its points: dicts with
    "seconds", "examples" and "loss"."""
    fig = Figure(figsize=(10, 3.6 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for (by_time, by_examples), (title, curves) in zip(axes, groups.items()):
        for name, points in curves.items():
            losses = [p["loss"] for p in points]
            marker = "o" if len(points) < 30 else None  # a run of one point (GD after one epoch) still shows
            by_time.plot([p["seconds"] for p in points], losses, label=name, marker=marker)
            by_examples.plot([p["examples"] for p in points], losses, label=name, marker=marker)
        by_time.set(xscale="log", xlabel="training time (s)", ylabel="loss", title=title)
        by_examples.set(xscale="log", xlabel="examples seen", ylabel="loss", title=title)
        for ax in (by_time, by_examples):
            ax.xaxis.set_minor_formatter(NullFormatter())  # label the decades only
            ax.grid(True, alpha=0.3)
        by_examples.legend(fontsize="small", loc="upper right")
    return fig
