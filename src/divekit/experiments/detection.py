"""Object detection (D2L §13.3-§13.7): anchor boxes and their labels, SSD on the banana set, and a
second detector family beside it.

* ``anchors`` (§13.4-§13.5, a demonstration): the book's anchors around one pixel, the labels of its
  five example anchors, NMS of its four example boxes and anchors at three scales, on a stand-in
  photograph resized to the book's 561x728 (so the anchors' coordinates are the book's).
* ``ssd`` (§13.7, a recipe): the book's TinySSD, loss, 20 epochs of SGD (lr 0.2, weight decay 5e-4,
  batch 32) on the banana-format set: the class error and box MAE the book prints, plus mAP on the
  validation images and a figure of detections. ``--dataset generated-bananas`` (the default here,
  where the book's images cannot be downloaded) draws a set in the book's format; the book's numbers
  are compared only with ``--dataset bananas``, its own set.
* ``yolo`` (a recipe beyond the book): a YOLOv2/v3-style grid detector on the multi-object set.
* ``detector`` (a demonstration beyond the book): SSD and the grid detector trained alike on the
  multi-object set, compared on COCO and VOC mAP, training and detection speed, with both detectors'
  boxes on the same held-out images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from divekit.experiments.parts import DataPart, LoadContext, Loaded, Probe, TaskPart, limited
from divekit.experiments.registry import BatchSize, DemoResult, Device, Epochs, Impl, Recipe, Seed, demo, register
from divekit.options import Checked, at_least, option, probability

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

DATASETS = ("generated-bananas", "bananas", "generated-shapes")
DATASET_LABELS = {
    "generated-bananas": "banana-format set drawn here (bananas pasted on photographs), not the book's images: "
                         "not compared with the book; --dataset bananas reads the book's set",
    "bananas": "the book's banana detection set (D2L §13.6)",
    "generated-shapes": "multi-object set drawn here: 1-4 objects of 4 classes (banana, ring, triangle, star) "
                        "pasted on photographs",
}


# -- data ------------------------------------------------------------------------------------------


@dataclass
class DetectionImages(DataPart, Checked):
    """Images with boxes in the book's banana format (D2L §13.6): the book's set, one drawn here or your
    ``--data`` (:mod:`divekit.data.detection`), uint8 on the device, in :class:`~divekit.data.batch.Detection`
    batches."""

    PROVIDES = ("input_shape", "num_classes")
    BOOK_ONLY = ("dataset", "num_train", "num_val", "data_seed")
    dataset: Literal["generated-bananas", "bananas", "generated-shapes"] = option(
        "generated-bananas", "bananas: the book's set (downloaded); generated-bananas: one banana per image drawn "
                             "here in the book's format; generated-shapes: 1-4 objects of 4 classes per image")
    num_train: int = option(1000, "training images of a generated set (the book: 1,000)", at_least(1))
    num_val: int = option(100, "validation images of a generated set (the book: 100)", at_least(1))
    image_size: int = option(256, "side of the images: a generated set is drawn at it, your --data resized to it "
                                  "(the book: 256)", at_least(32))
    data_seed: int = option(0, "seed a generated set is drawn from", at_least(0))
    flip: bool = option(False, "flip training images left to right at random, boxes with them (D2L §13.1; the "
                               "book: no)")

    def __post_init__(self):
        super().__post_init__()
        shape = (self.num_train, self.num_val, self.image_size, self.data_seed)
        if self.dataset == "bananas" and shape != (1000, 100, 256, 0):
            raise ValueError("--num-train, --num-val, --image-size and --data-seed shape a generated set; the book's "
                             "banana set is 1,000 / 100 images of 256x256 (use --limit to train on fewer)")

    @property
    def label(self) -> str:
        return DATASET_LABELS[self.dataset]

    def load(self, ctx: LoadContext) -> Loaded:
        from divekit.data.detection import load_detection
        from divekit.data.inputs import DetectionInputs
        from divekit.data.loader import TensorLoader
        from divekit.data.transforms import RandomHorizontalFlip

        users = ctx.user is not None and ctx.user.data is not None
        if users:
            from divekit.data.detection import load_user_detection

            data = load_user_detection(ctx.user.data, size=self.image_size, seed=ctx.train.seed)
        else:
            data = load_detection(self.dataset, num_train=self.num_train, num_val=self.num_val,
                                  image_size=self.image_size, seed=self.data_seed)
        train, evaluation = data.train, data.eval
        if ctx.train.limit is not None:  # your data: N drawn with the seed, as a classifier's --data
            train, evaluation = (limited(s, ctx.train.limit, ctx.train.seed if users else None)
                                 for s in (train, evaluation))
        batch_size, device = ctx.train.batch_size, ctx.device
        return Loaded(
            name=data.name,
            train=TensorLoader(train, batch_size, shuffle=True, seed=ctx.train.seed, device=device,
                               transform=RandomHorizontalFlip() if self.flip else None),
            eval=TensorLoader(evaluation, batch_size, device=device),
            eval_name=data.eval_name, model_fields={"input_shape": data.input_shape, "num_classes": data.num_classes},
            info=data, inputs=DetectionInputs(*data.input_shape, classes=data.classes),
        )


# -- tasks -----------------------------------------------------------------------------------------


@dataclass
class MultiboxLoss(TaskPart, Checked):
    """SSD's loss (D2L §13.7.2): cross-entropy of the anchors' classes plus L1 of the masked offsets."""

    iou_threshold: float = option(0.5, "an anchor is labelled with a box it overlaps by at least this IoU "
                                       "(D2L §13.4.3)", probability)

    def build(self, ops, data):
        from divekit.train.detection import MultiboxTask

        return MultiboxTask(ops.cross_entropy, ops.l1_loss, ops.multibox_target, self.iou_threshold)


@dataclass
class YoloLoss(TaskPart, Checked):
    """The grid detector's loss (YOLOv2/v3): box, objectness and class terms (:mod:`divekit.train.detection`)."""

    ignore_threshold: float = option(0.5, "predictions without an object whose box overlaps one by more than this "
                                          "IoU are left out of the objectness loss", probability)

    def build(self, ops, data):
        from divekit.train.detection import GridDetectionTask

        return GridDetectionTask(ops.cross_entropy, ops.binary_cross_entropy_with_logits, ops.box_iou,
                                 ops.box_center_to_corner, self.ignore_threshold)


# -- evaluation and the probe ------------------------------------------------------------------------


def evaluate_detector(model, images, device, batch_size: int = 32) -> tuple[list[dict], dict]:
    """Detections of ``model`` on a Detection split (its ``detect``, batch by batch) and how good and
    fast they are: COCO ``map`` (mAP@[.5:.95]), ``map_50``, ``map_75``, VOC ``voc_map`` (at IoU 0.5,
    all-point) and ``detect_images_per_s`` (images through ``detect`` per second, NMS included)."""
    from divekit.data.loader import TensorLoader
    from divekit.metrics.detection import coco_map, voc_map

    preds, targets, seconds = [], [], 0.0
    for batch in TensorLoader(images, batch_size, device=device):
        start = time.perf_counter()
        detections = model.detect(batch.X)
        seconds += time.perf_counter() - start
        preds += [{name: t.cpu() for name, t in d.items()} for d in detections]
        targets += [{"boxes": boxes[labels >= 0].cpu(), "labels": labels[labels >= 0].cpu()}
                    for boxes, labels in zip(batch.boxes, batch.labels)]
    coco, voc = coco_map(preds, targets), voc_map(preds, targets)
    return preds, {"map": float(coco["map"]), "map_50": float(coco["map_50"]), "map_75": float(coco["map_75"]),
                   "voc_map": float(voc["map"]), "detect_images_per_s": len(preds) / max(seconds, 1e-9)}


def _targets(split, count: int) -> list[dict]:
    return [{"boxes": b[l >= 0], "labels": l[l >= 0]} for b, l in zip(split.boxes[:count], split.labels[:count])]


@dataclass
class Detections(Probe, Checked):
    """mAP on the held-out images and a figure of detections with their scores (D2L §13.7.3)."""

    display_threshold: float = option(0.9, "draw detections scoring at least this (the book: 0.9)", probability)
    num_images: int = option(8, "held-out images drawn with their detections", at_least(1))

    def run(self, model, data, device):
        from divekit.viz.detection import show_detections

        split = data.eval.data  # the held-out images as loaded (a --limit applies), on the device
        preds, results = evaluate_detector(model, split, device, data.eval.batch_size)
        count = min(self.num_images, len(preds))
        figure = show_detections(split.X[:count], preds[:count], data.info.classes, threshold=self.display_threshold,
                                 targets=_targets(split, count),
                                 title=f"detections scoring at least {self.display_threshold} (dashed: the true boxes)")
        return results, {"detections": figure}


# -- §13.7 SSD and the grid detector ----------------------------------------------------------------

TINY_DETECTOR = dict(num_train=16, num_val=8, image_size=64, batch_size=8, base_channels=(4, 4, 8), num_channels=8)

register(Recipe(
    name="ssd", section="13.7", title="Single shot multibox detection (TinySSD)",
    data=DetectionImages(), model="tinyssd", task=MultiboxLoss(),
    train=dict(epochs=20, lr=0.2, batch_size=32, weight_decay=5e-4),
    probes=(Detections(),), tiny=TINY_DETECTOR, user_data_kind="detection",
))

register(Recipe(
    name="yolo", section="13.7", title="A grid detector in the YOLO line (beyond the book)",
    data=DetectionImages(dataset="generated-shapes"), model="yolo", task=YoloLoss(),
    train=dict(epochs=20, lr=1e-3, batch_size=32, weight_decay=5e-4, optimizer="adam"),
    probes=(Detections(display_threshold=0.5),), tiny=TINY_DETECTOR, user_data_kind="detection",
))


# -- §13.4-§13.5 anchor boxes ----------------------------------------------------------------------

BOOK_IMAGE_SIZE = (561, 728)  # the book's catdog.jpg, (height, width): its anchors' coordinates need it
BOOK_SIZES, BOOK_RATIOS = (0.75, 0.5, 0.25), (1.0, 2.0, 0.5)
BOOK_GROUND_TRUTH = ((0, 0.1, 0.08, 0.52, 0.92), (1, 0.55, 0.2, 0.9, 0.88))  # [class, x1, y1, x2, y2], dog and cat
BOOK_ANCHORS = ((0, 0.1, 0.2, 0.3), (0.15, 0.2, 0.4, 0.4), (0.63, 0.05, 0.88, 0.98), (0.66, 0.45, 0.8, 0.8),
                (0.57, 0.3, 0.92, 0.9))
BOOK_NMS_BOXES = ((0.1, 0.08, 0.52, 0.92), (0.08, 0.2, 0.56, 0.95), (0.15, 0.3, 0.62, 0.91), (0.55, 0.2, 0.9, 0.88))
BOOK_NMS_PROBS = ((0.0, 0.0, 0.0, 0.0), (0.9, 0.8, 0.7, 0.1), (0.1, 0.2, 0.3, 0.9))  # background, dog, cat


def _photo_axes(fig: Figure, image: torch.Tensor, position: int = 111, title: str = ""):
    ax = fig.add_subplot(position)
    ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_autoscale_on(False)  # anchors reaching past the image do not widen the picture
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return ax


@demo("anchors", section="13.4-13.5", title="Anchor boxes: generation, labels, NMS and multiscale anchors",
      dataset="the book's example boxes on a stand-in photograph (scikit-image's chelsea, resized to the book's "
              "561x728 catdog image)")
def anchors(impl: Impl = "fast",
            nms_threshold: Annotated[float, "IoU above which NMS drops the weaker box (D2L §13.4.4)",
                                     probability] = 0.5,
            per_class_nms: Annotated[bool, "NMS within each class (the book's is class-blind)"] = False) -> DemoResult:
    """The book's anchors, their labels and non-maximum suppression on its example boxes (D2L §13.4), and anchors
    at three scales (D2L §13.5); the numbers are the book's where its image size matters."""
    import torch
    import torch.nn.functional as F
    from matplotlib.figure import Figure

    from divekit.data.photos import load_photos
    from divekit.ops import get_ops
    from divekit.viz.detection import show_bboxes

    ops = get_ops(impl)
    h, w = BOOK_IMAGE_SIZE
    photo = load_photos(("chelsea.png",))[0]
    image = F.interpolate(photo[None].float(), size=(h, w), mode="bilinear", antialias=True)[0].round().clamp(0, 255)
    image = image.to(torch.uint8)                                                              # (3, h, w)
    pixels = torch.tensor([w, h, w, h], dtype=torch.float32)
    # §13.4.1: anchors of every pixel, those of pixel (250, 250)
    all_anchors = ops.multibox_prior(torch.zeros(1, 3, h, w), sizes=BOOK_SIZES, ratios=BOOK_RATIOS)   # (1, h*w*5, 4)
    around = all_anchors.reshape(h, w, 5, 4)[250, 250]                                       # (5, 4)
    fig_anchors = Figure(figsize=(5, 4), layout="constrained")
    show_bboxes(_photo_axes(fig_anchors, image, title="anchors centred on pixel (250, 250)"), around * pixels,
                ["s=0.75, r=1", "s=0.5, r=1", "s=0.25, r=1", "s=0.75, r=2", "s=0.75, r=0.5"])
    # §13.4.3: labelling five anchors with the two ground-truth boxes
    ground_truth, example_anchors = torch.tensor(BOOK_GROUND_TRUTH), torch.tensor(BOOK_ANCHORS)
    bbox_offset, bbox_mask, class_labels = ops.multibox_target(example_anchors[None], ground_truth[None])
    fig_labels = Figure(figsize=(5, 4), layout="constrained")
    ax = _photo_axes(fig_labels, image, title="the book's ground truth (black) and anchors 0-4")
    show_bboxes(ax, ground_truth[:, 1:] * pixels, ["dog", "cat"], "k")
    show_bboxes(ax, example_anchors * pixels, ["0", "1", "2", "3", "4"])
    # §13.4.4: non-maximum suppression of four predicted boxes
    probs, boxes = torch.tensor(BOOK_NMS_PROBS), torch.tensor(BOOK_NMS_BOXES)
    output = ops.multibox_detection(probs[None], torch.zeros(1, 16), boxes[None], nms_threshold=nms_threshold,
                                    per_class_nms=per_class_nms)[0]                           # (4, 6)
    fig_nms = Figure(figsize=(9, 4), layout="constrained")
    names = ("dog", "cat")
    show_bboxes(_photo_axes(fig_nms, image, 121, "before NMS"), boxes * pixels,
                [f"{names[int(c)]}={float(p):.1f}" for p, c in zip(*probs[1:].max(dim=0))])
    ax = _photo_axes(fig_nms, image, 122, f"after NMS (IoU threshold {nms_threshold})")
    for row in output[output[:, 0] >= 0]:
        show_bboxes(ax, row[None, 2:] * pixels, f"{names[int(row[0])]}={float(row[1]):.1f}")
    # §13.5.1: anchors of 4x4, 2x2 and 1x1 feature maps cover small, medium and large objects
    fig_scales = Figure(figsize=(12, 3.5), layout="constrained")
    for k, (side, size) in enumerate(((4, 0.15), (2, 0.4), (1, 0.8))):
        scale_anchors = ops.multibox_prior(torch.zeros(1, 10, side, side), sizes=(size,), ratios=BOOK_RATIOS)
        show_bboxes(_photo_axes(fig_scales, image, 131 + k, f"{side}x{side} feature map, size {size}"),
                    scale_anchors[0] * pixels)
    results = {"num_anchors": all_anchors.shape[1], "anchor_250_250": around[0].tolist(),
               "class_labels": class_labels[0].tolist(), "bbox_mask": bbox_mask[0].tolist(),
               "bbox_offset": bbox_offset[0].tolist(), "nms_output": output.tolist()}
    figures = {"anchors": fig_anchors, "anchor_labels": fig_labels, "nms": fig_nms, "multiscale_anchors": fig_scales}
    return DemoResult(results, figures)


# -- beyond the book: SSD against a grid detector -----------------------------------------------------


@demo("detector", section="13.7", title="SSD against a grid detector in the YOLO line, several objects per image",
      dataset=DATASET_LABELS["generated-shapes"],
      tiny=dict(epochs=1, num_train=16, num_val=8, image_size=64, batch_size=8, num_images=2))
def detector(epochs: Epochs = 20, batch_size: BatchSize = 32,
             num_train: Annotated[int, "training images of the generated set", at_least(1)] = 1000,
             num_val: Annotated[int, "validation images of the generated set", at_least(1)] = 100,
             image_size: Annotated[int, "side of the generated images", at_least(64)] = 256,
             data_seed: Annotated[int, "seed the generated set is drawn from", at_least(0)] = 0,
             display_threshold: Annotated[float, "draw detections scoring at least this", probability] = 0.5,
             num_images: Annotated[int, "held-out images drawn with each detector's boxes", at_least(1)] = 8,
             impl: Impl = "fast", seed: Seed = 0, device: Device = "auto") -> DemoResult:
    """TinySSD (the ``ssd`` recipe's settings) and the grid detector (the ``yolo`` recipe's) trained for the same
    epochs on the same multi-object set, compared on mAP over its validation images and on speed."""
    from divekit.experiments.runner import prepare_training
    from divekit.viz.detection import show_detections

    common = dict(dataset="generated-shapes", num_train=num_train, num_val=num_val, image_size=image_size,
                  data_seed=data_seed, epochs=epochs, batch_size=batch_size, impl=impl, seed=seed, device=device)
    results, rows, figures = {}, [], {}
    for name in ("ssd", "yolo"):
        training = prepare_training(name, **common)
        history = training.fit()
        split, model = training.setup.data.eval.data, training.setup.model
        preds, metrics = evaluate_detector(model, split, training.device, batch_size)
        seconds = sum(r["seconds"] for r in history)
        row = {"detector": name, "model": training.recipe.model, "train_images_per_s": len(history) *
               training.setup.data.train.num_examples / seconds, "train_seconds": seconds,
               "train_loss": history[-1]["train_loss"], **metrics}
        rows.append(row)
        results.update({f"{name}_{key}": value for key, value in row.items() if key not in ("detector", "model")})
        count = min(num_images, len(preds))
        figures[f"{name}_detections"] = show_detections(
            split.X[:count], preds[:count], training.setup.data.info.classes, threshold=display_threshold,
            targets=_targets(split, count), title=f"{training.recipe.title}: scores >= {display_threshold}, mAP "
                                                  f"{metrics['map']:.3f} (dashed: the true boxes)")
    return DemoResult(results, figures, rows)
