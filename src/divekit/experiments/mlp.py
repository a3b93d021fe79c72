"""Multilayer perceptrons (D2L chapter 4): activations, the perceptron and XOR, MLPs on
Fashion-MNIST with and without dropout, model selection with polynomial regression, weight decay,
and the numerical (in)stability of deep products.

``mlp`` and ``dropout`` are recipes; the others are demonstrations that train tiny models (through
the same trainer, where there is training) and return numbers and figures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

from divekit.experiments.parts import Classify, FashionMNIST, PredictionGrid
from divekit.experiments.registry import (BatchSize, DemoResult, Device, Epochs, Impl, LearningRate, Optimizer, Recipe,
                                          Seed, demo, register)
from divekit.ops import get_ops
from divekit.options import at_least, positive

if TYPE_CHECKING:
    import torch

    from divekit.data.batch import Split
    from divekit.data.loader import TensorLoader
    from divekit.train.engine import Trainer


def _fit(model, task, optimizer, train: TensorLoader, evaluation: TensorLoader, epochs: int, device,
         eval_name: str = "test") -> tuple[Trainer, list[dict]]:
    """Train a demo's model with the trainer (no run folder, no progress bar, no epoch lines)."""
    from divekit.train.engine import Trainer

    trainer = Trainer(model, task, optimizer, epochs=epochs, device=device, eval_name=eval_name, progress=False,
                      verbose=False)
    return trainer, trainer.fit(train, evaluation)


def _loss_curves(history: list[dict], **label) -> tuple[dict, list[dict]]:
    """A figure panel {"train": (epochs, losses), "test": (epochs, losses)} and the same as table
    rows tagged with ``label``, from a trainer history with train_loss and test_loss."""
    epochs = [r["epoch"] for r in history]
    panel = {split: (epochs, [r[f"{split}_loss"] for r in history]) for split in ("train", "test")}
    rows = [{**label, "epoch": r["epoch"], "train_loss": r["train_loss"], "test_loss": r["test_loss"]} for r in history]
    return panel, rows


# -- MLP and dropout on Fashion-MNIST (D2L §4.2-4.3, §4.6) -----------------------------------------

# Each impl starts from its own section's weights (models/mlp.py): the concise §4.3 and §4.6.5 keep
# nn.Linear's biases, §4.2 zeroes them, §4.6.4 keeps nn.Linear's weights as well.
register(Recipe(
    name="mlp", section="4.2-4.3", title="Multilayer perceptron",
    data=FashionMNIST(), model="mlp", model_args=dict(zero_bias=False), task=Classify(),
    probes=(PredictionGrid(),), user_data_kind="classification",
    impl_defaults={"scratch": dict(zero_bias=True)},
))

register(Recipe(
    name="dropout", section="4.6", title="Dropout",
    data=FashionMNIST(), model="mlp", model_args=dict(num_layers=2, dropout1=0.2, dropout2=0.5, zero_bias=False),
    task=Classify(), train=dict(lr=0.5), probes=(PredictionGrid(),), user_data_kind="classification",
    impl_defaults={"scratch": dict(sigma=None)},
))


# -- activations (D2L §4.1.2) ----------------------------------------------------------------------

@demo("activations", section="4.1.2", title="Activation functions and their derivatives", dataset="none (x in [-8, 8))")
def activations(impl: Impl = "fast", device: Device = "auto") -> DemoResult:
    """The plots of ReLU, sigmoid and tanh and their derivatives; the closed forms agree with autograd."""
    import torch

    from divekit.train.device import choose_device
    from divekit.viz.mlp import plot_functions_and_derivatives

    ops = get_ops(impl)
    x = torch.arange(-8.0, 8.0, 0.1, device=choose_device(device))
    curves, errors = {}, {}
    for name in ("relu", "sigmoid", "tanh"):
        f, f_grad = getattr(ops, name), getattr(ops, f"{name}_grad")
        x_req = x.clone().requires_grad_(True)
        (autograd,) = torch.autograd.grad(f(x_req).sum(), x_req)  # d sum_i f(x_i) / d x_i = f'(x_i)
        curves[name] = (f(x), f_grad(x))
        errors[f"{name}_grad_max_error_vs_autograd"] = float((f_grad(x) - autograd).abs().max())
    zero = torch.zeros(1, device=x.device)
    results = {
        **errors,
        "sigmoid_grad_at_0": float(ops.sigmoid_grad(zero)),  # 1/4, the largest it gets
        "tanh_grad_at_0": float(ops.tanh_grad(zero)),  # 1
        "relu_grad_at_0": float(ops.relu_grad(zero)),  # 0 by convention
    }
    rows = []
    for i, xi in enumerate(x.tolist()):
        row = {"x": round(xi, 6)}
        for name, (y, dy) in curves.items():
            row[name], row[f"{name}_grad"] = float(y[i]), float(dy[i])
        rows.append(row)
    return DemoResult(results, {"activations": plot_functions_and_derivatives(x.cpu(), curves)}, rows)


# -- the perceptron and XOR (D2L §4.1 in the notes) ------------------------------------------------

def xor_points() -> tuple[torch.Tensor, torch.Tensor]:
    """The four points of the unit square (4, 2) and their labels x1 XOR x2 (4,)."""
    import torch

    return torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), torch.tensor([0, 1, 1, 0])


@demo("perceptron-xor", section="4.1", title="The perceptron: convergence on separable data, failure on XOR",
      dataset="synthetic: linearly separable 2-D points; the 4 XOR points", tiny=dict(epochs=5, num_examples=20))
def perceptron_xor(epochs: Epochs = 100, seed: Seed = 0,
                   num_examples: Annotated[int, "number of linearly separable 2-D examples", at_least(1)] = 100,
                   margin: Annotated[float, "keep only examples at least this far from the true separating line",
                                     positive] = 0.1) -> DemoResult:
    """Zero mistakes within Novikoff's bound on separable data; never zero on XOR."""
    import torch

    from divekit.models.perceptron import Perceptron, mistake_bound, train_perceptron
    from divekit.viz.mlp import plot_curves, plot_decision_regions

    w_star, b_star = torch.tensor([1.0, -2.0]), 0.5  # the true line x1 - 2 x2 + 0.5 = 0
    X = torch.randn(20 * num_examples, 2)
    distance = (X @ w_star + b_star) / w_star.norm()
    X = X[distance.abs() >= margin][:num_examples]  # (N, 2), a clear gap around the line
    if len(X) < num_examples:
        raise ValueError(f"only {len(X)} of {20 * num_examples} random N(0, 1) points lie at least --margin {margin} "
                         f"from the line, fewer than --num-examples {num_examples}; pass a smaller --margin")
    y = torch.where(X @ w_star + b_star > 0, 1, -1)

    separable = Perceptron(2)
    separable_mistakes = train_perceptron(separable, X, y, epochs)
    xor = Perceptron(2)
    xor_X, xor_labels = xor_points()
    xor_y = 2 * xor_labels - 1  # {0, 1} -> {-1, +1}
    xor_mistakes = train_perceptron(xor, xor_X, xor_y, epochs)

    results = {
        "separable_epochs": len(separable_mistakes),
        "separable_mistakes": sum(separable_mistakes),
        "novikoff_bound": mistake_bound(X, y, w_star, b_star),
        "separable_train_errors": int((separable.predict(X) != y).sum()),
        "xor_epochs": len(xor_mistakes),
        "xor_fewest_mistakes_in_an_epoch": min(xor_mistakes),
        "xor_train_errors": int((xor.predict(xor_X) != xor_y).sum()),
    }
    curves = {"separable data": (list(range(1, len(separable_mistakes) + 1)), separable_mistakes),
              "XOR": (list(range(1, len(xor_mistakes) + 1)), xor_mistakes)}
    figures = {
        "decision_regions": plot_decision_regions({"perceptron, separable data": (separable.predict, X, y),
                                                   "perceptron, XOR": (xor.predict, xor_X, xor_y)}),
        "mistakes": plot_curves({"perceptron mistakes per epoch": curves}, "epoch", "mistakes", log_y=False),
    }
    rows = [{"epoch": e, "separable_mistakes": separable_mistakes[e - 1] if e <= len(separable_mistakes) else 0,
             "xor_mistakes": xor_mistakes[e - 1]} for e in range(1, len(xor_mistakes) + 1)]
    return DemoResult(results, figures, rows)


@demo("mlp-xor", section="4.1-4.2", title="An MLP solves XOR", dataset="the 4 XOR points", tiny=dict(epochs=3))
def mlp_xor(epochs: Epochs = 300, lr: LearningRate = 0.5, batch_size: BatchSize = 4, optimizer: Optimizer = "sgd",
            impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
            num_hiddens: Annotated[int, "width of the hidden layer", at_least(1)] = 16,
            sigma: Annotated[float, "standard deviation of the initial weights (the XOR net is too small for 0.01)",
                             positive] = 0.5) -> DemoResult:
    """One hidden ReLU layer classifies all four points correctly, which no linear model can."""
    import torch

    from divekit.data.batch import Split
    from divekit.data.loader import TensorLoader
    from divekit.models.registry import create_model
    from divekit.optim import create_optimizer
    from divekit.train.device import choose_device
    from divekit.train.tasks import Classification
    from divekit.viz.curves import plot_history
    from divekit.viz.mlp import plot_decision_regions

    device = choose_device(device)
    model = create_model("mlp", impl, input_shape=(2,), num_outputs=2, num_hiddens=num_hiddens, sigma=sigma)
    X, y = xor_points()
    data = Split(X, y)
    loader = TensorLoader(data, batch_size, shuffle=True, seed=seed, device=device)
    task = Classification(get_ops(impl).cross_entropy)
    _, history = _fit(model, task, create_optimizer(optimizer, model.parameters(), impl=impl, lr=lr), loader,
                      TensorLoader(data, 4, device=device), epochs, device, eval_name="xor")
    solved = [r["epoch"] for r in history if r["xor_acc"] == 1.0]
    model.eval()
    with torch.no_grad():
        predicted = model(X.to(device)).argmax(-1).cpu()
    results = {"xor_acc": history[-1]["xor_acc"], "xor_loss": history[-1]["xor_loss"],
               "first_epoch_all_correct": solved[0] if solved else None, "predictions": predicted.tolist()}

    def predict(points):
        return model(points.to(device)).argmax(-1).cpu()

    figures = {"decision_regions": plot_decision_regions({f"MLP 2-{num_hiddens}-2 on XOR": (predict, X, y)}),
               "curves": plot_history(history)}
    return DemoResult(results, figures, history)


# -- model selection: polynomial regression (D2L §4.4.4) -------------------------------------------

TRUE_POLY_W = (5.0, 1.2, -3.4, 5.6)


def polynomial_data(max_degree: int, num_examples: int) -> Split:
    """y = sum_{i<4} w_i x^i / i! + N(0, 0.1^2), x ~ N(0, 1), with features x^i / i! for i < max_degree.

    Dividing by i! = Gamma(i + 1) keeps the large powers of x from dwarfing the rest (D2L §4.4.4.1).
    """
    import torch

    from divekit.data.batch import Split

    if max_degree < len(TRUE_POLY_W):
        raise ValueError(f"max_degree must be at least {len(TRUE_POLY_W)} (the true polynomial is cubic), got {max_degree}")
    x = torch.randn(num_examples, 1)  # (N, 1)
    powers = torch.arange(max_degree)
    features = x**powers / torch.exp(torch.lgamma(powers + 1.0))  # (N, max_degree): x^i / i!
    true_w = torch.zeros(max_degree)
    true_w[: len(TRUE_POLY_W)] = torch.tensor(TRUE_POLY_W)
    y = features @ true_w + 0.1 * torch.randn(num_examples)
    return Split(features, y.reshape(-1, 1))


@demo("polynomial-fit", section="4.4", title="Model selection: under- and over-fitting a polynomial",
      dataset="synthetic: y = 5 + 1.2x - 3.4x^2/2! + 5.6x^3/3! + N(0, 0.1^2)", tiny=dict(epochs=2, overfit_epochs=2))
def polynomial_fit(epochs: Epochs = 400, lr: LearningRate = 0.01, batch_size: BatchSize = 10,
                   optimizer: Optimizer = "sgd", impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
                   max_degree: Annotated[int, "number of polynomial features x^i / i!, i = 0..max_degree-1",
                                         at_least(len(TRUE_POLY_W))] = 20,
                   num_train: Annotated[int, "training examples", at_least(1)] = 100,
                   num_test: Annotated[int, "test examples", at_least(1)] = 100,
                   overfit_epochs: Annotated[int, "epochs for the fit on all max_degree features", at_least(1)] = 1500,
                   ) -> DemoResult:
    """Fit the first 2 (under-fitting), 4 (the true model) and all ``max_degree`` (over-fitting)
    features with a bias-free linear model, MSE loss and minibatch SGD; compare train and test loss."""
    import torch

    from divekit.data.batch import Split
    from divekit.data.loader import TensorLoader
    from divekit.models.registry import create_model
    from divekit.optim import create_optimizer
    from divekit.train.device import choose_device
    from divekit.train.tasks import Regression
    from divekit.viz.mlp import plot_curves

    device = choose_device(device)
    ops = get_ops(impl)
    # data and initial weights come from torch's global generator, which the runner seeds with
    # the seed (a second generator with the same seed would repeat the very same numbers)
    train = polynomial_data(max_degree, num_train)
    test = polynomial_data(max_degree, num_test)
    fits = {"linear": (2, epochs), "cubic": (4, epochs), f"all{max_degree}": (max_degree, overfit_epochs)}
    results, panels, rows = {}, {}, []
    for name, (num_features, fit_epochs) in fits.items():
        train_d, test_d = (Split(s.X[:, :num_features], s.y) for s in (train, test))
        # the book's net: nn.Linear without bias, torch's default init
        model = create_model("linear", impl, input_shape=(num_features,), num_outputs=1, bias=False, sigma=None)
        loader = TensorLoader(train_d, batch_size, shuffle=True, seed=seed, device=device)
        trainer, history = _fit(model, Regression(ops.mse_loss), create_optimizer(optimizer, model.parameters(), impl=impl,
                                lr=lr), loader, TensorLoader(test_d, 256, device=device), fit_epochs, device)
        results[f"{name}_w"] = [round(v, 4) for v in model.linear.weight.detach().cpu().reshape(-1).tolist()]
        results[f"{name}_train_loss"] = trainer.evaluate(TensorLoader(train_d, 256, device=device))["loss"]
        results[f"{name}_test_loss"] = history[-1]["test_loss"]
        panels[f"{name} ({num_features} features)"], fit_rows = _loss_curves(history, fit=name)
        rows += fit_rows
    w_error = torch.tensor(results["cubic_w"]) - torch.tensor(TRUE_POLY_W)
    results["cubic_max_abs_w_error"] = float(w_error.abs().max())
    return DemoResult(results, {"polynomial_fits": plot_curves(panels, "epoch", "MSE")}, rows)


# -- weight decay (D2L §4.5) -----------------------------------------------------------------------

@demo("weight-decay", section="4.5", title="Weight decay",
      dataset="synthetic: d = 200, y = 0.05 + sum 0.01 x_i + N(0, 0.01^2), 20 training examples", tiny=dict(epochs=2))
def weight_decay(epochs: Epochs = 100, lr: LearningRate = 0.003, batch_size: BatchSize = 5,
                 optimizer: Optimizer = "sgd", impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
                 wd: Annotated[float, "the weight decay lambda compared with lambda = 0", at_least(0)] = 3.0,
                 loss: Annotated[Literal["squared_loss", "mse_loss"],
                                 "squared_loss: (y_hat - y)^2 / 2 as in §4.5.3; mse_loss: §4.5.4's nn.MSELoss "
                                 "(and its N(0, 1) bias)"] = "squared_loss",
                 num_inputs: Annotated[int, "number of features d (y = 0.05 + sum_i 0.01 x_i + noise)", at_least(1)] = 200,
                 num_train: Annotated[int, "training examples (far fewer than features: overfitting is easy)",
                                      at_least(1)] = 20,
                 num_test: Annotated[int, "test examples", at_least(1)] = 100) -> DemoResult:
    """High-dimensional linear regression with lambda = 0 and lambda = ``wd`` on the weights (not
    the bias). The scratch twin adds lambda * ||w||^2 / 2 to the loss (D2L §4.5.3); the fast twin
    gives the optimizer's weight_decay on the weights' parameter group (§4.5.4), the same update for
    every optimizer but AdamW, whose decay is decoupled from the gradient: not this L2 penalty, so refused."""
    import torch

    from divekit.data.loader import TensorLoader
    from divekit.data.synthetic import synthetic_regression
    from divekit.models.registry import create_model
    from divekit.optim import SCRATCH_PREFIX, create_optimizer
    from divekit.train.device import choose_device
    from divekit.train.tasks import Regression
    from divekit.viz.mlp import plot_curves

    if optimizer.removeprefix(SCRATCH_PREFIX) == "adamw":
        raise ValueError("--optimizer adamw decays the weights apart from the gradient (decoupled), not by the L2 "
                         "penalty this section compares; choose sgd, momentum, adagrad, rmsprop, adadelta, adam or yogi")
    device = choose_device(device)
    ops = get_ops(impl)
    true_w = [0.01] * num_inputs
    train = synthetic_regression(true_w, 0.05, num_train, 0.01)  # from the global generator, seeded by the runner
    test = synthetic_regression(true_w, 0.05, num_test, 0.01)
    results, panels, rows = {}, {}, []
    for label, lambd in (("no_decay", 0.0), ("decay", wd)):
        model = create_model("linear", impl, input_shape=(num_inputs,), num_outputs=1, sigma=1.0)  # w ~ N(0, 1), b = 0
        if loss == "mse_loss":  # §4.5.4's concise net draws the bias from N(0, 1) too; §4.5.2 starts it at 0
            with torch.no_grad():
                model.linear.bias.normal_()
        decay = ops.WeightDecay(lambd)
        task = Regression(getattr(ops, loss), penalty=decay.penalty)
        sgd = create_optimizer(optimizer, decay.param_groups(model), impl=impl, lr=lr)
        loader = TensorLoader(train, batch_size, shuffle=True, seed=seed, device=device)
        trainer, history = _fit(model, task, sgd, loader, TensorLoader(test, 256, device=device), epochs, device)
        results[f"norm_w_{label}"] = float(model.linear.weight.detach().norm())
        results[f"train_loss_{label}"] = trainer.evaluate(TensorLoader(train, 256, device=device))["loss"]
        results[f"test_loss_{label}"] = history[-1]["test_loss"]
        panels[f"lambda = {lambd:g}"], fit_rows = _loss_curves(history, **{"lambda": lambd})
        rows += fit_rows
    return DemoResult(results, {"weight_decay": plot_curves(panels, "epoch", "loss")}, rows)


# -- numerical stability (D2L §4.8) ----------------------------------------------------------------

@demo("gradient-stability", section="4.8", title="Vanishing and exploding gradients; Xavier initialization",
      dataset="none (random matrices)", tiny=dict(num_matrices=10, depth=10, width=16))
def gradient_stability(impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
                       num_matrices: Annotated[int, "random 4x4 matrices multiplied into the first (the book's 100: "
                                                    "a product of 101)", at_least(1)] = 100,
                       depth: Annotated[int, "layers in the stack of linear layers that shows how initialization "
                                             "scales the variance", at_least(1)] = 100,
                       width: Annotated[int, "width of each of those layers", at_least(1)] = 256) -> DemoResult:
    """Vanishing gradients: the sigmoid's gradient is nearly 0 away from 0 (D2L §4.8.1.1).
    Exploding gradients: a product of random N(0, 1) 4x4 matrices grows exponentially (§4.8.1.2).
    And the cure in §4.8.2: through a deep linear stack, N(0, 0.01^2) weights shrink the signal
    to nothing, while Xavier's Var = 2 / (n_in + n_out) keeps its variance near 1."""
    import torch

    from divekit.train.device import choose_device
    from divekit.viz.mlp import plot_curves, plot_functions_and_derivatives

    device = choose_device(device)
    ops = get_ops(impl)
    x = torch.arange(-8.0, 8.0, 0.1, requires_grad=True)
    sigmoid = ops.sigmoid(x)
    (sigmoid_grad,) = torch.autograd.grad(sigmoid.sum(), x)

    M = torch.randn(4, 4).double()  # float64: float32 overflows after ~170 factors, its squares after ~100
    product_norms = []
    for _ in range(num_matrices):
        M = M @ torch.randn(4, 4).double()  # (4, 4), the same draws as the book's float32 ones
        product_norms.append(float(torch.linalg.matrix_norm(M)))

    X = torch.randn(256, width, device=device)  # (B, width), variance 1
    inits = {"xavier normal": ops.xavier_normal_, "N(0, 0.01^2)": lambda W: W.normal_(0, 0.01)}
    variances = {name: [] for name in inits}
    for name, init in inits.items():
        H = X
        for _ in range(depth):
            W = init(torch.empty(width, width, device=device))  # (width_out, width_in)
            H = H @ W.T  # (B, width): Var[h] = width * Var[W] * Var[h_prev]
            variances[name].append(float(H.var()))

    layers = list(range(1, depth + 1))
    results = {
        "sigmoid_grad_max": float(sigmoid_grad.max()),
        "sigmoid_grad_at_minus_8": float(sigmoid_grad[0]),
        "product_frobenius_norm": product_norms[-1],
        "product_max_abs_entry": float(M.abs().max()),
        "output_variance_xavier": variances["xavier normal"][-1],
        "output_variance_normal_0.01": variances["N(0, 0.01^2)"][-1],
    }
    steps = list(range(1, num_matrices + 1))
    figures = {
        "vanishing_sigmoid": plot_functions_and_derivatives(x, {"sigmoid": (sigmoid, sigmoid_grad)}),
        "exploding_product": plot_curves({"||product of k + 1 random 4x4 matrices||": {"Frobenius norm": (steps, product_norms)}},
                                         "k", "norm"),
        "variance_by_init": plot_curves({"variance after each linear layer": {k: (layers, v) for k, v in variances.items()}},
                                        "layer", "variance"),
    }
    rows = [{"step": k, "product_norm": product_norms[k - 1] if k <= len(product_norms) else math.nan,
             "variance_xavier": variances["xavier normal"][k - 1] if k <= depth else math.nan,
             "variance_normal_0.01": variances["N(0, 0.01^2)"][k - 1] if k <= depth else math.nan}
            for k in range(1, max(num_matrices, depth) + 1)]
    return DemoResult(results, figures, rows)
