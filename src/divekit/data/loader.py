"""A batch loader for data sets that fit in memory (D2L §3.2.2, §3.5), without per-example Python.

The whole data set lives on the training device as one :class:`~divekit.data.batch.Batch`; each
epoch draws one permutation from a generator seeded with ``(seed, epoch)`` and slices minibatches
out of it. So a run is reproducible and a resumed run sees the same batches as an uninterrupted
one, with no worker processes at all. Images stay uint8 until a minibatch is taken, then become
float in [0, 1]; a transform (resizing, augmentation) then runs on the whole minibatch on the device.
"""

from __future__ import annotations

import math

import torch

from divekit.data.batch import Batch
from divekit.data.transforms import Transform

TRANSFORM_STREAM = 500_000_003  # seed offset of the transform's random choices, apart from the shuffling's


class TensorLoader:
    """Iterate over minibatches of a :class:`Batch` (e.g. a ``Split(X, y)``) held on ``device``.

    Args:
        data: all the examples.
        batch_size: examples per minibatch; the last may be smaller unless ``drop_last``.
        shuffle: draw a new permutation each epoch (seeded by ``seed`` and the epoch number).
        seed: base seed for shuffling and for the transform's random choices.
        device: where minibatches are made; the data is copied there once.
        transform: applied to each minibatch after uint8 images are scaled to [0, 1].
    """

    def __init__(
        self,
        data: Batch,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        transform: Transform | None = None,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if len(data) == 0:
            raise ValueError("cannot make batches from an empty data set")
        self.device = torch.device(device)
        self.data = self._place(data)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.transform = transform
        self.drop_last = drop_last
        self.epoch = 0

    def _place(self, data: Batch) -> Batch:
        """Where the examples are kept: on the device."""
        return data.to(self.device)

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of ``epoch`` (the trainer calls this before each epoch)."""
        self.epoch = epoch

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        n = self.num_examples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + offset)

    def _take(self, index: torch.Tensor | slice) -> Batch:
        """The examples ``index`` as a minibatch on the device, uint8 images scaled to [0, 1]."""
        batch = self.data.select(index)
        scaled = {name: getattr(batch, name).float().div_(255) for name in batch.image_fields
                  if getattr(batch, name).dtype == torch.uint8}  # (B, C, H, W) in [0, 1]
        return batch.replace(**scaled) if scaled else batch

    def __iter__(self):
        order = torch.randperm(self.num_examples, generator=self._generator()).to(self.device) if self.shuffle else None
        augment = self._generator(TRANSFORM_STREAM) if self.transform is not None else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            batch = self._take(sl if order is None else order[sl])
            yield batch if self.transform is None else self.transform(batch, augment)
