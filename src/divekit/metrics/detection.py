"""Mean average precision of object detectors (for D2L §13.7 SSD and §13.8 R-CNNs, which show boxes but
report no accuracy).

A detector returns ranked boxes. Per class, walk its detections over all images by descending score;
each is a true positive if it matches a still unmatched ground-truth box of its class and image (IoU
above a threshold), else a false positive. Precision and recall after each detection trace the PR
curve; AP is the area under its upper envelope; mAP averages AP over the classes that have ground
truth. Two protocols, kept apart because their numbers differ:

* :func:`coco_map` (COCO, what ``pycocotools`` and torchmetrics' ``MeanAveragePrecision`` report):
  IoU thresholds 0.5:0.05:0.95, each detection takes the best still *unmatched* box with IoU >= t,
  the envelope read at the 101 recalls 0, 0.01, ..., 1 (0 beyond the curve), at most 100 detections
  per image and class. ``map`` averages over thresholds and classes; ``map_50`` is t = 0.5 alone
  (still 101-point), ``map_75`` t = 0.75, ``mar_100`` the mean of the largest recall reached.
  Only the "all areas" numbers; no crowd or area-range handling.
* :func:`voc_map` (PASCAL VOC 2010+ devkit): one IoU threshold (0.5), each detection matched to its
  best box by IoU even if taken (then it is a duplicate, a false positive), IoU >= threshold as the
  devkit, all-point interpolation (the exact area under the envelope). Continuous coordinates: no
  "+1 pixel" in widths (the devkit's integer-pixel convention), no "difficult" flags.

Inputs as torchmetrics: ``preds`` a list over images of dicts ``boxes`` (N, 4) in corner format,
``scores`` (N,), ``labels`` (N,); ``targets`` a list of dicts ``boxes`` (M, 4), ``labels`` (M,).
:func:`labels_to_targets` and :func:`detections_to_preds` convert the book's (B, M, 5) labels
(class -1 = padding) and :func:`~divekit.ops.scratch.multibox_detection`'s (B, A, 6) output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from divekit.ops.scratch.boxes import box_iou

__all__ = ["coco_ap", "coco_map", "detections_to_preds", "labels_to_targets", "voc_ap", "voc_map"]

# pycocotools' grids, built as numpy's linspace builds them (start + i * step, last = stop), so that
# recalls such as 29/100 compare equal to their threshold bit for bit
COCO_IOU_THRESHOLDS = tuple(i * ((0.95 - 0.5) / 9) + 0.5 for i in range(9)) + (0.95,)
COCO_RECALL_THRESHOLDS = tuple(i * ((1.0 - 0.0) / 100) + 0.0 for i in range(100)) + (1.0,)
_EPS = 2.220446049250313e-16  # numpy's spacing(1), pycocotools' guard against 0 / 0


def labels_to_targets(labels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """The book's ground truth (B, M, 5) [class, x1, y1, x2, y2] -> targets, padding rows (class < 0) dropped."""
    if labels.dim() != 3 or labels.shape[-1] != 5:
        raise ValueError(f"labels must have shape (B, M, 5) [class, x1, y1, x2, y2], got {tuple(labels.shape)}")
    return [{"boxes": image[image[:, 0] >= 0, 1:], "labels": image[image[:, 0] >= 0, 0].long()} for image in labels]


def detections_to_preds(detections: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """``multibox_detection`` output (B, A, 6) [class_id, confidence, x1, y1, x2, y2] -> preds,
    background rows (class_id -1) dropped."""
    if detections.dim() != 3 or detections.shape[-1] != 6:
        raise ValueError(f"detections must have shape (B, A, 6) [class, score, x1, y1, x2, y2], got {tuple(detections.shape)}")
    return [{"boxes": image[image[:, 0] >= 0, 2:], "scores": image[image[:, 0] >= 0, 1],
             "labels": image[image[:, 0] >= 0, 0].long()} for image in detections]


def _check(preds: Sequence[dict], targets: Sequence[dict]) -> None:
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} images of predictions but {len(targets)} of targets")
    for i, (p, t) in enumerate(zip(preds, targets)):
        n, m = len(p["labels"]), len(t["labels"])
        if p["boxes"].shape != (n, 4) or p["scores"].shape != (n,):
            raise ValueError(f"image {i}: predicted boxes (N, 4), scores (N,), labels (N,) do not fit: "
                             f"{tuple(p['boxes'].shape)}, {tuple(p['scores'].shape)}, {tuple(p['labels'].shape)}")
        if t["boxes"].shape != (m, 4):
            raise ValueError(f"image {i}: target boxes (M, 4) and labels (M,) do not fit: "
                             f"{tuple(t['boxes'].shape)}, {tuple(t['labels'].shape)}")


def _per_class(preds, targets, max_detections):
    """Group by class, then image: {class: [(scores (D,), ious (D, G)), ...]} over the images, the
    detections sorted by descending score (ties by index) and cut to ``max_detections``; and the
    number of ground-truth boxes per class."""
    classes = sorted({int(c) for x in (*preds, *targets) for c in x["labels"].tolist()})
    images = {c: [] for c in classes}
    num_gt = dict.fromkeys(classes, 0)
    for p, t in zip(preds, targets):
        for c in classes:
            dt = p["labels"] == c
            scores, order = p["scores"][dt].double().sort(descending=True, stable=True)
            scores, order = scores[:max_detections], order[:max_detections]
            dt_boxes = p["boxes"][dt].double()[order]                            # (D, 4)
            gt_boxes = t["boxes"][t["labels"] == c].double()                     # (G, 4)
            num_gt[c] += len(gt_boxes)
            if len(scores) or len(gt_boxes):
                images[c].append((scores, box_iou(dt_boxes, gt_boxes)))          # (D,), (D, G)
    return classes, images, num_gt


def _coco_match(ious: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """COCO's greedy matching in one image and class: ious (D, G), detections by descending score,
    thresholds (T,) -> matched (T, D) bool. Each detection takes, per threshold, the free box with
    the largest IoU >= t, the last of equal ones (pycocotools' loop keeps the last)."""
    D, G = ious.shape
    matched = torch.zeros(len(thresholds), D, dtype=torch.bool)
    if G == 0:
        return matched
    taken = torch.zeros(len(thresholds), G, dtype=torch.bool)
    thresholds = thresholds.clamp(max=1 - 1e-10)[:, None]                        # (T, 1)
    for d in range(D):  # sequential by nature: a box taken by a better detection is gone
        free = (ious[d] >= thresholds) & ~taken                                  # (T, G)
        best = G - 1 - torch.where(free, ious[d], -1.0).flip(-1).argmax(-1)      # (T,) last best free box
        found = free.any(-1)                                                     # (T,)
        matched[:, d] = found
        taken[found, best[found]] = True
    return matched


def _voc_match(ious: torch.Tensor, threshold: float) -> torch.Tensor:
    """The VOC devkit's matching in one image and class: ious (D, G) -> matched (D,) bool. Each
    detection looks at its best box (the first of equal ones); taken already means duplicate."""
    D, G = ious.shape
    matched = torch.zeros(D, dtype=torch.bool)
    if G == 0:
        return matched
    best_iou, best = ious.max(dim=1)                                             # (D,) each
    taken = [False] * G
    for d, (iou, j) in enumerate(zip(best_iou.tolist(), best.tolist())):        # sequential, as in the devkit
        if iou >= threshold and not taken[j]:
            matched[d] = taken[j] = True
    return matched


def _pr_curve(scores: torch.Tensor, matched: torch.Tensor, num_gt: int):
    """scores (D,), matched (..., D) -> recall, precision (..., D) after each detection by descending score."""
    order = scores.argsort(descending=True, stable=True)                         # across images, ties in image order
    tp = matched[..., order].double().cumsum(-1)
    fp = (~matched[..., order]).double().cumsum(-1)
    return tp / num_gt, tp / (tp + fp + _EPS)


def voc_ap(recall: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """All-point interpolated AP (VOC 2010+): the area under the upper envelope of the PR curve,
    recall, precision (D,) in detection order -> scalar. The curve starts at (0, ·) and ends at recall 1
    with precision 0, so recall never reached adds nothing."""
    recall = torch.cat((recall.new_zeros(1), recall, recall.new_ones(1)))
    precision = torch.cat((precision.new_zeros(1), precision, precision.new_zeros(1)))
    envelope = precision.flip(0).cummax(0).values.flip(0)                       # best precision at this recall or more
    steps = recall[1:] != recall[:-1]                                             # where recall grows
    return ((recall[1:] - recall[:-1]) * envelope[1:])[steps].sum()


def coco_ap(recall: torch.Tensor, precision: torch.Tensor,
            recall_thresholds: Sequence[float] = COCO_RECALL_THRESHOLDS) -> torch.Tensor:
    """101-point interpolated AP (COCO): the mean over recall thresholds r of the envelope's precision at
    the first point with recall >= r (0 if the curve never gets there). recall, precision (..., D) -> (...)."""
    envelope = precision.flip(-1).cummax(-1).values.flip(-1)                     # (..., D)
    r = torch.tensor(recall_thresholds, dtype=recall.dtype).expand(*recall.shape[:-1], -1).contiguous()
    idx = torch.searchsorted(recall.contiguous(), r, side="left")                 # (..., R) first recall >= r
    D = recall.shape[-1]
    sampled = envelope.gather(-1, idx.clamp(max=max(D - 1, 0))) if D else torch.zeros_like(r)
    return torch.where(idx < D, sampled, 0).mean(-1)


def coco_map(preds: Sequence[dict], targets: Sequence[dict], iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
             max_detections: int = 100) -> dict[str, torch.Tensor]:
    """COCO mAP@[.5:.95] with 101-point interpolation (see the module docstring) -> a dict of float64
    tensors: ``map``, ``map_50``, ``map_75`` (if those thresholds are used), ``mar_<max_detections>``,
    ``map_per_class`` (-1 for a class without ground truth) and ``classes``. -1 where no class has
    ground truth, as pycocotools."""
    _check(preds, targets)
    thresholds = torch.tensor(list(iou_thresholds), dtype=torch.float64)          # (T,)
    classes, images, num_gt = _per_class(preds, targets, max_detections)
    ap = torch.full((len(classes), len(thresholds)), -1.0, dtype=torch.float64)  # (K, T)
    max_recall = torch.full_like(ap, -1.0)
    for k, c in enumerate(classes):
        if num_gt[c] == 0:
            continue  # AP is undefined without ground truth
        scores = torch.cat([s for s, _ in images[c]]) if images[c] else torch.zeros(0, dtype=torch.float64)
        matched = (torch.cat([_coco_match(ious, thresholds) for _, ious in images[c]], dim=1)
                   if images[c] else torch.zeros(len(thresholds), 0, dtype=torch.bool))        # (T, D)
        recall, precision = _pr_curve(scores, matched, num_gt[c])                # (T, D) each
        ap[k] = coco_ap(recall, precision)
        max_recall[k] = recall[:, -1] if recall.shape[-1] else 0.0

    def mean(values):  # over the entries with ground truth, -1 if none
        valid = values[values > -1]
        return valid.mean() if len(valid) else torch.tensor(-1.0, dtype=torch.float64)

    result = {"map": mean(ap)}
    for name, t in (("map_50", 0.5), ("map_75", 0.75)):
        hits = torch.isclose(thresholds, torch.tensor(t, dtype=torch.float64)).nonzero().flatten()
        if len(hits):
            result[name] = mean(ap[:, hits[0]])
    result[f"mar_{max_detections}"] = mean(max_recall)
    result["map_per_class"] = torch.stack([mean(row) for row in ap]) if classes else torch.zeros(0, dtype=torch.float64)
    result["classes"] = torch.tensor(classes, dtype=torch.long)
    return result


def voc_map(preds: Sequence[dict], targets: Sequence[dict], iou_threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """PASCAL VOC mAP at one IoU threshold with all-point interpolation (see the module docstring)
    -> ``map``, ``ap_per_class`` (-1 for a class without ground truth) and ``classes``."""
    _check(preds, targets)
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    classes, images, num_gt = _per_class(preds, targets, max_detections=None)
    ap = torch.full((len(classes),), -1.0, dtype=torch.float64)
    for k, c in enumerate(classes):
        if num_gt[c] == 0:
            continue
        scores = torch.cat([s for s, _ in images[c]]) if images[c] else torch.zeros(0, dtype=torch.float64)
        matched = (torch.cat([_voc_match(ious, iou_threshold) for _, ious in images[c]])
                   if images[c] else torch.zeros(0, dtype=torch.bool))
        ap[k] = voc_ap(*_pr_curve(scores, matched, num_gt[c]))
    valid = ap[ap > -1]
    return {"map": valid.mean() if len(valid) else torch.tensor(-1.0, dtype=torch.float64),
            "ap_per_class": ap, "classes": torch.tensor(classes, dtype=torch.long)}
