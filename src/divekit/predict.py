"""Trained runs put to use: predictions, evaluation on other data, and export.

``divekit.load(RUN_DIR)`` returns a :class:`Predictor`: the trained model with what it needs to turn
raw inputs into its tensors and its outputs into answers, read from the run folder alone:

* ``model.json``: the registered model, its config and ops twin, and its inputs
  (:mod:`divekit.data.inputs`: image size and classes, a table's column encodings, a vocabulary);
* the weights: ``best.pt``, the best epoch's by the validation metric, where the run kept one,
  else the last checkpoint's (``weights="last"`` asks for those).

One predictor per kind of input::

    divekit.load("runs/lenet-...").predict(["shoe.png"])        # [{"class": "sneaker", ...}]
    divekit.load("runs/ssd-...").predict(["street.png"])        # [{"objects": [{"class", "score", "box"}]}]
    divekit.load("runs/linear-...").predict("houses.csv")       # [{"price": 181200.0}, ...]
    divekit.load("runs/rnn-...").predict("time traveller")      # "time traveller ..."
    divekit.load("runs/seq2seq-...").predict("I'm home.")        # "je suis chez moi ."

``predictor.evaluate(PATH)`` scores the model on other data with the run's own loss and metrics,
``export(...)`` writes its weights to safetensors or the model to ONNX.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from divekit import io
from divekit.data.inputs import (DetectionInputs, ImageInputs, Inputs, TableInputs, TextInputs, TranslationInputs,
                                 inputs_from_dict)
from divekit.run_folder import BEST_NAME, CHECKPOINT_NAME, CONFIG_NAME, MODEL_CARD

WEIGHTS = ("best", "last")
EXPORT_FORMATS = ("safetensors", "onnx")


def model_card(*, model: str, impl: str, config: dict, inputs: Inputs | None, experiment: str) -> dict:
    """The contents of ``model.json``: what :func:`load` rebuilds the model and its input handling from."""
    from divekit.data.inputs import inputs_to_dict

    return {"experiment": experiment, "model": model, "impl": impl, "config": config,
            "inputs": inputs_to_dict(inputs) if inputs is not None else None}


def card_fingerprint(card: dict) -> str:
    """A model card's SHA-256 as JSON with sorted keys: the checkpoints record it, so that :func:`load`
    refuses a model.json edited since (even an edit that keeps every weight's shape)."""
    import hashlib

    return hashlib.sha256(json.dumps(card, sort_keys=True).encode()).hexdigest()


@dataclass
class Predictor:
    """A trained model and its inputs; subclasses per kind of input define ``predict``."""

    kind: ClassVar[str] = ""
    model: nn.Module
    inputs: Inputs
    run_dir: Path
    experiment: str
    model_name: str
    impl: str
    weights: Path
    device: torch.device

    def __call__(self, *args, **kwargs):
        return self.predict(*args, **kwargs)

    def predict(self, *args, **kwargs):
        raise ValueError(f"{self.run_dir}: the data of this {self.experiment} run did not say how to read new inputs, "
                         f"so it cannot predict; `divekit evaluate {self.run_dir}` scores it on its own data")

    def evaluation_data(self, path: Path, batch_size: int):
        """``path`` as a :class:`~divekit.experiments.parts.Loaded` whose ``eval`` loader the run's task scores."""
        raise ValueError(f"{self.run_dir}: this {self.experiment} run reads no data but its own; "
                         f"`divekit evaluate {self.run_dir}` without --data scores it on that")

    def evaluate(self, path: str | Path | None = None, *, batch_size: int | None = None) -> dict[str, Any]:
        """The run's loss and metrics of this model on ``path`` (data in the form ``predict`` takes,
        with its labels), or on the run's own evaluation data when ``path`` is None; in minibatches of
        ``batch_size`` (default: the run's own, as a loss averaged per minibatch depends on it)."""
        from divekit.ops import get_ops
        from divekit.train.engine import evaluate

        experiment, options = _run_options(self.run_dir)
        if path is None:
            data = _rebuild_run_data(experiment, options, self.device)
        else:
            path = Path(path).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist; pass the data to evaluate on")
            data = self.evaluation_data(path, batch_size or getattr(options, "batch_size", None) or 256)
        loader = data.eval if data.eval is not None else data.train
        task = experiment.parts(options).task.build(get_ops(self.impl), data)
        metrics = {**evaluate(self.model, task, loader, self.device), **self.quality(loader)}
        where = data.eval_name if data.eval is not None and path is None else "data"
        examples = getattr(loader, "num_examples", None)
        return {"data": str(path) if path is not None else f"{data.name} ({where})",
                **({"examples": examples} if examples is not None else {}), **metrics}

    def quality(self, loader) -> dict[str, float]:
        """Measures of the predictions beyond the task's loss and metrics (a detector's mAP)."""
        return {}

    def export(self, path: str | Path, format: str = "safetensors") -> Path:
        """Write the weights (``safetensors``) or the model with its forward pass (``onnx``, for an
        example batch, the batch size left free), each with model.json's contents as metadata: the
        model takes its inputs as divekit prepares them (the card's ``inputs``: scaling, resizing,
        encoded columns, a standardised regression target), which ONNX does not do by itself. A ``path``
        that is a folder, or ends with a slash (a folder made for it), gets ``model.safetensors`` or
        ``model.onnx`` in it; a file must end in ``.safetensors`` or ``.onnx`` as ``format`` says."""
        if format not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {format!r}; choose {' or '.join(EXPORT_FORMATS)}")
        folder = str(path).endswith(("/", os.sep))  # Path drops the slash
        path = Path(path)
        if folder or path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            path = path / f"model.{format}"
        if path.suffix != f".{format}":  # --out houses.csv by a slip would have replaced the table
            raise ValueError(f"{path} does not end in .{format}; an export is written only to a .{format} file "
                             "(or into a folder), so that no other file is overwritten")
        card = io.read_json(self.run_dir / MODEL_CARD)
        if format == "safetensors":
            try:
                from safetensors.torch import save
            except ImportError:
                raise ImportError("exporting to safetensors needs the safetensors package: "
                                  "pip install 'divekit[export]'") from None
            # cloned, so that tied weights (one tensor under two names) are written under both names
            tensors = {name: t.detach().cpu().contiguous().clone() for name, t in self.model.state_dict().items()}
            with io.atomic_open(path, "wb") as f:
                f.write(save(tensors, metadata={k: json.dumps(v) for k, v in card.items()}))
            return path
        return _export_onnx(self, path, card)


class ImageClassifier(Predictor):
    """An image classifier (D2L §3.6 on): image files in, the most likely classes out."""

    kind = "images"
    inputs: ImageInputs

    def predict(self, images, top_k: int = 3) -> list[dict]:
        """Classes of ``images`` (file paths, or uint8 images (N, C, H, W)): per image the top class,
        its probability, and the ``top_k`` most likely classes with theirs."""
        images = _image_list(images)
        names = [str(p) for p in images] if not isinstance(images, torch.Tensor) else [str(i) for i in range(len(images))]
        pixels = images if isinstance(images, torch.Tensor) else self.inputs.read(images)  # (N, C, H, W) uint8
        probabilities = _softmax_outputs(self.model, self.inputs.prepare(pixels.to(self.device)))
        return _top_classes(names, probabilities, self.inputs.classes, top_k)

    def evaluation_data(self, path, batch_size):
        from divekit.data.batch import Split
        from divekit.data.user import UserDataError, scan_class_folders

        if not path.is_dir():
            raise UserDataError(f"{path} is not a folder; an image classifier is evaluated on a folder with one "
                                "sub-folder of images per class")
        if (path / "train").is_dir() and (path / "test").is_dir():  # the layout a run takes: its test part
            path = path / "test"
        files = scan_class_folders(path, min_classes=1)  # one class of the model's is enough to score it on
        unknown = sorted(set(files) - set(self.inputs.classes))
        if unknown:
            raise UserDataError(f"{path} has class folder(s) {', '.join(unknown)} that the model does not know; "
                                f"its classes are {', '.join(self.inputs.classes)}")
        paths = [file for name in files for file in files[name]]
        labels = torch.tensor([self.inputs.classes.index(name) for name in files for _ in files[name]])
        X = self.inputs.prepare(self.inputs.read(paths))  # (N, C, H', W') float, as the model takes it
        return _loaded(path.name, Split(X, labels), self, batch_size)


class Detector(Predictor):
    """An object detector (D2L §13.7.3): image files in, per image the objects found, each with its
    class, score and box in the file's own pixels."""

    kind = "detection"
    inputs: DetectionInputs

    def predict(self, images, min_score: float = 0.5) -> list[dict]:
        """The objects in ``images`` (file paths) scoring at least ``min_score``, best first: per image
        {"input", "objects": [{"class", "score", "box": [xmin, ymin, xmax, ymax] in pixels}]}, each box
        clipped to its image (the detector's may reach past the border, as its anchors do)."""
        if not 0 <= min_score <= 1:
            raise ValueError(f"min_score must be between 0 and 1, got {min_score}")
        images = _image_list(images)
        pixels, sizes = self.inputs.read_with_sizes(images)  # (N, C, H, W) uint8, each file's (width, height)
        with torch.no_grad():
            found = self.model.detect(self.inputs.prepare(pixels.to(self.device)))
        rows = []
        for file, (width, height), objects in zip(images, sizes, found):
            keep = objects["scores"] >= min_score
            scale = torch.tensor([width, height, width, height])
            boxes = torch.minimum(objects["boxes"][keep].float().cpu().clamp(min=0) * scale, scale)  # (n, 4) pixels
            rows.append({"input": str(file), "objects": [
                {"class": self.inputs.classes[int(label)], "score": float(score), "box": [round(v, 1) for v in box]}
                for label, score, box in zip(objects["labels"][keep].tolist(), objects["scores"][keep].tolist(),
                                             boxes.tolist())]})
        return rows

    def quality(self, loader) -> dict[str, float]:
        """mAP of the detections, COCO's and VOC's, as the run's own Detections probe reports it."""
        from divekit.experiments.detection import evaluate_detector

        _, results = evaluate_detector(self.model, loader.data, self.device, loader.batch_size)
        return {name: value for name, value in results.items() if name != "detect_images_per_s"}

    def evaluation_data(self, path, batch_size):
        from divekit.data.detection import EVAL_SPLITS, evaluation_split, read_detection_split, split_folder

        path = split_folder(path)
        evaluation = evaluation_split(path)
        if not (path / "label.csv").is_file() and evaluation is not None:  # a folder of splits, as --data takes
            import logging

            logging.getLogger("divekit").info(f"scoring on {evaluation}, the evaluation split of {path}")
            path = evaluation
        if not (path / "label.csv").is_file():
            raise ValueError(f"{path} holds no label.csv; a detector is scored on a folder in the banana format "
                             f"(label.csv of img_name,label,xmin,ymin,xmax,ymax in pixels, and images/), or on one "
                             f"with a {'/'.join(EVAL_SPLITS)} folder of that form")
        split = read_detection_split(path, size=(self.inputs.width, self.inputs.height))
        unknown = sorted(set(split.labels[split.labels >= 0].tolist()) - set(range(len(self.inputs.classes))))
        if unknown:
            raise ValueError(f"{path}/label.csv has class indices {unknown} that the model does not know; its classes "
                             f"are {', '.join(f'{i} {name}' for i, name in enumerate(self.inputs.classes))}")
        return _loaded(path.name, split, self, batch_size)


class TablePredictor(Predictor):
    """A model of a table's rows (D2L §3.3, §4.10): a classifier of the target column's values, or a
    regression of its numbers, given in the table's own units."""

    kind = "table"
    inputs: TableInputs

    def predict(self, table, top_k: int = 3) -> list[dict]:
        """Predictions for the rows of ``table`` (a CSV file, or a list of {column: value} dicts)."""
        if isinstance(table, (str, Path)):
            from divekit.data.user import IMAGE_SUFFIXES, UserDataError

            if Path(table).suffix.lower() in IMAGE_SUFFIXES:
                raise UserDataError(f"{table} is an image, and this run predicts the rows of a table: give it a .csv "
                                    "file with the columns it was trained on")
            _, X, _ = self.inputs.read(table)
        else:
            X = self.inputs.encode([{k: str(v) for k, v in row.items()} for row in table])
        X = X.to(self.device)  # (N, D)
        if self.inputs.classes is not None:
            probabilities = _softmax_outputs(self.model, X)
            return _top_classes([str(i + 1) for i in range(len(X))], probabilities, self.inputs.classes, top_k)
        with torch.no_grad():
            self.model.eval()
            values = self.inputs.destandardize(self.model(X).float().cpu())  # (N, 1)
        return [{"input": str(i + 1), self.inputs.target: float(v)} for i, v in enumerate(values[:, 0])]

    def evaluation_data(self, path, batch_size):
        from divekit.data.batch import Split
        from divekit.data.user import UserDataError

        _, X, y = self.inputs.read(path)
        if y is None:
            raise UserDataError(f"{path} has no column {self.inputs.target!r} to score the predictions against")
        return _loaded(path.name, Split(X, y), self, batch_size)


class TextGenerator(Predictor):
    """A language model (D2L §8.5): a prefix in, the prefix and the text predicted after it out."""

    kind = "text"
    inputs: TextInputs

    def predict(self, prefix: str, num_preds: int = 50) -> str:
        from divekit.models.rnn import predict_chars

        if self.inputs.token != "char":
            raise ValueError("prediction is written for character-level language models")
        if num_preds < 0:
            raise ValueError(f"num_preds is how many characters to write after the prefix, at least 0; got {num_preds}")
        cleaned = self.inputs.clean(prefix)
        if not cleaned:
            raise ValueError(f"the prefix {prefix!r} holds no letters the model knows; give it some text to start from")
        return predict_chars(cleaned, num_preds, self.model, self.inputs.vocab())

    def evaluation_data(self, path, batch_size):
        from divekit.data.text import CorpusInOrder

        vocab = self.inputs.vocab()
        tokens = self.inputs.split(path.read_text(encoding="utf-8"))
        if len(tokens) < 2:
            raise ValueError(f"{path} holds {len(tokens)} tokens; evaluating a language model needs at least 2")
        corpus = torch.tensor(vocab[tokens], dtype=torch.long)
        loader = CorpusInOrder(corpus, 35, device=self.device)  # every prediction once, the state carried along
        return _loaded(path.name, loader, self, 1, info=vocab, as_train=True)


class Translator(Predictor):
    """A translation model (D2L §9.7, §10.7): a sentence in, its translation out, greedy or by beam search."""

    kind = "translation"
    inputs: TranslationInputs

    def predict(self, sentence: str, beam_size: int = 1, alpha: float = 0.75) -> str:
        from divekit.data.translation import preprocess
        from divekit.models.seq2seq import translate

        if not preprocess(sentence).split():
            raise ValueError(f"the sentence {sentence!r} holds no words; give the model something to translate")
        source, target = self.inputs.vocabs()
        return translate(self.model, sentence, source, target, self.inputs.num_steps, beam_size, alpha)

    def evaluation_data(self, path, batch_size):
        from divekit.data.translation import TranslationData, build_array, preprocess, tokenize_pairs
        from divekit.data.batch import SequencePair

        source_lines, target_lines = tokenize_pairs(preprocess(path.read_text(encoding="utf-8")))
        if not source_lines:
            raise ValueError(f"{path} holds no sentence pairs; write one 'english<TAB>french' pair a line")
        source, target = self.inputs.vocabs()
        X, X_valid_len = build_array(source_lines, source, self.inputs.num_steps)
        Y, Y_valid_len = build_array(target_lines, target, self.inputs.num_steps)
        pairs = SequencePair(X, X_valid_len, Y, Y_valid_len)
        info = TranslationData(pairs, source, target, self.inputs.num_steps)
        return _loaded(path.name, pairs, self, batch_size, info=info)


PREDICTORS: dict[str, type[Predictor]] = {cls.kind: cls for cls in (ImageClassifier, Detector, TablePredictor,
                                                                      TextGenerator, Translator)}


def load(run_dir: str | Path, *, weights: str = "best", device: str = "cpu") -> Predictor:
    """The trained model of ``run_dir`` ready to predict (see the module docstring); ``weights``:
    "best" (the best epoch's where kept, else the last) or "last"."""
    from divekit.models.registry import create_model
    from divekit.train.checkpoint import read_checkpoint
    from divekit.train.device import choose_device

    run_dir = Path(run_dir).expanduser()
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be 'best' or 'last', got {weights!r}")
    card_path = run_dir / MODEL_CARD
    if not card_path.exists():
        what = "is not a divekit run folder" if not (run_dir / "config.json").exists() else \
            "holds no trained model (a demonstration, or a run made before divekit saved model.json)"
        raise FileNotFoundError(f"{run_dir} {what}; predict, evaluate and export take the folder of a training run")
    card = io.read_json(card_path)
    if not isinstance(card, dict) or not {"experiment", "model", "impl", "config"} <= card.keys():
        raise ValueError(f"{card_path} is not a model card (a JSON object naming the experiment, model, impl and "
                         "config); the run folder was changed by hand")
    checkpoint = read_checkpoint(run_dir / CHECKPOINT_NAME) if (run_dir / CHECKPOINT_NAME).exists() else None
    if checkpoint is not None:
        _check_belongs(checkpoint.get("run", {}).get("model_card"), card, card_path, run_dir / CHECKPOINT_NAME,
                       checkpoint.get("run", {}).get("experiment"))
        _say_if_unfinished(run_dir, checkpoint)
    inputs = None if card.get("inputs") is None else inputs_from_dict(card["inputs"], str(card_path))
    weights_path = run_dir / BEST_NAME
    if weights == "last" or not weights_path.exists():
        weights_path = run_dir / CHECKPOINT_NAME
    if not weights_path.exists():
        raise FileNotFoundError(f"{run_dir} has no weights yet ({CHECKPOINT_NAME} is written after the first epoch "
                                "or the first --checkpoint-every interval)")
    saved = checkpoint if weights_path.name == CHECKPOINT_NAME else io.load(weights_path)
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise ValueError(f"{weights_path} holds no divekit weights (found {type(saved).__name__}); the run folder was "
                         "changed by hand: train the run again")
    if weights_path.name == BEST_NAME:
        _check_belongs(saved.get("model_card"), card, card_path, weights_path)  # best.pt of older runs has none
    device = choose_device(device)
    model = create_model(card["model"], card["impl"], **card["config"])
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as error:
        raise ValueError(f"{weights_path} does not fit the model that {card_path} describes ({error}); "
                         "the run folder was changed by hand") from None
    model.to(device).eval()
    predictor = Predictor if inputs is None else PREDICTORS[inputs.kind]  # None: it evaluates and exports only
    return predictor(model, inputs, run_dir, card["experiment"], card["model"], card["impl"], weights_path, device)


# -- helpers -----------------------------------------------------------------------------------


def _check_belongs(recorded: str | None, card: dict, card_path: Path, weights_path: Path,
                   experiment: str | None = None) -> None:
    """Raise ValueError where a weights file recorded another model card than ``card`` (None: not recorded)."""
    if recorded is None or recorded == card_fingerprint(card):
        return
    if experiment is not None and experiment != card.get("experiment"):
        raise ValueError(f"{weights_path} belongs to another run (of {experiment!r}; {card_path} describes a run of "
                         f"{card.get('experiment')!r}); put the run's own file back, or train it again")
    raise ValueError(f"{weights_path} and {card_path} do not belong together: the model card was edited, or the "
                     "weights come from another run; put the run's own files back (the model, its config and its "
                     "inputs must be those the weights were trained with)")


def _say_if_unfinished(run_dir: Path, checkpoint: dict) -> None:
    """Warn that a run stopped before its last epoch (Ctrl-C, a crash): its weights are a partly trained model's."""
    import logging

    saved = io.read_json(run_dir / CONFIG_NAME) if (run_dir / CONFIG_NAME).exists() else None
    config = saved.get("config") if isinstance(saved, dict) else None
    epochs = config.get("epochs") if isinstance(config, dict) else None
    done, step = checkpoint.get("epoch"), checkpoint.get("step")
    if isinstance(epochs, int) and isinstance(done, int) and (done < epochs or step):
        logging.getLogger("divekit").warning(
            f"{run_dir} stopped after {done} of its {epochs} epochs: these are a partly trained model's answers; "
            f"`divekit resume {run_dir}` finishes the run")


@torch.no_grad()
def _softmax_outputs(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.softmax(model(X).float(), dim=-1).cpu()  # (N, classes)


def _top_classes(names: list[str], probabilities: torch.Tensor, classes, top_k: int) -> list[dict]:
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    values, indices = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)  # (N, k) each
    rows = []
    for name, p, i in zip(names, values.tolist(), indices.tolist()):
        top = [{"class": classes[k], "probability": q} for k, q in zip(i, p)]
        rows.append({"input": name, "class": top[0]["class"], "probability": top[0]["probability"], "top": top})
    return rows


def _image_list(images):
    """``images`` as the image predictors take them: one file (a str or Path) or several, or a tensor;
    none is an error."""
    from divekit.data.user import UserDataError

    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if len(images) == 0:
        raise ValueError("no images given: pass one image file or a list of them")
    tables = [str(file) for file in images if isinstance(file, (str, os.PathLike))
              and Path(file).suffix.lower() in (".csv", ".txt", ".tsv")]
    if tables:
        raise UserDataError(f"{tables[0]} is a table or text file, and this run takes images: give it image files "
                            "(PNG, JPEG, ...)")
    return images


def _loaded(name: str, data, predictor: Predictor, batch_size: int, *, info=None, as_train: bool = False):
    """Evaluation data as the run's task expects it: a Loaded whose eval loader (or train loader,
    for a language model's sequential batches) is ``data`` (a loader, or a Batch to make one of)."""
    from divekit.data.batch import Batch
    from divekit.data.loader import TensorLoader
    from divekit.experiments.parts import Loaded

    loader = TensorLoader(data, batch_size, device=predictor.device) if isinstance(data, Batch) else data
    if as_train:
        return Loaded(name, loader, None, info=info, inputs=predictor.inputs)
    return Loaded(name, loader, loader, eval_name="data", info=info, inputs=predictor.inputs)


def _run_options(run_dir: Path):
    """The run's recipe and its options, from its config.json."""
    from divekit.experiments.registry import Recipe
    from divekit.experiments.runner import read_run_config
    from divekit.options import from_dict

    experiment, record = read_run_config(run_dir)
    if not isinstance(experiment, Recipe):
        raise ValueError(f"{experiment.name} is a demonstration; it has no trained model to evaluate")
    return experiment, from_dict(experiment.options, record["config"], str(run_dir / CONFIG_NAME))


def _rebuild_run_data(experiment, options, device: torch.device):
    """The run's own data, loaded again from its options (the data parts are deterministic)."""
    from divekit.experiments.parts import LoadContext

    parts = experiment.parts(options)
    return parts.data.load(LoadContext(parts.train, parts.user, experiment.user_data_kind, device))


def _export_onnx(predictor: Predictor, path: Path, card: dict) -> Path:
    """The model as ONNX (torch.onnx's exporter), for a batch of example inputs with a free batch size, with
    the model ``card`` (model.json) as its metadata."""
    from divekit.models.registry import get_model

    try:
        import onnx  # noqa: F401  (torch.onnx needs it, with onnxscript)
    except ImportError:
        raise ImportError("exporting to ONNX needs the onnx and onnxscript packages: "
                          "pip install 'divekit[export]'") from None
    entry = get_model(predictor.model_name)
    example = entry.example(entry.make_config(**card["config"]), 2)
    args = tuple(a.to(predictor.device) for a in example.args)
    if len(args) != 1 or "state" in inspect.signature(predictor.model.forward).parameters:
        raise ValueError(f"{predictor.model_name} takes several inputs or a recurrent state; ONNX export is offered "
                         "for models with one input tensor and no state (export to safetensors instead)")
    import logging
    import os
    import warnings

    model = predictor.model.float().eval()
    batch = torch.export.Dim("batch", min=1)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    try:
        exporter_log.setLevel(logging.ERROR)  # its notes (e.g. on torchvision's ops) are not the user's business
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, args, dynamo=True, dynamic_shapes=({0: batch},), verbose=False)
    except Exception as error:  # the exporter's errors are long; say what failed in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{predictor.model_name} could not be exported to ONNX ({first}); "
                         "export its weights to safetensors instead") from None
    finally:
        exporter_log.setLevel(level)
    program.model.metadata_props.update({k: json.dumps(v) for k, v in card.items()})  # as the safetensors file's
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    try:
        program.save(str(partial))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
