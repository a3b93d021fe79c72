"""Bounding boxes, anchor boxes, their labels and non-maximum suppression (D2L §13.3-§13.4, used by §13.7 SSD).

Letters: B batch size, C channels, h x w feature map (or image) height and width, A anchors,
M ground-truth boxes per image (padding included), N boxes, K object classes (background not counted),
P anchors per pixel (n sizes + m ratios - 1).

Boxes are ``(..., 4)`` tensors in corner format (x1, y1, x2, y2) everywhere inside; the two converters
:func:`box_corner_to_center` and :func:`box_center_to_corner` are used only at the edges (offsets).
A box with x2 < x1 or y2 < y1 is empty (area 0). Ground truth for a batch is the book's (B, M, 5)
tensor [class, x1, y1, x2, y2] in which rows of class -1 are padding: they are never assigned to anything,
and an image made only of padding labels every anchor as background.

Nothing here loops over boxes, ground truths or images in Python, except two algorithms that are
sequential by nature, and those loop once per *step*, for the whole batch at once:

* the book's greedy anchor assignment takes the largest IoU pair, removes its row and column, and
  repeats: M steps, each an argmax over the (B, A, M) IoU tensor;
* greedy NMS keeps the best remaining box and drops the boxes it overlaps: one step per kept box,
  each computing one IoU row per image, O(N·kept) in all. (All N² IoUs at once is ~18x slower on one
  CPU core for the 5444 anchors of the book's SSD, but faster below ~1000 boxes, and should be on a
  GPU: ``ops.fast`` picks by size and device.)

Where the book's code differs (d2l/torch.py, classic edition):

* ``multibox_prior`` follows the book's *code*, not its text: an anchor of size s and ratio r is
  h·s·sqrt(r) pixels wide and h·s/sqrt(r) pixels high (its pixel aspect ratio is r, its side h·s for
  r = 1), which is what the book's printed coordinates come from. The text says w·s·sqrt(r) by
  h·s/sqrt(r), whose pixel aspect ratio would be r·w/h (d2l-en PR #442, d2l-zh #1190, #1357).
* anchor assignment skips padding rows (the book assigns anchors to them, hidden by one banana per
  image) and uses integer division for the flat argmax (the book divides floats, wrong above 2^24).
* ``offset_inverse`` clamps the log-size offset at log(1000/16) before ``exp`` (as torchvision's
  BoxCoder), so a wild prediction gives a large box, not ``inf``.
* ``multibox_detection`` runs NMS per predicted class by default (``per_class_nms=True``); the
  book's NMS is class-blind: a confident cat box there deletes an overlapping dog box.
  ``per_class_nms=False`` reproduces the book. Equal scores are ranked by anchor index (stable sort).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "assign_anchor_to_bbox",
    "batched_nms",
    "box_area",
    "box_center_to_corner",
    "box_corner_to_center",
    "box_iou",
    "multibox_detection",
    "multibox_prior",
    "multibox_target",
    "nms",
    "offset_boxes",
    "offset_inverse",
]

# The book's offset scaling (D2L §13.4.3): mu = 0, sigma_x = sigma_y = 0.1, sigma_w = sigma_h = 0.2.
OFFSET_STD_XY, OFFSET_STD_WH = 0.1, 0.2
# Largest log-size change decoded by offset_inverse: a box may grow at most 1000/16 = 62.5 times per side.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _check_boxes(boxes: torch.Tensor, name: str = "boxes") -> None:
    if boxes.dim() < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4), got {tuple(boxes.shape)}")


def box_corner_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, width, height), boxes (..., 4) -> (..., 4) (D2L §13.3)."""
    _check_boxes(boxes)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_center_to_corner(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, width, height) -> (x1, y1, x2, y2), boxes (..., 4) -> (..., 4) (D2L §13.3)."""
    _check_boxes(boxes)
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def _upcast(boxes: torch.Tensor) -> torch.Tensor:
    """Coordinates whose products cannot overflow, as torchvision's ``_upcast``: 16-bit floats to float32
    (float16's largest number, 65,504, is the area of a 256 x 256 box), integers narrower than int32 to int32."""
    if boxes.is_floating_point():
        return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()
    return boxes if boxes.dtype in (torch.int32, torch.int64) else boxes.int()


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of corner-format boxes (..., 4) -> (...); a box with x2 < x1 or y2 < y1 has area 0. 16-bit
    float boxes give float32 areas (see :func:`_upcast`)."""
    _check_boxes(boxes)
    boxes = _upcast(boxes)
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _check_iou_inputs(boxes1: torch.Tensor, boxes2: torch.Tensor) -> None:
    if boxes1.dim() < 2 or boxes1.shape[-1] != 4:
        raise ValueError(f"boxes1 must have shape (..., N, 4), got {tuple(boxes1.shape)}")
    if boxes2.dim() < 2 or boxes2.shape[-1] != 4:
        raise ValueError(f"boxes2 must have shape (..., M, 4), got {tuple(boxes2.shape)}")


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair: (..., N, 4) x (..., M, 4) -> (..., N, M) (D2L §13.4.2).

    IoU = |A ∩ B| / |A ∪ B|, the Jaccard index of the two boxes' areas. Leading dimensions broadcast,
    so anchors (A, 4) against a batch of ground truths (B, M, 4) is ``box_iou(anchors[None], gt)``
    -> (B, A, M). Two empty boxes have IoU 0, not 0/0 = NaN. 16-bit float boxes are computed, and
    returned, in float32, as torchvision does: their areas overflow float16 from 256 x 256 on.
    """
    _check_iou_inputs(boxes1, boxes2)
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    if not boxes1.is_floating_point():
        boxes1 = boxes1.float()  # integer pixel boxes: areas and ratios in floating point
    areas1, areas2 = box_area(boxes1), box_area(boxes2)                      # (..., N), (..., M)
    x1a, y1a, x2a, y2a = boxes1[..., :, None, :].unbind(-1)                  # (..., N, 1) each
    x1b, y1b, x2b, y2b = boxes2[..., None, :, :].unbind(-1)                  # (..., 1, M) each
    # the intersection runs from the larger upper-left to the smaller lower-right corner
    inter_w = (torch.minimum(x2a, x2b) - torch.maximum(x1a, x1b)).clamp(min=0)   # (..., N, M)
    inter_h = (torch.minimum(y2a, y2b) - torch.maximum(y1a, y1b)).clamp(min=0)   # (..., N, M)
    inter = inter_w * inter_h                                                # (..., N, M)
    union = areas1[..., :, None] + areas2[..., None, :] - inter              # (..., N, M)
    nonempty = union > 0
    # the inner where keeps 0/0 out of the graph too, so gradients stay finite
    return torch.where(nonempty, inter / torch.where(nonempty, union, 1), 0)


def multibox_prior(data: torch.Tensor, sizes: Sequence[float], ratios: Sequence[float]) -> torch.Tensor:
    """Anchor boxes centred on every pixel of a feature map (D2L §13.4.1).

    data (B, C, h, w) (only its height, width, device and dtype are used) -> anchors (1, h*w*P, 4),
    coordinates divided by the image width (x) and height (y), so they lie in [0, 1] when the anchor
    fits. Per pixel there are P = n + m - 1 anchors, in the book's order
    (s_1, r_1), (s_2, r_1), ..., (s_n, r_1), (s_1, r_2), ..., (s_1, r_m); pixels in row-major order
    (y major), so ``anchors.reshape(h, w, P, 4)[i, j]`` are the anchors centred on pixel (i, j).
    Anchor (s, r) is h·s·sqrt(r) pixels wide and h·s/sqrt(r) high (the book's code; see the module note).
    """
    if data.dim() != 4:
        raise ValueError(f"expected a feature map (B, C, h, w), got shape {tuple(data.shape)}")
    if len(sizes) == 0 or len(ratios) == 0:
        raise ValueError("sizes and ratios must each hold at least one value")
    if min(sizes) <= 0 or min(ratios) <= 0:
        raise ValueError(f"sizes and ratios must be positive, got sizes={list(sizes)}, ratios={list(ratios)}")
    h, w = data.shape[-2:]
    dtype = data.dtype if data.is_floating_point() else torch.float32
    factory = {"device": data.device, "dtype": dtype}
    size, ratio = torch.tensor(sizes, **factory), torch.tensor(ratios, **factory)
    # the P (size, ratio) pairs of one pixel: every size with r_1, then s_1 with r_2..r_m
    s = torch.cat((size, size[:1].expand(len(ratios) - 1)))      # (P,)
    r = torch.cat((ratio[:1].expand(len(sizes)), ratio[1:]))     # (P,)
    anchor_w = s * torch.sqrt(r) * h / w                         # (P,) in units of the image width
    anchor_h = s / torch.sqrt(r)                                 # (P,) in units of the image height
    half_sizes = torch.stack((-anchor_w, -anchor_h, anchor_w, anchor_h), dim=-1) / 2   # (P, 4)
    # pixel centres, offset by half a pixel, scaled to [0, 1]
    center_y = (torch.arange(h, **factory) + 0.5) / h             # (h,)
    center_x = (torch.arange(w, **factory) + 0.5) / w             # (w,)
    cy, cx = torch.meshgrid(center_y, center_x, indexing="ij")    # (h, w) each
    centers = torch.stack((cx, cy, cx, cy), dim=-1).reshape(h * w, 1, 4)                # (h*w, 1, 4)
    anchors = centers + half_sizes                                # (h*w, P, 4)
    return anchors.reshape(1, -1, 4)                              # (1, h*w*P, 4)


def assign_anchor_to_bbox(ground_truth: torch.Tensor, anchors: torch.Tensor, iou_threshold: float = 0.5,
                          valid: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the ground-truth box each anchor is assigned to, -1 for none (D2L §13.4.3).

    ground_truth (M, 4) or (B, M, 4), anchors (A, 4), valid (M,) or (B, M) bool (False marks padding)
    -> (A,) or (B, A) long. The book's rule, for all images at once:

    1. every anchor takes its best ground truth if their IoU >= ``iou_threshold``;
    2. then, M times: the largest IoU pair (anchor i, box j) left is assigned (overriding step 1) and
       row i and column j are discarded. So each real box gets its own anchor, even below the
       threshold (an anchor with IoU 0 if it overlaps none).

    Padding boxes take no part in either step. Ties go to the lowest flat index (anchor-major), as
    ``torch.argmax`` in the book. Cost: O(B·A·M) memory, M argmax passes over it.
    """
    unbatched = ground_truth.dim() == 2
    if ground_truth.dim() not in (2, 3) or ground_truth.shape[-1] != 4:
        raise ValueError(f"ground_truth must have shape (M, 4) or (B, M, 4), got {tuple(ground_truth.shape)}")
    if anchors.dim() != 2 or anchors.shape[-1] != 4:
        raise ValueError(f"anchors must have shape (A, 4), got {tuple(anchors.shape)}")
    gt = ground_truth[None] if unbatched else ground_truth               # (B, M, 4)
    B, M = gt.shape[:2]
    A = anchors.shape[0]
    if valid is None:
        valid = torch.ones(B, M, dtype=torch.bool, device=gt.device)
    else:
        valid = (valid[None] if unbatched else valid).to(torch.bool)
        if valid.shape != (B, M):
            raise ValueError(f"valid must have shape (B, M) = {(B, M)}, got {tuple(valid.shape)}")
    anchors_bbox_map = torch.full((B, A), -1, dtype=torch.long, device=gt.device)
    if M == 0 or A == 0:
        return anchors_bbox_map[0] if unbatched else anchors_bbox_map
    # x_ij = IoU of anchor i and ground truth j; padding columns get -1, below any real IoU
    jaccard = box_iou(anchors[None], gt).masked_fill(~valid[:, None, :], -1.0)   # (B, A, M)
    # step 1: each anchor's best box, kept where it is good enough
    max_ious, indices = jaccard.max(dim=2)                                        # (B, A)
    anchors_bbox_map = torch.where(max_ious >= iou_threshold, indices, anchors_bbox_map)
    # step 2: the greedy one-to-one pass; discarded rows and columns become -1 like padding
    batch = torch.arange(B, device=gt.device)
    for _ in range(M):
        flat = jaccard.reshape(B, A * M).argmax(dim=1)                            # (B,)
        anc_idx, box_idx = flat // M, flat % M                                    # (B,) each
        found = jaccard[batch, anc_idx, box_idx] >= 0                             # (B,) a real pair was left
        anchors_bbox_map[batch, anc_idx] = torch.where(found, box_idx, anchors_bbox_map[batch, anc_idx])
        jaccard[batch, :, box_idx] = -1.0                                         # discard column j ...
        jaccard[batch, anc_idx, :] = -1.0                                         # ... and row i
    return anchors_bbox_map[0] if unbatched else anchors_bbox_map


def offset_boxes(anchors: torch.Tensor, assigned_bb: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Offsets of boxes from their anchors, anchors and boxes (..., 4) -> (..., 4) (D2L §13.4.3):

    ((x_b - x_a) / w_a / 0.1, (y_b - y_a) / h_a / 0.1, log(eps + w_b / w_a) / 0.2, log(eps + h_b / h_a) / 0.2)

    with (x, y) the centres and w, h the sizes: the book's mu = 0, sigma = (0.1, 0.1, 0.2, 0.2).
    ``eps`` keeps log finite for an empty box (the book's 1e-6). Differentiable in both arguments.
    """
    _check_boxes(anchors, "anchors")
    _check_boxes(assigned_bb, "assigned_bb")
    c_anc, c_bb = box_corner_to_center(anchors), box_corner_to_center(assigned_bb)            # (..., 4)
    offset_xy = (c_bb[..., :2] - c_anc[..., :2]) / c_anc[..., 2:] / OFFSET_STD_XY             # (..., 2)
    offset_wh = torch.log(eps + c_bb[..., 2:] / c_anc[..., 2:]) / OFFSET_STD_WH              # (..., 2)
    return torch.cat((offset_xy, offset_wh), dim=-1)


def offset_inverse(anchors: torch.Tensor, offset_preds: torch.Tensor) -> torch.Tensor:
    """Boxes from anchors and predicted offsets, the inverse of :func:`offset_boxes` (D2L §13.4.4).

    anchors and offset_preds (..., 4) -> boxes (..., 4) in corner format. The log-size offsets are
    clamped at log(1000/16) before ``exp`` (torchvision's BoxCoder), the book's code is not.
    """
    _check_boxes(anchors, "anchors")
    _check_boxes(offset_preds, "offset_preds")
    anc = box_corner_to_center(anchors)                                                       # (..., 4)
    pred_xy = offset_preds[..., :2] * OFFSET_STD_XY * anc[..., 2:] + anc[..., :2]             # (..., 2)
    log_scale = (offset_preds[..., 2:] * OFFSET_STD_WH).clamp(max=BBOX_XFORM_CLIP)           # (..., 2)
    pred_wh = torch.exp(log_scale) * anc[..., 2:]                                             # (..., 2)
    return box_center_to_corner(torch.cat((pred_xy, pred_wh), dim=-1))


def _as_anchors(anchors: torch.Tensor) -> torch.Tensor:
    """The book's anchors (1, A, 4), or (A, 4), as (A, 4)."""
    if anchors.dim() == 3 and anchors.shape[0] == 1:
        anchors = anchors[0]
    if anchors.dim() != 2 or anchors.shape[-1] != 4:
        raise ValueError(f"anchors must have shape (1, A, 4) or (A, 4), got {tuple(anchors.shape)}")
    return anchors


def multibox_target(anchors: torch.Tensor, labels: torch.Tensor, iou_threshold: float = 0.5):
    """Training targets of every anchor from a batch of labelled boxes (D2L §13.4.3).

    anchors (1, A, 4) or (A, 4), labels (B, M, 5) rows [class, x1, y1, x2, y2], class -1 for padding
    -> (bbox_offset (B, A*4), bbox_mask (B, A*4), class_labels (B, A) long), the book's layout:
    class_labels is 0 for background and class + 1 for an anchor assigned a box of ``class``;
    bbox_offset holds the :func:`offset_boxes` of the assigned box (0 for background anchors) and
    bbox_mask is 1 on the four offsets of assigned anchors, 0 elsewhere.
    """
    anchors = _as_anchors(anchors)
    if labels.dim() != 3 or labels.shape[-1] != 5:
        raise ValueError(f"labels must have shape (B, M, 5) [class, x1, y1, x2, y2], got {tuple(labels.shape)}")
    if labels.shape[1] == 0:  # no label rows at all: one padding row, so that the gathers below have a row
        labels = torch.cat((labels, labels.new_full((labels.shape[0], 1, 5), -1)), dim=1)
    B, M, _ = labels.shape
    A = anchors.shape[0]
    classes, gt_boxes = labels[..., 0], labels[..., 1:]                            # (B, M), (B, M, 4)
    anchors_bbox_map = assign_anchor_to_bbox(gt_boxes, anchors, iou_threshold, valid=classes >= 0)  # (B, A)
    assigned = anchors_bbox_map >= 0                                               # (B, A)
    box_idx = anchors_bbox_map.clamp(min=0)                                        # (B, A) any row for the others
    class_labels = torch.where(assigned, classes.gather(1, box_idx).long() + 1, 0)             # (B, A)
    assigned_bb = gt_boxes.gather(1, box_idx[..., None].expand(B, A, 4))          # (B, A, 4)
    offsets = offset_boxes(anchors, assigned_bb)                                   # (B, A, 4)
    bbox_mask = assigned[..., None].expand(B, A, 4)                                # (B, A, 4)
    bbox_offset = torch.where(bbox_mask, offsets, 0)                               # padding rows never leak in
    return bbox_offset.reshape(B, A * 4), bbox_mask.to(offsets.dtype).reshape(B, A * 4), class_labels


# ---- non-maximum suppression (D2L §13.4.4) -------------------------------------------------------

def _rank(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor | None):
    """Sort each row by descending score (ties by index): boxes (G, N, 4), scores (G, N), groups (G, N)
    -> (order (G, N), ranked boxes (G, N, 4), ranked groups (G, N) or None)."""
    G, N = scores.shape
    order = scores.argsort(dim=1, descending=True, stable=True)                # (G, N)
    ranked = boxes.gather(1, order[..., None].expand(G, N, 4))                  # (G, N, 4) best first
    return order, ranked, None if groups is None else groups.gather(1, order)


def _nms_keep(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, groups: torch.Tensor | None = None):
    """Greedy NMS on G independent rows: boxes (G, N, 4), scores (G, N), groups (G, N) or None
    -> (keep (G, N) bool in input order, order (G, N) the descending-score ranking).

    One step per kept box, all rows at once: each row keeps its best candidate left, computes that
    box's IoU with every box of the row, and drops the candidates it covers (same group only). No
    ``nonzero`` and no shrinking index lists (the book's loop); the one sync per step is the loop test.
    Time O(G·N·kept), memory O(G·N). The threshold is taken as a Python float (a numpy one or a tensor of
    one number too), compared in the IoUs' dtype.
    """
    G, N = scores.shape
    iou_threshold = float(iou_threshold)  # a (1,) float64 tensor would have made torch compare in float64
    order, ranked, ranked_groups = _rank(boxes, scores, groups)
    kept = torch.zeros(G, N, dtype=torch.bool, device=boxes.device)
    candidates = torch.ones(G, N, dtype=torch.bool, device=boxes.device)
    rows = torch.arange(G, device=boxes.device)
    while candidates.any():
        best = candidates.to(torch.uint8).argmax(dim=1)                         # (G,) first candidate = best left
        has = candidates[rows, best]                                            # (G,) rows not yet finished
        kept[rows, best] |= has
        covered = box_iou(ranked[rows, best][:, None], ranked)[:, 0] > iou_threshold   # (G, N)
        if ranked_groups is not None:
            covered &= ranked_groups == ranked_groups[rows, best][:, None]      # other classes are untouched
        candidates &= ~(covered & has[:, None])
        candidates[rows, best] = False
    return torch.zeros_like(kept).scatter_(1, order, kept), order              # back to input order


def _check_nms_inputs(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor | None = None) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"boxes (N, 4) and scores (N,) do not fit: got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    if idxs is not None and idxs.shape != scores.shape:
        raise ValueError(f"idxs must have shape (N,) like scores, got {tuple(idxs.shape)} and {tuple(scores.shape)}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (D2L §13.4.4): boxes (N, 4), scores (N,) -> kept indices (K,) long,
    by descending score.

    Repeatedly keep the highest-scoring box left and drop every box whose IoU with it exceeds
    ``iou_threshold``. One loop step per kept box, each an IoU row of N entries: O(N·K) time, O(N) memory.
    """
    _check_nms_inputs(boxes, scores)
    keep, order = _nms_keep(boxes[None], scores[None], iou_threshold)
    return order[0][keep[0].gather(0, order[0])]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category: boxes (N, 4), scores (N,), idxs (N,) category of each box -> kept (K,),
    by descending score. Boxes of different categories never suppress each other.

    torchvision shifts each category's boxes apart by an offset so that one NMS call does it all; here
    one NMS call compares categories instead (a box only covers boxes of its own category), which is
    exact for any coordinates: large offsets round away low bits of float32 coordinates.
    """
    _check_nms_inputs(boxes, scores, idxs)
    keep, order = _nms_keep(boxes[None], scores[None], iou_threshold, idxs[None])
    return order[0][keep[0].gather(0, order[0])]


def _detect(cls_probs, offset_preds, anchors, nms_threshold, pos_threshold, per_class_nms, nms_keep):
    """:func:`multibox_detection` with the NMS function given (the scratch and fast twins differ only there)."""
    anchors = _as_anchors(anchors)
    if cls_probs.dim() != 3 or cls_probs.shape[1] < 2:
        raise ValueError(f"cls_probs must have shape (B, K + 1, A) with K >= 1 object classes, got {tuple(cls_probs.shape)}")
    B, _, A = cls_probs.shape
    if anchors.shape[0] != A or offset_preds.shape != (B, A * 4):
        raise ValueError(f"cls_probs (B, K + 1, A) = {tuple(cls_probs.shape)}, offset_preds (B, A*4) = "
                         f"{tuple(offset_preds.shape)} and anchors (A, 4) = {tuple(anchors.shape)} do not fit")
    conf, class_id = cls_probs[:, 1:, :].max(dim=1)                             # (B, A) best object class
    predicted_bb = offset_inverse(anchors, offset_preds.reshape(B, A, 4))       # (B, A, 4)
    groups = class_id if per_class_nms else None
    keep, order = nms_keep(predicted_bb, conf, nms_threshold, groups)          # (B, A) each
    # the book's row order: kept boxes by descending score, then all others by anchor index
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(A, device=order.device).expand(B, A))
    key = torch.where(keep, rank, A + torch.arange(A, device=order.device))     # (B, A)
    rows = key.argsort(dim=1)                                                   # (B, A)
    class_id = torch.where(keep, class_id, -1)
    below = conf < pos_threshold                                                # not confident: background
    class_id = torch.where(below, -1, class_id)
    conf = torch.where(below, 1 - conf, conf)
    out = torch.cat((class_id[..., None].to(conf.dtype), conf[..., None], predicted_bb), dim=-1)  # (B, A, 6)
    return out.gather(1, rows[..., None].expand(B, A, 6))


def multibox_detection(cls_probs: torch.Tensor, offset_preds: torch.Tensor, anchors: torch.Tensor,
                       nms_threshold: float = 0.5, pos_threshold: float = 0.009999999,
                       per_class_nms: bool = True) -> torch.Tensor:
    """Predicted boxes from class probabilities and offsets, with NMS (D2L §13.4.4).

    cls_probs (B, K + 1, A) (row 0 background), offset_preds (B, A*4), anchors (1, A, 4) or (A, 4)
    -> (B, A, 6) rows [class_id, confidence, x1, y1, x2, y2]. Each anchor predicts its most likely
    object class; after NMS the kept boxes come first by descending confidence, then the others by
    anchor index with class_id -1. A box with confidence below ``pos_threshold`` also gets -1 and
    confidence 1 - conf (the book's background convention).

    ``per_class_nms=True`` suppresses only boxes of the same predicted class; ``False`` is the
    book's class-blind NMS. All images and classes go through one NMS pass: O(B·A) memory, one
    step per kept box of the image that keeps most.
    """
    return _detect(cls_probs, offset_preds, anchors, nms_threshold, pos_threshold, per_class_nms, _nms_keep)
