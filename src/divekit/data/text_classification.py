"""Labeled texts and text pairs for fine-tuning BERT (D2L §15.1, §15.4, §15.6-15.7): the book's IMDb
reviews and SNLI sentence pairs in their published formats, two tasks made from data that is here
(an English sentence as written or with two words swapped; an English sentence with its French
translation or with another sentence's), and their encoding as BERT inputs with a given vocabulary.

Letters: N examples, T = ``max_len`` tokens per example (with ``<cls>`` and ``<sep>``).

Formats: ``aclImdb/{train,test}/{pos,neg}/*.txt``, one review a file (``read_imdb``, §15.1.1);
``snli_1.0/snli_1.0_{train,dev,test}.txt``, tab-separated with a header line, the gold label in
column 0 and the binary parses of the premise and the hypothesis in columns 1 and 2, whose
parentheses are dropped; rows whose label is ``-`` (no consensus) are skipped (``read_snli``, §15.4.1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from divekit.data import hub
from divekit.data.batch import TextClassification
from divekit.data.bert_data import pack_pairs
from divekit.data.text import Vocab
from divekit.data.translation import preprocess, read_fra_eng, tokenize_pairs

__all__ = ["IMDB_CLASSES", "MATCH_CLASSES", "ORDER_CLASSES", "SNLI_CLASSES", "LabeledTexts", "encode_texts",
           "fra_eng_matching", "read_imdb", "read_imdb_folder", "read_snli", "read_snli_file", "truncated_lengths",
           "wiki_tokenize", "word_order"]

SNLI_CLASSES = ("entailment", "contradiction", "neutral")  # the book's label_set order
IMDB_CLASSES = ("neg", "pos")  # label 1 = positive, as the book's read_imdb
MATCH_CLASSES = ("mismatched", "translation")
ORDER_CLASSES = ("swapped", "original")
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class LabeledTexts:
    """Texts (``texts_b`` None) or text pairs as word tokens, with class indices into ``classes``."""

    texts_a: list[list[str]]
    texts_b: list[list[str]] | None
    labels: list[int]
    classes: tuple[str, ...]

    def __post_init__(self):
        n = len(self.labels)
        if len(self.texts_a) != n or (self.texts_b is not None and len(self.texts_b) != n):
            raise ValueError(f"{len(self.texts_a)} texts, {len(self.texts_b or [])} second texts and "
                             f"{len(self.labels)} labels: they must be as many")

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> LabeledTexts:
        """The first ``n`` examples (None: all)."""
        return LabeledTexts(self.texts_a[:n], None if self.texts_b is None else self.texts_b[:n], self.labels[:n],
                            self.classes)


def _snli_text(s: str) -> str:
    """A binary parse without its parentheses and double spaces (the book's ``extract_text``)."""
    return re.sub(r"\s{2,}", " ", s.replace("(", "").replace(")", "")).strip()


def read_snli_file(path: str | os.PathLike) -> LabeledTexts:
    """One SNLI file (``snli_1.0_*.txt``) as word tokens of premises and hypotheses, as written, and their
    labels (D2L §15.4.1). The book lower-cases when it tokenizes for its BERT (§15.7.2), as
    :func:`encode_texts` does for a word-level vocabulary; a cased WordPiece vocabulary sees the case."""
    with open(path, encoding="utf-8") as f:
        header, *lines = f.read().split("\n")
    if not header.startswith("gold_label\t"):
        raise ValueError(f"{path} is not an SNLI file: its first line should start with gold_label")
    premises, hypotheses, labels = [], [], []
    for line in lines:
        row = line.split("\t")
        if len(row) < 3 or row[0] not in SNLI_CLASSES:
            continue  # the last empty line, and "-": the annotators did not agree
        premises.append(_snli_text(row[1]).split())
        hypotheses.append(_snli_text(row[2]).split())
        labels.append(SNLI_CLASSES.index(row[0]))
    return LabeledTexts(premises, hypotheses, labels, SNLI_CLASSES)


def read_snli(split: str = "train", data_dir=None) -> LabeledTexts:
    """SNLI's ``train``, ``dev`` or ``test`` pairs, from the data hub (D2L §15.4)."""
    if split not in SPLITS:
        raise ValueError(f"SNLI's splits are {', '.join(SPLITS)}, not {split!r}")
    return read_snli_file(hub.fetch("snli", f"snli_1.0_{split}.txt", data_dir=data_dir))


def read_imdb_folder(folder: str | os.PathLike, split: str = "train") -> LabeledTexts:
    """IMDb reviews under ``folder/split/{pos,neg}/`` as word tokens (split on whitespace, as the book's
    ``d2l.tokenize``) with labels 1 (pos) and 0 (neg) (D2L §15.1.1). Files are read in name order,
    positive ones first as in the book (whose order is the file system's)."""
    texts, labels = [], []
    for label in ("pos", "neg"):
        directory = Path(folder) / split / label
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory} is missing: an IMDb folder holds {split}/pos and {split}/neg")
        for path in sorted(directory.glob("*.txt")):
            texts.append(path.read_bytes().decode("utf-8").replace("\n", "").split())
            labels.append(IMDB_CLASSES.index(label))
    return LabeledTexts(texts, None, labels, IMDB_CLASSES)


def read_imdb(split: str = "train", data_dir=None) -> LabeledTexts:
    """IMDb's ``train`` or ``test`` reviews (25,000 each), unpacked from the data hub's archive (D2L §15.1)."""
    if split not in ("train", "test"):
        raise ValueError(f"IMDb's splits are train and test, not {split!r}")
    return read_imdb_folder(hub.fetch("aclImdb", "README", data_dir=data_dir).parent, split)


def wiki_tokenize(text: str) -> list[str]:
    """A sentence as WikiText-2 writes its words (lower case, ``don 't``, ``it 's``, punctuation apart),
    so that a BERT pretrained on WikiText-2 (D2L §14.9) knows them."""
    text = re.sub(r"(\w)'(\w)", r"\1 '\2", preprocess(text))  # "don't" -> "don 't", "i'm" -> "i 'm"
    return text.split()


def fra_eng_matching(num_train: int | None = 4000, num_test: int | None = 2000, seed: int = 0,
                     data_dir=None) -> tuple[LabeledTexts, LabeledTexts]:
    """A text-pair task from fra-eng (D2L §9.5's Tatoeba pairs): an English sentence and a French one,
    label 1 if the French is a translation of it, 0 if it is the translation of another English
    sentence of the same number of words (so length gives nothing away). Half the examples are each.

    Distinct English sentences are shuffled (by ``seed``) and split: the first ``num_test`` are the
    test set, the next ``num_train`` the training set (None: all the rest), so no test sentence is
    seen in training; each keeps its first French translation, and its mismatch comes from its own
    split. Both sides are tokenized by :func:`wiki_tokenize`."""
    english, french = tokenize_pairs(preprocess(read_fra_eng(data_dir)))
    first_translation: dict[str, str] = {}
    for e, f in zip(english, french):
        first_translation.setdefault(" ".join(e), " ".join(f))
    sentences = list(first_translation)
    train_ids, test_ids = _split_ids(len(sentences), num_train, num_test, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    return (_matching([sentences[i] for i in train_ids], first_translation, generator),
            _matching([sentences[i] for i in test_ids], first_translation, generator))


def _split_ids(n: int, num_train: int | None, num_test: int | None, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) positions of n items shuffled by ``seed``: the first ``num_test`` (None: a tenth)
    are the test set, the next ``num_train`` (None: all the rest) the training set."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    test_ids = order[:num_test] if num_test is not None else order[:n // 10]
    return order[len(test_ids):][:num_train], test_ids


def _matching(sentences: list[str], translation: dict[str, str], generator: torch.Generator) -> LabeledTexts:
    """Each sentence with its translation or, with probability 1/2, with the translation of another
    sentence of as many words (within ``sentences``; where it has none, its own, label 1)."""
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(sentences):
        by_length.setdefault(len(s.split()), []).append(i)
    mismatch = torch.rand(len(sentences), generator=generator) < 0.5
    picks = torch.rand(len(sentences), generator=generator).tolist()
    texts_a, texts_b, labels = [], [], []
    for i, s in enumerate(sentences):
        true = translation[s]
        french = true
        if mismatch[i]:
            peers = by_length[len(s.split())]
            french = translation[sentences[peers[int(picks[i] * len(peers))]]]
        texts_a.append(wiki_tokenize(s))
        texts_b.append(wiki_tokenize(french))
        labels.append(int(french == true))
    return LabeledTexts(texts_a, texts_b, labels, MATCH_CLASSES)


def word_order(num_train: int | None = 4000, num_test: int | None = 2000, seed: int = 0,
               data_dir=None) -> tuple[LabeledTexts, LabeledTexts]:
    """A single-text task on the English side of fra-eng: a sentence as written (label 1) or with two
    of its words swapped (label 0), half the examples each. Only sentences of at least three distinct
    words before their final punctuation take part; the two words are distinct and neither is that final
    mark, so the task is about word order, not about where the full stop is. Every token of a
    swapped sentence is in the original, so the words alone give nothing away: a model has to know
    how English orders them, which is what masked-language-model pretraining should teach.

    Distinct sentences are shuffled (by ``seed``) and split as in :func:`fra_eng_matching`: the first
    ``num_test`` are the test set, the next ``num_train`` the training set (None: all the rest)."""
    english, _ = tokenize_pairs(preprocess(read_fra_eng(data_dir)))
    sentences = list(dict.fromkeys(" ".join(e) for e in english))
    tokens = [wiki_tokenize(s) for s in sentences]
    tokens = [t for t in tokens if len(set(_words(t))) >= 3]
    train_ids, test_ids = _split_ids(len(tokens), num_train, num_test, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    return (_swapped([tokens[i] for i in train_ids], generator), _swapped([tokens[i] for i in test_ids], generator))


def _words(tokens: list[str]) -> list[str]:
    """``tokens`` without a final punctuation mark."""
    return tokens[:-1] if tokens and not tokens[-1][0].isalnum() else tokens


def _swapped(sentences: list[list[str]], generator: torch.Generator) -> LabeledTexts:
    """Each sentence as it is or, with probability 1/2, with two positions of distinct words swapped."""
    swap = (torch.rand(len(sentences), generator=generator) < 0.5).tolist()
    picks = torch.rand(len(sentences), 2, generator=generator).tolist()
    texts, labels = [], []
    for tokens, swapped, (u, v) in zip(sentences, swap, picks):
        tokens = list(tokens)
        if swapped:
            n = len(_words(tokens))
            i = int(u * n)
            others = [j for j in range(n) if tokens[j] != tokens[i]]
            j = others[int(v * len(others))]
            tokens[i], tokens[j] = tokens[j], tokens[i]
        texts.append(tokens)
        labels.append(0 if swapped else 1)
    return LabeledTexts(texts, None, labels, ORDER_CLASSES)


def truncated_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """The lengths the book's ``_truncate_pair_of_tokens`` (D2L §15.7.2) leaves: while the two are
    longer than ``budget`` together, drop the last token of the longer one (of B on a tie). The
    shorter one is kept whole when the other can make up the rest; else they end at
    ceil(budget / 2) (A) and floor(budget / 2) (B)."""
    if len_a + len_b <= budget:
        return len_a, len_b
    half = budget // 2
    if len_a <= half and len_a <= len_b:
        return len_a, budget - len_a
    if len_b <= half and len_b < len_a:
        return budget - len_b, len_b
    return budget - half, half


def encode_texts(data: LabeledTexts, vocab: Vocab, max_len: int,
                 tokenize: Callable[[str], list[str]] | None = None) -> TextClassification:
    """BERT inputs (D2L §15.6-15.7) of ``data`` with ``vocab``: ``<cls>`` A ``<sep>`` [B ``<sep>``], cut
    as the book cuts pairs (:func:`truncated_lengths`; a single text keeps its first max_len - 2
    tokens), padded to ``max_len``; ``y`` the labels. ``tokenize``: a tokenizer the words are joined
    for and split again by (a checkpoint's WordPiece), else the words in lower case are the tokens (the
    book's ``s.lower()`` before ``d2l.tokenize``, §15.7.2: its vocabularies are lower-case)."""
    if max_len < 3 + (data.texts_b is not None):
        raise ValueError(f"max_len {max_len} leaves no room for a text beside <cls> and <sep>")
    texts = data.texts_a if data.texts_b is None else [t for pair in zip(data.texts_a, data.texts_b) for t in pair]
    if tokenize is not None:
        texts = [tokenize(" ".join(text)) for text in texts]
    else:
        texts = [[word.lower() for word in text] for text in texts]
    ids = [vocab.token_to_idx.get(token, vocab.unk) for text in texts for token in text]
    corpus = torch.tensor(ids + [0], dtype=torch.long)  # one spare entry: empty texts point past the end
    lens = torch.tensor([len(text) for text in texts])
    starts = lens.cumsum(0) - lens
    if data.texts_b is None:
        la = lens.clamp(max=max_len - 2)
        tokens, segments, valid_lens = pack_pairs(corpus, starts, la, None, None, max_len, vocab)
    else:
        cut = [truncated_lengths(a, b, max_len - 3) for a, b in zip(lens[0::2].tolist(), lens[1::2].tolist())]
        la, lb = (torch.tensor(side) for side in zip(*cut))
        tokens, segments, valid_lens = pack_pairs(corpus, starts[0::2], la, starts[1::2], lb, max_len, vocab)
    return TextClassification(tokens, segments, valid_lens, torch.tensor(data.labels))
