"""Text as data (D2L §8.2-8.3): The Time Machine, tokens, a vocabulary, corpus statistics and
language-model minibatches.

Letters: N corpus length in tokens, B batch size, T number of time steps (``num_steps``), b the
rows of B that one process takes under data-parallel training (B when there is one process).
A language-model minibatch is a :class:`~divekit.data.batch.Split` of (B, T) token indices ``X`` and
``y``, the next token of each position of ``X`` (shifted by one in the corpus).
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterable, Sequence
from typing import Literal

import torch

from divekit.data import hub
from divekit.data.batch import Split

__all__ = [
    "LMLoader",
    "Vocab",
    "count_corpus",
    "load_corpus_time_machine",
    "ngram_freqs",
    "read_time_machine",
    "tokenize",
]

TokenKind = Literal["word", "char"]
UNK = "<unk>"


def read_time_machine(data_dir=None) -> list[str]:
    """The book's lines of The Time Machine: every run of non-letters becomes one space, then
    strip and lower-case (D2L §8.2.1). Found by the data hub (a packaged copy always exists)."""
    path = hub.fetch("timemachine", "timemachine.txt", data_dir=data_dir)
    with open(path, encoding="utf-8") as f:
        return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in f]


def tokenize(lines: Iterable[str], token: TokenKind = "word") -> list[list[str]]:
    """Split each line into word tokens (on spaces) or character tokens (D2L §8.2.2)."""
    if token == "word":
        return [line.split() for line in lines]
    if token == "char":
        return [list(line) for line in lines]
    raise ValueError(f"unknown token type {token!r}; choose 'word' or 'char'")


def _flatten(tokens: Sequence) -> list:
    """A list of tokens, or a list of lines of tokens, as one flat list."""
    if len(tokens) > 0 and isinstance(tokens[0], list):
        return [t for line in tokens for t in line]
    return list(tokens)


def count_corpus(tokens: Sequence) -> collections.Counter:
    """Token frequencies of a flat list of tokens or of a list of tokenized lines."""
    return collections.Counter(_flatten(tokens))


class Vocab:
    """A vocabulary: token <-> index (D2L §8.2.3).

    ``<unk>`` is index 0, the ``reserved_tokens`` come next in the order given, then every token
    seen at least ``min_freq`` times, most frequent first (ties in order of first appearance).
    Unknown tokens map to ``<unk>``.
    """

    def __init__(self, tokens: Sequence = (), min_freq: int = 0, reserved_tokens: Sequence[str] = ()):
        if UNK in reserved_tokens:
            raise ValueError(f"{UNK} is always index 0; leave it out of reserved_tokens")
        if len(set(reserved_tokens)) != len(reserved_tokens):
            raise ValueError(f"reserved_tokens has repeats: {list(reserved_tokens)}")
        counter = count_corpus(tokens)
        # sorted() is stable, so equal counts keep the order in which tokens first appear
        self.token_freqs: list[tuple[str, int]] = sorted(counter.items(), key=lambda kv: kv[1], reverse=True)
        self.idx_to_token: list[str] = [UNK, *reserved_tokens]
        self.idx_to_token += [t for t, freq in self.token_freqs if freq >= min_freq and t not in self.idx_to_token]
        self.token_to_idx: dict[str, int] = {t: i for i, t in enumerate(self.idx_to_token)}

    @classmethod
    def from_tokens(cls, idx_to_token: Sequence[str]) -> Vocab:
        """The vocabulary whose index ``i`` is ``idx_to_token[i]``, as saved with a model (e.g. the book's
        pretrained BERT's ``vocab.json``, D2L §15.7); ``<unk>`` must be index 0."""
        if not idx_to_token or idx_to_token[0] != UNK or len(set(idx_to_token)) != len(idx_to_token):
            raise ValueError(f"a saved vocabulary must start with {UNK} and hold no repeats")
        vocab = cls()
        vocab.idx_to_token = list(idx_to_token)
        vocab.token_to_idx = {t: i for i, t in enumerate(vocab.idx_to_token)}
        return vocab

    def __len__(self) -> int:
        return len(self.idx_to_token)

    @property
    def unk(self) -> int:
        return 0

    def __getitem__(self, tokens):
        """The index of a token, or a list of indices for a list (or tuple) of tokens."""
        if isinstance(tokens, (list, tuple)):
            return [self.__getitem__(t) for t in tokens]
        return self.token_to_idx.get(tokens, self.unk)

    def to_tokens(self, indices):
        """The token of an index, or a list of tokens for a list or 1-D tensor of indices."""
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        if isinstance(indices, (list, tuple)):
            return [self.idx_to_token[int(i)] for i in indices]
        return self.idx_to_token[int(indices)]


def ngram_freqs(tokens: Sequence[str], n: int) -> list[tuple[tuple[str, ...], int]]:
    """Frequencies of the n-grams of a flat token list, most frequent first (D2L §8.3.3)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    grams = zip(*(tokens[i:] for i in range(n)))
    return collections.Counter(grams).most_common()


def load_corpus_time_machine(max_tokens: int | None = None, token: TokenKind = "char",
                             data_dir=None) -> tuple[torch.Tensor, Vocab]:
    """The Time Machine as one 1-D tensor of token indices (N,) and its vocabulary (D2L §8.2.4).

    The book trains on the first ``max_tokens = 10000`` characters; ``None`` keeps the whole book.
    """
    tokens = tokenize(read_time_machine(data_dir), token)
    vocab = Vocab(tokens)
    corpus = [vocab[t] for line in tokens for t in line]
    if max_tokens is not None:
        corpus = corpus[:max_tokens]
    return torch.tensor(corpus, dtype=torch.long), vocab


class CorpusInOrder:
    """A corpus read once from its first token to its last, for evaluating a language model:
    minibatches ``Split(X, y)`` of one row, X (1, t) the tokens [iT, iT + t) and y the next ones,
    t = T but for a shorter last chunk, so every next-token prediction is scored once and the
    state carries over from the start (``sequential``)."""

    sequential = True

    def __init__(self, corpus: torch.Tensor, num_steps: int, device: str | torch.device = "cpu"):
        if corpus.dim() != 1 or len(corpus) < 2:
            raise ValueError(f"evaluating a language model needs a 1-D corpus of at least 2 tokens, "
                             f"got shape {tuple(corpus.shape)}")
        self.corpus, self.num_steps, self.device = corpus.to(device), num_steps, torch.device(device)

    @property
    def num_examples(self) -> int:
        """The next-token predictions scored: every token but the first."""
        return len(self.corpus) - 1

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.num_steps)

    def __iter__(self):
        for start in range(0, self.num_examples, self.num_steps):
            stop = min(start + self.num_steps, self.num_examples)
            yield Split(self.corpus[None, start:stop], self.corpus[None, start + 1:stop + 1])  # (1, t) each


class LMLoader:
    """Language-model minibatches ``Split(X, y)`` of shape (B, T) from one long corpus (D2L §8.3.4).

    * random sampling (``sequential=False``): the corpus after a random offset in [0, T) is cut
      into subsequences of T tokens, which are shuffled; neighbouring minibatches are unrelated,
      so the hidden state must start afresh for each.
    * sequential partitioning (``sequential=True``): after a random offset in [0, T], the corpus
      is laid out as B rows of equal length; minibatch i is columns [iT, (i+1)T) of those rows, so
      row b of minibatch i+1 continues row b of minibatch i and the hidden state may carry over.

    Everything happens on ``device`` by tensor indexing; the offset and order of each epoch come
    from a generator seeded with ``(seed, epoch)``, so a resumed run sees the same batches.
    :meth:`shard` makes it yield one process's rows of every minibatch (data-parallel training).
    """

    def __init__(self, corpus: torch.Tensor, batch_size: int, num_steps: int, *, sequential: bool,
                 seed: int = 0, device: str | torch.device = "cpu"):
        if corpus.dim() != 1:
            raise ValueError(f"corpus must be a 1-D tensor of token indices, got shape {tuple(corpus.shape)}")
        if batch_size < 1 or num_steps < 1:
            raise ValueError(f"batch_size and num_steps must be at least 1, got {batch_size} and {num_steps}")
        # the fewest tokens that give a minibatch after the largest offset (T, or T - 1), each X token with its Y
        shortest = batch_size * num_steps + num_steps + (1 if sequential else 0)
        if len(corpus) < shortest:
            raise ValueError(f"a corpus of {len(corpus)} tokens is too short for one minibatch of {batch_size} x "
                             f"{num_steps} after a random offset (it needs {shortest}); use a smaller batch size or "
                             f"number of steps (--batch-size, --num-steps), or more text")
        self.corpus = corpus.to(device)
        self.batch_size, self.num_steps, self.sequential = batch_size, num_steps, sequential
        self.seed = seed
        self.epoch = 0
        self.rows = (0, batch_size)  # [lo, hi): the rows of every minibatch this loader yields

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, index: int, num_shards: int) -> None:
        """Yield only part ``index`` of ``num_shards`` of the B rows of every minibatch. With
        sequential partitioning a shard's rows still continue each other from one minibatch to
        the next, so each process carries its own rows' hidden state."""
        from divekit.data.loader import share_bounds

        self.rows = share_bounds(self.batch_size, index, num_shards)

    def fingerprint(self) -> str:
        """A SHA-1 of the corpus and the batching: the same data, the same string."""
        from divekit.data.loader import tensors_fingerprint

        layout = torch.tensor([self.batch_size, self.num_steps, int(self.sequential)])
        return tensors_fingerprint({"corpus": self.corpus, "layout": layout})

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _plan(self, g: torch.Generator) -> tuple[int, int]:
        """(offset, number of minibatches) of this epoch."""
        B, T = self.batch_size, self.num_steps
        offset = int(torch.randint(0, T + 1 if self.sequential else T, (1,), generator=g))
        usable = len(self.corpus) - offset - 1  # every X token needs a next token Y
        num_batches = usable // B // T if self.sequential else usable // T // B
        return offset, num_batches

    def __len__(self) -> int:
        return self._plan(self._generator())[1]

    def __iter__(self):
        g = self._generator()
        offset, num_batches = self._plan(g)
        B, T = self.batch_size, self.num_steps
        steps = torch.arange(T, device=self.corpus.device)
        lo, hi = self.rows
        if self.sequential:
            row_len = (len(self.corpus) - offset - 1) // B
            starts = offset + torch.arange(lo, hi, device=self.corpus.device) * row_len  # (b,) this shard's row starts
            for i in range(num_batches):
                idx = starts[:, None] + i * T + steps  # (b, T) corpus positions
                yield Split(self.corpus[idx], self.corpus[idx + 1])
        else:
            num_subseqs = (len(self.corpus) - offset - 1) // T
            starts = offset + torch.randperm(num_subseqs, generator=g)[: num_batches * B] * T
            starts = starts.to(self.corpus.device).reshape(num_batches, B, 1)[:, lo:hi]  # (num_batches, b, 1)
            for i in range(num_batches):
                idx = starts[i] + steps  # (b, T)
                yield Split(self.corpus[idx], self.corpus[idx + 1])
