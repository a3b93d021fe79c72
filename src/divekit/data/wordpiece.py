"""WordPiece, the original BERT's tokenizer (Wu et al., 2016; Devlin et al., 2018), so that a Hugging
Face BERT checkpoint's ``vocab.txt`` tokenizes texts for divekit as it did for its pretraining (the
book's BERT splits words on spaces instead, D2L §14.9).

Special tokens written in the text (``[MASK]``, ``[SEP]`` ...) stay whole. The rest goes through two
stages: a basic tokenizer (control characters dropped, whitespace normalised, spaces around CJK
characters, lower case and accents stripped for uncased models, every punctuation character a
token of its own), then WordPiece on each word: the longest vocabulary entry that starts the word,
then the longest ``##``-prefixed entry that continues it, and so on; a word that cannot be covered
becomes ``[UNK]``.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence

from divekit.data.text import Vocab

__all__ = ["SPECIAL_TOKENS", "WordPieceVocab", "basic_tokenize", "wordpiece"]

# divekit's names of the special tokens (D2L §14.8) -> BERT's
SPECIAL_TOKENS = {"<unk>": "[UNK]", "<pad>": "[PAD]", "<cls>": "[CLS]", "<sep>": "[SEP]", "<mask>": "[MASK]"}
MAX_WORD_CHARS = 100  # longer words become [UNK] (Hugging Face's max_input_chars_per_word)


def _is_punctuation(char: str) -> bool:
    """ASCII symbols count as punctuation too (``$``, ``^``, ...), as in BERT's tokenizer."""
    cp = ord(char)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(char).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text: str, lower_case: bool = True, strip_accents: bool | None = None,
                   split_cjk: bool = True) -> list[str]:
    """Words and punctuation marks of ``text`` as BERT's basic tokenizer splits them. Accents are stripped
    where ``strip_accents`` says, else (None) with lower case, and CJK characters are words of their
    own with ``split_cjk``: Hugging Face's ``strip_accents`` and ``tokenize_chinese_chars``."""
    strip_accents = lower_case if strip_accents is None else strip_accents
    chars = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(char) in ("Cc", "Cf", "Co") and char not in "\t\n\r"):
            continue  # control, format and private-use characters (icon fonts, PDF extraction), as BERT's
        if char.isspace():
            chars.append(" ")
        elif split_cjk and _is_cjk(cp):
            chars.append(f" {char} ")
        else:
            chars.append(char)
    words = []
    for word in "".join(chars).split():
        word = word.lower() if lower_case else word
        if strip_accents:
            word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
        piece = ""
        for char in word:
            if _is_punctuation(char):
                words += [piece, char] if piece else [char]
                piece = ""
            else:
                piece += char
        if piece:
            words.append(piece)
    return words


def wordpiece(word: str, vocab: dict[str, int], unk: str = "[UNK]") -> list[str]:
    """The word as the longest vocabulary entries from left to right (continuations prefixed ``##``),
    or ``[unk]`` when some part of it is in no entry."""
    if len(word) > MAX_WORD_CHARS:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                pieces.append(piece)
                start = end
                break
        else:
            return [unk]
    return pieces


class WordPieceVocab(Vocab):
    """A BERT checkpoint's vocabulary (one token a line of ``vocab.txt``, index = line number) with its
    WordPiece tokenizer. divekit's special-token names (``<cls>``, ``<sep>``, ``<pad>``, ``<mask>``,
    ``<unk>``) look up BERT's (``[CLS]`` ...), so the data functions of D2L §14.9 and §15.6 take it
    as they take a :class:`~divekit.data.text.Vocab`. ``lower_case``, ``strip_accents`` and ``split_cjk``:
    see :func:`basic_tokenize` (a checkpoint's ``tokenizer_config.json`` gives them)."""

    def __init__(self, idx_to_token: Sequence[str], lower_case: bool = True, strip_accents: bool | None = None,
                 split_cjk: bool = True):
        super().__init__()
        missing = [t for t in SPECIAL_TOKENS.values() if t not in idx_to_token]
        if missing:
            raise ValueError(f"a BERT vocabulary needs {', '.join(missing)}")
        self.idx_to_token = list(idx_to_token)
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}
        for ours, theirs in SPECIAL_TOKENS.items():
            self.token_to_idx.setdefault(ours, self.token_to_idx[theirs])
        self.lower_case, self.strip_accents, self.split_cjk = lower_case, strip_accents, split_cjk
        self._specials = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS.values()) + ")")

    @classmethod
    def from_file(cls, path: str | os.PathLike, lower_case: bool = True, strip_accents: bool | None = None,
                  split_cjk: bool = True) -> WordPieceVocab:
        with open(path, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f], lower_case, strip_accents, split_cjk)

    @property
    def unk(self) -> int:
        return self.token_to_idx["[UNK]"]

    def tokenize(self, text: str) -> list[str]:
        """``text`` as WordPiece tokens of this vocabulary; special tokens in it (``[MASK]``) stay whole."""
        tokens = []
        for i, part in enumerate(self._specials.split(text)):  # odd parts: the special tokens
            tokens += [part] if i % 2 else [piece for word in basic_tokenize(part, self.lower_case, self.strip_accents,
                                                                             self.split_cjk)
                                            for piece in wordpiece(word, self.token_to_idx, SPECIAL_TOKENS["<unk>"])]
        return tokens
