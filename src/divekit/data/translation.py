"""English-French sentence pairs for machine translation (D2L §9.5).

``fra.txt`` (Tatoeba, via manythings.org) holds one ``english<TAB>french[<TAB>attribution]`` pair a
line. The book lower-cases it, turns (narrow) non-breaking spaces into spaces, puts a space before
``, . ! ?``, splits on spaces, and cuts or pads every sentence to ``num_steps`` tokens after
appending ``<eos>``. Letters: N sentence pairs, T = ``num_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from divekit.data import hub
from divekit.data.batch import SequencePair
from divekit.data.text import Vocab

__all__ = ["RESERVED", "TranslationData", "build_array", "load_translation", "preprocess", "read_fra_eng",
           "tokenize_pairs", "truncate_pad"]

RESERVED = ("<pad>", "<bos>", "<eos>")


def read_fra_eng(data_dir=None) -> str:
    """The raw text of ``fra.txt``."""
    with open(hub.fetch("fra-eng", "fra.txt", data_dir=data_dir), encoding="utf-8") as f:
        return f.read()


def preprocess(text: str) -> str:
    """Lower-case, non-breaking spaces (U+00A0, U+202F) to spaces, a space before , . ! ?
    where none is (D2L §9.5.1)."""
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = [" " + ch if i > 0 and ch in ",.!?" and text[i - 1] != " " else ch for i, ch in enumerate(text)]
    return "".join(out)


def tokenize_pairs(text: str, num_examples: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """Word tokens of the source (English) and target (French) side of the first
    ``num_examples`` lines (D2L §9.5.2). Lines without a tab are skipped."""
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
    """The sentence pairs (``pairs.X``, ``pairs.Y``: (N, T), with valid lengths) and their vocabularies."""

    pairs: SequencePair
    src_vocab: Vocab
    tgt_vocab: Vocab
    num_steps: int


def load_translation(num_examples: int | None = 600, num_steps: int = 10, min_freq: int = 2,
                     data_dir=None) -> TranslationData:
    """The book's English-French data (D2L §9.5.5): the first ``num_examples`` pairs, vocabularies
    of tokens seen at least ``min_freq`` times with ``<pad> <bos> <eos>`` reserved."""
    source, target = tokenize_pairs(preprocess(read_fra_eng(data_dir)), num_examples)
    src_vocab = Vocab(source, min_freq=min_freq, reserved_tokens=RESERVED)
    tgt_vocab = Vocab(target, min_freq=min_freq, reserved_tokens=RESERVED)
    X, X_valid_len = build_array(source, src_vocab, num_steps)
    Y, Y_valid_len = build_array(target, tgt_vocab, num_steps)
    return TranslationData(SequencePair(X, X_valid_len, Y, Y_valid_len), src_vocab, tgt_vocab, num_steps)
