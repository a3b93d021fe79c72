"""d2l's own recurrent training loops (D2L 0.17.x, §8.5 / §9.1 / §9.7), timed per epoch.

Run by ``bench_rnn.py`` with the Python of a virtual environment that has d2l installed (this file
does not import divekit). It prints one JSON object on stdout.

* ``rnn-scratch``: ``d2l.RNNModelScratch`` with the book's §8.5 ``get_params``, ``init_rnn_state``
  and ``rnn`` (notebook code, not in the d2l package: copied verbatim below), trained by
  ``d2l.train_epoch_ch8`` (SGD lr 1 through ``d2l.sgd``, ``d2l.grad_clipping`` θ = 1).
* ``gru``: ``d2l.RNNModel(nn.GRU(28, 256), 28)`` trained by ``d2l.train_epoch_ch8`` with
  ``torch.optim.SGD`` lr 1 (D2L §9.1 concise).
* ``seq2seq``: ``d2l.Seq2SeqEncoder`` + the book's §9.7 ``Seq2SeqDecoder`` (copied verbatim, not
  in the package) in ``d2l.EncoderDecoder``, trained by the body of ``d2l.train_seq2seq``
  verbatim minus its ``Animator`` (notebook plotting), on ``d2l.load_data_nmt(64, 10)``.

Data: ``d2l.load_data_time_machine(32, 35)`` (first 10,000 characters, sequential partitioning)
and ``load_data_nmt``, with ``d2l.download``/``download_extract`` pointed at the local copies
(no network here).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _d2l_softmax import load_shim


def parse_common_args(p: argparse.ArgumentParser) -> argparse.Namespace:
    """The options every d2l runner takes besides its own: threads, seed, data folder, device."""
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="../shared/data")
    return p.parse_args()


def start_d2l(args):
    """torch's threads and seed from ``args``, then ``d2l.torch`` with its downloads pointed at the local
    copies of the data in ``args.data`` (no network here)."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load_shim("../shared/bench/tv_shim.py")  # d2l imports torchvision, which has no CPU build here
    from d2l import torch as d2l

    d2l.download = lambda name, cache_dir=None: os.path.join(args.data, "timemachine", "timemachine.txt")
    d2l.download_extract = lambda name, folder=None: os.path.join(args.data, "fra-eng")
    return d2l


def train_seq2seq_timed(d2l, net, train_iter, lr, num_epochs, tgt_vocab, device) -> list[dict]:
    """The body of ``d2l.train_seq2seq`` (D2L §9.7.3) verbatim minus its ``Animator``, each epoch
    timed: per epoch its seconds, d2l's own tokens/s and printed loss (per token / num_steps)."""
    import torch
    from torch import nn

    def xavier_init_weights(m):
        if type(m) == nn.Linear:
            nn.init.xavier_uniform_(m.weight)
        if type(m) == nn.GRU:
            for param in m._flat_weights_names:
                if "weight" in param:
                    nn.init.xavier_uniform_(m._parameters[param])
    net.apply(xavier_init_weights)
    net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss = d2l.MaskedSoftmaxCELoss()
    net.train()
    epochs = []
    for epoch in range(num_epochs):
        start = time.perf_counter()
        timer = d2l.Timer()
        metric = d2l.Accumulator(2)  # Sum of training loss, no. of tokens
        for batch in train_iter:
            optimizer.zero_grad()
            X, X_valid_len, Y, Y_valid_len = [x.to(device) for x in batch]
            bos = torch.tensor([tgt_vocab['<bos>']] * Y.shape[0], device=device).reshape(-1, 1)
            dec_input = d2l.concat([bos, Y[:, :-1]], 1)  # Teacher forcing
            Y_hat, _ = net(X, dec_input, X_valid_len)
            l = loss(Y_hat, Y, Y_valid_len)
            l.sum().backward()  # Make the loss scalar for `backward`
            d2l.grad_clipping(net, 1)
            num_tokens = Y_valid_len.sum()
            optimizer.step()
            with torch.no_grad():
                metric.add(l.sum(), num_tokens)
        speed = metric[1] / timer.stop()
        seconds = time.perf_counter() - start
        epochs.append({"seconds": seconds, "tokens_per_s_d2l": speed, "loss_d2l": metric[0] / metric[1],
                       "tokens": metric[1]})
    return epochs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", choices=("rnn-scratch", "gru", "seq2seq"), required=True)
    p.add_argument("--epochs", type=int, default=3)
    args = parse_common_args(p)

    import torch
    from torch import nn

    d2l = start_d2l(args)
    device = torch.device(args.device)
    epochs = []

    if args.variant in ("rnn-scratch", "gru"):
        batch_size, num_steps = 32, 35
        train_iter, vocab = d2l.load_data_time_machine(batch_size, num_steps)
        if args.variant == "rnn-scratch":
            # D2L §8.5, verbatim
            def get_params(vocab_size, num_hiddens, device):
                num_inputs = num_outputs = vocab_size

                def normal(shape):
                    return torch.randn(size=shape, device=device) * 0.01

                W_xh = normal((num_inputs, num_hiddens))
                W_hh = normal((num_hiddens, num_hiddens))
                b_h = torch.zeros(num_hiddens, device=device)
                W_hq = normal((num_hiddens, num_outputs))
                b_q = torch.zeros(num_outputs, device=device)
                params = [W_xh, W_hh, b_h, W_hq, b_q]
                for param in params:
                    param.requires_grad_(True)
                return params

            def init_rnn_state(batch_size, num_hiddens, device):
                return (torch.zeros((batch_size, num_hiddens), device=device), )

            def rnn(inputs, state, params):
                W_xh, W_hh, b_h, W_hq, b_q = params
                H, = state
                outputs = []
                for X in inputs:
                    H = torch.tanh(torch.mm(X, W_xh) + torch.mm(H, W_hh) + b_h)
                    Y = torch.mm(H, W_hq) + b_q
                    outputs.append(Y)
                return torch.cat(outputs, dim=0), (H,)

            net = d2l.RNNModelScratch(len(vocab), 512, device, get_params, init_rnn_state, rnn)
            lr = 1
            updater = lambda batch_size: d2l.sgd(net.params, lr, batch_size)
        else:
            net = d2l.RNNModel(nn.GRU(len(vocab), 256), len(vocab)).to(device)
            updater = torch.optim.SGD(net.parameters(), 1)
        loss = nn.CrossEntropyLoss()
        for _ in range(args.epochs):
            start = time.perf_counter()
            ppl, speed = d2l.train_epoch_ch8(net, train_iter, loss, updater, device, False)
            epochs.append({"seconds": time.perf_counter() - start, "tokens_per_s_d2l": speed, "perplexity": ppl})
    else:
        # D2L §9.7, verbatim (the decoder is notebook code)
        class Seq2SeqDecoder(d2l.Decoder):
            """The RNN decoder for sequence to sequence learning."""
            def __init__(self, vocab_size, embed_size, num_hiddens, num_layers,
                         dropout=0, **kwargs):
                super(Seq2SeqDecoder, self).__init__(**kwargs)  # noqa: UP008 (verbatim)
                self.embedding = nn.Embedding(vocab_size, embed_size)
                self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers,
                                  dropout=dropout)
                self.dense = nn.Linear(num_hiddens, vocab_size)

            def init_state(self, enc_outputs, *args):
                return enc_outputs[1]

            def forward(self, X, state):
                X = self.embedding(X).permute(1, 0, 2)
                context = state[-1].repeat(X.shape[0], 1, 1)
                X_and_context = torch.cat((X, context), 2)
                output, state = self.rnn(X_and_context, state)
                output = self.dense(output).permute(1, 0, 2)
                return output, state

        embed_size, num_hiddens, num_layers, dropout = 32, 32, 2, 0.1
        batch_size, num_steps = 64, 10
        lr = 0.005
        train_iter, src_vocab, tgt_vocab = d2l.load_data_nmt(batch_size, num_steps)
        encoder = d2l.Seq2SeqEncoder(len(src_vocab), embed_size, num_hiddens, num_layers, dropout)
        decoder = Seq2SeqDecoder(len(tgt_vocab), embed_size, num_hiddens, num_layers, dropout)
        net = d2l.EncoderDecoder(encoder, decoder)

        epochs = train_seq2seq_timed(d2l, net, train_iter, lr, args.epochs, tgt_vocab, device)
    print(json.dumps({"variant": args.variant, "epochs": epochs}))


if __name__ == "__main__":
    main()
