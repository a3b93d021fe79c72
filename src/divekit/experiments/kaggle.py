"""Predicting house prices on Kaggle (D2L §4.10): a linear model, Adam on the squared error of the
prices, and 5-fold cross-validation of the log RMSE, then a final model trained on all the data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from divekit.experiments.registry import (BatchSize, DemoResult, Device, Epochs, Impl, LearningRate, Optimizer, Seed,
                                          demo)
from divekit.options import at_least

if TYPE_CHECKING:
    import torch
    from torch import nn

    from divekit.data.kaggle_house import KaggleHouse


@demo("kaggle-house", section="4.10", title="Predicting house prices on Kaggle with k-fold cross-validation",
      dataset="Kaggle house prices (1460 train + 1459 test houses, 330 features; the book's pandas 1.x made 331)", tiny=dict(epochs=1, limit=50, k=2))
def kaggle_house(epochs: Epochs = 100, lr: LearningRate = 5.0, batch_size: BatchSize = 64, optimizer: Optimizer = "adam",
                 impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
                 limit: Annotated[int | None, "use only the first N training houses (a quick check)", at_least(1)] = None,
                 k: Annotated[int, "number of folds of the cross-validation", at_least(2)] = 5,
                 weight_decay: Annotated[float, "L2 weight decay of the optimizer", at_least(0)] = 0.0) -> DemoResult:
    """The k-fold log RMSE (per fold and averaged) of the book's linear model, then the final
    model's log RMSE on all training data and its predictions for the test houses (submission.csv,
    ready for Kaggle). metrics.csv has one row per fold and epoch ("all" for the final model)."""
    from divekit.data.base import Split
    from divekit.data.kaggle_house import load_kaggle_house
    from divekit.models.registry import create_model
    from divekit.optim import create_optimizer
    from divekit.train.device import choose_device
    from divekit.train.kfold import fit_and_evaluate, k_fold
    from divekit.train.tasks import HousePriceRegression

    device = choose_device(device)
    data = load_kaggle_house()
    train = data.train if limit is None else Split(data.train.X[:limit], data.train.y[:limit])
    num_inputs = train.X.shape[1]
    task = HousePriceRegression()

    def make_model() -> nn.Module:
        # the book's get_net: one linear layer with PyTorch's default init
        return create_model("linear", impl, input_shape=(num_inputs,), num_outputs=1, sigma=None, zero_bias=False)

    def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return create_optimizer(optimizer, model.parameters(), impl=impl, lr=lr, weight_decay=weight_decay)

    folds = k_fold(make_model, make_optimizer, task, train, k, epochs=epochs, batch_size=batch_size,
                   device=device, seed=seed)
    # the book's train_and_pred: the same recipe on all training data
    model = make_model()
    final_rows = [{"fold": "all", **row} for row in fit_and_evaluate(
        model, make_optimizer(model), task, train, epochs=epochs, batch_size=batch_size, device=device, seed=seed + k)]

    results = {
        "folds": [{key: value for key, value in fold.items() if key.endswith("log_rmse") or key == "fold"}
                  for fold in folds.folds],
        "avg_train_log_rmse": folds.average["train_log_rmse"],
        "avg_valid_log_rmse": folds.average["valid_log_rmse"],
        "full_train_log_rmse": final_rows[-1]["train_log_rmse"],
        "num_features": num_inputs,
    }
    return DemoResult(results=results, figures={"fold1_log_rmse": _fold_curve(folds.history)},
                      rows=folds.history + final_rows, files={"submission.csv": submission_csv(model, data, device)})


def submission_csv(model: nn.Module, data: KaggleHouse, device: torch.device) -> str:
    """The file the book uploads to Kaggle (``train_and_pred``): one line "Id,SalePrice" per test house."""
    import torch

    model.eval()
    with torch.no_grad():
        prices = model(data.test_X.to(device)).reshape(-1).tolist()
    return "Id,SalePrice\n" + "".join(f"{house},{price!r}\n" for house, price in zip(data.test_ids, prices))


def _fold_curve(history: list[dict]):
    """The book's figure: train and valid log rmse of fold 1 against the epoch, on a log scale."""
    from divekit.viz.curves import plot_history

    rows = [{key: row[key] for key in ("epoch", "train_log_rmse", "valid_log_rmse")} for row in history if row["fold"] == 1]
    fig = plot_history(rows, title="fold 1")
    fig.axes[0].set_yscale("log")
    fig.axes[0].set_ylabel("log rmse")
    return fig
