"""Recurrent neural networks (D2L chapters 8-9): a sequence model on a noisy sine, statistics of
The Time Machine, and character-level language models on it (RNN, GRU, LSTM, deep, bidirectional).

The language models follow the classic book (``train_ch8``): the first 10,000 characters, batch 32,
35 steps, SGD with lr 1, 500 epochs, the gradient clipped to norm 1 (``--clip-grad``; the trainer
clips with the ``--impl``'s clip function), sequential partitioning.
"""

from __future__ import annotations

from typing import Annotated

from divekit.experiments.parts import NextToken, TextSamples, TimeMachine, data_generator
from divekit.experiments.registry import (BatchSize, DemoResult, Device, Epochs, Impl, LearningRate, Optimizer, Recipe,
                                          Seed, demo, register)
from divekit.ops import get_ops
from divekit.options import at_least


# -- 8.1: sequence model on a noisy sine -----------------------------------------------------------

@demo("sequence-sine", section="8.1", title="Autoregressive MLP on a noisy sine; k-step-ahead prediction",
      dataset="synthetic: x_t = sin(0.01 t) + N(0, 0.2^2), t = 1..1000", tiny=dict(epochs=1))
def sequence_sine(epochs: Epochs = 5, lr: LearningRate = 0.01, batch_size: BatchSize = 16, optimizer: Optimizer = "adam",
                  impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
                  num_points: Annotated[int, "length T of the series x_t = sin(0.01 t) + noise", at_least(100)] = 1000,
                  noise: Annotated[float, "standard deviation of the noise", at_least(0)] = 0.2,
                  tau: Annotated[int, "how many past values predict the next one", at_least(1)] = 4,
                  n_train: Annotated[int, "training examples (the first ones in time)", at_least(1)] = 600) -> DemoResult:
    """An autoregressive MLP x_t ~ f(x_{t-tau}, ..., x_{t-1}) (tau-10-1, ReLU, Xavier init, MSE,
    Adam), then 1-, 4-, 16- and 64-step-ahead predictions, each feeding its own predictions back in:
    errors pile up and the 64-step prediction decays to a constant; and the book's multistep
    prediction, its own outputs fed back from t = n_train + tau to the end (D2L §8.1.2)."""
    import torch

    max_steps = 64
    if num_points - tau - max_steps + 1 < 1:
        raise ValueError(f"--num-points {num_points} leaves no window for {max_steps}-step-ahead predictions after "
                         f"--tau {tau}; use --num-points of at least {tau + max_steps}")
    if n_train >= num_points - tau:
        raise ValueError(f"--n-train {n_train} leaves nothing to predict: --num-points {num_points} with --tau {tau} "
                         f"makes {num_points - tau} examples; use fewer")

    from divekit.data.batch import Split
    from divekit.data.loader import TensorLoader
    from divekit.optim import create_optimizer
    from divekit.train.device import choose_device
    from divekit.train.engine import Trainer
    from divekit.train.tasks import Regression
    from divekit.viz.text import plot_series

    device = choose_device(device)
    ops = get_ops(impl)
    T = num_points
    g = data_generator(seed)
    time = torch.arange(1, T + 1, dtype=torch.float32)
    x = torch.sin(0.01 * time) + torch.randn(T, generator=g) * noise
    features = torch.stack([x[i:T - tau + i] for i in range(tau)], dim=1)  # (T - tau, tau): row t = x_t..x_{t+tau-1}
    labels = x[tau:].reshape(-1, 1)  # (T - tau, 1)

    net = ops.Sequential(ops.Linear(tau, 10), ops.ReLU(), ops.Linear(10, 1))
    for layer in (net[0], net[2]):
        ops.xavier_uniform_(layer.weight)
    train = Split(features[:n_train], labels[:n_train])
    trainer = Trainer(net, Regression(ops.mse_loss), create_optimizer(optimizer, net.parameters(), impl=impl, lr=lr),
                      epochs=epochs, device=device, eval_name="train_full", progress=False, verbose=False)
    history = trainer.fit(TensorLoader(train, batch_size, shuffle=True, seed=seed, device=device),
                          TensorLoader(train, 256, device=device))  # the book evaluates on the training set

    net.eval()
    steps = (1, 4, 16, max_steps)
    n = T - tau - max_steps + 1
    with torch.no_grad():
        # column i < tau holds observations, column i >= tau the (i - tau + 1)-step-ahead prediction
        window = torch.zeros(n, tau + max_steps, device=device)
        for i in range(tau):
            window[:, i] = x[i:i + n]
        for i in range(tau, tau + max_steps):
            window[:, i] = net(window[:, i - tau:i]).reshape(-1)
        start = n_train + tau  # the book's multistep prediction: observations up to here, then its own outputs
        multistep = torch.cat([x[:start].to(device), torch.zeros(T - start, device=device)])
        for i in range(start, T):
            multistep[i] = net(multistep[None, i - tau:i])[0, 0]
    window, multistep = window.cpu(), multistep.cpu()
    series = {f"{k}-step preds": (time[tau + k - 1:T - max_steps + k].tolist(), window[:, tau + k - 1].tolist())
              for k in steps}
    series["multistep preds"] = (time[start:].tolist(), multistep[start:].tolist())
    figure = plot_series(time.tolist(), {"data": (time.tolist(), x.tolist()), **series})
    results = {"final_train_loss": history[-1]["train_full_loss"]}
    for k in steps:
        truth = x[tau + k - 1:T - max_steps + k]
        results[f"mse_{k}_step"] = float(((window[:, tau + k - 1] - truth) ** 2).mean())
    results["mse_multistep"] = float(((multistep[start:] - x[start:]) ** 2).mean())
    return DemoResult(results, figures={"k_step_predictions": figure}, rows=history)


# -- 8.2-8.3: statistics of The Time Machine -------------------------------------------------------

@demo("timemachine-stats", section="8.2-8.3", title="The Time Machine: tokens, vocabulary and Zipf's law",
      dataset="The Time Machine")
def timemachine_stats() -> DemoResult:
    """Line count, the most frequent words, bigrams and trigrams, the character vocabulary, and the
    frequency-rank plot that shows Zipf's law (D2L §8.2-8.3)."""
    from divekit.data.text import Vocab, ngram_freqs, read_time_machine, tokenize
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

BOOK_LM_TRAINING = dict(epochs=500, lr=1.0, batch_size=32, clip_grad=1.0)
LM_TINY = dict(epochs=1, limit=600, num_hiddens=8, batch_size=4)


def language_model(name: str, section: str, title: str, *, impl: str = "fast", lr: float = 1.0,
                   **model_args) -> Recipe:
    """A recipe of the book's character-level language models on The Time Machine."""
    return Recipe(name=name, section=section, title=title, data=TimeMachine(), model="rnn-lm", model_args=model_args,
                  task=NextToken(), train={**BOOK_LM_TRAINING, "lr": lr, "impl": impl}, probes=(TextSamples(),),
                  tiny=LM_TINY)


for recipe in (
    # the scratch layer starts as nn.RNN does, U(+-1/sqrt(H)) with biases, not the book's N(0, 0.01) without:
    # the twins then start alike (ops/scratch/rnn.py), and it reaches the book's perplexity all the same
    language_model("rnn-scratch", "8.5", "RNN language model from scratch", impl="scratch", kind="rnn", num_hiddens=512),
    language_model("rnn", "8.6", "RNN language model with nn.RNN", kind="rnn"),
    language_model("gru", "9.1", "Gated recurrent units (GRU)", kind="gru"),
    language_model("lstm", "9.2", "Long short-term memory (LSTM)", kind="lstm"),
    language_model("deep-rnn", "9.3", "Deep recurrent network: 2-layer LSTM", lr=2.0, kind="lstm", num_layers=2),
    language_model("bi-rnn", "9.4", "Bidirectional LSTM used (wrongly) as a language model", kind="lstm",
                   num_layers=2, bidirectional=True),
):
    register(recipe)
