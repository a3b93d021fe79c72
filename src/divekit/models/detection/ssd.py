"""TinySSD, the book's single shot multibox detector (D2L §13.7.1, Liu et al. 2016).

Letters: B batch size, C channels, h x w a feature map, P anchors per pixel (n sizes + m ratios - 1),
A anchors of all scales (sum of h·w·P), K object classes (background not counted).

Five blocks make five feature maps: the base network (three down-sampling blocks, 256 -> 32 pixels),
three down-sampling blocks of 128 channels (16, 8 and 4 pixels) and global max pooling (1 pixel). At each
scale a 3x3 convolution predicts, for each of the P anchors centred on each pixel, K + 1 class scores
(row 0 background) and 4 offsets. Scale i has anchor sizes ``sizes[i]`` (0.2 and 0.272 at the
first, up to 0.88 and 0.961) and ratios 1, 2, 0.5, so P = 4 and a 256x256 image has
(32² + 16² + 8² + 4² + 1) · 4 = 5444 anchors. The predictions of all scales are flattened pixel by
pixel (channels last, as the anchors are ordered) and concatenated.

``forward_features`` gives the five feature maps and ``forward_head`` the anchors and predictions,
so another head can reuse the backbone (timm's split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from divekit.metrics.detection import detections_to_preds
from divekit.models.blocks import inference
from divekit.models.detection.base import Detector, DetectorConfig, base_net, down_sample_blk
from divekit.models.registry import Example, register_model
from divekit.ops import Ops
from divekit.options import each_at_least, option

NUM_SCALES = 5  # the base network, three down-sampling blocks, global max pooling


class SSDOutput(NamedTuple):
    """What TinySSD's forward returns, in the book's order: anchors (1, A, 4) relative corners,
    class scores cls_preds (B, A, K + 1), offsets bbox_preds (B, A * 4)."""

    anchors: torch.Tensor
    cls_preds: torch.Tensor
    bbox_preds: torch.Tensor


@dataclass
class TinySSDConfig(DetectorConfig):
    HALVINGS_AFTER_BASE = NUM_SCALES - 2  # the down-sampling blocks before the last map (then global pooling)

    sizes: tuple[float, ...] = option((0.2, 0.272, 0.37, 0.447, 0.54, 0.619, 0.71, 0.79, 0.88, 0.961),
                                      "anchor sizes, the same number for each of the five scales, smallest scale first "
                                      "(D2L §13.7.1)", each_at_least(1e-6))
    ratios: tuple[float, ...] = option((1.0, 2.0, 0.5), "anchor aspect ratios, the same at every scale",
                                       each_at_least(1e-6))

    def __post_init__(self):
        super().__post_init__()
        if len(self.sizes) % NUM_SCALES:
            raise ValueError(f"--sizes must hold the same number of sizes for each of the {NUM_SCALES} scales, "
                             f"got {len(self.sizes)}")

    @property
    def scale_sizes(self) -> list[tuple[float, ...]]:
        n = len(self.sizes) // NUM_SCALES
        return [self.sizes[i * n:(i + 1) * n] for i in range(NUM_SCALES)]

    @property
    def anchors_per_pixel(self) -> int:
        return len(self.sizes) // NUM_SCALES + len(self.ratios) - 1


def feature_sizes(cfg: TinySSDConfig) -> list[tuple[int, int]]:
    """(h, w) of the five feature maps for images of ``cfg.input_shape``: three halvings in the base
    network, one per down-sampling block, and 1 x 1 after global max pooling."""
    h, w = cfg.input_shape[1:]
    sizes = []
    for _ in range(len(cfg.base_channels)):
        h, w = h // 2, w // 2
    for _ in range(NUM_SCALES - 1):
        sizes.append((h, w))
        h, w = h // 2, w // 2
    return [*sizes, (1, 1)]


def flatten_pred(pred: torch.Tensor) -> torch.Tensor:
    """(B, P * q, h, w) -> (B, h * w * P * q): pixel by pixel, each pixel's P anchors' q values together."""
    return pred.permute(0, 2, 3, 1).flatten(start_dim=1)   # (B, h, w, P * q) -> (B, h * w * P * q)


class TinySSD(Detector):
    """The book's TinySSD (see the module docstring), built from ``ops``."""

    def __init__(self, cfg: TinySSDConfig, ops: Ops):
        super().__init__()
        self.num_classes = cfg.num_classes
        self.sizes, self.ratios = cfg.scale_sizes, cfg.ratios
        P, C = cfg.anchors_per_pixel, cfg.num_channels
        blocks = [base_net(ops, cfg.input_shape[0], cfg.base_channels), down_sample_blk(ops, cfg.base_channels[-1], C),
                  down_sample_blk(ops, C, C), down_sample_blk(ops, C, C), ops.AdaptiveMaxPool2d((1, 1))]
        in_channels = [cfg.base_channels[-1]] + [C] * (NUM_SCALES - 1)
        self.blocks = nn.ModuleList(blocks)
        self.cls_predictors = nn.ModuleList(ops.Conv2d(c, P * (cfg.num_classes + 1), kernel_size=3, padding=1)
                                            for c in in_channels)
        self.bbox_predictors = nn.ModuleList(ops.Conv2d(c, P * 4, kernel_size=3, padding=1) for c in in_channels)
        self.multibox_prior = ops.multibox_prior              # the twin's box functions, plain attributes
        self.multibox_detection = ops.multibox_detection
        self.softmax = ops.softmax

    def forward_features(self, X: torch.Tensor) -> list[torch.Tensor]:
        """X (B, C, H, W) -> the five feature maps, largest first."""
        features = []
        for block in self.blocks:
            X = block(X)
            features.append(X)
        return features

    def forward_head(self, features: list[torch.Tensor]) -> SSDOutput:
        """The five feature maps -> anchors, class scores and offsets of all scales (the book's forward)."""
        anchors, cls_preds, bbox_preds = [], [], []
        for Y, sizes, cls_predictor, bbox_predictor in zip(features, self.sizes, self.cls_predictors,
                                                           self.bbox_predictors):
            # anchors depend only on the map's size; made in float32 even under autocast
            shape = torch.empty(1, 0, *Y.shape[-2:], device=Y.device)                 # (1, 0, h, w)
            anchors.append(self.multibox_prior(shape, sizes=sizes, ratios=self.ratios))  # (1, h*w*P, 4)
            cls_preds.append(flatten_pred(cls_predictor(Y)))                            # (B, h*w*P*(K+1))
            bbox_preds.append(flatten_pred(bbox_predictor(Y)))                          # (B, h*w*P*4)
        cls_preds = torch.cat(cls_preds, dim=1)                                         # (B, A*(K+1))
        return SSDOutput(torch.cat(anchors, dim=1),                                     # (1, A, 4)
                         cls_preds.reshape(cls_preds.shape[0], -1, self.num_classes + 1),  # (B, A, K+1)
                         torch.cat(bbox_preds, dim=1))                                  # (B, A*4)

    def forward(self, X: torch.Tensor) -> SSDOutput:
        return self.forward_head(self.forward_features(X))

    @inference
    def detect(self, X: torch.Tensor, nms_threshold: float = 0.5, pos_threshold: float = 0.009999999,
               per_class_nms: bool = True) -> list[dict[str, torch.Tensor]]:
        """The book's prediction (D2L §13.7.3): class probabilities by softmax, boxes from the anchors
        and offsets, non-maximum suppression (per class unless ``per_class_nms=False``, the book's
        class-blind NMS), boxes below ``pos_threshold`` dropped."""
        anchors, cls_preds, bbox_preds = self(X)
        cls_probs = self.softmax(cls_preds.float()).permute(0, 2, 1)                   # (B, K+1, A)
        output = self.multibox_detection(cls_probs, bbox_preds.float(), anchors, nms_threshold=nms_threshold,
                                         pos_threshold=pos_threshold, per_class_nms=per_class_nms)  # (B, A, 6)
        return detections_to_preds(output)


def ssd_example(cfg: TinySSDConfig, batch_size: int) -> Example:
    """Images (B, C, H, W) in [0, 1] -> SSDOutput, first of all anchors (1, A, 4)."""
    num_anchors = sum(h * w for h, w in feature_sizes(cfg)) * cfg.anchors_per_pixel
    return Example((torch.rand(batch_size, *cfg.input_shape),), (1, num_anchors, 4))


@register_model("tinyssd", config=TinySSDConfig, example=ssd_example, section="13.7",
                tiny=dict(input_shape=(3, 64, 64), num_classes=2, base_channels=(4, 4, 8), num_channels=8))
def tinyssd(cfg: TinySSDConfig, ops: Ops) -> TinySSD:
    """TinySSD: a base network and four more blocks, class and box predictors at five scales."""
    return TinySSD(cfg, ops)
