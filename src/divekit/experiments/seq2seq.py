"""Sequence to sequence learning (D2L §9.5-9.8): a GRU encoder-decoder translating English to
French, trained with teacher forcing and a masked cross-entropy, then asked for the book's four
example translations, each scored with the book's BLEU (k = 2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch

from divekit.data.loader import TensorLoader
from divekit.data.translation import load_translation
from divekit.experiments.common import book_default, make_optimizer
from divekit.experiments.config import RunConfig, option
from divekit.experiments.registry import Experiment, Setup, register
from divekit.experiments.rnn import check_at_least_one
from divekit.metrics.bleu import bleu
from divekit.models.seq2seq import seq2seq_model, translate
from divekit.ops import get_ops
from divekit.train.lm import Seq2SeqTask

EXAMPLES = (("go .", "va !"), ("i lost .", "j'ai perdu ."), ("he's calm .", "il est calme ."), ("i'm home .", "je suis chez moi ."))


@dataclass
class Seq2SeqConfig(RunConfig):
    epochs: int = book_default("epochs", 300)
    lr: float = book_default("lr", 0.005)
    batch_size: int = book_default("batch_size", 64)
    optimizer: str = book_default("optimizer", "adam")
    clip_grad: float | None = book_default("clip_grad", 1.0)
    num_examples: int = option(600, "sentence pairs from the start of fra.txt (the book: 600)")
    num_steps: int = option(10, "tokens per sentence after truncating or padding")
    embed_size: int = option(32, "embedding size")
    num_hiddens: int = option(32, "GRU hidden units")
    num_layers: int = option(2, "GRU layers in the encoder and in the decoder")
    dropout: float = option(0.1, "dropout between GRU layers")
    loss_reduction: Literal["book", "token_mean"] = option(
        "book", "training objective: the book's sum of token losses / num_steps, or the mean per real token")
    beam_size: int = option(1, "beam width for the example translations (1: greedy, as in the book)")
    decoding: Literal["greedy", "beam"] = option("greedy", "greedy, or beam search with --beam-size")

    def __post_init__(self):
        super().__post_init__()
        check_at_least_one(self, ("num_examples", "num_steps", "embed_size", "num_hiddens", "num_layers", "beam_size"))
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


def _slug(sentence: str) -> str:
    """"he's calm ." -> "he_s_calm", a metric name."""
    return "_".join(re.findall("[a-z0-9]+", sentence))


def build_seq2seq(cfg: Seq2SeqConfig, device: torch.device) -> Setup:
    """D2L §9.7: embed 32, hidden 32, 2-layer GRUs, dropout 0.1, Adam lr 0.005, 300 epochs."""
    data = load_translation(cfg.num_examples, cfg.num_steps)
    split = data.split
    if cfg.limit is not None:
        split = type(split)(split.X[:cfg.limit], split.y[:cfg.limit])
    loader = TensorLoader(split, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device)
    model = seq2seq_model(len(data.src_vocab), len(data.tgt_vocab), cfg.embed_size, cfg.num_hiddens, cfg.num_layers,
                          cfg.dropout, cfg.impl).to(device)
    tgt = data.tgt_vocab
    task = Seq2SeqTask(get_ops(cfg.impl).masked_cross_entropy, pad=tgt["<pad>"], bos=tgt["<bos>"],
                       reduction=cfg.loss_reduction)
    beam = cfg.beam_size if cfg.decoding == "beam" else 1

    def examples(model) -> dict:
        rows = []
        for english, french in EXAMPLES:
            prediction = translate(model, english, data.src_vocab, tgt, cfg.num_steps, beam_size=beam)
            rows.append({"source": english, "prediction": prediction, "reference": french,
                         "bleu": bleu(prediction, french, k=2)})
        return {"translations": rows, **{f"bleu_{_slug(r['source'])}": r["bleu"] for r in rows}}

    name = f"English-French, first {len(split):,} pairs ({len(data.src_vocab)} / {len(tgt)} tokens)"
    return Setup(model, task, make_optimizer(cfg, model), loader, None, data_name=name, finish=examples)


register(Experiment(
    name="seq2seq",
    section="9.5-9.7",
    title="Sequence to sequence learning: GRU encoder-decoder, English to French",
    dataset="fra-eng (Tatoeba), first 600 pairs",
    reproduces="loss per token about 0.19 (the book prints it divided by num_steps: 0.019); "
               "'go .' -> 'va !' and 'i lost .' -> \"j'ai perdu .\" with BLEU 1",
    config=Seq2SeqConfig,
    build=build_seq2seq,
))
