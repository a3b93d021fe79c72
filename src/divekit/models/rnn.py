"""Recurrent networks: RNN (D2L §8.4-8.6), GRU (§9.1), LSTM (§9.2), deep (§9.3) and bidirectional
(§9.4) variants, and a character-level language model on top (§8.5).

Letters: T time steps, B batch size, I input size, H hidden size, G gates per cell (1 RNN, 3 GRU,
4 LSTM), L layers, D directions (1 or 2), V vocabulary size.

The scratch layers (``RNNScratch``, ``GRUScratch``, ``LSTMScratch``) write the time loop and the
gate equations out; their fast twins are PyTorch's own ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM``
(exported here as ``RNN``, ``GRU``, ``LSTM``). Twins take the same keyword arguments, return the
same ``(output, state)`` and have the same parameter names and shapes (``weight_ih_l0``,
``bias_hh_l1_reverse``, ...; the G gate blocks stacked in torch's order), so a state dict loads
either way.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from divekit.data.text import Vocab
from divekit.models.linear import init_like_nn_linear, linear_model

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "RNNLM",
    "GRUScratch",
    "LSTMScratch",
    "RNNScratch",
    "predict_chars",
    "recurrent_layer",
]

RNN, GRU, LSTM = nn.RNN, nn.GRU, nn.LSTM
Kind = Literal["rnn", "gru", "lstm"]


class RecurrentScratch(nn.Module):
    """A multi-layer, optionally bidirectional recurrent layer with the time loop in Python.

    Subclasses give ``num_gates`` and ``cell``, one time step of one layer and direction. Each layer
    first projects all its inputs at once, X W_ih^T + b_ih (T, B, G*H), adding b_hh there too where
    the cell only needs the sum (``fold_hidden_bias``); the loop then adds the recurrent part.
    Between layers, dropout with probability ``dropout`` (training only).
    """

    num_gates = 1
    num_states = 1  # the LSTM also carries a memory cell
    fold_hidden_bias = True  # the cell sees xw + b_hh as one term (not the GRU, whose reset gate scales b_hh)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        if num_layers < 1 or hidden_size < 1:
            raise ValueError(f"num_layers and hidden_size must be at least 1, got {num_layers} and {hidden_size}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.dropout, self.bidirectional = batch_first, dropout, bidirectional
        num_directions = 2 if bidirectional else 1
        bound = 1 / math.sqrt(hidden_size)  # torch's init: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
        GH = self.num_gates * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * num_directions
            for suffix in self._suffixes(layer):
                for name, shape in ((f"weight_ih{suffix}", (GH, layer_input)), (f"weight_hh{suffix}", (GH, hidden_size)),
                                    (f"bias_ih{suffix}", (GH,)), (f"bias_hh{suffix}", (GH,))):
                    self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"] if self.bidirectional else [f"_l{layer}"]

    def cell(self, xw: torch.Tensor, state: tuple[torch.Tensor, ...], W_hh: torch.Tensor,
             b_hh: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One time step: the input projection xw (B, G*H) and the state -> the new state. With
        ``fold_hidden_bias``, xw already holds b_hh and the cell ignores its ``b_hh``."""
        raise NotImplementedError(f"{type(self).__name__} must define cell()")

    def forward(self, inputs: torch.Tensor, state=None):
        """inputs (T, B, I), or (B, T, I) with ``batch_first``; state (L*D, B, H) (a pair of them
        for the LSTM) or None for zeros. Returns the last layer's outputs (T, B, D*H) (or
        (B, T, D*H)) and the final state of every layer and direction, as torch's layers do."""
        X = inputs.transpose(0, 1) if self.batch_first else inputs  # (T, B, I)
        T, B, _ = X.shape
        if state is None:
            zeros = X.new_zeros(self.num_layers * (2 if self.bidirectional else 1), B, self.hidden_size)
            states = (zeros,) * self.num_states
        else:
            states = tuple(state) if self.num_states > 1 else (state,)
        finals = []  # final state of each (layer, direction), in torch's order
        for layer in range(self.num_layers):
            if layer > 0 and self.training and self.dropout > 0:
                keep = (torch.rand_like(X) >= self.dropout).to(X.dtype)
                X = X * keep / (1 - self.dropout)  # inverted dropout (D2L §5.6)
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                k = len(finals)
                W_ih, W_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
                b_ih, b_hh = getattr(self, f"bias_ih{suffix}"), getattr(self, f"bias_hh{suffix}")
                # (T, B, G*H), all time steps at once; unbind (not XW[t]) so that backward
                # assembles the gradient once instead of once per step
                bias = b_ih + b_hh if self.fold_hidden_bias else b_ih
                XW = torch.addmm(bias, X.reshape(T * B, -1), W_ih.T).reshape(T, B, -1).unbind(0)
                s = tuple(h[k] for h in states)  # (B, H) each
                steps = range(T - 1, -1, -1) if direction == 1 else range(T)  # the reverse direction reads backwards
                Hs = [None] * T
                for t in steps:
                    s = self.cell(XW[t], s, W_hh, b_hh)
                    Hs[t] = s[0]
                outputs.append(torch.stack(Hs))  # (T, B, H)
                finals.append(s)
            X = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]  # (T, B, D*H)
        output = X.transpose(0, 1) if self.batch_first else X
        final = tuple(torch.stack([f[i] for f in finals]) for i in range(self.num_states))  # (L*D, B, H) each
        return output, final if self.num_states > 1 else final[0]


class RNNScratch(RecurrentScratch):
    """Elman RNN (D2L §8.4.2): H_t = tanh(X_t W_ih^T + b_ih + H_{t-1} W_hh^T + b_hh)."""

    def cell(self, xw, state, W_hh, b_hh):
        (H,) = state
        return (torch.tanh(torch.addmm(xw, H, W_hh.T)),)  # xw holds b_ih + b_hh


class GRUScratch(RecurrentScratch):
    """Gated recurrent unit (D2L §9.1), gates in torch's order (r, z, n):

    R = sigmoid(X W_xr + H W_hr + b_r)                  reset gate
    Z = sigmoid(X W_xz + H W_hz + b_z)                  update gate
    H~ = tanh(X W_xh + R * (H W_hh + b_hh) + b_xh)      candidate state
    H' = Z * H + (1 - Z) * H~

    The book's candidate is tanh(X W_xh + (R * H) W_hh + b_h): the reset gate before the matrix
    product. cuDNN and torch apply it after (as above), which lets the H W_hh product of all gates
    be one matrix multiply; with the reset gate at 1 the two agree.
    """

    num_gates = 3
    fold_hidden_bias = False

    def cell(self, xw, state, W_hh, b_hh):
        (H,) = state
        x_r, x_z, x_n = xw.chunk(3, dim=-1)  # (B, H) each
        h_r, h_z, h_n = torch.addmm(b_hh, H, W_hh.T).chunk(3, dim=-1)
        R = torch.sigmoid(x_r + h_r)
        Z = torch.sigmoid(x_z + h_z)
        H_tilde = torch.tanh(x_n + R * h_n)
        return (Z * H + (1 - Z) * H_tilde,)


class LSTMScratch(RecurrentScratch):
    """Long short-term memory (D2L §9.2), gates in torch's order (i, f, g, o):

    I = sigmoid(X W_xi + H W_hi + b_i)    input gate
    F = sigmoid(X W_xf + H W_hf + b_f)    forget gate
    C~ = tanh(X W_xc + H W_hc + b_c)      candidate memory
    O = sigmoid(X W_xo + H W_ho + b_o)    output gate
    C' = F * C + I * C~,   H' = O * tanh(C')

    The state is the pair (H, C), as for ``nn.LSTM``.
    """

    num_gates = 4
    num_states = 2

    def cell(self, xw, state, W_hh, b_hh):
        H, C = state
        i, f, g, o = torch.addmm(xw, H, W_hh.T).chunk(4, dim=-1)  # (B, H) each; xw holds b_ih + b_hh
        C = torch.sigmoid(f) * C + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(C), C


_LAYERS = {
    "scratch": {"rnn": RNNScratch, "gru": GRUScratch, "lstm": LSTMScratch},
    "fast": {"rnn": RNN, "gru": GRU, "lstm": LSTM},
}


def recurrent_layer(kind: Kind, impl: str, input_size: int, hidden_size: int, num_layers: int = 1, *,
                    batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False) -> nn.Module:
    """An RNN, GRU or LSTM layer, scratch or fast."""
    if impl not in _LAYERS:
        raise ValueError(f"unknown impl {impl!r}; choose scratch or fast")
    if kind not in _LAYERS[impl]:
        raise ValueError(f"unknown recurrent layer {kind!r}; choose one of {', '.join(_LAYERS[impl])}")
    return _LAYERS[impl][kind](input_size, hidden_size, num_layers, batch_first=batch_first, dropout=dropout,
                               bidirectional=bidirectional)


class RNNLM(nn.Module):
    """A language model (D2L §8.5-8.6): one-hot tokens -> recurrent layer -> linear output, the
    output layer initialised as ``nn.Linear`` is, U(-1/sqrt(D*H), 1/sqrt(D*H)).

    forward(X (B, T) token indices, state or None) -> (logits (T, B, V), state): time-major, the
    way the recurrent layer produces them; position (t, b) predicts token X[b, t + 1].
    """

    def __init__(self, rnn: nn.Module, vocab_size: int, impl: str):
        super().__init__()
        if rnn.batch_first:
            raise ValueError("RNNLM feeds the recurrent layer time-major inputs; build it with batch_first=False")
        self.rnn = rnn
        self.vocab_size = vocab_size
        num_outputs = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.output = init_like_nn_linear(linear_model((num_outputs,), vocab_size, impl))  # as the book's RNNModel (§8.6)

    def forward(self, X: torch.Tensor, state=None):
        inputs = nn.functional.one_hot(X.T, self.vocab_size).to(self.output.weight.dtype)  # (T, B, V)
        Y, state = self.rnn(inputs, state)  # (T, B, D*H)
        T, B, DH = Y.shape
        return self.output(Y.reshape(T * B, DH)).reshape(T, B, -1), state


@torch.no_grad()
def predict_chars(prefix: str, num_preds: int, model: RNNLM, vocab: Vocab) -> str:
    """``prefix`` followed by ``num_preds`` greedily predicted characters (D2L §8.5.5).

    Warm-up: the prefix runs through the model first, so the state holds it before predicting.
    """
    if not prefix:
        raise ValueError("predict_chars needs a non-empty prefix to warm the state up with")
    model.eval()
    device = next(model.parameters()).device
    tokens = vocab[list(prefix)]
    logits, state = model(torch.tensor([tokens], device=device))  # (T, 1, V)
    for _ in range(num_preds):
        tokens.append(int(logits[-1, 0].argmax()))
        logits, state = model(torch.tensor([[tokens[-1]]], device=device), state)
    return "".join(vocab.to_tokens(tokens))
