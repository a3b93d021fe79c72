"""Linear neural networks (D2L chapter 3): linear regression on synthetic data and softmax
regression on Fashion-MNIST, each from scratch and concise."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from divekit.data.base import SplitData
from divekit.data.synthetic import synthetic_regression
from divekit.experiments.common import book_default, data_generator, make_loaders, make_optimizer, prediction_grid, user_or_book_data
from divekit.experiments.config import RunConfig, option
from divekit.experiments.registry import Experiment, Setup, register
from divekit.models.linear import linear_model
from divekit.ops import get_ops
from divekit.train.tasks import Classification, Regression

TRUE_W = (2.0, -3.4)
TRUE_B = 4.2


@dataclass
class LinearRegressionConfig(RunConfig):
    epochs: int = book_default("epochs", 3)
    lr: float = book_default("lr", 0.03)
    batch_size: int = book_default("batch_size", 10)
    num_examples: int = option(1000, "number of synthetic examples")
    noise: float = option(0.01, "standard deviation of the label noise")


def build_linear_regression(cfg: LinearRegressionConfig, device: torch.device) -> Setup:
    """D2L §3.2 (scratch: squared loss (y_hat - y)^2 / 2, minibatch SGD) and §3.3 (concise:
    nn.Linear, MSELoss without the 1/2, torch.optim.SGD). The evaluation pass is the loss on all
    training examples after each epoch, which is what the book prints."""
    def synthetic() -> SplitData:
        examples = synthetic_regression(TRUE_W, TRUE_B, cfg.num_examples, cfg.noise, generator=data_generator(cfg.seed))
        return SplitData("synthetic (w=[2, -3.4], b=4.2)", train=examples, eval=examples, eval_name="train_full")

    data = user_or_book_data(cfg, "regression", synthetic)
    model = linear_model(data.input_shape, 1, cfg.impl)
    loss_fn = get_ops("scratch").squared_loss if cfg.impl == "scratch" else _mse
    train_loader, eval_loader = make_loaders(data, cfg, device)

    def parameter_errors(model) -> dict:
        w, b = model.weight.detach().cpu().reshape(-1), model.bias.detach().cpu()
        w_error = torch.tensor(TRUE_W) - w
        b_error = TRUE_B - b
        return {"w": w.tolist(), "b": float(b), "w_error": w_error.tolist(), "b_error": float(b_error),
                "max_abs_param_error": float(torch.cat([w_error, b_error]).abs().max())}

    return Setup(model, Regression(loss_fn), make_optimizer(cfg, model), train_loader, eval_loader,
                 eval_name=data.eval_name, data_name=data.name,
                 finish=parameter_errors if cfg.data is None else None)


def _mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(y_hat, y, reduction="none")


def build_softmax_regression(cfg: RunConfig, device: torch.device) -> Setup:
    """D2L §3.6 (scratch softmax cross-entropy, minibatch SGD) and §3.7 (concise)."""
    from divekit.data.fashion_mnist import load_fashion_mnist

    data = user_or_book_data(cfg, "classification", load_fashion_mnist)
    model = linear_model(data.input_shape, data.num_classes, cfg.impl)
    train_loader, eval_loader = make_loaders(data, cfg, device)
    task = Classification(get_ops(cfg.impl).cross_entropy)
    return Setup(model, task, make_optimizer(cfg, model), train_loader, eval_loader,
                 eval_name=data.eval_name, data_name=data.name, figures=prediction_grid(data, device))


register(Experiment(
    name="linear-regression",
    section="3.1-3.3",
    title="Linear regression",
    dataset="synthetic: y = X[2, -3.4] + 4.2 + N(0, 0.01^2)",
    reproduces="recovers w and b; loss falls to the noise floor in 3 epochs",
    config=LinearRegressionConfig,
    build=build_linear_regression,
    user_data="regression",
))

register(Experiment(
    name="softmax-regression",
    section="3.4-3.7",
    title="Softmax regression",
    dataset="Fashion-MNIST",
    reproduces="about 0.83 test accuracy after 10 epochs",
    config=RunConfig,
    build=build_softmax_regression,
    user_data="classification",
))
