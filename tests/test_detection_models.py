"""TinySSD (D2L §13.7) and the grid detector: the book's printed shapes, anchors, the book's loss and
metrics written out as its notebook does, the grid detector's decoding and targets against loops, and
both detectors' ``detect`` (the registry-wide tests in test_model_registry.py cover gradients and twins)."""

import math

import pytest
import torch
from torch import nn

from divekit.data.batch import Detection
from divekit.models.detection.base import base_net, down_sample_blk
from divekit.models.detection.ssd import TinySSDConfig, flatten_pred
from divekit.models.detection.yolo import decode_grid
from divekit.models.registry import create_model
from divekit.ops import fast, scratch
from divekit.train.detection import GridDetectionTask, MultiboxTask, book_labels

TINY_SSD = dict(input_shape=(3, 64, 64), base_channels=(4, 4, 8), num_channels=8)


def test_the_books_block_shapes():
    # D2L §13.7.1 prints (2, 10, 10, 10), (2, 64, 32, 32), (2, 55, 20, 20), (2, 33, 10, 10) and (2, 25300)
    assert down_sample_blk(fast, 3, 10)(torch.zeros(2, 3, 20, 20)).shape == (2, 10, 10, 10)
    assert base_net(fast, 3, (16, 32, 64))(torch.zeros(2, 3, 256, 256)).shape == (2, 64, 32, 32)
    Y1 = fast.Conv2d(8, 5 * 11, kernel_size=3, padding=1)(torch.zeros(2, 8, 20, 20))
    Y2 = fast.Conv2d(16, 3 * 11, kernel_size=3, padding=1)(torch.zeros(2, 16, 10, 10))
    assert Y1.shape == (2, 55, 20, 20) and Y2.shape == (2, 33, 10, 10)
    assert torch.cat([flatten_pred(Y1), flatten_pred(Y2)], dim=1).shape == (2, 25300)


def test_tinyssd_outputs_the_books_shapes_and_anchors():
    torch.manual_seed(0)
    net = create_model("tinyssd", "fast", num_classes=1)
    anchors, cls_preds, bbox_preds = net(torch.zeros(2, 3, 256, 256))
    # the book prints (1, 5444, 4), (32, 5444, 2), (32, 21776) for a batch of 32
    assert anchors.shape == (1, 5444, 4) and cls_preds.shape == (2, 5444, 2) and bbox_preds.shape == (2, 21776)
    cfg = TinySSDConfig()
    book_sizes = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]
    expected = [fast.multibox_prior(torch.zeros(1, 1, s, s), sizes=sizes, ratios=[1, 2, 0.5])
                for s, sizes in zip((32, 16, 8, 4, 1), book_sizes)]
    torch.testing.assert_close(anchors, torch.cat(expected, dim=1))
    assert [list(s) for s in cfg.scale_sizes] == book_sizes and cfg.anchors_per_pixel == 4
    assert sum(p.numel() for p in net.parameters()) == 1010376  # the book's layer sizes
    features = net.forward_features(torch.zeros(2, 3, 256, 256))
    assert [tuple(f.shape[1:]) for f in features] == [(64, 32, 32), (128, 16, 16), (128, 8, 8), (128, 4, 4),
                                                      (128, 1, 1)]


def test_tinyssd_checks_its_config():
    with pytest.raises(ValueError, match="images must be at least 64x64"):
        create_model("tinyssd", input_shape=(3, 32, 32))
    for name, smallest in (("tinyssd", 128), ("yolo", 32)):  # a fourth base block: one more halving
        small = dict(base_channels=(4, 4, 8, 8), num_channels=8)
        with pytest.raises(ValueError, match=f"images must be at least {smallest}x{smallest} with 4 base blocks"):
            create_model(name, input_shape=(3, smallest // 2, smallest // 2), **small)
        net = create_model(name, input_shape=(3, smallest, smallest), **small).eval()
        assert net.detect(torch.rand(1, 3, smallest, smallest))[0]["boxes"].shape[1] == 4  # every map has a cell
    with pytest.raises(ValueError, match="the same number of sizes for each of the 5 scales, got 9"):
        create_model("tinyssd", sizes=(0.2,) * 9)


def test_the_multibox_loss_and_metrics_are_the_books():
    """MultiboxTask against the book's calc_loss, cls_eval and bbox_eval (D2L §13.7.2) written out."""
    torch.manual_seed(0)
    net = create_model("tinyssd", "fast", num_classes=2, **TINY_SSD)
    X = torch.rand(3, 3, 64, 64)
    labels = torch.tensor([[0, 1], [1, -1], [-1, -1]])
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.6], [0.5, 0.4, 0.9, 0.9]], [[0.2, 0.3, 0.4, 0.5], [0, 0, 0, 0]],
                          [[0, 0, 0, 0], [0, 0, 0, 0]]])
    batch = Detection(X, boxes, labels)
    task = MultiboxTask(fast.cross_entropy, fast.l1_loss, fast.multibox_target)
    out = task.step(net, batch, training=True)

    anchors, cls_preds, bbox_preds = net(X)
    bbox_labels, bbox_masks, cls_labels = fast.multibox_target(anchors, book_labels(batch))
    cls_loss, bbox_loss = nn.CrossEntropyLoss(reduction="none"), nn.L1Loss(reduction="none")
    batch_size, num_classes = cls_preds.shape[0], cls_preds.shape[2]
    cls = cls_loss(cls_preds.reshape(-1, num_classes), cls_labels.reshape(-1)).reshape(batch_size, -1).mean(dim=1)
    bbox = bbox_loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks).mean(dim=1)
    torch.testing.assert_close(out.loss, (cls + bbox).mean())
    assert out.sums["correct"] == float((cls_preds.argmax(dim=-1).type(cls_labels.dtype) == cls_labels).sum())
    torch.testing.assert_close(out.sums["abs_error"], (torch.abs((bbox_labels - bbox_preds) * bbox_masks)).sum())
    summary = task.summarize({k: float(v) for k, v in out.sums.items()})
    assert summary["class_err"] == pytest.approx(1 - out.sums["correct"] / cls_labels.numel())
    assert summary["bbox_mae"] == pytest.approx(float(out.sums["abs_error"]) / bbox_labels.numel())


@pytest.mark.parametrize("name", ["tinyssd", "yolo"])
def test_detect_returns_relative_boxes_in_eval_mode_and_the_twins_agree(name):
    torch.manual_seed(0)
    tiny = dict(TINY_SSD, num_classes=3)
    model_fast = create_model(name, "fast", **tiny)
    model_scratch = create_model(name, "scratch", **tiny)
    model_scratch.load_state_dict(model_fast.state_dict())
    X = torch.rand(2, 3, 64, 64)
    model_fast.train()
    preds = model_fast.detect(X)
    assert model_fast.training and len(preds) == 2  # its mode as it was: detect ran in eval mode inside
    for pred, other in zip(preds, model_scratch.detect(X)):
        assert set(pred) == {"boxes", "scores", "labels"} and len(pred["boxes"]) > 0
        assert pred["boxes"].shape == (len(pred["scores"]), 4)
        assert (pred["labels"] >= 0).all() and (pred["labels"] < 3).all()
        assert (pred["scores"][:-1] >= pred["scores"][1:]).all()  # best first
        torch.testing.assert_close(pred, other, rtol=1e-4, atol=1e-5)


# -- the grid detector ---------------------------------------------------------------------------------


def test_decode_grid_against_a_loop():
    torch.manual_seed(0)
    B, h, w, P, K = 2, 3, 4, 2, 3
    preds, priors = torch.randn(B, h, w, P, 5 + K, dtype=torch.float64), torch.tensor([[0.2, 0.1], [0.3, 0.5]],
                                                                                        dtype=torch.float64)
    boxes, obj, cls = decode_grid(preds, priors, scratch.box_center_to_corner)
    n = 0
    for i in range(h):
        for j in range(w):
            for a in range(P):
                t = preds[1, i, j, a]
                cx, cy = (j + 1 / (1 + math.exp(-t[0]))) / w, (i + 1 / (1 + math.exp(-t[1]))) / h
                bw, bh = priors[a, 0] * math.exp(t[2]), priors[a, 1] * math.exp(t[3])
                corners = torch.tensor([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dtype=torch.float64)
                torch.testing.assert_close(boxes[1, n], corners)
                assert obj[1, n] == t[4] and torch.equal(cls[1, n], t[5:])
                n += 1


def grid_task(ops=fast):
    return GridDetectionTask(ops.cross_entropy, ops.binary_cross_entropy_with_logits, ops.box_iou,
                             ops.box_center_to_corner)


def test_grid_targets_follow_the_yolo_rule_written_as_a_loop():
    """Each real object goes to the cell of its centre and the prior of the most similar shape; padding
    to nothing; of two objects on one prediction the later row wins."""
    priors = torch.tensor([[0.1, 0.1], [0.4, 0.2], [0.2, 0.4]])
    boxes = torch.tensor([[[0.05, 0.05, 0.15, 0.15], [0.5, 0.5, 0.9, 0.7], [0.52, 0.52, 0.88, 0.72], [0, 0, 1, 1]],
                          [[0.6, 0.1, 0.8, 0.5], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    labels = torch.tensor([[0, 1, 2, -1], [1, -1, -1, -1]])
    owner = grid_task().targets((2, 4, 4, 3), priors, boxes, labels)
    expected = torch.full((2, 4 * 4 * 3), -1)
    for b in range(2):
        for m in range(4):
            if labels[b, m] < 0:
                continue
            x1, y1, x2, y2 = boxes[b, m].tolist()
            row, col = int((y1 + y2) / 2 * 4), int((x1 + x2) / 2 * 4)
            inters = [min(x2 - x1, pw) * min(y2 - y1, ph) for pw, ph in priors.tolist()]
            ious = [i / ((x2 - x1) * (y2 - y1) + pw * ph - i) for i, (pw, ph) in zip(inters, priors.tolist())]
            expected[b, (row * 4 + col) * 3 + max(range(3), key=ious.__getitem__)] = m
    assert torch.equal(owner, expected)
    assert owner[0].tolist().count(2) == 1 and 1 not in owner[0].tolist()  # rows 1 and 2 share one prediction


def test_perfect_grid_predictions_decode_to_the_objects_and_cost_little():
    """Predictions made from the targets decode back to the true boxes, and the box and class losses vanish."""
    torch.manual_seed(0)
    h = w = 4
    priors = torch.tensor([[0.2, 0.2], [0.5, 0.3]])
    boxes = torch.tensor([[[0.1, 0.1, 0.3, 0.35], [0.4, 0.5, 0.95, 0.8]]])
    labels = torch.tensor([[1, 0]])
    task = grid_task()
    owner = task.targets((1, h, w, 2), priors, boxes, labels)[0]
    preds = torch.zeros(1, h * w * 2, 5 + 2)
    preds[..., 4] = -20.0                                                           # no object anywhere ...
    for n in (owner >= 0).nonzero().flatten().tolist():                             # ... but on the assigned ones
        m = int(owner[n])
        cell, a = divmod(n, 2)
        i, j = divmod(cell, w)
        x1, y1, x2, y2 = boxes[0, m].tolist()
        fx, fy = (x1 + x2) / 2 * w - j, (y1 + y2) / 2 * h - i
        preds[0, n, :4] = torch.tensor([math.log(fx / (1 - fx)), math.log(fy / (1 - fy)),
                                        math.log((x2 - x1) / priors[a, 0]), math.log((y2 - y1) / priors[a, 1])])
        preds[0, n, 4], preds[0, n, 5 + int(labels[0, m])] = 20.0, 20.0
    preds = preds.reshape(1, h, w, 2, 7)
    decoded, _, _ = decode_grid(preds, priors, fast.box_center_to_corner)
    torch.testing.assert_close(decoded[0, owner >= 0], boxes[0, owner[owner >= 0]])

    class Fixed(nn.Module):
        def forward(self, X):
            return preds, priors

    out = task.step(Fixed(), Detection(torch.zeros(1, 3, 64, 64), boxes, labels), training=True)
    assert out.sums["box"] < 1e-8 and out.sums["cls"] < 1e-6 and out.sums["obj"] < 1e-6
    assert out.sums["obj_correct"] == out.sums["obj_counted"] == h * w * 2


@pytest.mark.parametrize("name", ["tinyssd", "yolo"])
def test_a_detector_overfits_one_batch(name):
    torch.manual_seed(0)
    model = create_model(name, "fast", num_classes=2, **TINY_SSD)
    batch = Detection(torch.rand(4, 3, 64, 64), torch.tensor([[[0.1, 0.2, 0.5, 0.6]], [[0.3, 0.3, 0.9, 0.8]]] * 2),
                      torch.tensor([[0], [1]] * 2))
    task = (MultiboxTask(fast.cross_entropy, fast.l1_loss, fast.multibox_target) if name == "tinyssd" else grid_task())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = task.step(model, batch, training=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
