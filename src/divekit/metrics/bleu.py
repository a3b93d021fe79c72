"""BLEU: how many n-grams of a predicted sentence appear in the reference (Papineni et al., 2002).

Two versions, kept apart because their numbers are not comparable:

* :func:`bleu` is the book's sentence-level score (D2L §9.7.6, eq. 9.7.4),
  exp(min(0, 1 - len_label / len_pred)) * prod_{n=1..k} p_n^(1/2^n), with p_n the clipped n-gram
  precision; no smoothing, so one n-gram order without a match gives 0.
* :func:`corpus_bleu` is standard BLEU: clipped n-gram counts summed over the whole corpus,
  geometric mean of p_1..p_4 with equal weights, brevity penalty from the total lengths, one or
  several references per sentence (what sacreBLEU reports with ``tokenize="none"`` and
  ``smooth_method="none"`` on already tokenized, space-separated text, times 100 there).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

__all__ = ["bleu", "corpus_bleu", "ngram_matches"]


def ngram_matches(pred: Sequence[str], label: Sequence[str], n: int) -> tuple[int, int]:
    """(matches, total): predicted n-grams found in the label, each label n-gram used at most as
    often as it occurs there ("clipped"), and the number of predicted n-grams."""
    label_counts = collections.Counter(tuple(label[i:i + n]) for i in range(len(label) - n + 1))
    pred_counts = collections.Counter(tuple(pred[i:i + n]) for i in range(len(pred) - n + 1))
    matches = sum(min(count, label_counts[gram]) for gram, count in pred_counts.items())
    return matches, max(0, len(pred) - n + 1)


def bleu(pred_seq: str, label_seq: str, k: int = 2) -> float:
    """The book's BLEU of one space-separated prediction against one label, n-grams up to ``k``.

    A prediction with fewer than ``k`` tokens has no ``k``-grams; the book divides by zero there,
    we return 0 (no evidence of a match).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    pred, label = pred_seq.split(), label_seq.split()
    if len(pred) < k:
        return 0.0
    score = math.exp(min(0.0, 1 - len(label) / len(pred)))  # brevity penalty
    for n in range(1, k + 1):
        matches, total = ngram_matches(pred, label, n)
        score *= (matches / total) ** (0.5 ** n)
    return score


def corpus_bleu(predictions: Sequence[str], references: Sequence[str | Sequence[str]], max_n: int = 4) -> float:
    """Standard corpus BLEU in [0, 1] of space-separated predictions, each with one reference or a
    sequence of several (Papineni et al.: an n-gram counts up to its largest count in any one
    reference; the reference length is the one closest to the prediction's, the shorter on a tie)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    matches, totals = [0] * max_n, [0] * max_n
    pred_len = ref_len = 0
    for pred_seq, refs in zip(predictions, references):
        pred = pred_seq.split()
        labels = [r.split() for r in ([refs] if isinstance(refs, str) else refs)]
        if not labels:
            raise ValueError(f"no reference for the prediction {pred_seq!r}")
        pred_len += len(pred)
        ref_len += min((abs(len(label) - len(pred)), len(label)) for label in labels)[1]
        for n in range(1, max_n + 1):
            pred_counts = collections.Counter(tuple(pred[i:i + n]) for i in range(len(pred) - n + 1))
            most = collections.Counter()
            for label in labels:
                most |= collections.Counter(tuple(label[i:i + n]) for i in range(len(label) - n + 1))  # max count
            matches[n - 1] += sum(min(count, most[gram]) for gram, count in pred_counts.items())
            totals[n - 1] += max(0, len(pred) - n + 1)
    if pred_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = min(0.0, 1 - ref_len / pred_len)
    return math.exp(brevity + log_precision)
