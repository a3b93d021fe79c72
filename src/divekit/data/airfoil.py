"""NASA's airfoil self-noise data (D2L §11.5 ``get_data_ch11``), the book's data for comparing
optimizers: 1,503 wind-tunnel measurements of 5 features and the sound pressure they produce.

The book standardises every column with the mean and (population) standard deviation of all
1,503 rows, then keeps the first 1,500 rows: the first 5 columns are the features, the last one is
the label. A linear model on these reaches a full-data loss of about 0.243 (squared loss / 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from divekit.data.base import Split, SplitData
from divekit.data.hub import fetch

FILENAME = "airfoil_self_noise.dat"
FEATURE_NAMES = (
    "frequency (Hz)",
    "angle of attack (deg)",
    "chord length (m)",
    "free-stream velocity (m/s)",
    "suction side displacement thickness (m)",
)
LABEL_NAME = "scaled sound pressure level (dB)"
NUM_ROWS = 1503  # in the published file
BOOK_NUM_EXAMPLES = 1500  # the book's n in get_data_ch11


def read_airfoil(path: str | os.PathLike) -> torch.Tensor:
    """The raw table, float32 of shape (1503, 6): tab-separated columns, one measurement a line."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(FEATURE_NAMES) + 1:
            raise ValueError(f"{path}, line {number}: expected {len(FEATURE_NAMES) + 1} tab-separated numbers, "
                             f"got {len(fields)}")
        try:
            rows.append([float(field) for field in fields])
        except ValueError:
            raise ValueError(f"{path}, line {number}: not a number in {line.strip()!r}") from None
    if not rows:
        raise ValueError(f"{path} holds no measurements")
    return torch.tensor(rows, dtype=torch.float32)


def standardize(table: torch.Tensor) -> torch.Tensor:
    """Each column minus its mean, divided by its population standard deviation (numpy's ``std``)."""
    return (table - table.mean(dim=0)) / table.std(dim=0, correction=0)


def load_airfoil(n: int = BOOK_NUM_EXAMPLES, data_dir: str | os.PathLike | None = None, *,
                 progress: bool = True) -> SplitData:
    """The book's airfoil regression set: the first ``n`` rows of the standardised table.

    ``X`` is float32 (n, 5), ``y`` float32 (n,). As in the book, the model is judged on the same
    examples it trains on (``eval_name="train_full"``): the chapter is about how fast each
    optimizer lowers the training loss, not about generalisation.
    """
    table = standardize(read_airfoil(fetch("airfoil", FILENAME, data_dir=data_dir, progress=progress)))
    if not 1 <= n <= len(table):
        raise ValueError(f"n must be between 1 and {len(table)} (the rows in {FILENAME}), got {n}")
    examples = Split(table[:n, :-1].contiguous(), table[:n, -1].contiguous())
    return SplitData("airfoil self-noise", train=examples, eval=examples, eval_name="train_full",
                     feature_names=FEATURE_NAMES)
