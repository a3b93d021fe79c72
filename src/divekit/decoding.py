"""Decoding a sequence from a conditional model: greedy, exhaustive and beam search (D2L §9.8).

A model is seen through two functions, so any decoder (RNN, attention, Transformer) can use them:

* ``step(tokens (K,), state) -> (log_probs (K, V), state)``: the log-probabilities of the next
  token for K hypotheses that end in ``tokens``;
* ``reorder(state, idx (K',)) -> state``: the state of hypotheses ``idx`` (rows may repeat).

A hypothesis ends at ``<eos>`` (which counts as one of its tokens) or after ``max_len`` tokens.
Its score is the length-normalised log-likelihood of D2L eq. (9.8.4),
score = log P(y_1, ..., y_L) / L^alpha, which keeps the search from preferring short outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

__all__ = ["beam_search", "exhaustive_search", "greedy_search", "sequence_score"]

Step = Callable[[torch.Tensor, object], tuple[torch.Tensor, object]]
Reorder = Callable[[object, torch.Tensor], object]


def sequence_score(log_prob: float, length: int, alpha: float) -> float:
    """log P / L^alpha (D2L §9.8.3)."""
    return log_prob / length ** alpha


def _device(state) -> torch.device:
    return next(iter(state)).device if isinstance(state, (tuple, list)) else state.device


def greedy_search(step: Step, state, bos: int, eos: int, max_len: int) -> tuple[list[int], float]:
    """Take the most likely token at every step (D2L §9.8.1); returns the tokens and log P."""
    token = torch.tensor([bos], device=_device(state))
    tokens, log_prob = [], 0.0
    for _ in range(max_len):
        log_probs, state = step(token, state)  # (1, V)
        best, token = log_probs[0].max(dim=0)
        token = token[None]
        tokens.append(int(token))
        log_prob += float(best)
        if tokens[-1] == eos:
            break
    return tokens, log_prob


def beam_search(step: Step, state, reorder: Reorder, bos: int, eos: int, max_len: int, beam_size: int,
                alpha: float = 0.75) -> tuple[list[int], float]:
    """Keep the ``beam_size`` most likely hypotheses at every step (D2L §9.8.3).

    Each step extends every live hypothesis by every token and keeps the top ``beam_size`` of those
    K*V extensions by log-probability; extensions ending in ``<eos>`` leave the beam as finished.
    The answer is the finished (or, at ``max_len``, unfinished) hypothesis with the best score.
    Returns its tokens and score. With ``beam_size`` 1 this is greedy search.
    """
    if beam_size < 1 or max_len < 1:
        raise ValueError(f"beam_size and max_len must be at least 1, got {beam_size} and {max_len}")
    device = _device(state)
    seqs = torch.empty(1, 0, dtype=torch.long, device=device)  # (K, t) live hypotheses
    log_p = torch.zeros(1, device=device)  # (K,)
    last = torch.tensor([bos], device=device)
    done: list[tuple[float, list[int]]] = []  # (score, tokens)
    for t in range(1, max_len + 1):
        log_probs, state = step(last, state)  # (K, V)
        V = log_probs.shape[1]
        total = (log_p[:, None] + log_probs).reshape(-1)  # (K*V,) log P of every extension
        top, flat = total.topk(min(beam_size, total.numel()))
        beam, token = flat // V, flat % V  # which hypothesis, which next token
        seqs = torch.cat([seqs[beam], token[:, None]], dim=1)
        ended = (token == eos) | (t == max_len)
        for score, seq in zip(top[ended].tolist(), seqs[ended].tolist()):
            done.append((sequence_score(score, t, alpha), seq))
        live = ~ended
        if not bool(live.any()):
            break
        seqs, log_p, last = seqs[live], top[live], token[live]
        state = reorder(state, beam[live])
    score, tokens = max(done, key=lambda d: d[0])
    return tokens, score


@torch.no_grad()
def exhaustive_search(step: Step, state, reorder: Reorder, bos: int, eos: int, max_len: int, vocab_size: int,
                      alpha: float = 0.75) -> tuple[list[int], float]:
    """Score every possible output and return the best (D2L §9.8.2): O(V^max_len), for tests.

    Candidates are every sequence of non-``<eos>`` tokens followed by ``<eos>`` (lengths 1 to
    ``max_len``) and every sequence of ``max_len`` non-``<eos>`` tokens; each is scored by feeding
    it through ``step`` token by token, all candidates of one length in one batch.
    """
    words = [v for v in range(vocab_size) if v != eos]
    candidates = [(*prefix, eos) for n in range(max_len) for prefix in itertools.product(words, repeat=n)]
    candidates += list(itertools.product(words, repeat=max_len))
    best: tuple[float, list[int]] = (float("-inf"), [])
    device = _device(state)
    for length in range(1, max_len + 1):
        batch = torch.tensor([c for c in candidates if len(c) == length], device=device)  # (N, length)
        s = reorder(state, torch.zeros(len(batch), dtype=torch.long, device=device))
        inputs = torch.cat([torch.full_like(batch[:, :1], bos), batch[:, :-1]], dim=1)
        log_p = torch.zeros(len(batch), device=device)
        for t in range(length):
            log_probs, s = step(inputs[:, t], s)  # (N, V)
            log_p = log_p + log_probs.gather(1, batch[:, t:t + 1])[:, 0]
        scores = sequence_score(log_p, length, alpha)  # (N,)
        i = int(scores.argmax())
        if float(scores[i]) > best[0]:
            best = (float(scores[i]), batch[i].tolist())
    return best[1], best[0]
