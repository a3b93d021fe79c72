"""Boxes, anchors, anchor labels and NMS (D2L §13.3-§13.4): the book's printed numbers, brute-force
Python loops that follow the book's rules, both twins, and torchvision where it imports."""

import inspect
import math
import warnings

import numpy as np
import pytest
import torch

from divekit.ops import fast, scratch
from divekit.ops.fast import boxes as fast_boxes
from divekit.ops.scratch import boxes as scratch_boxes

TWINS = [scratch, fast]
FLOAT64 = {"dtype": torch.float64}


def import_torchvision():
    """torchvision, or a skip: it may be missing, or built for another torch (then importing raises)."""
    try:
        import torchvision
        import torchvision.ops  # noqa: F401
    except (ImportError, RuntimeError, OSError) as error:
        pytest.skip(f"torchvision is not usable here: {error}")
    return torchvision


def random_boxes(n, generator, scale=1.0, dtype=torch.float32, min_size=0.0):
    """n boxes (x1, y1, x2, y2) inside [0, scale]^2 with sides of at least ``min_size``."""
    corners = torch.rand(n, 2, 2, generator=generator, dtype=dtype) * scale   # two random points per box
    low, high = corners.min(dim=1).values, corners.max(dim=1).values
    return torch.cat((low, torch.maximum(high, low + min_size)), dim=1)


def clustered_boxes(n, generator, clusters=4):
    """Boxes around a few centres, as a detector predicts them: many overlaps, chains of suppression."""
    centres = torch.rand(clusters, 2, generator=generator)
    c = centres[torch.randint(clusters, (n,), generator=generator)] + 0.05 * torch.randn(n, 2, generator=generator)
    wh = 0.1 + 0.2 * torch.rand(n, 2, generator=generator)
    return torch.cat((c - wh / 2, c + wh / 2), dim=1)


# ---- brute-force references: plain Python, one pair or one box at a time ---------------------------

def iou_pair(a, b):
    a, b = [float(v) for v in a], [float(v) for v in b]
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def assign_reference(gt_boxes, anchors, threshold=0.5):
    """The book's assignment (§13.4.3) on the real boxes only, one pair at a time."""
    A, M = len(anchors), len(gt_boxes)
    X = [[iou_pair(anchors[i], gt_boxes[j]) for j in range(M)] for i in range(A)]
    result = [-1] * A
    for i in range(A):
        if M and max(X[i]) >= threshold:
            result[i] = X[i].index(max(X[i]))  # first best box
    rows, cols = set(range(A)), set(range(M))
    for _ in range(min(A, M)):
        best, bi, bj = -1.0, None, None
        for i in sorted(rows):  # the first largest entry in row-major order, like the flat argmax
            for j in sorted(cols):
                if X[i][j] > best:
                    best, bi, bj = X[i][j], i, j
        result[bi] = bj
        rows.discard(bi)
        cols.discard(bj)
    return result


def nms_reference(boxes, scores, threshold, idxs=None):
    """Greedy NMS, boxes ranked by descending score then index; a box covers those with IoU > threshold."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep, removed = [], set()
    for pos, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            same = idxs is None or int(idxs[i]) == int(idxs[j])
            if same and iou_pair(boxes[i], boxes[j]) > threshold:
                removed.add(j)
    return keep


def detection_reference(cls_prob, offsets, anchors, nms_threshold=0.5, pos_threshold=0.009999999, per_class=False):
    """The book's multibox_detection for one image: cls_prob (K + 1, A), offsets (A, 4), anchors (A, 4)."""
    conf, class_id = cls_prob[1:].max(dim=0)
    boxes = scratch.offset_inverse(anchors, offsets)
    keep = nms_reference(boxes, conf, nms_threshold, class_id if per_class else None)
    rest = [i for i in range(len(conf)) if i not in set(keep)]
    rows = []
    for i in keep + rest:
        c, p = (int(class_id[i]) if i in keep else -1), float(conf[i])
        if p < pos_threshold:
            c, p = -1, 1 - p
        rows.append([c, p, *boxes[i].tolist()])
    return torch.tensor(rows, dtype=boxes.dtype)


# ---- the API ---------------------------------------------------------------------------------------

def test_box_twins_export_the_same_names_and_signatures():
    assert scratch_boxes.__all__ == fast_boxes.__all__
    for name in scratch_boxes.__all__:
        assert getattr(scratch, name) is getattr(scratch_boxes, name) and getattr(fast, name) is getattr(fast_boxes, name)
        assert inspect.signature(getattr(scratch_boxes, name)) == inspect.signature(getattr(fast_boxes, name)), name


# ---- §13.3 bounding boxes --------------------------------------------------------------------------

def test_corner_center_round_trip_on_the_books_boxes_and_random_batches():
    # D2L §13.3: the dog and the cat in catdog.jpg
    dog_bbox, cat_bbox = [60.0, 45.0, 378.0, 516.0], [400.0, 112.0, 655.0, 493.0]
    boxes = torch.tensor((dog_bbox, cat_bbox))
    centers = scratch.box_corner_to_center(boxes)
    torch.testing.assert_close(centers, torch.tensor([[219.0, 280.5, 318.0, 471.0], [527.5, 302.5, 255.0, 381.0]]))
    assert torch.equal(scratch.box_center_to_corner(centers), boxes)
    # any leading shape, both directions
    g = torch.Generator().manual_seed(0)
    batch = random_boxes(24, g, scale=100.0, dtype=torch.float64).reshape(2, 3, 4, 4)
    torch.testing.assert_close(scratch.box_center_to_corner(scratch.box_corner_to_center(batch)), batch)
    torch.testing.assert_close(scratch.box_corner_to_center(scratch.box_center_to_corner(batch)), batch)
    assert fast.box_corner_to_center is scratch.box_corner_to_center


def test_box_iou_matches_a_pairwise_loop_including_empty_and_disjoint_boxes():
    g = torch.Generator().manual_seed(1)
    a = random_boxes(9, g, dtype=torch.float64)
    b = torch.cat((random_boxes(6, g, dtype=torch.float64),
                   torch.tensor([[0.2, 0.2, 0.2, 0.7],      # zero width
                                 [0.5, 0.5, 0.5, 0.5],      # a point
                                 [0.9, 0.1, 0.3, 0.4],      # x2 < x1: empty
                                 [2.0, 2.0, 3.0, 3.0]], **FLOAT64)))  # far away
    expected = torch.tensor([[iou_pair(x, y) for y in b] for x in a], **FLOAT64)
    for ops in TWINS:
        torch.testing.assert_close(ops.box_iou(a, b), expected)
    # two empty boxes: 0, not 0/0
    empty = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    assert scratch.box_iou(empty, empty).item() == 0.0
    # a box with itself: 1; IoU is symmetric
    torch.testing.assert_close(scratch.box_iou(a, a).diagonal(), torch.ones(9, **FLOAT64))
    torch.testing.assert_close(scratch.box_iou(a, b), scratch.box_iou(b, a).T)
    # the book's anchor §13.4.2 wording: IoU of two unit squares shifted by half a side is 1/3
    torch.testing.assert_close(scratch.box_iou(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[0.5, 0, 1.5, 1]])),
                               torch.tensor([[1 / 3]]))


def test_box_iou_broadcasts_over_a_batch_and_has_finite_gradients():
    g = torch.Generator().manual_seed(2)
    anchors = random_boxes(7, g, dtype=torch.float64)
    gt = random_boxes(3 * 4, g, dtype=torch.float64).reshape(3, 4, 4)
    gt[1, 2] = torch.tensor([0.3, 0.3, 0.3, 0.3])  # an empty box in the batch
    batched = scratch.box_iou(anchors[None], gt)  # (B, A, M)
    assert batched.shape == (3, 7, 4)
    for i in range(3):
        torch.testing.assert_close(batched[i], scratch.box_iou(anchors, gt[i]))
    a = anchors.clone().requires_grad_()
    e = torch.tensor([[0.5, 0.5, 0.5, 0.5]], **FLOAT64, requires_grad=True)
    scratch.box_iou(torch.cat((a, e)), torch.cat((gt[0], e.detach()))).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(e.grad).all()
    assert torch.autograd.gradcheck(lambda x: scratch.box_iou(x, gt[0]), (anchors.clone().requires_grad_(),))


def test_fast_box_iou_in_blocks_equals_the_scratch_formula(monkeypatch):
    """The fast twin computes rows in blocks into reused buffers: small blocks (3 rows of 7 boxes,
    a last block of 2) over a batch, empty boxes, integer boxes and every error message."""
    monkeypatch.setattr(fast_boxes, "IOU_BLOCK", 21)
    g = torch.Generator().manual_seed(4)
    anchors = random_boxes(11, g, dtype=torch.float64)
    anchors[4] = torch.tensor([0.3, 0.3, 0.3, 0.3], **FLOAT64)              # empty: IoU 0 with everything
    gt = random_boxes(3 * 7, g, dtype=torch.float64).reshape(3, 7, 4)
    gt[1, 2] = torch.tensor([0.3, 0.3, 0.3, 0.3], **FLOAT64)
    batched = fast.box_iou(anchors[None], gt)                                # (3, 11, 7)
    assert batched.shape == (3, 11, 7) and batched.dtype == torch.float64
    torch.testing.assert_close(batched, scratch.box_iou(anchors[None], gt), rtol=0, atol=0)
    assert batched[1, 4, 2].item() == 0.0
    pixels = torch.randint(0, 50, (5, 4), generator=g).sort(dim=1).values   # x1 <= y1 <= x2 <= y2: boxes
    torch.testing.assert_close(fast.box_iou(pixels, pixels), scratch.box_iou(pixels, pixels))
    # where a gradient is wanted the scratch formula runs, so the graph is there
    a = anchors.clone().requires_grad_()
    fast.box_iou(a, gt[0]).sum().backward()
    torch.testing.assert_close(a.grad, torch.autograd.grad(scratch.box_iou(a, gt[0]).sum(), a)[0])
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(\.\.\., M, 4\), got \(4,\)"):
        fast.box_iou(torch.zeros(2, 4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(\.\.\., N, 4\), got \(2, 5\)"):
        fast.box_iou(torch.zeros(2, 5), torch.zeros(3, 4))
    assert fast.box_iou(torch.zeros(0, 4), torch.zeros(3, 4)).shape == (0, 3)


def test_box_iou_and_conversions_match_torchvision():
    tv = import_torchvision()
    g = torch.Generator().manual_seed(3)
    a, b = random_boxes(20, g, scale=50.0, min_size=1.0), random_boxes(15, g, scale=50.0, min_size=1.0)
    torch.testing.assert_close(scratch.box_iou(a, b), tv.ops.box_iou(a, b))
    torch.testing.assert_close(scratch.box_corner_to_center(a), tv.ops.box_convert(a, "xyxy", "cxcywh"))
    torch.testing.assert_close(scratch.box_area(a), tv.ops.box_area(a))


# ---- §13.4.1 anchor boxes --------------------------------------------------------------------------

def prior_pixel(i, j, h, w, s, r):
    """The anchor (s, r) centred on pixel (i, j) of an h x w map: h*s*sqrt(r) by h*s/sqrt(r) pixels."""
    cx, cy = (j + 0.5) / w, (i + 0.5) / h
    half_w, half_h = s * math.sqrt(r) * h / w / 2, s / math.sqrt(r) / 2
    return [cx - half_w, cy - half_h, cx + half_w, cy + half_h]


def prior_reference(h, w, sizes, ratios):
    """Anchors (h, w, P, 4) pixel by pixel, in the book's (size, ratio) order."""
    pairs = [(s, ratios[0]) for s in sizes] + [(sizes[0], r) for r in ratios[1:]]
    return torch.tensor([[[prior_pixel(i, j, h, w, s, r) for s, r in pairs] for j in range(w)] for i in range(h)], **FLOAT64)


@pytest.mark.parametrize("ops", TWINS, ids=["scratch", "fast"])
def test_multibox_prior_reproduces_the_books_anchors(ops):
    # D2L §13.4.1: catdog.jpg is 561 x 728; 5 anchors per pixel, 2042040 in all
    h, w = 561, 728
    Y = ops.multibox_prior(torch.zeros(1, 3, h, w), sizes=[0.75, 0.5, 0.25], ratios=[1, 2, 0.5])
    assert Y.shape == (1, 2042040, 4)
    boxes = Y.reshape(h, w, 5, 4)
    # the book prints tensor([0.06, 0.07, 0.63, 0.82]) for the first anchor centred on (250, 250)
    assert torch.round(boxes[250, 250, 0, :], decimals=2).tolist() == pytest.approx([0.06, 0.07, 0.63, 0.82])
    # all five anchors at that pixel, from the formula one by one
    ref = [prior_pixel(250, 250, h, w, s, r) for s, r in [(0.75, 1), (0.5, 1), (0.25, 1), (0.75, 2), (0.75, 0.5)]]
    torch.testing.assert_close(boxes[250, 250].double(), torch.tensor(ref, **FLOAT64), atol=1e-6, rtol=0)


def test_multibox_prior_order_and_shapes_from_the_book():
    sizes, ratios = [0.3, 0.2, 0.1, 0.05], [1.0, 2.0, 0.5]
    Y = scratch.multibox_prior(torch.zeros(2, 8, 3, 5, **FLOAT64), sizes, ratios)
    assert Y.shape == (1, 3 * 5 * 6, 4) and Y.dtype == torch.float64
    torch.testing.assert_close(Y.reshape(3, 5, 6, 4), prior_reference(3, 5, sizes, ratios))
    # §13.5: a 4 x 4 feature map, one size, three ratios -> 48 anchors
    assert scratch.multibox_prior(torch.zeros(1, 10, 4, 4), sizes=[0.15], ratios=[1, 2, 0.5]).shape == (1, 48, 4)
    # §13.7: SSD's five scales on a 256 x 256 input give 5444 anchors
    ssd_sizes = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]
    total = sum(scratch.multibox_prior(torch.zeros(1, 3, n, n), s, [1, 2, 0.5]).shape[1]
                for n, s in zip([32, 16, 8, 4, 1], ssd_sizes))
    assert total == 5444


def test_anchor_pixel_shape_follows_the_books_code_not_its_text():
    # pixel width / height = r and, for r = 1, a square of side h * s: what the code does and what
    # the printed numbers need. The text's w*s*sqrt(r) by h*s/sqrt(r) would give [-0.03, ...] at (250, 250).
    h, w = 40, 100
    Y = scratch.multibox_prior(torch.zeros(1, 1, h, w, **FLOAT64), sizes=[0.5, 0.25], ratios=[1, 4, 0.25])
    c = scratch.box_corner_to_center(Y.reshape(h, w, 4, 4)[7, 9])  # (P, 4) cx, cy, width, height
    px_w, px_h = c[:, 2] * w, c[:, 3] * h
    torch.testing.assert_close(px_w / px_h, torch.tensor([1, 1, 4, 0.25], **FLOAT64))
    torch.testing.assert_close(px_w * px_h, torch.tensor([(h * 0.5) ** 2, (h * 0.25) ** 2, (h * 0.5) ** 2, (h * 0.5) ** 2], **FLOAT64))


# ---- §13.4.3 labelling anchors ---------------------------------------------------------------------

BOOK_GROUND_TRUTH = torch.tensor([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]])
BOOK_ANCHORS = torch.tensor([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                             [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]])


@pytest.mark.parametrize("ops", TWINS, ids=["scratch", "fast"])
def test_multibox_target_reproduces_the_books_labels(ops):
    bbox_offset, bbox_mask, class_labels = ops.multibox_target(BOOK_ANCHORS[None], BOOK_GROUND_TRUTH[None])
    assert class_labels.tolist() == [[0, 1, 2, 0, 2]] and class_labels.dtype == torch.long
    assert bbox_mask.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]]
    printed = torch.tensor([[-0.00e+00, -0.00e+00, -0.00e+00, -0.00e+00, 1.40e+00, 1.00e+01, 2.59e+00, 7.18e+00,
                             -1.20e+00, 2.69e-01, 1.68e+00, -1.57e+00, -0.00e+00, -0.00e+00, -0.00e+00, -0.00e+00,
                             -5.71e-01, -1.00e+00, 4.17e-06, 6.26e-01]])
    torch.testing.assert_close(bbox_offset, printed, rtol=5e-3, atol=1e-7)  # the book prints 3 digits
    assert ops.assign_anchor_to_bbox(BOOK_GROUND_TRUTH[:, 1:], BOOK_ANCHORS).tolist() == [-1, 0, 1, -1, 1]


def random_labels(B, M, generator, num_classes=3, min_size=0.05):
    """(B, M, 5) labels in float64, a random number of real boxes per image (0 included), the rest padding (-1)."""
    labels = torch.full((B, M, 5), -1.0, **FLOAT64)
    counts = torch.randint(0, M + 1, (B,), generator=generator)
    counts[0] = M  # one full image ...
    counts[-1] = 0  # ... and one without boxes
    for b in range(B):
        n = int(counts[b])
        labels[b, :n, 0] = torch.randint(num_classes, (n,), generator=generator).float()
        labels[b, :n, 1:] = random_boxes(n, generator, dtype=torch.float64, min_size=min_size)
    return labels


@pytest.mark.parametrize("seed", range(4))
def test_assignment_and_targets_match_the_books_loop_on_padded_batches(seed):
    # float64 throughout: a regular grid of anchors inside a big box ties exactly, and the reference
    # (Python floats, same operations in the same order) must break ties on the same bits
    g = torch.Generator().manual_seed(seed)
    anchors = scratch.multibox_prior(torch.zeros(1, 1, 4, 5, **FLOAT64), sizes=[0.4, 0.2], ratios=[1, 2, 0.5])[0]  # (60, 4)
    labels = random_labels(5, 6, g)
    # padding rows hold junk: they must never matter
    labels[1:, -1, 1:] = torch.where(labels[1:, -1, :1] < 0, 0.0, labels[1:, -1, 1:])
    bbox_offset, bbox_mask, class_labels = scratch.multibox_target(anchors, labels)
    for b in range(5):
        real = labels[b][labels[b, :, 0] >= 0]
        expected = assign_reference(real[:, 1:], anchors)
        got = scratch.assign_anchor_to_bbox(labels[b, :, 1:], anchors, valid=labels[b, :, 0] >= 0)
        assert got.tolist() == expected
        want_class = [0 if j < 0 else int(real[j, 0]) + 1 for j in expected]
        assert class_labels[b].tolist() == want_class
        for i, j in enumerate(expected):
            mask = bbox_mask[b, 4 * i:4 * i + 4]
            if j < 0:
                assert mask.tolist() == [0, 0, 0, 0] and bbox_offset[b, 4 * i:4 * i + 4].abs().sum() == 0
            else:
                assert mask.tolist() == [1, 1, 1, 1]
                torch.testing.assert_close(bbox_offset[b, 4 * i:4 * i + 4], scratch.offset_boxes(anchors[i], real[j, 1:]))
    # every real box has an anchor of its own
    assert ((class_labels > 0).sum(dim=1) >= (labels[..., 0] >= 0).sum(dim=1)).all()
    # the fast twin is the same function
    for x, y in zip(fast.multibox_target(anchors[None], labels), (bbox_offset, bbox_mask, class_labels)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
def test_an_anchor_at_exactly_the_threshold_is_assigned_as_the_books_ge(ops):
    """The book assigns an anchor whose best IoU is >= the threshold: IoU exactly 0.5 counts."""
    ground_truth = torch.tensor([[0.0, 0.0, 0.5, 0.25]])  # area 1/8, every number exact in binary
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.25],      # the box itself: IoU 1, the greedy pass takes it
                            [0.0, 0.0, 0.25, 0.25],     # half of it: IoU exactly 1/2
                            [0.0, 0.0, 0.25, 0.1875]])  # less than half: IoU 3/8
    assert ops.box_iou(anchors, ground_truth)[:, 0].tolist() == [1.0, 0.5, 0.375]
    assert ops.assign_anchor_to_bbox(ground_truth, anchors, iou_threshold=0.5).tolist() == [0, 0, -1]


def test_padding_is_never_assigned_and_images_without_boxes_are_background():
    anchors = BOOK_ANCHORS
    # the book's code assigns padding rows: with a zero-size padding box at (0, 0), its greedy pass
    # hands anchor 0 to the padding (class -1 + 1 = 0, yet mask 1 and offsets to a zero-size box)
    padded = torch.cat((BOOK_GROUND_TRUTH, torch.tensor([[-1.0, 0, 0, 0, 0]]))).unsqueeze(0)
    offset, mask, classes = scratch.multibox_target(anchors, padded)
    assert classes.tolist() == [[0, 1, 2, 0, 2]]
    assert mask.reshape(5, 4)[:, 0].tolist() == [0, 1, 1, 0, 1]
    torch.testing.assert_close(offset, scratch.multibox_target(anchors, BOOK_GROUND_TRUTH[None])[0])
    # junk in padding rows (NaN, inverted boxes) changes nothing either
    junk = torch.cat((BOOK_GROUND_TRUTH, torch.tensor([[-1.0, math.nan, 5, -3, math.nan], [-1.0, 0.1, 0.08, 0.52, 0.92]])))
    for x, y in zip(scratch.multibox_target(anchors, junk[None]), (offset, mask, classes)):
        assert torch.equal(x, y)
    # an image of padding only: every anchor is background, nothing NaN
    offset, mask, classes = scratch.multibox_target(anchors, torch.full((2, 3, 5), -1.0))
    assert classes.abs().sum() == 0 and mask.abs().sum() == 0 and offset.abs().sum() == 0
    # no label rows at all
    offset, mask, classes = scratch.multibox_target(anchors, torch.zeros(2, 0, 5))
    assert classes.shape == (2, 5) and classes.abs().sum() == 0 and offset.shape == (2, 20)


def test_more_objects_than_anchors_gives_each_anchor_one_box():
    anchors = BOOK_ANCHORS[:2]
    g = torch.Generator().manual_seed(5)
    gt = random_boxes(6, g, min_size=0.05)
    got = scratch.assign_anchor_to_bbox(gt, anchors)
    assert got.tolist() == assign_reference(gt, anchors)
    assert (got >= 0).all() and len(set(got.tolist())) == 2


# ---- offsets ---------------------------------------------------------------------------------------

def test_offsets_round_trip_and_are_differentiable():
    g = torch.Generator().manual_seed(6)
    anchors = random_boxes(30, g, dtype=torch.float64, min_size=0.05).reshape(5, 6, 4)
    boxes = random_boxes(30, g, dtype=torch.float64, min_size=0.05).reshape(5, 6, 4)
    for ops in TWINS:
        offsets = ops.offset_boxes(anchors, boxes, eps=0.0)
        torch.testing.assert_close(ops.offset_inverse(anchors, offsets), boxes)
    # the book's formula for one pair, written out
    a, b = anchors[0, 0], boxes[0, 0]
    (xa, ya, wa, ha), (xb, yb, wb, hb) = scratch.box_corner_to_center(a).tolist(), scratch.box_corner_to_center(b).tolist()
    expected = [(xb - xa) / wa / 0.1, (yb - ya) / ha / 0.1, math.log(1e-6 + wb / wa) / 0.2, math.log(1e-6 + hb / ha) / 0.2]
    torch.testing.assert_close(scratch.offset_boxes(a, b), torch.tensor(expected, **FLOAT64))
    # gradients: to the anchors and boxes through offset_boxes, to the predictions through offset_inverse
    assert torch.autograd.gradcheck(scratch.offset_boxes, (anchors[0].clone().requires_grad_(), boxes[0].clone().requires_grad_()))
    preds = torch.randn(6, 4, **FLOAT64, generator=g)
    assert torch.autograd.gradcheck(scratch.offset_inverse, (anchors[0].clone().requires_grad_(), preds.requires_grad_()))


def test_offset_inverse_clamps_the_size_before_exp():
    anchors = torch.tensor([[0.4, 0.4, 0.6, 0.5]])
    huge = torch.tensor([[0.0, 0.0, 1e4, -1e4]])
    box = scratch.box_corner_to_center(scratch.offset_inverse(anchors, huge))[0]
    assert torch.isfinite(box).all()
    torch.testing.assert_close(box[2], torch.tensor(0.2 * 1000 / 16))  # grows at most 62.5 times
    assert 0 <= box[3] < 1e-30                                        # shrinking is not clamped


# ---- §13.4.4 non-maximum suppression ---------------------------------------------------------------

NMS_IMPLS = {
    "scratch": lambda b, s, t, g=None: scratch_boxes._nms_keep(b, s, t, g),
    "fast-all-pairs": lambda b, s, t, g=None: fast_boxes._nms_keep_all_pairs(b, s, t, g),
    "fast-blocks": lambda b, s, t, g=None: fast_boxes._nms_keep_blocks(b, s, t, g),
    "fast": lambda b, s, t, g=None: fast_boxes._nms_keep(b, s, t, g),
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_the_greedy_loop(seed, threshold):
    g = torch.Generator().manual_seed(seed)
    boxes = clustered_boxes(60, g)
    scores = torch.rand(60, generator=g)
    expected = nms_reference(boxes, scores, threshold)
    for ops in TWINS:
        assert ops.nms(boxes, scores, threshold).tolist() == expected
    for name, keep_fn in NMS_IMPLS.items():
        keep, order = keep_fn(boxes[None], scores[None], threshold)
        assert sorted(torch.nonzero(keep[0]).flatten().tolist()) == sorted(expected), name


@pytest.mark.parametrize("N", [40, 150])  # one block and several (BLOCK = 64)
def test_nms_of_a_batch_of_rows_and_both_fast_paths(N):
    g = torch.Generator().manual_seed(11)
    G = 3
    boxes = torch.stack([clustered_boxes(N, g) for _ in range(G)])
    scores, groups = torch.rand(G, N, generator=g), torch.randint(3, (G, N), generator=g)
    results = {name: keep_fn(boxes, scores, 0.45, groups)[0] for name, keep_fn in NMS_IMPLS.items()}
    for row in range(G):
        expected = sorted(nms_reference(boxes[row], scores[row], 0.45, groups[row]))
        for name, keep in results.items():
            assert torch.nonzero(keep[row]).flatten().tolist() == expected, name
    # on the CPU the fast twin goes block by block; it agrees with the all-pairs form and the loop
    big = clustered_boxes(1100, g)
    big_scores = torch.rand(1100, generator=g)
    keep, order = fast_boxes._nms_keep_all_pairs(big[None], big_scores[None], 0.5)
    assert fast.nms(big, big_scores, 0.5).tolist() == order[0][keep[0][order[0]]].tolist()
    assert fast.nms(big, big_scores, 0.5).tolist() == scratch.nms(big, big_scores, 0.5).tolist()


def test_the_fast_ranking_is_the_stable_descending_sort_ties_and_signed_zeros_included():
    g = torch.Generator().manual_seed(5)
    N = 3001
    scores = (torch.rand(3, N, generator=g) * 8).round() / 4 - 1  # few distinct values: many ties
    scores[:, ::17] = -0.0
    scores[:, 1::29] = 0.0
    scores[0, :4] = torch.tensor([float("inf"), float("-inf"), float("nan"), -1e-40])  # a subnormal too
    # NaNs with the sign bit set (x86's inf - inf) and with payloads: all above +inf, ties by position
    scores[1, 5:8] = torch.tensor([-0x400000, 0x7FC00001, -0x3FFFFF], dtype=torch.int32).view(torch.float32)
    assert scores[1, 5:8].isnan().all() and torch.signbit(scores[1, 5])
    expected = scores.argsort(dim=1, descending=True, stable=True)

    def by_keys(scores):  # the rank keys' own order, as the blocks and multibox detection read it
        return torch.from_numpy(np.sort(fast_boxes._rank_keys(scores), axis=1) & fast_boxes.POSITION_MASK)

    assert torch.equal(by_keys(scores), expected)
    assert torch.equal(by_keys(scores.double()), expected)  # other dtypes: torch's ranks in the keys
    small = scores[:, :100]
    assert torch.equal(by_keys(small), small.argsort(dim=1, descending=True, stable=True))


def test_a_blocks_best_keys_are_found_through_a_sample_or_in_full():
    k, n = fast_boxes.BLOCK, fast_boxes.SAMPLE_FROM + 700
    rng = np.random.default_rng(3)
    step = n // (4 * k)
    smallest_at_sample = np.arange(n, dtype=np.int64) + 10 * n                  # the sample's keys the smallest:
    smallest_at_sample[::step] = np.arange(len(smallest_at_sample[::step]))       # fewer than k below its 8th
    for keys in (rng.permutation(n).astype(np.int64) * 7 + 3, np.arange(n, dtype=np.int64),
                 np.arange(n, 0, -1, dtype=np.int64), smallest_at_sample, rng.permutation(200).astype(np.int64)):
        for kth in (1, k):
            assert fast_boxes._kth_smallest(keys, kth) == np.sort(keys)[kth - 1]


@pytest.mark.parametrize("scores_by", ["random", "ascending", "descending"])
def test_fast_nms_of_more_boxes_than_a_sample_equals_the_loop(scores_by):
    # from SAMPLE_FROM candidates a block's best are found through a sample; scores sorted by position
    # (a detector's output often is) put every sampled key at one end
    g = torch.Generator().manual_seed(4)
    N = fast_boxes.SAMPLE_FROM + 300
    boxes = clustered_boxes(N, g, clusters=30)
    scores = {"random": torch.rand(N, generator=g), "ascending": torch.linspace(0, 1, N),
              "descending": torch.linspace(1, 0, N)}[scores_by]
    groups = torch.randint(3, (N,), generator=g)
    assert fast.nms(boxes, scores, 0.5).tolist() == scratch.nms(boxes, scores, 0.5).tolist()
    assert fast.batched_nms(boxes, scores, groups, 0.3).tolist() == scratch.batched_nms(boxes, scores, groups, 0.3).tolist()
    # small boxes apart: nearly all kept, so the later blocks pick their best through samples too
    corners = torch.rand(N, 2, generator=g)
    sparse = torch.cat((corners, corners + 0.002), dim=1)
    assert fast.nms(sparse, scores, 0.5).tolist() == scratch.nms(sparse, scores, 0.5).tolist()


def test_fast_nms_of_thousands_of_boxes_with_tied_scores_equals_the_loop():
    g = torch.Generator().manual_seed(12)
    boxes = clustered_boxes(3000, g)
    scores = (torch.rand(3000, generator=g) * 50).round() / 50  # ties: the order among them is by position
    expected = scratch.nms(boxes, scores, 0.5).tolist()
    assert fast.nms(boxes, scores, 0.5).tolist() == expected
    assert expected == nms_reference(boxes, scores, 0.5)


def test_fixed_point_nms_falls_back_to_the_host_scan_on_long_chains(monkeypatch):
    # a row of boxes, each overlapping only its neighbours (IoU 1/3 < ... > 0.3): keep alternates,
    # and the fixed point needs one round per link of the chain
    host_scan = fast_boxes._host_scan
    n = 50
    boxes = torch.tensor([[0.5 * i, 0.0, 0.5 * i + 1.0, 1.0] for i in range(n)])
    scores = torch.linspace(1.0, 0.5, n)
    expected = list(range(0, n, 2))
    assert nms_reference(boxes, scores, 0.3) == expected
    scans = []
    monkeypatch.setattr(fast_boxes, "_host_scan", lambda covers: scans.append(1) or host_scan(covers))
    keep, _ = fast_boxes._nms_keep_all_pairs(boxes[None], scores[None], 0.3)  # 50 rounds > 32: host scan
    assert torch.nonzero(keep[0]).flatten().tolist() == expected and len(scans) == 1
    monkeypatch.setattr(fast_boxes, "MAX_FIXED_POINT_ROUNDS", 100)           # a converged fixed point
    keep, _ = fast_boxes._nms_keep_all_pairs(boxes[None], scores[None], 0.3)
    assert torch.nonzero(keep[0]).flatten().tolist() == expected and len(scans) == 1


def test_block_nms_resolves_chains_longer_than_a_block():
    # a row of boxes, each overlapping only its neighbours: the greedy result alternates, each block's
    # fixed point takes one round per link (64 in a full block), and the chain crosses three blocks
    n = 2 * fast_boxes.BLOCK + 22
    boxes = torch.tensor([[0.5 * i, 0.0, 0.5 * i + 1.0, 1.0] for i in range(n)])
    scores = torch.linspace(1.0, 0.5, n)
    expected = list(range(0, n, 2))
    assert nms_reference(boxes, scores, 0.3) == expected
    keep, _ = fast_boxes._nms_keep_blocks(boxes[None], scores[None], 0.3)
    assert torch.nonzero(keep[0]).flatten().tolist() == expected
    covers = torch.ones(5, 5, dtype=torch.bool).triu(1).numpy()  # every box covers all after it
    assert fast_boxes._greedy_in_block(covers).tolist() == [True, False, False, False, False]


def test_a_large_iou_matrix_is_a_plain_tensor_from_numpys_memory():
    # on the CPU the output comes from numpy (huge pages: fewer page faults); it behaves as any tensor
    g = torch.Generator().manual_seed(9)
    a, b = random_boxes(700, g, dtype=torch.float64), random_boxes(900, g, dtype=torch.float64)
    iou = fast.box_iou(a, b)
    assert iou.dtype == torch.float64 and iou.shape == (700, 900) and iou.is_contiguous()
    assert torch.equal(iou, scratch.box_iou(a, b))
    iou[0, 0] = 2.0                                                            # writable, its own memory
    assert fast.box_iou(a, b)[0, 0] != 2.0 and torch.equal(fast.box_iou(a[:3], b[:5]), scratch.box_iou(a[:3], b[:5]))


def test_the_iou_block_gives_the_same_numbers_on_numpy_and_torch():
    """NMS tests its blocks with numpy, box_iou computes with torch: one formula, equal to the bit."""
    g = torch.Generator().manual_seed(8)
    a, b = random_boxes(9, g), random_boxes(13, g)
    a[2] = b[5] = torch.tensor([0.4, 0.4, 0.4, 0.4])                      # empty boxes: IoU 0, not NaN
    coords_a, coords_b = a.T.contiguous()[:, :, None], b.T.contiguous()[:, None, :]
    areas_a, areas_b = scratch.box_area(a)[:, None], scratch.box_area(b)[None, :]
    on_torch = fast_boxes._iou_block(coords_a, coords_b, areas_a, areas_b, *(torch.empty(9, 13) for _ in range(4)))
    with np.errstate(all="ignore"):                                           # as NMS calls it: 0 / 0 is quiet
        on_numpy, with_nan = (fast_boxes._iou_block(*(x.numpy() for x in (coords_a, coords_b, areas_a, areas_b)),
                                                    *(np.empty((9, 13), dtype=np.float32) for _ in range(4)),
                                                    exact=exact) for exact in (True, False))
    assert on_numpy.dtype == on_torch.numpy().dtype and (on_numpy == on_torch.numpy()).all()
    assert torch.equal(on_torch, scratch.box_iou(a, b)) and on_numpy[2].sum() == 0 == on_numpy[:, 5].sum()
    # NMS's form for thresholds >= 0: the same number wherever the IoU is positive; elsewhere <= 0 (boxes
    # apart in y: the height is not clamped) or NaN (the two empty boxes: union 0)
    positive = on_numpy > 0
    assert positive.any() and ((on_numpy == 0) == ~positive).all()
    assert (with_nan[positive] == on_numpy[positive]).all()
    assert (with_nan[~positive] < 0).any() and np.isnan(with_nan[2, 5])
    assert ((with_nan[~positive] <= 0) | np.isnan(with_nan[~positive])).all()
    for threshold in (0.0, 1e-9, 0.3, 0.5):
        assert ((with_nan > threshold) == (on_numpy > threshold)).all()


def test_fast_nms_in_half_precision_and_bfloat16_equals_the_scratch_loop():
    g = torch.Generator().manual_seed(13)
    boxes, scores = clustered_boxes(300, g), torch.rand(300, generator=g)
    for dtype in (torch.float16, torch.bfloat16):  # both compared in float32, as box_iou computes them
        expected = scratch.nms(boxes.to(dtype), scores, 0.5).tolist()
        assert fast.nms(boxes.to(dtype), scores, 0.5).tolist() == expected, dtype
    grad_boxes = boxes.clone().requires_grad_()                              # predictions straight from a model
    assert fast.nms(grad_boxes, scores, 0.5).tolist() == scratch.nms(boxes, scores, 0.5).tolist()


@pytest.mark.parametrize("ops", TWINS, ids=["scratch", "fast"])
def test_16_bit_boxes_are_measured_in_float32_as_torchvision_does(ops):
    # a 300 x 300 box's area, 90,000, is inf in float16 (largest 65,504): IoU 0, and NMS kept duplicates
    boxes = torch.tensor([[0.0, 0, 300, 300], [0, 0, 300, 300], [10, 10, 20, 20], [10, 10, 20, 20]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    for dtype in (torch.float16, torch.bfloat16):
        assert ops.box_area(boxes.to(dtype)).dtype == torch.float32
        iou = ops.box_iou(boxes[:2].to(dtype), boxes[:2].to(dtype))
        assert iou.dtype == torch.float32 and torch.equal(iou, torch.ones(2, 2))
        assert ops.nms(boxes.to(dtype), scores, 0.5).tolist() == [0, 2], dtype
    pixels, halves = torch.tensor([[0, 0, 3, 3]]), torch.tensor([[1.0, 1, 4, 4]], dtype=torch.float16)
    iou = ops.box_iou(pixels, halves)  # integer x float16: float32, 4 / 14
    assert iou.dtype == torch.float32 and torch.allclose(iou, torch.tensor([[4 / 14]]))


@pytest.mark.parametrize("threshold", [-0.5, 0.0, 0.5])
def test_fast_nms_treats_a_nan_box_as_scratch_does(threshold):
    # IoU with a NaN box is 0 in both twins' box_iou, so a negative threshold suppresses it too
    boxes = torch.tensor([[0.0, 0, 1, 1], [0, 0, float("nan"), 1], [0, 0, 1, 1], [5, 5, 6, 6]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert torch.equal(fast.box_iou(boxes, boxes).nan_to_num(-1), scratch.box_iou(boxes, boxes).nan_to_num(-1))
    assert fast.nms(boxes, scores, threshold).tolist() == scratch.nms(boxes, scores, threshold).tolist()


@pytest.mark.parametrize("threshold", [-0.1, 0.0, 0.3, 0.7])
def test_fast_nms_of_thousands_with_empty_infinite_and_nan_boxes_equals_the_loop(threshold):
    # numpy's rank keys and the blocks' IoU test, which leaves 0 / 0 as NaN where the threshold is >= 0
    # (no NaN is above it) and gives 0 below, as the scratch formula
    g = torch.Generator().manual_seed(21)
    N = 2148
    boxes = clustered_boxes(N, g)
    boxes[::50] = boxes[::50, :2].repeat(1, 2)                                  # empty: x1 = x2, y1 = y2
    boxes[7::97, 2] = float("inf")
    boxes[11::89, 0] = float("-inf")
    boxes[13::101, 1] = float("nan")
    scores = torch.rand(N, generator=g)
    assert fast.nms(boxes, scores, threshold).tolist() == scratch.nms(boxes, scores, threshold).tolist()


@pytest.mark.parametrize("ops", TWINS, ids=["scratch", "fast"])
def test_nms_edge_cases(ops):
    empty = ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.long
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    # equal scores: the lower index ranks first; identical boxes: only the first survives
    assert ops.nms(box.repeat(4, 1), torch.ones(4), 0.5).tolist() == [0]
    # IoU exactly at the threshold is kept (only IoU > threshold suppresses)
    pair = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 1.5, 1.0]])  # IoU 1/3
    assert ops.nms(pair, torch.tensor([0.6, 0.9]), 1 / 3).tolist() == [1, 0]
    assert ops.nms(pair, torch.tensor([0.6, 0.9]), 0.33).tolist() == [1]
    # empty boxes overlap nothing and are kept
    assert ops.nms(torch.tensor([[0.5, 0.5, 0.5, 0.5]] * 2), torch.tensor([0.2, 0.1]), 0.5).tolist() == [0, 1]
    # batched: nothing crosses categories
    four = torch.cat((pair, pair))
    kept = ops.batched_nms(four, torch.tensor([0.6, 0.9, 0.5, 0.8]), torch.tensor([0, 0, 1, 1]), 0.2)
    assert kept.tolist() == [1, 3]


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_is_nms_per_category(seed):
    g = torch.Generator().manual_seed(20 + seed)
    boxes = clustered_boxes(80, g, clusters=3) * 300  # pixel coordinates
    scores, idxs = torch.rand(80, generator=g), torch.randint(4, (80,), generator=g)
    per_category = []
    for c in range(4):
        members = torch.nonzero(idxs == c).flatten()
        per_category += [int(members[i]) for i in nms_reference(boxes[members], scores[members], 0.5)]
    expected = sorted(per_category, key=lambda i: -float(scores[i]))
    for ops in TWINS:
        assert ops.batched_nms(boxes, scores, idxs, 0.5).tolist() == expected


def test_nms_matches_torchvision():
    tv = import_torchvision()
    g = torch.Generator().manual_seed(30)
    boxes = clustered_boxes(300, g) * 100
    scores, idxs = torch.rand(300, generator=g), torch.randint(5, (300,), generator=g)
    for ops in TWINS:
        assert ops.nms(boxes, scores, 0.5).tolist() == tv.ops.nms(boxes, scores, 0.5).tolist()
        assert ops.batched_nms(boxes, scores, idxs, 0.5).tolist() == tv.ops.batched_nms(boxes, scores, idxs, 0.5).tolist()


# ---- §13.4.4 multibox detection --------------------------------------------------------------------

BOOK_DET_ANCHORS = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95],
                                 [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]])
BOOK_CLS_PROBS = torch.tensor([[0.0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])


@pytest.mark.parametrize("per_class_nms", [False, True])
@pytest.mark.parametrize("ops", TWINS, ids=["scratch", "fast"])
def test_multibox_detection_reproduces_the_books_output(ops, per_class_nms):
    output = ops.multibox_detection(BOOK_CLS_PROBS[None], torch.zeros(1, 16), BOOK_DET_ANCHORS[None],
                                    nms_threshold=0.5, per_class_nms=per_class_nms)
    printed = torch.tensor([[[0.00, 0.90, 0.10, 0.08, 0.52, 0.92],
                             [1.00, 0.90, 0.55, 0.20, 0.90, 0.88],
                             [-1.00, 0.80, 0.08, 0.20, 0.56, 0.95],
                             [-1.00, 0.70, 0.15, 0.30, 0.62, 0.91]]])
    torch.testing.assert_close(output, printed)
    assert scratch.nms(BOOK_DET_ANCHORS, BOOK_CLS_PROBS[1:].max(dim=0).values, 0.5).tolist() == [0, 3]


def test_per_class_nms_keeps_overlapping_objects_of_different_classes():
    # a dog box and a cat box overlapping at IoU 0.6: the book's class-blind NMS deletes the cat
    anchors = torch.tensor([[0.1, 0.1, 0.6, 0.6], [0.1, 0.1 + 0.5 / 8, 0.6, 0.6 + 0.5 / 8]])
    assert scratch.box_iou(anchors[:1], anchors[1:]).item() > 0.5
    cls_probs = torch.tensor([[[0.05, 0.1], [0.9, 0.1], [0.05, 0.8]]])  # background, dog, cat
    for ops in TWINS:
        aware = ops.multibox_detection(cls_probs, torch.zeros(1, 8), anchors)
        blind = ops.multibox_detection(cls_probs, torch.zeros(1, 8), anchors, per_class_nms=False)
        assert aware[0, :, 0].tolist() == [0, 1] and blind[0, :, 0].tolist() == [0, -1]


@pytest.mark.parametrize("per_class_nms", [False, True])
def test_multibox_detection_on_a_batch_matches_the_books_loop(per_class_nms):
    g = torch.Generator().manual_seed(40)
    B, K, A = 3, 3, 45
    anchors = clustered_boxes(A, g, clusters=3)
    cls_probs = torch.softmax(3 * torch.randn(B, K + 1, A, generator=g), dim=1)
    cls_probs[1, 1:, :5] = 0.001  # some anchors below pos_threshold
    offsets = 0.5 * torch.randn(B, A * 4, generator=g)
    for ops in TWINS:
        out = ops.multibox_detection(cls_probs, offsets, anchors[None], 0.4, per_class_nms=per_class_nms)
        assert out.shape == (B, A, 6)
        for b in range(B):
            ref = detection_reference(cls_probs[b], offsets[b].reshape(A, 4), anchors, 0.4, per_class=per_class_nms)
            torch.testing.assert_close(out[b], ref)


# ---- errors ----------------------------------------------------------------------------------------

def test_bad_shapes_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"boxes must have shape \(\.\.\., 4\)"):
        scratch.box_corner_to_center(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(\.\.\., M, 4\), got \(4,\)"):
        scratch.box_iou(torch.zeros(2, 4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"expected a feature map \(B, C, h, w\)"):
        scratch.multibox_prior(torch.zeros(3, 4, 4), [0.5], [1])
    with pytest.raises(ValueError, match="sizes and ratios must be positive"):
        scratch.multibox_prior(torch.zeros(1, 3, 4, 4), [0.5], [0, 1])
    with pytest.raises(ValueError, match="at least one value"):
        scratch.multibox_prior(torch.zeros(1, 3, 4, 4), [], [1])
    with pytest.raises(ValueError, match=r"labels must have shape \(B, M, 5\)"):
        scratch.multibox_target(BOOK_ANCHORS, BOOK_GROUND_TRUTH)
    with pytest.raises(ValueError, match=r"anchors must have shape \(1, A, 4\) or \(A, 4\)"):
        scratch.multibox_target(BOOK_ANCHORS[None, None], BOOK_GROUND_TRUTH[None])
    with pytest.raises(ValueError, match=r"valid must have shape \(B, M\)"):
        scratch.assign_anchor_to_bbox(BOOK_GROUND_TRUTH[None, :, 1:], BOOK_ANCHORS, valid=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"boxes \(N, 4\) and scores \(N,\) do not fit"):
        fast.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match=r"idxs must have shape \(N,\)"):
        scratch.batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="do not fit"):
        scratch.multibox_detection(BOOK_CLS_PROBS[None], torch.zeros(1, 12), BOOK_DET_ANCHORS[None])
    with pytest.raises(ValueError, match="K >= 1 object classes"):
        fast.multibox_detection(BOOK_CLS_PROBS[None, :1], torch.zeros(1, 16), BOOK_DET_ANCHORS[None])


def test_fast_nms_takes_thresholds_and_categories_of_any_type_as_the_loop_does():
    # IoU exactly float32(0.1): a float64 threshold of 0.1 must be compared as torch does, in the IoUs' float32
    pair, scores = torch.tensor([[0.0, 0, 10, 1], [0, 0, 1, 1]]), torch.tensor([0.9, 0.8])
    for threshold in (0.1, np.float64(0.1), np.float32(0.1), torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.1),
                      torch.tensor([0.1], dtype=torch.float64)):  # a tensor of one number: compared as 0.1 too
        assert fast.nms(pair, scores, threshold).tolist() == scratch.nms(pair, scores, threshold).tolist() == [0, 1]
    g = torch.Generator().manual_seed(13)
    N = 2058
    boxes, scores = clustered_boxes(N, g), torch.rand(N, generator=g)
    idxs = torch.randint(3, (N,), generator=g)
    expected = scratch.batched_nms(boxes, scores, idxs, 0.5).tolist()
    for categories in (idxs.to(torch.bfloat16), idxs.float().requires_grad_()):  # numpy has no bfloat16
        assert fast.batched_nms(boxes, scores, categories, 0.5).tolist() == expected
    signalling = torch.tensor([0x7F800001], dtype=torch.int32).view(torch.float32)
    scores[[5, 7]] = signalling
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                          # numpy's ranking says nothing
        assert fast.nms(boxes, scores, 0.5).tolist() == scratch.nms(boxes, scores, 0.5).tolist()
