"""Object detection data in the book's banana format (D2L §13.6): the real set, and sets generated here
in the same format, read into :class:`~divekit.data.batch.Detection` batches.

The format: a split folder holds ``label.csv`` with the header ``img_name,label,xmin,ymin,xmax,ymax``
(box corners in pixels; an image without objects: its name and empty fields) and the images under
``images/``. The book's set has two splits, ``bananas_train`` (1,000 images) and ``bananas_val``
(100), 256x256, one banana each (class 0); its loader divides the corners by 256. Here an image may
have several rows (several objects), and the corners are divided by the image's own width and height.

The real set comes from the data hub (``banana-detection``). Where it cannot be had, a set in the
same format is generated, deterministically from a seed, into the cache: drawn objects pasted with a
random size, rotation and colour onto crops of real photographs (:mod:`divekit.data.photos`):

* ``generated-bananas``: one banana-like curved shape per image, sized as the book's bananas (32-68
  pixels on a side of 256), yellow to green; 1,000 / 100 images at 256x256, one class;
* ``generated-shapes``: one to four objects per image from four classes (banana, ring, triangle,
  star), each any colour, so the class is in the shape alone; boxes overlap by IoU 0.2 at most.

Your own data in the same format (:func:`load_user_detection`, ``divekit run ssd --data DIR``): one
folder of it, split at random, or a folder of two splits (``train/`` and ``val/`` or ``test/``, or the
book's ``bananas_train/`` and ``bananas_val/``), every image resized to one square size; class names
from a ``classes.txt`` beside the splits.

Letters: N images, C = 3 channels, H x W image size, M objects per image (padded with label -1).
"""

from __future__ import annotations

import colorsys
import csv
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from divekit.data.batch import Detection
from divekit.data.hub import cache_dir, fetch
from divekit.data.photos import load_photos, random_crops
from divekit.data.user import IMAGE_SUFFIXES, UnreadableImageError, read_image_and_size

__all__ = ["DETECTION_SETS", "DetectionData", "GeneratedSet", "evaluation_split", "generate_detection_set",
           "generated_folder", "load_detection", "load_user_detection", "read_detection_split", "split_folder",
           "write_detection_split"]

log = logging.getLogger("divekit")
LABEL_HEADER = ("img_name", "label", "xmin", "ymin", "xmax", "ymax")
EVAL_SPLITS = ("val", "valid", "test")  # the names of your data's evaluation split beside train/
VAL_FRACTION = 0.1  # the share of one folder of your data kept aside for validation
SHAPES = ("banana", "ring", "triangle", "star")
GENERATOR_VERSION = 1  # part of a generated set's cache folder name: bump it when the drawing changes


@dataclass(frozen=True)
class DetectionData:
    """A detection data set ready for training: ``train`` and ``eval`` are :class:`Detection` batches
    of uint8 images (N, 3, H, W), relative corner boxes (N, M, 4) and labels (N, M), -1 for padding."""

    name: str
    train: Detection
    eval: Detection
    classes: tuple[str, ...]
    eval_name: str = "val"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.X.shape[1:])


# -- reading and writing the format -----------------------------------------------------------------


def read_detection_split(folder: str | os.PathLike, size: tuple[int, int] | None = None) -> Detection:
    """One split in the banana format (``folder/label.csv`` and ``folder/images/``) as a Detection batch:
    images in the order of their first row, uint8 (N, 3, H, W), resized (bilinear) to ``size`` (width,
    height) when given; boxes (N, M, 4) relative to each image's width and height; labels (N, M) long,
    -1 on the padding rows of images with fewer than M objects. A row of an image name and empty fields
    lists an image without objects (all padding; the book's files have none). A row that is not an image
    name, a class index >= 0 and a finite box with xmin < xmax and ymin < ymax inside its image's pixels is refused with
    its line, as is a line without commas or a named file PIL cannot read; blank lines are skipped, images that no
    row names are left out with a warning, and other files in images/ (hidden ones, notes) are ignored."""
    folder = Path(folder)
    where = folder / "label.csv"
    rows: dict[str, list[tuple[int, float, float, float, float]]] = {}
    lines: dict[str, list[int]] = {}  # each object's line in label.csv, for the checks that need its image
    named: dict[str, int] = {}  # the first line that names each image
    with open(where, newline="", encoding="utf-8-sig") as f:  # -sig: a CSV saved with a byte-order mark
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if not header:
            raise ValueError(f"{where} is empty; it needs the header {','.join(LABEL_HEADER)} and a row per object")
        if len(header) == 1:
            raise _no_commas(where, 1, header[0])
        if header != LABEL_HEADER:
            raise ValueError(f"{where} must start with the header {','.join(LABEL_HEADER)}, got {','.join(header)}")
        for line, row in enumerate(reader, 2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) == 1 and _separator(row[0]):
                raise _no_commas(where, line, row[0])
            if len(row) != len(LABEL_HEADER):
                alone = f"; an image without objects is its name and five empty fields ({row[0]},,,,,)" \
                    if len(row) == 1 else ""
                raise ValueError(f"{where}, line {line}: expected {len(LABEL_HEADER)} fields, got {row}{alone}")
            if not row[0].strip():
                raise ValueError(f"{where}, line {line}: no image name (img_name, a file in {folder / 'images'})")
            named.setdefault(row[0], line)
            if not any(cell.strip() for cell in row[1:]):  # an image without objects: its name alone
                rows.setdefault(row[0], [])
                lines.setdefault(row[0], [])
                continue
            if row[1].strip() and not _numeric(row[1]):
                raise ValueError(f"{where}, line {line}: the label column holds class indices 0..K-1, got {row[1]!r}; "
                                 "write the class's index there, and the class names in classes.txt (beside label.csv "
                                 "or its split folders), one a line in index order (the first is class 0)")
            try:
                label, x1, y1, x2, y2 = int(row[1]), *map(float, row[2:])
            except ValueError:
                raise ValueError(f"{where}, line {line}: expected a class index and four pixel coordinates, "
                                 f"got {row[1:]}") from None
            if label < 0 or not all(map(math.isfinite, (x1, y1, x2, y2))) or not (x1 < x2 and y1 < y2):
                raise ValueError(f"{where}, line {line}: expected a class index >= 0 and a finite box with xmin < "
                                 f"xmax and ymin < ymax, got {row[1:]}")
            rows.setdefault(row[0], []).append((label, x1, y1, x2, y2))
            lines.setdefault(row[0], []).append(line)
    if not rows:
        raise ValueError(f"{where} lists no images")
    for name in rows:
        if not (folder / "images" / name).is_file():
            raise ValueError(f"{where}, line {named[name]}: image {name} is not in {folder / 'images'}")
    files = {p.name for p in (folder / "images").iterdir()  # hidden files and others than images are no concern
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES}
    unlisted = sorted(files - set(rows))
    if unlisted:
        log.warning(f"{len(unlisted)} image(s) in {folder / 'images'} have no row in {where} and are left out "
                    f"(e.g. {unlisted[0]}); the format lists every image by its objects, or by its name and "
                    "empty fields where it has none")
    read = []
    for name in rows:
        try:
            read.append(read_image_and_size(folder / "images" / name, mode="RGB", size=size))
        except UnreadableImageError as error:  # (an image of other than 8 bits per channel: its own message says so)
            raise ValueError(f"{where}, line {named[name]}: images/{name} is not an image PIL can read "
                             f"({error.reason}); fix or replace the file, or remove its rows") from None
    images = [pixels for pixels, _ in read]
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        raise ValueError(f"the images of {folder} differ in size ({sorted(sizes)}); resize them to one size first")
    M = max(1, max(len(objects) for objects in rows.values()))
    labels = torch.full((len(rows), M), -1, dtype=torch.long)
    boxes = torch.zeros(len(rows), M, 4)
    for i, (name, objects, (_, (width, height))) in enumerate(zip(rows, rows.values(), read)):  # its own pixels
        for (_, x1, y1, x2, y2), line in zip(objects, lines[name]):
            if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                raise ValueError(f"{where}, line {line}: the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) reaches outside "
                                 f"{name}, which is {width}x{height} pixels; boxes are in each image's own pixels")
        if not objects:
            continue
        table = torch.tensor(objects, dtype=torch.float64)                        # (m, 5) [label, x1, y1, x2, y2]
        labels[i, :len(objects)] = table[:, 0].long()
        boxes[i, :len(objects)] = (table[:, 1:] / torch.tensor([width, height, width, height])).float()
    return Detection(torch.stack(images), boxes, labels)


def _separator(text: str) -> str | None:
    """The common separator (tabs, semicolons, spaces) that splits a line of label.csv into its six
    fields, if one does."""
    return next((name for mark, name in (("\t", "tabs"), (";", "semicolons"), (" ", "spaces"))
                 if len(text.split(mark)) == len(LABEL_HEADER)), None)


def _no_commas(where: Path, line: int, text: str) -> ValueError:
    """The error for a line of label.csv without commas, naming its separator where it is a common one."""
    found = _separator(text)
    return ValueError(f"{where}, line {line}: no commas{f' (its fields are separated by {found})' if found else ''}; "
                      f"label.csv must be comma-separated ({','.join(LABEL_HEADER)}): save it as CSV with commas")


def _numeric(cell: str) -> bool:
    """Whether a field of label.csv reads as a number."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def write_detection_split(folder: str | os.PathLike, images: Sequence[Image.Image],
                          objects: Sequence[Sequence[tuple[int, int, int, int, int]]]) -> None:
    """Write images (PIL) and their objects, rows (label, xmin, ymin, xmax, ymax) in pixels, as
    ``folder/images/<i>.png`` and ``folder/label.csv`` in the banana format."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with open(folder / "label.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(LABEL_HEADER)
        for i, (image, rows) in enumerate(zip(images, objects)):
            image.save(folder / "images" / f"{i}.png")
            writer.writerows((f"{i}.png", *row) for row in rows)


# -- drawing objects ---------------------------------------------------------------------------------


def _outline(shape: str) -> list[list[tuple[float, float]]]:
    """The shape's polygons in unit coordinates (about [-1, 1]^2), the first filled and the others cut out."""
    if shape == "banana":
        # a curved band: a centreline arc, thickest in the middle, tapering to the tips
        theta = np.linspace(-0.85, 0.85, 40)
        centre = np.stack([1.3 * np.sin(theta), 1.3 * (1 - np.cos(theta)) - 0.3], axis=1)    # (40, 2)
        normal = np.stack([-np.sin(theta), np.cos(theta)], axis=1)                           # (40, 2)
        half_width = 0.04 + 0.2 * np.sin(np.linspace(0, np.pi, len(theta))) ** 0.7           # (40,)
        upper, lower = centre + normal * half_width[:, None], centre - normal * half_width[:, None]
        return [[tuple(p) for p in np.concatenate([upper, lower[::-1]])]]
    if shape == "ring":
        circle = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
        return [circle, [(0.5 * x, 0.5 * y) for x, y in circle]]
    if shape == "triangle":
        return [[(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]]
    if shape == "star":
        return [[(r * math.cos(a), r * math.sin(a))
                 for k in range(10) for r, a in [((1.0, 0.42)[k % 2], -math.pi / 2 + k * math.pi / 5)]]]
    raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def _sprite(shape: str, colour: tuple[int, int, int], side: int, angle: float) -> Image.Image:
    """The shape filled with ``colour``, shaded from light (top) to dark, with a darker outline, rotated by
    ``angle`` degrees: RGBA, transparent around it, cropped to it, its longer side ``side`` pixels. Drawn
    at 4x the size and shrunk, so its edges are smooth."""
    scale = 4
    canvas = side * scale  # the unit square [-1, 1]^2 fills it, less a margin for the outline
    stroke = max(1, canvas // 24)
    shade = np.linspace(1.15, 0.8, canvas)[:, None, None]                        # (canvas, 1, 1)
    rgb = np.clip(np.array(colour, dtype=np.float64) * shade, 0, 255)           # (canvas, 1, 3)
    sprite = Image.fromarray(np.broadcast_to(rgb, (canvas, canvas, 3)).astype(np.uint8), "RGB")
    mask = Image.new("L", (canvas, canvas), 0)
    dark = tuple(int(c * 0.5) for c in colour)
    for k, polygon in enumerate(_outline(shape)):  # the first polygon is filled, the others are holes
        points = [(canvas / 2 * (1 + 0.9 * x), canvas / 2 * (1 + 0.9 * y)) for x, y in polygon]
        ImageDraw.Draw(mask).polygon(points, fill=255 if k == 0 else 0, outline=255, width=stroke)
        ImageDraw.Draw(sprite).polygon(points, outline=dark, width=stroke)
    sprite.putalpha(mask)
    sprite = sprite.rotate(angle, resample=Image.BICUBIC, expand=True)
    sprite = sprite.crop(sprite.getchannel("A").point(lambda v: 255 if v > 127 else 0).getbbox())
    factor = side / max(sprite.size)
    return sprite.resize((max(1, round(sprite.width * factor)), max(1, round(sprite.height * factor))), Image.LANCZOS)


@dataclass(frozen=True)
class GeneratedSet:
    """How a generated set is drawn: its classes, objects per image, object size (the longer side of the box,
    a fraction of the image side), the hues of its colours and how much boxes may overlap."""

    name: str
    classes: tuple[str, ...]
    objects: tuple[int, int]
    size: tuple[float, float]
    hues: tuple[float, float]
    max_overlap: float = 0.2


DETECTION_SETS = {
    "generated-bananas": GeneratedSet("bananas", ("banana",), (1, 1), (0.13, 0.27), (0.09, 0.25)),
    "generated-shapes": GeneratedSet("shapes", SHAPES, (1, 4), (0.12, 0.35), (0.0, 1.0)),
}


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _draw_image(spec: GeneratedSet, background: torch.Tensor, generator: torch.Generator):
    """One image: objects pasted on a background (3, S, S) uint8 -> (PIL image, rows (label, x1, y1, x2, y2))."""
    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    image = Image.fromarray(background.permute(1, 2, 0).numpy(), "RGB")
    S = image.width
    count = int(torch.randint(spec.objects[0], spec.objects[1] + 1, (), generator=generator))
    rows: list[tuple[int, int, int, int, int]] = []
    for _ in range(count):
        label = int(torch.randint(len(spec.classes), (), generator=generator))
        colour = colorsys.hsv_to_rgb(uniform(*spec.hues) % 1.0, uniform(0.55, 1.0), uniform(0.6, 1.0))
        sprite = _sprite(spec.classes[label], tuple(round(255 * c) for c in colour),
                         max(4, round(uniform(*spec.size) * S)), uniform(0, 360))
        for _ in range(20):  # a place inside the image that overlaps the others little enough
            x, y = round(uniform(0, S - sprite.width)), round(uniform(0, S - sprite.height))
            box = (x, y, x + sprite.width, y + sprite.height)
            if all(_iou(box, row[1:]) <= spec.max_overlap for row in rows):
                image.paste(sprite, (x, y), sprite)
                rows.append((label, *box))
                break
    return image, rows


def generate_detection_set(root: str | os.PathLike, spec: GeneratedSet, *, num_train: int, num_val: int,
                           image_size: int = 256, seed: int = 0) -> Path:
    """Draw a set in the banana format into ``root/<name>_train`` and ``root/<name>_val``; the same
    arguments give the same files. Each image is a crop of a photograph with objects pasted on it."""
    if min(num_train, num_val) < 1 or image_size < 32:
        raise ValueError(f"a generated set needs at least one image per split and images of at least 32 pixels, "
                         f"got {num_train} / {num_val} images of {image_size}")
    generator = torch.Generator().manual_seed(seed)
    photos = load_photos()
    for split, count in (("train", num_train), ("val", num_val)):
        drawn = [_draw_image(spec, random_crops(photos, 1, image_size, generator=generator)[0], generator)
                 for _ in range(count)]
        write_detection_split(Path(root) / f"{spec.name}_{split}", [d[0] for d in drawn], [d[1] for d in drawn])
    return Path(root)


def generated_folder(dataset: str, num_train: int, num_val: int, image_size: int, seed: int) -> Path:
    """The cache folder of a generated set (``<name>_train`` and ``<name>_val`` in the banana format), drawn on
    first use into a temporary folder, then renamed."""
    spec = DETECTION_SETS[dataset]
    name = f"{dataset}-{num_train}-{num_val}-{image_size}px-seed{seed}-v{GENERATOR_VERSION}"
    folder = cache_dir() / "generated" / name
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            generate_detection_set(staging, spec, num_train=num_train, num_val=num_val, image_size=image_size,
                                   seed=seed)
            os.replace(staging, folder)
        except OSError:
            if not folder.is_dir():  # another process finished the same set first: use that one
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_detection(dataset: str, *, num_train: int = 1000, num_val: int = 100, image_size: int = 256, seed: int = 0,
                   data_dir: str | os.PathLike | None = None) -> DetectionData:
    """A detection set as :class:`DetectionData`: ``"bananas"`` is the book's set from the data hub
    (``data_dir`` may hold ``banana-detection/banana-detection.zip``); ``"generated-bananas"`` and
    ``"generated-shapes"`` are drawn into the cache from ``seed`` with the given sizes (module docstring)."""
    if dataset == "bananas":
        folder = fetch("banana-detection", data_dir=data_dir)
        return DetectionData("banana detection (D2L §13.6)", read_detection_split(folder / "bananas_train"),
                             read_detection_split(folder / "bananas_val"), ("banana",))
    if dataset not in DETECTION_SETS:
        raise ValueError(f"unknown detection set {dataset!r}; choose bananas, {', '.join(DETECTION_SETS)}")
    spec = DETECTION_SETS[dataset]
    folder = generated_folder(dataset, num_train, num_val, image_size, seed)
    name = (f"{dataset}: {num_train:,} / {num_val:,} images of {image_size}x{image_size} in the book's format, "
            f"drawn here from seed {seed} (not the book's photographs)")
    return DetectionData(name, read_detection_split(folder / f"{spec.name}_train"),
                         read_detection_split(folder / f"{spec.name}_val"), spec.classes)


def load_user_detection(path: str | os.PathLike, *, size: int, seed: int) -> DetectionData:
    """Your detection data in the banana format as :class:`DetectionData`, every image resized to
    ``size`` x ``size`` as it is read (boxes are relative to their image: they stay on their objects).
    ``path`` holds label.csv and images/ (split at random from ``seed``: a tenth, at least one image,
    for validation), or two such splits: train/ with val/, valid/ or test/, or the book's
    ``<name>_train/`` with ``<name>_val/``, used as they are. Class names are the lines of
    ``path/classes.txt`` where it exists, else ``class 0``, ``class 1``, ... up to the largest index."""
    root = split_folder(path)
    if not root.is_dir():
        raise ValueError(f"--data {root}: no such folder; detection data is a folder with label.csv and images/ "
                         "(the banana format, D2L §13.6), or with train/ and val/ folders of that form")
    shape = (size, size)
    if (root / "label.csv").is_file():
        whole = read_detection_split(root, size=shape)
        if len(whole) < 2:
            raise ValueError(f"{root / 'label.csv'} lists one image; a run needs two or more (one to train on, "
                             "one to validate on)")
        order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(seed))
        held = max(1, round(len(whole) * VAL_FRACTION))
        train, evaluation = (whole.select(part.sort().values) for part in (order[held:], order[:held]))
        eval_name = "val"
    else:
        train_dir, eval_dir = _user_splits(root)
        train, evaluation = read_detection_split(train_dir, size=shape), read_detection_split(eval_dir, size=shape)
        eval_name = "test" if eval_dir.name == "test" else "val"
    count = int(max(train.labels.max(), evaluation.labels.max())) + 1
    if count == 0:
        raise ValueError(f"--data {root}: its label.csv lists no objects (every image by its name alone); a detector "
                         "learns from boxes: give each object a row of label,xmin,ymin,xmax,ymax")
    classes = _user_classes(root, count)
    name = (f"your data: {root} ({len(train):,} training and {len(evaluation):,} {eval_name} images, resized to "
            f"{size}x{size}; {len(classes)} classes)")
    return DetectionData(name, train, evaluation, classes, eval_name)


def _user_splits(root: Path) -> tuple[Path, Path]:
    """The training and evaluation split folders of your data (see :func:`load_user_detection`)."""
    def split(folder: Path) -> bool:
        return (folder / "label.csv").is_file()

    evaluation = evaluation_split(root)
    if split(root / "train") and evaluation is not None:
        return root / "train", evaluation
    pairs = [(train, train.with_name(train.name[:-len("_train")] + "_val")) for train in sorted(root.glob("*_train"))]
    pairs = [(train, val) for train, val in pairs if split(train) and split(val)]
    if len(pairs) == 1:
        return pairs[0]
    raise ValueError(f"--data {root}: expected label.csv and images/ there (the banana format, D2L §13.6), or "
                     f"train/ with {'/'.join(EVAL_SPLITS)} folders of that form"
                     + (f"; it has {len(pairs)} pairs of *_train and *_val folders: give one of them" if pairs else ""))


def split_folder(path: str | os.PathLike) -> Path:
    """``path`` as a split folder: a label.csv given itself is its folder."""
    path = Path(path)
    return path.parent if path.name == "label.csv" and path.is_file() else path


def evaluation_split(root: Path) -> Path | None:
    """The evaluation split beside train/ in a folder of your data: the first of ``EVAL_SPLITS`` that holds a
    label.csv, or None."""
    return next((root / name for name in EVAL_SPLITS if (root / name / "label.csv").is_file()), None)


def _user_classes(root: Path, count: int) -> tuple[str, ...]:
    """Names of your data's classes: the lines of ``root/classes.txt`` (blank ones skipped), which must
    name every index its label.csv files use (``count``), else ``class 0`` ... ``class count - 1``."""
    where = root / "classes.txt"
    if not where.is_file():
        return tuple(f"class {i}" for i in range(count))
    names = tuple(line.strip() for line in where.read_text(encoding="utf-8-sig").splitlines() if line.strip())
    if len(names) < count:
        raise ValueError(f"{where} names {len(names)} classes, but label.csv uses class index {count - 1}; give "
                         "one name a line, in the order of the indices (0 first)")
    return names
