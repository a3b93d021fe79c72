"""K-fold cross-validation (D2L §4.10): the book's folds, and training through the trainer."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divekit.data.base import Split
from divekit.data.synthetic import synthetic_regression
from divekit.train.kfold import fit_and_evaluate, k_fold, k_fold_indices
from divekit.train.tasks import Regression


def books_get_k_fold_data(k, i, X, y):
    """The book's get_k_fold_data (D2L §4.10), transcribed as the reference."""
    assert k > 1
    fold_size = X.shape[0] // k
    X_train, y_train = None, None
    for j in range(k):
        idx = slice(j * fold_size, (j + 1) * fold_size)
        X_part, y_part = X[idx, :], y[idx]
        if j == i:
            X_valid, y_valid = X_part, y_part
        elif X_train is None:
            X_train, y_train = X_part, y_part
        else:
            X_train = torch.cat([X_train, X_part], 0)
            y_train = torch.cat([y_train, y_part], 0)
    return X_train, y_train, X_valid, y_valid


@pytest.mark.parametrize("n, k", [(20, 5), (23, 5), (1460, 5), (101, 10), (10, 10)])
def test_folds_are_the_books(n, k):
    X, y = torch.arange(n * 2).reshape(n, 2), torch.arange(n)
    for i in range(k):
        train, valid = k_fold_indices(n, k, i)
        X_train, y_train, X_valid, y_valid = books_get_k_fold_data(k, i, X, y)
        assert torch.equal(X[train], X_train) and torch.equal(y[train], y_train)
        assert torch.equal(X[valid], X_valid) and torch.equal(y[valid], y_valid)


@pytest.mark.parametrize("n, k", [(20, 5), (23, 5), (57, 10)])
def test_fold_sizes_and_every_example_validated_once(n, k):
    size = n // k
    validated = torch.zeros(n, dtype=torch.int64)
    for i in range(k):
        train, valid = k_fold_indices(n, k, i)
        assert len(valid) == size and len(train) == (k - 1) * size
        assert set(train.tolist()).isdisjoint(valid.tolist())
        assert set(train.tolist()) | set(valid.tolist()) == set(range(k * size))
        validated[valid] += 1
    assert bool((validated[: k * size] == 1).all())
    assert bool((validated[k * size:] == 0).all())  # the last n % k examples: in no fold, as in the book


@pytest.mark.parametrize("n, k, i, message", [(10, 1, 0, "k >= 2"), (3, 5, 0, "k <= 3"), (10, 5, 5, "\\[0, 5\\)")])
def test_bad_fold_arguments(n, k, i, message):
    with pytest.raises(ValueError, match=message):
        k_fold_indices(n, k, i)


def mse(y_hat, y):
    return F.mse_loss(y_hat, y, reduction="none")


def constant_model():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(0.5)
    return model


def test_each_fold_is_evaluated_on_its_own_parts():
    """With a learning rate of 0 the model never changes, so each fold's metrics are the fixed
    model's mean squared error on that fold's train and valid examples, computed here directly."""
    data = synthetic_regression((2.0, -3.4), 4.2, 50, 0.01, generator=torch.Generator().manual_seed(0))
    result = k_fold(constant_model, lambda m: torch.optim.SGD(m.parameters(), lr=0.0), Regression(mse), data, 5,
                    epochs=2, batch_size=7)
    fixed = constant_model()
    with torch.no_grad():
        for i, fold in enumerate(result.folds):
            train, valid = k_fold_indices(50, 5, i)
            assert fold["fold"] == i + 1
            assert fold["valid_loss"] == pytest.approx(float(mse(fixed(data.X[valid]), data.y[valid]).mean()), rel=1e-6)
            assert fold["train_loss"] == pytest.approx(float(mse(fixed(data.X[train]), data.y[train]).mean()), rel=1e-6)
    assert [(row["fold"], row["epoch"]) for row in result.history] == [(f, e) for f in range(1, 6) for e in (1, 2)]
    assert result.average["valid_loss"] == pytest.approx(sum(f["valid_loss"] for f in result.folds) / 5)
    assert set(result.average) == {f"{split}_{metric}" for split in ("train", "valid") for metric in ("loss", "rmse", "r2")}


def test_k_fold_trains_a_fresh_model_per_fold():
    torch.manual_seed(0)
    data = synthetic_regression((2.0, -3.4), 4.2, 200, 0.01, generator=torch.Generator().manual_seed(1))
    made = []

    def make_model():
        made.append(nn.Linear(2, 1))
        return made[-1]

    result = k_fold(make_model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), Regression(mse), data, 4,
                    epochs=5, batch_size=10)
    assert len(made) == 4 and len({id(m) for m in made}) == 4
    for model in made:  # each recovered w and b
        torch.testing.assert_close(model.weight.detach(), torch.tensor([[2.0, -3.4]]), atol=0.01, rtol=0)
    assert result.average["valid_loss"] < 1e-3
    first_epoch = [row["valid_loss"] for row in result.history if row["epoch"] == 1]
    last_epoch = [row["valid_loss"] for row in result.history if row["epoch"] == 5]
    assert all(last < first for first, last in zip(first_epoch, last_epoch))


def test_too_few_examples_for_any_k_fold_says_so():
    with pytest.raises(ValueError, match="k-fold cross-validation needs at least 2 examples"):
        k_fold_indices(1, 2, 0)


def test_k_fold_rejects_too_few_examples():
    data = Split(torch.randn(3, 2), torch.randn(3, 1))
    with pytest.raises(ValueError, match="cannot cut 3 examples into k=5 folds"):
        k_fold(constant_model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), Regression(mse), data, 5,
               epochs=1, batch_size=2)


def test_fit_and_evaluate_without_valid_reports_the_full_training_set_each_epoch():
    data = synthetic_regression((2.0, -3.4), 4.2, 30, 0.01, generator=torch.Generator().manual_seed(0))
    model = constant_model()
    rows = fit_and_evaluate(model, torch.optim.SGD(model.parameters(), lr=0.0), Regression(mse), data,
                            epochs=3, batch_size=4)
    expected = mse(constant_model()(data.X), data.y).mean().item()
    assert [sorted(row) for row in rows] == [["epoch", "train_loss", "train_r2", "train_rmse"]] * 3
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert all(row["train_loss"] == pytest.approx(expected, rel=1e-6) for row in rows)
