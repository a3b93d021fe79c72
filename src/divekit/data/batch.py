"""Batches: the named tensors of a set of examples, every field with the examples along dim 0.

One class per shape of data, each with the book's names, so that a task reads ``batch.X`` and
``batch.y`` (or ``batch.boxes``, ``batch.masks``, ...) instead of unpacking a tuple whose order it
must remember. A whole in-memory data set is a batch too; :class:`~divekit.data.loader.TensorLoader`
slices minibatches out of it with :meth:`Batch.select`.

Fields that transforms must treat alike (an image and its mask are flipped together, a box moves
with its image) are named in the class variables ``image_fields`` (B, C, H, W), ``mask_fields``
(B, H, W) per-pixel class indices, and ``box_fields`` (B, M, 4) corner boxes (x1, y1, x2, y2)
relative to the image size, so in [0, 1].

Letters: B examples, C channels, H x W image size, T time steps (or tokens), M boxes per image (padded), P
prediction positions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch

B = TypeVar("B", bound="Batch")


@dataclass(frozen=True)
class Batch:
    """Base class: subclasses are frozen dataclasses whose fields are tensors of equal length."""

    image_fields: ClassVar[tuple[str, ...]] = ()
    mask_fields: ClassVar[tuple[str, ...]] = ()
    box_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        lengths = {f.name: len(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the fields of a {type(self).__name__} must hold the same number of examples, got "
                             + ", ".join(f"{name} {n}" for name, n in lengths.items()))

    def fields(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __len__(self) -> int:
        return len(next(iter(self.fields().values())))

    def replace(self: B, **changes: torch.Tensor) -> B:
        return dataclasses.replace(self, **changes)

    def to(self: B, device: torch.device | str, non_blocking: bool = False) -> B:
        return self.replace(**{name: t.to(device, non_blocking=non_blocking) for name, t in self.fields().items()})

    def select(self: B, index: torch.Tensor | slice) -> B:
        """The examples ``index`` (a slice, or a 1-D tensor of positions on the batch's device)."""
        if isinstance(index, slice):
            return self.replace(**{name: t[index] for name, t in self.fields().items()})
        return self.replace(**{name: t.index_select(0, index) for name, t in self.fields().items()})


@dataclass(frozen=True)
class Split(Batch):
    """Inputs ``X`` (B, ...) and targets ``y`` (B, ...): classification (y class indices),
    regression (y values) and language modelling (X and the next tokens y, both (B, T))."""

    X: torch.Tensor
    y: torch.Tensor

    image_fields: ClassVar[tuple[str, ...]] = ("X",)


@dataclass(frozen=True)
class SequencePair(Batch):
    """A source and a target sequence per example (D2L §9.5.4): token indices ``X`` and ``Y`` (B, T),
    padded, and their valid lengths ``X_valid_len``, ``Y_valid_len`` (B,)."""

    X: torch.Tensor
    X_valid_len: torch.Tensor
    Y: torch.Tensor
    Y_valid_len: torch.Tensor


@dataclass(frozen=True)
class Detection(Batch):
    """Images with their objects (D2L §13.6): ``X`` (B, C, H, W), ``boxes`` (B, M, 4) relative corner
    boxes and ``labels`` (B, M) class indices, rows with label -1 being padding (images hold
    different numbers of objects; an image without objects is all padding)."""

    X: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor

    image_fields: ClassVar[tuple[str, ...]] = ("X",)
    box_fields: ClassVar[tuple[str, ...]] = ("boxes",)


@dataclass(frozen=True)
class Segmentation(Batch):
    """Images and their per-pixel classes (D2L §13.9): ``X`` (B, C, H, W) and ``masks`` (B, H, W)
    int64 class indices, 255 marking pixels to ignore (Pascal VOC's object borders)."""

    X: torch.Tensor
    masks: torch.Tensor

    image_fields: ClassVar[tuple[str, ...]] = ("X",)
    mask_fields: ClassVar[tuple[str, ...]] = ("masks",)

    IGNORE: ClassVar[int] = 255


@dataclass(frozen=True)
class BertPretraining(Batch):
    """BERT pretraining examples (D2L §14.9): ``tokens`` and ``segments`` (B, T) with ``valid_lens``
    (B,); the masked language model's ``pred_positions``, ``mlm_labels`` and ``mlm_weights`` (B, P)
    (weight 0 on padding positions); the next-sentence labels ``nsp_labels`` (B,)."""

    tokens: torch.Tensor
    segments: torch.Tensor
    valid_lens: torch.Tensor
    pred_positions: torch.Tensor
    mlm_weights: torch.Tensor
    mlm_labels: torch.Tensor
    nsp_labels: torch.Tensor


@dataclass(frozen=True)
class TextClassification(Batch):
    """BERT fine-tuning examples (D2L §15.6): ``tokens`` and ``segments`` (B, T) of a text or a text
    pair with ``valid_lens`` (B,), and labels ``y``: (B,) one class per text or pair, or (B, T) one tag
    per token, -1 where a token has none (``<cls>``, ``<sep>``, padding)."""

    tokens: torch.Tensor
    segments: torch.Tensor
    valid_lens: torch.Tensor
    y: torch.Tensor
