"""Trained runs put to use (divekit.predict): predictions from the run folder alone, held against the
model run by hand on inputs prepared by hand; evaluation on other data against metrics computed
independently; export to safetensors and ONNX read back by their own libraries; the CLI."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import needs_real_data, write_image_folder
from PIL import Image

import divekit
from divekit import io
from divekit.cli import main
from divekit.data.user import UserDataError
from divekit.predict import card_fingerprint, load


def write_table(path, rows=120, seed=0, classify=False):
    """y = 3 x1 - 2 x2 + 5 (+2 where colour is red) + noise, in the thousands; or its sign as a class."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 2, generator=g)
    colour = torch.randint(0, 2, (rows,), generator=g)
    y = 1000 * (3 * x[:, 0] - 2 * x[:, 1] + 5 + 2 * colour) + 10 * torch.randn(rows, generator=g)
    lines = ["x1,x2,colour,y"]
    for (a, b), c, t in zip(x.tolist(), colour.tolist(), y.tolist()):
        target = ("high" if t > 6000 else "low") if classify else f"{t:.3f}"
        lines.append(f"{a:.6f},{b:.6f},{'red' if c else 'blue'},{target}")
    path.write_text("\n".join(lines) + "\n")
    return path


def only_run(out):
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_an_image_classifier_predicts_as_its_model_does_on_inputs_prepared_by_hand(tmp_path):
    images = write_image_folder(tmp_path / "images")
    run = divekit.run("softmax-regression", data=str(images), epochs=3, lr=0.5, batch_size=4,
                      out=tmp_path / "runs", progress=False)
    predictor = load(run.run_dir)
    assert predictor.kind == "images" and predictor.inputs.classes == ("dark", "light")
    # a photo of another size is resized to the training images' 8 x 8
    Image.open(images / "light" / "0.png").resize((32, 24)).save(tmp_path / "big.png")
    files = [images / "dark" / "0.png", tmp_path / "big.png"]
    rows = predictor.predict(files, top_k=2)

    from divekit.models.registry import create_model

    card = json.loads((run.run_dir / "model.json").read_text())
    model = create_model(card["model"], card["impl"], **card["config"])
    model.load_state_dict(torch.load(predictor.weights, weights_only=True)["model"])  # best.pt: the val split's best
    pixels = [Image.open(files[0]).convert("L"), Image.open(files[1]).convert("L").resize((8, 8), Image.BILINEAR)]
    X = torch.stack([torch.tensor(list(p.tobytes()), dtype=torch.float32).reshape(1, 8, 8) / 255 for p in pixels])
    with torch.no_grad():
        expected = torch.softmax(model.eval()(X), dim=-1)
    for row, p in zip(rows, expected):
        assert row["class"] == ("dark", "light")[int(p.argmax())]
        assert row["probability"] == pytest.approx(float(p.max()), abs=1e-6)
        assert [t["class"] for t in row["top"]] == [("dark", "light")[i] for i in p.argsort(descending=True)]
    assert [r["class"] for r in rows] == ["dark", "light"]


def test_evaluate_on_a_folder_matches_accuracy_counted_from_predictions(tmp_path):
    images = write_image_folder(tmp_path / "images")
    other = write_image_folder(tmp_path / "other", per_class=5, seed=7)
    run = divekit.run("softmax-regression", data=str(images), epochs=2, lr=0.5, batch_size=4,
                      out=tmp_path / "runs", progress=False)
    predictor = load(run.run_dir)
    metrics = predictor.evaluate(other)
    files = sorted((other / "dark").iterdir()) + sorted((other / "light").iterdir())
    predicted = [r["class"] for r in predictor.predict(files)]
    truth = ["dark"] * 5 + ["light"] * 5
    assert metrics["examples"] == 10
    assert metrics["acc"] == pytest.approx(sum(p == t for p, t in zip(predicted, truth)) / 10)
    rows = predictor.predict(files, top_k=2)
    loss = -sum(math.log(next(t["probability"] for t in r["top"] if t["class"] == c)) for r, c in zip(rows, truth)) / 10
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)
    shutil.rmtree(other / "light")  # one of the model's classes is enough to score it on
    assert predictor.evaluate(other)["acc"] == pytest.approx(sum(p == "dark" for p in predicted[:5]) / 5)
    with pytest.raises(UserDataError, match="table.csv is a table or text file, and this run takes images"):
        predictor.predict(str(tmp_path / "table.csv"))  # it said: cannot read image ...; fix or remove the file
    with pytest.raises(UserDataError, match="table.csv is not a folder; an image classifier is evaluated on a folder "
                                            "with one sub-folder of images per class"):
        predictor.evaluate(write_table(tmp_path / "table.csv"))
    write_image_folder(tmp_path / "split" / "train", per_class=2)  # the train/ and test/ layout a run takes
    write_image_folder(tmp_path / "split" / "test", per_class=3, seed=4)
    assert predictor.evaluate(tmp_path / "split") == {**predictor.evaluate(tmp_path / "split" / "test"),
                                                      "data": str(tmp_path / "split")}  # its test part, as a run


def test_evaluate_without_data_repeats_the_runs_last_evaluation(tmp_path):
    images = write_image_folder(tmp_path / "images")
    run = divekit.run("softmax-regression", data=str(images), epochs=2, lr=0.5, batch_size=4,
                      out=tmp_path / "runs", progress=False)
    metrics = load(run.run_dir, weights="last").evaluate()
    assert metrics["acc"] == pytest.approx(run.summary["final"]["val_acc"])
    assert metrics["loss"] == pytest.approx(run.summary["final"]["val_loss"], rel=1e-5)


def test_a_table_regression_learns_the_standardised_target_and_answers_in_its_units(tmp_path):
    table = write_table(tmp_path / "t.csv")
    run = divekit.run("linear-regression", data=str(table), target="y", epochs=30, out=tmp_path / "runs",
                      progress=False)
    card = json.loads((run.run_dir / "model.json").read_text())
    y = torch.tensor([float(line.split(",")[-1]) for line in table.read_text().split("\n")[1:-1]])
    assert card["inputs"]["target_std"] > 1000  # the model learnt (y - mean) / std, not squared thousands
    final = run.summary["final"]
    assert final["val_r2"] > 0.99 and final["val_rmse"] < 200 and final["val_loss"] < 0.01
    predictor = load(run.run_dir)
    rows = predictor.predict(table)
    predicted = torch.tensor([r["y"] for r in rows])
    assert float((predicted - y).square().mean().sqrt()) < 200  # in the table's units
    one = predictor.predict([{"x1": 1.0, "x2": 0.0, "colour": "red"}])[0]["y"]
    assert one == pytest.approx(1000 * (3 + 5 + 2), rel=0.03)
    metrics = predictor.evaluate(table)
    residual = predicted - y
    assert metrics["rmse"] == pytest.approx(float(residual.square().mean().sqrt()), rel=1e-3)
    assert metrics["r2"] == pytest.approx(1 - float(residual.square().sum() / (y - y.mean()).square().sum()), abs=1e-4)


def test_a_table_classifier_names_its_classes(tmp_path):
    table = write_table(tmp_path / "t.csv", rows=200, classify=True)
    run = divekit.run("softmax-regression", data=str(table), target="y", epochs=20, lr=0.5, batch_size=16,
                      out=tmp_path / "runs", progress=False)
    rows = load(run.run_dir).predict(table)
    truth = [line.split(",")[-1] for line in table.read_text().split("\n")[1:-1]]
    assert {r["class"] for r in rows} <= {"high", "low"}
    assert sum(r["class"] == t for r, t in zip(rows, truth)) / len(truth) > 0.9


def test_table_inputs_with_a_missing_column_or_unknown_class_are_clear_errors(tmp_path):
    table = write_table(tmp_path / "t.csv", rows=40, classify=True)
    run = divekit.run("softmax-regression", data=str(table), target="y", epochs=1, out=tmp_path / "runs",
                      progress=False)
    predictor = load(run.run_dir)
    (tmp_path / "short.csv").write_text("x1,colour\n1,red\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) x2 that the model was trained on"):
        predictor.predict(tmp_path / "short.csv")
    (tmp_path / "odd.csv").write_text("x1,x2,colour,y\n1,2,red,medium\n")
    with pytest.raises(ValueError, match="'medium' that are not among the classes the model knows"):
        predictor.evaluate(tmp_path / "odd.csv")
    (tmp_path / "words.csv").write_text("x1,x2,colour\n1,2,red\none,2,red\n")
    with pytest.raises(ValueError, match="line 3 of .*words.csv: column 'x1' holds 'one', but the model was trained "
                                         "on numbers"):  # the line, as training's messages name it
        predictor.predict(tmp_path / "words.csv")


def test_a_category_the_training_rows_lacked_is_answered_with_a_warning(tmp_path, caplog):
    table = write_table(tmp_path / "t.csv", rows=40, classify=True)
    run = divekit.run("softmax-regression", data=str(table), target="y", epochs=1, out=tmp_path / "runs",
                      progress=False)
    predictor = load(run.run_dir)
    (tmp_path / "new.csv").write_text("x1,x2,colour\n1,2,green\n1,2,NA\n1,2,red\n")
    with caplog.at_level("WARNING", logger="divekit"):
        assert len(predictor.predict(tmp_path / "new.csv")) == 3
    assert "column 'colour' holds 'green', which the training rows did not have; it is taken as none of the known " \
           "categories (blue, red)" in caplog.text
    assert "'NA'" not in caplog.text  # a missing value is no new category


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return divekit.run("rnn", epochs=2, limit=2000, num_hiddens=16, out=out, progress=False)


def test_a_language_model_continues_a_prefix_as_the_experiment_does(text_run):
    from divekit.experiments.runner import prepare_training
    from divekit.models.rnn import predict_chars

    predictor = load(text_run.run_dir)
    training = prepare_training("rnn", epochs=2, limit=2000, num_hiddens=16)
    training.setup.model.load_state_dict(io.load(text_run.run_dir / "checkpoint.pt")["model"])
    expected = predict_chars("time traveller", 20, training.setup.model, training.setup.data.info)
    assert predictor.predict("Time Traveller!", num_preds=20) == expected  # cleaned as the book cleans its text
    from divekit.experiments.parts import TextSamples  # the run's own sample (--prefix) is cleaned alike

    sample, _ = TextSamples(prefix="Time Traveller!", num_preds=20).run(training.setup.model, training.setup.data, "cpu")
    assert sample["sample"] == expected
    with pytest.raises(ValueError, match="holds no letters"):
        predictor.predict("123")


def test_a_language_model_is_evaluated_on_a_text_file_by_perplexity(text_run, tmp_path):
    text = ("the time traveller for so it will be convenient to speak of him was expounding a recondite matter "
            "to us his grey eyes shone and twinkled and his usually pale face was flushed and animated ") * 3
    (tmp_path / "t.txt").write_text(text)
    predictor = load(text_run.run_dir)
    metrics = predictor.evaluate(tmp_path / "t.txt")
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert 1 < metrics["perplexity"] < 28  # better than guessing among the 28 characters
    # every next character scored once, the state carried from the first: the model run over the whole text
    vocab = predictor.inputs.vocab()
    corpus = torch.tensor(vocab[predictor.inputs.split(text)])
    with torch.no_grad():
        logits, _ = predictor.model(corpus[None, :-1], None)  # (T, 1, V)
    expected = F.cross_entropy(logits[:, 0], corpus[1:])
    assert metrics["examples"] == len(corpus) - 1
    assert metrics["loss"] == pytest.approx(float(expected), rel=1e-5)
    (tmp_path / "short.txt").write_text("the time")  # a few characters are enough now
    assert predictor.evaluate(tmp_path / "short.txt")["examples"] == 7
    (tmp_path / "one.txt").write_text("t")
    with pytest.raises(ValueError, match="holds 1 tokens; evaluating a language model needs at least 2"):
        predictor.evaluate(tmp_path / "one.txt")


def test_a_language_model_is_not_exported_to_onnx_with_its_state_left_out(text_run, tmp_path):
    pytest.importorskip("onnxscript")
    with pytest.raises(ValueError, match="recurrent state; ONNX export is offered for models with one input tensor"):
        load(text_run.run_dir).export(tmp_path / "lm.onnx", "onnx")


@needs_real_data(["fra-eng"])
def test_a_translation_model_translates_as_the_experiment_does(tmp_path):
    from divekit.experiments.runner import prepare_training
    from divekit.models.seq2seq import translate

    options = dict(epochs=2, limit=64, embed_size=8, num_hiddens=8)
    run = divekit.run("seq2seq", out=tmp_path / "runs", progress=False, **options)
    predictor = load(run.run_dir)
    training = prepare_training("seq2seq", **options)
    training.setup.model.load_state_dict(io.load(run.run_dir / "checkpoint.pt")["model"])
    data = training.setup.data.info
    expected = translate(training.setup.model, "i'm home .", data.src_vocab, data.tgt_vocab, data.num_steps)
    assert predictor.predict("I'm home.") == expected  # preprocessed as the book's pairs are
    (tmp_path / "pairs.txt").write_text("go .\tva !\ni lost .\tj'ai perdu .\n")
    metrics = predictor.evaluate(tmp_path / "pairs.txt")
    assert metrics["examples"] == 2 and metrics["loss"] > 0


def test_a_detector_finds_objects_in_image_files_as_its_model_does(tmp_path, capsys):
    from divekit.data.detection import generated_folder
    from divekit.experiments.detection import TINY_DETECTOR

    options = {**TINY_DETECTOR, "epochs": 2}
    run = divekit.run("ssd", out=tmp_path / "runs", progress=False, **options)
    predictor = load(run.run_dir)
    assert predictor.kind == "detection" and predictor.inputs.classes == ("banana",)
    best = io.load(run.run_dir / "best.pt")  # the epoch of the lowest validation loss
    with open(run.run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    lowest = min(rows, key=lambda row: float(row["val_loss"]))
    assert best["metric"] == "val_loss" and best["epoch"] == int(lowest["epoch"])
    assert predictor.weights.name == "best.pt"
    val = generated_folder("generated-bananas", options["num_train"], options["num_val"], 64, 0) / "bananas_val"
    big = tmp_path / "big.png"  # a file of another size: boxes come back in its own pixels
    with Image.open(val / "images" / "0.png") as image:
        image.resize((128, 96)).save(big)
    rows = predictor.predict([str(big)], min_score=0.0)
    with Image.open(big) as image:  # the model by hand: the image at the model's size, in [0, 1]
        X = torch.from_numpy(np.array(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)))
    X = X.permute(2, 0, 1)  # (3, 64, 64) uint8
    expected = predictor.model.detect(X[None].float() / 255)[0]
    scale = torch.tensor([128, 96, 128, 96])
    boxes = torch.minimum(expected["boxes"].clamp(min=0) * scale, scale)
    assert len(rows[0]["objects"]) == len(expected["scores"]) > 0
    for found, score, box in zip(rows[0]["objects"], expected["scores"].tolist(), boxes.tolist()):
        assert found["class"] == "banana" and math.isclose(found["score"], score, rel_tol=1e-6)
        assert found["box"] == pytest.approx(box, abs=0.051)  # rounded to 0.1 pixel
    assert all(o["score"] >= 0.3 for o in predictor.predict([str(big)], min_score=0.3)[0]["objects"])
    own, folder = predictor.evaluate(), predictor.evaluate(val)  # the run's validation images both times
    assert own["examples"] == folder["examples"] == options["num_val"]
    assert own["class_err"] == pytest.approx(folder["class_err"]) and own["bbox_mae"] == pytest.approx(folder["bbox_mae"])
    summary = json.loads((run.run_dir / "summary.json").read_text())["results"]  # the probe's mAP, from best.pt
    for name in ("map", "map_50", "map_75", "voc_map"):  # a detector is judged by its mAP: evaluate gives it too
        assert own[name] == pytest.approx(folder[name]) == pytest.approx(summary[name]), name
    assert predictor.evaluate(val / "label.csv")["map"] == pytest.approx(folder["map"])  # the file: its folder
    assert predictor.predict(str(big), min_score=0.3) == predictor.predict([str(big)], min_score=0.3)  # one file
    with pytest.raises(ValueError, match="no images given"):
        predictor.predict([])
    assert main(["predict", str(run.run_dir), str(big), "--min-score", "0"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{big}: banana ") and line.endswith("more (--json lists them all)")
    with pytest.raises(ValueError, match="holds no label.csv; a detector is scored on a folder in the banana format"):
        predictor.evaluate(tmp_path)


def test_a_run_whose_data_reads_no_new_inputs_still_evaluates_and_exports(tmp_path):
    images = write_image_folder(tmp_path / "images")
    run = divekit.run("softmax-regression", data=str(images), epochs=1, batch_size=4, out=tmp_path / "runs",
                      progress=False)
    card = {**io.read_json(run.run_dir / "model.json"), "inputs": None}  # as a run of data with no inputs saves it
    io.write_json(run.run_dir / "model.json", card)
    checkpoint = io.load(run.run_dir / "checkpoint.pt")
    io.save({**checkpoint, "run": {**checkpoint["run"], "model_card": card_fingerprint(card)}},
            run.run_dir / "checkpoint.pt")
    best = io.load(run.run_dir / "best.pt")
    io.save({**best, "model_card": card_fingerprint(card)}, run.run_dir / "best.pt")
    predictor = load(run.run_dir)
    with pytest.raises(ValueError, match="did not say how to read new inputs, so it cannot predict; `divekit evaluate"):
        predictor.predict(["x.png"])
    assert predictor.evaluate()["examples"] > 0
    with pytest.raises(ValueError, match="reads no data but its own"):
        predictor.evaluate(images)
    assert predictor.export(tmp_path / "w.safetensors").exists()


def test_export_to_safetensors_holds_the_weights_and_the_model_card(tmp_path):
    safetensors = pytest.importorskip("safetensors")
    from safetensors.torch import load_file

    images = write_image_folder(tmp_path / "images", size=(28, 28), per_class=4)
    run = divekit.run("lenet", data=str(images), epochs=1, batch_size=4, out=tmp_path / "runs", progress=False)
    predictor = load(run.run_dir)
    path = predictor.export(tmp_path / "m.safetensors")
    tensors = load_file(path)
    state = predictor.model.state_dict()
    assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k]) for k in state)
    with safetensors.safe_open(path, "pt") as f:
        assert json.loads(f.metadata()["model"]) == "lenet"
        assert json.loads(f.metadata()["inputs"])["classes"] == ["dark", "light"]
    (tmp_path / "exports").mkdir()  # a folder: the file goes in it (it failed naming a temporary file)
    assert predictor.export(tmp_path / "exports") == tmp_path / "exports" / "model.safetensors"
    assert load_file(tmp_path / "exports" / "model.safetensors").keys() == state.keys()
    made = predictor.export(f"{tmp_path / 'new'}/")  # a slash: a folder, made for it (it was written as a file)
    assert made == tmp_path / "new" / "model.safetensors" and made.is_file()
    (tmp_path / "photo.png").write_bytes(b"a photo")
    for slip in ("photo.png", "model.onnx"):  # another file, or another format's name, is never written over
        with pytest.raises(ValueError, match=f"{slip} does not end in .safetensors; an export is written only"):
            predictor.export(tmp_path / slip)
    assert (tmp_path / "photo.png").read_bytes() == b"a photo" and not (tmp_path / "model.onnx").exists()


def test_export_to_onnx_runs_in_onnxruntime_with_the_same_outputs(tmp_path):
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    images = write_image_folder(tmp_path / "images", size=(28, 28), per_class=4)
    run = divekit.run("lenet", data=str(images), epochs=1, batch_size=4, out=tmp_path / "runs", progress=False)
    predictor = load(run.run_dir)
    path = predictor.export(tmp_path / "m.onnx", "onnx")
    session = onnxruntime.InferenceSession(str(path))
    X = torch.rand(5, 1, 28, 28)  # another batch size than the export's example
    (got,) = session.run(None, {session.get_inputs()[0].name: X.numpy()})
    with torch.no_grad():
        expected = predictor.model(X)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-5)
    onnx = pytest.importorskip("onnx")
    metadata = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert metadata == json.loads((run.run_dir / "model.json").read_text())  # how inputs are prepared goes along


def test_best_weights_are_those_of_the_best_validation_epoch(tmp_path):
    images = write_image_folder(tmp_path / "images", per_class=20)
    run = divekit.run("softmax-regression", data=str(images), epochs=6, lr=3.0, batch_size=4,
                      out=tmp_path / "runs", progress=False)
    best = io.load(run.run_dir / "best.pt")
    losses = [float(line.split(",")[header.index("val_acc")]) for header in
              [(run.run_dir / "metrics.csv").read_text().split("\n")[0].split(",")]
              for line in (run.run_dir / "metrics.csv").read_text().split("\n")[1:-1]]
    assert best["metric"] == "val_acc" and best["value"] == max(losses)
    assert best["epoch"] == losses.index(max(losses)) + 1
    predictor = load(run.run_dir)
    assert predictor.weights.name == "best.pt"
    assert all(torch.equal(predictor.model.state_dict()[k], v) for k, v in best["model"].items())


@needs_real_data(["fashion-mnist"])
def test_the_books_test_set_does_not_choose_an_epoch(tmp_path):
    run = divekit.run("softmax-regression", epochs=1, limit=500, out=tmp_path / "runs", progress=False)
    assert not (run.run_dir / "best.pt").exists()  # Fashion-MNIST's evaluation data is its test set
    assert load(run.run_dir).weights.name == "checkpoint.pt"


def test_loading_what_is_not_a_trained_run_says_why(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a divekit run folder"):
        load(tmp_path)
    run = divekit.run("activations", out=tmp_path / "runs", progress=False)
    with pytest.raises(FileNotFoundError, match="holds no trained model"):
        load(run.run_dir)
    with pytest.raises(ValueError, match="weights must be 'best' or 'last'"):
        load(tmp_path, weights="first")


def test_the_cli_predicts_evaluates_and_exports(tmp_path, capsys):
    images = write_image_folder(tmp_path / "images")
    assert main(["run", "softmax-regression", "--data", str(images), "--epochs", "3", "--lr", "0.5", "--batch-size", "4",
                 "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    run = only_run(tmp_path / "runs")
    assert f"next: `divekit predict {run} IMAGE.png ...`" in capsys.readouterr().err
    files = [str(images / "dark" / "1.png"), str(images / "light" / "1.png")]
    assert main(["predict", str(run), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{files[0]}: dark (") and lines[1].startswith(f"{files[1]}: light (")
    assert main(["predict", str(run), *files, "--json", "--top-k", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["class"] for r in rows] == ["dark", "light"] and len(rows[0]["top"]) == 1
    assert main(["evaluate", str(run), "--data", str(images)]) == 0
    assert "acc: 1" in capsys.readouterr().out
    assert main(["export", str(run)]) == 0
    assert (run / "model.safetensors").exists()
    assert main(["predict", str(run), str(tmp_path / "missing.png")]) == 1
    assert f"image {tmp_path / 'missing.png'} does not exist; check the path" in capsys.readouterr().err
    assert main(["predict", str(run), str(images / "dark")]) == 1
    assert f"{images / 'dark'} is a folder; pass the image files in it (e.g. {images / 'dark'}/*.png)" in \
        capsys.readouterr().err
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["predict", str(run), str(tmp_path / "broken.png")]) == 1
    err = capsys.readouterr().err
    assert f"cannot read image {tmp_path / 'broken.png'}: " in err and f"({tmp_path / 'broken.png'})" not in err
    with pytest.raises(SystemExit):  # no abbreviations: --top is no --top-k
        main(["predict", str(run), *files, "--top", "1"])
    assert "unrecognized arguments: --top 1" in capsys.readouterr().err
    # options for other kinds of run, and values out of range, are errors, not ignored
    assert main(["predict", str(run), *files, "--beam-size", "2"]) == 1
    assert f"--beam-size is for translation runs; {run} is an image-classification run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", str(run), *files, "--top-k", "0"])
    assert "--top-k: 0 is not in [1, inf]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["resume", str(run), "--nproc", "0"])
    assert "--nproc must be at least 1, got 0" in capsys.readouterr().err
    (run / "model.json").write_text("{oops")
    assert main(["predict", str(run), *files]) == 1
    assert f"{run / 'model.json'} is not valid JSON" in capsys.readouterr().err


def test_a_missing_optional_package_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import sys

    images = write_image_folder(tmp_path / "images", per_class=4)
    run = divekit.run("softmax-regression", data=str(images), epochs=1, out=tmp_path / "runs", progress=False)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if divekit[export] were not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    assert main(["export", str(run.run_dir)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "divekit: error: exporting to safetensors needs the safetensors package: pip install 'divekit[export]'")


def test_a_regression_is_evaluated_only_on_targets_training_would_read_as_numbers(tmp_path):
    run = divekit.run("linear-regression", data=str(write_table(tmp_path / "t.csv", rows=40)), target="y", epochs=1,
                      out=tmp_path / "runs", progress=False)
    predictor = load(run.run_dir)
    with pytest.raises(UserDataError, match="photo.png is an image, and this run predicts the rows of a table"):
        predictor.predict(tmp_path / "photo.png")  # it said: not UTF-8 text; save it as UTF-8 CSV
    for bad in ("nan", "inf", "1_000"):
        (tmp_path / "new.csv").write_text(f"x1,x2,colour,y\n1,2,red,5000\n1,2,blue,{bad}\n")
        with pytest.raises(UserDataError, match=f"row 2 of .*new.csv has '{bad}' as its 'y', which is not a number"):
            predictor.evaluate(tmp_path / "new.csv")


def test_weights_files_of_another_run_or_changed_by_hand_are_one_line_errors(tmp_path, capsys):
    from divekit.cli import main

    runs = [divekit.run("linear-regression", data=str(write_table(tmp_path / f"t{seed}.csv", rows=60, seed=seed)),
                        target="y", epochs=2, out=tmp_path / "runs", progress=False).run_dir for seed in (0, 1)]
    first, second = runs
    table = str(tmp_path / "t0.csv")
    assert (first / "best.pt").exists() and main(["predict", str(first), table]) == 0
    capsys.readouterr()
    (first / "best.pt").write_bytes((second / "best.pt").read_bytes())  # the same model, trained on other data
    assert main(["predict", str(first), table]) == 1
    assert f"{first / 'best.pt'} and {first / 'model.json'} do not belong together" in capsys.readouterr().err
    other = divekit.run("mlp", epochs=1, limit=64, num_hiddens=8, out=tmp_path / "runs", progress=False).run_dir
    (second / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    assert main(["evaluate", str(second)]) == 1
    assert f"{second / 'checkpoint.pt'} belongs to another run (of 'mlp'; {second / 'model.json'} describes a run of " \
           "'linear-regression')" in capsys.readouterr().err
    for damaged in (torch.zeros(3), [1, 2], io.load(other / "checkpoint.pt")["model"]):  # not a checkpoint
        io.save(damaged, other / "checkpoint.pt")
        assert main(["predict", str(other), table]) == 1
        err = capsys.readouterr().err
        assert f"{other / 'checkpoint.pt'} is not a divekit checkpoint of format 2" in err and "Traceback" not in err
    io.save({"epoch": 1}, first / "best.pt")  # a dict, but no weights
    assert main(["predict", str(first), table]) == 1
    assert f"{first / 'best.pt'} holds no divekit weights" in capsys.readouterr().err
    (first / "config.json").write_text("[]")  # JSON, but no run config: predict does without it
    (first / "best.pt").unlink()
    assert main(["predict", str(first), table]) == 0
    io.write_json(first / "model.json", {})
    assert main(["predict", str(first), table]) == 1
    assert f"{first / 'model.json'} is not a model card" in capsys.readouterr().err
