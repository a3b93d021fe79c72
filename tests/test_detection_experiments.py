"""The detection experiments (D2L §13.4-§13.7): the book's settings, when its numbers apply, the anchors
demonstration's numbers, mAP of the evaluation helper, and the figure of detections."""

import importlib.util

import pytest
import torch

from divekit.data.batch import Detection
from divekit.experiments.book import book_results, changed_options, describe
from divekit.experiments.detection import evaluate_detector
from divekit.experiments.registry import get_experiment
from divekit.models.detection.base import Detector
from divekit.viz.detection import show_detections

needs_photos = pytest.mark.skipif(importlib.util.find_spec("skimage") is None,
                                  reason="needs scikit-image's photographs (the photos extra)")


def test_ssd_keeps_the_books_settings_and_compares_only_on_the_books_bananas():
    ssd = get_experiment("ssd")
    defaults = ssd.defaults
    assert (defaults["epochs"], defaults["lr"], defaults["batch_size"], defaults["weight_decay"]) == (20, 0.2, 32, 5e-4)
    assert defaults["sizes"][:2] == (0.2, 0.272) and defaults["ratios"] == (1.0, 2.0, 0.5)
    assert defaults["dataset"] == "generated-bananas" and "not compared with the book" in ssd.dataset
    assert describe("ssd", "fast", defaults) == ""  # `divekit list` claims no book number for generated data
    assert book_results("ssd", "fast", defaults) is None
    real = {**defaults, "dataset": "bananas"}
    assert book_results("ssd", "fast", real)["metrics"]["train_class_err"]["book"] == 0.00322
    assert changed_options(defaults, real, "ssd", "fast") == {}  # the book's own set is the book's setting
    with pytest.raises(ValueError, match="the book's banana set is 1,000 / 100 images of 256x256"):
        ssd.make_options(dataset="bananas", num_train=10)


@needs_photos
def test_weight_decay_and_the_data_reach_the_training(tmp_path):
    from divekit.experiments.runner import prepare_training

    training = prepare_training("ssd", device="cpu", num_train=4, num_val=2, image_size=64, batch_size=2,
                                base_channels=(4, 4, 8), num_channels=8)
    assert training.setup.optimizer.param_groups[0]["weight_decay"] == 5e-4
    batch = next(iter(training.setup.data.train))
    assert isinstance(batch, Detection) and batch.X.shape == (2, 3, 64, 64) and batch.X.dtype == torch.float32
    assert training.setup.data.train.data.X.dtype == torch.uint8  # kept as bytes, made float per batch
    assert training.setup.model.num_classes == 1


class Oracle(Detector):
    """Detects the true boxes of the images it is shown (looked up by their first pixel), with score 0.9,
    and one false box at score 0.1."""

    def __init__(self, split: Detection):
        super().__init__()
        self.split = split

    def detect(self, X):
        preds = []
        for image in X:
            i = int((self.split.X[:, 0, 0, 0].float() / 255 - image[0, 0, 0]).abs().argmin())
            real = self.split.labels[i] >= 0
            boxes = torch.cat((self.split.boxes[i][real], torch.tensor([[0.0, 0.0, 0.05, 0.05]])))
            preds.append({"boxes": boxes, "scores": torch.tensor([0.9] * int(real.sum()) + [0.1]),
                          "labels": torch.cat((self.split.labels[i][real], torch.tensor([0])))})
        return preds


def test_evaluate_detector_gives_full_map_to_perfect_boxes_and_draws_them():
    X = torch.arange(5, dtype=torch.uint8).reshape(5, 1, 1, 1).expand(5, 3, 16, 16).contiguous() * 40
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]] * 5)
    labels = torch.tensor([[0, 1], [1, -1], [0, 0], [1, 1], [0, -1]])
    split = Detection(X, boxes, labels)
    preds, results = evaluate_detector(Oracle(split), split, "cpu", batch_size=2)
    assert len(preds) == 5 and results["map"] == pytest.approx(1.0) and results["voc_map"] == pytest.approx(1.0)
    assert results["detect_images_per_s"] > 0
    figure = show_detections(X[:3], preds[:3], ("banana", "ring"), threshold=0.5,
                             targets=[{"boxes": b[l >= 0], "labels": l[l >= 0]} for b, l in zip(boxes[:3], labels[:3])])
    axes = [ax for ax in figure.axes if ax.images]
    assert len(axes) == 3
    # image 0: two true boxes (dashed) and two detections above 0.5, labelled "class score"
    assert len(axes[0].patches) == 4 and sorted(t.get_text() for t in axes[0].texts) == ["banana 0.90", "ring 0.90"]
    with pytest.raises(ValueError, match="3 images need as many predictions"):
        show_detections(X[:3], preds[:2], ("banana", "ring"))


@needs_photos
def test_the_anchors_demo_reproduces_the_books_numbers():
    result = get_experiment("anchors").function(impl="scratch")
    assert result.results["num_anchors"] == 561 * 728 * 5  # the book prints torch.Size([1, 2042040, 4])
    assert [round(v, 2) for v in result.results["anchor_250_250"]] == [0.06, 0.07, 0.63, 0.82]
    assert result.results["class_labels"] == [0, 1, 2, 0, 2]
    assert [row[0] for row in result.results["nms_output"]] == [0, 1, -1, -1]
    assert set(result.figures) == {"anchors", "anchor_labels", "nms", "multiscale_anchors"}


@pytest.mark.parametrize("name", ["ssd", "yolo"])
def test_both_detectors_train_on_your_data_and_name_its_classes(name, tmp_path):
    import divekit
    from conftest import write_detection_folder
    from PIL import Image

    from divekit.cli import main
    from divekit.experiments.detection import TINY_DETECTOR
    from divekit.experiments.runner import prepare_training
    from divekit.predict import load

    write_detection_folder(tmp_path / "data" / "train", count=10, seed=1)
    write_detection_folder(tmp_path / "data" / "val", count=4, seed=2)
    (tmp_path / "data" / "classes.txt").write_text("dark\nlight\n")
    Image.new("RGB", (48, 40), (120, 120, 120)).save(tmp_path / "data" / "train" / "images" / "empty.png")
    with open(tmp_path / "data" / "train" / "label.csv", "a") as f:  # an image without objects trains too
        f.write("empty.png,,,,,\n")
    tiny = {k: v for k, v in TINY_DETECTOR.items() if k not in ("num_train", "num_val")}
    run = divekit.run(name, data=str(tmp_path / "data"), epochs=1, out=tmp_path / "runs", progress=False, **tiny)
    predictor = load(run.run_dir)
    assert predictor.inputs.classes == ("dark", "light") and run.summary["config"]["data"] == str(tmp_path / "data")
    assert predictor.evaluate()["examples"] == 4 and "map" in run.summary["results"]
    assert predictor.evaluate(tmp_path / "data")["map"] == predictor.evaluate()["map"]  # the folder of splits: val/
    assert main(["predict", str(run.run_dir), str(tmp_path / "data" / "val" / "images" / "0.png"), "--min-score",
                 "0"]) == 0
    # --limit N: N of your images drawn with the seed (a classifier's --data does the same)
    limited = prepare_training(name, device="cpu", data=str(tmp_path / "data"), limit=3, seed=5, **tiny)
    images = limited.setup.data.train.data.X
    whole = prepare_training(name, device="cpu", data=str(tmp_path / "data"), seed=5, **tiny).setup.data.train.data.X
    assert len(images) == 3 and not torch.equal(images, whole[:3])
    assert all(any(torch.equal(image, other) for other in whole) for image in images)
    with pytest.raises(ValueError, match="--num-train chooses or shapes the recipe's own data set; with --data your"):
        divekit.run(name, data=str(tmp_path / "data"), num_train=5, out=tmp_path / "runs", progress=False, **tiny)
