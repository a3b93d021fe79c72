"""Attention from tensor operations (D2L §10.2-§10.6): masked softmax, additive and scaled
dot-product scoring, multi-head attention and the sinusoidal positional encoding.

Letters: B batch size, Q queries, K key-value pairs, D features of a query and key (dot product),
V features of a value, E embedding size of multi-head attention, H heads, Dh = E / H features per
head, T sequence length, h hidden units of the additive scorer.

Attention pools the values with weights that sum to 1 over the keys (§10.1-§10.2):
    output[b, q] = sum_k alpha(q, k) v[b, k],   alpha(q, k) = softmax_k(a(q, k))
with a scoring function a: additive, w_v^T tanh(W_q q + W_k k) (§10.3.2), or scaled dot product,
q^T k / sqrt(D) (§10.3.3).

Masks. ``valid_lens`` says how many keys each query may look at: (B,) one length per batch row,
or (B, Q) one per query (a decoder's causal mask is valid_lens[b, q] = q + 1). It becomes a
boolean mask (B, Q, K), True where a key takes part (``F.scaled_dot_product_attention``'s
convention; ``nn.MultiheadAttention``'s ``key_padding_mask`` uses the opposite one). Masked keys
get weight exactly 0, and a query with no valid key at all (valid length 0) gets all-zero weights,
so its output is 0: not the uniform 1/K that d2l's ``-1e6`` fill gives (d2l-en PR #2423), and not
the NaN that fill gives in float16, where -1e6 is -inf (PyTorch's SDPA also returns zeros there).
The fill value is ``torch.finfo(dtype).min`` and the caller's scores are never written to.

Weights for heatmaps (§10.1): after a forward, ``layer.attention_weights`` holds the weights
(detached, before dropout) when ``layer.record_weights`` is True, else None. Additive attention
records by default (its weights are computed anyway); dot-product and multi-head attention
record only when asked, because the fast twins then leave the fused kernel for a slower path.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from divekit.ops.scratch.init import xavier_uniform_
from divekit.ops.scratch.regularization import Dropout
from divekit.ops.scratch.rnn import sequence_mask

__all__ = ["AdditiveAttention", "DotProductAttention", "MultiHeadAttention", "PositionalEncoding", "TokenPacking",
           "masked_softmax", "sinusoid_table", "valid_lens_to_mask"]


def valid_lens_to_mask(valid_lens: torch.Tensor, batch_size: int, num_queries: int, num_keys: int) -> torch.Tensor:
    """mask[b, q, k] = k < valid_lens[b] (valid_lens (B,)) or k < valid_lens[b, q] (valid_lens (B, Q)):
    a (B, Q, K) boolean tensor, True where key k takes part in query q's attention (D2L §10.3.1).
    Used by both twins, so they mask alike."""
    B, Q, K = batch_size, num_queries, num_keys
    if valid_lens.dim() == 1 and valid_lens.shape[0] == B:
        lens = valid_lens[:, None, None]  # (B, 1, 1): the same length for every query
    elif valid_lens.shape == (B, Q):
        lens = valid_lens[:, :, None]  # (B, Q, 1)
    else:
        raise ValueError(f"valid_lens must have shape (B,) = ({B},) or (B, Q) = ({B}, {Q}), "
                         f"got {tuple(valid_lens.shape)}")
    return (torch.arange(K, device=valid_lens.device) < lens).expand(B, Q, K)  # a view where lens is (B, 1, 1)


def _softmax_where(X: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax of X (..., Q, K) over its last axis, over the keys where ``mask`` (broadcastable to X)
    is True; exactly 0 elsewhere, and 0 on rows where no key is True."""
    if mask is not None:
        # A new tensor (the caller's X is untouched). The fill keeps masked scores out of the max,
        # and replaces whatever they held (inf, or huge padding scores whose exp would be inf and
        # turn the gradient into inf * 0 = NaN).
        X = X.masked_fill(~mask, torch.finfo(X.dtype).min)
    X_max = X.amax(dim=-1, keepdim=True).detach()  # softmax(x) = softmax(x - c): exp cannot overflow
    E = torch.exp(X - X_max)  # (..., Q, K), exactly 1 at each row's maximum
    if mask is not None:
        E = E * mask  # exactly 0 at masked keys; a row with no valid key is now all 0
    denom = E.sum(dim=-1, keepdim=True)  # (..., Q, 1), at least 1 on a row with a valid key
    return E / torch.where(denom > 0, denom, 1)  # a row with no valid key: 0 / 1 = 0, not 0 / 0 = NaN


def masked_softmax(X: torch.Tensor, valid_lens: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax of scores X (B, Q, K) over the keys, keeping only the first ``valid_lens`` keys of each
    query (D2L §10.3.1).

    ``valid_lens``: None (all keys), (B,) one length per batch row, or (B, Q) one per query.
    Keys k >= valid length get weight exactly 0; the others' weights sum to 1, so a fully valid row
    is the plain softmax. A row with valid length 0 is all zeros (no key to attend to: no weight).
    """
    if X.dim() != 3:
        raise ValueError(f"masked_softmax takes scores (B, Q, K), got shape {tuple(X.shape)}")
    mask = None if valid_lens is None else valid_lens_to_mask(valid_lens, *X.shape)  # (B, Q, K)
    return _softmax_where(X, mask)


class TokenPacking:
    """The real tokens of a padded batch, side by side ("unpadding", as NVIDIA's and MosaicBERT's BERT).

    For a batch of B sequences padded to T steps with ``valid_lens`` (B,), :meth:`pack` keeps the
    n = sum(valid_lens) real positions of a (B, T, ...) tensor as (n, ...), sequence by sequence, and
    :meth:`pad` puts an (n, ...) tensor back in place, zeros at padding; gradients flow through both.
    Layers that act on each position alone (projections, feed-forward networks, add & norm, dropout)
    then skip the padding, and self-attention pads only its projected queries, keys and values
    (``MultiHeadAttention(X, X, X, packing=...)``). Shared by both twins.
    """

    def __init__(self, valid_lens: torch.Tensor, num_steps: int):
        if valid_lens.dim() != 1 or bool(((valid_lens < 0) | (valid_lens > num_steps)).any()):
            raise ValueError(f"packing needs valid lengths (B,) between 0 and {num_steps}, got "
                             f"{valid_lens.tolist() if valid_lens.numel() <= 8 else tuple(valid_lens.shape)}")
        self.valid_lens, self.batch_size, self.num_steps = valid_lens, len(valid_lens), num_steps
        self.index = sequence_mask(valid_lens, num_steps).reshape(-1).nonzero().squeeze(1)  # (n,) of b * T + t

    def pack(self, X: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> its real positions (n, ...)."""
        if X.shape[:2] != (self.batch_size, self.num_steps):
            raise ValueError(f"pack takes a ({self.batch_size}, {self.num_steps}, ...) tensor, got {tuple(X.shape)}")
        return X.reshape(self.batch_size * self.num_steps, *X.shape[2:]).index_select(0, self.index)

    def pad(self, X: torch.Tensor) -> torch.Tensor:
        """Real positions (n, ...) -> (B, T, ...), zeros at padding."""
        if X.shape[0] != len(self.index):
            raise ValueError(f"pad takes the {len(self.index)} real positions (n, ...), got {tuple(X.shape)}")
        padded = X.new_zeros(self.batch_size * self.num_steps, *X.shape[1:]).index_copy(0, self.index, X)
        return padded.reshape(self.batch_size, self.num_steps, *X.shape[1:])


def _check_packed_self_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
    if not (queries is keys and keys is values and queries.dim() == 2):
        raise ValueError(f"with packing, attention is self-attention of packed tokens X (n, E): pass X three "
                         f"times, got shapes {tuple(queries.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}")


def _check_qkv(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
    """queries (B, Q, .), keys (B, K, .) and values (B, K, .) must be 3-D with matching B and K."""
    shapes = tuple(tuple(t.shape) for t in (queries, keys, values))
    three_d = all(len(shape) == 3 for shape in shapes)
    if not (three_d and shapes[0][0] == shapes[1][0] == shapes[2][0] and shapes[1][1] == shapes[2][1]):
        raise ValueError(f"attention takes queries (B, Q, .), keys (B, K, .), values (B, K, .), got shapes {shapes}")


class _Linear(nn.Module):
    """y = x W^T (+ b) on the last axis, with ``nn.Linear``'s parameter names, layout (W (out, in))
    and initialisation U(-1/sqrt(in), 1/sqrt(in)), so state dicts load into ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)  # = nn.Linear's kaiming_uniform_(a=sqrt(5))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = torch.einsum("...i,oi->...o", X, self.weight)  # (..., out)
        return Y if self.bias is None else Y + self.bias.to(Y.dtype)  # bf16 under autocast, as F.linear

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, bias={self.bias is not None}"


def _scaled_dot_product(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                        mask: torch.Tensor | None, dropout: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(D)) v over the last two axes (D2L §10.3.3): queries (..., Q, D),
    keys (..., K, D), values (..., K, V), mask broadcastable to (..., Q, K).
    Returns the output (..., Q, V) and the weights (..., Q, K) before dropout."""
    # Dividing by sqrt(D) keeps the scores' variance at 1 for unit-variance q and k, whatever D. The
    # queries are divided before the product (as SDPA scales): in float16 q . k may pass 65504 (inf)
    # where q . k / sqrt(D) does not.
    scores = torch.einsum("...qd,...kd->...qk", queries / math.sqrt(queries.shape[-1]), keys)  # (..., Q, K)
    weights = _softmax_where(scores, mask)  # (..., Q, K)
    return torch.einsum("...qk,...kv->...qv", dropout(weights), values), weights  # (..., Q, V)


class AdditiveAttention(nn.Module):
    """Additive attention (D2L §10.3.2): a(q, k) = w_v^T tanh(W_q q + W_k k), for queries and keys of
    different sizes. Parameters as in d2l: ``W_k`` (h, key_size), ``W_q`` (h, query_size), ``w_v`` (1, h),
    each an ``nn.Linear``-compatible ``.weight`` without bias, with ``nn.Linear``'s initialisation.

    forward(queries (B, Q, query_size), keys (B, K, key_size), values (B, K, V), valid_lens) -> (B, Q, V).
    Records ``attention_weights`` (B, Q, K) by default (see the module docstring).
    """

    def __init__(self, key_size: int, query_size: int, num_hiddens: int, dropout: float):
        super().__init__()
        self.W_k = _Linear(key_size, num_hiddens, bias=False)
        self.W_q = _Linear(query_size, num_hiddens, bias=False)
        self.w_v = _Linear(num_hiddens, 1, bias=False)
        self.dropout = Dropout(dropout)
        self.record_weights, self.attention_weights = True, None

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        _check_qkv(queries, keys, values)
        q, k = self.W_q(queries), self.W_k(keys)  # (B, Q, h), (B, K, h)
        features = torch.tanh(q[:, :, None, :] + k[:, None, :, :])  # (B, Q, K, h): every query with every key
        scores = self.w_v(features)[..., 0]  # (B, Q, K, 1) -> (B, Q, K)
        weights = masked_softmax(scores, valid_lens)  # (B, Q, K)
        self.attention_weights = weights.detach() if self.record_weights else None
        return torch.einsum("bqk,bkv->bqv", self.dropout(weights), values)  # (B, Q, V)


class DotProductAttention(nn.Module):
    """Scaled dot-product attention (D2L §10.3.3): softmax(Q K^T / sqrt(D)) V with masks.

    forward(queries (B, Q, D), keys (B, K, D), values (B, K, V), valid_lens) -> (B, Q, V).
    Dropout acts on the attention weights, in training only. Set ``record_weights = True`` to keep
    ``attention_weights`` (B, Q, K) (see the module docstring).
    """

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
        output, weights = _scaled_dot_product(queries, keys, values, mask, self.dropout)  # (B, Q, V), (B, Q, K)
        self.attention_weights = weights.detach() if self.record_weights else None
        return output


def _check_num_heads(embed_dim: int, num_heads: int) -> None:
    if num_heads < 1 or embed_dim % num_heads != 0:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")


def _check_embed_dim(embed_dim: int, *tensors: torch.Tensor) -> None:
    """Each of queries, keys, values (those given) has ``embed_dim`` features."""
    if any(t.shape[-1] != embed_dim for t in tensors):
        names = ("queries, keys and values" if len(tensors) == 3 else "keys and values" if len(tensors) == 2
                 else "queries")
        got = " and ".join(", ".join(str(t.shape[-1]) for t in tensors).rsplit(", ", 1))
        raise ValueError(f"{names} must have embed_dim = {embed_dim} features, got {got}")


def _check_projected(queries: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, head_dim: int) -> None:
    """queries (B, Q, E) and projected keys and values k, v (B, H, K, Dh) of one batch and key count."""
    B = queries.shape[0]
    if queries.dim() != 3 or k.shape != v.shape or k.dim() != 4 or k.shape[:2] != (B, num_heads) \
            or k.shape[3] != head_dim:
        raise ValueError(f"attend takes queries (B, Q, E) and projected keys and values (B, H, K, Dh) = "
                         f"({B}, {num_heads}, K, {head_dim}), got shapes {tuple(queries.shape)}, "
                         f"{tuple(k.shape)} and {tuple(v.shape)}")


class MultiHeadAttention(nn.Module):
    """Multi-head attention (D2L §10.5), every head in one batched product.

    Each head h attends with its own projections q W_q^(h), k W_k^(h), v W_v^(h) (Dh = E / H features);
    the heads' outputs are concatenated and mixed by W_o. Constructor arguments, parameter names,
    layout and initialisation are ``nn.MultiheadAttention``'s (a prefix of its arguments), so state
    dicts load both ways: ``in_proj_weight`` (3E, E) stacks W_q, W_k, W_v (Xavier-uniform),
    ``in_proj_bias`` (3E,) (zeros), ``out_proj.weight`` (E, E) and ``out_proj.bias`` (E,) (zeros).
    Inputs are batch first, as ``nn.MultiheadAttention(..., batch_first=True)``. Note the default
    ``bias=True`` (torch's); the book's layer has no biases (``bias=False``).

    forward(queries (B, Q, E), keys (B, K, E), values (B, K, E), valid_lens (B,) or (B, Q)) -> (B, Q, E),
    which is ``attend(queries, *project_kv(keys, values), valid_lens)``; or forward(X, X, X,
    packing=TokenPacking) for packed tokens X (n, E) -> (n, E), self-attention without padded
    positions outside the attention itself (here: pad, attend, pack). A decoder that predicts one
    token at a time keeps what :meth:`project_kv` returns for the positions it has seen (a key/value
    cache) and calls :meth:`attend` with the new position's query only.
    Dropout acts on the attention weights, in training only. Set ``record_weights = True`` to keep
    ``attention_weights`` (B, H, Q, K), one map per head (``.mean(1)`` is torch's averaged weights).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        _check_num_heads(embed_dim, num_heads)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        # Created and initialised in nn.MultiheadAttention's order, so one seed gives the same numbers.
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim)) if bias else None
        self.out_proj = _Linear(embed_dim, embed_dim, bias=bias)
        xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)
        self.dropout = Dropout(dropout)
        self.record_weights, self.attention_weights = False, None

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None, packing: TokenPacking | None = None) -> torch.Tensor:
        if packing is not None:
            _check_packed_self_attention(queries, keys, values)
            X = packing.pad(queries)  # (B, T, E)
            return packing.pack(self.forward(X, X, X, packing.valid_lens))  # (n, E)
        _check_qkv(queries, keys, values)
        _check_embed_dim(self.embed_dim, queries, keys, values)
        return self.attend(queries, *self.project_kv(keys, values), valid_lens)

    def self_attend(self, X: torch.Tensor, valid_lens: torch.Tensor | None = None):
        """Self-attention of X (B, T, E) -> (B, T, E), and the heads' keys and values (B, H, T, Dh) that
        :meth:`project_kv` gives for X: a decoder's first step keeps them as its cache."""
        _check_embed_dim(self.embed_dim, X)
        k, v = self.project_kv(X, X)
        return self.attend(X, k, v, valid_lens), (k, v)

    def project_kv(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads' keys k = keys W_k^(h) + b_k and values v = values W_v^(h) + b_v, each (B, H, K, Dh):
        what a decoder's key/value cache keeps, so that a new query need not project old positions again."""
        E, H = self.embed_dim, self.num_heads
        _check_embed_dim(E, keys, values)
        _, W_k, W_v = self.in_proj_weight.view(3, H, E // H, E)  # each (H, Dh, E): rows h*Dh..(h+1)*Dh are head h's
        k = torch.einsum("bke,hde->bhkd", keys, W_k)  # (B, H, K, Dh)
        v = torch.einsum("bke,hde->bhkd", values, W_v)  # (B, H, K, Dh)
        if self.in_proj_bias is not None:
            # (b_k adds q . b_k to all of a query's scores: softmax ignores it, and its gradient is 0)
            _, b_k, b_v = self.in_proj_bias.view(3, H, 1, E // H)  # each (H, 1, Dh)
            k, v = k + b_k.to(k.dtype), v + b_v.to(v.dtype)  # under autocast the projections' bf16
        return k, v

    def attend(self, queries: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of queries (B, Q, E) over keys and values already projected by :meth:`project_kv`
        (k, v (B, H, K, Dh)), masked by ``valid_lens`` (B,) or (B, Q) -> (B, Q, E)."""
        E, H = self.embed_dim, self.num_heads
        _check_embed_dim(E, queries)
        _check_projected(queries, k, v, H, E // H)
        (B, Q, _), K, Dh = queries.shape, k.shape[2], E // H
        W_q = self.in_proj_weight[:E].view(H, Dh, E)  # (H, Dh, E)
        q = torch.einsum("bqe,hde->bhqd", queries, W_q)  # (B, H, Q, Dh)
        if self.in_proj_bias is not None:
            q = q + self.in_proj_bias[:E].view(H, 1, Dh).to(q.dtype)
        mask = None if valid_lens is None else valid_lens_to_mask(valid_lens, B, Q, K)[:, None]  # (B, 1, Q, K)
        heads, weights = _scaled_dot_product(q, k, v, mask, self.dropout)  # (B, H, Q, Dh), (B, H, Q, K)
        self.attention_weights = weights.detach() if self.record_weights else None
        # Concatenating the heads and applying W_o (E, E) in one step: W_o's input axis is (H, Dh).
        output = torch.einsum("bhqd,ehd->bqe", heads, self.out_proj.weight.view(E, H, Dh))  # (B, Q, E)
        return output if self.out_proj.bias is None else output + self.out_proj.bias.to(output.dtype)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, bias={self.in_proj_bias is not None}"


def sinusoid_table(max_len: int, num_hiddens: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The sinusoidal positional encoding P (max_len, num_hiddens) of D2L §10.6.3:
        P[i, 2j] = sin(i / 10000^(2j / d)),   P[i, 2j + 1] = cos(i / 10000^(2j / d)),   d = num_hiddens.
    Column pair j turns at frequency w_j = 10000^(-2j / d), from 1 down to about 1/10000 (§10.6.3.1:
    like the bits of a binary counter, low columns change fast). Computed in float64, returned in
    ``dtype`` (default: torch's default dtype). An odd d keeps the last sine column without its cosine.

    Relative positions (§10.6.3.2): [P[i + delta, 2j], P[i + delta, 2j + 1]] is the pair of position i
    rotated by the angle delta * w_j, a linear map that depends on delta only.
    """
    if max_len < 1 or num_hiddens < 1:
        raise ValueError(f"max_len and num_hiddens must be positive, got {max_len} and {num_hiddens}")
    position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    frequency = 10000.0 ** (-torch.arange(0, num_hiddens, 2, dtype=torch.float64) / num_hiddens)  # (ceil(d/2),)
    angle = position * frequency  # (T, ceil(d/2))
    P = torch.stack((torch.sin(angle), torch.cos(angle)), dim=-1)  # (T, ceil(d/2), 2)
    P = P.reshape(max_len, -1)[:, :num_hiddens]  # (T, d): sine in even columns, cosine in odd ones
    return P.to(torch.get_default_dtype() if dtype is None else dtype)


class PositionalEncoding(nn.Module):
    """X + P[offset:offset + T], then dropout (D2L §10.6.3): adds each position's sinusoid
    (:func:`sinusoid_table`) to X (B, T, num_hiddens). P (1, max_len, num_hiddens) is a non-persistent
    buffer: it moves with ``.to()`` but is not in the state dict (it is a function of the arguments,
    not learned). ``offset``: the position of X's first step, for a decoder that is fed one token at a
    time (d2l's decoder adds position 0 to every token it predicts, unlike in training)."""

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.register_buffer("P", sinusoid_table(max_len, num_hiddens)[None], persistent=False)  # (1, max_len, d)

    def forward(self, X: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.dropout(X + _positions(self.P, X, offset))


def _positions(P: torch.Tensor, X: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Rows offset..offset + T - 1 of P (1, max_len, d) for X (B, T, d), in X's dtype; both twins check alike."""
    _, max_len, d = P.shape
    if X.dim() != 3 or X.shape[2] != d or offset < 0 or offset + X.shape[1] > max_len:
        raise ValueError(f"positional encoding takes X (B, T, {d}) with offset + T <= max_len = {max_len}, "
                         f"got shape {tuple(X.shape)} at offset {offset}")
    return P[:, offset:offset + X.shape[1]].to(X.dtype)  # (1, T, d)
