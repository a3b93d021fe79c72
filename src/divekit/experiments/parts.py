"""The parts recipes are made of (see :mod:`divekit.experiments.registry`), each a dataclass whose
fields are ``divekit run`` options:

* :class:`TrainOptions` (and :class:`UserDataOptions` or :class:`UserDetectionOptions` where a recipe
  takes ``--data``);
* data: the book's data set, or the user's, as loaders on the device and the sizes the model
  takes from it (:class:`FashionMNIST`, :class:`SyntheticRegression`, :class:`TimeMachine`,
  :class:`FraEng`);
* tasks: which loss and metrics the trainer runs, from the run's ops twin (:class:`Classify`,
  :class:`Regress`, :class:`NextToken`, :class:`TeacherForcing`);
* probes: what is reported about the trained model (:class:`PredictionGrid`,
  :class:`ParameterErrors`, :class:`TextSamples`, :class:`Translations`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from divekit.options import Checked, at_least, below, device_name, option, positive

DATA_STREAM = 104_729  # offset between the seed of generated data and the seed of the model's init
RESIZE_HELP = "resize images to SIZE x SIZE on the device (bilinear), or none to keep their size"


def data_generator(seed: int):
    """A generator for synthetic data, on a stream apart from the global one that the runner seeds
    with ``seed`` for the model's initial weights: drawing both from one stream would make the first
    weights a copy of the first examples, scaled."""
    import torch

    return torch.Generator().manual_seed(seed + DATA_STREAM)


# -- training options --------------------------------------------------------------------------------


OPTIMIZER_ALIASES = {"auto": "sgd"}  # names earlier versions took
# the options `divekit resume RUN --option VALUE` may change; the others shape the model or the data
RESUMABLE = ("epochs", "lr", "clip_grad", "device", "precision", "compile", "checkpoint_every", "tensorboard")


@dataclass
class TrainOptions(Checked):
    """Options every training run takes; a recipe sets the book's values as their defaults."""

    epochs: int = option(10, "number of passes over the training data", at_least(1))
    lr: float = option(0.1, "learning rate", positive)
    batch_size: int = option(256, "examples per minibatch", at_least(1))
    impl: Literal["scratch", "fast"] = option("fast", "scratch: built from tensor operations; fast: PyTorch's kernels")
    weight_decay: float = option(0.0, "L2 weight decay of the optimizer, on every parameter (D2L §4.5.4)", at_least(0))
    optimizer: str = option("sgd", "sgd, momentum, adagrad, rmsprop, adadelta, adam, adamw or yogi, as the --impl's "
                                   "class; scratch-NAME for the scratch one whatever --impl")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps", device_name)
    seed: int = option(0, "random seed for initialisation, shuffling and dropout", at_least(0))
    precision: Literal["fp32", "bf16"] = option("fp32", "bf16 runs the forward pass under autocast")
    compile: bool = option(False, "run the model through torch.compile")
    clip_grad: float | None = option(None, "clip the global gradient norm to this value", positive)
    limit: int | None = option(None, "use only N training and N evaluation examples, a quick check (the book's "
                                     "first N, or a text's first N tokens; N drawn with --seed from your own "
                                     "--data)", at_least(1))
    checkpoint_every: float = option(300.0, "seconds between checkpoints within an epoch, so that a run stopped "
                                            "mid-epoch resumes there (0: after every step)", at_least(0))
    tensorboard: bool = option(False, "also log every epoch's metrics to TensorBoard, in RUN_DIR/tensorboard "
                                      "(needs divekit[tensorboard]; watch with `tensorboard --logdir runs`)")

    def __post_init__(self):
        from divekit.optim import NAMES

        super().__post_init__()
        self.optimizer = OPTIMIZER_ALIASES.get(self.optimizer, self.optimizer)
        if self.optimizer not in NAMES:
            raise ValueError(f"--optimizer: unknown optimizer {self.optimizer!r}; choose one of {', '.join(NAMES)}")
        if self.tensorboard:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise ValueError("--tensorboard needs the tensorboard package: pip install 'divekit[tensorboard]'")


@dataclass
class UserDataOptions(Checked):
    """Your own data in place of the book's (D2L §4.10's way of encoding tables)."""

    data: str | None = option(None, "your own data: an image folder (one sub-folder per class) or a CSV file")
    target: str | None = option(None, "the column to predict, for --data FILE.csv")

    def __post_init__(self):
        super().__post_init__()
        if self.target is not None and self.data is None:
            raise ValueError("--target names a column of your own CSV table; pass it together with --data FILE.csv")
        self.data = _absolute(self.data)


@dataclass
class UserDetectionOptions(Checked):
    """Your own images with boxes in place of the book's bananas (the banana format, D2L §13.6)."""

    data: str | None = option(None, "your own detection data: a folder with label.csv (img_name,label,xmin,ymin,"
                                    "xmax,ymax in pixels) and images/, or with train/ and val/ folders of that form")

    def __post_init__(self):
        super().__post_init__()
        self.data = _absolute(self.data)


def _absolute(path: str | None) -> str | None:
    """``--data`` as an absolute path, so that `divekit resume` works from any folder."""
    return None if path is None else str(Path(path).expanduser().absolute())


USER_OPTIONS = {"classification": UserDataOptions, "regression": UserDataOptions, "detection": UserDetectionOptions}


# -- data ----------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A data part made ready for a run: loaders on the device, what the model is sized by, and
    what the task and probes need to know (``info``: a SplitData, a vocabulary, ...)."""

    name: str
    train: Iterable
    eval: Iterable | None
    eval_name: str = "val"
    model_fields: dict[str, Any] = field(default_factory=dict)
    info: Any = None
    transform: Any = None  # the transform of the evaluation loader, for probes that show inputs
    inputs: Any = None  # how new raw inputs become the model's (divekit.data.inputs), saved for predictions


@dataclass
class LoadContext:
    train: TrainOptions
    user: UserDataOptions | UserDetectionOptions | None
    user_data_kind: str | None
    device: Any  # torch.device


class DataPart:
    """Base of data parts. ``PROVIDES``: the model config fields the data sets (its sizes); ``BOOK_ONLY``:
    the fields that only choose or shape the book's (or a generated) data, refused with ``--data``."""

    PROVIDES: ClassVar[tuple[str, ...]] = ()
    BOOK_ONLY: ClassVar[tuple[str, ...]] = ()
    label: ClassVar[str] = ""

    def load(self, ctx: LoadContext) -> Loaded:
        raise NotImplementedError(f"{type(self).__name__} must define load(ctx)")

    def check_model(self, cfg) -> None:
        """Raise ValueError where these data options cannot feed a model of config ``cfg``, before any
        data is loaded (e.g. examples longer than the model's positions)."""


class SupervisedData(DataPart):
    """(X, y) examples: the book's (:meth:`book_data`), or the user's ``--data`` folder or table."""

    PROVIDES = ("input_shape", "num_classes", "num_outputs")

    def book_data(self, ctx: LoadContext):
        raise NotImplementedError

    def transform(self):
        return None

    def load(self, ctx: LoadContext) -> Loaded:
        from divekit.data.loader import TensorLoader

        users = ctx.user is not None and ctx.user.data is not None
        if users:
            from divekit.data.user import load_user_data

            data = load_user_data(ctx.user.data, kind=ctx.user_data_kind, target=ctx.user.target, seed=ctx.train.seed,
                                  fit=getattr(self, "resize", None))  # images of several sizes: each to --resize
        else:
            data = self.book_data(ctx)
        train, evaluation = data.train, data.eval
        if ctx.train.limit is not None:  # the book's sets are mixed; a user's folder comes class by class
            train, evaluation = (limited(s, ctx.train.limit, ctx.train.seed if users else None)
                                 for s in (train, evaluation))
        from divekit.data.inputs import ImageInputs, TableInputs

        inputs, transform = data.inputs, self.transform()
        if isinstance(inputs, TableInputs) and inputs.classes is None:  # learn the standardised target
            train, evaluation = (s.replace(y=inputs.standardize(s.y)) for s in (train, evaluation))
        if isinstance(inputs, ImageInputs) and transform is not None:
            inputs = dataclasses.replace(inputs, transform=tuple(transform.spec()))
        input_shape = data.input_shape
        if transform is not None and len(input_shape) == 3:
            input_shape = (input_shape[0], *transform.size)
        fields = {"input_shape": input_shape}
        if data.classes is not None:
            fields["num_classes"] = fields["num_outputs"] = data.num_classes
        else:
            fields["num_outputs"] = 1 if data.train.y.dim() == 1 else data.train.y.shape[1]
        device, batch_size = ctx.device, ctx.train.batch_size
        return Loaded(
            name=data.name,
            train=TensorLoader(train, batch_size, shuffle=True, seed=ctx.train.seed, device=device, transform=transform),
            eval=TensorLoader(evaluation, max(batch_size, 256), device=device, transform=transform),
            eval_name=data.eval_name, model_fields=fields, info=data, transform=transform, inputs=inputs,
        )


def limited(split, n: int, seed: int | None):
    """The first ``n`` examples of ``split``, or with a ``seed`` ``n`` drawn at random (kept in their order)."""
    import torch

    if seed is None or n >= len(split):
        return split.select(slice(0, n))
    index = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return split.select(index.to(split.X.device))


@dataclass
class FashionMNIST(SupervisedData, Checked):
    """Fashion-MNIST (D2L §3.5): 60,000 training and 10,000 test images, 28x28, ten classes."""

    label: ClassVar[str] = "Fashion-MNIST"
    resize: int | None = option(None, RESIZE_HELP, at_least(1))

    def book_data(self, ctx):
        from divekit.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist()

    def transform(self):
        if self.resize is None:
            return None
        from divekit.data.transforms import Resize

        return Resize(self.resize)


@dataclass
class SyntheticRegression(SupervisedData, Checked):
    """y = X w + b + noise with the book's w = [2, -3.4], b = 4.2 (D2L §3.2.1); the evaluation pass
    is the loss on all the training examples, which is what the book prints."""

    label: ClassVar[str] = "synthetic: y = X[2, -3.4] + 4.2 + N(0, 0.01^2)"
    BOOK_ONLY: ClassVar[tuple[str, ...]] = ("num_examples", "noise")
    TRUE_W: ClassVar[tuple[float, ...]] = (2.0, -3.4)
    TRUE_B: ClassVar[float] = 4.2
    num_examples: int = option(1000, "number of synthetic examples", at_least(1))
    noise: float = option(0.01, "standard deviation of the label noise", at_least(0))

    def book_data(self, ctx):
        from divekit.data.base import SplitData
        from divekit.data.synthetic import synthetic_regression

        examples = synthetic_regression(self.TRUE_W, self.TRUE_B, self.num_examples, self.noise,
                                        generator=data_generator(ctx.train.seed))
        from divekit.data.inputs import TableInputs

        columns = tuple({"name": f"x{i + 1}", "mean": 0.0, "std": 1.0} for i in range(len(self.TRUE_W)))
        return SplitData("synthetic (w=[2, -3.4], b=4.2)", train=examples, eval=examples, eval_name="train_full",
                         inputs=TableInputs(columns, target="y"))


@dataclass
class TimeMachine(DataPart, Checked):
    """The Time Machine as characters (D2L §8.2-8.3), in language-model minibatches."""

    PROVIDES = ("vocab_size",)
    label: ClassVar[str] = "The Time Machine (characters)"
    num_steps: int = option(35, "time steps per subsequence", at_least(1))
    max_tokens: int | None = option(10000, "train on the first N characters of the book (the book: 10000; none: all "
                                           "170,580)", at_least(1))
    random_sampling: bool = option(False, "random subsequences instead of sequential partitioning (D2L §8.3.4)")

    def load(self, ctx):
        from divekit.data.inputs import TextInputs
        from divekit.data.text import LMLoader, load_corpus_time_machine

        corpus, vocab = load_corpus_time_machine(self.max_tokens, "char")
        if ctx.train.limit is not None:
            corpus = corpus[:ctx.train.limit]
        loader = LMLoader(corpus, ctx.train.batch_size, self.num_steps, sequential=not self.random_sampling,
                          seed=ctx.train.seed, device=ctx.device)
        name = f"The Time Machine, first {len(corpus):,} characters ({len(vocab)} distinct characters)"
        return Loaded(name, loader, None, model_fields={"vocab_size": len(vocab)}, info=vocab,
                      inputs=TextInputs(tuple(vocab.idx_to_token), token="char"))


@dataclass
class FraEng(DataPart, Checked):
    """English-French sentence pairs from Tatoeba (D2L §9.5), as the book preprocesses them; with
    ``held_out``, a share of the English sentences is kept out of training, for a validation loss
    each epoch and BLEU on unseen sentences (:class:`divekit.experiments.attention.HeldOutBLEU`)."""

    PROVIDES = ("src_vocab_size", "tgt_vocab_size")
    num_examples: int | None = option(601, "sentence pairs from the start of fra.txt (none: all 167,130); the book's "
                                           "load_data_nmt(num_examples=600) reads 601", at_least(1))
    num_steps: int = option(10, "tokens per sentence after truncating or padding", at_least(1))
    held_out: float = option(0.0, "share of the distinct English sentences kept out of training for evaluation "
                                  "(the book: 0)", at_least(0), below(1))

    def check_model(self, cfg):
        max_len = getattr(cfg, "max_len", None)  # a Transformer's positional encoding
        if max_len is not None and max_len < self.num_steps:
            raise ValueError(f"--max-len {max_len} is shorter than --num-steps {self.num_steps}: the positional "
                             f"encoding must cover every position of a sentence; give --max-len {self.num_steps} "
                             "or more")

    @property
    def label(self) -> str:
        pairs = "all pairs" if self.num_examples is None else f"the first {self.num_examples:,} pairs"
        held_out = f", {self.held_out:.0%} of the English sentences held out" if self.held_out else ""
        return f"fra-eng (Tatoeba), {pairs}{held_out}"

    def load(self, ctx):
        from divekit.data.inputs import TranslationInputs
        from divekit.data.loader import TensorLoader
        from divekit.data.translation import load_translation

        data = load_translation(self.num_examples, self.num_steps, held_out=self.held_out)
        pairs = data.pairs if ctx.train.limit is None else data.pairs.select(slice(0, ctx.train.limit))
        loader = TensorLoader(pairs, ctx.train.batch_size, shuffle=True, seed=ctx.train.seed, device=ctx.device)
        held_out = data.held_out
        if held_out is not None and ctx.train.limit is not None:
            held_out = held_out.select(slice(0, ctx.train.limit))
        evaluation = None if held_out is None else TensorLoader(held_out, max(ctx.train.batch_size, 256),
                                                                device=ctx.device)
        name = (f"English-French, first {len(pairs):,} training pairs (vocabularies of {len(data.src_vocab)} / "
                f"{len(data.tgt_vocab)})")
        if held_out is not None:
            name += f", {len(held_out):,} held-out pairs of {len(data.held_out_references):,} English sentences"
        fields = {"src_vocab_size": len(data.src_vocab), "tgt_vocab_size": len(data.tgt_vocab)}
        inputs = TranslationInputs(tuple(data.src_vocab.idx_to_token), tuple(data.tgt_vocab.idx_to_token), data.num_steps)
        return Loaded(name, loader, evaluation, eval_name="val", model_fields=fields, info=data,
                      inputs=inputs)


# -- tasks -------------------------------------------------------------------------------------------


class TaskPart:
    """Base of task parts: ``build(ops, data)`` makes the trainer's :class:`~divekit.train.tasks.Task`."""

    def build(self, ops, data: Loaded):
        raise NotImplementedError(f"{type(self).__name__} must define build(ops, data)")


@dataclass
class Classify(TaskPart):
    """Softmax cross-entropy and accuracy (D2L §3.4)."""

    def build(self, ops, data):
        from divekit.train.tasks import Classification

        return Classification(ops.cross_entropy)


@dataclass
class Regress(TaskPart, Checked):
    """A regression loss per example (D2L §3.1)."""

    loss: Literal["squared_loss", "mse_loss"] = option(
        "squared_loss", "squared_loss: (y_hat - y)^2 / 2 as in §3.2; mse_loss: nn.MSELoss's (y_hat - y)^2 as in §3.3")

    def build(self, ops, data):
        from divekit.data.inputs import TableInputs
        from divekit.train.tasks import Regression

        target_std = data.inputs.target_std if isinstance(data.inputs, TableInputs) else 1.0
        return Regression(getattr(ops, self.loss), target_std=target_std)


@dataclass
class NextToken(TaskPart):
    """Next-token cross-entropy and perplexity (D2L §8.5); the state carries over between
    minibatches when the loader partitions the corpus sequentially."""

    def build(self, ops, data):
        from divekit.train.lm import LanguageModeling

        return LanguageModeling(ops.cross_entropy, sequential=data.train.sequential)


@dataclass
class TeacherForcing(TaskPart, Checked):
    """Sequence-to-sequence training with teacher forcing and a masked cross-entropy (D2L §9.7.3-9.7.4)."""

    loss_reduction: Literal["book", "token_mean"] = option(
        "book", "training objective: the book's sum of token losses / num_steps, or the mean per real token")

    def build(self, ops, data):
        from divekit.train.lm import Seq2SeqTask

        return Seq2SeqTask(ops.masked_cross_entropy, bos=data.info.tgt_vocab["<bos>"], reduction=self.loss_reduction)


# -- probes ------------------------------------------------------------------------------------------


class Probe:
    """Base of probes: ``run(model, data, device) -> (results, figures)`` after training. A probe
    whose results are held to the book's numbers says so (``compared``); the options of the others
    only shape what is shown, so changing them keeps a run comparable with the book."""

    compared: ClassVar[bool] = False

    def run(self, model, data: Loaded, device) -> tuple[dict, dict]:
        raise NotImplementedError(f"{type(self).__name__} must define run(model, data, device)")


@dataclass
class PredictionGrid(Probe):
    """The first eight evaluation images titled "true / predicted" (D2L §3.6.7)."""

    def run(self, model, data, device):
        import torch

        from divekit.data.batch import Split
        from divekit.data.loader import TensorLoader
        from divekit.viz.images import show_images

        split_data, count = data.info, 8
        if split_data.classes is None or split_data.eval.X.dtype != torch.uint8:
            return {}, {}  # only image classification has a picture to show
        images, labels = split_data.eval.X[:count], split_data.eval.y[:count]
        batch = next(iter(TensorLoader(Split(images, labels), count, device=device, transform=data.transform)))
        model.eval()
        with torch.no_grad():
            predicted = model(batch.X).argmax(dim=-1).cpu()
        titles = [f"{split_data.classes[t]}\n{split_data.classes[p]}" for t, p in zip(labels.tolist(), predicted.tolist())]
        return {}, {"predictions": show_images(images, 1, len(images), titles=titles)}


@dataclass
class ParameterErrors(Probe):
    """How far the learned w and b are from the true ones of the synthetic data (D2L §3.2.7)."""

    def run(self, model, data, device):
        import torch

        if data.eval_name != "train_full":
            return {}, {}  # the user's data: no true parameters
        from divekit.train.distributed import full_tensor

        w = full_tensor(model.linear.weight.detach()).cpu().reshape(-1)  # under --fsdp, gathered from the shards
        w_error = torch.tensor(SyntheticRegression.TRUE_W) - w
        results = {"w": w.tolist(), "w_error": w_error.tolist(), "max_abs_param_error": float(w_error.abs().max())}
        if model.linear.bias is not None:  # --bias false learns no b
            b = full_tensor(model.linear.bias.detach()).cpu()
            b_error = SyntheticRegression.TRUE_B - b
            results.update(b=float(b), b_error=float(b_error),
                           max_abs_param_error=float(torch.cat([w_error, b_error]).abs().max()))
        return results, {}


@dataclass
class TextSamples(Probe, Checked):
    """Text the trained language model writes after a prefix (D2L §8.5.4)."""

    prefix: str = option("time traveller", "text to warm the model up with before predicting")
    num_preds: int = option(50, "characters to predict after the prefix", at_least(1))

    def __post_init__(self):
        super().__post_init__()
        if not re.search("[A-Za-z]", self.prefix):  # what the book's cleaning keeps (D2L §8.2.1): letters
            raise ValueError(f"--prefix {self.prefix!r} holds no letters, and the model reads letters only (the "
                             "book's text cleaning); give it some text to warm up on before predicting")

    def run(self, model, data, device):
        from divekit.models.rnn import predict_chars

        prefix = data.inputs.clean(self.prefix)  # as the training text was cleaned, and as `divekit predict` does
        return {"sample": predict_chars(prefix, self.num_preds, model, data.info),
                "sample_traveller": predict_chars("traveller", self.num_preds, model, data.info)}, {}


TRANSLATION_EXAMPLES = (("go .", "va !"), ("i lost .", "j'ai perdu ."), ("he's calm .", "il est calme ."),
                        ("i'm home .", "je suis chez moi ."))


def _slug(sentence: str) -> str:
    """"he's calm ." -> "he_s_calm", a metric name."""
    return "_".join(re.findall("[a-z0-9]+", sentence))


@dataclass
class Translations(Probe, Checked):
    """The book's four example translations, each scored with its BLEU (k = 2) (D2L §9.7.6)."""

    compared: ClassVar[bool] = True  # the book's BLEU of each: another decoding is not the book's

    beam_size: int = option(1, "beam width for the example translations: 1 is greedy decoding, as in the book; "
                               "2 and more, beam search (D2L §9.8)", at_least(1))

    def run(self, model, data, device):
        from divekit.metrics.bleu import bleu
        from divekit.models.seq2seq import translate

        vocabs = data.info
        rows = []
        for english, french in TRANSLATION_EXAMPLES:
            prediction = translate(model, english, vocabs.src_vocab, vocabs.tgt_vocab, vocabs.num_steps, beam_size=self.beam_size)
            rows.append({"source": english, "prediction": prediction, "reference": french,
                         "bleu": bleu(prediction, french, k=2)})
        return {"translations": rows, **{f"bleu_{_slug(r['source'])}": r["bleu"] for r in rows}}, {}
