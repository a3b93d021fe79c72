"""Detection mAP: hand-computed PR curves, a transcription of the VOC devkit's loop, pycocotools'
COCOeval and torchmetrics' MeanAveragePrecision (each skipped where it does not import)."""

import contextlib
import io

import numpy as np
import pytest
import torch

from divekit.metrics import detection
from divekit.metrics.detection import coco_ap, coco_map, detections_to_preds, labels_to_targets, voc_ap, voc_map
from divekit.ops import scratch

FLOAT64 = {"dtype": torch.float64}


def pred(boxes, scores, labels):
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.as_tensor(scores, dtype=torch.float32), "labels": torch.as_tensor(labels, dtype=torch.long)}


def target(boxes, labels):
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.as_tensor(labels, dtype=torch.long)}


def random_dataset(seed, num_images=12, num_classes=3):
    """Ground truth in pixels, and detections: jittered copies of it (some twice), and false alarms."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(num_images):
        m = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 80
        gt = torch.cat((xy, xy + 5 + 20 * torch.rand(m, 2, generator=g)), dim=1)
        gt_labels = torch.randint(num_classes, (m,), generator=g)
        copies = torch.randint(0, 3, (m,), generator=g)                  # missed, found, found twice
        idx = torch.repeat_interleave(torch.arange(m), copies)
        found = gt[idx] + 4 * torch.randn(len(idx), 4, generator=g)
        n_false = int(torch.randint(0, 4, (1,), generator=g))
        xy = torch.rand(n_false, 2, generator=g) * 80
        false = torch.cat((xy, xy + 5 + 20 * torch.rand(n_false, 2, generator=g)), dim=1)
        boxes = torch.cat((found, false))
        boxes = torch.cat((boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)), dim=1)
        labels = torch.cat((gt_labels[idx], torch.randint(num_classes, (n_false,), generator=g)))
        labels[torch.rand(len(labels), generator=g) < 0.1] = num_classes  # a class with no ground truth at all
        preds.append({"boxes": boxes, "scores": torch.rand(len(boxes), generator=g), "labels": labels})
        targets.append({"boxes": gt, "labels": gt_labels})
    return preds, targets


# ---- PR curves by hand -------------------------------------------------------------------------------

def test_interpolations_by_hand():
    # detections ranked TP, FP, TP, FP, TP against 4 boxes
    recall = torch.tensor([0.25, 0.25, 0.5, 0.5, 0.75], **FLOAT64)
    precision = torch.tensor([1.0, 0.5, 2 / 3, 0.5, 0.6], **FLOAT64)
    # VOC: envelope 1 up to recall 0.25, 2/3 up to 0.5, 0.6 up to 0.75, nothing after
    torch.testing.assert_close(voc_ap(recall, precision), torch.tensor(0.25 + 0.25 * 2 / 3 + 0.25 * 0.6, **FLOAT64))
    # COCO: 26 recall thresholds 0..0.25 read 1, 25 up to 0.5 read 2/3, 25 up to 0.75 read 0.6, 25 read 0
    torch.testing.assert_close(coco_ap(recall, precision), torch.tensor((26 + 25 * 2 / 3 + 25 * 0.6) / 101, **FLOAT64))
    # no detections: AP 0 under both
    empty = torch.zeros(0, **FLOAT64)
    assert voc_ap(empty, empty) == 0 and coco_ap(empty, empty) == 0
    # the grids are numpy's linspace, bit for bit (pycocotools builds them so)
    assert np.array_equal(detection.COCO_IOU_THRESHOLDS, np.linspace(0.5, 0.95, 10))
    assert np.array_equal(detection.COCO_RECALL_THRESHOLDS, np.linspace(0.0, 1.0, 101))


def test_a_ranked_list_by_hand_under_both_protocols():
    unit = lambda x, y: [x, y, x + 10, y + 10]  # noqa: E731
    far = unit(500, 500)
    targets = [target([unit(0, 0), unit(50, 0)], [0, 0]), target([unit(0, 50), unit(50, 50)], [0, 0])]
    # by score: a hit (image 0), a duplicate of it, a hit (image 1), a false alarm, a hit (image 0)
    preds = [pred([unit(0, 0), unit(0, 0), unit(50, 0)], [0.9, 0.8, 0.5], [0, 0, 0]),
             pred([unit(0, 50), far], [0.7, 0.6], [0, 0])]
    voc = voc_map(preds, targets)
    torch.testing.assert_close(voc["map"], torch.tensor(0.25 + 0.25 * 2 / 3 + 0.25 * 0.6, **FLOAT64))
    coco = coco_map(preds, targets)
    expected = torch.tensor((26 + 25 * 2 / 3 + 25 * 0.6) / 101, **FLOAT64)  # exact boxes: the same at every threshold
    for key in ("map", "map_50", "map_75"):
        torch.testing.assert_close(coco[key], expected)
    torch.testing.assert_close(coco["mar_100"], torch.tensor(0.75, **FLOAT64))
    assert coco["classes"].tolist() == [0] and voc["ap_per_class"].tolist() == pytest.approx([voc["map"].item()])
    # perfect detection: 1 everywhere
    perfect = [pred(t["boxes"], [0.9] * len(t["labels"]), t["labels"]) for t in targets]
    assert voc_map(perfect, targets)["map"].item() == pytest.approx(1) and coco_map(perfect, targets)["map"].item() == pytest.approx(1)


def test_coco_takes_the_best_free_box_where_voc_counts_a_duplicate():
    # two overlapping boxes A and B; the second detection's best box is A (taken), then B at IoU 0.85
    targets = [target([[0, 0, 10, 10], [1, 0, 11, 10]], [0, 0])]
    preds = [pred([[0, 0, 10, 10], [0.2, 0, 10.2, 10]], [0.9, 0.8], [0, 0])]
    ious = scratch.box_iou(preds[0]["boxes"], targets[0]["boxes"])
    assert ious[1, 0] > ious[1, 1] > 0.8
    assert coco_map(preds, targets)["map_50"] == 1                      # second detection -> B
    torch.testing.assert_close(voc_map(preds, targets)["map"], torch.tensor(0.5, **FLOAT64))  # duplicate of A
    # at IoU >= 0.9 B is out of reach for COCO too
    only_90 = coco_map(preds, targets, iou_thresholds=[0.9])
    torch.testing.assert_close(only_90["map"], torch.tensor(51 / 101, **FLOAT64))
    assert "map_50" not in only_90


def test_classes_without_ground_truth_or_without_detections():
    targets = [target([[0, 0, 10, 10]], [0]), target([[0, 0, 10, 10]], [1])]
    preds = [pred([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 2]),  # class 2 has no ground truth
             pred([], [], [])]                                              # class 1 is never detected
    for result, key in ((coco_map(preds, targets), "map_per_class"), (voc_map(preds, targets), "ap_per_class")):
        assert result["classes"].tolist() == [0, 1, 2]
        assert result[key].tolist() == pytest.approx([1.0, 0.0, -1.0])    # -1: left out of the mean
        assert result["map"].item() == pytest.approx(0.5)
    # nothing detected at all: 0; no ground truth at all: -1 (pycocotools' convention)
    assert coco_map([pred([], [], [])], [target([[0, 0, 1, 1]], [3])])["map"] == 0
    assert coco_map([pred([[0, 0, 1, 1]], [0.5], [3])], [target([], [])])["map"] == -1
    assert voc_map([pred([], [], [])], [target([], [])])["map"] == -1


def test_at_most_max_detections_per_image_and_class():
    targets = [target([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 0])]
    preds = [pred([[40, 40, 50, 50], [0, 0, 10, 10], [20, 0, 30, 10]], [0.9, 0.8, 0.1], [0, 0, 0])]
    torch.testing.assert_close(coco_map(preds, targets, max_detections=2)["mar_2"], torch.tensor(0.5, **FLOAT64))
    torch.testing.assert_close(coco_map(preds, targets)["mar_100"], torch.tensor(1.0, **FLOAT64))


def test_the_books_detections_score_perfectly_and_padding_is_ignored():
    # D2L §13.4.4's kept boxes are exactly §13.4.3's dog and cat boxes
    anchors = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95], [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]])
    cls_probs = torch.tensor([[[0.0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]]])
    output = scratch.multibox_detection(cls_probs, torch.zeros(1, 16), anchors[None], per_class_nms=False)
    labels = torch.tensor([[[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88], [-1, 0, 0, 0, 0]]])
    preds, targets = detections_to_preds(output), labels_to_targets(labels)
    assert preds[0]["labels"].tolist() == [0, 1] and targets[0]["labels"].tolist() == [0, 1]
    # (1 / (1 + 2^-52) as pycocotools: it guards precision tp / (tp + fp) against 0 / 0 with numpy's eps)
    assert coco_map(preds, targets)["map"].item() == pytest.approx(1) and voc_map(preds, targets)["map"].item() == pytest.approx(1)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="2 images of predictions but 1 of targets"):
        coco_map([pred([], [], [])] * 2, [target([], [])])
    with pytest.raises(ValueError, match=r"image 0: predicted boxes \(N, 4\), scores \(N,\), labels \(N,\) do not fit"):
        voc_map([pred([[0, 0, 1, 1]], [0.5, 0.4], [0])], [target([], [])])
    with pytest.raises(ValueError, match=r"target boxes \(M, 4\) and labels \(M,\) do not fit"):
        coco_map([pred([], [], [])], [{"boxes": torch.zeros(2, 4), "labels": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"labels must have shape \(B, M, 5\)"):
        labels_to_targets(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"detections must have shape \(B, A, 6\)"):
        detections_to_preds(torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match=r"iou_threshold must be in \(0, 1\]"):
        voc_map([], [], iou_threshold=0)


# ---- the VOC devkit's loop, transcribed (VOCevaldet.m + VOCap.m): all detections of a class at once -----

def voc_devkit_reference(preds, targets, cls, threshold=0.5):
    gts = {i: [b.tolist() for b, c in zip(t["boxes"], t["labels"]) if int(c) == cls] for i, t in enumerate(targets)}
    taken = {i: [False] * len(g) for i, g in gts.items()}
    npos = sum(len(g) for g in gts.values())
    dets = [(float(s), i, b.tolist()) for i, p in enumerate(preds) for b, s, c in zip(p["boxes"], p["scores"], p["labels"])
            if int(c) == cls]
    dets.sort(key=lambda d: -d[0])  # stable, as MATLAB's sort
    tp, fp = [], []
    for _, i, bb in dets:
        ovmax, jmax = -1.0, -1
        for j, g in enumerate(gts[i]):
            iw, ih = min(bb[2], g[2]) - max(bb[0], g[0]), min(bb[3], g[3]) - max(bb[1], g[1])
            if iw > 0 and ih > 0:
                ov = iw * ih / ((bb[2] - bb[0]) * (bb[3] - bb[1]) + (g[2] - g[0]) * (g[3] - g[1]) - iw * ih)
                if ov > ovmax:
                    ovmax, jmax = ov, j
        hit = ovmax >= threshold and not taken[i][jmax]
        if hit:
            taken[i][jmax] = True
        tp.append(int(hit))
        fp.append(1 - int(hit))
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / npos, tp / np.maximum(tp + fp, 1)
    mrec, mpre = np.concatenate(([0.0], rec, [1.0])), np.concatenate(([0.0], prec, [0.0]))
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


@pytest.mark.parametrize("seed", range(3))
def test_voc_map_matches_the_devkit_loop(seed):
    preds, targets = random_dataset(seed)
    result = voc_map(preds, targets)
    for k, c in enumerate(result["classes"].tolist()):
        if any(int(x) == c for t in targets for x in t["labels"]):
            assert result["ap_per_class"][k].item() == pytest.approx(voc_devkit_reference(preds, targets, c), abs=1e-9)
        else:
            assert result["ap_per_class"][k] == -1


# ---- pycocotools and torchmetrics --------------------------------------------------------------------

def cocoeval(preds, targets):
    """pycocotools' COCOeval on the same data -> (stats, per-class AP)."""
    COCO = pytest.importorskip("pycocotools.coco").COCO
    COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval
    classes = sorted({int(c) for x in (*preds, *targets) for c in x["labels"]})
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    annotations = [{"image_id": i, "category_id": int(c), "bbox": xywh(b.tolist()),
                    "area": (b[2] - b[0]).item() * (b[3] - b[1]).item(), "iscrowd": 0}
                   for i, t in enumerate(targets) for b, c in zip(t["boxes"], t["labels"])]
    for k, a in enumerate(annotations):  # ids from 1: pycocotools reads a match with id 0 as "no match"
        a["id"] = k + 1
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(len(targets))], "annotations": annotations,
                  "categories": [{"id": c} for c in classes]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": i, "category_id": int(c), "bbox": xywh(b.tolist()), "score": float(s)}
                         for i, p in enumerate(preds) for b, s, c in zip(p["boxes"], p["scores"], p["labels"])])
        evaluation = COCOeval(gt, dt, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # (T, R, K) all areas, 100 detections
    per_class = [precision[:, :, k][precision[:, :, k] > -1].mean() if (precision[:, :, k] > -1).any() else -1.0
                 for k in range(len(classes))]
    return evaluation.stats, per_class


@pytest.mark.parametrize("seed", range(4))
def test_coco_map_matches_pycocotools(seed):
    preds, targets = random_dataset(seed)
    stats, per_class = cocoeval(preds, targets)
    ours = coco_map(preds, targets)
    for key, index in (("map", 0), ("map_50", 1), ("map_75", 2), ("mar_100", 8)):
        assert ours[key].item() == pytest.approx(stats[index], abs=1e-12), key
    assert ours["map_per_class"].tolist() == pytest.approx(per_class, abs=1e-12)


def test_coco_map_matches_pycocotools_on_the_hand_made_cases():
    targets = [target([[0, 0, 10, 10], [1, 0, 11, 10]], [0, 0]), target([[0, 0, 10, 10]], [1])]
    preds = [pred([[0, 0, 10, 10], [0.2, 0, 10.2, 10], [30, 30, 40, 40]], [0.9, 0.8, 0.95], [0, 0, 2]),
             pred([[1, 1, 10, 10]], [0.3], [1])]
    stats, per_class = cocoeval(preds, targets)
    ours = coco_map(preds, targets)
    for key, index in (("map", 0), ("map_50", 1), ("map_75", 2), ("mar_100", 8)):
        assert ours[key].item() == pytest.approx(stats[index], abs=1e-12), key
    assert ours["map_per_class"].tolist() == pytest.approx(per_class, abs=1e-12)


def test_coco_map_matches_torchmetrics():
    pytest.importorskip("torchmetrics")
    try:
        from torchmetrics.detection.mean_ap import MeanAveragePrecision
        metric = MeanAveragePrecision(iou_type="bbox", class_metrics=True)
    except (ImportError, ModuleNotFoundError, RuntimeError) as error:  # it needs torchvision and pycocotools
        pytest.skip(f"torchmetrics' MeanAveragePrecision is not usable here: {error}")
    for seed in range(2):
        preds, targets = random_dataset(seed)
        metric.reset()
        metric.update(preds, targets)
        theirs, ours = metric.compute(), coco_map(preds, targets)
        for key in ("map", "map_50", "map_75", "mar_100"):
            assert ours[key].item() == pytest.approx(theirs[key].item(), abs=1e-6), key
        assert ours["classes"].tolist() == theirs["classes"].tolist()
        assert ours["map_per_class"].tolist() == pytest.approx(theirs["map_per_class"].tolist(), abs=1e-6)


# ---- the edges: equal IoUs, and IoU exactly at the threshold ---------------------------------------------

def tie_case():
    """One class, one image. Boxes G1 [0, 10] and G2 [4, 14] (x; all 1 high); detection d1 [2, 12] overlaps
    each by 8 of a union of 12 (IoU 2/3, bit for bit equal), then d2 = G2 (IoU 1 with G2, 6/14 < 0.5 with G1)."""
    targets = [target([[0, 0, 10, 1], [4, 0, 14, 1]], [0, 0])]
    preds = [pred([[2, 0, 12, 1], [4, 0, 14, 1]], [0.9, 0.8], [0, 0])]
    return preds, targets


def test_equal_ious_coco_takes_the_last_box_voc_the_first():
    preds, targets = tie_case()
    for dtype in (torch.float32, torch.float64):
        ious = scratch.box_iou(preds[0]["boxes"].to(dtype), targets[0]["boxes"].to(dtype))
        assert ious[0, 0] == ious[0, 1] and ious[0, 0].item() == pytest.approx(2 / 3)  # a tie, bit for bit
        assert ious[1, 1] == 1 and ious[1, 0] < 0.5
    # COCO (pycocotools' evaluateImg: `if ious[dind,gind] < iou: continue` then iou, m = that IoU, gind, so a
    # later box of equal IoU replaces the earlier one): at t = 0.5, 0.55, 0.6, 0.65 d1 takes G2, the last,
    # and d2 finds G2 gone and G1 out of reach: TP, FP -> 51 of the 101 recall points read precision 1.
    # At t = 0.7 .. 0.95 (6 thresholds) d1 matches nothing, d2 takes G2: FP, TP -> 51 points read 1/2.
    # (Taking the first box, G1, would make both TPs at the four low thresholds: map_50 1.)
    coco = coco_map(preds, targets)
    torch.testing.assert_close(coco["map_50"], torch.tensor(51 / 101, **FLOAT64))
    torch.testing.assert_close(coco["map_75"], torch.tensor(25.5 / 101, **FLOAT64))
    torch.testing.assert_close(coco["map"], torch.tensor((4 * 51 + 6 * 25.5) / 1010, **FLOAT64))
    torch.testing.assert_close(coco["mar_100"], torch.tensor(0.5, **FLOAT64))
    # VOC (VOCevaldet.m: `if ov>ovmax` keeps the first of equal IoUs; voc_eval.py's np.argmax too): d1 takes
    # G1, d2 takes G2: AP 1. (Taking the last, G2, would make d2 a duplicate: AP 1/2.)
    torch.testing.assert_close(voc_map(preds, targets)["map"], torch.tensor(1.0, **FLOAT64))
    assert voc_devkit_reference(preds, targets, 0) == 1.0


def threshold_case():
    """A detection [0, 0, 1, 1] in a box [0, 0, 2, 1]: intersection 1, union 2, IoU exactly 0.5."""
    return [pred([[0, 0, 1, 1]], [0.9], [0])], [target([[0, 0, 2, 1]], [0])]


def test_iou_exactly_at_the_threshold_counts():
    preds, targets = threshold_case()
    for dtype in (torch.float32, torch.float64):
        assert scratch.box_iou(preds[0]["boxes"].to(dtype), targets[0]["boxes"].to(dtype)).item() == 0.5
    # VOC: divekit follows the MATLAB devkit, VOCevaldet.m `if ovmax>=VOCopts.minoverlap` (minoverlap 0.5):
    # a true positive, AP 1. (The Python port voc_eval.py of py-faster-rcnn / Detectron2, `if ovmax >
    # ovthresh`, would call it a false positive: AP 0.) 1 up to the 0 / 0 guard tp / (tp + fp + eps).
    assert voc_map(preds, targets)["map"].item() == pytest.approx(1.0)
    assert voc_map(preds, targets, iou_threshold=0.5)["ap_per_class"].tolist() == pytest.approx([1.0])
    assert voc_devkit_reference(preds, targets, 0) == 1.0
    # COCO: pycocotools skips a box only if its IoU < t (`if ious[dind,gind] < iou: continue`), so 0.5 matches
    # at t = 0.5 (np.linspace's first value, exactly 0.5) and at no other threshold.
    coco = coco_map(preds, targets)
    torch.testing.assert_close(coco["map_50"], torch.tensor(1.0, **FLOAT64))
    torch.testing.assert_close(coco["map_75"], torch.tensor(0.0, **FLOAT64))
    torch.testing.assert_close(coco["map"], torch.tensor(0.1, **FLOAT64))
    torch.testing.assert_close(coco["mar_100"], torch.tensor(0.1, **FLOAT64))
    torch.testing.assert_close(coco_map(preds, targets, iou_thresholds=[0.5])["map"], torch.tensor(1.0, **FLOAT64))


@pytest.mark.parametrize("case", [tie_case, threshold_case])
def test_coco_map_matches_pycocotools_on_the_edges(case):
    preds, targets = case()
    stats, per_class = cocoeval(preds, targets)
    ours = coco_map(preds, targets)
    for key, index in (("map", 0), ("map_50", 1), ("map_75", 2), ("mar_100", 8)):
        assert ours[key].item() == pytest.approx(stats[index], abs=1e-12), key
    assert ours["map_per_class"].tolist() == pytest.approx(per_class, abs=1e-12)
