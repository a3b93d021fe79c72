"""What a trained model takes as input, and how raw inputs become its tensors.

A run saves its model's inputs in ``model.json`` (see :mod:`divekit.predict`), so that a trained
model turns new images, table rows and text into tensors exactly as its training data was turned,
without the training data at hand. One frozen dataclass per kind of input, each round-tripping
through plain JSON (:func:`inputs_to_dict`, :func:`inputs_from_dict`):

* :class:`ImageInputs`: C x H x W images scaled to [0, 1] (uint8 / 255, as the loaders do), then the
  evaluation transform (e.g. the book's ``Resize``), and the names of the classes;
* :class:`DetectionInputs`: the same images for a detector, whose boxes come back in each file's own
  pixels, and the names of the object classes;
* :class:`TableInputs`: CSV rows encoded as in training (D2L §4.10: numeric columns standardised by
  the training rows' mean and std, the others one-hot), and the target's classes or, for
  regression, its training mean and std (the model learns the standardised target);
* :class:`TextInputs`: a vocabulary of characters or words, and the book's cleaning of text;
* :class:`TranslationInputs`: the source and target vocabularies and the sentence length.

Letters: N inputs, C channels, H x W image size, D encoded table features.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch


@dataclass(frozen=True)
class ImageInputs:
    """Images of ``channels`` x ``height`` x ``width`` pixels in ``classes``; ``transform`` describes the
    evaluation transform (:func:`divekit.data.transforms.transform_from_spec`)."""

    kind: ClassVar[str] = "images"
    channels: int
    height: int
    width: int
    classes: tuple[str, ...]
    transform: tuple[dict, ...] = ()

    def read(self, files: Sequence[str | Path]) -> torch.Tensor:
        """Image files as uint8 (N, C, H, W): converted to gray or RGB as the training images were,
        and resized (bilinear) to the training images' size when they differ."""
        from divekit.data.user import read_image

        return torch.stack([read_image(Path(file), mode="L" if self.channels == 1 else "RGB",
                                       size=(self.width, self.height)) for file in files])

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) images -> the float tensor the model takes, on the images' device."""
        from divekit.data.batch import Split
        from divekit.data.transforms import transform_from_spec

        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"expected uint8 images of shape (N, {', '.join(map(str, self.shape))}), got "
                             f"{images.dtype} {tuple(images.shape)}; read files with ImageInputs.read")
        X = images.float().div(255)  # (N, C, H, W) in [0, 1]
        if self.transform:
            X = transform_from_spec(self.transform)(Split(X, torch.zeros(len(X)))).X
        return X

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width


@dataclass(frozen=True)
class DetectionInputs(ImageInputs):
    """Images of ``channels`` x ``height`` x ``width`` pixels for a detector of the object ``classes``
    (D2L §13.7.3): read and scaled as :class:`ImageInputs`, with each file's own size kept to give the
    boxes back in its pixels."""

    kind: ClassVar[str] = "detection"

    def read_with_sizes(self, files: Sequence[str | Path]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Image files as :meth:`read` gives them (N, C, H, W), and each file's (width, height)."""
        from divekit.data.user import read_image_and_size

        read = [read_image_and_size(Path(file), mode="L" if self.channels == 1 else "RGB",
                                    size=(self.width, self.height)) for file in files]
        return torch.stack([pixels for pixels, _ in read]), [own_size for _, own_size in read]


@dataclass(frozen=True)
class TableInputs:
    """Rows of a table with the feature ``columns`` (encodings of
    :func:`divekit.data.user.fit_column`) and a ``target`` column: a classification target has
    ``classes``; a regression target ``target_mean`` and ``target_std`` (of the training rows)."""

    kind: ClassVar[str] = "table"
    columns: tuple[dict, ...]
    target: str
    classes: tuple[str, ...] | None = None
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def feature_names(self) -> tuple[str, ...]:
        from divekit.data.user import column_feature_names

        return tuple(name for encoding in self.columns for name in column_feature_names(encoding))

    def read(self, path: str | Path) -> tuple[list[list[str]], torch.Tensor, torch.Tensor | None]:
        """A CSV file's rows, their float32 features (N, D) and, when the file has the target column,
        the targets: class indices (N,) or standardised values (N, 1)."""
        from divekit.data.user import UserDataError, read_csv_rows

        path = Path(path)
        header, rows, lines = read_csv_rows(path, min_rows=1)
        missing = [encoding["name"] for encoding in self.columns if encoding["name"] not in header]
        if missing:
            raise UserDataError(f"{path} lacks the column(s) {', '.join(missing)} that the model was trained on; "
                                f"its columns are {', '.join(header)}")
        cells = [dict(zip(header, row)) for row in rows]
        try:
            X = self.encode(cells)
        except UserDataError as error:  # name the line at fault, as training's messages do
            if error.row is None:
                raise
            raise UserDataError(f"line {lines[error.row]} of {path}: {error}") from None
        if self.target not in header:
            return rows, X, None
        return rows, X, self.encode_targets([row[self.target] for row in cells], path)

    def encode(self, rows: Sequence[dict[str, str]]) -> torch.Tensor:
        """float32 features (N, D) of rows given as {column: text}; columns the model does not use are ignored."""
        from divekit.data.user import MISSING_MARKERS, UserDataError, apply_column

        for number, row in enumerate(rows, 1):
            absent = [encoding["name"] for encoding in self.columns if encoding["name"] not in row]
            if absent:
                raise UserDataError(f"row {number} has no value for {', '.join(absent)}; every row needs the "
                                    f"columns {', '.join(e['name'] for e in self.columns)}")
        blocks = []
        for encoding in self.columns:
            values = [str(row[encoding["name"]]).strip() for row in rows]
            known = set(encoding["categories"]) if "categories" in encoding else None  # None: a numeric column
            unseen = [] if known is None else sorted(set(values) - MISSING_MARKERS - known)
            if unseen:  # encoded as no category at all: say so rather than answer quietly
                import logging

                logging.getLogger("divekit").warning(
                    f"column {encoding['name']!r} holds {', '.join(map(repr, unseen[:5]))}, which the training rows "
                    f"did not have; it is taken as none of the known categories ({', '.join(encoding['categories'])})")
            blocks.append(apply_column(encoding, values))
        return torch.cat(blocks, dim=1).float()  # (N, D)

    def encode_targets(self, values: Sequence[str], where: str | Path = "the table") -> torch.Tensor:
        """Class indices (N,) for classification, standardised float32 values (N, 1) for regression."""
        from divekit.data.user import UserDataError, _is_number

        if self.classes is not None:
            index = {name: k for k, name in enumerate(self.classes)}
            unknown = sorted({v for v in values if v not in index})
            if unknown:
                raise UserDataError(f"{where} has target value(s) {', '.join(map(repr, unknown[:5]))} that are not "
                                    f"among the classes the model knows ({', '.join(self.classes)})")
            return torch.tensor([index[v] for v in values], dtype=torch.int64)
        for row, value in enumerate(values, 1):  # as training reads numbers: no nan, inf or 1_000
            if not _is_number(str(value).strip()):
                raise UserDataError(f"row {row} of {where} has {value!r} as its {self.target!r}, which is not a "
                                    "number; every target must be a finite number to evaluate a regression model")
        numbers = torch.tensor([float(v) for v in values], dtype=torch.float32)
        return self.standardize(numbers.unsqueeze(1))

    def standardize(self, y: torch.Tensor) -> torch.Tensor:
        """Targets in the table's units -> what the model learns: (y - mean) / std."""
        return (y - self.target_mean) / self.target_std

    def destandardize(self, y: torch.Tensor) -> torch.Tensor:
        """The model's outputs -> the table's units."""
        return y * self.target_std + self.target_mean


@dataclass(frozen=True)
class TextInputs:
    """Text as the tokens of ``tokens`` (index order; index 0 is ``<unk>``), split into characters
    or words (``token``), after ``cleaning``: "letters" is the book's cleaning of The Time Machine
    (every run of non-letters a space, lower case, D2L §8.2.1), "none" leaves the text as it is."""

    kind: ClassVar[str] = "text"
    tokens: tuple[str, ...]
    token: str = "char"
    cleaning: str = "letters"

    def clean(self, text: str) -> str:
        return re.sub("[^A-Za-z]+", " ", text).strip().lower() if self.cleaning == "letters" else text

    def vocab(self):
        from divekit.data.text import Vocab

        return Vocab.from_tokens(self.tokens)

    def split(self, text: str) -> list[str]:
        """The tokens of ``text`` after cleaning (characters, or words split on spaces)."""
        from divekit.data.text import tokenize

        return tokenize([self.clean(text)], self.token)[0]


@dataclass(frozen=True)
class TranslationInputs:
    """Sentence pairs (D2L §9.5): the source and target vocabularies (index order) and the number
    of tokens every sentence is cut or padded to."""

    kind: ClassVar[str] = "translation"
    source_tokens: tuple[str, ...]
    target_tokens: tuple[str, ...]
    num_steps: int

    def vocabs(self):
        from divekit.data.text import Vocab

        return Vocab.from_tokens(self.source_tokens), Vocab.from_tokens(self.target_tokens)


KINDS: dict[str, type] = {cls.kind: cls for cls in (ImageInputs, DetectionInputs, TableInputs, TextInputs,
                                                    TranslationInputs)}
Inputs = ImageInputs | DetectionInputs | TableInputs | TextInputs | TranslationInputs


def inputs_to_dict(inputs: Inputs) -> dict:
    return {"kind": inputs.kind, **dataclasses.asdict(inputs)}


def inputs_from_dict(values: dict, where: str = "model.json") -> Inputs:
    """The inputs saved by :func:`inputs_to_dict` (JSON lists become tuples again)."""
    values = dict(values)
    kind = values.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown kind of inputs {kind!r}; this divekit knows {', '.join(KINDS)}")
    cls = KINDS[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    if set(values) - names or any(f.name not in values for f in dataclasses.fields(cls)
                                  if f.default is dataclasses.MISSING):
        raise ValueError(f"{where}: the {kind} inputs need the fields {', '.join(sorted(names))}, got "
                         f"{', '.join(sorted(values))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
