"""Tasks for object detectors: SSD's multibox loss (D2L §13.7.2) and the grid detector's YOLO loss.

A batch is a :class:`~divekit.data.batch.Detection`: images X (B, C, H, W), relative corner boxes
(B, M, 4) and labels (B, M), -1 on padding rows. Letters: A anchors (or N grid predictions), K object
classes. Throughput counts images. Both take their losses from the run's ops twin.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from divekit.models.detection.yolo import decode_grid
from divekit.train import distributed
from divekit.train.tasks import StepOutput, Task

__all__ = ["GridDetectionTask", "MultiboxTask", "book_labels"]


def book_labels(batch) -> torch.Tensor:
    """A Detection batch's objects as the book's label tensor (B, M, 5) rows [class, x1, y1, x2, y2]."""
    return torch.cat((batch.labels[..., None].to(batch.boxes.dtype), batch.boxes), dim=-1)


class MultiboxTask(Task):
    """SSD training as the book's (D2L §13.7.2): anchors are labelled with ``multibox_target``; the
    loss per image is the cross-entropy of the A anchors' classes, averaged over the anchors, plus the
    L1 distance of the masked offsets, averaged over the A·4 offsets; the batch loss is the mean over
    images. Metrics as the book prints them: ``class_err`` the fraction of anchors whose arg-max class
    is wrong, ``bbox_mae`` the mean absolute offset error over all A·4 masked offsets (0 on anchors
    without a box counted too)."""

    count_unit = "images"
    monitor = ("loss", "min")  # best.pt: the epoch of the lowest validation loss

    def __init__(self, cross_entropy: Callable, l1_loss: Callable, multibox_target: Callable,
                 iou_threshold: float = 0.5):
        self.cross_entropy, self.l1_loss, self.multibox_target = cross_entropy, l1_loss, multibox_target
        self.iou_threshold = iou_threshold

    def step(self, model: nn.Module, batch, training: bool) -> StepOutput:
        anchors, cls_preds, bbox_preds = model(batch.X)                   # (1, A, 4), (B, A, K+1), (B, A*4)
        cls_preds, bbox_preds = cls_preds.float(), bbox_preds.float()                   # losses in fp32 under autocast
        bbox_labels, bbox_masks, cls_labels = self.multibox_target(anchors, book_labels(batch), self.iou_threshold)
        B, A, num_classes = cls_preds.shape
        cls = self.cross_entropy(cls_preds.reshape(-1, num_classes), cls_labels.reshape(-1)).reshape(B, A).mean(dim=1)
        bbox = self.l1_loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks).mean(dim=1)   # (B,)
        loss = (cls + bbox).mean()
        with torch.no_grad():
            correct = (cls_preds.argmax(dim=-1) == cls_labels).sum()
            abs_error = ((bbox_labels - bbox_preds) * bbox_masks).abs().sum()
        return StepOutput(loss, {"loss": loss.detach() * B, "correct": correct, "anchors": cls_labels.numel(),
                                 "abs_error": abs_error, "offsets": bbox_labels.numel(), "count": B})

    def summarize(self, totals):
        return {"loss": totals["loss"] / totals["count"], "class_err": 1 - totals["correct"] / totals["anchors"],
                "bbox_mae": totals["abs_error"] / totals["offsets"]}


class GridDetectionTask(Task):
    """The grid detector's loss (YOLOv2/v3's, :mod:`divekit.models.detection.yolo`), per batch:

    * each real object belongs to one prediction: the cell holding its centre, and of its P priors
      the one with the largest IoU with the object's size when both are centred (YOLOv2); two
      objects on one prediction: the later row wins;
    * ``box``: over the assigned predictions, the squared error of (σ(t_x), σ(t_y)) against the
      centre's place in its cell and of (t_w, t_h) against log(size / prior), weighted by
      2 - w·h (small boxes count more, YOLOv3);
    * ``obj``: binary cross-entropy of the objectness, the mean over the assigned predictions (target
      1) plus the mean over the others (target 0), leaving out unassigned ones whose decoded box
      already overlaps an object by IoU > ``ignore_threshold`` (YOLOv3); the two means weigh the few
      objects as much as the many empty cells;
    * ``cls``: cross-entropy of the class logits over the assigned predictions.

    The loss is box + obj + cls, box and cls averaged over the assigned predictions. Metrics: the
    three parts and ``obj_acc``, how often σ(t_o) > 0.5 agrees with the target where it counts.
    """

    count_unit = "images"
    monitor = ("loss", "min")  # best.pt: the epoch of the lowest validation loss
    whole_minibatch_loss = True

    def __init__(self, cross_entropy: Callable, bce_with_logits: Callable, box_iou: Callable,
                 box_center_to_corner: Callable, ignore_threshold: float = 0.5):
        self.cross_entropy, self.bce_with_logits, self.box_iou = cross_entropy, bce_with_logits, box_iou
        self.box_center_to_corner = box_center_to_corner
        self.ignore_threshold = ignore_threshold

    def targets(self, shape: tuple[int, ...], priors: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor):
        """Which object each prediction is assigned: grid (B, h, w, P, ·), priors (P, 2), boxes (B, M, 4),
        labels (B, M) -> owner (B, N) index of the object, -1 for none."""
        B, h, w, P = shape[:4]
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2                                   # (B, M, 2) (x, y)
        size = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)                         # (B, M, 2)
        col = (centre[..., 0] * w).long().clamp(0, w - 1)                                # (B, M)
        row = (centre[..., 1] * h).long().clamp(0, h - 1)                                # (B, M)
        inter = torch.minimum(size[..., None, :], priors).prod(dim=-1)                   # (B, M, P) centred overlap
        shape_iou = inter / (size.prod(-1)[..., None] + priors.prod(-1) - inter)         # (B, M, P)
        prior = shape_iou.argmax(dim=-1)                                                 # (B, M)
        flat = (row * w + col) * P + prior                                               # (B, M) prediction index
        valid = labels >= 0
        rows = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)     # (B, M) object index
        owner = torch.full((B, h * w * P), -1, dtype=torch.long, device=labels.device)
        # the largest object index wins a prediction two objects share: amax does not depend on order
        return owner.scatter_reduce(1, torch.where(valid, flat, 0), torch.where(valid, rows, -1), "amax")

    def step(self, model: nn.Module, batch, training: bool) -> StepOutput:
        preds, priors = model(batch.X)                                                    # (B, h, w, P, 5+K), (P, 2)
        preds = preds.float()
        B, h, w, P, _ = preds.shape
        boxes, obj_logits, cls_logits = decode_grid(preds, priors, self.box_center_to_corner)  # (B,N,4) (B,N) (B,N,K)
        owner = self.targets(preds.shape, priors, batch.boxes, batch.labels)               # (B, N)
        assigned = owner >= 0
        index = owner.clamp(min=0)
        target_boxes = batch.boxes.gather(1, index[..., None].expand(-1, -1, 4))          # (B, N, 4)
        target_labels = batch.labels.gather(1, index)                                     # (B, N)
        # box: the centre's place in its cell and the log size ratio to the prior
        grid = torch.tensor([w, h], device=preds.device, dtype=preds.dtype)
        centre = (target_boxes[..., :2] + target_boxes[..., 2:]) / 2 * grid              # (B, N, 2) in cells
        size = (target_boxes[..., 2:] - target_boxes[..., :2]).clamp(min=1e-6)            # (B, N, 2)
        raw = preds[..., :4].reshape(B, -1, 4)                                            # (B, N, 4) t_x, t_y, t_w, t_h
        prior_size = priors.repeat(h * w, 1)                                              # (N, 2) each one's prior
        xy_error = (torch.sigmoid(raw[..., :2]) - (centre - centre.floor())).square().sum(-1)   # (B, N)
        wh_error = (raw[..., 2:] - torch.log(size / prior_size)).square().sum(-1)                 # (B, N)
        weight = 2 - size.prod(-1)
        with torch.no_grad():  # which predictions the objectness loss leaves out: without an object but on one
            ious = self.box_iou(boxes, batch.boxes).masked_fill(batch.labels[:, None, :] < 0, 0)  # (B, N, M)
            ignored = ~assigned & (ious.amax(dim=-1) > self.ignore_threshold)
        empty = ~assigned & ~ignored
        # means over the whole minibatch when processes share it (distributed.whole_minibatch_mean)
        num_assigned, num_empty, whole_B = distributed.whole_minibatch_counts(assigned.sum(), empty.sum(), B)
        box_loss = distributed.whole_minibatch_mean(((xy_error + wh_error) * weight * assigned).sum(), num_assigned)
        cls_loss = distributed.whole_minibatch_mean(
            self.cross_entropy(cls_logits[assigned], target_labels[assigned]).sum() if assigned.any()
            else cls_logits.sum() * 0, num_assigned)
        obj = self.bce_with_logits(obj_logits, assigned.to(obj_logits.dtype))            # (B, N)
        obj_loss = (distributed.whole_minibatch_mean((obj * assigned).sum(), num_assigned)
                    + distributed.whole_minibatch_mean((obj * empty).sum(), num_empty))
        loss = box_loss + obj_loss + cls_loss
        with torch.no_grad():
            counted = assigned | empty
            obj_correct = (((obj_logits > 0) == assigned) & counted).sum()
        per_image = whole_B / distributed.world().size  # each process's part of the step's losses x its images
        return StepOutput(loss, {"loss": loss.detach() * per_image, "box": box_loss.detach() * per_image,
                                 "obj": obj_loss.detach() * per_image, "cls": cls_loss.detach() * per_image,
                                 "obj_correct": obj_correct, "obj_counted": counted.sum(), "count": B})

    def summarize(self, totals):
        n = totals["count"]
        return {"loss": totals["loss"] / n, "box_loss": totals["box"] / n, "obj_loss": totals["obj"] / n,
                "cls_loss": totals["cls"] / n, "obj_acc": totals["obj_correct"] / totals["obj_counted"]}
