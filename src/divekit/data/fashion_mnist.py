"""Fashion-MNIST and MNIST (D2L §3.5): 28x28 grayscale images in ten classes, from IDX files.

Both data sets ship as the same four gzipped IDX files (training and test images and labels), so
one loader serves both. The files come from the data hub (an explicit folder, ``$DIVEKIT_DATA``,
the cache, or a verified download) and are parsed once per process.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from divekit.data.base import Split, SplitData
from divekit.data.hub import fetch
from divekit.data.inputs import ImageInputs
from divekit.data.idx import IdxFormatError, read_idx

TEXT_LABELS = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
DIGIT_LABELS = tuple(str(digit) for digit in range(10))
IMAGE_SIZE = 28
PUBLISHED_COUNTS = (60_000, 10_000)  # (training, test) examples of both data sets
_SPLIT_FILE_PREFIXES = ("train", "t10k")  # (training, test) file name prefixes

# Parsed splits, keyed by the resolved image and label files with their size and modification
# time, so a second load in the same process (e.g. a second experiment) costs nothing.
_SPLIT_CACHE: dict[tuple, Split] = {}


def text_labels(indices) -> list[str]:
    """Fashion-MNIST class names of label indices (the book's ``get_fashion_mnist_labels``, §3.5.1).

    ``indices`` may be an int, a sequence, or a tensor of any shape (read in row-major order).
    """
    flat = torch.as_tensor(indices).reshape(-1).tolist()
    bad = [i for i in flat if not 0 <= i < len(TEXT_LABELS)]
    if bad:
        raise ValueError(f"Fashion-MNIST labels are 0..{len(TEXT_LABELS) - 1}, got {bad[:5]}")
    return [TEXT_LABELS[i] for i in flat]


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, progress: bool = True) -> SplitData:
    """Fashion-MNIST (D2L §3.5): 60,000 training and 10,000 test images of clothing.

    ``X`` is uint8 of shape (N, 1, 28, 28) (the loader scales batches to [0, 1] on the device),
    ``y`` int64 class indices into :data:`TEXT_LABELS`. The tensors are shared by every caller in
    the process: do not modify them in place. ``data_dir`` is a folder holding the four
    ``*-ubyte.gz`` files (directly or in a ``fashion-mnist`` sub-folder); without it the data hub
    finds them in ``$DIVEKIT_DATA`` or the cache, or downloads them.
    """
    return _load_idx_classification("fashion-mnist", TEXT_LABELS, data_dir, progress)


def load_mnist(data_dir: str | os.PathLike | None = None, *, progress: bool = True) -> SplitData:
    """MNIST handwritten digits (D2L §3.5, §6.6), in the same layout as :func:`load_fashion_mnist`."""
    return _load_idx_classification("mnist", DIGIT_LABELS, data_dir, progress)


def _load_idx_classification(
    dataset_name: str,
    classes: tuple[str, ...],
    data_dir: str | os.PathLike | None,
    progress: bool,
    *,
    expect_counts: tuple[int, int] = PUBLISHED_COUNTS,
) -> SplitData:
    """A ten-class image data set in the MNIST file layout, with its published split sizes checked."""
    train, test = (
        _load_split(dataset_name, prefix, count, len(classes), data_dir, progress)
        for prefix, count in zip(_SPLIT_FILE_PREFIXES, expect_counts)
    )
    return SplitData(name=dataset_name, train=train, eval=test, eval_name="test", classes=tuple(classes),
                     inputs=ImageInputs(1, IMAGE_SIZE, IMAGE_SIZE, tuple(classes)))


def _load_split(
    dataset_name: str,
    prefix: str,
    expect_count: int,
    num_classes: int,
    data_dir: str | os.PathLike | None,
    progress: bool,
) -> Split:
    images_path, labels_path = (
        Path(fetch(dataset_name, f"{prefix}-{kind}-ubyte.gz", data_dir=data_dir, progress=progress))
        for kind in ("images-idx3", "labels-idx1")
    )
    key = (_file_identity(images_path), _file_identity(labels_path))
    if key not in _SPLIT_CACHE:
        _SPLIT_CACHE[key] = _decoded_split(images_path, labels_path, expect_count, num_classes)
    return _SPLIT_CACHE[key]


def _decoded_split(images_path: Path, labels_path: Path, expect_count: int, num_classes: int) -> Split:
    """The split, decoded once per machine: the gunzipped, checked tensors are kept in the cache
    (``decoded/``, named by the files' SHA-1s, so other files never read a stale copy) and loaded
    from there in later runs, which skips decompressing 30 MB of gzip on every start."""
    from divekit import io
    from divekit.data.hub import cache_dir, file_sha1

    name = f"{images_path.name.split('-')[0]}-{file_sha1(images_path)[:16]}-{file_sha1(labels_path)[:16]}.pt"
    cached = cache_dir() / "decoded" / name
    if cached.exists():
        try:
            state = io.load(cached)
            return Split(X=state["X"], y=state["y"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged copy: decode again below and replace it
    split = _read_split(images_path, labels_path, expect_count, num_classes)
    try:
        io.save({"X": split.X, "y": split.y}, cached)
    except OSError:
        pass  # a read-only or full cache only costs the next run the decoding
    return split


def _file_identity(path: Path) -> tuple[Path, int, int]:
    """The resolved path with size and mtime, so a replaced file is parsed again."""
    stat = path.stat()
    return path.resolve(), stat.st_size, stat.st_mtime_ns


def _read_split(images_path: Path, labels_path: Path, expect_count: int, num_classes: int) -> Split:
    """Parse and check one split's image and label files."""
    images = read_idx(images_path, expect_dims=3)
    labels = read_idx(labels_path, expect_dims=1)
    hint = "Delete the files and download them again."
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} holds "
            f"{len(labels)} labels (in {images_path.parent}); they must match. {hint}"
        )
    if len(images) != expect_count:
        raise IdxFormatError(f"{images_path} holds {len(images)} images, expected {expect_count}. {hint}")
    if tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise IdxFormatError(
            f"{images_path} holds images of size {tuple(images.shape[1:])}, "
            f"expected {IMAGE_SIZE}x{IMAGE_SIZE}. {hint}"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        raise IdxFormatError(
            f"{labels_path} holds label {int(labels.max())}, expected labels 0..{num_classes - 1}. {hint}"
        )
    return Split(X=images.unsqueeze(1), y=labels.long())
