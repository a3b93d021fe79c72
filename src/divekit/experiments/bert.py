"""BERT (D2L chapters 14-15): pretraining on WikiText-2 with the masked language model and
next-sentence prediction (§14.8-14.10), the representations of a text and a text pair (the book's
"crane" example), and fine-tuning with a new output layer (§15.6-15.7): on tasks made from fra-eng
(word order in English sentences; an English-French pair or a mismatch) against the same BERT trained
from scratch, and on SNLI as the book does where SNLI is here.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from divekit.experiments.parts import DataPart, Loaded, Probe, TaskPart, data_generator
from divekit.experiments.registry import (BatchSize, DemoResult, Device, Epochs, Impl, LearningRate, Optimizer, Recipe,
                                          Seed, demo, register)
from divekit.options import Checked, at_least, below, option

if TYPE_CHECKING:
    import torch

log = logging.getLogger("divekit")


# -- §14.9-14.10: pretraining ---------------------------------------------------------------------------

@dataclass
class WikiText2(DataPart, Checked):
    """The book's pretraining pairs from WikiText-2 (D2L §14.9), with their vocabulary."""

    PROVIDES = ("vocab_size",)
    label: ClassVar[str] = "WikiText-2 next-sentence pairs with masked tokens (the book's load_data_wiki)"
    max_len: int = option(64, "tokens per example, <cls> and <sep> included (the book: 64; BERT: 512)", at_least(5))
    steps: int | None = option(50, "minibatches per epoch (the book trains 50 steps; none: every pair once)",
                               at_least(1))
    dynamic_masks: bool = option(False, "draw the MLM masks afresh for every minibatch (RoBERTa) instead of once "
                                        "(the book)")
    held_out: bool = option(False, "evaluate each epoch on pairs from WikiText-2's validation articles")

    def check_model(self, cfg):
        _check_max_len(self.max_len, cfg.max_positions, "this BERT (--max-positions)")

    def load(self, ctx):
        import torch

        from divekit.data.bert_data import MaskTokens, load_wiki_pretraining, read_wiki
        from divekit.data.loader import TensorLoader

        data = load_wiki_pretraining(self.max_len, data_generator(ctx.train.seed), self.dynamic_masks)
        examples = data.examples if ctx.train.limit is None else data.examples.select(slice(0, ctx.train.limit))
        transform = MaskTokens(data.vocab) if self.dynamic_masks else None
        loader = TensorLoader(examples, ctx.train.batch_size, shuffle=True, seed=ctx.train.seed, device=ctx.device,
                              transform=transform, num_batches=self.steps)
        evaluation = None
        if self.held_out:  # static masks with a fixed seed: every evaluation sees the same examples
            valid = load_wiki_pretraining(self.max_len, torch.Generator().manual_seed(0),
                                          paragraphs=read_wiki(split="valid"), vocab=data.vocab).examples
            valid = valid if ctx.train.limit is None else valid.select(slice(0, ctx.train.limit))
            evaluation = TensorLoader(valid, max(ctx.train.batch_size, 256), device=ctx.device)
        steps = len(loader)
        name = (f"WikiText-2: {len(examples):,} sentence pairs of at most {self.max_len} tokens (vocabulary of "
                f"{len(data.vocab):,}), {steps} minibatches of {ctx.train.batch_size} per epoch")
        return Loaded(name, loader, evaluation, eval_name="val", model_fields={"vocab_size": len(data.vocab)},
                      info=data)


@dataclass
class Pretrain(TaskPart, Checked):
    """The masked language model and next-sentence prediction, their losses summed (D2L §14.10.1)."""

    mlm_reduction: Literal["book", "real"] = option(
        "book", "the MLM loss minimised: the book's mean over all prediction slots, padding included, or the mean "
                "over the real predictions (both are reported)")

    def build(self, ops, data):
        from divekit.train.bert import BertPretrainingTask

        return BertPretrainingTask(ops.cross_entropy, self.mlm_reduction)


CRANE_SINGLE = "a crane is flying"
CRANE_PAIR = ("a crane driver came", "he just left")


@dataclass
class CraneRepresentations(Probe):
    """The book's example of context (D2L §14.10.2): "crane" in "a crane is flying" and in "a crane
    driver came" / "he just left" gets two different vectors from the trained BERT; the first three
    elements of each (as the book prints them), their cosine similarity, and the shapes."""

    def run(self, model, data, device):
        import torch

        from divekit.models.bert import encode_text

        vocab = data.info.vocab
        single = encode_text(model, vocab, CRANE_SINGLE)  # (1, 6, d): <cls> a crane is flying <sep>
        pair = encode_text(model, vocab, *CRANE_PAIR)  # (1, 10, d)
        crane_single, crane_pair = single[0, 2].float().cpu(), pair[0, 2].float().cpu()
        return {"crane_in_vocab": vocab["crane"] != vocab.unk,
                "encoded_text_shape": list(single.shape), "encoded_pair_shape": list(pair.shape),
                "crane_single_first3": crane_single[:3].tolist(), "crane_pair_first3": crane_pair[:3].tolist(),
                "crane_cosine": float(torch.cosine_similarity(crane_single, crane_pair, dim=0))}, {}


PRETRAIN_TINY = dict(steps=2, batch_size=16, num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_layers=1, limit=64)

register(Recipe(
    name="bert-pretrain", section="14.8-14.10", title="Pretraining BERT on WikiText-2: masked language model and "
                                                     "next-sentence prediction",
    data=WikiText2(), model="bert", task=Pretrain(),
    train=dict(epochs=1, lr=0.01, batch_size=512, optimizer="adam"),
    probes=(CraneRepresentations(),), tiny=PRETRAIN_TINY,
))

register(Recipe(
    name="bert-pretrain-long", section="14.10",
    title="Beyond the book: the book's BERT pretrained longer, with fresh masks, a held-out loss and its curve",
    data=WikiText2(steps=None, dynamic_masks=True, held_out=True), model="bert", task=Pretrain(mlm_reduction="real"),
    train=dict(epochs=10, lr=0.001, batch_size=128, optimizer="adam"), model_args=dict(dropout=0.1),
    probes=(CraneRepresentations(),), tiny=PRETRAIN_TINY,
))


# -- §15.6-15.7: fine-tuning ----------------------------------------------------------------------------

PRETRAINED_HELP = ("the BERT to fine-tune: a bert-pretrain(-long) run folder, d2l:bert.small or d2l:bert.base (the "
                   "book's weights), hf:FOLDER (a Hugging Face checkpoint)")
PretrainedSpec = Annotated[str | None, PRETRAINED_HELP + "; none: pretrain one here first (--pretrain-steps)"]
PretrainedWeights = Annotated[str | None, PRETRAINED_HELP]  # a demonstration that cannot pretrain one


def load_pretrained(spec: str, impl: str, device: torch.device):
    """(BERTModel, vocabulary, what it is) from a ``--pretrained`` value (see :data:`PretrainedSpec`)."""
    from divekit.models.bert_weights import load_d2l_pretrained, load_hf_checkpoint

    if spec.startswith("d2l:"):
        model, vocab = load_d2l_pretrained(spec.removeprefix("d2l:"), impl)
        return model.to(device), vocab, f"the book's pretrained {spec.removeprefix('d2l:')}"
    if spec.startswith("hf:"):
        model, vocab = load_hf_checkpoint(spec.removeprefix("hf:"), impl)
        if vocab is None:
            raise ValueError(f"{spec}: the checkpoint folder has no vocab.txt, so texts cannot be tokenized for it")
        return model.to(device), vocab, f"the Hugging Face checkpoint {spec.removeprefix('hf:')}"
    return (*pretrained_run(spec, impl, device), f"the pretraining run {spec}")


def pretrained_run(run_dir: str | Path, impl: str = "fast", device: str | torch.device = "cpu"):
    """The BERT and the vocabulary of a finished ``bert-pretrain`` or ``bert-pretrain-long`` run folder
    (the vocabulary is rebuilt from its ``config.json``: the data part is deterministic)."""
    from divekit import io
    from divekit.experiments.runner import prepare_training
    from divekit.options import from_dict
    from divekit.run_folder import CHECKPOINT_NAME, CONFIG_NAME

    run_dir = Path(run_dir)
    experiment, record = _pretraining_run(run_dir)
    values = {**record["config"], "impl": impl, "device": str(device), "held_out": False}
    setup = prepare_training(experiment, from_dict(experiment.options, values, str(run_dir / CONFIG_NAME))).setup
    setup.model.load_state_dict(io.load(run_dir / CHECKPOINT_NAME)["model"])
    return setup.model, setup.data.info.vocab


def _pretraining_run(run_dir: Path):
    """The experiment and the config.json record of a finished BERT pretraining run, or why ``run_dir`` is none."""
    from divekit import io
    from divekit.experiments.registry import get_experiment
    from divekit.run_folder import CHECKPOINT_NAME, CONFIG_NAME

    if not (run_dir / CONFIG_NAME).exists() or not (run_dir / CHECKPOINT_NAME).exists():
        raise FileNotFoundError(f"{run_dir} is not a finished divekit run (it needs {CONFIG_NAME} and "
                                f"{CHECKPOINT_NAME})")
    record = io.read_json(run_dir / CONFIG_NAME)
    experiment = get_experiment(record["experiment"])
    if not isinstance(getattr(experiment, "data", None), WikiText2):
        raise ValueError(f"{run_dir} is a run of {experiment.name}, not a BERT pretraining run")
    return experiment, record


def check_pretrained(spec: str | None) -> None:
    """Refuse a ``--pretrained`` (see :data:`PretrainedSpec`) whose weights are not there, before a run loads or
    names its data: the book's are fetched (downloaded where they are not on this machine yet), a checkpoint
    folder or a pretraining run is looked at for its files."""
    if spec is None:
        return
    if spec.startswith("d2l:"):
        from divekit.data import hub
        from divekit.models.bert_weights import d2l_pretrained_dataset

        try:
            dataset = d2l_pretrained_dataset(spec.removeprefix("d2l:"))
        except ValueError as error:
            raise ValueError(f"--pretrained {spec}: {error}") from None
        hub.fetch(dataset)
    elif spec.startswith("hf:"):
        from divekit.models.bert_weights import hf_checkpoint_weights

        hf_checkpoint_weights(Path(spec.removeprefix("hf:")), to_fine_tune=True)
    else:
        _pretraining_run(Path(spec))


def _weights_first(options) -> None:
    """The ``preflight`` (see :class:`~divekit.experiments.registry.Demo`) of the demonstrations that
    fine-tune a pretrained BERT: missing weights are refused before the run names its data."""
    check_pretrained(options.pretrained)


def _weights_given_first(options) -> None:
    """:func:`_weights_first` for a demonstration that cannot pretrain a BERT itself: --pretrained is needed."""
    if options.pretrained is None:
        raise ValueError("--pretrained none: this demonstration fine-tunes a pretrained BERT and cannot pretrain one; "
                         "give d2l:bert.small, d2l:bert.base, hf:FOLDER or a bert-pretrain run folder")
    check_pretrained(options.pretrained)


def pretrain_here(steps: int, impl: str, device: str, seed: int, **sizes):
    """A BERT pretrained for ``steps`` minibatches of 128 with ``bert-pretrain-long``'s recipe (Adam at
    1e-3, fresh masks, dropout 0.1), and its vocabulary. Not the book's recipe (Adam at 0.01 on
    batches of 512): after 50-300 of its steps the pooler's tanh is saturated (mean |output| 0.93,
    spread across texts 0.05, against 0.44 and 0.17 after 3 epochs of the long recipe), so a
    classifier on it cannot learn and fine-tuning stays at chance."""
    from divekit.experiments.runner import prepare_training

    training = prepare_training("bert-pretrain-long", steps=steps, epochs=1, held_out=False, impl=impl, device=device,
                                seed=seed, **sizes)
    history = training.fit()
    log.info(f"pretrained {steps} steps: MLM loss {history[-1]['train_mlm_loss']:.3f}, "
             f"NSP loss {history[-1]['train_nsp_loss']:.3f}")
    return training.setup.model, training.setup.data.info.vocab


def finetune_optimizer(model, name: str, impl: str, lr: float, body_lr_factor: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` with two parameter groups: the pretrained body (``model.body_parameters()``)
    at ``lr * body_lr_factor``, the new output layer at ``lr`` (D2L §15.6: the body needs only small changes)."""
    from divekit.optim import create_optimizer

    body = {id(p) for p in model.body_parameters()}
    groups = [{"params": model.body_parameters(), "lr": lr * body_lr_factor},
              {"params": [p for p in model.parameters() if id(p) not in body], "lr": lr}]
    return create_optimizer(name, groups, impl=impl, lr=lr)


def fine_tune(bert, data, *, ops, epochs: int, lr: float, body_lr_factor: float, warmup: float, batch_size: int,
              optimizer: str, impl: str, device: torch.device, seed: int,
              head_dropout: float | None = None) -> list[dict]:
    """Fine-tune a :class:`~divekit.models.bert.BERTClassifier` made of ``bert`` on ``data`` (train, test,
    classes): the body at ``lr * body_lr_factor``, the new layer at ``lr``; with ``warmup`` > 0 the
    learning rates rise linearly over that share of the steps, then follow a cosine to 0 (else they
    stay constant, as in the book); ``head_dropout``: see :class:`~divekit.models.bert.BERTClassifier`.
    Returns the trainer's history (test metrics each epoch)."""
    from divekit.data.loader import TensorLoader
    from divekit.models.bert import BERTClassifier
    from divekit.optim.schedules import CosineScheduler
    from divekit.train.bert import TextClassificationTask
    from divekit.train.engine import Trainer

    train, test, classes = data
    model = BERTClassifier(bert, len(classes), ops, head_dropout).to(device)
    opt = finetune_optimizer(model, optimizer, impl, lr, body_lr_factor)
    train_loader = TensorLoader(train, batch_size, shuffle=True, seed=seed, device=device)
    total = epochs * len(train_loader)
    warmup_steps = min(round(warmup * total), total - 1)  # the cosine needs a step after the warm-up
    scheduler = CosineScheduler(opt, max_update=total, warmup_steps=warmup_steps) if warmup > 0 else None
    trainer = Trainer(model, TextClassificationTask(ops.cross_entropy), opt, epochs=epochs, device=device,
                      scheduler=scheduler, scheduler_interval="step", eval_name="test", progress=False)
    return trainer.fit(train_loader, TensorLoader(test, max(batch_size, 256), device=device))


def _shuffled(data, seed: int):
    """Single texts in a random order (by ``seed``)."""
    import torch

    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    return type(data)([data.texts_a[i] for i in order], None, [data.labels[i] for i in order], data.classes)


def _check_max_len(max_len: int, max_positions: int, source: str) -> None:
    """Refuse, before any data is read, examples longer than the BERT has positions for."""
    if max_len > max_positions:
        raise ValueError(f"--max-len {max_len} is longer than the {max_positions} positions of {source}: "
                         f"lower --max-len to at most {max_positions}")


def _task_data(task: str, vocab, max_len: int, train_examples: int | None, test_examples: int | None, seed: int):
    """(train, test, classes) of a fine-tuning task as BERT inputs with ``vocab``."""
    from divekit.data.text_classification import (LabeledTexts, encode_texts, fra_eng_matching, read_imdb, read_snli,
                                                  wiki_tokenize, word_order)

    if task == "word-order":
        train, test = word_order(train_examples, test_examples, seed=seed)
    elif task == "fra-eng":
        train, test = fra_eng_matching(train_examples, test_examples, seed=seed)
    elif task == "snli":
        train, test = read_snli("train").head(train_examples), read_snli("test").head(test_examples)
    else:  # the files list positive reviews first: shuffle, so that the first N hold both classes
        train, test = (_shuffled(read_imdb(split), seed).head(n)
                       for split, n in (("train", train_examples), ("test", test_examples)))
    tokenize = getattr(vocab, "tokenize", None)  # a Hugging Face checkpoint's WordPiece
    if task == "imdb" and tokenize is None:  # reviews as WikiText-2 writes words, without the HTML line breaks
        train, test = (LabeledTexts([wiki_tokenize(" ".join(words).replace("<br />", " ")) for words in data.texts_a],
                                    None, data.labels, data.classes) for data in (train, test))
    return encode_texts(train, vocab, max_len, tokenize), encode_texts(test, vocab, max_len, tokenize), train.classes


Task = Annotated[Literal["word-order", "fra-eng", "snli", "imdb"],
                 "word-order: an English sentence as written or with two words swapped (made here from fra-eng's "
                 "English side); fra-eng: an English sentence with its French translation or another's (made here); "
                 "snli: the book's §15.7 (needs SNLI); imdb: sentiment of a review (needs aclImdb)"]
Examples = Annotated[int | None, "use at most N examples (none: all)", at_least(1)]
MaxLen = Annotated[int, "tokens per example with <cls> and <sep>; longer inputs are cut as the book cuts them",
                   at_least(4)]
BodyLr = Annotated[float, "learning rate of the pretrained body as a share of --lr (the new layer's)", at_least(0)]
Warmup = Annotated[float, "share of the steps with a linear warm-up, then a cosine decay (0: a constant rate)",
                   at_least(0), below(1)]


def _curves(histories: dict[str, list[dict]]):
    """Training loss and test accuracy of each fine-tuned model against the epoch."""
    from divekit.viz.curves import plot_history

    rows = []
    for epoch, records in enumerate(zip(*histories.values()), 1):
        row = {"epoch": epoch}
        for name, record in zip(histories, records):
            row.update({f"{name}_train_loss": record["train_loss"], f"{name}_test_acc": record["test_acc"]})
        rows.append(row)
    return plot_history(rows, title="fine-tuning")


@demo("bert-finetune", section="15.6", title="Fine-tuning a pretrained BERT against the same BERT from scratch",
      dataset="fra-eng's English sentences, as written or with two words swapped; BERT pretrained on WikiText-2 "
              "here",
      tiny=dict(pretrain_steps=2, train_examples=64, test_examples=32, epochs=1, batch_size=16, num_hiddens=8,
                ffn_num_hiddens=16, num_heads=2, num_layers=1), preflight=_weights_first)
def bert_finetune(pretrained: PretrainedSpec = None,
                  pretrain_steps: Annotated[int, "with no --pretrained: steps of bert-pretrain-long's recipe (batches "
                                                 "of 128) before fine-tuning", at_least(1)] = 1000,
                  task: Task = "word-order", train_examples: Examples = 4000, test_examples: Examples = 2000,
                  max_len: MaxLen = 48, epochs: Epochs = 5, lr: LearningRate = 1e-3, body_lr_factor: BodyLr = 1.0,
                  warmup: Warmup = 0.1, batch_size: BatchSize = 64, optimizer: Optimizer = "adam",
                  scratch: Annotated[bool, "also fine-tune the same BERT from a fresh initialisation"] = True,
                  num_hiddens: Annotated[int | None, "pretraining here: width (none: 128)", at_least(1)] = None,
                  ffn_num_hiddens: Annotated[int | None, "pretraining here: FFN width (none: 256)", at_least(1)] = None,
                  num_heads: Annotated[int | None, "pretraining here: heads (none: 2)", at_least(1)] = None,
                  num_layers: Annotated[int | None, "pretraining here: blocks (none: 2)", at_least(1)] = None,
                  impl: Impl = "fast", seed: Seed = 0, device: Device = "auto") -> DemoResult:
    """A pretrained BERT and the same BERT from a fresh start, fine-tuned alike (a new output layer on
    the pooled ``<cls>`` vector, warm-up; ``--body-lr-factor`` below 1 gives the body a smaller rate):
    test accuracy after each epoch, and what pretraining adds. The default task tells an English
    sentence as written from the same sentence with two words swapped, with 4,000 training sentences."""
    from divekit.models.bert import BERTModel
    from divekit.ops import get_ops
    from divekit.train.device import choose_device, seed_everything

    device, ops = choose_device(device), get_ops(impl)
    sizes = {k: v for k, v in dict(num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens, num_heads=num_heads,
                                   num_layers=num_layers).items() if v is not None}
    if pretrained is None:
        from divekit.models.registry import model_config

        _check_max_len(max_len, model_config("bert", **sizes).max_positions, "the BERT pretrained here")
        bert, vocab = pretrain_here(pretrain_steps, impl, str(device), seed, **sizes)
        source = f"bert-pretrain-long's recipe for {pretrain_steps} steps here"
    else:
        bert, vocab, source = load_pretrained(pretrained, impl, device)
        _check_max_len(max_len, bert.config.max_positions, source)
    data = _task_data(task, vocab, max_len, train_examples, test_examples, seed)
    common = dict(ops=ops, epochs=epochs, lr=lr, body_lr_factor=body_lr_factor, warmup=warmup, batch_size=batch_size,
                  optimizer=optimizer, impl=impl, device=device, seed=seed)
    histories = {"pretrained": fine_tune(copy.deepcopy(bert), data, **common)}
    if scratch:
        seed_everything(seed)
        histories["scratch"] = fine_tune(BERTModel(bert.config, ops), data, **common)
    results = {"pretrained_from": source, "task": task, "train_examples": len(data[0]), "test_examples": len(data[1]),
               "classes": list(data[2]), **{f"{name}_test_acc": h[-1]["test_acc"] for name, h in histories.items()}}
    if scratch:
        results["gain_from_pretraining"] = results["pretrained_test_acc"] - results["scratch_test_acc"]
    rows = [{"model": name, **row} for name, history in histories.items() for row in history]
    return DemoResult(results, figures={"finetune_curves": _curves(histories)}, rows=rows)


@demo("bert-snli", section="15.7", title="Natural language inference: fine-tuning the book's pretrained BERT on SNLI",
      dataset="SNLI (Stanford Natural Language Inference), 550,152 training and 10,000 test pairs; the book's "
              "pretrained bert.small",
      tiny=dict(train_examples=64, test_examples=32, epochs=1, batch_size=16, max_len=32),
      preflight=_weights_given_first)
def bert_snli(pretrained: PretrainedWeights = "d2l:bert.small", train_examples: Examples = None,
              test_examples: Examples = None, max_len: MaxLen = 128, epochs: Epochs = 5, lr: LearningRate = 1e-4,
              body_lr_factor: BodyLr = 1.0, warmup: Warmup = 0.0, batch_size: BatchSize = 512,
              optimizer: Optimizer = "adam", impl: Impl = "fast", seed: Seed = 0,
              device: Device = "auto") -> DemoResult:
    """The book's §15.7: its pretrained bert.small (or any BERT given), a new linear layer on the
    pooled ``<cls>`` vector, Adam at 1e-4 for every parameter, 5 epochs of batches of 512 pairs of at
    most 128 tokens; test accuracy on SNLI's test set."""
    from divekit.ops import get_ops
    from divekit.train.device import choose_device

    device, ops = choose_device(device), get_ops(impl)
    bert, vocab, source = load_pretrained(pretrained, impl, device)
    _check_max_len(max_len, bert.config.max_positions, source)
    data = _task_data("snli", vocab, max_len, train_examples, test_examples, seed)
    history = fine_tune(bert, data, ops=ops, epochs=epochs, lr=lr, body_lr_factor=body_lr_factor, warmup=warmup,
                        batch_size=batch_size, optimizer=optimizer, impl=impl, device=device, seed=seed,
                        head_dropout=0.0)  # the book's classifier: the pooler, then the new layer
    final = history[-1]
    results = {"pretrained_from": source, "train_loss": final["train_loss"], "train_acc": final["train_acc"],
               "test_acc": final["test_acc"], "examples_per_s": final["examples_per_s"]}
    return DemoResult(results, figures={"finetune_curves": _curves({"snli": history})}, rows=history)

