"""Multilayer perceptrons (D2L chapter 4): activations, the perceptron and XOR, MLPs on
Fashion-MNIST with and without dropout, model selection with polynomial regression, weight decay,
and the numerical (in)stability of deep products.

The Fashion-MNIST experiments (``mlp``, ``dropout``) are training runs of the trainer; the others
are demonstrations that train tiny models (through the same trainer where there is training) and
return numbers and figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from divekit.data.base import Split
from divekit.data.loader import TensorLoader
from divekit.data.synthetic import synthetic_regression
from divekit.experiments.common import book_default, make_loaders, make_optimizer, prediction_grid, user_or_book_data
from divekit.experiments.config import RunConfig, option
from divekit.experiments.registry import DemoResult, Experiment, Setup, register
from divekit.models.linear import linear_model
from divekit.models.mlp import mlp
from divekit.models.perceptron import Perceptron, mistake_bound, train_perceptron
from divekit.ops import get_ops
from divekit.ops.scratch.regularization import check_dropout_probability
from divekit.train.engine import Trainer
from divekit.train.tasks import Classification, Regression, StepOutput

# -- helpers -------------------------------------------------------------------------------------

def _mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(y_hat - y)^2 per element, the book's ``nn.MSELoss(reduction='none')`` (no 1/2)."""
    return F.mse_loss(y_hat, y, reduction="none")


@contextlib.contextmanager
def _quiet_trainer():
    """Silence the trainer's per-epoch log lines while a demo trains its many tiny models."""
    logger = logging.getLogger("divekit")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fit(model, task, optimizer, train: TensorLoader, evaluation: TensorLoader, epochs: int, device,
         eval_name: str = "test") -> tuple[Trainer, list[dict]]:
    """Train a demo's model with the trainer (no run folder, no progress bar); returns it and its history."""
    trainer = Trainer(model, task, optimizer, epochs=epochs, device=device, eval_name=eval_name, progress=False)
    with _quiet_trainer():
        history = trainer.fit(train, evaluation)
    return trainer, history


def _loss_curves(history: list[dict], **label) -> tuple[dict, list[dict]]:
    """A figure panel {"train": (epochs, losses), "test": (epochs, losses)} and the same as table
    rows tagged with ``label``, from a trainer history with train_loss and test_loss."""
    epochs = [r["epoch"] for r in history]
    panel = {split: (epochs, [r[f"{split}_loss"] for r in history]) for split in ("train", "test")}
    rows = [{**label, "epoch": r["epoch"], "train_loss": r["train_loss"], "test_loss": r["test_loss"]} for r in history]
    return panel, rows


def decay_weights_only(model: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups for an optimizer: weight decay on weights, none on biases (D2L §4.5.4)."""
    weights = [p for name, p in model.named_parameters() if not name.endswith("bias")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    return [{"params": weights, "weight_decay": weight_decay}, {"params": biases, "weight_decay": 0.0}]


class PenalizedRegression(Regression):
    """Regression whose training loss adds lambda * penalty(model) (D2L §4.5.3: squared loss +
    lambda * ||w||^2 / 2). The reported losses stay the plain data loss, as the book plots them."""

    def __init__(self, loss_fn, lambd: float, penalty):
        super().__init__(loss_fn)
        self.lambd, self.penalty = lambd, penalty

    def step(self, model, batch, training) -> StepOutput:
        out = super().step(model, batch, training)
        if training and self.lambd:
            out.loss = out.loss + self.lambd * self.penalty(model)
        return out


# -- MLP and dropout on Fashion-MNIST (D2L §4.2-4.3, §4.6) -----------------------------------------

@dataclass
class MLPConfig(RunConfig):
    num_hiddens: int = option(256, "width of each hidden layer")
    num_layers: int = option(1, "number of hidden layers")
    dropout1: float = option(0.0, "dropout probability after the first hidden layer")
    dropout2: float = option(0.0, "dropout probability after the second and later hidden layers")

    def __post_init__(self):
        super().__post_init__()
        for name in ("num_hiddens", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("dropout1", "dropout2"):
            try:
                check_dropout_probability(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"--{name}: {error}") from None


def _mlp_default(name: str, value):
    return dataclasses.field(default=value, metadata=MLPConfig.__dataclass_fields__[name].metadata)


@dataclass
class DropoutConfig(MLPConfig):
    lr: float = book_default("lr", 0.5)
    num_layers: int = _mlp_default("num_layers", 2)
    dropout1: float = _mlp_default("dropout1", 0.2)
    dropout2: float = _mlp_default("dropout2", 0.5)


def build_mlp(cfg: MLPConfig, device: torch.device) -> Setup:
    """D2L §4.2 (scratch: W, b from tensors, ReLU as max(X, 0), scratch SGD), §4.3 (concise:
    nn.Sequential, torch.optim.SGD), and with dropout §4.6; softmax cross-entropy on the logits."""
    from divekit.data.fashion_mnist import load_fashion_mnist

    data = user_or_book_data(cfg, "classification", load_fashion_mnist)
    dropouts = [cfg.dropout1] + [cfg.dropout2] * (cfg.num_layers - 1)
    model = mlp(data.input_shape, data.num_classes, cfg.impl, [cfg.num_hiddens] * cfg.num_layers, dropouts)
    train_loader, eval_loader = make_loaders(data, cfg, device)
    task = Classification(get_ops(cfg.impl).cross_entropy)
    return Setup(model, task, make_optimizer(cfg, model), train_loader, eval_loader,
                 eval_name=data.eval_name, data_name=data.name, figures=prediction_grid(data, device))


# -- activations (D2L §4.1.2) ----------------------------------------------------------------------

def demo_activations(cfg: RunConfig, device: torch.device) -> DemoResult:
    """Plot ReLU, sigmoid and tanh with their derivatives on x in [-8, 8), as the book does, and
    check each closed-form derivative against autograd."""
    from divekit.viz.mlp import plot_functions_and_derivatives

    ops = get_ops(cfg.impl)
    x = torch.arange(-8.0, 8.0, 0.1, device=device)
    curves, errors = {}, {}
    for name in ("relu", "sigmoid", "tanh"):
        f, f_grad = getattr(ops, name), getattr(ops, f"{name}_grad")
        x_req = x.clone().requires_grad_(True)
        (autograd,) = torch.autograd.grad(f(x_req).sum(), x_req)  # d sum_i f(x_i) / d x_i = f'(x_i)
        curves[name] = (f(x), f_grad(x))
        errors[f"{name}_grad_max_error_vs_autograd"] = float((f_grad(x) - autograd).abs().max())
    zero = torch.zeros(1, device=device)
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
    return DemoResult(results, {"activations": plot_functions_and_derivatives(x, curves)}, rows)


# -- the perceptron and XOR (D2L §4.1 in the notes) ------------------------------------------------

XOR_X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = torch.tensor([0, 1, 1, 0])  # x1 XOR x2


@dataclass
class PerceptronConfig(RunConfig):
    epochs: int = book_default("epochs", 100)
    num_examples: int = option(100, "number of linearly separable 2-D examples")
    margin: float = option(0.1, "keep only examples at least this far from the true separating line")


def demo_perceptron_xor(cfg: PerceptronConfig, device: torch.device) -> DemoResult:
    """The perceptron reaches zero mistakes on separable data within Novikoff's bound, and never
    on XOR, whose classes no line separates."""
    from divekit.viz.mlp import plot_curves, plot_decision_regions

    w_star, b_star = torch.tensor([1.0, -2.0]), 0.5  # the true line x1 - 2 x2 + 0.5 = 0
    X = torch.randn(20 * cfg.num_examples, 2)
    distance = (X @ w_star + b_star) / w_star.norm()
    X = X[distance.abs() >= cfg.margin][: cfg.num_examples]  # (N, 2), a clear gap around the line
    y = torch.where(X @ w_star + b_star > 0, 1, -1)

    separable = Perceptron(2)
    separable_mistakes = train_perceptron(separable, X, y, cfg.epochs)
    xor = Perceptron(2)
    xor_y = 2 * XOR_Y - 1  # {0, 1} -> {-1, +1}
    xor_mistakes = train_perceptron(xor, XOR_X, xor_y, cfg.epochs)

    results = {
        "separable_epochs": len(separable_mistakes),
        "separable_mistakes": sum(separable_mistakes),
        "novikoff_bound": mistake_bound(X, y, w_star, b_star),
        "separable_train_errors": int((separable.predict(X) != y).sum()),
        "xor_epochs": len(xor_mistakes),
        "xor_fewest_mistakes_in_an_epoch": min(xor_mistakes),
        "xor_train_errors": int((xor.predict(XOR_X) != xor_y).sum()),
    }
    curves = {"separable data": (list(range(1, len(separable_mistakes) + 1)), separable_mistakes),
              "XOR": (list(range(1, len(xor_mistakes) + 1)), xor_mistakes)}
    figures = {
        "decision_regions": plot_decision_regions({"perceptron, separable data": (separable.predict, X, y),
                                                   "perceptron, XOR": (xor.predict, XOR_X, xor_y)}),
        "mistakes": plot_curves({"perceptron mistakes per epoch": curves}, "epoch", "mistakes", log_y=False),
    }
    rows = [{"epoch": e, "separable_mistakes": separable_mistakes[e - 1] if e <= len(separable_mistakes) else 0,
             "xor_mistakes": xor_mistakes[e - 1]} for e in range(1, len(xor_mistakes) + 1)]
    return DemoResult(results, figures, rows)


@dataclass
class MLPXorConfig(RunConfig):
    epochs: int = book_default("epochs", 300)
    lr: float = book_default("lr", 0.5)
    batch_size: int = book_default("batch_size", 4)
    num_hiddens: int = option(16, "width of the hidden layer")
    sigma: float = option(0.5, "standard deviation of the initial weights (the XOR net is too small for 0.01)")


def demo_mlp_xor(cfg: MLPXorConfig, device: torch.device) -> DemoResult:
    """One hidden ReLU layer solves XOR, which no linear model (and no perceptron) can."""
    from divekit.viz.curves import plot_history
    from divekit.viz.mlp import plot_decision_regions

    model = mlp((2,), 2, cfg.impl, cfg.num_hiddens, sigma=cfg.sigma)
    data = Split(XOR_X, XOR_Y)
    loader = TensorLoader(data, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device)
    task = Classification(get_ops(cfg.impl).cross_entropy)
    _, history = _fit(model, task, make_optimizer(cfg, model), loader, TensorLoader(data, 4, device=device),
                      cfg.epochs, device, eval_name="xor")
    solved = [r["epoch"] for r in history if r["xor_acc"] == 1.0]
    model.eval()
    with torch.no_grad():
        predicted = model(XOR_X.to(device)).argmax(-1).cpu()
    results = {"xor_acc": history[-1]["xor_acc"], "xor_loss": history[-1]["xor_loss"],
               "first_epoch_all_correct": solved[0] if solved else None, "predictions": predicted.tolist()}

    def predict(points):
        return model(points.to(device)).argmax(-1).cpu()

    figures = {"decision_regions": plot_decision_regions({f"MLP 2-{cfg.num_hiddens}-2 on XOR": (predict, XOR_X, XOR_Y)}),
               "curves": plot_history(history)}
    return DemoResult(results, figures, history)


# -- model selection: polynomial regression (D2L §4.4.4) -------------------------------------------

TRUE_POLY_W = (5.0, 1.2, -3.4, 5.6)


@dataclass
class PolynomialConfig(RunConfig):
    epochs: int = book_default("epochs", 400)
    lr: float = book_default("lr", 0.01)
    batch_size: int = book_default("batch_size", 10)
    max_degree: int = option(20, "number of polynomial features x^i / i!, i = 0..max_degree-1")
    num_train: int = option(100, "training examples")
    num_test: int = option(100, "test examples")
    overfit_epochs: int = option(1500, "epochs for the fit on all max_degree features")


def polynomial_data(max_degree: int, num_examples: int) -> Split:
    """y = sum_{i<4} w_i x^i / i! + N(0, 0.1^2), x ~ N(0, 1), with features x^i / i! for i < max_degree.

    Dividing by i! = Gamma(i + 1) keeps the large powers of x from dwarfing the rest (D2L §4.4.4.1).
    """
    if max_degree < len(TRUE_POLY_W):
        raise ValueError(f"max_degree must be at least {len(TRUE_POLY_W)} (the true polynomial is cubic), got {max_degree}")
    x = torch.randn(num_examples, 1)  # (N, 1)
    powers = torch.arange(max_degree)
    features = x**powers / torch.exp(torch.lgamma(powers + 1.0))  # (N, max_degree): x^i / i!
    true_w = torch.zeros(max_degree)
    true_w[: len(TRUE_POLY_W)] = torch.tensor(TRUE_POLY_W)
    y = features @ true_w + 0.1 * torch.randn(num_examples)
    return Split(features, y.reshape(-1, 1))


def demo_polynomial_fit(cfg: PolynomialConfig, device: torch.device) -> DemoResult:
    """Fit the first 2 (under-fitting), 4 (the true model) and all ``max_degree`` (over-fitting)
    features with a bias-free linear model, MSE loss and minibatch SGD; compare train and test loss."""
    from divekit.viz.mlp import plot_curves

    # data and initial weights come from torch's global generator, which the runner seeds with
    # cfg.seed (a second generator with the same seed would repeat the very same numbers)
    train = polynomial_data(cfg.max_degree, cfg.num_train)
    test = polynomial_data(cfg.max_degree, cfg.num_test)
    fits = {"linear": (2, cfg.epochs), "cubic": (4, cfg.epochs), f"all{cfg.max_degree}": (cfg.max_degree, cfg.overfit_epochs)}
    results, panels, rows = {}, {}, []
    for name, (num_features, epochs) in fits.items():
        train_d, test_d = (Split(s.X[:, :num_features], s.y) for s in (train, test))
        model = nn.Linear(num_features, 1, bias=False)  # the book's net; torch's default init
        loader = TensorLoader(train_d, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device)
        trainer, history = _fit(model, Regression(_mse), make_optimizer(cfg, model), loader,
                                TensorLoader(test_d, 256, device=device), epochs, device)
        results[f"{name}_w"] = [round(v, 4) for v in model.weight.detach().cpu().reshape(-1).tolist()]
        results[f"{name}_train_loss"] = trainer.evaluate(TensorLoader(train_d, 256, device=device))["loss"]
        results[f"{name}_test_loss"] = history[-1]["test_loss"]
        panels[f"{name} ({num_features} features)"], fit_rows = _loss_curves(history, fit=name)
        rows += fit_rows
    w_error = torch.tensor(results["cubic_w"]) - torch.tensor(TRUE_POLY_W)
    results["cubic_max_abs_w_error"] = float(w_error.abs().max())
    return DemoResult(results, {"polynomial_fits": plot_curves(panels, "epoch", "MSE")}, rows)


# -- weight decay (D2L §4.5) -----------------------------------------------------------------------

@dataclass
class WeightDecayConfig(RunConfig):
    epochs: int = book_default("epochs", 100)
    lr: float = book_default("lr", 0.003)
    batch_size: int = book_default("batch_size", 5)
    wd: float = option(3.0, "the weight decay lambda compared with lambda = 0")
    num_inputs: int = option(200, "number of features d (y = 0.05 + sum_i 0.01 x_i + noise)")
    num_train: int = option(20, "training examples (far fewer than features: overfitting is easy)")
    num_test: int = option(100, "test examples")

    def __post_init__(self):
        super().__post_init__()
        if self.wd < 0:
            raise ValueError(f"--wd must be non-negative, got {self.wd}")


def demo_weight_decay(cfg: WeightDecayConfig, device: torch.device) -> DemoResult:
    """High-dimensional linear regression with lambda = 0 and lambda = ``wd``. Scratch: the loss
    adds lambda * l2_penalty(w) (squared loss with the 1/2, D2L §4.5.3); fast: torch.optim.SGD's
    weight_decay on the weight's parameter group only (MSE loss, D2L §4.5.4)."""
    from divekit.viz.mlp import plot_curves

    true_w = [0.01] * cfg.num_inputs
    train = synthetic_regression(true_w, 0.05, cfg.num_train, 0.01)  # from the global generator, seeded by the runner
    test = synthetic_regression(true_w, 0.05, cfg.num_test, 0.01)
    results, panels, rows = {}, {}, []
    for label, lambd in (("no_decay", 0.0), ("decay", cfg.wd)):
        model = linear_model((cfg.num_inputs,), 1, cfg.impl, sigma=1.0)  # w ~ N(0, 1), b = 0
        if cfg.impl == "scratch":
            task = PenalizedRegression(get_ops("scratch").squared_loss, lambd, lambda m: get_ops("scratch").l2_penalty(m.weight))
            optimizer = make_optimizer(cfg, model)
        else:
            task = Regression(_mse)
            optimizer = torch.optim.SGD(decay_weights_only(model, lambd), lr=cfg.lr)
        loader = TensorLoader(train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device)
        trainer, history = _fit(model, task, optimizer, loader, TensorLoader(test, 256, device=device), cfg.epochs, device)
        results[f"norm_w_{label}"] = float(model.weight.detach().norm())
        results[f"train_loss_{label}"] = trainer.evaluate(TensorLoader(train, 256, device=device))["loss"]
        results[f"test_loss_{label}"] = history[-1]["test_loss"]
        panels[f"lambda = {lambd:g}"], fit_rows = _loss_curves(history, **{"lambda": lambd})
        rows += fit_rows
    return DemoResult(results, {"weight_decay": plot_curves(panels, "epoch", "loss")}, rows)


# -- numerical stability (D2L §4.8) ----------------------------------------------------------------

@dataclass
class StabilityConfig(RunConfig):
    num_matrices: int = option(100, "number of random 4x4 matrices multiplied together")
    depth: int = option(100, "layers in the stack of linear layers that shows how initialization scales the variance")
    width: int = option(256, "width of each of those layers")


def demo_gradient_stability(cfg: StabilityConfig, device: torch.device) -> DemoResult:
    """Vanishing gradients: the sigmoid's gradient is nearly 0 away from 0 (D2L §4.8.1.1).
    Exploding gradients: a product of random N(0, 1) 4x4 matrices grows exponentially (§4.8.1.2).
    And the cure in §4.8.2: through a deep linear stack, N(0, 0.01^2) weights shrink the signal
    to nothing, while Xavier's Var = 2 / (n_in + n_out) keeps its variance near 1."""
    from divekit.viz.mlp import plot_curves, plot_functions_and_derivatives

    ops = get_ops(cfg.impl)
    x = torch.arange(-8.0, 8.0, 0.1, requires_grad=True)
    sigmoid = ops.sigmoid(x)
    (sigmoid_grad,) = torch.autograd.grad(sigmoid.sum(), x)

    M = torch.randn(4, 4)
    product_norms = []
    for _ in range(cfg.num_matrices):
        M = M @ torch.randn(4, 4)  # (4, 4)
        product_norms.append(float(torch.linalg.matrix_norm(M.double())))  # float64: squares of 1e25 overflow float32

    X = torch.randn(256, cfg.width, device=device)  # (B, width), variance 1
    inits = {"xavier normal": ops.xavier_normal_, "N(0, 0.01^2)": lambda W: W.normal_(0, 0.01)}
    variances = {name: [] for name in inits}
    for name, init in inits.items():
        H = X
        for _ in range(cfg.depth):
            W = init(torch.empty(cfg.width, cfg.width, device=device))  # (width_out, width_in)
            H = H @ W.T  # (B, width): Var[h] = width * Var[W] * Var[h_prev]
            variances[name].append(float(H.var()))

    layers = list(range(1, cfg.depth + 1))
    results = {
        "sigmoid_grad_max": float(sigmoid_grad.max()),
        "sigmoid_grad_at_minus_8": float(sigmoid_grad[0]),
        "product_frobenius_norm": product_norms[-1],
        "product_max_abs_entry": float(M.abs().max()),
        "output_variance_xavier": variances["xavier normal"][-1],
        "output_variance_normal_0.01": variances["N(0, 0.01^2)"][-1],
    }
    steps = list(range(1, cfg.num_matrices + 1))
    figures = {
        "vanishing_sigmoid": plot_functions_and_derivatives(x, {"sigmoid": (sigmoid, sigmoid_grad)}),
        "exploding_product": plot_curves({"||product of k random 4x4 matrices||": {"Frobenius norm": (steps, product_norms)}},
                                         "k", "norm"),
        "variance_by_init": plot_curves({"variance after each linear layer": {k: (layers, v) for k, v in variances.items()}},
                                        "layer", "variance"),
    }
    rows = [{"step": k, "product_norm": product_norms[k - 1] if k <= len(product_norms) else math.nan,
             "variance_xavier": variances["xavier normal"][k - 1] if k <= cfg.depth else math.nan,
             "variance_normal_0.01": variances["N(0, 0.01^2)"][k - 1] if k <= cfg.depth else math.nan}
            for k in range(1, max(cfg.num_matrices, cfg.depth) + 1)]
    return DemoResult(results, figures, rows)


# -- registrations ---------------------------------------------------------------------------------

register(Experiment(
    name="activations",
    section="4.1.2",
    title="Activation functions and their derivatives",
    dataset="none (x in [-8, 8))",
    reproduces="the plots of ReLU, sigmoid and tanh and their derivatives; closed forms agree with autograd",
    config=RunConfig,
    demo=demo_activations,
))

register(Experiment(
    name="perceptron-xor",
    section="4.1",
    title="The perceptron: convergence on separable data, failure on XOR",
    dataset="synthetic: linearly separable 2-D points; the 4 XOR points",
    reproduces="zero mistakes within Novikoff's bound on separable data; never zero on XOR",
    config=PerceptronConfig,
    demo=demo_perceptron_xor,
))

register(Experiment(
    name="mlp-xor",
    section="4.1-4.2",
    title="An MLP solves XOR",
    dataset="the 4 XOR points",
    reproduces="one hidden ReLU layer classifies all four points correctly",
    config=MLPXorConfig,
    demo=demo_mlp_xor,
))

register(Experiment(
    name="mlp",
    section="4.2-4.3",
    title="Multilayer perceptron",
    dataset="Fashion-MNIST",
    reproduces="784-256-10 with ReLU: about 0.83-0.85 test accuracy after 10 epochs",
    config=MLPConfig,
    build=build_mlp,
    user_data="classification",
))

register(Experiment(
    name="polynomial-fit",
    section="4.4",
    title="Model selection: under- and over-fitting a polynomial",
    dataset="synthetic: y = 5 + 1.2x - 3.4x^2/2! + 5.6x^3/3! + N(0, 0.1^2)",
    reproduces="2 features under-fit, 4 recover w = [5, 1.2, -3.4, 5.6], 20 over-fit",
    config=PolynomialConfig,
    demo=demo_polynomial_fit,
))

register(Experiment(
    name="weight-decay",
    section="4.5",
    title="Weight decay",
    dataset="synthetic: d = 200, y = 0.05 + sum 0.01 x_i + N(0, 0.01^2), 20 training examples",
    reproduces="lambda = 3 shrinks ||w|| from about 13 to about 0.36 and the test loss from about 100 to about 0.1",
    config=WeightDecayConfig,
    demo=demo_weight_decay,
))

register(Experiment(
    name="dropout",
    section="4.6",
    title="Dropout",
    dataset="Fashion-MNIST",
    reproduces="784-256-256-10 with dropout 0.2/0.5: about 0.84-0.86 test accuracy after 10 epochs",
    config=DropoutConfig,
    build=build_mlp,
    user_data="classification",
))

register(Experiment(
    name="gradient-stability",
    section="4.8",
    title="Vanishing and exploding gradients; Xavier initialization",
    dataset="none (random matrices)",
    reproduces="sigmoid gradients vanish; a product of 100 random 4x4 matrices explodes; Xavier keeps the variance",
    config=StabilityConfig,
    demo=demo_gradient_stability,
))
