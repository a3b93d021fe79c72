"""Kaggle house prices (D2L §4.10): the book's preprocessing, the log RMSE, and the k-fold run."""

import csv
import dataclasses
import math
import statistics

import pytest
import torch
from conftest import needs_real_data
from torch import nn

from divekit.data.base import Split
from divekit.data.hub import fetch
from divekit.data.kaggle_house import load_kaggle_house, read_kaggle_house
from divekit.data.loader import TensorLoader
from divekit.data.user import UserDataError
from divekit.experiments.kaggle import kaggle_house
from divekit.train.engine import Trainer
from divekit.train.tasks import HousePriceRegression


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def tiny(tmp_path):
    """A categorical column first (with "NA" and "None" missing), then two numeric ones."""
    train = write_csv(tmp_path / "train.csv", ["Id", "Street", "Area", "Year", "SalePrice"], [
        ["1", "Pave", "10", "2000", "100000"],
        ["2", "Grvl", "NA", "2001", "200000"],
        ["3", "NA", "30", "2002", "150000"],
    ])
    test = write_csv(tmp_path / "test.csv", ["Id", "Street", "Area", "Year"], [
        ["4", "None", "40", "2003"],
        ["5", "Pave", "20", "NA"],
    ])
    return train, test


def test_tiny_table_is_preprocessed_as_the_book_does(tiny):
    data = read_kaggle_house(*tiny)
    # numeric columns first (pandas' get_dummies keeps them in front), then one-hot with a missing column
    assert data.feature_names == ("Area", "Year", "Street=Grvl", "Street=Pave", "Street=<missing>")
    # statistics over train and test together (5 rows), sample std; missing -> 0
    area_mean, area_std = statistics.mean([10, 30, 40, 20]), statistics.stdev([10, 30, 40, 20])
    year_mean, year_std = statistics.mean([2000, 2001, 2002, 2003]), statistics.stdev([2000, 2001, 2002, 2003])
    area = [(10 - area_mean) / area_std, 0.0, (30 - area_mean) / area_std, (40 - area_mean) / area_std,
            (20 - area_mean) / area_std]
    year = [(v - year_mean) / year_std for v in (2000, 2001, 2002, 2003)] + [0.0]
    one_hot = [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0]]  # "NA" and "None" are both missing
    expected = torch.tensor([[a, y, *h] for a, y, h in zip(area, year, one_hot)], dtype=torch.float32)
    X = torch.cat([data.train.X, data.test_X])
    assert X.dtype == torch.float32 and X.shape == (5, 5)
    torch.testing.assert_close(X, expected)
    torch.testing.assert_close(data.train.y, torch.tensor([[100000.0], [200000.0], [150000.0]]))
    assert data.test_ids == ("4", "5")


def test_mismatched_files_are_refused(tmp_path, tiny):
    train, _ = tiny
    other = write_csv(tmp_path / "other.csv", ["Id", "Street", "Rooms"], [["4", "Pave", "3"], ["5", "Pave", "4"]])
    with pytest.raises(UserDataError, match="only in train: \\['Area', 'Year'\\], only in test: \\['Rooms'\\]"):
        read_kaggle_house(train, other)
    no_label = write_csv(tmp_path / "nolabel.csv", ["Id", "Street"], [["1", "Pave"], ["2", "Grvl"]])
    with pytest.raises(UserDataError, match="end with 'SalePrice'"):
        read_kaggle_house(no_label, no_label)
    bad_price = write_csv(tmp_path / "bad.csv", ["Id", "Street", "SalePrice"], [["1", "Pave", "0"], ["2", "Grvl", "5"]])
    with pytest.raises(UserDataError, match="must be positive"):
        read_kaggle_house(bad_price, no_label)


def test_the_run_folder_gets_the_books_submission_csv(tmp_path, tiny, monkeypatch):
    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import run_experiment

    data = read_kaggle_house(*tiny)
    monkeypatch.setattr("divekit.data.kaggle_house.load_kaggle_house", lambda: data)
    experiment = get_experiment("kaggle-house")
    run_experiment(experiment, experiment.make_options(epochs=2, k=2, device="cpu"), tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "submission.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Id", "SalePrice"] and [row[0] for row in rows[1:]] == ["4", "5"]
    assert all(math.isfinite(float(row[1])) for row in rows[1:])


def test_a_demonstration_cannot_write_outside_its_run_folder(tmp_path):
    from divekit.experiments.registry import DemoResult, get_experiment
    from divekit.experiments.runner import run_experiment

    experiment = dataclasses.replace(get_experiment("kaggle-house"),
                                     function=lambda: DemoResult({}, files={"../escape.csv": "x"}))
    with pytest.raises(ValueError, match="plain names inside the run folder"):
        run_experiment(experiment, experiment.make_options(), tmp_path / "run", progress=False)
    assert not (tmp_path / "escape.csv").exists()


def test_log_rmse_is_the_books_metric():
    """sqrt(mean((log max(y_hat, 1) - log y)^2)) over all examples, whatever the batching."""
    torch.manual_seed(0)
    X = torch.randn(37, 3)
    y = torch.rand(37, 1) * 1000 + 10
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.fill_(100.0)
        model.bias.fill_(100.0)  # some predictions fall below 1 and are clamped
    y_hat = model(X).detach()
    assert bool((y_hat < 1).any())
    expected = math.sqrt(float(((torch.log(y_hat.clamp(min=1)) - torch.log(y)) ** 2).mean()))
    trainer = Trainer(model, HousePriceRegression(), torch.optim.SGD(model.parameters(), lr=0.0), epochs=1,
                      progress=False)
    metrics = trainer.evaluate(TensorLoader(Split(X, y), batch_size=8))
    assert metrics["log_rmse"] == pytest.approx(expected, rel=1e-6)
    assert metrics["loss"] == pytest.approx(float(((y_hat - y) ** 2).mean()), rel=1e-5)
    flat = trainer.evaluate(TensorLoader(Split(X, y.reshape(-1)), batch_size=8))  # targets (N,): the same numbers
    assert flat["log_rmse"] == pytest.approx(expected, rel=1e-6)
    assert flat["loss"] == pytest.approx(metrics["loss"], rel=1e-6)


@needs_real_data(["kaggle_house"])
def test_real_data_has_the_books_shape():
    data = load_kaggle_house()
    X = torch.cat([data.train.X, data.test_X])
    assert X.shape == (2919, 330)  # pandas >= 2 reads "None" as missing; pandas 1.x made 331
    assert data.train.X.shape == (1460, 330) and data.train.y.shape == (1460, 1)
    assert data.test_ids[0] == "1461" and data.test_ids[-1] == "2919"
    assert float(data.train.y[0]) == 208500.0
    numeric = [j for j, name in enumerate(data.feature_names) if "=" not in name]
    assert len(numeric) == 36
    # standardised over all 2919 houses, missing values at the mean 0
    torch.testing.assert_close(X[:, numeric].double().mean(dim=0), torch.zeros(36, dtype=torch.float64), atol=1e-6, rtol=0)
    # LotFrontage by hand: (x - mean) / stdev over its observed values
    lot = data.feature_names.index("LotFrontage")
    raw = []
    for file in ("kaggle_house_pred_train.csv", "kaggle_house_pred_test.csv"):
        with open(fetch("kaggle_house", file), newline="") as f:
            raw += [row["LotFrontage"] for row in csv.DictReader(f)]
    observed = [float(v) for v in raw if v != "NA"]
    mean, std = statistics.mean(observed), statistics.stdev(observed)
    expected = torch.tensor([0.0 if v == "NA" else (float(v) - mean) / std for v in raw])
    torch.testing.assert_close(X[:, lot], expected)
    # one-hot blocks: one 1 per categorical column and house (43 such columns)
    assert float(X[:, 36:].sum()) == 2919 * 43


@pytest.mark.slow
@needs_real_data(["kaggle_house"])
def test_k_fold_reproduces_the_book():
    result = kaggle_house(device="cpu").results
    assert [fold["fold"] for fold in result["folds"]] == [1, 2, 3, 4, 5]
    assert 0.1645 <= result["avg_train_log_rmse"] <= 0.1665  # book: 0.165458 (builds 0.1653-0.1656)
    assert 0.1690 <= result["avg_valid_log_rmse"] <= 0.1720  # book: 0.170293 (builds 0.1700-0.1710)
    assert 0.1615 <= result["full_train_log_rmse"] <= 0.1635  # book: 0.162354
