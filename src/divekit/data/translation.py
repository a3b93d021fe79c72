"""English-French sentence pairs for machine translation (D2L §9.5).

``fra.txt`` (Tatoeba, via manythings.org) holds one ``english<TAB>french[<TAB>attribution]`` pair a
line. The book lower-cases it, turns (narrow) non-breaking spaces into spaces, puts a space before
``, . ! ?``, splits on spaces, and cuts or pads every sentence to ``num_steps`` tokens after
appending ``<eos>``. Letters: N sentence pairs, T = ``num_steps``.

The book's data is 601 pairs, not 600: ``d2l.load_data_nmt(num_examples=600)`` reads lines 0 to 600
(``tokenize_nmt`` stops only ``if num_examples and i > num_examples``), so :func:`load_translation`
takes 601 by default. ``tokenize_nmt`` also keeps only lines of exactly two tab-separated parts,
which every line of the book's ``fra.txt`` is; we keep the first two parts of any line that has a
tab, so a newer Tatoeba file with an attribution column still reads.

Beyond the book, ``held_out`` keeps a share of the distinct English sentences (with every French
translation of each) out of training, for BLEU on sentences the model has never seen; the
vocabularies are then built from the training pairs alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from divekit.data import hub
from divekit.data.batch import SequencePair
from divekit.data.text import Vocab

__all__ = ["BOOK_NUM_EXAMPLES", "RESERVED", "TranslationData", "build_array", "load_translation", "preprocess",
           "read_fra_eng", "tokenize_pairs", "truncate_pad"]

RESERVED = ("<pad>", "<bos>", "<eos>")
BOOK_NUM_EXAMPLES = 601  # what d2l.load_data_nmt(num_examples=600) reads (see the module docstring)
HELD_OUT_SEED = 20_240_611  # the held-out sentences depend on the data options only, never on a run's seed


def read_fra_eng(data_dir=None) -> str:
    """The raw text of ``fra.txt``."""
    with open(hub.fetch("fra-eng", "fra.txt", data_dir=data_dir), encoding="utf-8") as f:
        return f.read()


def preprocess(text: str) -> str:
    """Lower-case, non-breaking spaces (U+00A0, U+202F) to spaces, a space before , . ! ?
    where none is (D2L §9.5.1)."""
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    # the book's per-character loop, as one regular expression: a mark after any character but a space
    return re.sub(r"(?<=[^ ])([,.!?])", r" \1", text)


def tokenize_pairs(text: str, num_examples: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """Word tokens of the source (English) and target (French) side of the first ``num_examples``
    pairs (D2L §9.5.2; None: all). Lines without a tab are skipped."""
    source, target = [], []
    for line in text.split("\n"):
        if num_examples is not None and len(source) >= num_examples:
            break
        parts = line.split("\t")
        if len(parts) >= 2:
            source.append(parts[0].split(" "))
            target.append(parts[1].split(" "))
    return source, target


def truncate_pad(tokens: list[int], num_steps: int, pad: int) -> list[int]:
    """Cut ``tokens`` to ``num_steps`` or pad it with ``pad`` up to ``num_steps`` (D2L §9.5.4)."""
    return tokens[:num_steps] + [pad] * max(0, num_steps - len(tokens))


def build_array(lines: list[list[str]], vocab: Vocab, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token indices (N, T), each sentence ending in ``<eos>`` then cut or padded, and the valid
    lengths (N,) = number of non-padding tokens (D2L §9.5.4)."""
    rows = [truncate_pad(vocab[line] + [vocab["<eos>"]], num_steps, vocab["<pad>"]) for line in lines]
    array = torch.tensor(rows, dtype=torch.long)
    return array, (array != vocab["<pad>"]).sum(dim=1)


@dataclass(frozen=True)
class TranslationData:
    """The training pairs (``pairs.X``, ``pairs.Y``: (N, T), with valid lengths) and their vocabularies;
    with a held-out share, its pairs (``held_out``, for a validation loss) and its distinct English
    sentences, each with all its French references (``held_out_references``, for BLEU)."""

    pairs: SequencePair
    src_vocab: Vocab
    tgt_vocab: Vocab
    num_steps: int
    held_out: SequencePair | None = None
    held_out_references: tuple[tuple[str, tuple[str, ...]], ...] = ()


def load_translation(num_examples: int | None = BOOK_NUM_EXAMPLES, num_steps: int = 10, min_freq: int = 2,
                     held_out: float = 0.0, data_dir=None) -> TranslationData:
    """The book's English-French data (D2L §9.5.5): the first ``num_examples`` pairs (the book's 601
    by default; None: all), vocabularies of tokens seen at least ``min_freq`` times with
    ``<pad> <bos> <eos>`` reserved. ``held_out`` in [0, 1): the share of distinct English sentences
    kept out of training (chosen by a fixed seed, so the same for every run on the same data)."""
    if not 0 <= held_out < 1:
        raise ValueError(f"held_out must be a share in [0, 1), got {held_out}")
    source, target = tokenize_pairs(preprocess(read_fra_eng(data_dir)), num_examples)
    sentences = list(dict.fromkeys(" ".join(s) for s in source))  # distinct English sentences, in order
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(HELD_OUT_SEED)).tolist()
    kept_out = {sentences[i] for i in order[:round(held_out * len(sentences))]}
    is_out = [" ".join(s) in kept_out for s in source]
    train_src = [s for s, out in zip(source, is_out) if not out]
    train_tgt = [t for t, out in zip(target, is_out) if not out]
    if not train_src:
        raise ValueError(f"no training pairs left: {num_examples} pairs with held_out {held_out}")
    src_vocab = Vocab(train_src, min_freq=min_freq, reserved_tokens=RESERVED)
    tgt_vocab = Vocab(train_tgt, min_freq=min_freq, reserved_tokens=RESERVED)

    def tensors(src: list[list[str]], tgt: list[list[str]]) -> SequencePair:
        X, X_valid_len = build_array(src, src_vocab, num_steps)
        Y, Y_valid_len = build_array(tgt, tgt_vocab, num_steps)
        return SequencePair(X, X_valid_len, Y, Y_valid_len)

    if not kept_out:
        return TranslationData(tensors(train_src, train_tgt), src_vocab, tgt_vocab, num_steps)
    references: dict[str, list[str]] = {}
    for s, t, out in zip(source, target, is_out):
        if out:
            references.setdefault(" ".join(s), []).append(" ".join(t))
    out_src = [s for s, out in zip(source, is_out) if out]
    out_tgt = [t for t, out in zip(target, is_out) if out]
    return TranslationData(tensors(train_src, train_tgt), src_vocab, tgt_vocab, num_steps,
                           held_out=tensors(out_src, out_tgt),
                           held_out_references=tuple((s, tuple(refs)) for s, refs in references.items()))
