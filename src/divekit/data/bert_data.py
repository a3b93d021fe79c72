"""BERT's inputs and its pretraining data from WikiText-2 (D2L §14.8.4, §14.9), built with tensor
operations over the whole corpus instead of the book's per-example Python.

Letters: N examples, T = ``max_len`` tokens per example, P = round(0.15 T) prediction slots, S
sentences, V vocabulary size.

* Input: ``<cls>`` A ``<sep>`` (segment 0) B ``<sep>`` (segment 1), then ``<pad>`` (segment 0) up to T
  (:func:`get_tokens_and_segments` for one example, :func:`pack_pairs` for all at once).
* Next-sentence prediction (§14.9.1.1): every pair of consecutive sentences of a paragraph, where
  with probability 1/2 the second is replaced by a random sentence of a random paragraph (label 0,
  "not next"; 1 when it is the real next one); pairs longer than T with their three special tokens
  are dropped. The book draws these once, and so do we (with the run's seed).
* Masked language model (§14.9.1.2, :func:`mask_tokens`): in each example, round(0.15 x its length)
  (at least 1) positions chosen at random among its tokens (never ``<cls>``, ``<sep>`` or padding);
  of those, 80 % become ``<mask>``, 10 % a random token of the vocabulary, 10 % stay; the model must
  predict the original token at each. Slots beyond an example's count are padding: position 0, label
  0, weight 0 (the book's ``_pad_bert_inputs``). The book draws the masks once when it builds the
  data set; ``dynamic`` masks (RoBERTa, Hugging Face's collator) are drawn afresh for every minibatch
  by :class:`MaskTokens`.

The book's WikiText-2 reading (§14.9.1): each line of ``wiki.train.tokens`` is a paragraph, lower-cased
and split into sentences at `` . ``; paragraphs with fewer than two sentences are dropped; tokens are
the whitespace-separated words, and the vocabulary keeps words seen at least 5 times, with
``<pad> <mask> <cls> <sep>`` reserved. The book shuffles the paragraphs first, which only reorders
what its shuffling loader reorders again; we keep the file's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from divekit.data import hub
from divekit.data.batch import BertPretraining
from divekit.data.text import Vocab
from divekit.data.transforms import Transform

__all__ = ["CLS", "MASK", "PAD", "RESERVED", "SEP", "MaskTokens", "WikiPretraining", "get_tokens_and_segments",
           "load_wiki_pretraining", "mask_tokens", "nsp_pairs", "pack_pairs", "read_wiki"]

PAD, MASK, CLS, SEP = "<pad>", "<mask>", "<cls>", "<sep>"
RESERVED = (PAD, MASK, CLS, SEP)
MLM_SHARE = 0.15


def get_tokens_and_segments(tokens_a: list[str], tokens_b: list[str] | None = None) -> tuple[list[str], list[int]]:
    """``<cls>`` A ``<sep>`` [B ``<sep>``] and its segment ids: 0 for the first part, 1 for B ``<sep>``
    (D2L §14.8.4)."""
    tokens = [CLS, *tokens_a, SEP]
    segments = [0] * (len(tokens_a) + 2)
    if tokens_b is not None:
        tokens += [*tokens_b, SEP]
        segments += [1] * (len(tokens_b) + 1)
    return tokens, segments


def pack_pairs(corpus: torch.Tensor, start_a: torch.Tensor, len_a: torch.Tensor, start_b: torch.Tensor | None,
               len_b: torch.Tensor | None, max_len: int, vocab: Vocab) -> tuple[torch.Tensor, ...]:
    """BERT inputs of N texts or text pairs at once: A is ``corpus[start_a[n]:start_a[n] + len_a[n]]``,
    B likewise (None: single texts). Every pair must fit (len_a + len_b + 3 <= max_len).
    Returns tokens (N, T), segments (N, T) and valid lengths (N,)."""
    single = start_b is None
    if single:
        start_b, len_b = torch.zeros_like(start_a), torch.full_like(len_a, -1)  # no B and no second <sep>
    la, lb = len_a[:, None], len_b[:, None]  # (N, 1)
    valid_lens = len_a + len_b + 3  # <cls> A <sep> B <sep>; a single text: <cls> A <sep>
    if bool((valid_lens > max_len).any()):
        raise ValueError(f"a text (pair) of {int(valid_lens.max())} tokens with <cls> and <sep> does not fit "
                         f"max_len {max_len}")
    t = torch.arange(max_len)[None]  # (1, T)
    in_a = (t >= 1) & (t <= la)  # (N, T)
    in_b = (t >= la + 2) & (t <= la + lb + 1)
    src = torch.where(in_a, start_a[:, None] + t - 1, torch.where(in_b, start_b[:, None] + t - la - 2, 0))  # (N, T)
    tokens = torch.where(in_a | in_b, corpus[src], vocab[PAD])
    tokens[:, 0] = vocab[CLS]
    seps = (t == la + 1) | (t == la + lb + 2)  # (N, T); a single text has its only <sep> at la + 1
    tokens = torch.where(seps, vocab[SEP], tokens)
    segments = ((t >= la + 2) & (t < valid_lens[:, None])).long()  # B and its <sep>
    return tokens, segments, valid_lens


def mask_tokens(tokens: torch.Tensor, valid_lens: torch.Tensor, vocab: Vocab, generator: torch.Generator | None = None,
                share: float = MLM_SHARE) -> dict[str, torch.Tensor]:
    """The masked language model's inputs and targets for tokens (N, T) with valid lengths (N,)
    (D2L §14.9.1.2; see the module docstring).

    Returns ``tokens`` (N, T) with the replacements, and ``pred_positions``, ``mlm_labels`` (the
    original tokens) and ``mlm_weights`` (N, P), P = round(share x T), positions ascending within an
    example, padding slots last (position 0, label 0, weight 0). Random draws come from ``generator``
    (on the CPU), all at once."""
    N, T = tokens.shape
    device = tokens.device
    P = round(share * T)
    special = (tokens == vocab[CLS]) | (tokens == vocab[SEP])
    candidate = ~special & (torch.arange(T, device=device)[None] < valid_lens[:, None])  # (N, T)
    # the book counts the special tokens too: round(0.15 * len(tokens)), at least 1 (rounding half to even, as Python)
    count = torch.round(valid_lens.double() * share).long().clamp(min=1)
    count = torch.minimum(count, candidate.sum(1)).clamp(max=P)  # (N,)
    keys = torch.rand(N, T, generator=generator).to(device)
    keys = keys.masked_fill(~candidate, 2.0)  # candidates first, in a random order
    chosen = keys.argsort(dim=1)[:, :P]  # (N, P): a random order of each example's candidates
    weights = torch.arange(P, device=device)[None] < count[:, None]  # (N, P): the first count are real
    positions = torch.where(weights, chosen, T).sort(dim=1).values  # ascending, padding (T) last
    positions = positions.masked_fill(~weights, 0)  # weights are already a prefix: the sort kept them in front
    labels = torch.where(weights, tokens.gather(1, positions), 0)  # (N, P)
    u = torch.rand(N, P, generator=generator).to(device)
    random_tokens = torch.randint(len(vocab), (N, P), generator=generator).to(device)
    replacement = torch.where(u < 0.8, vocab[MASK], torch.where(u < 0.9, labels, random_tokens))  # 80 / 10 / 10
    rows = torch.arange(N, device=device)[:, None].expand(N, P)
    masked = tokens.clone()
    masked[rows[weights], positions[weights]] = replacement[weights]
    return {"tokens": masked, "pred_positions": positions, "mlm_labels": labels,
            "mlm_weights": weights.to(torch.float32)}


class MaskTokens(Transform):
    """Fresh masked-language-model masks for every minibatch (dynamic masking): the batch's
    ``tokens`` are the unmasked originals, and the result is a :class:`BertPretraining` batch whose
    ``tokens``, ``pred_positions``, ``mlm_labels`` and ``mlm_weights`` come from :func:`mask_tokens`."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab

    def __call__(self, batch: BertPretraining, generator=None) -> BertPretraining:
        return batch.replace(**mask_tokens(batch.tokens, batch.valid_lens, self.vocab, generator))


def read_wiki(data_dir=None, split: str = "train") -> list[list[str]]:
    """WikiText-2's paragraphs of ``split`` (train, valid or test), each a list of its lower-cased
    sentences, those of at least two sentences (the book's ``_read_wiki``, D2L §14.9.1, which reads
    the training articles, without its shuffle)."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"WikiText-2's splits are train, valid and test, not {split!r}")
    path = hub.fetch("wikitext-2", f"wiki.{split}.tokens", data_dir=data_dir)
    with open(path, encoding="utf-8") as f:
        return [line.strip().lower().split(" . ") for line in f if len(line.split(" . ")) >= 2]


def nsp_pairs(paragraph_lens: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Next-sentence pairs over sentences numbered paragraph by paragraph (paragraph p holds
    ``paragraph_lens[p]`` sentences): for every sentence a with a next one in its paragraph, b = a + 1
    (label 1) or, with probability 1/2, a random sentence of a random paragraph (label 0), as the
    book's ``_get_next_sentence`` draws it. Returns the sentence indices a, b and the labels."""
    ends = paragraph_lens.cumsum(0)  # (paragraphs,): one past each paragraph's last sentence
    starts = ends - paragraph_lens
    S = int(ends[-1])
    paragraph = torch.repeat_interleave(torch.arange(len(paragraph_lens)), paragraph_lens)  # (S,)
    a = torch.arange(S)[torch.arange(S) + 1 < ends[paragraph]]  # sentences with a next one in their paragraph
    is_next = torch.rand(len(a), generator=generator) < 0.5
    other = torch.randint(len(paragraph_lens), (len(a),), generator=generator)  # a random paragraph ...
    within = (torch.rand(len(a), generator=generator) * paragraph_lens[other]).long()  # ... and one of its sentences
    b = torch.where(is_next, a + 1, starts[other] + within)
    return a, b, is_next.long()


@dataclass(frozen=True)
class WikiPretraining:
    """BERT pretraining examples from WikiText-2 and their vocabulary. With static masks (the book)
    ``examples`` are masked; with dynamic ones they hold the original tokens and a
    :class:`MaskTokens` transform masks each minibatch."""

    examples: BertPretraining
    vocab: Vocab
    max_len: int
    dynamic_masks: bool = False


def load_wiki_pretraining(max_len: int = 64, generator: torch.Generator | None = None, dynamic_masks: bool = False,
                          min_freq: int = 5, paragraphs: list[list[str]] | None = None, vocab: Vocab | None = None,
                          data_dir=None) -> WikiPretraining:
    """The book's BERT pretraining data (``load_data_wiki``, D2L §14.9.2) as one batch of tensors:
    next-sentence pairs of at most ``max_len`` tokens and their masks (static unless
    ``dynamic_masks``). ``paragraphs``: lists of sentences to use instead of WikiText-2's training
    articles; ``vocab``: the vocabulary to use (e.g. the training data's, for held-out articles)
    instead of one of the words seen at least ``min_freq`` times."""
    paragraphs = read_wiki(data_dir) if paragraphs is None else paragraphs
    sentences = [sentence.split() for paragraph in paragraphs for sentence in paragraph]
    if not sentences:
        raise ValueError("no paragraph of at least two sentences to make next-sentence pairs from")
    if vocab is None:
        vocab = Vocab(sentences, min_freq=min_freq, reserved_tokens=RESERVED)
    corpus = torch.tensor([vocab.token_to_idx.get(t, vocab.unk) for sentence in sentences for t in sentence])
    lens = torch.tensor([len(s) for s in sentences])  # (S,)
    starts = lens.cumsum(0) - lens
    a, b, nsp_labels = nsp_pairs(torch.tensor([len(p) for p in paragraphs]), generator)
    fits = lens[a] + lens[b] + 3 <= max_len
    a, b, nsp_labels = a[fits], b[fits], nsp_labels[fits]
    if len(a) == 0:
        raise ValueError(f"no sentence pair fits max_len {max_len}")
    tokens, segments, valid_lens = pack_pairs(corpus, starts[a], lens[a], starts[b], lens[b], max_len, vocab)
    if dynamic_masks:
        P = round(MLM_SHARE * max_len)
        zeros = torch.zeros(len(a), P, dtype=torch.long)
        mlm = {"tokens": tokens, "pred_positions": zeros, "mlm_labels": zeros, "mlm_weights": zeros.float()}
    else:
        mlm = mask_tokens(tokens, valid_lens, vocab, generator)
    examples = BertPretraining(segments=segments, valid_lens=valid_lens, nsp_labels=nsp_labels, **mlm)
    return WikiPretraining(examples, vocab, max_len, dynamic_masks)
