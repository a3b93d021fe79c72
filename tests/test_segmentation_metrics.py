"""Pixel accuracy and mean IoU from a confusion matrix on the device (D2L §13.11), against brute
force and torchmetrics, with VOC's ignore label; the pixel-classification task that sums them."""

import importlib.util

import pytest
import torch

from divekit.data.batch import Segmentation
from divekit.metrics.segmentation import class_iou, confusion_matrix, mean_iou, pixel_accuracy
from divekit.ops import fast, scratch
from divekit.train.metrics import MetricSums
from divekit.train.tasks import PixelClassification


def brute_force(predicted, target, C, ignore=255):
    matrix = torch.zeros(C, C, dtype=torch.int64)
    for p, t in zip(predicted.reshape(-1).tolist(), target.reshape(-1).tolist()):
        if t != ignore:
            matrix[t, p] += 1
    ious = []
    for c in range(C):
        truth, guess = target == c, (predicted == c) & (target != ignore)
        union = (truth | guess).sum()
        if union:
            ious.append(float((truth & guess).sum() / union))
    return matrix, sum(ious) / len(ious)


def test_confusion_matrix_accuracy_and_iou_agree_with_brute_force():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (3, 7, 9), generator=g)
    target[0, :2] = 255
    predicted = torch.where(torch.rand(3, 7, 9, generator=g) < 0.6, target.clamp(max=4),
                            torch.randint(0, 5, (3, 7, 9), generator=g))
    predicted[target == 255] = 4  # whatever is predicted on ignored pixels does not count
    target[target == 3] = 2  # class 3 is never true, but sometimes predicted: IoU 0, counted
    matrix = confusion_matrix(predicted, target, 6)
    expected, miou = brute_force(predicted, target, 6)
    assert torch.equal(matrix, expected)  # class 5 occurs nowhere: no IoU, not in the mean
    assert pixel_accuracy(matrix) == pytest.approx(float((predicted == target)[target != 255].float().mean()))
    assert mean_iou(matrix) == pytest.approx(miou)
    assert torch.isnan(class_iou(matrix)[5]) and class_iou(matrix)[3] == 0


@pytest.mark.skipif(importlib.util.find_spec("torchmetrics") is None, reason="torchmetrics is not installed")
def test_mean_iou_and_accuracy_agree_with_torchmetrics():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (2, 16, 16), generator=g)
    target[:, :3, :3] = 255
    predicted = torch.randint(0, 4, (2, 16, 16), generator=g)
    matrix = confusion_matrix(predicted, target, 4)
    jaccard = MulticlassJaccardIndex(num_classes=4, ignore_index=255, average="macro")
    accuracy = MulticlassAccuracy(num_classes=4, ignore_index=255, average="micro")
    assert mean_iou(matrix) == pytest.approx(float(jaccard(predicted, target)), abs=1e-6)
    assert pixel_accuracy(matrix) == pytest.approx(float(accuracy(predicted, target)), abs=1e-6)
    # an ignore index that is a class: its pixels are not truth, and it takes no part in the mean
    matrix = confusion_matrix(predicted, target.where(target != 255, 0), 4, ignore_index=0)
    jaccard = MulticlassJaccardIndex(num_classes=4, ignore_index=0, average="macro")
    assert mean_iou(matrix, ignore_index=0) == pytest.approx(float(jaccard(predicted, target.where(target != 255, 0))),
                                                             abs=1e-6)
    last = target.where(target != 255, 3)  # the last class as the ignore index
    jaccard = MulticlassJaccardIndex(num_classes=4, ignore_index=3, average="macro")
    assert mean_iou(confusion_matrix(predicted, last, 4, ignore_index=3), ignore_index=3) == pytest.approx(
        float(jaccard(predicted, last)), abs=1e-6)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), 2)
    with pytest.raises(ValueError, match=r"class indices must be in 0..1"):
        confusion_matrix(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 255]), 2)


class PerPixel(torch.nn.Module):
    """A 1x1 convolution: logits per pixel."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, X):
        return self.conv(X)


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
def test_the_task_scores_only_labelled_pixels_and_sums_confusion_matrices(ops):
    torch.manual_seed(0)
    model = PerPixel()
    X = torch.rand(2, 3, 5, 6)
    masks = torch.randint(0, 4, (2, 5, 6))
    masks[0, 0] = 255
    task = PixelClassification(ops.cross_entropy, num_classes=4)
    out = task.step(model, Segmentation(X, masks), training=True)
    valid = masks != 255
    expected = torch.nn.functional.cross_entropy(model(X), masks, ignore_index=255)
    torch.testing.assert_close(out.loss, expected)
    assert out.sums["pixels"] == int(valid.sum()) and out.sums["confusion"].sum() == valid.sum()
    sums = MetricSums()
    sums.add(out.sums)
    sums.add(out.sums)
    totals = sums.totals()
    assert totals["confusion"].shape == (4, 4) and totals["count"] == 4
    metrics = task.summarize(totals)
    assert metrics["loss"] == pytest.approx(float(expected.detach()), rel=1e-6)
    predicted = model(X).argmax(dim=1)
    assert metrics["acc"] == pytest.approx(float((predicted == masks)[valid].float().mean()))
    assert metrics["miou"] == pytest.approx(brute_force(predicted, masks, 4)[1])
    ignored = task.step(model, Segmentation(X, torch.full_like(masks, 255)), training=True)  # a crop of borders only
    assert ignored.loss.item() == 0 and ignored.sums["loss"].item() == 0 and ignored.sums["pixels"] == 0
    ignored.loss.backward()  # no NaN reaches the gradients either
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_pixel_task_reports_miou_without_its_ignore_index():
    matrix = torch.tensor([[5, 1, 0], [2, 6, 1], [0, 3, 4]])
    summary = PixelClassification(fast.cross_entropy, 3, ignore_index=0).summarize(
        {"loss": 1.0, "pixels": 10, "confusion": matrix})
    assert summary["miou"] == pytest.approx(mean_iou(matrix, ignore_index=0))
    assert summary["miou"] != pytest.approx(mean_iou(matrix, ignore_index=None))
