"""Transforms of whole batches on the device (D2L §13.1), applied to an image and its targets together.

A transform takes a :class:`~divekit.data.batch.Batch` and a ``torch.Generator`` and returns a new
batch. It acts on the batch's ``image_fields`` (B, C, H, W) float images, ``mask_fields`` (B, H, W)
per-pixel classes and ``box_fields`` (B, M, 4) relative corner boxes alike, so a flipped image keeps
its mask and boxes in place. Random choices are drawn per example, all at once, from the generator
(no Python loop over images, the same result for the same seed), then applied with ``torch.where``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from divekit.data.batch import Batch


class Transform:
    """Base class: ``transform(batch, generator) -> batch``. A deterministic transform (one that
    evaluation uses) also has ``spec()``, a JSON description that :func:`transform_from_spec` turns
    back into it, so that a trained model's inputs are prepared as in training."""

    def __call__(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        raise NotImplementedError(f"{type(self).__name__} must define __call__(batch, generator)")

    def spec(self) -> list[dict]:
        raise ValueError(f"{type(self).__name__} is random, for training only; it has no description to save")


class Compose(Transform):
    """The transforms one after the other."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, batch, generator=None):
        for transform in self.transforms:
            batch = transform(batch, generator)
        return batch

    def spec(self):
        return [part for transform in self.transforms for part in transform.spec()]

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def _images(batch: Batch, name: str) -> torch.Tensor:
    X = getattr(batch, name)
    if X.dim() != 4 or not X.is_floating_point():
        raise ValueError(f"image transforms take float images (B, C, H, W); field {name!r} of this "
                         f"{type(batch).__name__} is {X.dtype} of shape {tuple(X.shape)}")
    return X


class Resize(Transform):
    """Images to ``size`` (H, W) by bilinear interpolation, as the book's ``Resize`` (D2L §7.1.3);
    masks by nearest neighbour (classes are not averaged); relative boxes stay as they are."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, batch, generator=None):
        changes = {}
        for name in batch.image_fields:
            X = _images(batch, name)
            if tuple(X.shape[-2:]) != self.size:
                changes[name] = F.interpolate(X, size=self.size, mode="bilinear", align_corners=False, antialias=False)
        for name in batch.mask_fields:
            masks = getattr(batch, name)
            if tuple(masks.shape[-2:]) != self.size:
                changes[name] = F.interpolate(masks[:, None].float(), size=self.size, mode="nearest")[:, 0].to(masks.dtype)
        return batch.replace(**changes) if changes else batch

    def spec(self):
        return [{"name": "Resize", "size": list(self.size)}]

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class RandomHorizontalFlip(Transform):
    """Mirror each example left to right with probability ``p`` (D2L §13.1.1.1): its images, its
    masks, and its boxes (x1, x2 -> 1 - x2, 1 - x1; padding rows move too and stay padding)."""

    def __init__(self, p: float = 0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"flip probability p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, batch, generator=None):
        flip = torch.rand(len(batch), generator=generator) < self.p  # (B,) one coin per example
        flip = flip.to(next(iter(batch.fields().values())).device)
        changes = {}
        for name in batch.image_fields:
            X = _images(batch, name)
            changes[name] = torch.where(flip[:, None, None, None], X.flip(-1), X)
        for name in batch.mask_fields:
            masks = getattr(batch, name)
            changes[name] = torch.where(flip[:, None, None], masks.flip(-1), masks)
        for name in batch.box_fields:
            boxes = getattr(batch, name)  # (B, M, 4)
            mirrored = torch.stack([1 - boxes[..., 2], boxes[..., 1], 1 - boxes[..., 0], boxes[..., 3]], dim=-1)
            changes[name] = torch.where(flip[:, None, None], mirrored, boxes)
        return batch.replace(**changes)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def transform_from_spec(spec) -> Transform:
    """The transform that ``Transform.spec()`` described (a list of steps)."""
    known = {"Resize": Resize}
    steps = []
    for step in spec:
        step = dict(step)
        name = step.pop("name", None)
        if name not in known:
            raise ValueError(f"unknown transform {name!r} in a saved description; this divekit knows {', '.join(known)}")
        steps.append(known[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in step.items()}))
    return steps[0] if len(steps) == 1 else Compose(steps)
