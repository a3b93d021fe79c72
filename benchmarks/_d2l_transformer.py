"""d2l's own Transformer (D2L 0.17.x, §10.7), trained as the book trains it, timed per epoch.

Run by ``bench_transformer.py`` with the Python of a virtual environment that has d2l installed
(this file does not import divekit). It prints one JSON object on stdout.

* Encoder: the d2l 0.17.6 package's ``TransformerEncoder`` (with its ``EncoderBlock``, ``AddNorm``,
  ``PositionWiseFFN``, ``MultiHeadAttention``, ``PositionalEncoding``).
* Decoder: ``DecoderBlock`` and ``TransformerDecoder``, which the package does not have, copied
  verbatim below from the classic book's ``chapter_attention-mechanisms/transformer.md``
  (d2l-ai/d2l-en, branch ``classic`` @ 0f920da, the ``#@tab pytorch`` cells).
* Training: the body of ``d2l.train_seq2seq`` minus its ``Animator`` (``train_seq2seq_timed`` of
  ``_d2l_rnn.py``), on ``d2l.load_data_nmt(64, 10)`` (601 pairs), with the book's settings: width 32,
  2 blocks, 4 heads, FFN 64, dropout 0.1, Adam lr 0.005, clipping at 1.
* Afterwards the book's four translations with ``d2l.predict_seq2seq`` and ``d2l.bleu(k=2)``.
"""

from __future__ import annotations

import argparse
import json
import math

from _d2l_rnn import parse_common_args, start_d2l, train_seq2seq_timed

EXAMPLES = (("go .", "va !"), ("i lost .", "j'ai perdu ."), ("he's calm .", "il est calme ."),
            ("i'm home .", "je suis chez moi ."))


def build(d2l):
    """The book's Transformer and data (D2L §10.7), as its notebook builds them."""
    import torch
    from torch import nn

    # D2L §10.7 (classic), verbatim but for the d2l. prefix of AddNorm and PositionWiseFFN, which the same
    # notebook defines in #@save cells (so the package has them)
    class DecoderBlock(nn.Module):
        # The `i`-th block in the decoder
        def __init__(self, key_size, query_size, value_size, num_hiddens,
                     norm_shape, ffn_num_input, ffn_num_hiddens, num_heads,
                     dropout, i, **kwargs):
            super(DecoderBlock, self).__init__(**kwargs)  # noqa: UP008 (verbatim)
            self.i = i
            self.attention1 = d2l.MultiHeadAttention(
                key_size, query_size, value_size, num_hiddens, num_heads, dropout)
            self.addnorm1 = d2l.AddNorm(norm_shape, dropout)
            self.attention2 = d2l.MultiHeadAttention(
                key_size, query_size, value_size, num_hiddens, num_heads, dropout)
            self.addnorm2 = d2l.AddNorm(norm_shape, dropout)
            self.ffn = d2l.PositionWiseFFN(ffn_num_input, ffn_num_hiddens,
                                           num_hiddens)
            self.addnorm3 = d2l.AddNorm(norm_shape, dropout)

        def forward(self, X, state):
            enc_outputs, enc_valid_lens = state[0], state[1]
            # During training, all the tokens of any output sequence are processed
            # at the same time, so `state[2][self.i]` is `None` as initialized.
            # When decoding any output sequence token by token during prediction,
            # `state[2][self.i]` contains representations of the decoded output at
            # the `i`-th block up to the current time step
            if state[2][self.i] is None:
                key_values = X
            else:
                key_values = torch.cat((state[2][self.i], X), axis=1)
            state[2][self.i] = key_values
            if self.training:
                batch_size, num_steps, _ = X.shape
                # Shape of `dec_valid_lens`: (`batch_size`, `num_steps`), where
                # every row is [1, 2, ..., `num_steps`]
                dec_valid_lens = torch.arange(
                    1, num_steps + 1, device=X.device).repeat(batch_size, 1)
            else:
                dec_valid_lens = None

            # Self-attention
            X2 = self.attention1(X, key_values, key_values, dec_valid_lens)
            Y = self.addnorm1(X, X2)
            # Encoder-decoder attention. Shape of `enc_outputs`:
            # (`batch_size`, `num_steps`, `num_hiddens`)
            Y2 = self.attention2(Y, enc_outputs, enc_outputs, enc_valid_lens)
            Z = self.addnorm2(Y, Y2)
            return self.addnorm3(Z, self.ffn(Z)), state

    class TransformerDecoder(d2l.AttentionDecoder):
        def __init__(self, vocab_size, key_size, query_size, value_size,
                     num_hiddens, norm_shape, ffn_num_input, ffn_num_hiddens,
                     num_heads, num_layers, dropout, **kwargs):
            super(TransformerDecoder, self).__init__(**kwargs)  # noqa: UP008 (verbatim)
            self.num_hiddens = num_hiddens
            self.num_layers = num_layers
            self.embedding = nn.Embedding(vocab_size, num_hiddens)
            self.pos_encoding = d2l.PositionalEncoding(num_hiddens, dropout)
            self.blks = nn.Sequential()
            for i in range(num_layers):
                self.blks.add_module("block"+str(i),
                    DecoderBlock(key_size, query_size, value_size, num_hiddens,  # noqa: E128 (verbatim)
                                 norm_shape, ffn_num_input, ffn_num_hiddens,
                                 num_heads, dropout, i))
            self.dense = nn.Linear(num_hiddens, vocab_size)

        def init_state(self, enc_outputs, enc_valid_lens, *args):
            return [enc_outputs, enc_valid_lens, [None] * self.num_layers]

        def forward(self, X, state):
            X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))
            self._attention_weights = [[None] * len(self.blks) for _ in range (2)]  # noqa: E211 (verbatim)
            for i, blk in enumerate(self.blks):
                X, state = blk(X, state)
                # Decoder self-attention weights
                self._attention_weights[0][
                    i] = blk.attention1.attention.attention_weights
                # Encoder-decoder attention weights
                self._attention_weights[1][
                    i] = blk.attention2.attention.attention_weights
            return self.dense(X), state

        @property
        def attention_weights(self):
            return self._attention_weights

    num_hiddens, num_layers, dropout, batch_size, num_steps = 32, 2, 0.1, 64, 10
    ffn_num_input, ffn_num_hiddens, num_heads = 32, 64, 4
    key_size, query_size, value_size = 32, 32, 32
    norm_shape = [32]

    train_iter, src_vocab, tgt_vocab = d2l.load_data_nmt(batch_size, num_steps)

    encoder = d2l.TransformerEncoder(
        len(src_vocab), key_size, query_size, value_size, num_hiddens,
        norm_shape, ffn_num_input, ffn_num_hiddens, num_heads,
        num_layers, dropout)
    decoder = TransformerDecoder(
        len(tgt_vocab), key_size, query_size, value_size, num_hiddens,
        norm_shape, ffn_num_input, ffn_num_hiddens, num_heads,
        num_layers, dropout)
    net = d2l.EncoderDecoder(encoder, decoder)
    return net, train_iter, src_vocab, tgt_vocab


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=200)
    args = parse_common_args(p)

    import torch

    d2l = start_d2l(args)
    device = torch.device(args.device)
    lr, num_steps = 0.005, 10
    net, train_iter, src_vocab, tgt_vocab = build(d2l)
    epochs = train_seq2seq_timed(d2l, net, train_iter, lr, args.epochs, tgt_vocab, device)

    translations = []
    for eng, fra in EXAMPLES:
        translation, _ = d2l.predict_seq2seq(net, eng, src_vocab, tgt_vocab, num_steps, device, True)
        try:
            score = d2l.bleu(translation, fra, k=2)
        except ZeroDivisionError:  # d2l.bleu divides by zero for a prediction of fewer than k tokens
            score = 0.0
        translations.append({"source": eng, "prediction": translation, "bleu": score})
    print(json.dumps({"epochs": epochs, "translations": translations, "pairs": len(train_iter.dataset),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
