"""A single-stage grid detector in the YOLO line (Redmon and Farhadi, YOLOv2 2017 and YOLOv3 2018), a
second detector family beside the book's SSD (D2L §13.7; the book names YOLO in §13.7.5's exercises).

Letters: B batch size, C channels, h x w the grid, P box priors per cell, N = h·w·P predictions,
K object classes.

The image is cut into an h x w grid (one cell per 16 pixels: TinySSD's base network, one more
down-sampling block, a 3x3 and a 1x1 convolution). Each cell holds P priors, box sizes (p_w, p_h)
relative to the image, and predicts for each: offsets (t_x, t_y, t_w, t_h), an objectness logit t_o
and K class logits. The box is

    centre = ((j + σ(t_x)) / w, (i + σ(t_y)) / h),  size = (p_w e^{t_w}, p_h e^{t_h})

for cell (i, j): the centre stays inside its cell, the size scales the prior. Its score for class k
is σ(t_o) · softmax(class logits)_k. Where SSD tiles anchors of five scales over five feature maps
and labels them by IoU, here an object belongs to exactly one prediction: the prior, among the P of
the cell that holds its centre, closest to it in shape (the task, :mod:`divekit.train.detection`).

``forward_features`` gives the grid's feature map, ``forward_head`` the raw predictions;
:func:`decode_grid` turns them into boxes, objectness and class logits for both the loss and ``detect``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from divekit.models.blocks import inference
from divekit.models.detection.base import Detector, DetectorConfig, base_net, down_sample_blk
from divekit.models.registry import Example, register_model
from divekit.ops import Ops
from divekit.options import at_least, each_at_least, option, probability

MAX_LOG_SCALE = math.log(1000.0 / 16)  # t_w, t_h clamped before exp, as ops.offset_inverse does
PRE_NMS_TOP = 1000  # candidates per image that go into NMS, the best by score (torchvision's topk_candidates)


class GridOutput(NamedTuple):
    """The grid detector's raw predictions preds (B, h, w, P, 5 + K), [t_x, t_y, t_w, t_h, t_o, class
    logits] per prior, and the priors (P, 2) (width, height) relative to the image."""

    preds: torch.Tensor
    priors: torch.Tensor


@dataclass
class GridDetectorConfig(DetectorConfig):
    HALVINGS_AFTER_BASE = 1  # one grid cell per 16 pixels with the book's three base blocks

    priors: tuple[float, ...] = option((0.12, 0.12, 0.2, 0.2, 0.3, 0.3, 0.26, 0.14, 0.14, 0.26),
                                       "box priors per cell as (width, height) pairs relative to the image",
                                       each_at_least(1e-3))
    score_threshold: float = option(0.01, "detect: drop boxes scoring below this before NMS", probability)
    nms_threshold: float = option(0.5, "detect: NMS IoU threshold, per class", probability)
    max_detections: int = option(100, "detect: boxes kept per image after NMS", at_least(1))

    def __post_init__(self):
        super().__post_init__()
        if len(self.priors) % 2:
            raise ValueError(f"--priors must hold (width, height) pairs, got {len(self.priors)} numbers")


def decode_grid(preds: torch.Tensor, priors: torch.Tensor, box_center_to_corner) -> tuple[torch.Tensor, ...]:
    """preds (B, h, w, P, 5 + K), priors (P, 2) -> boxes (B, N, 4) relative corners, objectness logits
    (B, N), class logits (B, N, K), with N = h·w·P in the order cell by cell (row-major), prior by prior."""
    B, h, w, P, _ = preds.shape
    i = torch.arange(h, device=preds.device, dtype=preds.dtype)[None, :, None, None]    # (1, h, 1, 1) rows
    j = torch.arange(w, device=preds.device, dtype=preds.dtype)[None, None, :, None]    # (1, 1, w, 1) columns
    cx = (j + torch.sigmoid(preds[..., 0])) / w                                          # (B, h, w, P)
    cy = (i + torch.sigmoid(preds[..., 1])) / h                                          # (B, h, w, P)
    size = priors * torch.exp(preds[..., 2:4].clamp(max=MAX_LOG_SCALE))                  # (B, h, w, P, 2)
    boxes = box_center_to_corner(torch.cat((torch.stack((cx, cy), dim=-1), size), dim=-1))  # (B, h, w, P, 4)
    return boxes.reshape(B, -1, 4), preds[..., 4].reshape(B, -1), preds[..., 5:].reshape(B, h * w * P, -1)


class GridDetector(Detector):
    """The grid detector (see the module docstring), built from ``ops``."""

    def __init__(self, cfg: GridDetectorConfig, ops: Ops):
        super().__init__()
        self.cfg = cfg
        P, C = len(cfg.priors) // 2, cfg.num_channels
        self.backbone = ops.Sequential(base_net(ops, cfg.input_shape[0], cfg.base_channels),
                                       down_sample_blk(ops, cfg.base_channels[-1], C))
        self.head = ops.Sequential(ops.Conv2d(C, C, kernel_size=3, padding=1), ops.BatchNorm2d(C), ops.ReLU(),
                                   ops.Conv2d(C, P * (5 + cfg.num_classes), kernel_size=1))
        self.register_buffer("priors", torch.tensor(cfg.priors).reshape(P, 2), persistent=False)
        self.box_center_to_corner = ops.box_center_to_corner   # the twin's functions, plain attributes
        self.batched_nms, self.softmax = ops.batched_nms, ops.softmax

    def forward_features(self, X: torch.Tensor) -> torch.Tensor:
        """X (B, C_in, H, W) -> the grid's feature map (B, C, H / 16, W / 16)."""
        return self.backbone(X)

    def forward_head(self, features: torch.Tensor) -> GridOutput:
        preds = self.head(features)                                                     # (B, P*(5+K), h, w)
        B, _, h, w = preds.shape
        P = self.priors.shape[0]
        preds = preds.permute(0, 2, 3, 1).reshape(B, h, w, P, -1)                       # (B, h, w, P, 5+K)
        return GridOutput(preds, self.priors)

    def forward(self, X: torch.Tensor) -> GridOutput:
        return self.forward_head(self.forward_features(X))

    @inference
    def detect(self, X: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per image: the (prediction, class) pairs scoring σ(t_o)·p_k above ``score_threshold`` (the
        best ``PRE_NMS_TOP``), non-maximum suppression within each class, the ``max_detections`` best kept."""
        preds, priors = self(X)
        boxes, objectness, class_logits = decode_grid(preds.float(), priors, self.box_center_to_corner)
        scores = torch.sigmoid(objectness)[..., None] * self.softmax(class_logits)        # (B, N, K)
        K = scores.shape[-1]
        results = []
        for image_boxes, image_scores in zip(boxes, scores):  # the kept boxes differ in number per image
            flat = image_scores.flatten()                                                # (N*K,) box-major
            top_scores, top = flat.topk(min(PRE_NMS_TOP, len(flat)))                     # by descending score
            candidates = top[top_scores > self.cfg.score_threshold]
            box_index, labels = candidates // K, candidates % K
            keep = self.batched_nms(image_boxes[box_index], flat[candidates], labels, self.cfg.nms_threshold)
            keep = keep[:self.cfg.max_detections]
            results.append({"boxes": image_boxes[box_index[keep]], "scores": flat[candidates[keep]],
                            "labels": labels[keep]})
        return results


def grid_example(cfg: GridDetectorConfig, batch_size: int) -> Example:
    """Images (B, C, H, W) in [0, 1] -> GridOutput, first of all the predictions (B, h, w, P, 5 + K)."""
    h, w = cfg.input_shape[1], cfg.input_shape[2]
    for _ in range(len(cfg.base_channels) + 1):
        h, w = h // 2, w // 2
    return Example((torch.rand(batch_size, *cfg.input_shape),), (batch_size, h, w, len(cfg.priors) // 2,
                                                                  5 + cfg.num_classes))


@register_model("yolo", config=GridDetectorConfig, example=grid_example, section="13.7",
                tiny=dict(input_shape=(3, 32, 32), num_classes=2, base_channels=(4, 4, 8), num_channels=8))
def yolo(cfg: GridDetectorConfig, ops: Ops) -> GridDetector:
    """A YOLOv2/v3-style grid detector: TinySSD's base network, one grid of box priors at stride 16."""
    return GridDetector(cfg, ops)
