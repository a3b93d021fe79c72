"""Recurrent neural networks (D2L chapters 8-9): a sequence model on a noisy sine, statistics of
The Time Machine, and character-level language models on it (RNN, GRU, LSTM, deep, bidirectional).

The language models follow the classic book (``train_ch8``): the first 10,000 characters, batch 32,
35 steps, SGD with lr 1, 500 epochs, the gradient clipped to norm 1 (``--clip-grad``; the trainer
clips with ``ops.scratch.clip_grad_norm`` for ``--impl scratch`` and torch's for ``--impl fast``),
sequential partitioning.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import nn

from divekit.data.base import Split
from divekit.data.loader import TensorLoader
from divekit.data.text import (
    LMLoader,
    load_corpus_time_machine,
    ngram_freqs,
    read_time_machine,
    tokenize,
)
from divekit.experiments.common import book_default, data_generator, make_optimizer
from divekit.experiments.config import RunConfig, option
from divekit.experiments.registry import DemoResult, Experiment, Setup, register
from divekit.models.rnn import RNNLM, predict_chars, recurrent_layer
from divekit.ops import get_ops
from divekit.train.engine import Trainer
from divekit.train.lm import LanguageModeling
from divekit.train.tasks import Regression


def check_at_least_one(cfg: RunConfig, names: tuple[str, ...]) -> None:
    """Reject a config whose integer options ``names`` are below 1, naming the flag."""
    for name in names:
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")


# -- 8.1: sequence model on a noisy sine -----------------------------------------------------------

@dataclass
class SineConfig(RunConfig):
    epochs: int = book_default("epochs", 5)
    lr: float = book_default("lr", 0.01)
    batch_size: int = book_default("batch_size", 16)
    optimizer: str = book_default("optimizer", "adam")
    num_points: int = option(1000, "length T of the series x_t = sin(0.01 t) + noise")
    noise: float = option(0.2, "standard deviation of the noise")
    tau: int = option(4, "how many past values predict the next one")
    n_train: int = option(600, "training examples (the first ones in time)")


def sequence_sine(cfg: SineConfig, device: torch.device) -> DemoResult:
    """D2L §8.1: an autoregressive MLP x_t ~ f(x_{t-tau}, ..., x_{t-1}) (tau-10-1, ReLU, Xavier
    init, MSE, Adam), then 1-, 4-, 16- and 64-step-ahead predictions, each feeding its own
    predictions back in. Errors pile up: the 64-step prediction decays to a constant."""
    from divekit.viz.text import plot_series

    T, tau = cfg.num_points, cfg.tau
    g = data_generator(cfg.seed)
    time = torch.arange(1, T + 1, dtype=torch.float32)
    x = torch.sin(0.01 * time) + torch.randn(T, generator=g) * cfg.noise
    features = torch.stack([x[i:T - tau + i] for i in range(tau)], dim=1)  # (T - tau, tau): row t = x_t..x_{t+tau-1}
    labels = x[tau:].reshape(-1, 1)  # (T - tau, 1)

    net = nn.Sequential(nn.Linear(tau, 10), nn.ReLU(), nn.Linear(10, 1))
    for layer in (net[0], net[2]):
        nn.init.xavier_uniform_(layer.weight)
    train = Split(features[:cfg.n_train], labels[:cfg.n_train])
    trainer = Trainer(net, Regression(lambda y_hat, y: (y_hat - y) ** 2), make_optimizer(cfg, net),
                      epochs=cfg.epochs, device=device, eval_name="train_full", progress=False)
    history = trainer.fit(TensorLoader(train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device),
                          TensorLoader(train, 256, device=device))  # the book evaluates on the training set

    net.eval()
    steps = (1, 4, 16, 64)
    max_steps = steps[-1]
    n = T - tau - max_steps + 1
    with torch.no_grad():
        # column i < tau holds observations, column i >= tau the (i - tau + 1)-step-ahead prediction
        window = torch.zeros(n, tau + max_steps, device=device)
        for i in range(tau):
            window[:, i] = x[i:i + n]
        for i in range(tau, tau + max_steps):
            window[:, i] = net(window[:, i - tau:i]).reshape(-1)
    window = window.cpu()
    series = {f"{k}-step preds": (time[tau + k - 1:T - max_steps + k].tolist(), window[:, tau + k - 1].tolist())
              for k in steps}
    figure = plot_series(time.tolist(), {"data": (time.tolist(), x.tolist()), **series})
    results = {"final_train_loss": history[-1]["train_full_loss"]}
    for k in steps:
        truth = x[tau + k - 1:T - max_steps + k]
        results[f"mse_{k}_step"] = float(((window[:, tau + k - 1] - truth) ** 2).mean())
    return DemoResult(results, figures={"k_step_predictions": figure}, rows=history)


# -- 8.2-8.3: statistics of The Time Machine -------------------------------------------------------

def timemachine_stats(cfg: RunConfig, device: torch.device) -> DemoResult:
    """D2L §8.2-8.3: line count, the most frequent words, bigrams and trigrams, the character
    vocabulary, and the frequency-rank plot that shows Zipf's law."""
    from divekit.data.text import Vocab
    from divekit.viz.text import plot_frequencies

    lines = read_time_machine()
    words = [w for line in tokenize(lines, "word") for w in line]
    grams = {n: ngram_freqs(words, n) for n in (1, 2, 3)}
    char_vocab = Vocab(tokenize(lines, "char"))
    results = {
        "lines": len(lines),
        "word_tokens": len(words),
        "word_vocab": len(Vocab(words)),
        "char_vocab": len(char_vocab),
        "char_tokens": char_vocab.idx_to_token,
        "top_words": [[g[0], c] for g, c in grams[1][:10]],
        "top_bigrams": [[" ".join(g), c] for g, c in grams[2][:10]],
        "top_trigrams": [[" ".join(g), c] for g, c in grams[3][:10]],
    }
    figure = plot_frequencies({name: [c for _, c in grams[n]] for n, name in ((1, "unigram"), (2, "bigram"), (3, "trigram"))})
    rows = [{"rank": i + 1, "word": g[0], "count": c} for i, (g, c) in enumerate(grams[1][:100])]
    return DemoResult(results, figures={"zipf": figure}, rows=rows)


# -- 8.5-9.4: character-level language models ------------------------------------------------------

@dataclass
class LanguageModelConfig(RunConfig):
    epochs: int = book_default("epochs", 500)
    lr: float = book_default("lr", 1.0)
    batch_size: int = book_default("batch_size", 32)
    num_steps: int = option(35, "time steps per subsequence")
    num_hiddens: int = option(256, "hidden units per layer and direction")
    num_layers: int = option(1, "stacked recurrent layers (D2L §9.3)")
    bidirectional: bool = option(False, "read the sequence both ways (D2L §9.4; useless for next-token prediction)")
    max_tokens: int | None = option(10000, "train on the first N characters of the book (the book: 10000; none: all 170,580)")
    random_sampling: bool = option(False, "random subsequences instead of sequential partitioning (D2L §8.3.4); "
                                          "the book's rnn-scratch reaches perplexity 1.5 with it, 1.0 without")
    clip_grad: float | None = book_default("clip_grad", 1.0)
    prefix: str = option("time traveller", "text to warm the model up with before predicting")
    num_preds: int = option(50, "characters to predict after the prefix")

    def __post_init__(self):
        super().__post_init__()
        check_at_least_one(self, ("num_steps", "num_hiddens", "num_layers", "num_preds"))


@dataclass
class RNNScratchConfig(LanguageModelConfig):
    impl: Literal["scratch", "fast"] = book_default("impl", "scratch")
    num_hiddens: int = option(512, "hidden units per layer and direction")


@dataclass
class DeepRNNConfig(LanguageModelConfig):
    lr: float = book_default("lr", 2.0)
    num_layers: int = option(2, "stacked recurrent layers (D2L §9.3)")


@dataclass
class BiRNNConfig(LanguageModelConfig):
    num_layers: int = option(2, "stacked recurrent layers (D2L §9.3)")
    bidirectional: bool = option(True, "read the sequence both ways (D2L §9.4; useless for next-token prediction)")


def build_language_model(cfg: LanguageModelConfig, device: torch.device, *, kind: str) -> Setup:
    """D2L §8.5 (scratch RNN), §8.6 (nn.RNN), §9.1 GRU, §9.2 LSTM, §9.3 deep, §9.4 bidirectional."""
    corpus, vocab = load_corpus_time_machine(cfg.max_tokens, "char")
    if cfg.limit is not None:
        corpus = corpus[:cfg.limit]
    loader = LMLoader(corpus, cfg.batch_size, cfg.num_steps, sequential=not cfg.random_sampling, seed=cfg.seed,
                      device=device)
    rnn = recurrent_layer(kind, cfg.impl, len(vocab), cfg.num_hiddens, cfg.num_layers, bidirectional=cfg.bidirectional)
    model = RNNLM(rnn, len(vocab), cfg.impl).to(device)
    optimizer = make_optimizer(cfg, model)
    task = LanguageModeling(get_ops(cfg.impl).cross_entropy, sequential=not cfg.random_sampling)

    def samples(model) -> dict:
        return {"sample": predict_chars(cfg.prefix, cfg.num_preds, model, vocab),
                "sample_traveller": predict_chars("traveller", cfg.num_preds, model, vocab)}

    name = f"The Time Machine, first {len(corpus):,} characters ({len(vocab)} tokens)"
    return Setup(model, task, optimizer, loader, None, data_name=name, finish=samples)


_LM_EXPERIMENTS = (
    ("rnn-scratch", "8.5", "RNN language model from scratch", "rnn", RNNScratchConfig,
     "perplexity about 1.0 after 500 epochs; 'time traveller for so it will be convenient to speak ...'"),
    ("rnn", "8.6", "RNN language model with nn.RNN", "rnn", LanguageModelConfig,
     "perplexity about 1.3 after 500 epochs (hidden 256)"),
    ("gru", "9.1", "Gated recurrent units (GRU)", "gru", LanguageModelConfig,
     "perplexity about 1.0-1.1 (scratch and fast)"),
    ("lstm", "9.2", "Long short-term memory (LSTM)", "lstm", LanguageModelConfig,
     "perplexity about 1.1-1.3 (scratch and fast)"),
    ("deep-rnn", "9.3", "Deep recurrent network: 2-layer LSTM", "lstm", DeepRNNConfig,
     "perplexity about 1.0 with lr 2"),
    ("bi-rnn", "9.4", "Bidirectional LSTM used (wrongly) as a language model", "lstm", BiRNNConfig,
     ("perplexity about 1.1 in training, yet it predicts nonsense ('time travellererererer...'): "
      "it saw the future in training")),
)

for _name, _section, _title, _kind, _config, _reproduces in _LM_EXPERIMENTS:
    register(Experiment(name=_name, section=_section, title=_title, dataset="The Time Machine (characters)",
                        reproduces=_reproduces, config=_config, build=partial(build_language_model, kind=_kind)))

register(Experiment(
    name="sequence-sine",
    section="8.1",
    title="Autoregressive MLP on a noisy sine; k-step-ahead prediction",
    dataset="synthetic: x_t = sin(0.01 t) + N(0, 0.2^2), t = 1..1000",
    reproduces="training loss about 0.05 after 5 epochs; 1-step predictions track the data, 64-step ones decay",
    config=SineConfig,
    demo=sequence_sine,
))

register(Experiment(
    name="timemachine-stats",
    section="8.2-8.3",
    title="The Time Machine: tokens, vocabulary and Zipf's law",
    dataset="The Time Machine",
    reproduces="3221 lines; top words the (2261), i (1267), and (1245), of (1155), a (816); 28 characters",
    config=RunConfig,
    demo=timemachine_stats,
))
