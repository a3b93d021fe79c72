"""Semantic segmentation metrics (D2L §13.11): the confusion matrix of pixels, pixel accuracy and
mean intersection over union, computed on the device.

Letters: C classes, N pixels.

The confusion matrix counts, for every pair (true class i, predicted class j), the pixels of class
i predicted as j: one ``bincount`` of i C + j over the pixels, those marked ``ignore_index``
(VOC's 255 borders) left out. From it, pixel accuracy = trace / total, and per class
IoU_c = TP / (TP + FP + FN) = M[c, c] / (row_c + column_c - M[c, c]); mean IoU averages the classes
that occur in the truth or the predictions (a class absent from both has no IoU), as torchmetrics'
``MulticlassJaccardIndex``. Confusion matrices of minibatches add up, so an epoch's metrics come
from one matrix, not from averaging per-batch scores.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = 255  # VOC's label for object borders and undecided pixels


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """int64 (C, C) counts of pixels of true class i (row) predicted as j (column), from class
    indices of any matching shapes; pixels whose target is ``ignore_index`` do not count."""
    if predicted.shape != target.shape:
        raise ValueError(f"predictions {tuple(predicted.shape)} and targets {tuple(target.shape)} differ in shape")
    predicted, target = predicted.reshape(-1).long(), target.reshape(-1).long()  # (N,)
    if ignore_index is not None:
        keep = target != ignore_index
        predicted, target = predicted[keep], target[keep]
    if target.numel() and (target.min() < 0 or target.max() >= num_classes or predicted.min() < 0
                           or predicted.max() >= num_classes):
        raise ValueError(f"class indices must be in 0..{num_classes - 1} (or the ignore index {ignore_index})")
    counts = torch.bincount(target * num_classes + predicted, minlength=num_classes**2)  # (C * C,)
    return counts.reshape(num_classes, num_classes)


def pixel_accuracy(matrix: torch.Tensor) -> float:
    """The fraction of counted pixels predicted right: trace / total."""
    total = matrix.sum()
    return float(matrix.diagonal().sum() / total) if total > 0 else float("nan")


def class_iou(matrix: torch.Tensor) -> torch.Tensor:
    """IoU of each class (C,), NaN for a class in neither the truth nor the predictions."""
    matrix = matrix.double()
    hits = matrix.diagonal()
    union = matrix.sum(dim=0) + matrix.sum(dim=1) - hits
    return torch.where(union > 0, hits / union.clamp(min=1), torch.nan)


def mean_iou(matrix: torch.Tensor, ignore_index: int | None = IGNORE_INDEX) -> float:
    """The mean of :func:`class_iou` over the classes that occur, less ``ignore_index`` where it is a
    class (its pixels were not counted as truth; predicted, it is only an error), as torchmetrics'."""
    iou = class_iou(matrix)
    if ignore_index is not None and 0 <= ignore_index < len(iou):
        iou[ignore_index] = torch.nan
    return float(iou.nanmean())
