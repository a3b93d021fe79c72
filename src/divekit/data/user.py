"""The user's own data as a :class:`SplitData`, so any experiment can run on it
(``divekit run NAME --data PATH [--target COLUMN]``).

Two forms are understood:

* a folder of images, one sub-folder per class (``PATH/<class>/*.png``), optionally already split
  into ``PATH/train/<class>/...`` and ``PATH/test/<class>/...``;
* a CSV table with one target column, encoded as D2L §4.10 does for the Kaggle house prices:
  numeric columns standardised and missing values set to 0, other columns one-hot encoded with a
  column for missing values. Statistics and categories come from the training split only, so
  nothing about the held-out rows leaks into the features.

Every problem with the data raises :class:`UserDataError`, whose message says what is wrong and
what to do about it.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from divekit.data.base import Split, SplitData
from divekit.data.inputs import ImageInputs, TableInputs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # what PIL reads (predict too)
# Cells that mean "no value": pandas' default ``na_values`` (pandas >= 2, which added "None"; D2L's
# house prices use "NA", and "None" in MasVnrType). pandas 1.x, without "None", made 331 Kaggle features, not 330.
MISSING_MARKERS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
MISSING_CATEGORY = "<missing>"
# a number as pandas' parser reads one: ASCII digits, sign, point, exponent, or inf (spaces around allowed)
NUMBER = re.compile(r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?)\s*", re.IGNORECASE)
KINDS = ("classification", "regression")
SUPPORTED_FORMS = (
    "a folder with one sub-folder of images per class (PATH/<class>/*.png|jpg|jpeg), "
    "a folder with train/ and test/ sub-folders laid out that way, "
    "or a .csv table together with --target COLUMN"
)

Kind = Literal["classification", "regression"]


class UserDataError(ValueError):
    """The user's data cannot be loaded; the message says what is wrong and how to fix it. ``row``: the
    position, among the values checked, of the one at fault, where one is (for the caller to name its line)."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


class UnreadableImageError(UserDataError):
    """A file that should be an image cannot be read as one; ``reason``: what PIL said."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def load_user_data(
    path: str | Path,
    *,
    kind: Kind,
    target: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    fit: int | None = None,
) -> SplitData:
    """Load ``path`` for an experiment of ``kind``: an image folder (``fit``: see :func:`load_image_folder`)
    or a ``.csv`` table."""
    _check_kind(kind)
    path = Path(path)
    if path.is_dir():
        if kind != "classification":
            raise UserDataError(
                f"{path} is a folder of images, and image folders are for classification experiments; "
                f"this experiment does {kind}: pass a .csv table with --target COLUMN instead"
            )
        if target is not None:
            raise UserDataError(
                f"--target {target!r} names a column of a CSV table, but {path} is an image folder, "
                "whose labels are its class sub-folders: leave --target out"
            )
        return load_image_folder(path, val_fraction=val_fraction, seed=seed, fit=fit)
    if path.is_file() and path.suffix.lower() == ".csv":
        if target is None:
            columns, _, _ = read_csv_rows(path)
            raise UserDataError(
                f"{path} is a table: pass --target COLUMN to say which column to predict; "
                f"its columns are {', '.join(columns)}"
            )
        return load_csv_table(path, target, kind=kind, val_fraction=val_fraction, seed=seed)
    problem = "does not exist" if not path.exists() else "is neither a folder nor a .csv file"
    raise UserDataError(f"{path} {problem}; --data takes {SUPPORTED_FORMS}")


# ---------------------------------------------------------------------------------------------
# Image folders


def load_image_folder(path: str | Path, *, val_fraction: float = 0.2, seed: int = 0,
                      stretch: int | None = None, fit: int | None = None) -> SplitData:
    """Load a folder of class sub-folders of images as uint8 (N, C, H, W) with int64 labels.

    ``PATH/train/<class>/`` and ``PATH/test/<class>/`` are used as they are (eval_name "test";
    ``val_fraction`` and ``seed`` play no part, and other sub-folders of ``PATH`` are ignored).
    Otherwise ``PATH/<class>/`` is split into train and val, stratified: each class puts about
    ``val_fraction`` of its images (rounded, at most all but one) into val, drawn with ``seed``.
    Classes are the sub-folder names in sorted order; only the images directly inside a class
    folder count (PNG, JPEG, BMP, GIF, TIFF, WebP: ``IMAGE_SUFFIXES``), hidden and other files are skipped.
    All images must have one size, unless ``fit`` is given (images of several sizes are then each resized to ``fit`` x
    ``fit``, bilinear, as a prediction resizes its input) or ``stretch``: then every image is resized to
    ``stretch`` x ``stretch`` as it is read (bilinear, antialiased; the book's ``Resize([256, 256])``,
    D2L §13.2.1, for photographs of many sizes such as the hotdog set's). C is 1 when every image is
    grayscale and 3 otherwise (grayscale ones repeated).
    """
    _check_val_fraction(val_fraction)
    root = Path(path)
    if not root.exists():
        raise UserDataError(f"image folder {root} does not exist; check the path")
    if not root.is_dir():
        raise UserDataError(
            f"{root} is not a folder; an image data set is a folder with one sub-folder per class"
        )
    name = root.resolve().name
    train_folder, test_folder = root / "train", root / "test"
    if train_folder.is_dir() and test_folder.is_dir():
        train_files = scan_class_folders(train_folder)
        test_files = scan_class_folders(test_folder)
        if list(train_files) != list(test_files):
            raise UserDataError(
                f"{train_folder} and {test_folder} must have the same class sub-folders; "
                f"only in train: {sorted(set(train_files) - set(test_files)) or 'none'}, "
                f"only in test: {sorted(set(test_files) - set(train_files)) or 'none'}"
            )
        train_paths, train_labels = _flatten(train_files)
        test_paths, test_labels = _flatten(test_files)
        images = _read_images(train_paths + test_paths, root, stretch, fit)
        train = Split(images[: len(train_paths)], train_labels)
        test = Split(images[len(train_paths) :], test_labels)
        return SplitData(name, train, test, eval_name="test", classes=tuple(train_files),
                         inputs=ImageInputs(*images.shape[1:], classes=tuple(train_files)))
    if train_folder.is_dir() or test_folder.is_dir():
        present, absent = (
            (train_folder, test_folder) if train_folder.is_dir() else (test_folder, train_folder)
        )
        raise UserDataError(
            f"found {present} but no {absent}: a split image folder needs both train/ and test/ "
            "with the same class sub-folders (or put the class sub-folders directly in the folder)"
        )
    files_by_class = scan_class_folders(root)
    paths, labels = _flatten(files_by_class)
    images = _read_images(paths, root, stretch, fit)
    train_index, val_index = _stratified_split(labels, len(files_by_class), val_fraction, seed)
    if len(val_index) == 0:
        raise UserDataError(
            f"val_fraction={val_fraction} holds out no image of {root} ({len(paths)} images): "
            "add images or raise val_fraction"
        )
    train = Split(images[train_index], labels[train_index])
    val = Split(images[val_index], labels[val_index])
    return SplitData(name, train, val, eval_name="val", classes=tuple(files_by_class),
                     inputs=ImageInputs(*images.shape[1:], classes=tuple(files_by_class)))


def _visible_children(folder: Path) -> list[Path]:
    """The entries of ``folder`` in sorted order, without hidden ones (".DS_Store", ".git")."""
    return sorted(child for child in folder.iterdir() if not child.name.startswith("."))


def scan_class_folders(root: Path, min_classes: int = 2) -> dict[str, list[Path]]:
    """Map each class sub-folder of ``root`` (sorted) to its image files (sorted); training needs two
    classes or more, scoring a trained model ``min_classes`` 1."""
    class_folders = [child for child in _visible_children(root) if child.is_dir()]
    if not class_folders:
        raise UserDataError(
            f"{root} has no class sub-folders: put each class's images in its own sub-folder, "
            f"{root}/<class>/*.png"
        )
    files_by_class = {}
    for folder in class_folders:
        images = [
            child
            for child in _visible_children(folder)
            if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not images:
            raise UserDataError(
                f"class folder {folder.name!r} ({folder}) has no {'/'.join(IMAGE_SUFFIXES)} images "
                "directly inside it: add images or remove the folder"
            )
        files_by_class[folder.name] = images
    if len(files_by_class) < min_classes:
        raise UserDataError(
            f"{root} has only the class {class_folders[0].name!r}; classification needs at least "
            "2 classes, each in its own sub-folder"
        )
    return files_by_class


def _flatten(files_by_class: dict[str, list[Path]]) -> tuple[list[Path], torch.Tensor]:
    """All files, class by class, with their int64 class indices."""
    paths, labels = [], []
    for index, files in enumerate(files_by_class.values()):
        paths += files
        labels += [index] * len(files)
    return paths, torch.tensor(labels, dtype=torch.int64)


def _read_image(file: Path, root: Path, stretch: int | None = None) -> np.ndarray:
    """One image as uint8 (H, W) if grayscale or (H, W, 3) otherwise; with ``stretch``, resized (bilinear)
    to ``stretch`` x ``stretch``."""
    from PIL import Image

    image = _open_image(file, file.relative_to(root))
    gray = image.mode in ("1", "L", "LA")
    image = image.convert("L" if gray else "RGB")
    if stretch is not None and image.size != (stretch, stretch):
        image = image.resize((stretch, stretch), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def read_image(file: Path, *, mode: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """One image file as uint8 (C, H, W) in ``mode`` ("L": C = 1, "RGB": C = 3), resized (bilinear)
    to ``size`` (width, height) when given and different."""
    return read_image_and_size(file, mode=mode, size=size)[0]


def read_image_and_size(file: Path, *, mode: str,
                        size: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`read_image`'s pixels, and the file's own (width, height) as viewers show it (a detector
    gives its boxes back in those pixels)."""
    from PIL import Image

    image = _open_image(file, file).convert(mode)
    own_size = image.size
    if size is not None and image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    pixels = torch.from_numpy(array.copy()).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1).contiguous()
    return pixels, own_size


def _open_image(file: Path, shown: Path):
    """A PIL image, turned as viewers show photos taken sideways; 8 bits per channel."""
    from PIL import Image, ImageOps

    if not file.exists():
        raise UserDataError(f"image {file} does not exist; check the path")
    if file.is_dir():
        raise UserDataError(f"{file} is a folder; pass the image files in it (e.g. {file}/*.png)")
    try:
        with Image.open(file) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        where = shown if Path(shown) == Path(file) else f"{shown} ({file})"
        raise UnreadableImageError(f"cannot read image {where}: {error}; fix or remove the file", str(error)) from error
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise UserDataError(
            f"image {shown} has {image.mode!r} pixels (16-bit or floating point); "
            "save the images with 8 bits per channel first"
        )
    return image


def _read_images(files: list[Path], root: Path, stretch: int | None = None, fit: int | None = None) -> torch.Tensor:
    """Read ``files`` into one uint8 (N, C, H, W) tensor, each resized to ``stretch`` x ``stretch`` if given,
    checking that all share one size; where they do not and ``fit`` is given, every image is resized
    (bilinear) to ``fit`` x ``fit``, as a prediction resizes an image to the training images' size."""
    arrays = []
    first_file = first_size = None
    for file in files:
        array = _read_image(file, root, stretch)
        width_height = (array.shape[1], array.shape[0])  # as image tools report it
        if first_size is None:
            first_file, first_size = file, width_height
        elif width_height != first_size:
            if fit is not None:
                return _stack([_read_image(f, root, stretch=fit) for f in files])
            raise UserDataError(
                f"images differ in size: {first_file.relative_to(root)} is {first_size[0]}x{first_size[1]} "
                f"but {file.relative_to(root)} is {width_height[0]}x{width_height[1]} (width x height); "
                "pass --resize N to train on N x N images (each resized as it is read), or resize them to one "
                "size first"
            )
        arrays.append(array)
    return _stack(arrays)


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) arrays of one size -> (N, C, H, W), C = 1 if every one is gray, else 3."""
    if all(array.ndim == 2 for array in arrays):
        return torch.from_numpy(np.stack(arrays)).unsqueeze(1)
    rgb = [np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array for array in arrays]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous()


def _stratified_split(
    labels: torch.Tensor, num_classes: int, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val indices (each sorted): per class, round(n * val_fraction) go to val, but
    at least one stays in train."""
    generator = torch.Generator().manual_seed(seed)
    val_parts = []
    for label in range(num_classes):
        members = (labels == label).nonzero().flatten()
        num_val = min(int(len(members) * val_fraction + 0.5), len(members) - 1)
        val_parts.append(members[torch.randperm(len(members), generator=generator)[:num_val]])
    return _complement_split(len(labels), torch.cat(val_parts))


def _complement_split(n: int, val_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted train indices (everything not in ``val_index``) and sorted val indices."""
    in_train = torch.ones(n, dtype=torch.bool)
    in_train[val_index] = False
    return in_train.nonzero().flatten(), val_index.sort().values


# ---------------------------------------------------------------------------------------------
# CSV tables


def load_csv_table(
    path: str | Path,
    target: str,
    *,
    kind: Kind,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> SplitData:
    """Load a CSV table: ``target`` is the label column, every other column is a feature.

    Classification: the target's distinct values (as text, sorted) are the classes, y int64 (N,).
    Regression: the target must be numeric, y float32 (N, 1). Rows go to train or val by a simple
    random split with ``seed``. Features are float32 (N, D); see the module docstring for the
    encoding and ``feature_names`` for what each of the D columns is.
    """
    _check_kind(kind)
    _check_val_fraction(val_fraction)
    path = Path(path)
    columns, rows, line_numbers = read_csv_rows(path)
    if target not in columns:
        raise UserDataError(
            f"{path} has no column {target!r}; its columns are {', '.join(columns)}"
        )
    target_position = columns.index(target)
    if len(columns) == 1:
        raise UserDataError(f"{path} has only the target column {target!r}; add feature columns")
    _check_numbers(columns, rows, line_numbers, target_position if kind == "regression" else None, path)
    target_values = [row[target_position] for row in rows]
    if kind == "classification":
        y, classes = _encode_classes(target_values, line_numbers, target, path)
    else:
        y, classes = _encode_regression_target(target_values, line_numbers, target, path), None
    train_index, val_index = _random_split(len(rows), val_fraction, seed)
    encodings = [fit_column(column, [row[position] for row in rows], train_index)
                 for position, column in enumerate(columns) if position != target_position]
    X = torch.cat([apply_column(encoding, [row[columns.index(encoding["name"])] for row in rows])
                   for encoding in encodings], dim=1).float()  # (N, D)
    target_stats = {}
    if classes is None:  # the model learns the standardised target; its mean and std come from the training rows
        train_y = y[train_index].double()
        std = float(train_y.std()) if len(train_y) > 1 else 0.0
        target_stats = {"target_mean": float(train_y.mean()), "target_std": std if std > 0 else 1.0}
    inputs = TableInputs(tuple(encodings), target, classes, **target_stats)
    return SplitData(
        path.name,
        Split(X[train_index], y[train_index]),
        Split(X[val_index], y[val_index]),
        eval_name="val",
        classes=classes,
        feature_names=inputs.feature_names,
        inputs=inputs,
    )


def read_csv_rows(path: Path, min_rows: int = 2) -> tuple[list[str], list[list[str]], list[int]]:
    """The column names, the data rows (cells stripped) and each row's line number in the file.

    Blank lines are skipped; every other row must have as many fields as the header. Training
    needs ``min_rows`` = 2 (one to train on, one to validate); a table to predict, 1.
    """
    if not path.exists():
        raise UserDataError(f"table {path} does not exist; check the path")
    if not path.is_file():
        raise UserDataError(f"{path} is not a file; a table is a .csv file with a header row")
    rows, line_numbers = [], []
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets' BOM
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise UserDataError(f"{path} is empty; a table needs a header row and data rows")
            columns = [cell.strip() for cell in header]
            for separator, name in ((";", "semicolons"), ("\t", "tabs")):
                if len(columns) == 1 and separator in columns[0]:  # a spreadsheet's other export
                    raise UserDataError(f"{path} seems separated by {name} (its header is {columns[0]!r}); "
                                        "divekit reads comma-separated tables: save it as CSV with commas")
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):  # a blank line, spaces alone too (as pandas)
                    continue
                if len(row) != len(columns):
                    raise UserDataError(
                        f"line {reader.line_num} of {path} has {len(row)} fields but the header has "
                        f"{len(columns)}; every row needs one value per column (leave a value empty "
                        "if it is missing, and quote values that contain commas)"
                    )
                rows.append([cell.strip() for cell in row])
                line_numbers.append(reader.line_num)
    except UnicodeDecodeError as error:
        raise UserDataError(f"{path} is not UTF-8 text ({error}); save it as UTF-8 CSV") from error
    except csv.Error as error:
        raise UserDataError(f"{path} is not valid CSV: {error}") from error
    duplicates = sorted({column for column in columns if columns.count(column) > 1})
    if duplicates:
        named = ", ".join(map(repr, duplicates))
        raise UserDataError(f"{path} has several columns named {named}; rename them")
    if not rows:
        raise UserDataError(f"{path} has a header row but no data rows; add data rows")
    if len(rows) < min_rows:
        raise UserDataError(f"{path} has only 1 data row; training and validation need at least 2")
    return columns, rows, line_numbers


LARGEST_FEATURE = 1e150  # beyond this, the squares in a column's standard deviation overflow float64
MAX_NUMBERED_CLASSES = 10  # more numbers than this, in over half the rows: a regression target, not classes
LARGEST_TARGET = float(torch.finfo(torch.float32).max)  # a regression target is trained in float32


def _check_numbers(columns: list[str], rows: list[list[str]], line_numbers: list[int], target_position: int | None,
                   path: Path) -> None:
    """Refuse cells that read as infinite numbers (which would make their column categorical), feature
    values too large to standardise, and a regression target beyond float32, naming line and column."""
    for row, line in zip(rows, line_numbers):
        for position, (column, cell) in enumerate(zip(columns, row)):
            if _is_missing(cell):
                continue
            value = _parse_number(cell)
            if value is None:
                continue
            if not math.isfinite(value):
                raise UserDataError(f"line {line} of {path} has {cell!r} in column {column!r}, an infinite number; "
                                    "replace it with a finite one or leave the cell empty")
            limit = LARGEST_TARGET if position == target_position else LARGEST_FEATURE
            if abs(value) > limit:
                what = "the target" if position == target_position else "a feature"
                raise UserDataError(f"line {line} of {path} has {cell!r} in column {column!r}, too large for "
                                    f"{what} (at most {limit:.3g}); rescale the column, e.g. to thousands")


def _is_missing(value: str) -> bool:
    return value in MISSING_MARKERS


def _parse_number(value: str) -> float | None:
    """A cell as a number as pandas reads one (ASCII digits, a sign, a point, an exponent, inf; not
    Python's "1_000" or other scripts' digits, which pandas keeps as text), else None."""
    return float(value) if NUMBER.fullmatch(value) else None


def _is_number(value: str) -> bool:
    number = _parse_number(value)
    return number is not None and math.isfinite(number)


def _is_number_or_missing(value: str) -> bool:
    return _is_missing(value) or _is_number(value)


def _encode_classes(
    values: list[str], line_numbers: list[int], target: str, path: Path
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """int64 class indices and the class names (the distinct target values, sorted)."""
    for value, line in zip(values, line_numbers):
        if _is_missing(value):
            raise UserDataError(
                f"line {line} of {path} has no value in the target column {target!r}; "
                "fill it in or remove the row"
            )
    classes = tuple(sorted(set(values)))
    if len(classes) > max(MAX_NUMBERED_CLASSES, len(values) // 2) and is_numeric_column(values):
        raise UserDataError(
            f"the target column {target!r} of {path} holds {len(classes)} different numbers in {len(values)} rows, "
            f"and a classifier would make each number a class of its own: predict the number with `divekit run "
            f"linear-regression --data {path} --target {target}`, or put the rows into classes first"
        )
    if len(classes) < 2:
        raise UserDataError(
            f"the target column {target!r} of {path} has the single value {classes[0]!r}; "
            "classification needs at least 2 classes"
        )
    index = {name: position for position, name in enumerate(classes)}
    return torch.tensor([index[value] for value in values], dtype=torch.int64), classes


def _encode_regression_target(
    values: list[str], line_numbers: list[int], target: str, path: Path
) -> torch.Tensor:
    """float32 (N, 1) targets; each value must be a number."""
    for value, line in zip(values, line_numbers):
        if not _is_number(value):
            raise UserDataError(
                f"line {line} of {path} has {value!r} in the target column {target!r}, which is "
                "not a number; a regression target must be numeric in every row "
                "(for a column of labels, run a classification experiment)"
            )
    return torch.tensor([float(value) for value in values], dtype=torch.float32).unsqueeze(1)


def is_numeric_column(values: list[str]) -> bool:
    """A column is numeric when every cell is a number or missing, as pandas decides a column's dtype."""
    return all(map(_is_number_or_missing, values))


def encode_column(column: str, values: list[str], stats_index: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """One column encoded as D2L §4.10 does, float64 (N, K), with the names of its K features.

    Numeric: standardised, missing values set to 0 (1 feature). Otherwise one-hot with a feature
    for missing values. Means, stds and categories come only from the rows in ``stats_index``.
    """
    encoding = fit_column(column, values, stats_index)
    return apply_column(encoding, values), column_feature_names(encoding)


def fit_column(column: str, values: list[str], stats_index: torch.Tensor) -> dict:
    """How to encode ``column``, learned from the rows in ``stats_index``: ``{"name", "mean", "std"}``
    for a numeric column, ``{"name", "categories"}`` (sorted) otherwise.
    The dict is plain JSON, saved with a run so that new rows are encoded the same way."""
    if not is_numeric_column(values):
        return {"name": column, "categories": sorted({values[i] for i in stats_index.tolist()} - MISSING_MARKERS)}
    numbers = torch.tensor([math.nan if _is_missing(v) else float(v) for v in values], dtype=torch.float64)
    observed = numbers[stats_index]
    observed = observed[~observed.isnan()]
    mean = float(observed.mean()) if len(observed) > 0 else 0.0
    std = float(observed.std()) if len(observed) > 1 else 0.0  # unbiased, as pandas' std in D2L
    return {"name": column, "mean": mean, "std": std}


def apply_column(encoding: dict, values: list[str]) -> torch.Tensor:
    """float64 (N, K) features of ``values`` by a :func:`fit_column` encoding. Numeric: (v - mean) / std,
    missing values 0, and 0 everywhere for a column that was constant in the fitted rows (it told the
    model nothing; D2L's (x - mean) / std gives NaN there, which it fills with 0); a value that is not
    a number is an error. Categorical: one-hot over the
    categories and then missing values; a category the fitted rows did not have gets all zeros."""
    column = encoding["name"]
    if "categories" not in encoding:
        row, bad = next(((i, v) for i, v in enumerate(values) if not _is_number_or_missing(v)), (None, None))
        if bad is not None:
            raise UserDataError(f"column {column!r} holds {bad!r}, but the model was trained on numbers in it; "
                                "give a number or leave the cell empty", row=row)
        numbers = torch.tensor([math.nan if _is_missing(v) else float(v) for v in values], dtype=torch.float64)
        if encoding["std"] == 0:
            return torch.zeros(len(values), 1, dtype=torch.float64)
        return torch.where(numbers.isnan(), 0.0, (numbers - encoding["mean"]) / encoding["std"]).unsqueeze(1)
    position = {category: k for k, category in enumerate(encoding["categories"])}
    missing_position = len(position)
    codes = torch.tensor([missing_position if _is_missing(v) else position.get(v, -1) for v in values],
                         dtype=torch.int64)
    one_hot = torch.zeros(len(values), len(position) + 1, dtype=torch.float64)
    known = (codes >= 0).nonzero().flatten()
    one_hot[known, codes[known]] = 1.0
    return one_hot


def column_feature_names(encoding: dict) -> list[str]:
    """The names of the features :func:`apply_column` makes: the column, or ``column=category`` each."""
    column = encoding["name"]
    if "categories" not in encoding:
        return [column]
    return [f"{column}={category}" for category in encoding["categories"]] + [f"{column}={MISSING_CATEGORY}"]


def _random_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted train and val indices: round(n * val_fraction) rows, at least 1 and at most n - 1,
    go to val."""
    num_val = min(max(int(n * val_fraction + 0.5), 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return _complement_split(n, order[:num_val])


# ---------------------------------------------------------------------------------------------
# Arguments


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UserDataError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _check_val_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise UserDataError(
            f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}; "
            "0.2 holds out a fifth of the data for validation"
        )
