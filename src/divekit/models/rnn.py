"""Recurrent language models (D2L §8.5-8.6, §9.1-9.4): one-hot tokens -> a recurrent layer (RNN,
GRU or LSTM, deep or bidirectional, from the ops twin given) -> a linear output over the vocabulary.

Letters: T time steps, B batch size, V vocabulary size, H hidden size, D directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from divekit.data.text import Vocab
from divekit.models.blocks import evaluating
from divekit.models.registry import Example, register_model
from divekit.ops import Ops
from divekit.options import Checked, at_least, option

__all__ = ["RNNLM", "RNNLMConfig", "predict_chars"]

LAYERS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}  # the kind of recurrent layer -> its ops name


@dataclass
class RNNLMConfig(Checked):
    vocab_size: int = option(28, "vocabulary size (the book's characters: 26 letters, space and <unk>)", at_least(1))
    kind: Literal["rnn", "gru", "lstm"] = option("rnn", "the recurrent layer")
    num_hiddens: int = option(256, "hidden units per layer and direction", at_least(1))
    num_layers: int = option(1, "stacked recurrent layers (D2L §9.3)", at_least(1))
    bidirectional: bool = option(False, "read the sequence both ways (D2L §9.4; useless for next-token prediction)")


class RNNLM(nn.Module):
    """A language model (D2L §8.5-8.6): one-hot tokens -> recurrent layer -> linear output, which
    starts as ``nn.Linear`` does, as in the book's ``RNNModel`` (§8.6).

    forward(X (B, T) token indices, state or None) -> (logits (T, B, V), state): time-major, the
    way the recurrent layer produces them; position (t, b) predicts token X[b, t + 1].
    """

    def __init__(self, cfg: RNNLMConfig, ops: Ops):
        super().__init__()
        self.vocab_size = cfg.vocab_size
        layer = getattr(ops, LAYERS[cfg.kind])
        self.rnn = layer(cfg.vocab_size, cfg.num_hiddens, cfg.num_layers, bidirectional=cfg.bidirectional)
        self.output = ops.Linear(cfg.num_hiddens * (2 if cfg.bidirectional else 1), cfg.vocab_size)

    def forward(self, X: torch.Tensor, state=None):
        inputs = nn.functional.one_hot(X.T, self.vocab_size).to(self.output.weight.dtype)  # (T, B, V)
        Y, state = self.rnn(inputs, state)  # (T, B, D*H)
        return self.output(Y), state  # (T, B, V)


def token_example(cfg: RNNLMConfig, batch_size: int, num_steps: int = 5) -> Example:
    """Tokens (B, T) -> logits (T, B, V)."""
    return Example((torch.randint(cfg.vocab_size, (batch_size, num_steps)),), (num_steps, batch_size, cfg.vocab_size))


@register_model("rnn-lm", config=RNNLMConfig, example=token_example, section="8.5-9.4",
                tiny=dict(num_hiddens=8, num_layers=2, bidirectional=True))
def rnn_lm(cfg: RNNLMConfig, ops: Ops) -> RNNLM:
    """A character-level language model on an RNN, GRU or LSTM."""
    return RNNLM(cfg, ops)


def predict_chars(prefix: str, num_preds: int, model: RNNLM, vocab: Vocab) -> str:
    """``prefix`` followed by ``num_preds`` greedily predicted characters (D2L §8.5.4), in evaluation mode.

    Warm-up: the prefix runs through the model one character at a time, the state carried, so the state
    holds it before predicting; as the book's ``predict_ch8``, also for a bidirectional model (which,
    given the whole prefix at once, would read it backwards too).
    """
    if not prefix:
        raise ValueError("predict_chars needs a non-empty prefix to warm the state up with")
    device = next(model.parameters()).device
    tokens, state = vocab[list(prefix)], None
    with evaluating(model):
        for token in tokens[:-1]:  # warm-up: every prefix character but the last
            _, state = model(torch.tensor([[token]], device=device), state)
        for _ in range(num_preds):  # each step reads the last character and writes the next
            logits, state = model(torch.tensor([[tokens[-1]]], device=device), state)  # (1, 1, V)
            tokens.append(int(logits[-1, 0].argmax()))
    return "".join(vocab.to_tokens(tokens))
