"""The encoder-decoder interface (D2L §9.6), the RNN sequence-to-sequence model (D2L §9.7) and its
decoder with Bahdanau attention (D2L §10.4).

Letters: B batch size, T time steps (decoder), K source steps (encoder), E embedding size, H hidden
size, L layers, V vocabulary size.
The encoder turns a source sentence into a state; the decoder, started from that state, predicts
the target one token at a time. Model code knows nothing about training (``train.lm.Seq2SeqTask``)
or about search (``divekit.decoding``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from divekit.data.text import Vocab
from divekit.data.translation import preprocess, truncate_pad
from divekit.decoding import beam_search, greedy_search
from divekit.models.blocks import inference
from divekit.models.registry import Example, register_model
from divekit.ops import Ops
from divekit.options import Checked, at_least, below, option, probability

__all__ = ["Decoder", "Encoder", "EncoderDecoder", "Seq2SeqAttentionDecoder", "Seq2SeqConfig", "Seq2SeqDecoder",
           "Seq2SeqEncoder", "encode_source", "translate"]


class Encoder(nn.Module):
    """Interface: ``forward(X, *args)`` encodes source tokens X (B, T) into encoder outputs."""

    def forward(self, X: torch.Tensor, *args):
        raise NotImplementedError(f"{type(self).__name__} must define forward(X, *args)")


class Decoder(nn.Module):
    """Interface: ``init_state`` turns the encoder outputs into the decoder's first state;
    ``forward(X, state)`` maps target-side tokens X (B, T) to logits (B, T, V) and a new state;
    ``reorder_state(state, idx)`` keeps the batch rows ``idx`` of a state (used by beam search)."""

    def init_state(self, enc_outputs, *args):
        raise NotImplementedError(f"{type(self).__name__} must define init_state(enc_outputs, *args)")

    def forward(self, X: torch.Tensor, state):
        raise NotImplementedError(f"{type(self).__name__} must define forward(X, state)")

    def reorder_state(self, state, idx: torch.Tensor):
        raise NotImplementedError(f"{type(self).__name__} must define reorder_state(state, idx) for beam search")


class EncoderDecoder(nn.Module):
    """forward(enc_X, dec_X, *args) = decoder(dec_X, decoder.init_state(encoder(enc_X, *args), *args))."""

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, enc_X: torch.Tensor, dec_X: torch.Tensor, *args):
        state = self.decoder.init_state(self.encoder(enc_X, *args), *args)
        return self.decoder(dec_X, state)


@dataclass
class Seq2SeqConfig(Checked):
    src_vocab_size: int = option(10, "source vocabulary size", at_least(1))
    tgt_vocab_size: int = option(10, "target vocabulary size", at_least(1))
    embed_size: int = option(32, "embedding size", at_least(1))
    num_hiddens: int = option(32, "GRU hidden units", at_least(1))
    num_layers: int = option(2, "GRU layers in the encoder and in the decoder", at_least(1))
    dropout: float = option(0.1, "dropout between GRU layers", probability, below(1))


class Seq2SeqEncoder(Encoder):
    """Embedding + multi-layer GRU (D2L §9.7.1). Returns the outputs of the last layer (T, B, H)
    and the final hidden state of every layer (L, B, H). The GRU reads the padding too, as in the book."""

    def __init__(self, cfg: Seq2SeqConfig, ops: Ops):
        super().__init__()
        self.embedding = ops.Embedding(cfg.src_vocab_size, cfg.embed_size)
        self.rnn = ops.GRU(cfg.embed_size, cfg.num_hiddens, cfg.num_layers, dropout=cfg.dropout)

    def forward(self, X, *args):
        return self.rnn(self.embedding(X.T))  # (T, B, E) in; (T, B, H), (L, B, H) out


class Seq2SeqDecoder(Decoder):
    """Embedding + multi-layer GRU + linear output (D2L §9.7.2).

    The context c (B, H), the encoder's top-layer state at the last source step, is concatenated
    to the embedding of every decoder input, and the encoder's final states start the decoder's
    GRU. The state is the pair (c, H): c stays the encoder's during prediction (the classic
    book's ``predict_seq2seq`` reads it from the decoder's updated state instead).
    """

    def __init__(self, cfg: Seq2SeqConfig, ops: Ops):
        super().__init__()
        self.embedding = ops.Embedding(cfg.tgt_vocab_size, cfg.embed_size)
        self.rnn = ops.GRU(cfg.embed_size + cfg.num_hiddens, cfg.num_hiddens, cfg.num_layers, dropout=cfg.dropout)
        self.output = ops.Linear(cfg.num_hiddens, cfg.tgt_vocab_size)

    def init_state(self, enc_outputs, *args):
        _, H = enc_outputs  # (L, B, H)
        return H[-1], H

    def forward(self, X, state):
        context, H = state  # (B, H), (L, B, H)
        emb = self.embedding(X.T)  # (T, B, E)
        T, B, _ = emb.shape
        outputs, H = self.rnn(torch.cat([emb, context.expand(T, -1, -1)], dim=-1), H)  # (T, B, H)
        return self.output(outputs).transpose(0, 1), (context, H)  # (B, T, V)

    def reorder_state(self, state, idx):
        context, H = state
        return context[idx], H[:, idx]


class Seq2SeqAttentionDecoder(Decoder):
    """A GRU decoder with Bahdanau attention (D2L §10.4): at each step the top layer's hidden state
    (the query) attends with additive attention over the encoder's outputs at every source step
    (keys and values), and the context it pools is concatenated to the step's input embedding.

    Unlike :class:`Seq2SeqDecoder`, whose one context is the encoder's last state, the context here
    changes with every target token, so a long source need not fit in one vector. The state is
    (encoder outputs (B, K, H), GRU state (L, B, H), source valid lengths (B,)); the padding of the
    source gets attention weight 0. After a forward, ``attention_weights`` (B, T, K) holds each
    step's weights over the source, for heatmaps.
    """

    def __init__(self, cfg: Seq2SeqConfig, ops: Ops):
        super().__init__()
        self.attention = ops.AdditiveAttention(cfg.num_hiddens, cfg.num_hiddens, cfg.num_hiddens, cfg.dropout)
        self.embedding = ops.Embedding(cfg.tgt_vocab_size, cfg.embed_size)
        self.rnn = ops.GRU(cfg.embed_size + cfg.num_hiddens, cfg.num_hiddens, cfg.num_layers, dropout=cfg.dropout)
        self.output = ops.Linear(cfg.num_hiddens, cfg.tgt_vocab_size)
        self.attention_weights: torch.Tensor | None = None

    def init_state(self, enc_outputs, enc_valid_lens=None, *args):
        outputs, H = enc_outputs  # (K, B, H), (L, B, H)
        return outputs.transpose(0, 1), H, enc_valid_lens  # (B, K, H) for attention

    def forward(self, X, state):
        enc_outputs, H, enc_valid_lens = state  # (B, K, H), (L, B, H), (B,)
        emb = self.embedding(X.T)  # (T, B, E)
        outputs, weights = [], []
        for x in emb:  # one step at a time: the query of step t is the state after step t - 1
            query = H[-1][:, None]  # (B, 1, H): the top layer's state
            context = self.attention(query, enc_outputs, enc_outputs, enc_valid_lens)  # (B, 1, H)
            step_input = torch.cat([context, x[:, None]], dim=-1).transpose(0, 1)  # (1, B, H + E), the book's order
            out, H = self.rnn(step_input, H)  # (1, B, H)
            outputs.append(out)
            weights.append(self.attention.attention_weights)  # (B, 1, K)
        self.attention_weights = None if weights[0] is None else torch.cat(weights, dim=1)  # (B, T, K)
        logits = self.output(torch.cat(outputs, dim=0))  # (T, B, V)
        return logits.transpose(0, 1), (enc_outputs, H, enc_valid_lens)  # (B, T, V)

    def reorder_state(self, state, idx):
        enc_outputs, H, enc_valid_lens = state
        return enc_outputs[idx], H[:, idx], None if enc_valid_lens is None else enc_valid_lens[idx]


def _xavier_weights(ops: Ops, *modules: nn.Module) -> None:
    """Xavier-uniform for every weight matrix of ``modules`` (``xavier_init_weights`` of D2L §9.7.3,
    which reaches every ``nn.Linear`` and ``nn.GRU``); the other parameters keep their layers' init."""
    for module in modules:
        for name, p in module.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("weight"):
                ops.xavier_uniform_(p)


def sequence_pair_example(cfg: Seq2SeqConfig, batch_size: int, num_steps: int = 5) -> Example:
    """Source and target tokens (B, T) and source valid lengths (B,) -> logits (B, T, V_tgt)."""
    X = torch.randint(cfg.src_vocab_size, (batch_size, num_steps))
    Y = torch.randint(cfg.tgt_vocab_size, (batch_size, num_steps))
    valid_len = torch.randint(1, num_steps + 1, (batch_size,))
    return Example((X, Y, valid_len), (batch_size, num_steps, cfg.tgt_vocab_size))


@register_model("seq2seq", config=Seq2SeqConfig, example=sequence_pair_example, section="9.7",
                tiny=dict(embed_size=8, num_hiddens=8))
def seq2seq(cfg: Seq2SeqConfig, ops: Ops) -> EncoderDecoder:
    """The book's GRU encoder-decoder, Xavier-uniform weights in the GRUs and the output layer
    (``xavier_init_weights`` of D2L §9.7.4); the other parameters keep their layers' initialisation."""
    model = EncoderDecoder(Seq2SeqEncoder(cfg, ops), Seq2SeqDecoder(cfg, ops))
    _xavier_weights(ops, model.encoder.rnn, model.decoder.rnn, model.decoder.output)
    return model


@register_model("bahdanau", config=Seq2SeqConfig, example=sequence_pair_example, section="10.4",
                tiny=dict(embed_size=8, num_hiddens=8))
def bahdanau(cfg: Seq2SeqConfig, ops: Ops) -> EncoderDecoder:
    """The book's GRU encoder with a Bahdanau-attention decoder; Xavier-uniform weights in the GRUs,
    the attention's three projections and the output layer, as ``train_seq2seq`` initialises them."""
    model = EncoderDecoder(Seq2SeqEncoder(cfg, ops), Seq2SeqAttentionDecoder(cfg, ops))
    _xavier_weights(ops, model.encoder.rnn, model.decoder.attention, model.decoder.rnn, model.decoder.output)
    return model


def encode_source(sentence: str, src_vocab: Vocab, num_steps: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A sentence as typed -> the model's input: preprocessed as the training data (lower case, a
    space before , . ! ?; D2L §9.5.1), split into words, ``<eos>`` appended, cut or padded to
    ``num_steps``. Returns the tokens (1, T) and their valid length (1,)."""
    tokens = src_vocab[preprocess(sentence).split()] + [src_vocab["<eos>"]]
    X = torch.tensor([truncate_pad(tokens, num_steps, src_vocab["<pad>"])], device=device)  # (1, T)
    return X, torch.tensor([min(len(tokens), num_steps)], device=device)  # a typed "<pad>" is a word too


@inference
def translate(model: EncoderDecoder, sentence: str, src_vocab: Vocab, tgt_vocab: Vocab, num_steps: int,
              beam_size: int = 1, alpha: float = 0.75) -> str:
    """Translate one sentence, as a user types it or as the data holds it (D2L §9.7.5), with any
    encoder-decoder of this interface (seq2seq, Bahdanau, Transformer): greedy with ``beam_size`` 1,
    else beam search with length penalty ``alpha`` (D2L §9.8), at most ``num_steps`` tokens.
    In evaluation mode (no dropout), the model's mode restored after. Returns the target tokens without
    ``<eos>``."""
    device = next(model.parameters()).device
    X, valid_len = encode_source(sentence, src_vocab, num_steps, device)
    state = model.decoder.init_state(model.encoder(X, valid_len), valid_len)

    def step(tokens, state):
        logits, state = model.decoder(tokens[:, None], state)  # (K, 1, V)
        return torch.log_softmax(logits[:, 0].float(), dim=-1), state

    bos, eos = tgt_vocab["<bos>"], tgt_vocab["<eos>"]
    if beam_size == 1:
        tokens, _ = greedy_search(step, state, bos, eos, num_steps)
    else:
        tokens, _ = beam_search(step, state, model.decoder.reorder_state, bos, eos, num_steps, beam_size, alpha)
    if tokens and tokens[-1] == eos:
        tokens = tokens[:-1]
    return " ".join(tgt_vocab.to_tokens(tokens))
