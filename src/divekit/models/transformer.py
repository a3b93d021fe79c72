"""The Transformer (D2L §10.7; Vaswani et al., 2017, https://arxiv.org/abs/1706.03762): an
encoder-decoder built from attention alone, no recurrence.

Letters: B batch size, K source steps, T target steps, d = ``num_hiddens`` (every token's width),
H heads, Dh = d / H features per head, V vocabulary size.

* Encoder block: multi-head self-attention, then a position-wise feed-forward network (FFN), each
  followed by "add & norm": LayerNorm(X + dropout(sublayer(X))), the post-norm of the paper and the
  book. The source's padding gets no attention (``valid_lens``).
* Decoder block: masked (causal) self-attention, so position t sees positions 0..t only, then
  encoder-decoder attention (queries from the decoder, keys and values from the encoder's output),
  then the FFN, each with add & norm.
* Tokens enter as embedding * sqrt(d) + the sinusoidal positional encoding, as in the book.

Prediction: a key/value cache. The decoder's state keeps, per block, the projected keys and values
of every target position decoded so far (``MultiHeadAttention.project_kv``) and of the encoder's
output (computed once, in ``init_state``). Each step projects only the new token, attends over the
cache, and adds the positional encoding of its own position. Training and a one-token step run the
same code; the causal mask comes from the step's offset (as LLMs-from-scratch's KV cache). The
book's decoder instead keeps the raw inputs of every step, projects all of them again each step,
switches the causal mask off outside training and adds position 0's encoding to every predicted
token (``TransformerDecoder`` of D2L §10.7).

Reuse (BERT, D2L §14.8): :class:`TransformerEncoderBlock` is the unit; a BERT encoder is its own
embeddings (token + segment + learned positions) followed by a ``ModuleList`` of these blocks with
``activation="gelu"`` and LayerNorm ``norm_eps=1e-12`` as the original BERT, each called as
``X = block(X, valid_lens)``; ``block.attention.record_weights = True`` keeps its attention maps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from divekit.models.registry import register_model
from divekit.models.seq2seq import Decoder, Encoder, EncoderDecoder, sequence_pair_example
from divekit.ops import Ops
from divekit.options import Checked, at_least, below, option, positive, probability

__all__ = ["AddNorm", "PositionWiseFFN", "TransformerConfig", "TransformerDecoder", "TransformerDecoderBlock",
           "TransformerDecoderState", "TransformerEncoder", "TransformerEncoderBlock"]

Activation = Literal["relu", "gelu"]


@dataclass
class TransformerConfig(Checked):
    src_vocab_size: int = option(10, "source vocabulary size", at_least(1))
    tgt_vocab_size: int = option(10, "target vocabulary size", at_least(1))
    num_hiddens: int = option(32, "width d of every token's vector, the model's width", at_least(1))
    ffn_num_hiddens: int = option(64, "hidden units of the position-wise feed-forward network", at_least(1))
    num_heads: int = option(4, "attention heads; must divide num_hiddens", at_least(1))
    num_layers: int = option(2, "blocks in the encoder and in the decoder", at_least(1))
    dropout: float = option(0.1, "dropout on the attention weights, the sublayer outputs and the input encoding",
                            probability, below(1))
    bias: bool = option(False, "biases in the attention projections (the book: none)")
    activation: Activation = option("relu", "the feed-forward network's activation (BERT: gelu)")
    norm_eps: float = option(1e-5, "epsilon of the LayerNorms (BERT: 1e-12)", positive)
    max_len: int = option(1000, "the longest sequence the positional encoding covers", at_least(1))

    def __post_init__(self):
        super().__post_init__()
        if self.num_hiddens % self.num_heads:
            raise ValueError(f"--num-hiddens {self.num_hiddens} must be divisible by --num-heads {self.num_heads}")


class PositionWiseFFN(nn.Module):
    """The same two-layer MLP applied to every position on its own (D2L §10.7.2): d -> ffn -> d."""

    def __init__(self, ops: Ops, num_hiddens: int, ffn_num_hiddens: int, activation: Activation = "relu"):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.dense1 = ops.Linear(num_hiddens, ffn_num_hiddens)
        self.activation = ops.ReLU() if activation == "relu" else ops.GELU()
        self.dense2 = ops.Linear(ffn_num_hiddens, num_hiddens)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.activation(self.dense1(X)))  # (B, T, d) -> (B, T, ffn) -> (B, T, d)


class AddNorm(nn.Module):
    """Residual connection and layer normalization (D2L §10.7.3): LayerNorm(X + dropout(Y))."""

    def __init__(self, ops: Ops, num_hiddens: int, dropout: float, norm_eps: float = 1e-5):
        super().__init__()
        self.dropout = ops.Dropout(dropout)
        self.norm = ops.LayerNorm(num_hiddens, eps=norm_eps)

    def forward(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        return self.norm(X + self.dropout(Y))  # (B, T, d)


class TransformerEncoderBlock(nn.Module):
    """Self-attention then the FFN, each with add & norm (D2L §10.7.4).

    forward(X (B, T, d), valid_lens (B,) or None) -> (B, T, d): key positions >= valid_lens[b]
    (padding) get no attention; or forward(X (n, d), packing=TokenPacking) -> (n, d) on a batch's
    real tokens only, the same numbers at those positions. The unit BERT stacks (see the module docstring).
    """

    def __init__(self, ops: Ops, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float, *,
                 bias: bool = False, activation: Activation = "relu", norm_eps: float = 1e-5):
        super().__init__()
        self.attention = ops.MultiHeadAttention(num_hiddens, num_heads, dropout, bias=bias)
        self.addnorm1 = AddNorm(ops, num_hiddens, dropout, norm_eps)
        self.ffn = PositionWiseFFN(ops, num_hiddens, ffn_num_hiddens, activation)
        self.addnorm2 = AddNorm(ops, num_hiddens, dropout, norm_eps)

    def forward(self, X: torch.Tensor, valid_lens: torch.Tensor | None = None, packing=None) -> torch.Tensor:
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens, packing))  # (B, T, d) or (n, d)
        return self.addnorm2(Y, self.ffn(Y))


def _block_args(cfg: TransformerConfig) -> dict:
    return dict(num_hiddens=cfg.num_hiddens, ffn_num_hiddens=cfg.ffn_num_hiddens, num_heads=cfg.num_heads,
                dropout=cfg.dropout, bias=cfg.bias, activation=cfg.activation, norm_eps=cfg.norm_eps)


class _Embed(nn.Module):
    """Token embedding * sqrt(d) + sinusoidal positions from ``offset`` on, then dropout (D2L §10.7.5).
    The embedding starts at N(0, 1); the factor sqrt(d) keeps it large beside the encoding's [-1, 1]."""

    def __init__(self, ops: Ops, vocab_size: int, cfg: TransformerConfig):
        super().__init__()
        self.scale = math.sqrt(cfg.num_hiddens)
        self.embedding = ops.Embedding(vocab_size, cfg.num_hiddens)
        self.pos_encoding = ops.PositionalEncoding(cfg.num_hiddens, cfg.dropout, cfg.max_len)

    def forward(self, X: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.pos_encoding(self.embedding(X) * self.scale, offset)  # (B, T) -> (B, T, d)


class TransformerEncoder(Encoder):
    """Embedding and positional encoding, then ``num_layers`` encoder blocks (D2L §10.7.4).

    forward(X (B, K) source tokens, valid_lens (B,)) -> (B, K', d), K' = max(valid_lens) <= K: the
    positions after the batch's longest source are left out, as no real position attends to them
    (the outputs at the real positions are the same; tested). After a forward with each block's
    ``attention.record_weights`` set, ``attention_weights`` lists each block's (B, H, K', K') maps.
    """

    def __init__(self, cfg: TransformerConfig, ops: Ops):
        super().__init__()
        self.embed = _Embed(ops, cfg.src_vocab_size, cfg)
        self.blocks = nn.ModuleList(TransformerEncoderBlock(ops, **_block_args(cfg)) for _ in range(cfg.num_layers))

    def forward(self, X: torch.Tensor, valid_lens: torch.Tensor | None = None, *args) -> torch.Tensor:
        if valid_lens is not None and valid_lens.dim() == 1 and len(X):
            X = X[:, :max(int(valid_lens.max()), 1)]  # (B, K'): the padding no position attends to left out
        X = self.embed(X)  # (B, K', d)
        for block in self.blocks:
            X = block(X, valid_lens)
        return X

    @property
    def attention_weights(self) -> list[torch.Tensor | None]:
        return [block.attention.attention_weights for block in self.blocks]


@dataclass(frozen=True)
class TransformerDecoderState:
    """What the decoder carries from step to step: per block, the encoder output's keys and values
    (``cross_kv``, each (B, H, K, Dh), fixed) and the target positions' so far (``self_kv``, each
    (B, H, offset, Dh), None before the first step); the source valid lengths (B,) or None; and
    ``offset``, the number of target positions decoded so far."""

    cross_kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    enc_valid_lens: torch.Tensor | None
    self_kv: tuple[tuple[torch.Tensor, torch.Tensor] | None, ...]
    offset: int = 0

    @property
    def device(self) -> torch.device:
        return self.cross_kv[0][0].device

    def select(self, idx: torch.Tensor) -> TransformerDecoderState:
        """The state of batch rows ``idx`` (rows may repeat: beam search)."""

        def rows(kv):
            return None if kv is None else (kv[0][idx], kv[1][idx])

        return dataclasses.replace(
            self, cross_kv=tuple(rows(kv) for kv in self.cross_kv), self_kv=tuple(rows(kv) for kv in self.self_kv),
            enc_valid_lens=None if self.enc_valid_lens is None else self.enc_valid_lens[idx])


class TransformerDecoderBlock(nn.Module):
    """Masked self-attention, encoder-decoder attention, then the FFN, each with add & norm (D2L §10.7.5).

    forward(X (B, T, d), cross_kv, enc_valid_lens, past_kv, causal_lens) -> (B, T, d) and the new
    (k, v) of the self-attention: ``past_kv`` (k, v (B, H, t0, Dh)) are the earlier positions'
    projections (None at the start), ``causal_lens`` (B, T) = t0 + 1, ..., t0 + T how many of the
    t0 + T keys each query may see.
    """

    def __init__(self, ops: Ops, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float, *,
                 bias: bool = False, activation: Activation = "relu", norm_eps: float = 1e-5):
        super().__init__()
        self.attention1 = ops.MultiHeadAttention(num_hiddens, num_heads, dropout, bias=bias)
        self.addnorm1 = AddNorm(ops, num_hiddens, dropout, norm_eps)
        self.attention2 = ops.MultiHeadAttention(num_hiddens, num_heads, dropout, bias=bias)
        self.addnorm2 = AddNorm(ops, num_hiddens, dropout, norm_eps)
        self.ffn = PositionWiseFFN(ops, num_hiddens, ffn_num_hiddens, activation)
        self.addnorm3 = AddNorm(ops, num_hiddens, dropout, norm_eps)

    def forward(self, X, cross_kv, enc_valid_lens, past_kv, causal_lens):
        if past_kv is None:  # training, or a prediction's first step: q, k, v (B, H, T, Dh) from one projection
            attended, (k, v) = self.attention1.self_attend(X, causal_lens)
        else:  # only the new positions are projected
            k, v = self.attention1.project_kv(X, X)  # (B, H, T, Dh)
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)  # (B, H, t0 + T, Dh)
            attended = self.attention1.attend(X, k, v, causal_lens)
        Y = self.addnorm1(X, attended)  # (B, T, d)
        Z = self.addnorm2(Y, self.attention2.attend(Y, *cross_kv, enc_valid_lens))  # (B, T, d)
        return self.addnorm3(Z, self.ffn(Z)), (k, v)


class TransformerDecoder(Decoder):
    """Embedding and positional encoding, ``num_layers`` decoder blocks, a linear output (D2L §10.7.5).

    ``init_state(enc_outputs (B, K, d), enc_valid_lens (B,))`` projects the encoder's output for every
    block once; ``forward(X (B, T), state) -> (logits (B, T, V), state)`` decodes T more positions
    after the state's ``offset`` (training: all T at once from offset 0; prediction: one at a time).
    With the attention layers' ``record_weights`` set, ``attention_weights`` is (self, cross): each a
    list over blocks of (B, H, T, keys) maps.
    """

    def __init__(self, cfg: TransformerConfig, ops: Ops):
        super().__init__()
        self.embed = _Embed(ops, cfg.tgt_vocab_size, cfg)
        self.blocks = nn.ModuleList(TransformerDecoderBlock(ops, **_block_args(cfg)) for _ in range(cfg.num_layers))
        self.output = ops.Linear(cfg.num_hiddens, cfg.tgt_vocab_size)

    def init_state(self, enc_outputs, enc_valid_lens=None, *args) -> TransformerDecoderState:
        cross_kv = tuple(block.attention2.project_kv(enc_outputs, enc_outputs) for block in self.blocks)
        return TransformerDecoderState(cross_kv, enc_valid_lens, (None,) * len(self.blocks))

    def forward(self, X, state: TransformerDecoderState):
        (B, T), t0 = X.shape, state.offset
        Y = self.embed(X, offset=t0)  # (B, T, d): positions t0..t0 + T - 1
        causal_lens = torch.arange(t0 + 1, t0 + T + 1, device=X.device).expand(B, T)  # (B, T)
        self_kv = []
        for block, cross_kv, past_kv in zip(self.blocks, state.cross_kv, state.self_kv):
            Y, kv = block(Y, cross_kv, state.enc_valid_lens, past_kv, causal_lens)
            self_kv.append(kv)
        return self.output(Y), dataclasses.replace(state, self_kv=tuple(self_kv), offset=t0 + T)  # (B, T, V)

    def reorder_state(self, state: TransformerDecoderState, idx: torch.Tensor) -> TransformerDecoderState:
        return state.select(idx)

    @property
    def attention_weights(self) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
        return ([block.attention1.attention_weights for block in self.blocks],
                [block.attention2.attention_weights for block in self.blocks])


def _init_like_the_book(model: EncoderDecoder, ops: Ops) -> EncoderDecoder:
    """Xavier-uniform for every weight matrix, as ``train_seq2seq`` initialises the book's Transformer
    (its ``nn.Linear`` layers: W_q, W_k, W_v, W_o of each attention, both FFN layers, the output);
    each of W_q, W_k, W_v gets its own (d, d) fan, not the stacked (3d, d) one. Embeddings stay
    N(0, 1), LayerNorms 1 and 0, biases as their layers start them."""
    weights, seen = [], set()
    for module in model.modules():  # a parent before its children, in both twins
        if isinstance(module, ops.MultiHeadAttention):
            weights += [*module.in_proj_weight.chunk(3), module.out_proj.weight]  # W_q, W_k, W_v, W_o: each (d, d)
            seen.add(id(module.out_proj))
        elif isinstance(module, ops.Linear) and id(module) not in seen:
            weights.append(module.weight)
    for weight in weights:
        ops.xavier_uniform_(weight)
    return model


def _transformer(cfg: TransformerConfig, ops: Ops) -> EncoderDecoder:
    return _init_like_the_book(EncoderDecoder(TransformerEncoder(cfg, ops), TransformerDecoder(cfg, ops)), ops)


TINY = dict(num_hiddens=8, ffn_num_hiddens=16, num_heads=2)


@register_model("transformer", config=TransformerConfig, example=sequence_pair_example, section="10.7", tiny=TINY)
def transformer(cfg: TransformerConfig, ops: Ops) -> EncoderDecoder:
    """The book's Transformer encoder-decoder: width 32, 2 blocks each side, 4 heads, FFN 64, dropout 0.1."""
    return _transformer(cfg, ops)


@register_model("transformer-large", config=TransformerConfig, example=sequence_pair_example, section="10.7",
                tiny=TINY, num_hiddens=256, ffn_num_hiddens=1024, num_heads=8, num_layers=4, dropout=0.1)
def transformer_large(cfg: TransformerConfig, ops: Ops) -> EncoderDecoder:
    """A larger Transformer encoder-decoder: width 256, 4 blocks each side, 8 heads, FFN 1024."""
    return _transformer(cfg, ops)
