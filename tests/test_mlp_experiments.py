"""The chapter 4 experiments end to end: demonstrations with the book's settings where they are
quick, shortened where not; the full Fashion-MNIST reproductions are marked slow."""

import pytest
from conftest import needs_real_data

from divekit.experiments.registry import get_experiment
from divekit.experiments.runner import run_experiment


def run(name, tmp_path, **overrides):
    experiment = get_experiment(name)
    return run_experiment(experiment, experiment.make_options(**overrides), tmp_path / name, progress=False)


def files(tmp_path, name):
    return {p.name for p in (tmp_path / name).iterdir()}


def test_activations_demo(tmp_path):
    summary = run("activations", tmp_path, impl="scratch")
    results = summary["results"]
    assert all(results[f"{n}_grad_max_error_vs_autograd"] < 1e-6 for n in ("relu", "sigmoid", "tanh"))
    assert (results["sigmoid_grad_at_0"], results["tanh_grad_at_0"], results["relu_grad_at_0"]) == (0.25, 1.0, 0.0)
    assert {"activations.png", "metrics.csv"} <= files(tmp_path, "activations")


def test_perceptron_xor_demo(tmp_path):
    results = run("perceptron-xor", tmp_path)["results"]
    assert results["separable_train_errors"] == 0 and results["separable_mistakes"] <= results["novikoff_bound"]
    assert results["xor_epochs"] == 100 and results["xor_fewest_mistakes_in_an_epoch"] >= 1
    assert results["xor_train_errors"] >= 1
    assert {"decision_regions.png", "mistakes.png"} <= files(tmp_path, "perceptron-xor")


def test_mlp_xor_demo(tmp_path):
    results = run("mlp-xor", tmp_path, impl="scratch", epochs=100)["results"]
    assert results["xor_acc"] == 1.0 and results["predictions"] == [0, 1, 1, 0]


def test_polynomial_fit_shows_under_and_over_fitting_shortened(tmp_path):
    results = run("polynomial-fit", tmp_path, epochs=100, overfit_epochs=100)["results"]
    assert results["linear_train_loss"] > 1 and results["linear_test_loss"] > 1  # 2 features cannot fit a cubic
    assert results["cubic_test_loss"] < 0.1
    assert len(results["all20_w"]) == 20


@pytest.mark.parametrize("impl, loss", [("scratch", "squared_loss"), ("fast", "squared_loss"), ("fast", "mse_loss")])
def test_weight_decay_reaches_the_book(tmp_path, impl, loss):
    summary = run("weight-decay", tmp_path, impl=impl, loss=loss)
    results = summary["results"]
    assert results["norm_w_no_decay"] > 10 and results["norm_w_decay"] < 0.5
    assert results["test_loss_decay"] < results["test_loss_no_decay"] / 100
    assert summary["reference"] and all(row["reached"] for row in summary["reference"]), summary["reference"]


def test_gradient_stability_product_stays_finite_past_float32s_range(tmp_path):
    import torch

    results = run("gradient-stability", tmp_path, num_matrices=300, depth=2, width=8, seed=3)["results"]
    torch.manual_seed(3)  # the demo's draws: the sigmoid's inputs need none, then 301 matrices
    M = torch.randn(4, 4).double()
    for _ in range(300):
        M = M @ torch.randn(4, 4).double()
    assert results["product_frobenius_norm"] == pytest.approx(float(torch.linalg.matrix_norm(M)), rel=1e-12)
    assert results["product_frobenius_norm"] > 1e60  # float32 overflows past ~3e38


def test_perceptron_margin_that_leaves_too_few_points_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="fewer than --num-examples 100; pass a smaller --margin"):
        run("perceptron-xor", tmp_path, margin=3.0)


def test_gradient_stability_demo(tmp_path):
    results = run("gradient-stability", tmp_path, depth=30, width=64)["results"]
    assert results["sigmoid_grad_max"] == 0.25 and results["sigmoid_grad_at_minus_8"] < 4e-4
    assert results["product_frobenius_norm"] > 1e10
    assert 0.2 < results["output_variance_xavier"] < 5 and results["output_variance_normal_0.01"] < 1e-20
    assert {"vanishing_sigmoid.png", "exploding_product.png", "variance_by_init.png"} <= files(tmp_path, "gradient-stability")


@pytest.mark.parametrize("name, overrides, message", [
    ("dropout", dict(dropout1=1.5), "--dropout1 must be a probability between 0 and 1"),
    ("mlp", dict(num_layers=0), "--num-layers must be at least 1"),
    ("weight-decay", dict(wd=-1.0), "--wd must be at least 0"),
    ("weight-decay", dict(loss="l1"), "--loss must be one of squared_loss, mse_loss"),
])
def test_bad_options_are_clear_errors(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_experiment(name).make_options(**overrides)


def test_dropout_config_has_the_books_defaults():
    cfg = get_experiment("dropout").make_options()
    assert (cfg.lr, cfg.num_layers, cfg.num_hiddens, cfg.dropout1, cfg.dropout2, cfg.epochs) == (0.5, 2, 256, 0.2, 0.5, 10)


@pytest.mark.parametrize("name, impl, sigma, zero_bias", [
    ("mlp", "scratch", 0.01, True),  # §4.2: W = 0.01 randn, b = 0
    ("mlp", "fast", 0.01, False),  # §4.3: normal_(std=0.01) on the weights, nn.Linear's biases
    ("dropout", "scratch", None, False),  # §4.6.4: nn.Linear's weights and biases
    ("dropout", "fast", 0.01, False),  # §4.6.5: as §4.3
])
def test_each_impl_starts_from_its_sections_initialisation(name, impl, sigma, zero_bias):
    experiment = get_experiment(name)
    options = experiment.make_options(impl=impl)
    assert (options.sigma, options.zero_bias) == (sigma, zero_bias)
    assert experiment.make_options(impl=impl, sigma=0.02, zero_bias=True).sigma == 0.02  # a given value wins


def test_the_help_names_the_default_of_another_impl(capsys):
    from divekit.cli import main

    with pytest.raises(SystemExit):
        main(["run", "dropout", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.01; None with --impl scratch)" in help_text


def test_impl_defaults_cannot_restate_the_default_impl():
    from divekit.experiments.parts import Classify, FashionMNIST
    from divekit.experiments.registry import Recipe

    with pytest.raises(ValueError, match="the default impl's values belong in its defaults"):
        Recipe(name="x", section="4.6", title="x", data=FashionMNIST(), model="mlp", task=Classify(),
               impl_defaults={"fast": dict(sigma=None)})


@needs_real_data(["fashion-mnist"])
@pytest.mark.parametrize("name", ["mlp", "dropout"])
def test_fashion_mnist_experiments_run_on_a_subset(tmp_path, name):
    summary = run(name, tmp_path, impl="scratch", epochs=1, limit=512)
    assert 0 < summary["final"]["train_loss"] < 10 and 0 <= summary["final"]["test_acc"] <= 1
    assert not summary["comparable"] and summary["changed"] == {"epochs": 1, "limit": 512}  # not the book's setting
    assert all(row["reached"] is None for row in summary["reference"])
    assert {"checkpoint.pt", "curves.png", "predictions.png", "summary.json"} <= files(tmp_path, name)


@pytest.mark.slow
@needs_real_data(["fashion-mnist"])
@pytest.mark.parametrize("name", ["mlp", "dropout"])
@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_fashion_mnist_experiments_reach_the_books_test_accuracy(tmp_path, name, impl):
    summary = run(name, tmp_path, impl=impl)
    test_acc = next(row for row in summary["reference"] if row["metric"] == "test_acc")
    assert test_acc["reached"], test_acc


@pytest.mark.slow
def test_polynomial_fit_recovers_the_cubic_with_the_books_settings(tmp_path):
    summary = run("polynomial-fit", tmp_path)
    results = summary["results"]
    assert results["cubic_max_abs_w_error"] < 0.1
    cubic_rows = [row for row in summary["reference"] if row["metric"].startswith("cubic")]
    assert len(cubic_rows) == 2 and all(row["reached"] for row in cubic_rows), cubic_rows
    assert results["all20_test_loss"] > results["all20_train_loss"]  # the 20-feature fit generalises worse


def test_weight_decay_refuses_adamws_decoupled_decay(tmp_path):
    with pytest.raises(ValueError, match="--optimizer adamw decays the weights apart from the gradient"):
        run("weight-decay", tmp_path, optimizer="adamw", epochs=1)
