"""Tasks for BERT: pretraining with the masked language model and next-sentence prediction
(D2L §14.10), and fine-tuning on labeled texts, text pairs or tokens (D2L §15.6).

Letters: B sequences, T tokens, P prediction slots per sequence, N real predictions in a batch, V
vocabulary size, C classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from divekit.data.batch import BertPretraining, TextClassification
from divekit.train import distributed
from divekit.train.tasks import Classification, StepOutput, Task

__all__ = ["BertPretrainingTask", "TextClassificationTask"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BertPretrainingTask(Task):
    """The sum of the masked-language-model loss and the next-sentence-prediction loss (D2L §14.10.1).

    The MLM logits are computed at the N real prediction slots only (the book computes all B x P and
    weights the padding by 0). Which MLM loss is minimised (``reduction``):

    * ``"real"``: the mean cross-entropy over the real predictions.
    * ``"book"``: what d2l's ``_get_batch_loss_bert`` computes: its ``nn.CrossEntropyLoss()`` already
      averages over all B x P slots, padding included, before the weights multiply it, so the
      weighting does nothing and each padding slot asks position 0 (``<cls>``) for label 0
      (``<unk>``). A padding slot of row b has the same loss as any other of that row, so the B
      losses of those rows stand for all of them: (sum of real losses + sum_b (P - n_b) loss_b) / (B P).

    Metrics, as means over the steps (the book's ``MLM loss``, ``NSP loss``): ``mlm_loss`` over the
    real predictions, ``mlm_loss_d2l`` the book's, ``nsp_loss`` and ``nsp_acc``; the trainer counts
    sentence pairs per second.
    """

    count_key = "pairs"
    count_unit = "pairs"
    whole_minibatch_loss = True

    def __init__(self, loss_fn: LossFn, reduction: Literal["book", "real"] = "book"):
        if reduction not in ("book", "real"):
            raise ValueError(f"reduction must be 'book' or 'real', got {reduction!r}")
        self.loss_fn = loss_fn
        self.reduction = reduction

    def step(self, model: nn.Module, batch: BertPretraining, training: bool) -> StepOutput:
        (B, T), P = batch.tokens.shape, batch.pred_positions.shape[1]
        real = batch.mlm_weights > 0  # (B, P)
        rows = torch.arange(B, device=real.device)
        flat = (rows[:, None] * T + batch.pred_positions)[real]  # (N,) positions b * T + t
        N = len(flat)
        # and position 0 of every row, where the book's padding slots point: (N + B,)
        _, mlm_logits, nsp_logits = model(batch.tokens, batch.segments, batch.valid_lens, torch.cat([flat, rows * T]))
        labels = torch.cat([batch.mlm_labels[real], torch.zeros_like(rows)])  # padding slots: label 0
        losses = self.loss_fn(mlm_logits, labels)  # (N + B,)
        # means over the whole minibatch when processes share it (distributed.whole_minibatch_mean)
        whole_N, whole_B = distributed.whole_minibatch_counts(N, B)
        mlm_real = distributed.whole_minibatch_mean(losses[:N].sum(), whole_N)
        padding = P - real.sum(1)  # (B,) padding slots per row
        mlm_book = distributed.whole_minibatch_mean(losses[:N].sum() + (padding * losses[N:]).sum(), whole_B * P)
        nsp_losses = self.loss_fn(nsp_logits, batch.nsp_labels)  # (B,)
        nsp = distributed.whole_minibatch_mean(nsp_losses.sum(), whole_B)
        loss = (mlm_book if self.reduction == "book" else mlm_real) + nsp
        correct = (nsp_logits.argmax(-1) == batch.nsp_labels).sum()
        share = 1 / distributed.world().size  # each process's part of the step's means (they sum to them)
        return StepOutput(loss, {"mlm": mlm_real.detach().float() * share, "mlm_d2l": mlm_book.detach().float() * share,
                                 "nsp": nsp.detach().float() * share, "nsp_correct": correct, "steps": share,
                                 "pairs": B})

    def summarize(self, totals):
        steps = totals["steps"]
        return {"mlm_loss": totals["mlm"] / steps, "mlm_loss_d2l": totals["mlm_d2l"] / steps,
                "nsp_loss": totals["nsp"] / steps, "nsp_acc": totals["nsp_correct"] / totals["pairs"]}


class TextClassificationTask(Classification):
    """Fine-tuning (D2L §15.6): cross-entropy and accuracy of a text's, a pair's (y (B,)) or each
    token's class (y (B, T), tokens with y = -1 left out). ``loss_fn`` returns one loss per example."""

    def step(self, model: nn.Module, batch: TextClassification, training: bool) -> StepOutput:
        logits = model(batch.tokens, batch.segments, batch.valid_lens)  # (B, C) or (B, T, C)
        y = batch.y
        if logits.dim() == 3:  # tagging: only the tokens that have a tag
            keep = y >= 0  # (B, T)
            logits, y = logits[keep], y[keep]  # (N, C), (N,)
        return self.score(logits, y)
