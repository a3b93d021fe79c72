"""Chapter 11's experiments: the book's deterministic trajectories to six digits, the landscape
figures, and the optimizers on the airfoil data (the loader, the loop, and the book's losses)."""

import itertools
import json

import pytest
import torch
from conftest import needs_real_data

from divekit.data.airfoil import FEATURE_NAMES, load_airfoil, read_airfoil, standardize
from divekit.data.base import Split
from divekit.experiments import optimization as ch11
from divekit.experiments.book import book_results
from divekit.experiments.registry import get_experiment
from divekit.experiments.runner import run_experiment
from divekit.optim import scratch

IMPLS = ["scratch", "fast"]


def within_6_digits(value, book):
    """The book prints with %f: six decimals, so its number is the true one rounded."""
    return abs(value - book) <= 5e-7


# -- §11.3 and §11.6: the book's numbers ---------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_descent_on_x_squared_and_on_a_nonconvex_function_ends_where_the_books_does(impl):
    ends = {lr: float(ch11.descend(ch11.square, 10.0, ch11.make_sgd(impl, lr), steps=10)[-1]) for lr in (0.2, 0.05, 1.1)}
    assert within_6_digits(ends[0.2], 0.060466)  # 10 * 0.6^10
    assert within_6_digits(ends[0.05], 3.486784)  # too small: 10 * 0.9^10
    assert within_6_digits(ends[1.1], 61.917364)  # too large: |1 - 2.2| > 1, diverges
    assert within_6_digits(float(ch11.descend(ch11.nonconvex, 10.0, ch11.make_sgd(impl, 2.0), steps=10)[-1]), -1.528166)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_descent_in_2d_ends_where_the_books_does(impl):
    trajectory = ch11.descend(ch11.quadratic_2d, (-5.0, -2.0), ch11.make_sgd(impl, 0.1), steps=20)
    assert trajectory.shape == (21, 2) and trajectory[0].tolist() == [-5.0, -2.0]
    x1, x2 = trajectory[-1].tolist()
    assert within_6_digits(x1, -0.057646) and within_6_digits(x2, -0.000073)
    # on x1^2 + 2 x2^2 each step multiplies x1 by 1 - 2 eta and x2 by 1 - 4 eta
    torch.testing.assert_close(trajectory[:, 0], -5.0 * 0.8 ** torch.arange(21, dtype=torch.float64))
    torch.testing.assert_close(trajectory[:, 1], -2.0 * 0.6 ** torch.arange(21, dtype=torch.float64))


@pytest.mark.parametrize("impl", IMPLS)
def test_momentum_on_the_ill_conditioned_quadratic_ends_where_the_books_does(impl):
    def end(lr, beta=0.0):
        return ch11.descend(ch11.ill_conditioned, (-5.0, -2.0), ch11.make_sgd(impl, lr, beta), steps=20)[-1].tolist()

    x1, x2 = end(0.4)
    assert within_6_digits(x1, -0.943467) and within_6_digits(x2, -0.000073)
    assert within_6_digits(end(0.6)[1], -1673.365109)  # |1 - 0.6 * 4| > 1: x2 diverges
    x1, x2 = end(0.6, 0.5)
    assert within_6_digits(x1, 0.007188) and within_6_digits(x2, 0.002553)
    x1, x2 = end(0.6, 0.25)
    assert within_6_digits(x1, -0.126340) and within_6_digits(x2, -0.186632)


def test_the_books_momentum_update_is_the_scratch_sgd_with_momentum():
    """D2L §11.6.2's momentum_2d, written out, against scratch.SGD(momentum=beta)."""
    x1, x2, v1, v2, eta, beta = -5.0, -2.0, 0.0, 0.0, 0.6, 0.5
    for _ in range(20):
        v1 = beta * v1 + 0.2 * x1
        v2 = beta * v2 + 4 * x2
        x1, x2 = x1 - eta * v1, x2 - eta * v2
    ours = ch11.descend(ch11.ill_conditioned, (-5.0, -2.0), lambda p: scratch.SGD(p, lr=eta, momentum=beta), 20)
    torch.testing.assert_close(ours[-1], torch.tensor([x1, x2], dtype=torch.float64), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["gd-trajectories", "momentum-trajectories"])
def test_trajectory_demos_reach_every_book_number_and_write_rows_and_figures(name, tmp_path):
    experiment = get_experiment(name)
    summary = run_experiment(experiment, experiment.make_options(impl="scratch"), tmp_path / "run")
    assert summary["reference"] and all(row["reached"] for row in summary["reference"]), summary["reference"]
    reference = book_results(name, "scratch")["metrics"]
    assert set(reference) <= set(summary["results"])
    assert all(ref["better"] == "within" for ref in reference.values())
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"metrics.csv", "summary.json"} <= files and sum(f.endswith(".png") for f in files) >= 3
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("trajectory,step,")


def test_landscapes_demo_draws_the_figures_and_measures_what_they_show(tmp_path):
    experiment = get_experiment("optimization-landscapes")
    results = run_experiment(experiment, experiment.make_options(), tmp_path / "run")["results"]
    assert {p.name for p in (tmp_path / "run").glob("*.png")} == {
        "local_global_minimum.png", "saddle_point_1d.png", "saddle_point_2d.png", "vanishing_gradient.png",
        "convex_functions.png", "convex_sets.png"}
    assert -0.3 < results["local_min_x"] < -0.25 and 1.05 < results["global_min_x"] < 1.12
    assert results["global_min_f"] < results["local_min_f"] < 0
    assert results["saddle_hessian_eigenvalues"] == [-2.0, 2.0]
    assert results["tanh_grad_at_4"] == pytest.approx(1 - torch.tanh(torch.tensor(4.0, dtype=torch.float64)) ** 2)
    gaps = results["chord_gap_at_midpoint"]
    assert gaps["cos(pi x) (not convex)"] < 0 < min(gaps["0.5 x^2 (convex)"], gaps["exp(0.5 x) (convex)"])


def test_pacman_segment_leaves_the_set_and_its_ends_are_inside():
    import math

    from divekit.viz.optimization import PACMAN_SEGMENT

    def inside(x, y):  # the wedge of radius 1 from 35 to 325 degrees
        angle = math.degrees(math.atan2(y, x)) % 360
        return math.hypot(x, y) <= 1 and 35 <= angle <= 325

    (ax, ay), (bx, by) = PACMAN_SEGMENT
    assert inside(ax, ay) and inside(bx, by) and not inside((ax + bx) / 2, (ay + by) / 2)


def test_demo_options_that_mean_nothing_are_refused(capsys):
    from divekit.cli import main

    for name, option in (("gd-trajectories", "--lr"), ("gd-trajectories", "--epochs"), ("momentum-trajectories", "--optimizer"),
                         ("optimizers-airfoil", "--batch-size")):
        with pytest.raises(SystemExit):
            main(["run", name, option, "1"])
        assert f"unrecognized arguments: {option} 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown run"):
        get_experiment("optimizers-airfoil").make_options(runs="gd,adamax")
    assert [r.name for r in ch11.selected_runs("adam, gd")] == ["adam", "gd"]


# -- §11.5-11.10: the airfoil data and the training loop -----------------------------------------

def test_read_airfoil_parses_the_tab_separated_file_and_reports_bad_lines(tmp_path):
    path = tmp_path / "airfoil_self_noise.dat"
    path.write_text("800\t0\t0.3048\t71.3\t0.00266337\t126.201\r\n1000\t0\t0.3048\t71.3\t0.00266337\t125.201\r\n")
    table = read_airfoil(path)
    assert table.shape == (2, 6) and table.dtype == torch.float32 and table[1, 0] == 1000
    path.write_text("800\t0\t0.3048\n")
    with pytest.raises(ValueError, match="line 1: expected 6"):
        read_airfoil(path)


def test_standardize_uses_the_population_standard_deviation_like_numpy():
    table = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 60.0]])
    z = standardize(table)
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(z.std(0, correction=0), torch.ones(2))
    torch.testing.assert_close(z, torch.from_numpy((table.numpy() - table.numpy().mean(0)) / table.numpy().std(0)))


def linear_data(n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g)
    return Split(X, X @ torch.tensor([0.5, -1.0, 0.3, 0.0, 2.0]) + 0.1 * torch.randn(n, generator=g))


@pytest.mark.parametrize("batch_size, expected_points", [(1, 10), (10, 10), (100, 10), (300, 4), (1000, 2)])
def test_the_loop_evaluates_the_full_data_loss_every_200_examples(batch_size, expected_points):
    points = ch11.train_linear_regression(linear_data(), lambda p: scratch.SGD(p, lr=0.01), batch_size=batch_size,
                                          epochs=2, seed=0)
    # 2000 examples seen: a point whenever the count is a multiple of 200 (for batch 300: 600, 1000
    # (the last batch of the epoch is 100), 1600, 2000), and always one after the last step
    assert len(points) == expected_points and points[-1]["examples"] == 2000 and points[-1]["epoch"] == 2.0
    assert all(b["seconds"] >= a["seconds"] for a, b in itertools.pairwise(points))
    assert set(points[0]) == {"examples", "epoch", "seconds", "loss"}


def test_the_loop_fits_a_linear_model_down_to_the_noise_and_is_reproducible():
    def run():
        return ch11.train_linear_regression(linear_data(), lambda p: scratch.SGD(p, lr=0.05), batch_size=10, epochs=2,
                                            seed=3)

    first, second = run(), run()
    assert first[-1]["loss"] < 0.01  # the noise's variance / 2 is 0.005
    assert [p["loss"] for p in first] == [p["loss"] for p in second]


def test_reference_names_every_airfoil_run_and_fast_leaves_out_only_yogi():
    names = {f"{run.name}_loss" for run in ch11.AIRFOIL_RUNS}
    assert set(book_results("optimizers-airfoil", "scratch")["metrics"]) == names
    assert set(book_results("optimizers-airfoil", "fast")["metrics"]) == names - {"yogi_loss"}
    from divekit.optim import OPTIMIZERS

    assert [name for name, twins in OPTIMIZERS.items() if twins.fast is None] == ["yogi"]


@needs_real_data(["airfoil"])
def test_load_airfoil_is_the_books_first_1500_standardised_rows():
    data = load_airfoil(progress=False)
    assert data.train.X.shape == (1500, 5) and data.train.y.shape == (1500,)
    assert data.eval is data.train and data.feature_names == FEATURE_NAMES
    # standardised over all 1503 rows, so the first 1500 are close to, not exactly, mean 0 and std 1
    assert data.train.X.mean(0).abs().max() < 0.05 and (data.train.X.std(0) - 1).abs().max() < 0.05
    with pytest.raises(ValueError, match="n must be between 1 and 1503"):
        load_airfoil(2000, progress=False)


@needs_real_data(["airfoil"])
def test_optimizers_airfoil_reaches_the_books_losses_with_scratch_and_torch_optimizers(tmp_path):
    experiment = get_experiment("optimizers-airfoil")
    summary = run_experiment(experiment, experiment.make_options(impl="scratch"), tmp_path / "scratch")
    assert len(summary["reference"]) == len(ch11.AIRFOIL_RUNS)
    assert all(row["reached"] for row in summary["reference"]), [r for r in summary["reference"] if not r["reached"]]
    assert all(0.24 < row["ours"] < 0.26 for row in summary["reference"])
    assert (tmp_path / "scratch" / "loss_curves.png").exists()
    rows = (tmp_path / "scratch" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "run,examples,epoch,seconds,loss" and len(rows) == 1 + 5 + 11 * 15

    fast = run_experiment(experiment, experiment.make_options(impl="fast", runs="sgd,momentum_b09,adam"), tmp_path / "fast")
    for name in ("sgd_loss", "momentum_b09_loss", "adam_loss"):  # the same runs, so the same losses
        assert fast["results"][name] == pytest.approx(summary["results"][name], rel=1e-4)


def test_a_limited_airfoil_run_skips_the_comparison(tmp_path, monkeypatch):
    monkeypatch.setattr("divekit.data.airfoil.load_airfoil", lambda: type("D", (), {"train": linear_data(300)})())
    experiment = get_experiment("optimizers-airfoil")
    summary = run_experiment(experiment, experiment.make_options(runs="gd,adam", limit=100, epochs=1), tmp_path / "run")
    assert not summary["comparable"] and all(row["reached"] is None for row in summary["reference"])
    assert set(summary["results"]) == {"gd_loss", "gd_sec_per_epoch", "adam_loss", "adam_sec_per_epoch"}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["results"] == summary["results"]


def test_a_run_of_one_point_shows_in_the_loss_curves():
    from divekit.viz.optimization import loss_curves

    fig = loss_curves({"airfoil": {"gd": [{"seconds": 0.5, "examples": 1500, "loss": 0.3}],
                                         "sgd": [{"seconds": s, "examples": 10 * s, "loss": 1 / s} for s in range(1, 40)]}})
    by_time = fig.axes[0]
    markers = {line.get_label(): line.get_marker() for line in by_time.get_lines()}
    assert markers["gd"] == "o" and markers["sgd"] in ("None", None, "")  # one point needs a marker to be seen
