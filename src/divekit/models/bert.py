"""BERT (D2L §14.8; Devlin et al., 2018, https://arxiv.org/abs/1810.04805): a Transformer encoder
pretrained on unlabeled text with two tasks, then fine-tuned with a new output layer (D2L §15.6).

Letters: B batch size, T tokens per sequence (``<cls>`` A ``<sep>`` B ``<sep>`` and padding),
d = ``num_hiddens``, V vocabulary size, P prediction positions per sequence, N prediction positions
in a whole batch, C classes.

* Input (§14.8.4): token + segment (0 for ``<cls>`` A ``<sep>``, 1 for B ``<sep>``) + learned position
  embeddings, summed. The original BERT then applies LayerNorm and dropout (``embed_norm``); the
  book does not. Padding gets no attention (``valid_lens``), so a text's vectors do not depend on how
  far it is padded.
* Encoder: ``num_layers`` :class:`~divekit.models.transformer.TransformerEncoderBlock` s (post-norm,
  attention with biases), ReLU in the feed-forward networks in the book, GELU in the original.
  Given valid lengths, the blocks run on the real tokens only (``ops.TokenPacking``; the book's
  batches are 28% padding), and the encoder's output is 0 at padding, which no head reads.
* Masked language model (§14.8.5.1): at the chosen positions, dense -> activation -> LayerNorm ->
  a linear layer over the vocabulary. Next-sentence prediction (§14.8.5.2): the ``<cls>`` vector
  through the pooler (dense + tanh; the book calls it ``hidden``), then a linear layer to 2 classes.

Two styles of the same architecture, chosen by the config: the book's (``BERTModel`` of D2L §14.8 and
its ``bert.small`` weights: ReLU, LayerNorm eps 1e-5, no embedding LayerNorm, the layers' own
initialisation) and the original's (Hugging Face's ``BertModel``: GELU, eps 1e-12, embedding
LayerNorm and dropout, N(0, 0.02) initialisation), which :mod:`divekit.models.bert_weights` converts
to and from. One difference from the book's code is deliberate: its position embeddings are added
as ``pos_embedding.data`` and so never learn, although the text says they do; here they learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from divekit.models.blocks import inference
from divekit.models.registry import Example, register_model
from divekit.models.transformer import Activation, TransformerEncoderBlock
from divekit.ops import Ops
from divekit.options import Checked, at_least, below, option, positive, probability

__all__ = ["BERTClassifier", "BERTConfig", "BERTEncoder", "BERTModel", "BERTTagger", "MaskLM", "Pooler",
           "bert_example", "encode_text"]

Init = Literal["d2l", "bert"]


@dataclass
class BERTConfig(Checked):
    vocab_size: int = option(10000, "vocabulary size, special tokens included", at_least(1))
    num_hiddens: int = option(128, "width d of every token's vector (the book's pretraining: 128; BERT-base: 768)",
                              at_least(1))
    ffn_num_hiddens: int = option(256, "hidden units of each block's feed-forward network", at_least(1))
    num_heads: int = option(2, "attention heads; must divide num_hiddens", at_least(1))
    num_layers: int = option(2, "encoder blocks", at_least(1))
    dropout: float = option(0.2, "dropout on attention weights and sublayer outputs", probability, below(1))
    max_positions: int = option(1000, "positions with an embedding: the longest input (the book's max_len)",
                                at_least(1))
    activation: Activation = option("relu", "the feed-forward networks' and the MLM head's activation (the "
                                            "original BERT: gelu)")
    norm_eps: float = option(1e-5, "epsilon of every LayerNorm (the original BERT: 1e-12)", positive)
    embed_norm: bool = option(False, "LayerNorm and dropout on the summed embeddings, as the original BERT (the "
                                     "book: none)")
    init: Init = option("d2l", "d2l: every layer starts as torch's layers in the book's BERTModel, embeddings "
                               "N(0, 1); bert: weights and embeddings N(0, 0.02), biases 0, as the original")
    tie_embeddings: bool = option(False, "the MLM head's output layer shares the token embeddings' weights, as the "
                                         "original BERT (the book's has weights of its own)")

    def __post_init__(self):
        super().__post_init__()
        if self.num_hiddens % self.num_heads:
            raise ValueError(f"--num-hiddens {self.num_hiddens} must be divisible by --num-heads {self.num_heads}")


class BERTEncoder(nn.Module):
    """The input representation and the encoder blocks (D2L §14.8.4).

    forward(tokens (B, T), segments (B, T) of 0/1 or None (all 0), valid_lens (B,) or None) -> (B, T, d),
    0 at the padding positions t >= valid_lens[b]: the blocks see only the real tokens, packed.
    ``pos_embedding`` is (1, max_positions, d), the book's layout. ``norm``/``dropout`` exist with ``embed_norm``.
    """

    def __init__(self, cfg: BERTConfig, ops: Ops):
        super().__init__()
        self.TokenPacking = ops.TokenPacking
        d = cfg.num_hiddens
        self.token_embedding = ops.Embedding(cfg.vocab_size, d)
        self.segment_embedding = ops.Embedding(2, d)
        self.pos_embedding = nn.Parameter(torch.randn(1, cfg.max_positions, d))  # the book's N(0, 1)
        if cfg.embed_norm:
            self.norm = ops.LayerNorm(d, eps=cfg.norm_eps)
            self.dropout = ops.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerEncoderBlock(ops, d, cfg.ffn_num_hiddens, cfg.num_heads, cfg.dropout, bias=True,
                                    activation=cfg.activation, norm_eps=cfg.norm_eps)
            for _ in range(cfg.num_layers))

    def embed(self, tokens: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """token + segment + position embeddings (B, T) -> (B, T, d), with the LayerNorm and dropout of
        ``embed_norm``."""
        T, max_len = tokens.shape[1], self.pos_embedding.shape[1]
        if T > max_len:
            raise ValueError(f"a sequence of {T} tokens is longer than the {max_len} positions this BERT has")
        if segments is None:
            segments = torch.zeros_like(tokens)
        X = self.token_embedding(tokens) + self.segment_embedding(segments) + self.pos_embedding[:, :T]  # (B, T, d)
        if hasattr(self, "norm"):
            X = self.dropout(self.norm(X))
        return X

    def forward(self, tokens: torch.Tensor, segments: torch.Tensor | None = None,
                valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        X = self.embed(tokens, segments)  # (B, T, d)
        if valid_lens is None:
            for block in self.blocks:
                X = block(X)
            return X
        packing = self.TokenPacking(valid_lens, tokens.shape[1])
        X = packing.pack(X)  # (n, d): the real tokens
        for block in self.blocks:
            X = block(X, packing=packing)
        return packing.pad(X)  # (B, T, d)

    @property
    def attention_weights(self) -> list[torch.Tensor | None]:
        """Each block's (B, H, T, T) maps after a forward with the blocks' ``attention.record_weights`` set."""
        return [block.attention.attention_weights for block in self.blocks]


class MaskLM(nn.Module):
    """The masked language model's head (D2L §14.8.5.1): dense -> activation -> LayerNorm -> vocabulary.

    forward(X (B, T, d), pred_positions) -> logits: with ``pred_positions`` (B, P), the positions of
    each sequence, (B, P, V) as the book's ``MaskLM``; with a 1-D (N,) tensor of flat positions
    b * T + t into the batch's B * T tokens, (N, V): a batch's real predictions without the padding
    that evens out P (which the book computes and then weights by 0).
    """

    def __init__(self, ops: Ops, vocab_size: int, num_hiddens: int, activation: Activation = "relu",
                 norm_eps: float = 1e-5):
        super().__init__()
        self.dense = ops.Linear(num_hiddens, num_hiddens)
        self.activation = ops.ReLU() if activation == "relu" else ops.GELU()
        self.norm = ops.LayerNorm(num_hiddens, eps=norm_eps)
        self.decoder = ops.Linear(num_hiddens, vocab_size)

    def forward(self, X: torch.Tensor, pred_positions: torch.Tensor) -> torch.Tensor:
        B, T, d = X.shape
        if pred_positions.dim() == 2:
            rows = torch.arange(B, device=X.device)[:, None]  # (B, 1)
            picked = X[rows, pred_positions]  # (B, P, d)
        elif pred_positions.dim() == 1:
            picked = X.reshape(B * T, d)[pred_positions]  # (N, d)
        else:
            raise ValueError(f"pred_positions must be (B, P) positions or (N,) flat positions, "
                             f"got shape {tuple(pred_positions.shape)}")
        return self.decoder(self.norm(self.activation(self.dense(picked))))


class Pooler(nn.Module):
    """The ``<cls>`` vector through dense + tanh (the book's ``BERTModel.hidden``): (B, T, d) -> (B, d)."""

    def __init__(self, ops: Ops, num_hiddens: int):
        super().__init__()
        self.dense = ops.Linear(num_hiddens, num_hiddens)
        self.activation = ops.Tanh()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(X[:, 0]))  # position 0 is <cls>


class BERTModel(nn.Module):
    """The BERT encoder with its pretraining heads (D2L §14.8.5).

    forward(tokens (B, T), segments (B, T) or None, valid_lens (B,) or None, pred_positions (B, P) or
    (N,) or None) -> (encoded (B, T, d), MLM logits (B, P, V) or (N, V) or None, NSP logits (B, 2)).
    """

    def __init__(self, cfg: BERTConfig, ops: Ops):
        super().__init__()
        self.config = cfg
        self.encoder = BERTEncoder(cfg, ops)
        self.pooler = Pooler(ops, cfg.num_hiddens)
        self.mlm = MaskLM(ops, cfg.vocab_size, cfg.num_hiddens, cfg.activation, cfg.norm_eps)
        self.nsp = ops.Linear(cfg.num_hiddens, 2)
        _initialize(self, cfg.init)
        if cfg.tie_embeddings:  # one (V, d) matrix: a token's input vector is its output layer's row
            self.mlm.decoder.weight = self.encoder.token_embedding.weight

    def forward(self, tokens: torch.Tensor, segments: torch.Tensor | None = None,
                valid_lens: torch.Tensor | None = None, pred_positions: torch.Tensor | None = None):
        encoded = self.encoder(tokens, segments, valid_lens)  # (B, T, d)
        mlm_logits = None if pred_positions is None else self.mlm(encoded, pred_positions)
        return encoded, mlm_logits, self.nsp(self.pooler(encoded))


class BERTClassifier(nn.Module):
    """Fine-tuning for one text or a text pair (D2L §15.6.1-15.6.2): a pretrained BERT's encoder and
    pooler, then dropout (``dropout``; None: the BERT's own rate, as Hugging Face's
    ``BertForSequenceClassification``; 0: none, as the book's ``BERTClassifier`` of §15.7) and a new
    linear layer to C classes.

    forward(tokens (B, T), segments (B, T) or None, valid_lens (B,) or None) -> logits (B, C).
    """

    def __init__(self, bert: BERTModel, num_classes: int, ops: Ops, dropout: float | None = None):
        super().__init__()
        self.encoder, self.pooler = bert.encoder, bert.pooler
        self.dropout = ops.Dropout(bert.config.dropout if dropout is None else dropout)
        self.output = ops.Linear(bert.config.num_hiddens, num_classes)

    def forward(self, tokens, segments=None, valid_lens=None):
        return self.output(self.dropout(self.pooler(self.encoder(tokens, segments, valid_lens))))

    def body_parameters(self) -> list[nn.Parameter]:
        """The pretrained part (encoder and pooler), for a smaller learning rate than the new layer's."""
        return [*self.encoder.parameters(), *self.pooler.parameters()]


class BERTTagger(nn.Module):
    """Fine-tuning for per-token tagging (D2L §15.6.3): every token's vector through dropout and a
    new linear layer to C tags. forward(tokens, segments, valid_lens) -> logits (B, T, C)."""

    def __init__(self, bert: BERTModel, num_classes: int, ops: Ops):
        super().__init__()
        self.encoder = bert.encoder
        self.dropout = ops.Dropout(bert.config.dropout)
        self.output = ops.Linear(bert.config.num_hiddens, num_classes)

    def forward(self, tokens, segments=None, valid_lens=None):
        return self.output(self.dropout(self.encoder(tokens, segments, valid_lens)))

    def body_parameters(self) -> list[nn.Parameter]:
        """The pretrained encoder, for a smaller learning rate than the new layer's."""
        return list(self.encoder.parameters())


@torch.no_grad()
def _initialize(model: BERTModel, init: Init) -> None:
    """Draw the starting weights, in the module order both twins share.

    * ``d2l``: the book's ``BERTModel`` is made of ``nn.Linear`` layers, so its attention starts with
      W_q, W_k, W_v and W_o each U(-1/sqrt(d), 1/sqrt(d)), biases too (an ``nn.MultiheadAttention``
      would start with Xavier weights and zero biases); every other layer keeps its own start,
      embeddings and positions N(0, 1).
    * ``bert``: every weight matrix and embedding N(0, 0.02), biases 0, LayerNorms 1 and 0 (the
      original BERT's truncated normal, as Hugging Face's ``_init_weights``, without the truncation).
    """
    d = model.config.num_hiddens
    if init == "d2l":
        bound = 1 / d ** 0.5
        for block in model.encoder.blocks:
            attention = block.attention
            for p in (attention.in_proj_weight, attention.in_proj_bias, attention.out_proj.bias):
                p.uniform_(-bound, bound)
        return
    for name, p in model.named_parameters():
        owner = name.rsplit(".", 2)[-2] if name.count(".") > 1 else ""  # "norm" for a LayerNorm's weight and bias
        if name.endswith("bias"):
            p.zero_()
        elif owner != "norm":  # LayerNorm weights stay 1
            p.normal_(0.0, 0.02)


def bert_example(cfg: BERTConfig, batch_size: int, num_steps: int = 6, num_preds: int = 2) -> Example:
    """Tokens, segments (B, T), valid lengths (B,) and prediction positions (B, P) -> encoded (B, T, d)."""
    tokens = torch.randint(cfg.vocab_size, (batch_size, num_steps))
    segments = (torch.arange(num_steps) >= num_steps // 2).long().expand(batch_size, num_steps)
    valid_lens = torch.randint(2, num_steps + 1, (batch_size,))
    pred_positions = torch.randint(0, 2, (batch_size, num_preds))  # below every valid length
    return Example((tokens, segments, valid_lens, pred_positions), (batch_size, num_steps, cfg.num_hiddens))


TINY = dict(vocab_size=20, num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_layers=2, max_positions=16)
ORIGINAL = dict(activation="gelu", norm_eps=1e-12, embed_norm=True, init="bert", dropout=0.1, max_positions=512,
                vocab_size=30522, tie_embeddings=True)


@register_model("bert", config=BERTConfig, example=bert_example, section="14.8", tiny=TINY)
def bert(cfg: BERTConfig, ops: Ops) -> BERTModel:
    """The book's BERT for pretraining on WikiText-2: width 128, FFN 256, 2 heads, 2 blocks, dropout 0.2."""
    return BERTModel(cfg, ops)


@register_model("bert-small", config=BERTConfig, example=bert_example, section="15.7", tiny=TINY,
                num_hiddens=256, ffn_num_hiddens=512, num_heads=4, num_layers=2, dropout=0.1, max_positions=512)
def bert_small(cfg: BERTConfig, ops: Ops) -> BERTModel:
    """The book's bert.small (its pretrained weights' sizes): width 256, FFN 512, 4 heads, 2 blocks, 512 positions."""
    return BERTModel(cfg, ops)


@register_model("bert-base", config=BERTConfig, example=bert_example, section="14.8", tiny=TINY, **ORIGINAL,
                num_hiddens=768, ffn_num_hiddens=3072, num_heads=12, num_layers=12)
def bert_base(cfg: BERTConfig, ops: Ops) -> BERTModel:
    """BERT-base as published (GELU, embedding norm, tied MLM output): width 768, FFN 3072, 12 heads, 12 blocks (110M)."""
    return BERTModel(cfg, ops)


@register_model("bert-large", config=BERTConfig, example=bert_example, section="14.8", tiny=TINY, **ORIGINAL,
                num_hiddens=1024, ffn_num_hiddens=4096, num_heads=16, num_layers=24)
def bert_large(cfg: BERTConfig, ops: Ops) -> BERTModel:
    """BERT-large as published (GELU, embedding norm, tied MLM output): width 1024, FFN 4096, 16 heads, 24 blocks (340M)."""
    return BERTModel(cfg, ops)


@inference
def encode_text(model: BERTModel, vocab, text_a: str | list[str],
                text_b: str | list[str] | None = None) -> torch.Tensor:
    """BERT's representation of a text or a text pair (the book's ``get_bert_encoding``, D2L §14.10.2):
    ``<cls>`` A ``<sep>`` [B ``<sep>``] through the encoder in eval mode -> (1, T, d). Row 0 stands for the
    whole input; a word's row depends on its context. A string is split on spaces."""
    from divekit.data.bert_data import get_tokens_and_segments

    device = next(model.parameters()).device
    split = [t.split() if isinstance(t, str) else list(t) for t in (text_a, text_b) if t is not None]
    tokens, segments = get_tokens_and_segments(*split)
    token_ids = torch.tensor([vocab[tokens]], device=device)  # (1, T)
    return model.encoder(token_ids, torch.tensor([segments], device=device), torch.tensor([len(tokens)], device=device))
