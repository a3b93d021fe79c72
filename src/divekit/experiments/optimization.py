"""Optimization algorithms (D2L chapter 11): the landscapes that make optimization hard, gradient
descent and momentum on functions whose minimum we know, and every optimizer of the chapter on the
airfoil data.

All four experiments are demonstrations computed here, not trainer runs:

* ``optimization-landscapes`` (§11.1-11.2): the figures of local minima, saddle points, vanishing
  gradients and convexity;
* ``gd-trajectories`` (§11.3): gradient descent on x^2 with three learning rates, on a non-convex
  function, and on x1^2 + 2 x2^2, with the book's final points to six digits;
* ``momentum-trajectories`` (§11.6): gradient descent against momentum on the ill-conditioned
  0.1 x1^2 + 2 x2^2;
* ``optimizers-airfoil`` (§11.5-11.10): GD, SGD, minibatch SGD, momentum, AdaGrad, RMSProp,
  Adadelta, Adam and Yogi training a linear regression on the airfoil data, with the full-data
  loss against time and against examples seen.

Each descent is run by an optimizer class on a float64 tensor: ``--impl scratch`` uses
:mod:`divekit.optim.scratch`, ``--impl fast`` the matching ``torch.optim`` class. The book's
numbers are reached by both.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from divekit.experiments.registry import DemoResult, Impl, Seed, demo
from divekit.options import at_least

if TYPE_CHECKING:
    import torch

    from divekit.data.base import Split

log = logging.getLogger("divekit")

MakeOptimizer = Callable[[Iterable["torch.Tensor"]], "torch.optim.Optimizer"]


def make_sgd(impl: str, lr: float, momentum: float = 0.0) -> MakeOptimizer:
    """Gradient descent (with momentum) as the scratch or the torch optimizer."""
    from divekit.optim import optimizer_class

    return functools.partial(optimizer_class("sgd", impl), lr=lr, momentum=momentum)


# -- descent on a known function -----------------------------------------------------------------

def descend(f: Callable[[torch.Tensor], torch.Tensor], x0: Sequence[float] | float, make_optimizer: MakeOptimizer,
            steps: int) -> torch.Tensor:
    """Minimise ``f`` from ``x0`` with ``steps`` steps of an optimizer: the gradient comes from
    autograd and the update from the optimizer, so gradient descent here *is* ``SGD`` on f.
    Returns the trajectory x_0, x_1, ..., x_steps: (steps + 1,) or (steps + 1, d), float64."""
    import torch

    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([x])
    trajectory = [x.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()
        f(x).backward()
        optimizer.step()
        trajectory.append(x.detach().clone())
    return torch.stack(trajectory)


def _trajectory_rows(name: str, trajectory: torch.Tensor) -> list[dict]:
    rows = []
    for step, x in enumerate(trajectory.tolist()):
        point = {"x": x} if trajectory.dim() == 1 else {f"x{i + 1}": xi for i, xi in enumerate(x)}
        rows.append({"trajectory": name, "step": step, **point})
    return rows


# -- §11.1-11.2: landscapes ----------------------------------------------------------------------

@demo("optimization-landscapes", section="11.1-11.2", title="Optimization landscapes",
      dataset="functions: x cos(pi x), x^3, x^2 - y^2, tanh")
def optimization_landscapes() -> DemoResult:
    """The figures of local minima, saddle points, vanishing gradients and convexity (§11.1-11.2),
    with the numbers they show computed."""
    import torch

    from divekit.viz import optimization as viz

    # x cos(pi x): the minima on either side of x = 0.5, from a fine grid
    x = torch.arange(-1.0, 2.0, 1e-4, dtype=torch.float64)
    f = x * torch.cos(math.pi * x)
    left = x < 0.5
    local_i, global_i = f[left].argmin(), f[~left].argmin()
    # x^2 - y^2: gradient zero at the origin, Hessian eigenvalues of both signs
    hessian = torch.autograd.functional.hessian(lambda p: p[0] ** 2 - p[1] ** 2, torch.zeros(2, dtype=torch.float64))
    # tanh at 4: the gradient that vanishes
    x4 = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    (tanh_grad,) = torch.autograd.grad(torch.tanh(x4), x4)
    # the chord test of convexity at the midpoint of each panel's segment
    a, b = (torch.tensor(v, dtype=torch.float64) for v in viz.CHORD)
    chord_gaps = {name: float((g(a) + g(b)) / 2 - g((a + b) / 2)) for name, g in viz.CONVEXITY_EXAMPLES.items()}

    results = {
        "local_min_x": float(x[left][local_i]), "local_min_f": float(f[left][local_i]),
        "global_min_x": float(x[~left][global_i]), "global_min_f": float(f[~left][global_i]),
        "saddle_hessian_eigenvalues": sorted(torch.linalg.eigvalsh(hessian).tolist()),
        "tanh_grad_at_4": float(tanh_grad),
        # chord minus function at the segment's midpoint: negative somewhere means not convex
        "chord_gap_at_midpoint": chord_gaps,
    }
    figures = {
        "local_global_minimum": viz.local_and_global_minimum(),
        "saddle_point_1d": viz.saddle_point_1d(),
        "saddle_point_2d": viz.saddle_point_2d(),
        "vanishing_gradient": viz.vanishing_gradient(),
        "convex_functions": viz.convex_functions(),
        "convex_sets": viz.convex_sets(),
    }
    return DemoResult(results, figures)


# -- §11.3: gradient descent ---------------------------------------------------------------------

GD_1D_LRS = (0.05, 0.2, 1.1)  # too small, good, too large (diverges)
NONCONVEX_C = 0.15 * math.pi


def square(x):
    return x**2  # f(x) = x^2, f'(x) = 2x


def nonconvex(x):
    return x * (NONCONVEX_C * x).cos()  # f(x) = x cos(cx), c = 0.15 pi


def quadratic_2d(x):
    return x[0] ** 2 + 2 * x[1] ** 2  # f(x) = x1^2 + 2 x2^2


@demo("gd-trajectories", section="11.3", title="Gradient descent", dataset="functions: x^2, x cos(0.15 pi x), x1^2 + 2 x2^2")
def gd_trajectories(impl: Impl = "fast") -> DemoResult:
    """From x = 10, ten steps of gradient descent on x^2 with eta = 0.05 (too slow), 0.2 and 1.1
    (overshoots and diverges), and with eta = 2 on x cos(0.15 pi x) (a poor local minimum); then
    twenty steps with eta = 0.1 on x1^2 + 2 x2^2 from (-5, -2) (§11.3)."""
    from divekit.viz.optimization import show_trace_1d, show_trace_2d

    traces = {f"eta={lr}": descend(square, 10.0, make_sgd(impl, lr), steps=10) for lr in GD_1D_LRS}
    trace_nonconvex = descend(nonconvex, 10.0, make_sgd(impl, 2.0), steps=10)
    trace_2d = descend(quadratic_2d, (-5.0, -2.0), make_sgd(impl, 0.1), steps=20)

    results = {f"x_eta{lr}": float(traces[f"eta={lr}"][-1]) for lr in GD_1D_LRS}
    results["x_nonconvex_eta2"] = float(trace_nonconvex[-1])
    results["x1_2d"], results["x2_2d"] = trace_2d[-1].tolist()
    rows = [row for name, trace in traces.items() for row in _trajectory_rows(f"x^2 {name}", trace)]
    rows += _trajectory_rows("x cos(0.15 pi x) eta=2", trace_nonconvex)
    rows += _trajectory_rows("x1^2 + 2 x2^2 eta=0.1", trace_2d)
    figures = {
        "gd_1d": show_trace_1d(square, traces),
        "gd_nonconvex": show_trace_1d(nonconvex, {"x cos(0.15 pi x), eta=2": trace_nonconvex}),
        "gd_2d": show_trace_2d(quadratic_2d, {"x1^2 + 2 x2^2, eta=0.1": trace_2d}),
    }
    return DemoResult(results, figures, rows)


# -- §11.6: momentum -----------------------------------------------------------------------------

def ill_conditioned(x):
    return 0.1 * x[0] ** 2 + 2 * x[1] ** 2  # f(x) = 0.1 x1^2 + 2 x2^2: curvatures 0.2 and 4


MOMENTUM_RUNS = (  # (name, eta, beta): the book's four trajectories
    ("gd_eta0.4", 0.4, 0.0),  # slow along x1, fine along x2
    ("gd_eta0.6", 0.6, 0.0),  # faster along x1, but x2 oscillates and diverges (|1 - 0.6 * 4| > 1)
    ("momentum_eta0.6_beta0.5", 0.6, 0.5),  # momentum damps the oscillation: converges
    ("momentum_eta0.6_beta0.25", 0.6, 0.25),  # less momentum: converges, less far in 20 steps
)


@demo("momentum-trajectories", section="11.6", title="Momentum", dataset="function: 0.1 x1^2 + 2 x2^2")
def momentum_trajectories(impl: Impl = "fast") -> DemoResult:
    """Twenty steps from (-5, -2) on 0.1 x1^2 + 2 x2^2, where plain gradient descent must choose
    between crawling along x1 and diverging along x2, and momentum gets both right (§11.6)."""
    from divekit.viz.optimization import momentum_weights, show_trace_2d

    traces = {name: descend(ill_conditioned, (-5.0, -2.0), make_sgd(impl, lr, beta), steps=20)
              for name, lr, beta in MOMENTUM_RUNS}
    results = {}
    for name, trace in traces.items():
        results[f"{name}_x1"], results[f"{name}_x2"] = trace[-1].tolist()
    rows = [row for name, trace in traces.items() for row in _trajectory_rows(name, trace)]
    labels = {name: f"eta={lr}" + (f", beta={beta}" if beta else "") for name, lr, beta in MOMENTUM_RUNS}
    figures = {
        "gd_ill_conditioned": show_trace_2d(
            ill_conditioned, {labels[n]: traces[n] for n in ("gd_eta0.4", "gd_eta0.6")}),
        "momentum_ill_conditioned": show_trace_2d(
            ill_conditioned, {labels[n]: traces[n] for n in ("momentum_eta0.6_beta0.5", "momentum_eta0.6_beta0.25")}),
        "momentum_weights": momentum_weights(),
    }
    return DemoResult(results, figures, rows)


# -- §11.5-11.10: optimizers on the airfoil data -------------------------------------------------

@dataclass(frozen=True)
class AirfoilRun:
    """One of the book's ``train_ch11`` runs: an optimizer with its hyperparameters, a batch size
    and a number of epochs."""

    name: str  # the key of its results: NAME_loss, NAME_sec_per_epoch
    label: str  # its legend in the figure
    section: str
    optimizer: str  # a name in divekit.optim.OPTIMIZERS
    hyperparameters: dict
    batch_size: int = 10
    epochs: int = 2


AIRFOIL_RUNS = (
    AirfoilRun("gd", "GD (batch 1500, lr 1)", "11.5", "sgd", {"lr": 1.0}, batch_size=1500, epochs=10),
    AirfoilRun("sgd", "SGD (batch 1, lr 0.005)", "11.5", "sgd", {"lr": 0.005}, batch_size=1),
    AirfoilRun("minibatch10", "minibatch SGD (batch 10, lr 0.05)", "11.5", "sgd", {"lr": 0.05}, batch_size=10),
    AirfoilRun("minibatch100", "minibatch SGD (batch 100, lr 0.4)", "11.5", "sgd", {"lr": 0.4}, batch_size=100),
    AirfoilRun("momentum_b05", "momentum (lr 0.02, beta 0.5)", "11.6", "sgd", {"lr": 0.02, "momentum": 0.5}),
    AirfoilRun("momentum_b09", "momentum (lr 0.01, beta 0.9)", "11.6", "sgd", {"lr": 0.01, "momentum": 0.9}),
    AirfoilRun("momentum_b09_lr0005", "momentum (lr 0.005, beta 0.9)", "11.6", "sgd", {"lr": 0.005, "momentum": 0.9}),
    AirfoilRun("adagrad", "AdaGrad (lr 0.1)", "11.7", "adagrad", {"lr": 0.1}),
    AirfoilRun("rmsprop", "RMSProp (lr 0.01, gamma 0.9)", "11.8", "rmsprop", {"lr": 0.01, "alpha": 0.9}),
    AirfoilRun("adadelta", "Adadelta (rho 0.9)", "11.9", "adadelta", {"rho": 0.9, "eps": 1e-5}),  # the book's eps
    AirfoilRun("adam", "Adam (lr 0.01)", "11.10", "adam", {"lr": 0.01}),
    AirfoilRun("yogi", "Yogi (lr 0.01)", "11.10", "yogi", {"lr": 0.01}),
)
EVAL_EVERY = 200  # examples between evaluations of the full-data loss, as the book's train_ch11


def selected_runs(runs: str) -> list[AirfoilRun]:
    """The runs named in ``runs`` (comma-separated), or all of them."""
    if runs == "all":
        return list(AIRFOIL_RUNS)
    by_name = {r.name: r for r in AIRFOIL_RUNS}
    names = [name.strip() for name in runs.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        raise ValueError(f"--runs: unknown run(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose all or from {', '.join(by_name)}")
    return [by_name[name] for name in names]


def check_runs(name: str, value: str) -> None:
    selected_runs(value)


def train_linear_regression(data: Split, make_optimizer: MakeOptimizer, *, batch_size: int, epochs: int,
                            seed: int = 0, eval_every: int = EVAL_EVERY) -> list[dict]:
    """The book's ``train_ch11``: a linear regression y_hat = X w + b (w ~ N(0, 0.01^2), b = 0)
    trained on the squared loss / 2 averaged over each shuffled minibatch. Every ``eval_every``
    examples the loss on all of ``data`` is recorded with the examples seen so far and the training
    time so far (the clock stops while the loss is evaluated). Returns those points; the last one
    is taken after the final step."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    X, y = data.X, data.y.reshape(-1, 1)  # (N, D), (N, 1)
    w = torch.normal(0.0, 0.01, size=(X.shape[1], 1), generator=generator).requires_grad_()
    b = torch.zeros(1, requires_grad=True)
    optimizer = make_optimizer([w, b])

    def point(examples: int, seconds: float) -> dict:
        with torch.no_grad():
            full_data_loss = float(((X @ w + b - y) ** 2 / 2).mean())
        return {"examples": examples, "epoch": examples / len(X), "seconds": seconds, "loss": full_data_loss}

    points, examples, seconds = [], 0, 0.0
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        clock = time.perf_counter()
        for i in range(0, len(X), batch_size):
            batch = order[i:i + batch_size]
            loss = ((X[batch] @ w + b - y[batch]) ** 2 / 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            examples += len(batch)
            if examples % eval_every == 0:
                seconds += time.perf_counter() - clock
                points.append(point(examples, seconds))
                clock = time.perf_counter()
        seconds += time.perf_counter() - clock
    if not points or points[-1]["examples"] != examples:
        points.append(point(examples, seconds))
    return points


@demo("optimizers-airfoil", section="11.5-11.10", title="Optimizers on the airfoil data",
      dataset="airfoil: self-noise, first 1500 rows x 5 standardised features", tiny=dict(runs="gd,adam", epochs=1),
      selects=("runs",))  # each run draws from its own generator: the others do not change it
def optimizers_airfoil(impl: Impl = "fast", seed: Seed = 0,
                       epochs: Annotated[int | None, "passes over the data for every run (default: the book's, 10 for "
                                                     "GD and 2 for the rest)", at_least(1)] = None,
                       runs: Annotated[str, "comma-separated runs to do, or all: "
                                            + ", ".join(r.name for r in AIRFOIL_RUNS), check_runs] = "all",
                       limit: Annotated[int | None, "use only the first N examples (a quick check)", at_least(1)] = None,
                       ) -> DemoResult:
    """GD, SGD, minibatch SGD, momentum, AdaGrad, RMSProp, Adadelta, Adam and Yogi training a
    linear regression on the first 1,500 standardised airfoil examples (§11.5-11.10), on the CPU as
    the book's (a 6-parameter model gains nothing from a GPU); the full-data loss against time and
    against examples seen."""
    from divekit.data.airfoil import load_airfoil
    from divekit.data.base import Split
    from divekit.optim import optimizer_class
    from divekit.viz.optimization import loss_curves

    data = load_airfoil().train
    if limit is not None:
        data = Split(data.X[:limit], data.y[:limit])
    results, rows, curves = {}, [], {}
    for run in selected_runs(runs):
        try:
            cls = optimizer_class(run.optimizer, impl)
        except ValueError as missing:  # torch.optim has no Yogi
            log.info(f"{run.name}: {missing}")
            continue
        run_epochs = epochs if epochs is not None else run.epochs
        points = train_linear_regression(data, functools.partial(cls, **run.hyperparameters),
                                         batch_size=run.batch_size, epochs=run_epochs, seed=seed)
        results[f"{run.name}_loss"] = points[-1]["loss"]
        results[f"{run.name}_sec_per_epoch"] = points[-1]["seconds"] / run_epochs
        rows += [{"run": run.name, **point} for point in points]
        group = "GD, SGD and minibatch SGD (§11.5)" if run.section == "11.5" else "momentum and adaptive (§11.6-11.10)"
        curves.setdefault(group, {})[run.label] = points
        log.info(f"{run.label:<34} loss {points[-1]['loss']:.3f}, {points[-1]['seconds'] / run_epochs:.3f} sec/epoch")
    return DemoResult(results, {"loss_curves": loss_curves(curves)}, rows)
