"""A batch loader for data sets that fit in memory (D2L §3.2.2, §3.5), without per-example Python.

The whole split lives on the training device as tensors; each epoch draws one permutation from a
generator seeded with ``(seed, epoch)`` and slices batches out of it. So a run is reproducible and
a resumed run sees the same batches as an uninterrupted one, with no worker processes at all.
Images stay uint8 until a batch is taken, then become float in [0, 1] (and are resized on the
device when a model needs larger inputs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from divekit.data.base import Split


class TensorLoader:
    """Iterate over ``(X, y)`` minibatches of a :class:`Split` held on ``device``.

    Args:
        split: the examples.
        batch_size: examples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: draw a new permutation each epoch (seeded by ``seed`` and the epoch number).
        seed: base seed for shuffling.
        device: where batches are made; the split is copied there once.
        resize: (H, W) to resize uint8 images to, bilinearly, as the book's ``Resize`` does.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        resize: tuple[int, int] | None = None,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if len(split) == 0:
            raise ValueError("cannot make batches from an empty split")
        self.device = torch.device(device)
        self.X = split.X.to(self.device)
        self.y = split.y.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.resize = resize
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of ``epoch`` (the trainer calls this before each epoch)."""
        self.epoch = epoch

    @property
    def num_examples(self) -> int:
        return len(self.X)

    def __len__(self) -> int:
        n = self.num_examples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_examples, generator=g).to(self.device)

    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        if X.dtype != torch.uint8:
            return X
        X = X.float().div_(255)  # (B, C, H, W) in [0, 1]
        if self.resize is not None and tuple(X.shape[-2:]) != tuple(self.resize):
            X = F.interpolate(X, size=self.resize, mode="bilinear", align_corners=False, antialias=False)
        return X

    def __iter__(self):
        order = self._order()
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if order is None:
                X, y = self.X[sl], self.y[sl]
            else:
                idx = order[sl]
                X, y = self.X.index_select(0, idx), self.y.index_select(0, idx)
            yield self._prepare(X), y
