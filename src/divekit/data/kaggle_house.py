"""Kaggle's house prices (D2L §4.10), preprocessed as the book's code does under pandas >= 2, without pandas.

The book concatenates the features of the 1460 training and 1459 test houses (dropping ``Id`` and
the label ``SalePrice``), standardises every numeric column with the mean and sample std of all
2919 rows, sets missing numbers to 0 (the mean after standardising), and one-hot encodes every
other column with an extra column for missing values (``pd.get_dummies(dummy_na=True)``): numeric
columns first, then the one-hot blocks, as pandas orders them: 330 features, where the published book
has 331 (pandas 1.x read ``MasVnrType``'s "None", no masonry veneer, as a category; pandas 2 reads it as
missing). The cell encoding is shared with the user's CSV tables (:mod:`divekit.data.user`), which take
statistics from training rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from divekit.data.base import Split
from divekit.data.user import UserDataError, encode_column, is_numeric_column, read_csv_rows

NAME = "kaggle_house"
TRAIN_FILE = "kaggle_house_pred_train.csv"
TEST_FILE = "kaggle_house_pred_test.csv"
ID_COLUMN = "Id"
LABEL_COLUMN = "SalePrice"


@dataclass(frozen=True)
class KaggleHouse:
    """The preprocessed competition data: ``train`` has X float32 (1460, D) and prices y float32
    (1460, 1); ``test_X`` (1459, D) has no labels (Kaggle keeps them); ``test_ids`` name its rows."""

    train: Split
    test_X: torch.Tensor
    test_ids: tuple[str, ...]
    feature_names: tuple[str, ...]


def read_kaggle_house(train_path: str | Path, test_path: str | Path) -> KaggleHouse:
    """Read and preprocess the two competition CSV files (see the module docstring)."""
    train_path, test_path = Path(train_path), Path(test_path)
    train_columns, train_rows, _ = read_csv_rows(train_path)
    test_columns, test_rows, _ = read_csv_rows(test_path)
    if train_columns[:1] != [ID_COLUMN] or train_columns[-1] != LABEL_COLUMN:
        raise UserDataError(
            f"{train_path} must start with the column {ID_COLUMN!r} and end with {LABEL_COLUMN!r} "
            f"(Kaggle's train.csv); its columns are {', '.join(train_columns)}"
        )
    if test_columns != train_columns[:-1]:
        raise UserDataError(
            f"{test_path} must have the columns of {train_path} without {LABEL_COLUMN!r} (Kaggle's test.csv); "
            f"only in train: {sorted(set(train_columns[:-1]) - set(test_columns)) or 'none'}, "
            f"only in test: {sorted(set(test_columns) - set(train_columns)) or 'none'}"
        )
    prices = [row[-1] for row in train_rows]
    try:
        y = torch.tensor([float(price) for price in prices], dtype=torch.float32).unsqueeze(1)  # (N_train, 1)
    except ValueError:
        raise UserDataError(f"{train_path}: every {LABEL_COLUMN} must be a number; fix or remove those rows") from None
    if not bool((y > 0).all()):
        raise UserDataError(f"{train_path}: every {LABEL_COLUMN} must be positive, since the metric takes its log")
    # all_features = concat(train[:, 1:-1], test[:, 1:]): (N_train + N_test, 79) cells
    rows = [row[1:-1] for row in train_rows] + [row[1:] for row in test_rows]
    columns = train_columns[1:-1]
    values = {column: [row[j] for row in rows] for j, column in enumerate(columns)}
    numeric = [column for column in columns if is_numeric_column(values[column])]
    categorical = [column for column in columns if column not in numeric]
    every_row = torch.arange(len(rows))  # the book's statistics cover train and test together
    blocks, names = [], []
    for column in numeric + categorical:
        block, block_names = encode_column(column, values[column], every_row)
        blocks.append(block)
        names += block_names
    X = torch.cat(blocks, dim=1).float()  # (N_train + N_test, D)
    n_train = len(train_rows)
    return KaggleHouse(
        train=Split(X[:n_train], y),
        test_X=X[n_train:],
        test_ids=tuple(row[0] for row in test_rows),
        feature_names=tuple(names),
    )


def load_kaggle_house(data_dir: str | Path | None = None) -> KaggleHouse:
    """The competition files from the data hub (``$DIVEKIT_DATA/kaggle_house``, the cache or d2l's URL)."""
    from divekit.data.hub import fetch

    return read_kaggle_house(fetch(NAME, TRAIN_FILE, data_dir=data_dir), fetch(NAME, TEST_FILE, data_dir=data_dir))
