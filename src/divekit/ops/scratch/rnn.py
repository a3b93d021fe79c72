"""Recurrent layers and what training them needs, from tensor operations: the RNN (D2L §8.4-8.5),
GRU (§9.1), LSTM (§9.2), deep (§9.3) and bidirectional (§9.4) variants, gradient clipping
(§8.5.5) and the masked loss of sequence-to-sequence learning (§9.7.3).

Letters: T time steps, B batch size, I input size, H hidden size, G gates per cell (1 RNN, 3 GRU,
4 LSTM), L layers, D directions (1 or 2), V vocabulary size.

The layers write the time loop and the gate equations out. They take ``nn.RNN``'s, ``nn.GRU``'s
and ``nn.LSTM``'s arguments, return the same ``(output, state)``, and have the same parameter names
and shapes (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...; the G gate blocks stacked in torch's
order), drawn in torch's order from U(-1/sqrt(H), 1/sqrt(H)): at the same seed a scratch layer and
its torch twin start identical, and a state dict loads either way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import torch
from torch import nn

from divekit.ops.scratch.activations import relu
from divekit.ops.scratch.losses import cross_entropy
from divekit.ops.scratch.regularization import dropout as dropout_fn

__all__ = ["GRU", "LSTM", "RNN", "clip_grad_norm", "masked_cross_entropy", "sequence_mask"]


class _Recurrent(nn.Module):
    """A multi-layer, optionally bidirectional recurrent layer with the time loop in Python.

    Subclasses give ``num_gates`` and ``cell``, one time step of one layer and direction. Each layer
    first projects all its inputs at once, X W_ih^T + b_ih (T, B, G*H), adding b_hh there too where
    the cell only needs the sum (``fold_hidden_bias``); the loop then adds the recurrent part.
    Between layers, dropout with probability ``dropout`` (training only).
    """

    num_gates = 1
    num_states = 1  # the LSTM also carries a memory cell
    fold_hidden_bias = True  # the cell sees xw + b_hh as one term (not the GRU, whose reset gate scales b_hh)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        if num_layers < 1 or hidden_size < 1:
            raise ValueError(f"num_layers and hidden_size must be at least 1, got {num_layers} and {hidden_size}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers, self.bias = input_size, hidden_size, num_layers, bias
        self.batch_first, self.dropout, self.bidirectional = batch_first, dropout, bidirectional
        num_directions = 2 if bidirectional else 1
        bound = 1 / math.sqrt(hidden_size)  # torch's init: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
        GH = self.num_gates * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * num_directions
            for suffix in self._suffixes(layer):
                shapes = [(f"weight_ih{suffix}", (GH, layer_input)), (f"weight_hh{suffix}", (GH, hidden_size))]
                if bias:
                    shapes += [(f"bias_ih{suffix}", (GH,)), (f"bias_hh{suffix}", (GH,))]
                for name, shape in shapes:
                    self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"] if self.bidirectional else [f"_l{layer}"]

    def cell(self, xw: torch.Tensor, state: tuple[torch.Tensor, ...], W_hh: torch.Tensor,
             b_hh: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """One time step: the input projection xw (B, G*H) and the state -> the new state. With
        ``fold_hidden_bias``, xw already holds b_hh and the cell ignores its ``b_hh``."""
        raise NotImplementedError(f"{type(self).__name__} must define cell()")

    def forward(self, inputs: torch.Tensor, state=None):
        """inputs (T, B, I), or (B, T, I) with ``batch_first``, or one sequence (T, I); state
        (L*D, B, H) ((L*D, H) for one sequence; a pair of them for the LSTM) or None for zeros.
        Returns the last layer's outputs (T, B, D*H) (or (B, T, D*H), or (T, D*H)) and the final
        state of every layer and direction, as torch's layers do."""
        if inputs.dim() == 2:  # one sequence, as torch's layers take it: run it as a batch of one
            as_tuple = lambda st: tuple(st) if self.num_states > 1 else (st,)  # noqa: E731
            as_state = lambda hs: tuple(hs) if self.num_states > 1 else hs[0]  # noqa: E731
            state = None if state is None else as_state([h.unsqueeze(1) for h in as_tuple(state)])
            output, final = self.forward(inputs.unsqueeze(0 if self.batch_first else 1), state)
            return output.squeeze(0 if self.batch_first else 1), as_state([h.squeeze(1) for h in as_tuple(final)])
        X = inputs.transpose(0, 1) if self.batch_first else inputs  # (T, B, I)
        T, B, _ = X.shape
        shape = (self.num_layers * (2 if self.bidirectional else 1), B, self.hidden_size)
        if state is None:
            states = (X.new_zeros(shape),) * self.num_states
        else:
            states = tuple(state) if self.num_states > 1 else (state,)
            for h in states:
                if tuple(h.shape) != shape:  # torch's check and words: a wrong batch would broadcast silently
                    raise ValueError(f"Expected hidden size {shape}, got {list(h.shape)}")
        finals = []  # final state of each (layer, direction), in torch's order
        for layer in range(self.num_layers):
            if layer > 0:
                X = dropout_fn(X, self.dropout, self.training)  # between layers (D2L §9.3)
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                k = len(finals)
                W_ih, W_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
                b_ih, b_hh = (getattr(self, f"bias_ih{suffix}"), getattr(self, f"bias_hh{suffix}")) if self.bias else (None, None)
                # (T, B, G*H), all time steps at once; unbind (not XW[t]) so that backward
                # assembles the gradient once instead of once per step
                XW = X.reshape(T * B, -1) @ W_ih.T
                if self.bias:
                    XW = XW + (b_ih + b_hh if self.fold_hidden_bias else b_ih)
                XW = XW.reshape(T, B, -1).unbind(0)
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

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}, bidirectional={self.bidirectional}")


class RNN(_Recurrent):
    """Elman RNN (D2L §8.4.2): H_t = phi(X_t W_ih^T + b_ih + H_{t-1} W_hh^T + b_hh), phi = tanh or ReLU."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        self.nonlinearity = nonlinearity

    def cell(self, xw, state, W_hh, b_hh):
        (H,) = state
        Z = xw + H @ W_hh.T  # xw holds b_ih + b_hh
        return (torch.tanh(Z) if self.nonlinearity == "tanh" else relu(Z),)  # relu: derivative 0 at 0, as torch's


class GRU(_Recurrent):
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
        hw = H @ W_hh.T if b_hh is None else torch.addmm(b_hh, H, W_hh.T)
        h_r, h_z, h_n = hw.chunk(3, dim=-1)
        R = torch.sigmoid(x_r + h_r)
        Z = torch.sigmoid(x_z + h_z)
        H_tilde = torch.tanh(x_n + R * h_n)
        return (Z * H + (1 - Z) * H_tilde,)


class LSTM(_Recurrent):
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


@torch.no_grad()
def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale all gradients together so that their global norm is at most ``max_norm`` (D2L §8.5.5).

    g <- min(1, theta / ||g||) g, with ||g|| the L2 norm of every gradient stacked into one vector;
    the direction of the update is kept, only its length is capped. Returns ||g|| before clipping.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    dtype = functools.reduce(torch.promote_types, (g.dtype for g in grads), torch.float32)  # float64 stays float64
    norm = torch.sqrt(sum((g.to(dtype) ** 2).sum() for g in grads))
    scale = torch.clamp(max_norm / norm, max=1.0)  # a tensor: no host sync to decide whether to clip
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return norm


def sequence_mask(valid_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """mask[b, t] = t < valid_lens[b], a (B, T) boolean tensor (D2L §9.7.3)."""
    return torch.arange(max_len, device=valid_lens.device)[None, :] < valid_lens[:, None]


def masked_cross_entropy(logits: torch.Tensor, Y: torch.Tensor, valid_lens: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (B, T) of logits (B, T, V) for targets Y (B, T), zero on padding
    (positions t >= valid_lens[b]). Average with ``.sum() / valid_lens.sum()`` to get the loss per
    real token; the book's ``.mean(dim=1)`` also divides by the padding (d2l-en#2076)."""
    B, T, V = logits.shape
    losses = cross_entropy(logits.reshape(B * T, V), Y.reshape(B * T)).reshape(B, T)
    return losses * sequence_mask(valid_lens, T)
