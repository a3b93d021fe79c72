"""CIFAR-10 (D2L §13.1): 60,000 32x32 colour images in ten classes, read from the authors' python
batches without unpickling anything but arrays.

The authors ship each batch (``data_batch_1`` ... ``data_batch_5``, ``test_batch``) as a Python 2
pickle of a dict: ``data`` (10000, 3072) uint8 rows of 1024 red, 1024 green and 1024 blue values
(each 32 rows of 32 pixels), and ``labels``, 10000 ints. A pickle can name any importable
function and make the reader call it, so ``pickle.load`` of a file from elsewhere can run code;
the format forces pickle, so this reader restricts it: only numpy's array reconstruction, the
ndarray and dtype classes (what the authors' files use) may be named, anything else is refused
(the "Restricting Globals" recipe of Python's pickle documentation).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from divekit.data.base import Split, SplitData
from divekit.data.hub import fetch

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)

try:  # numpy >= 2 keeps it in numpy._core; the authors' pickles name numpy.core, an alias of it
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers and refuses every other global."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch holds only numpy "
                                         "arrays, lists and strings") from None


def read_batch(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """One python batch file: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            content = _ArraysOnly(f, encoding="latin1").load()  # latin1: the Python 2 strings of numpy's array bytes
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: {error}") from error
    if not isinstance(content, dict) or "data" not in content or "labels" not in content:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: expected a dict with 'data' and 'labels'")
    data, labels = content["data"], np.asarray(content["labels"])
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise ValueError(f"{path}: 'data' must be uint8 rows of 3072 values, got {getattr(data, 'dtype', type(data))} "
                         f"of shape {getattr(data, 'shape', '?')}")
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= len(CLASSES):
        raise ValueError(f"{path}: 'labels' must hold one class index 0..9 per image ({len(data)})")
    images = torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy())  # (N, 3, 32, 32): channels, then rows
    return images, torch.from_numpy(labels.astype(np.int64))


def load_cifar10(folder: str | os.PathLike | None = None, *, progress: bool = True) -> SplitData:
    """CIFAR-10's 50,000 training and 10,000 test images as uint8 (N, 3, 32, 32) with labels into
    :data:`CLASSES`. ``folder`` holds the unpacked batches (``cifar-10-batches-py``); without it
    the data hub finds them under ``$DIVEKIT_DATA/cifar-10`` or the cache, or downloads them."""
    folder = Path(folder) if folder is not None else fetch("cifar-10", progress=progress)
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not an unpacked cifar-10-batches-py folder: no {', '.join(missing)}")
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    test = read_batch(folder / TEST_BATCH)
    return SplitData("CIFAR-10", Split(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])),
                     Split(*test), eval_name="test", classes=CLASSES)
