"""A batch loader for data sets that fit in memory (D2L §3.2.2, §3.5), without per-example Python.

The whole data set lives on the training device as one :class:`~divekit.data.batch.Batch`; each
epoch draws one permutation from a generator seeded with ``(seed, epoch)`` and slices minibatches
out of it. So a run is reproducible and a resumed run sees the same batches as an uninterrupted
one, with no worker processes at all. Images stay uint8 until a minibatch is taken, then become
float in [0, 1]; a transform (resizing, augmentation) then runs on the whole minibatch on the device.

Under data-parallel training (:mod:`divekit.train.distributed`) every process holds the same data
and draws the same permutation; :meth:`TensorLoader.shard` makes it yield only its share of each
minibatch (:func:`share_bounds`), so the processes' shares together are the one-process minibatch.
"""

from __future__ import annotations

import hashlib
import math

import torch

from divekit.data.batch import Batch
from divekit.data.transforms import Transform

TRANSFORM_STREAM = 500_000_003  # seed offset of the transform's random choices, apart from the shuffling's
SHARD_STREAM = 1_000_033  # seed offset between the shards' transform streams: each process augments its own way


def share_bounds(size: int, shard: int, num_shards: int) -> tuple[int, int]:
    """[lo, hi) of shard ``shard``'s part of ``size`` items split into ``num_shards`` parts, as
    ``torch.tensor_split`` splits them: the first ``size % num_shards`` parts have one item more."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    base, extra = divmod(size, num_shards)
    lo = shard * base + min(shard, extra)
    return lo, lo + base + (shard < extra)


class TensorLoader:
    """Iterate over minibatches of a :class:`Batch` (e.g. a ``Split(X, y)``) held on ``device``.

    Args:
        data: all the examples.
        batch_size: examples per minibatch; the last may be smaller unless ``drop_last``.
        shuffle: draw a new permutation each epoch (seeded by ``seed`` and the epoch number), for
            training: then a last minibatch of a single example after full ones is left out (batch
            normalization cannot train on one example, D2L §7.5; it lands elsewhere in other epochs).
            Under N processes the rule stays the one process's, so that both take the same steps: a
            last minibatch of N to 2N - 1 examples leaves some process one (see docs/DISTRIBUTED.md).
        seed: base seed for shuffling and for the transform's random choices.
        device: where minibatches are made; the data is copied there once.
        transform: applied to each minibatch after uint8 images are scaled to [0, 1].
        num_batches: at most this many minibatches per epoch, each epoch from its own permutation
            (the book's BERT pretraining counts steps, not epochs: D2L §14.10).
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
        num_batches: int | None = None,
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
        if num_batches is not None and num_batches < 1:
            raise ValueError(f"num_batches must be at least 1, got {num_batches}")
        self.num_batches = num_batches
        self.epoch = 0
        self.shard_index, self.num_shards = 0, 1
        self.share_weight = 1.0  # num_shards x (this shard's share / the minibatch) of the minibatch last yielded

    def shard(self, index: int, num_shards: int) -> None:
        """Yield only part ``index`` of ``num_shards`` of every minibatch (the minibatches, their
        number and their order stay those of the whole loader, so the shards together are its
        minibatches). A last minibatch with fewer examples than shards is left out. Where a
        minibatch does not divide evenly, ``share_weight`` (after each minibatch) is what this
        shard's mean loss is multiplied by so that the processes' averaged gradient is that of the
        mean over the whole minibatch."""
        share_bounds(self.batch_size, index, num_shards)  # checks index
        if self.batch_size < num_shards:
            raise ValueError(f"a minibatch of {self.batch_size} examples cannot be shared by {num_shards} processes; "
                             "use a batch size of at least the number of processes")
        self.shard_index, self.num_shards = index, num_shards

    def _place(self, data: Batch) -> Batch:
        """Where the examples are kept: on the device."""
        return data.to(self.device)

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of ``epoch`` (the trainer calls this before each epoch)."""
        self.epoch = epoch

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def fingerprint(self) -> str:
        """A SHA-1 of the examples (every field's name, dtype, shape and bytes): the same data, the same string."""
        return tensors_fingerprint(self.data.fields())

    def __len__(self) -> int:
        n, last = self.num_examples, self.num_examples % self.batch_size
        too_small = 0 < last < self.num_shards or (self.shuffle and last == 1 and n > self.batch_size)
        full = n // self.batch_size if self.drop_last or too_small else math.ceil(n / self.batch_size)
        return full if self.num_batches is None else min(full, self.num_batches)

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
        stream = TRANSFORM_STREAM + self.shard_index * SHARD_STREAM
        augment = self._generator(stream) if self.transform is not None else None
        for i in range(len(self)):
            start = i * self.batch_size
            size = min(self.batch_size, self.num_examples - start)
            lo, hi = share_bounds(size, self.shard_index, self.num_shards)
            self.share_weight = (hi - lo) * self.num_shards / size  # 1 but for an uneven last minibatch
            sl = slice(start + lo, start + hi)  # this shard's part of minibatch i
            batch = self._take(sl if order is None else order[sl])
            yield batch if self.transform is None else self.transform(batch, augment)


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """A SHA-1 over named tensors: their names, dtypes, shapes and values."""
    digest = hashlib.sha1()
    for name, tensor in tensors.items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
