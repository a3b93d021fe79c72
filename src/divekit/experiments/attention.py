"""Attention (D2L chapter 10): Nadaraya-Watson kernel regression as attention pooling, the GRU
encoder-decoder with Bahdanau attention, and the Transformer, translating English to French as the
book does (its 601 pairs, teacher forcing, Adam, gradient clipping at 1), then its four example
translations with BLEU and the attention maps; beyond the book, a larger Transformer measured
with corpus BLEU on English sentences it never saw in training.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from divekit.experiments.parts import FraEng, Probe, TeacherForcing, Translations, data_generator
from divekit.experiments.registry import DemoResult, Epochs, Impl, LearningRate, Recipe, Seed, demo, register
from divekit.options import Checked, at_least, option

if TYPE_CHECKING:
    import torch


# -- §10.2: Nadaraya-Watson kernel regression ------------------------------------------------------

def kernel_regression_data(n_train: int, seed: int) -> dict[str, torch.Tensor]:
    """The book's data (D2L §10.2.1): x_train sorted U(0, 5), y = 2 sin(x) + x^0.8 + N(0, 0.5^2);
    test inputs 0, 0.1, ..., 4.9 with the noise-free truth."""
    import torch

    def f(x):
        return 2 * torch.sin(x) + x ** 0.8

    g = data_generator(seed)
    x_train, _ = torch.sort(torch.rand(n_train, generator=g) * 5)
    y_train = f(x_train) + torch.normal(0.0, 0.5, (n_train,), generator=g)
    x_test = torch.arange(0, 5, 0.1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_truth": f(x_test)}


def gaussian_kernel_pooling(ops, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                            w: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Nadaraya-Watson with a Gaussian kernel (D2L §10.2.3-10.2.4): f(x) = sum_i alpha(x, x_i) y_i,
    alpha(x, x_i) = softmax_i(-((x - x_i) w)^2 / 2): queries (Q,), keys and values (Q, K) -> the
    predictions (Q,) and the attention weights (Q, K). w = 1 is the nonparametric estimator; a
    learned w makes the kernel narrower or wider."""
    scores = -((queries[:, None] - keys) * w) ** 2 / 2  # (Q, K)
    weights = ops.masked_softmax(scores[None])[0]  # (1, Q, K) -> (Q, K), every key valid
    return (weights * values).sum(dim=1), weights  # (Q,)


@demo("nadaraya-watson", section="10.2", title="Nadaraya-Watson kernel regression: attention pooling",
      dataset="synthetic: y = 2 sin(x) + x^0.8 + N(0, 0.5^2), 50 points in [0, 5] (the book's recipe)",
      tiny=dict(epochs=2))
def nadaraya_watson(epochs: Epochs = 5, lr: LearningRate = 0.5, impl: Impl = "fast", seed: Seed = 0,
                    n_train: Annotated[int, "training points", at_least(2)] = 50) -> DemoResult:
    """Average pooling, the nonparametric Gaussian kernel and the kernel with a learned width w,
    trained with the book's leave-one-out keys, summed squared loss and full-batch SGD (lr 0.5, 5
    epochs); predictions on 0..4.9 against the truth, and the attention weights as heatmaps
    (D2L §10.2). The loss of each epoch is the one before its update, as the book plots it."""
    import torch

    from divekit.ops import get_ops
    from divekit.optim import create_optimizer
    from divekit.viz.attention import plot_kernel_regression, show_heatmaps
    from divekit.viz.curves import plot_history

    ops = get_ops(impl)
    data = kernel_regression_data(n_train, seed)
    x_train, y_train, x_test, y_truth = data["x_train"], data["y_train"], data["x_test"], data["y_truth"]
    n_test = len(x_test)

    def plot(y_hat):
        return plot_kernel_regression(x_test, y_truth, y_hat, x_train, y_train)

    average = y_train.mean().expand(n_test)  # (n_test,): every query gets the mean of all values
    keys, values = x_train.expand(n_test, -1), y_train.expand(n_test, -1)  # (n_test, n_train)
    nonparametric, nonparametric_weights = gaussian_kernel_pooling(ops, x_test, keys, values)

    # Parametric: each training point is a query against the other n - 1 (leave one out), or the
    # kernel would learn to put all weight on the point itself.
    others = ~torch.eye(n_train, dtype=torch.bool)
    train_keys = x_train.expand(n_train, -1)[others].reshape(n_train, n_train - 1)  # (n, n - 1)
    train_values = y_train.expand(n_train, -1)[others].reshape(n_train, n_train - 1)  # (n, n - 1)
    w = torch.nn.Parameter(torch.rand(1))  # the book's U(0, 1) start, from the run's seed
    optimizer = create_optimizer("sgd", [w], impl=impl, lr=lr)
    rows = []
    for epoch in range(1, epochs + 1):
        y_hat, _ = gaussian_kernel_pooling(ops, x_train, train_keys, train_values, w)
        loss = ops.mse_loss(y_hat, y_train).sum()  # (y_hat - y)^2 summed over the training points
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rows.append({"epoch": epoch, "loss": loss.item(), "w": w.item()})
    with torch.no_grad():
        parametric, parametric_weights = gaussian_kernel_pooling(ops, x_test, keys, values, w)

    def test_mse(y_hat):
        return float(((y_hat - y_truth) ** 2).mean())

    results = {"loss_sum": rows[-1]["loss"], "w": w.item(), "losses": [r["loss"] for r in rows],
               "test_mse_average": test_mse(average), "test_mse_nonparametric": test_mse(nonparametric),
               "test_mse_parametric": test_mse(parametric)}
    labels = dict(xlabel="Sorted training inputs", ylabel="Sorted testing inputs")
    figures = {
        "average_pooling": plot(average),
        "nonparametric": plot(nonparametric),
        "nonparametric_heatmap": show_heatmaps(nonparametric_weights[None, None], **labels),
        "parametric_loss": plot_history([{"epoch": r["epoch"], "loss": r["loss"]} for r in rows]),
        "parametric": plot(parametric),
        "parametric_heatmap": show_heatmaps(parametric_weights[None, None], **labels),
    }
    return DemoResult(results, figures=figures, rows=rows)


# -- probes of the translation models --------------------------------------------------------------

def _record_attention(model, record: bool) -> None:
    for module in model.modules():
        if hasattr(module, "record_weights"):
            module.record_weights = record


def attention_maps(model, sentence: str, translation: str, src_vocab, tgt_vocab, num_steps: int) -> dict:
    """The attention weights behind a translation, from one teacher-forced pass in eval mode of the
    source and ``<bos>`` + the translation (the causal decoder makes this equal to the step-by-step
    decoding that produced it; ``tests/test_transformer.py`` checks the cache against it).

    Returns name -> (rows, cols, queries, keys) over the source's real tokens (with ``<eos>``):
    ``attention`` (1, 1, T, K) for the Bahdanau decoder; ``encoder_self`` (layers, heads, K, K),
    ``decoder_self`` (layers, heads, T, T) and ``decoder_cross`` (layers, heads, T, K) for the
    Transformer, T the translation's tokens plus ``<eos>``."""
    import torch

    from divekit.models.blocks import evaluating
    from divekit.models.seq2seq import encode_source

    device = next(model.parameters()).device
    X, valid_len = encode_source(sentence, src_vocab, num_steps, device)
    target = [tgt_vocab["<bos>"]] + tgt_vocab[translation.split()]
    Y = torch.tensor([target[:num_steps]], device=device)  # (1, T)
    K = int(valid_len)
    _record_attention(model, True)
    try:
        with evaluating(model):
            model(X, Y, valid_len)
    finally:
        _record_attention(model, False)
    decoder_weights = model.decoder.attention_weights
    if isinstance(decoder_weights, torch.Tensor):  # Bahdanau: (1, T, K)
        return {"attention": decoder_weights[None, :, :, :K].cpu()}
    dec_self, dec_cross = decoder_weights
    return {"encoder_self": torch.cat(model.encoder.attention_weights)[:, :, :K, :K].cpu(),  # (layers, H, K, K)
            "decoder_self": torch.cat(dec_self).cpu(),  # (layers, H, T, T)
            "decoder_cross": torch.cat(dec_cross)[..., :K].cpu()}  # (layers, H, T, K)


@dataclass
class AttentionHeatmaps(Probe, Checked):
    """The attention maps of one translation (D2L §10.4.3, §10.7.7), drawn as heatmaps."""

    heatmap_sentence: str = option("i'm home .", "the English sentence whose attention is drawn, along its greedy "
                                                 "translation (the book: the last of its four)")

    def run(self, model, data, device):
        from divekit.models.seq2seq import translate
        from divekit.viz.attention import show_heatmaps

        vocabs = data.info
        translation = translate(model, self.heatmap_sentence, vocabs.src_vocab, vocabs.tgt_vocab, vocabs.num_steps)
        maps = attention_maps(model, self.heatmap_sentence, translation, vocabs.src_vocab, vocabs.tgt_vocab,
                              vocabs.num_steps)
        figures = {}
        for name, weights in maps.items():
            layers, heads = weights.shape[:2]
            titles = [f"Head {h + 1}" for h in range(heads)] if heads > 1 else None
            figures[f"{name}_heatmap" if name != "attention" else "attention_heatmap"] = show_heatmaps(
                weights, xlabel="Key positions", ylabel="Query positions", titles=titles,
                figsize=(1.75 * heads + 1, 1.75 * layers + 0.5) if heads > 1 else (3.5, 3.5))
        # greedy as the book's, whatever --beam-size the example translations take
        return {"heatmap_translation": f"{self.heatmap_sentence} => {translation} (greedy)"}, figures


@dataclass
class HeldOutBLEU(Probe, Checked):
    """Corpus BLEU of greedy translations of the held-out English sentences (never seen in
    training) against all their French references in the data, unsmoothed (a corpus without a matching
    4-gram scores 0), with sacreBLEU (``tokenize="none"``: the text is tokenized already;
    ``smooth_method="none"``) where it is installed, else with :func:`divekit.metrics.bleu.corpus_bleu`,
    which the tests hold equal to it."""

    bleu_sentences: int | None = option(None, "translate at most N held-out sentences for BLEU (none: all)",
                                        at_least(1))

    def run(self, model, data, device):
        from divekit.metrics.bleu import corpus_bleu
        from divekit.models.seq2seq import translate

        vocabs = data.info
        pairs = vocabs.held_out_references[:self.bleu_sentences]
        if not pairs:
            return {}, {}  # nothing held out (--held-out 0)
        predictions = [translate(model, source, vocabs.src_vocab, vocabs.tgt_vocab, vocabs.num_steps)
                       for source, _ in pairs]
        references = [refs for _, refs in pairs]
        try:
            import sacrebleu
        except ImportError:
            score, by = corpus_bleu(predictions, references), "divekit corpus_bleu"
        else:
            depth = max(len(refs) for refs in references)
            streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(depth)]
            score = sacrebleu.corpus_bleu(predictions, streams, tokenize="none", smooth_method="none").score / 100
            by = f"sacrebleu {importlib.metadata.version('sacrebleu')}"
        examples = [{"source": s, "prediction": p, "references": list(refs)}
                    for (s, refs), p in zip(pairs[:8], predictions)]
        return {"heldout_bleu": score, "heldout_sentences": len(pairs), "heldout_bleu_by": by,
                "heldout_examples": examples}, {}


# -- §10.4 and §10.7: translation ------------------------------------------------------------------

BOOK_TRANSLATION = dict(lr=0.005, batch_size=64, optimizer="adam", clip_grad=1.0)
TRANSLATION_TINY = dict(epochs=1, limit=64)

register(Recipe(
    name="bahdanau", section="10.4", title="Bahdanau attention: GRU encoder-decoder with additive attention",
    data=FraEng(), model="bahdanau", task=TeacherForcing(), train=dict(epochs=250, **BOOK_TRANSLATION),
    probes=(Translations(), AttentionHeatmaps()), tiny=dict(**TRANSLATION_TINY, embed_size=8, num_hiddens=8),
))

register(Recipe(
    name="transformer", section="10.7", title="Transformer encoder-decoder, English to French",
    data=FraEng(), model="transformer", task=TeacherForcing(), train=dict(epochs=200, **BOOK_TRANSLATION),
    probes=(Translations(), AttentionHeatmaps()),
    tiny=dict(**TRANSLATION_TINY, num_hiddens=8, ffn_num_hiddens=16, num_heads=2),
))

# 149 steps of 128 pairs an epoch; one step costs 1.4 CPU-seconds on one core of the 2-core machine the
# benchmarks ran on, so the 8 epochs take about 15-30 minutes on it when idle
register(Recipe(
    name="transformer-large", section="10.7",
    title="Beyond the book: a larger Transformer on longer sentences, BLEU on held-out English sentences",
    data=FraEng(num_examples=20_000, num_steps=12, held_out=0.05), model="transformer-large",
    task=TeacherForcing(), train=dict(epochs=8, lr=0.001, batch_size=128, optimizer="adam", clip_grad=1.0),
    probes=(Translations(), HeldOutBLEU()),
    tiny=dict(**TRANSLATION_TINY, num_examples=2000, num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_layers=1,
              bleu_sentences=5),
))
