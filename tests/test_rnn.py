"""Recurrent layers from scratch against torch's (D2L §8.5-9.4), gradient clipping, the language
model, its task and its experiment."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divekit.data.text import LMLoader, Vocab
from divekit.data.batch import Split
from divekit.models.registry import create_model
from divekit.models.rnn import predict_chars
from divekit.ops import fast, scratch
from divekit.train.engine import Trainer
from divekit.train.lm import LanguageModeling

KINDS = {"rnn": (scratch.RNN, nn.RNN), "gru": (scratch.GRU, nn.GRU), "lstm": (scratch.LSTM, nn.LSTM)}


def language_model(impl, vocab_size, kind, num_hiddens, num_layers=1):
    return create_model("rnn-lm", impl, vocab_size=vocab_size, kind=kind, num_hiddens=num_hiddens, num_layers=num_layers)


def twins(kind, *args, **kwargs):
    torch.manual_seed(0)
    s = KINDS[kind][0](*args, **kwargs).double()
    f = KINDS[kind][1](*args, **kwargs).double()
    f.load_state_dict(s.state_dict())
    return s, f


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers, bidirectional, batch_first", [(1, False, False), (2, False, True), (2, True, False), (1, True, True)])
def test_scratch_layers_match_torch_in_outputs_states_and_gradients(kind, num_layers, bidirectional, batch_first):
    I, H, T, B = 5, 6, 4, 3
    s, f = twins(kind, I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional)
    assert list(s.state_dict()) == list(f.state_dict())  # torch's names and order: weight_ih_l0, ...
    assert all(a.shape == b.shape for a, b in zip(s.state_dict().values(), f.state_dict().values()))
    X = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64)
    h0 = [torch.randn(num_layers * (1 + bidirectional), B, H, dtype=torch.float64) for _ in range(2 if kind == "lstm" else 1)]
    results = []
    for layer in (s, f):
        x = X.clone().requires_grad_()
        state = [h.clone().requires_grad_() for h in h0]
        out, final = layer(x, tuple(state) if kind == "lstm" else state[0])
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)).sum()
        loss = loss + sum((h ** 2).sum() for h in flat(final))
        grads = torch.autograd.grad(loss, [x, *state, *layer.parameters()])
        results.append((out, flat(final), grads))
    (s_out, s_final, s_grads), (f_out, f_final, f_grads) = results
    assert s_out.shape == f_out.shape == ((B, T) if batch_first else (T, B)) + ((1 + bidirectional) * H,)
    torch.testing.assert_close(s_out, f_out)
    for a, b in zip(s_final, f_final):
        torch.testing.assert_close(a, b)
    for a, b in zip(s_grads, f_grads):
        torch.testing.assert_close(a, b)


def test_zero_initial_state_is_the_default_and_dropout_acts_only_in_training():
    s, f = twins("gru", 4, 5, 2, dropout=0.5)
    X = torch.randn(6, 2, 4, dtype=torch.float64)
    s.eval(), f.eval()
    torch.testing.assert_close(s(X)[0], f(X, torch.zeros(2, 2, 5, dtype=torch.float64))[0])
    s.train()
    torch.manual_seed(1)
    a = s(X)[0]
    torch.manual_seed(2)
    assert not torch.allclose(a, s(X)[0])  # different masks between layers


def test_gru_and_lstm_cells_follow_the_gate_equations():
    """One step by hand from D2L eqs. (9.1.1)-(9.1.4) and (9.2.1)-(9.2.4), torch's gate order."""
    torch.manual_seed(0)
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    gru = scratch.GRU(3, 4)
    W_xr, W_xz, W_xh = gru.weight_ih_l0.chunk(3)
    W_hr, W_hz, W_hh = gru.weight_hh_l0.chunk(3)
    b_xr, b_xz, b_xh = gru.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hh = gru.bias_hh_l0.chunk(3)
    R = torch.sigmoid(x @ W_xr.T + b_xr + h @ W_hr.T + b_hr)
    Z = torch.sigmoid(x @ W_xz.T + b_xz + h @ W_hz.T + b_hz)
    H_tilde = torch.tanh(x @ W_xh.T + b_xh + R * (h @ W_hh.T + b_hh))
    torch.testing.assert_close(gru(x[None], h[None])[1][0], Z * h + (1 - Z) * H_tilde)
    lstm = scratch.LSTM(3, 4)
    gates = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
    I, Fg, G, O = gates.chunk(4, dim=1)
    C = torch.sigmoid(Fg) * c + torch.sigmoid(I) * torch.tanh(G)
    _, (H_new, C_new) = lstm(x[None], (h[None], c[None]))
    torch.testing.assert_close(C_new[0], C)
    torch.testing.assert_close(H_new[0], torch.sigmoid(O) * torch.tanh(C))


def test_relu_rnns_and_layers_without_bias_match_torch():
    for kind, kwargs in (("rnn", dict(nonlinearity="relu")), ("rnn", dict(bias=False)), ("gru", dict(bias=False)),
                         ("lstm", dict(bias=False))):
        s, f = twins(kind, 3, 4, 2, **kwargs)
        assert list(s.state_dict()) == list(f.state_dict())
        X = torch.randn(5, 2, 3, dtype=torch.float64)
        torch.testing.assert_close(s(X)[0], f(X)[0])
    s, f = twins("rnn", 3, 4, 1, nonlinearity="relu", bias=False)
    grads = []
    for layer in (s, f):  # a pre-activation of exactly 0 (zero input, zero state): ReLU's derivative there is 0
        X = torch.zeros(2, 1, 3, dtype=torch.float64, requires_grad=True)
        layer(X)[0].sum().backward()
        grads.append(X.grad)
    assert torch.equal(grads[0], grads[1]) and not grads[0].any()  # the scratch layer's clamp once passed 1


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_one_unbatched_sequence_and_its_state_as_torch_takes_them(kind, batch_first):
    s, f = twins(kind, 3, 4, 2, bidirectional=True, batch_first=batch_first)
    X = torch.randn(5, 3, dtype=torch.float64)  # (T, I): no batch axis, whatever batch_first says
    h = torch.randn(4, 4, dtype=torch.float64)  # (L*D, H)
    state = (h, h.flip(0)) if kind == "lstm" else h
    (ours, ours_state), (theirs, theirs_state) = s(X, state), f(X, state)
    torch.testing.assert_close(ours, theirs)
    for a, b in zip(flat(ours_state), flat(theirs_state)):
        torch.testing.assert_close(a, b)
    wrong = torch.zeros(4, 1, 4, dtype=torch.float64)  # a batch of 1 for a batch of 2: torch refuses it too
    with pytest.raises(ValueError, match=r"Expected hidden size \(4, 2, 4\), got \[4, 1, 4\]"):
        s(torch.randn(*((2, 5) if batch_first else (5, 2)), 3, dtype=torch.float64),
          (wrong, wrong) if kind == "lstm" else wrong)


def test_recurrent_layers_and_the_language_model_reject_bad_arguments():
    with pytest.raises(ValueError, match="--kind must be one of rnn, gru, lstm"):
        language_model("fast", 7, "transformer", 4)
    with pytest.raises(ValueError, match="dropout"):
        scratch.RNN(3, 4, 2, dropout=1.0)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        scratch.RNN(3, 4, nonlinearity="sigmoid")


def test_scratch_clip_grad_norm_keeps_float64_gradients_float64():
    """Summed in float32, gradients of 1e20 overflowed to a zero scale, and small ones lost digits."""
    for size in (1.0, 1e20):
        grads = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * size
        p, q = nn.Parameter(torch.zeros(3, dtype=torch.float64)), nn.Parameter(torch.zeros(3, dtype=torch.float64))
        p.grad, q.grad = grads.clone(), grads.clone()
        norm = scratch.clip_grad_norm([p], 1.0)
        assert norm.dtype == torch.float64
        torch.testing.assert_close(norm, torch.nn.utils.clip_grad_norm_([q], 1.0), rtol=1e-12, atol=0)
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=0)  # torch divides by norm + 1e-6


@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_scratch_clip_grad_norm_matches_torch(max_norm):
    torch.manual_seed(0)
    grads = [torch.randn(4, 3) * 3, torch.randn(5)]
    ps, pt = [nn.Parameter(torch.zeros_like(g)) for g in grads], [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, q, g in zip(ps, pt, grads):
        p.grad, q.grad = g.clone(), g.clone()
    norm = scratch.clip_grad_norm(ps, max_norm)
    expected_norm = torch.nn.utils.clip_grad_norm_(pt, max_norm)
    torch.testing.assert_close(norm, expected_norm)
    for p, q in zip(ps, pt):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)  # torch divides by norm + 1e-6
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in ps))
    assert float(total) <= max_norm + 1e-5
    if max_norm > float(expected_norm):  # below the threshold nothing changes
        for p, g in zip(ps, grads):
            torch.testing.assert_close(p.grad, g)
    torch.testing.assert_close(fast.clip_grad_norm(pt, max_norm), torch.sqrt(sum((q.grad ** 2).sum() for q in pt)))


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_language_model_shapes_and_state_carry(impl):
    torch.manual_seed(0)
    model = language_model(impl, 7, "lstm", 8, 2)
    X = torch.randint(0, 7, (3, 10))
    logits, _ = model(X)
    assert logits.shape == (10, 3, 7)
    first, state = model(X[:, :6])
    second, _ = model(X[:, 6:], state)  # carrying the state = one long pass
    torch.testing.assert_close(torch.cat([first, second]), logits)


def test_scratch_and_fast_language_models_share_state_dicts():
    torch.manual_seed(0)
    s = language_model("scratch", 7, "gru", 8)
    f = language_model("fast", 7, "gru", 8)
    f.load_state_dict(s.state_dict())
    X = torch.randint(0, 7, (2, 5))
    torch.testing.assert_close(s(X)[0], f(X)[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_predict_chars_warms_up_then_predicts_greedily(bidirectional):
    """One character at a time from the start, as the book's predict_ch8: a bidirectional model given the
    whole prefix at once read it backwards too, and wrote other text than the book's."""
    torch.manual_seed(0)
    vocab = Vocab(list("time traveller"))
    model = create_model("rnn-lm", "fast", vocab_size=len(vocab), kind="gru", num_hiddens=16, num_layers=2,
                         bidirectional=bidirectional)
    text = predict_chars("time", 10, model, vocab)
    # the book's way: feed one character at a time, then take the argmax of each prediction
    state, outputs = None, vocab[list("time")]
    for token in outputs[:-1]:
        _, state = model(torch.tensor([[token]]), state)
    for _ in range(10):
        logits, state = model(torch.tensor([[outputs[-1]]]), state)
        outputs.append(int(logits[-1, 0].argmax()))
    assert text == "".join(vocab.to_tokens(outputs)) and len(text) == 14
    with pytest.raises(ValueError, match="non-empty prefix"):
        predict_chars("", 5, model, vocab)


def test_predict_chars_feeds_one_character_at_a_time_with_the_state_carried():
    """The calls themselves, as the book's predict_ch8 makes them (an untrained model's text cannot tell)."""

    class Calls(nn.Module):
        def __init__(self, V):
            super().__init__()
            self.p, self.V, self.seen = nn.Parameter(torch.zeros(1)), V, []

        def forward(self, X, state=None):
            self.seen.append((X.tolist(), state))
            logits = torch.zeros(X.shape[1], 1, self.V)
            logits[..., 1] = 1  # always token 1 next
            return logits, (0 if state is None else state) + 1

    vocab = Vocab(list("time traveller"))
    model = Calls(len(vocab))
    predict_chars("time", 2, model, vocab)
    t = vocab[list("time")]
    assert model.seen == [([[t[0]]], None), ([[t[1]]], 1), ([[t[2]]], 2), ([[t[3]]], 3), ([[1]], 4)]


class RecordingLM(nn.Module):
    """Returns fixed logits and records the state it was given; the new state counts calls."""

    def __init__(self, V):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(V))
        self.seen = []

    def forward(self, X, state=None):
        self.seen.append(state)
        B, T = X.shape
        new = (state if state is not None else torch.zeros(1)) + 1 + 0 * self.logits.sum()  # has a graph
        return self.logits.expand(T, B, -1), new


@pytest.mark.parametrize("sequential", [True, False])
def test_language_modeling_task_carries_detached_state_only_for_sequential_batches(sequential):
    model, task = RecordingLM(5), LanguageModeling(fast.cross_entropy, sequential=sequential)
    X, Y = torch.randint(0, 5, (2, 3)), torch.randint(0, 5, (2, 3))
    task.start_epoch(True)
    out = task.step(model, Split(X, Y), True)
    task.step(model, Split(X, Y), True)
    task.start_epoch(True)
    task.step(model, Split(X, Y), True)
    assert model.seen[0] is None and model.seen[2] is None  # fresh state each epoch
    if sequential:
        assert float(model.seen[1]) == 1.0 and model.seen[1].grad_fn is None  # carried over, detached
    else:
        assert model.seen[1] is None
    expected = F.cross_entropy(model.logits.expand(6, -1), Y.T.reshape(-1)).detach()
    torch.testing.assert_close(out.loss, expected)
    summary = task.summarize({"loss": float(out.sums["loss"]), "tokens": out.sums["tokens"]})
    assert summary["perplexity"] == pytest.approx(math.exp(float(expected)), rel=1e-5)


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_language_model_learns_a_periodic_text(impl):
    torch.manual_seed(0)
    corpus = torch.tensor([0, 1, 2, 3, 1, 2] * 40)
    model = language_model(impl, 4, "gru", 16)
    loader = LMLoader(corpus, 4, 8, sequential=True)
    trainer = Trainer(model, LanguageModeling(fast.cross_entropy, sequential=True), torch.optim.Adam(model.parameters(), 0.05),
                      epochs=10, clip_grad_norm=1.0, progress=False)
    history = trainer.fit(loader)
    assert history[0]["train_perplexity"] > 2 and history[-1]["train_perplexity"] < 1.2
    assert history[-1]["tokens_per_s"] > 0
    with pytest.raises(ValueError, match="one loss per token"):
        LanguageModeling(F.cross_entropy, sequential=True).step(model, next(iter(loader)), True)


def test_rnn_scratch_experiment_runs_on_the_packaged_book(tmp_path, monkeypatch):
    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import run_experiment

    monkeypatch.delenv("DIVEKIT_DATA", raising=False)  # the packaged Time Machine is enough
    experiment = get_experiment("rnn-scratch")
    cfg = experiment.make_options(epochs=2, num_hiddens=32, max_tokens=3000, num_preds=10, device="cpu")
    assert (cfg.impl, cfg.lr, cfg.batch_size, cfg.num_steps, cfg.clip_grad) == ("scratch", 1.0, 32, 35, 1.0)
    assert experiment.make_options().epochs == 500 and experiment.make_options().num_hiddens == 512
    clip_calls, scratch_clip = [], scratch.clip_grad_norm

    def recording_clip(params, max_norm):
        clip_calls.append(max_norm)
        return scratch_clip(params, max_norm)

    monkeypatch.setattr(scratch, "clip_grad_norm", recording_clip)
    summary = run_experiment(experiment, cfg, tmp_path / "run", progress=False)
    assert clip_calls and set(clip_calls) == {1.0}  # --impl scratch clips with the scratch function
    assert summary["results"]["sample"].startswith("time traveller") and len(summary["results"]["sample"]) == 24
    assert summary["final"]["train_perplexity"] < 28  # better than guessing among 28 characters
    assert summary["reference"][0]["metric"] == "train_perplexity"
    with pytest.raises(ValueError, match="--clip-grad"):
        experiment.make_options(clip_grad=0.0)


def test_the_books_rnn_numbers_follow_the_sampling_the_run_used():
    """§8.5 publishes perplexity 1.0 with sequential partitioning and 1.5 with random sampling."""
    from divekit.experiments.book import book_results, compare

    sequential = book_results("rnn-scratch", "scratch", {"random_sampling": False})
    random = book_results("rnn-scratch", "scratch", {"random_sampling": True})
    assert sequential["metrics"]["train_perplexity"]["book"] == 1.0
    assert random["metrics"]["train_perplexity"]["book"] == 1.5
    assert book_results("rnn-scratch", "scratch") is None  # a run that does not say how it sampled matches neither
    (row,) = compare("rnn-scratch", "scratch", {"train_perplexity": 1.4}, {"random_sampling": True})
    assert row["reached"] and row["spread"] == [1.3, 1.55]
    (row,) = compare("rnn-scratch", "scratch", {"train_perplexity": 1.4}, {"random_sampling": False})
    assert not row["reached"]
    assert book_results("gru", "fast")["metrics"]["train_perplexity"]["book"] == 1.0  # entries without "when" always apply


@pytest.mark.slow
@pytest.mark.parametrize("random_sampling", [False, True])
def test_rnn_scratch_reaches_the_books_perplexity(tmp_path, monkeypatch, random_sampling):
    """D2L §8.5 at the book's settings, both samplings (500 epochs, a few minutes each on a CPU)."""
    from divekit.data.text import load_corpus_time_machine
    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import run_experiment

    monkeypatch.delenv("DIVEKIT_DATA", raising=False)  # the packaged Time Machine
    experiment = get_experiment("rnn-scratch")
    cfg = experiment.make_options(device="cpu", random_sampling=random_sampling)
    summary = run_experiment(experiment, cfg, tmp_path / "run", progress=False)
    (row,) = summary["reference"]
    assert row["reached"] and row["book"] == (1.5 if random_sampling else 1.0), row
    sample = summary["results"]["sample"]
    assert sample.startswith("time traveller") and len(sample) == len("time traveller") + 50
    if not random_sampling:  # at perplexity 1.03 the model has learned its 10,000 characters by heart
        corpus, vocab = load_corpus_time_machine(10000, "char")
        assert sample[len("time traveller"):][:20] in "".join(vocab.to_tokens(corpus.tolist()))


def test_sequence_sine_predicts_ahead_and_says_when_its_sizes_leave_nothing_to_predict(tmp_path):
    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import run_experiment

    experiment = get_experiment("sequence-sine")
    summary = run_experiment(experiment, experiment.make_options(epochs=2), tmp_path / "run", progress=False)
    results = summary["results"]
    # errors pile up: k steps ahead are worse than one, and the book's rollout from t = 604 worst of all
    assert results["mse_1_step"] < results["mse_16_step"] < results["mse_multistep"]
    for options, message in ((dict(num_points=100, tau=40), "leaves no window for 64-step-ahead predictions"),
                             (dict(num_points=200), "--n-train 600 leaves nothing to predict")):
        with pytest.raises(ValueError, match=message):
            run_experiment(experiment, experiment.make_options(**options), tmp_path / "bad", progress=False)
