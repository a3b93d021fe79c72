"""Tasks for sequence models: next-token language modelling (D2L §8.5) and sequence-to-sequence
learning with teacher forcing (D2L §9.7). Losses are averaged per token; the trainer's throughput
counts tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from divekit.train import distributed
from divekit.train.tasks import StepOutput, Task

__all__ = ["LanguageModeling", "Seq2SeqTask", "detach_state"]


def detach_state(state):
    """Cut the graph behind a recurrent state (a tensor, a tuple of them, or None), keeping its values."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


class LanguageModeling(Task):
    """Next-token prediction on ``(X, Y)`` minibatches of (B, T) tokens (D2L §8.5.6).

    With ``sequential`` partitioning (the loader's minibatches continue each other) the hidden
    state carries over from one minibatch to the next, detached so that backpropagation stops at
    the minibatch boundary; it starts from zeros each epoch. With random sampling it starts from
    zeros for every minibatch. Metrics: loss per token and perplexity exp(loss) (D2L §8.4.4).

    ``loss_fn(logits (N, V), y (N,))`` returns per-token losses, so scratch and fast cross-entropy
    plug in alike.
    """

    count_key = "tokens"
    count_unit = "tokens"
    state_batch_dim = 1  # the state is (L*D, B, H), or a pair of them

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sequential: bool):
        self.loss_fn = loss_fn
        self.sequential = sequential
        self.state = None

    def start_epoch(self, training: bool) -> None:
        self.state = None

    def state_dict(self) -> dict:
        return {} if self.state is None else {"state": detach_state(self.state)}

    def load_state_dict(self, state: dict) -> None:
        self.state = state.get("state")

    def step(self, model: nn.Module, batch, training: bool) -> StepOutput:
        X, Y = batch.X, batch.y  # (B, T) each
        state = detach_state(self.state) if self.sequential else None
        logits, state = model(X, state)  # (T, B, V)
        self.state = state
        losses = self.loss_fn(logits.reshape(-1, logits.shape[-1]), Y.T.reshape(-1))  # (T*B,)
        if losses.shape != (Y.numel(),):
            raise ValueError(f"loss_fn must return one loss per token, shape ({Y.numel()},), got {tuple(losses.shape)}; "
                             "use reduction='none'")
        loss = losses.mean()
        return StepOutput(loss, {"loss": losses.detach().float().sum(), "tokens": Y.numel()})

    def summarize(self, totals):
        loss = totals["loss"] / totals["tokens"]
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


class Seq2SeqTask(Task):
    """Encoder-decoder training with teacher forcing (D2L §9.7.4).

    A batch is a :class:`~divekit.data.batch.SequencePair`: source and target token indices (B, T)
    and their valid lengths. The decoder reads ``<bos>`` followed by the target shifted right by one
    and predicts the target.
    ``loss_fn(logits, Y, valid_lens)`` returns per-token losses (B, T) that are zero on padding.

    The training objective (``reduction``) weighs every real token alike either way:

    * ``"book"``: the sum over the batch of each sentence's mean over its T positions, as d2l's
      ``MaskedSoftmaxCELoss(...).sum()``: the sum of the token losses / T. Its gradient is about
      (tokens in the batch) / T times the per-token mean's, so the book's clipping at norm 1 is
      active on most steps. At the book's settings this trains better: final ``loss_d2l``
      0.0184-0.0193 over seeds 0-4 (one CPU thread), against 0.0189-0.0216 with ``"token_mean"``.
    * ``"token_mean"``: the sum of the token losses / the number of real tokens, a scale that does
      not grow with the batch or shrink with the padding (d2l-en#2076).

    Metrics, whatever the objective: ``loss`` per real token, and ``loss_d2l`` = loss / T, the
    number d2l's ``train_seq2seq`` prints, for comparison with the book.

    The target positions after the batch's longest target (T' = max(Y_valid_len) <= T) are left out:
    every decoder is causal (its output at position t reads positions <= t only) and the loss is
    zero there, so the outputs at the real positions, the loss and the gradients are those of all T
    positions (tested), at less work: at the book's Transformer settings T' is 6-8 of T = 10. T
    stays the divisor of the book's objective and of ``loss_d2l``.
    """

    count_key = "tokens"
    count_unit = "tokens"
    whole_minibatch_loss = True

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], bos: int,
                 reduction: Literal["book", "token_mean"] = "token_mean"):
        if reduction not in ("book", "token_mean"):
            raise ValueError(f"reduction must be 'book' or 'token_mean', got {reduction!r}")
        self.loss_fn = loss_fn
        self.bos = bos
        self.reduction = reduction

    def step(self, model, batch, training):
        X, Y = batch.X, batch.Y  # (B, T) each
        X_valid_len, Y_valid_len = batch.X_valid_len, batch.Y_valid_len  # (B,)
        T = Y.shape[1]
        Y = Y[:, :max(int(Y_valid_len.max()), 1)]  # (B, T'): see the class note
        bos = torch.full_like(Y[:, :1], self.bos)
        dec_input = torch.cat([bos, Y[:, :-1]], dim=1)  # teacher forcing: the true previous token
        logits, _ = model(X, dec_input, X_valid_len)  # (B, T', V)
        losses = self.loss_fn(logits, Y, Y_valid_len)  # (B, T'), zero on padding
        num_tokens = Y_valid_len.sum()
        # over the whole minibatch when processes share it (each share holds other numbers of tokens)
        divisor = float(T) if self.reduction == "book" else distributed.whole_minibatch_counts(num_tokens)[0]
        loss = distributed.whole_minibatch_mean(losses.sum(), divisor)
        return StepOutput(loss, {"loss": losses.detach().float().sum(), "tokens": num_tokens, "steps": T * num_tokens})

    def summarize(self, totals):
        return {"loss": totals["loss"] / totals["tokens"], "loss_d2l": totals["loss"] / totals["steps"]}
