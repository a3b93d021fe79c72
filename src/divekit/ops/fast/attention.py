"""Attention on PyTorch's kernels: twins of :mod:`divekit.ops.scratch.attention` (D2L §10.2-§10.6).

Same names, signatures, parameter names, shapes and initialisation as the scratch twins, so state
dicts load across. Dot-product and multi-head attention run ``F.scaled_dot_product_attention``
(a fused kernel) with a boolean mask from :func:`valid_lens_to_mask` (True = the key takes part,
SDPA's convention). SDPA never returns the weights, and on a CPU it applies dropout to them only in
its unfused steps: with ``record_weights = True``, or with dropout in training on a CPU, these
layers take those steps themselves (``torch.softmax`` then a batched matmul; as fast as SDPA's
with dropout, measured on the book's Transformer shapes), which also lets them pad rows of fewer
than 16 keys for the CPU's softmax kernel (see ``_softmax_where``); in training, with dropout and
no weights kept, as one autograd node with a backward of its own (``_DroppedAttention``; for
multi-head self-attention, from the projections to the merged heads, ``_DroppedSelfAttention``),
bit for bit the numbers of those steps through autograd. On a GPU, attention dropout is passed to
SDPA, whose memory-efficient kernel applies it fused (not run here: no GPU).
Letters, masks and weights are described in the scratch module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import forward_ad

from divekit.ops.fast.regularization import Dropout, dropout_mask
from divekit.ops.scratch.attention import (TokenPacking, _check_embed_dim, _check_num_heads,
                                           _check_packed_self_attention, _check_projected, _check_qkv, _positions,
                                           sinusoid_table, valid_lens_to_mask)

__all__ = ["AdditiveAttention", "DotProductAttention", "MultiHeadAttention", "PositionalEncoding", "TokenPacking",
           "masked_softmax", "sinusoid_table", "valid_lens_to_mask"]
SHARED = ("TokenPacking", "sinusoid_table", "valid_lens_to_mask")  # the scratch objects: nothing faster to call


SHORT_ROWS = 16  # PyTorch's CPU softmax is ~10x slower on rows shorter than one AVX-512 vector (16 floats)
BMM_LOOP_BELOW = 400  # multiply-adds a product under which PyTorch's CPU bmm runs a scalar loop, not BLAS


def _softmax_where(X: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``torch.softmax`` over the keys where ``mask`` is True; exactly 0 elsewhere and on rows with none.

    On the CPU, rows of fewer than 16 keys are padded to 16 with -inf (weight exactly 0, and never tied
    with a score, not even the masked keys' dtype minimum) first: the kernel then takes its vectorised
    path (measured 5-10x faster at 10 keys, the book's)."""
    K = X.shape[-1]
    hidden = None if mask is None else ~mask
    if hidden is not None:
        X = X.masked_fill(hidden, torch.finfo(X.dtype).min)
    if X.device.type == "cpu" and K < SHORT_ROWS:
        X = F.pad(X, (0, SHORT_ROWS - K), value=-math.inf)  # (..., Q, 16)
    weights = torch.softmax(X, dim=-1)[..., :K]  # (..., Q, K)
    return weights if hidden is None else weights.masked_fill(hidden, 0.0)  # a row with no valid key: 0, not 1/K


def masked_softmax(X: torch.Tensor, valid_lens: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax of scores X (B, Q, K) over the first ``valid_lens`` keys ((B,) or (B, Q)); the others
    get exactly 0, and a row with valid length 0 is all zeros (D2L §10.3.1)."""
    if X.dim() != 3:
        raise ValueError(f"masked_softmax takes scores (B, Q, K), got shape {tuple(X.shape)}")
    mask = None if valid_lens is None else valid_lens_to_mask(valid_lens, *X.shape)  # (B, Q, K)
    return _softmax_where(X, mask)


def _scaled_dot_product(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
                        dropout: Dropout, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(q k^T / sqrt(D)) v over the last two axes; the weights (before dropout) only if asked.

    On a CPU, PyTorch's bmm computes a product of fewer than ``BMM_LOOP_BELOW`` multiply-adds
    (Q * K * D here, in all six products of the forward and backward passes) in a scalar loop, 2-3x
    slower than its BLAS call for the same shapes: the book's Transformer, whose batches are cut to
    their longest sentence, meets 5-7 tokens and 8 features a head there. Such heads get zero features
    up to that size first, where at most doubling them reaches it (1-4 tokens would need more, and ran
    slower padded): the same scores and outputs up to rounding (the extra output features are dropped)
    and the same dropout draws, with every product in BLAS (the book's training epoch: bmm 18 -> 12 ms)."""
    p = dropout.p if dropout.training else 0.0
    if not need_weights and (p == 0 or queries.device.type != "cpu"):  # SDPA's kernels; see the module note
        return F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, dropout_p=p), None
    if not need_weights and _node_takes(dropout, queries, keys, values):
        return _DroppedAttention.apply(queries, keys, values, mask, p)[..., :values.shape[-1]], None
    D, V = queries.shape[-1], values.shape[-1]
    scale = math.sqrt(D)
    queries, keys, values = _padded_for_blas(queries, keys, values)  # zero features: see the docstring
    scores = (queries / scale) @ keys.transpose(-2, -1)  # (..., Q, K), scaled first as SDPA
    weights = _softmax_where(scores, mask)  # (..., Q, K)
    return (dropout(weights) @ values)[..., :V], (weights if need_weights else None)  # (..., Q, V)


def _padded_for_blas(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q (..., Q, D), k (..., K, D), v (..., K, V) with zero features up to :func:`_blas_width` on a CPU where
    it gives one (see :func:`_scaled_dot_product`); else as they are."""
    (Q, D), (K, V) = queries.shape[-2:], values.shape[-2:]
    width = _blas_width(Q, K, min(D, V)) if queries.device.type == "cpu" else None
    if width is None:
        return queries, keys, values
    return tuple(F.pad(x, (0, max(0, width - x.shape[-1]))) for x in (queries, keys, values))


def _node_takes(dropout: nn.Module, *tensors: torch.Tensor) -> bool:
    """Whether the dropout nodes (:class:`_DroppedAttention`, :class:`_DroppedSelfAttention`) give what
    the plain steps would, bit for bit: this module's ``Dropout`` (not in place) with 0 < p < 1 in
    training, distinct float32/64 tensors on a CPU (autograd adds the gradients of one tensor given
    twice in an order of its own) with the same batch dimensions, each 3-D or contiguous (the layouts
    in which ``@`` multiplies them as they are), and none of what the nodes do not implement:
    hooks on the dropout module (the nodes never call it), autocast, ``torch.compile``'s tracing,
    torch.func's transforms, forward-mode AD. (Second derivatives: the nodes' backward refuses them.)"""
    first = tensors[0]
    return (type(dropout) is Dropout and dropout.training and not dropout.inplace and 0 < dropout.p < 1
            and not _hooked(dropout)
            and len({id(x) for x in tensors}) == len(tensors)
            and all(x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                    and (x.dim() == 3 or x.is_contiguous()) and x.shape[:-2] == first.shape[:-2] for x in tensors)
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and not torch._C._are_functorch_transforms_active() and forward_ad._current_level < 0)


def _hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run forward hooks, its own or every module's."""
    from torch.nn.modules import module as base

    return bool(module._forward_hooks or module._forward_pre_hooks or base._global_forward_hooks
                or base._global_forward_pre_hooks)


def _refuse_second_derivative() -> None:
    """The nodes' backward is not differentiable: with ``create_graph`` (grad mode on in the backward) say so
    at once, where ``once_differentiable`` would hand a second derivative zeros."""
    if torch.is_grad_enabled():
        raise RuntimeError("attention with dropout has no second derivative in its fast training node; "
                           "for one (create_graph=True, hvp, hessian), set the layer's record_weights = True")


def _attention_forward(ctx, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                       mask: torch.Tensor | None, p: float, features: int) -> torch.Tensor:
    """The dropout nodes' forward on heads padded for BLAS as they are to be multiplied, q (..., Q, D'),
    k (..., K, D'), v (..., K, V'), scaled by sqrt(``features``) (D, the width before padding) -> (P * M) v
    (..., Q, V'); keeps in ``ctx`` what :func:`_attention_backward` needs. The dropout factors M are 0
    where the mask hides a key, so with P the softmax (hidden keys' weights exactly 0, except on a row
    with no valid key, whose output and gradient M makes 0 as the plain steps do)."""
    K = keys.shape[-2]
    scale = math.sqrt(features)
    scaled = queries / scale                                                       # (..., Q, D')
    scores = scaled @ keys.transpose(-2, -1)                                       # (..., Q, K)
    hidden = None if mask is None else ~mask
    if hidden is not None:
        scores.masked_fill_(hidden, torch.finfo(scores.dtype).min)
    if K < SHORT_ROWS:  # see _softmax_where
        scores = F.pad(scores, (0, SHORT_ROWS - K), value=-math.inf)
    probs = torch.softmax(scores, dim=-1)                                          # (..., Q, max(K, 16))
    weights = probs[..., :K]                                                       # P (..., Q, K)
    factors = dropout_mask(weights, p)                                             # M (..., Q, K)
    if hidden is not None:
        factors.masked_fill_(hidden, 0.0)
    dropped = weights * factors
    ctx.save_for_backward(scaled, keys, values, probs, factors, dropped)
    ctx.scale = scale
    return dropped @ values                                                        # (..., Q, V')


def _attention_backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of :func:`_attention_forward`'s padded q, k, v from that of its output (..., Q, V'),
    contiguous: autograd's kernels on the operands its nodes would have (softmax's backward on the padded
    rows, the keys' product as bmm's backward takes it)."""
    scaled, keys, values, probs, factors, dropped = ctx.saved_tensors
    K = keys.shape[-2]
    grad_values = dropped.transpose(-2, -1) @ grad                                 # (..., K, V')
    grad_weights = (grad @ values.transpose(-2, -1)).mul_(factors)                # dP (..., Q, K)
    if probs.shape[-1] != K:
        grad_weights = F.pad(grad_weights, (0, probs.shape[-1] - K))               # (..., Q, 16)
    grad_scores = torch._softmax_backward_data(grad_weights, probs, -1, probs.dtype)[..., :K]  # dS
    grad_queries = (grad_scores @ keys).div_(ctx.scale)                           # (..., Q, D')
    grad_keys = (scaled.transpose(-2, -1) @ grad_scores).transpose(-2, -1)         # (..., K, D'), as autograd's
    return grad_queries, grad_keys, grad_values


class _DroppedAttention(torch.autograd.Function):
    """:func:`_scaled_dot_product`'s steps with attention dropout on a CPU (where :func:`_node_takes`) as
    one autograd node with a backward of its own: the outputs, gradients and dropout draws
    (:func:`dropout_mask`, one stream) of autograd's ~15 nodes bit for bit (the same kernels on the
    same operands), in ~20 operations instead of ~30 and without the graph's bookkeeping (the book's
    Transformer heads: forward and backward 1.07x-1.13x faster).

    forward(q (..., Q, D), k (..., K, D), v (..., K, V), mask (..., Q, K) or None, p) -> (..., Q, V'), V' >= V
    the values' features padded for BLAS, the first V the output (sliced by the caller, outside the node,
    so that the output is an ordinary view)."""

    @staticmethod
    def forward(ctx, queries, keys, values, mask, p):
        D, V = queries.shape[-1], values.shape[-1]
        ctx.sizes = D, V
        return _attention_forward(ctx, *_padded_for_blas(queries, keys, values), mask, p, D)  # (..., Q, V')

    @staticmethod
    def backward(ctx, grad):
        _refuse_second_derivative()
        D, V = ctx.sizes
        grad_queries, grad_keys, grad_values = _attention_backward(ctx, grad)
        return grad_queries[..., :D], grad_keys[..., :D], grad_values[..., :V], None, None


class _DroppedSelfAttention(torch.autograd.Function):
    """Multi-head self-attention with dropout on a CPU (where :func:`_node_takes`) from the projections
    side by side to the heads merged, as one autograd node: :class:`_DroppedAttention` with the heads'
    split (:func:`_heads`), their padding for BLAS and their merge inside it, bit for bit the same
    numbers and draws as those steps through autograd (~12 nodes fewer a call).

    forward(projected (B, T, 3E), mask (B, 1, T, T) or None, p, num_heads) -> (B, T, E)."""

    @staticmethod
    def forward(ctx, projected, mask, p, num_heads):
        B, T, width = projected.shape
        Dh = width // (3 * num_heads)
        split = _split_heads(projected, num_heads, 3)                              # (3, B, H, T, Dh)
        padded = _blas_width(T, T, Dh)
        heads = (split if padded is None else F.pad(split, (0, padded - Dh))).contiguous()  # (3, B, H, T, Dh')
        out = _attention_forward(ctx, *heads.unbind(0), mask, p, Dh)               # (B, H, T, Dh')
        ctx.heads = num_heads, Dh, heads.shape[-1]                                 # Dh' the padded width
        return out[..., :Dh].transpose(1, 2).reshape(B, T, num_heads * Dh)        # (B, T, H, Dh) -> (B, T, E)

    @staticmethod
    def backward(ctx, grad):
        _refuse_second_derivative()
        (H, Dh, padded), (B, T, E) = ctx.heads, grad.shape
        heads_grad = grad.reshape(B, T, H, Dh).transpose(1, 2)                     # (B, H, T, Dh)
        heads_grad = F.pad(heads_grad, (0, padded - Dh)) if padded != Dh else heads_grad.contiguous()
        grad_projected = grad.new_empty(B, T, 3, H, Dh)
        split = grad_projected.permute(2, 0, 3, 1, 4)                               # (3, B, H, T, Dh)
        for part, part_grad in zip(split, _attention_backward(ctx, heads_grad)):
            part.copy_(part_grad[..., :Dh])
        return grad_projected.view(B, T, 3 * E), None, None, None


class AdditiveAttention(nn.Module):
    """Additive attention (D2L §10.3.2) from ``nn.Linear`` layers ``W_k``, ``W_q``, ``w_v`` (no bias)."""

    def __init__(self, key_size: int, query_size: int, num_hiddens: int, dropout: float):
        super().__init__()
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = Dropout(dropout)
        self.record_weights, self.attention_weights = True, None

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        _check_qkv(queries, keys, values)
        features = torch.tanh(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))  # (B, Q, K, h)
        weights = masked_softmax(self.w_v(features).squeeze(-1), valid_lens)  # (B, Q, K)
        self.attention_weights = weights.detach() if self.record_weights else None
        return _weighted_sum(self.dropout(weights), values)  # (B, Q, V)


def _weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """weights (B, Q, K) @ values (B, K, V) -> (B, Q, V); on a CPU, values whose product falls under
    bmm's scalar-loop size get zero features first, where at most doubling them reaches BLAS's (see
    :func:`_scaled_dot_product`): a Bahdanau decoder's step (one query, 10 keys, 32 features) ran 23 us
    against 6 us."""
    (Q, K), V = weights.shape[-2:], values.shape[-1]
    width = _blas_width(Q, K, V) if values.device.type == "cpu" else None
    if width is not None:
        return torch.bmm(weights, F.pad(values, (0, width - V)))[..., :V]
    return torch.bmm(weights, values)


def _blas_width(Q: int, K: int, features: int) -> int | None:
    """The features a (Q x K) attention product's operands are padded to on a CPU so that bmm reaches
    ``BMM_LOOP_BELOW`` multiply-adds (its BLAS call), where at most doubling ``features`` does; else None."""
    width = -(-BMM_LOOP_BELOW // (Q * K)) if Q * K else 0
    return width if features < width <= 2 * features else None


class DotProductAttention(nn.Module):
    """Scaled dot-product attention (D2L §10.3.3) on ``F.scaled_dot_product_attention``."""

    def __init__(self, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.record_weights, self.attention_weights = False, None

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        _check_qkv(queries, keys, values)
        if queries.shape[-1] != keys.shape[-1]:
            raise ValueError(f"dot-product attention needs queries and keys of one size D, "
                             f"got {queries.shape[-1]} and {keys.shape[-1]}")
        (B, Q, _), K = queries.shape, keys.shape[1]
        mask = None if valid_lens is None else valid_lens_to_mask(valid_lens, B, Q, K)  # (B, Q, K)
        output, weights = _scaled_dot_product(queries, keys, values, mask, self.dropout, self.record_weights)
        self.attention_weights = None if weights is None else weights.detach()
        return output  # (B, Q, V)


def _split_heads(projected: torch.Tensor, num_heads: int, parts: int) -> torch.Tensor:
    """Projections side by side (B, T, parts * E) -> a view (parts, B, H, T, Dh) of them."""
    B, T, width = projected.shape
    return projected.view(B, T, parts, num_heads, width // (parts * num_heads)).permute(2, 0, 3, 1, 4)


def _heads(projected: torch.Tensor, num_heads: int, parts: int) -> tuple[torch.Tensor, ...]:
    """Projections side by side (B, T, parts * E) -> ``parts`` tensors (B, H, T, Dh), each contiguous, in
    one copy: the batched matmuls then take them as they are (from strided views they copy each one)."""
    return _split_heads(projected, num_heads, parts).contiguous().unbind(0)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (D2L §10.5) with ``nn.MultiheadAttention``'s parameters (batch first):
    ``F.linear`` projections, heads split with a view, one SDPA call for all heads; ``project_kv`` and
    ``attend`` split it for a key/value cache, as in the scratch twin."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        _check_num_heads(embed_dim, num_heads)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's _reset_parameters
        if bias:
            nn.init.zeros_(self.out_proj.bias)
        self.dropout = Dropout(dropout)
        self.record_weights, self.attention_weights = False, None

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None, packing: TokenPacking | None = None) -> torch.Tensor:
        if packing is not None:  # packed tokens (n, E): project them, pad q, k, v for SDPA, pack the heads
            _check_packed_self_attention(queries, keys, values)
            _check_embed_dim(self.embed_dim, queries)
            qkv = packing.pad(F.linear(queries, self.in_proj_weight, self.in_proj_bias))  # (n, 3E) -> (B, Q, 3E)
            if self._self_node_takes(qkv):
                return self.out_proj(packing.pack(self._self_node(qkv, packing.valid_lens)))  # (n, E)
            return self._attend_heads(*_heads(qkv, self.num_heads, 3), packing.valid_lens, packing)
        _check_qkv(queries, keys, values)
        _check_embed_dim(self.embed_dim, queries, keys, values)
        if queries is keys and keys is values:
            return self.self_attend(queries, valid_lens)[0]
        return self.attend(queries, *self.project_kv(keys, values), valid_lens)

    def self_attend(self, X: torch.Tensor, valid_lens: torch.Tensor | None = None):
        """Self-attention of X (B, T, E) and the heads' keys and values (B, H, T, Dh) for a cache (see the
        scratch twin), from one (3E, E) projection (nanoGPT's c_attn)."""
        _check_embed_dim(self.embed_dim, X)
        projected = F.linear(X, self.in_proj_weight, self.in_proj_bias)  # (B, T, 3E)
        if self._self_node_takes(projected):  # training on a CPU: one node; the cache's k, v as views
            _, k, v = _split_heads(projected, self.num_heads, 3)  # each (B, H, T, Dh)
            return self.out_proj(self._self_node(projected, valid_lens)), (k, v)
        q, k, v = _heads(projected, self.num_heads, 3)  # (B, H, T, Dh)
        return self._attend_heads(q, k, v, valid_lens), (k, v)

    def _self_node_takes(self, projected: torch.Tensor) -> bool:
        return not self.record_weights and _node_takes(self.dropout, projected)

    def _self_node(self, projected: torch.Tensor, valid_lens: torch.Tensor | None) -> torch.Tensor:
        """The merged heads (B, T, E) of self-attention over projected (B, T, 3E), by :class:`_DroppedSelfAttention`."""
        B, T, _ = projected.shape
        mask = None if valid_lens is None else valid_lens_to_mask(valid_lens, B, T, T)[:, None]  # (B, 1, T, T)
        self.attention_weights = None
        return _DroppedSelfAttention.apply(projected, mask, self.dropout.p, self.num_heads)

    def project_kv(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads' keys and values, each (B, H, K, Dh) (see the scratch twin)."""
        E, H = self.embed_dim, self.num_heads
        _check_embed_dim(E, keys, values)
        w_kv = self.in_proj_weight[E:]  # (2E, E): W_k over W_v
        b_kv = None if self.in_proj_bias is None else self.in_proj_bias[E:]
        if keys is values:  # a decoder's self-attention or its attention over the encoder: one matmul
            return _heads(F.linear(keys, w_kv, b_kv), H, 2)  # each (B, H, K, Dh)
        (w_k, w_v), (b_k, b_v) = w_kv.chunk(2), (None, None) if b_kv is None else b_kv.chunk(2)
        return _heads(F.linear(keys, w_k, b_k), H, 1)[0], _heads(F.linear(values, w_v, b_v), H, 1)[0]

    def attend(self, queries: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of queries (B, Q, E) over projected keys and values k, v (B, H, K, Dh) -> (B, Q, E)."""
        E, H = self.embed_dim, self.num_heads
        _check_embed_dim(E, queries)
        _check_projected(queries, k, v, H, E // H)
        w_q = self.in_proj_weight[:E]  # (E, E)
        b_q = None if self.in_proj_bias is None else self.in_proj_bias[:E]
        return self._attend_heads(_heads(F.linear(queries, w_q, b_q), H, 1)[0], k, v, valid_lens)

    def _attend_heads(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid_lens: torch.Tensor | None,
                      packing: TokenPacking | None = None) -> torch.Tensor:
        """The heads' queries q (B, H, Q, Dh), keys and values k, v (B, H, K, Dh) -> the output projection of
        the heads (B, Q, E), or of the real positions' heads only (n, E) with ``packing``."""
        E = self.embed_dim
        (B, _, Q, _), K = q.shape, k.shape[2]
        mask = None if valid_lens is None else valid_lens_to_mask(valid_lens, B, Q, K)[:, None]  # (B, 1, Q, K)
        heads, weights = _scaled_dot_product(q, k, v, mask, self.dropout, self.record_weights)  # (B, H, Q, Dh)
        self.attention_weights = None if weights is None else weights.detach()  # (B, H, Q, K)
        merged = heads.transpose(1, 2).reshape(B, Q, E)  # (B, Q, H, Dh) -> (B, Q, E)
        return self.out_proj(merged if packing is None else packing.pack(merged))  # (B, Q, E) or (n, E)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, bias={self.in_proj_bias is not None}"


class PositionalEncoding(nn.Module):
    """X + P[offset:offset + T], then dropout (D2L §10.6.3); P the same non-persistent sinusoid buffer."""

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.register_buffer("P", sinusoid_table(max_len, num_hiddens)[None], persistent=False)  # (1, max_len, d)

    def forward(self, X: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.dropout(X + _positions(self.P, X, offset))
