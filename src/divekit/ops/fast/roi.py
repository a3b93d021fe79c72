"""RoI pooling and RoI align in fewer, fused operations, twins of ``ops.scratch.roi`` (D2L §13.8.2, §13.8.4).

Same arguments and results as the scratch functions (torchvision's CPU kernels):

* :func:`roi_pool` is separable: the max over a rectangle is the max over its rows of the max over
  its columns, so each region is reduced over W for its pw column ranges, then over H for its ph row
  ranges: O(R·C·H·W·pw) memory instead of the scratch O(R·C·H·W·ph·pw).
* :func:`roi_align` samples with ``F.grid_sample`` (one fused bilinear kernel) instead of gathering
  four neighbours. torchvision's border rule is grid_sample's ``padding_mode="border"`` (coordinates
  clamped to [0, size - 1]) plus zeroing samples more than one cell outside; with
  ``align_corners=True`` a pixel centre sits at an integer coordinate, as in the kernel. grid_sample
  samples each image with its own grid, so the regions are laid out per image: (B, R_max, ...) with
  R_max the most regions any image has, unused slots never read back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from divekit.ops.scratch.conv import IntPair, _pair
from divekit.ops.scratch.roi import _as_rois, _pool_bins, _round_half_away, _sample_points

__all__ = ["roi_align", "roi_pool"]


def roi_pool(features: torch.Tensor, rois: torch.Tensor | list[torch.Tensor], output_size: IntPair,
             spatial_scale: float = 1.0) -> torch.Tensor:
    """Max pooling of each region into ph x pw bins: features (B, C, H, W), rois (R, 5) -> (R, C, ph, pw)."""
    rois = _as_rois(rois, features)
    ph, pw = _pair(output_size, "output_size")
    B, C, H, W = features.shape
    batch_index = rois[:, 0].long()                                           # (R,)
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:] * spatial_scale).long().unbind(-1)   # (R,) each
    height, width = (y2 - y1 + 1).clamp(min=1), (x2 - x1 + 1).clamp(min=1)
    h_lo, h_hi = _pool_bins(y1, height, ph, H, features.dtype)                # (R, ph)
    w_lo, w_hi = _pool_bins(x1, width, pw, W, features.dtype)                 # (R, pw)
    rows = torch.arange(H, device=features.device)
    cols = torch.arange(W, device=features.device)
    in_rows = (rows >= h_lo[..., None]) & (rows < h_hi[..., None])            # (R, ph, H)
    in_cols = (cols >= w_lo[..., None]) & (cols < w_hi[..., None])            # (R, pw, W)
    X = features[batch_index]                                                 # (R, C, H, W)
    # max over each column range, then over each row range
    col_max = X[:, :, :, None, :].masked_fill(~in_cols[:, None, None], -math.inf).amax(dim=-1)   # (R, C, H, pw)
    pooled = col_max[:, :, None].masked_fill(~in_rows[:, None, :, :, None], -math.inf).amax(dim=3)  # (R, C, ph, pw)
    empty = ~(in_rows.any(dim=-1)[:, :, None] & in_cols.any(dim=-1)[:, None, :])   # (R, ph, pw)
    return pooled.masked_fill(empty[:, None], 0)


def _to_grid_sample(coord: torch.Tensor, n: int) -> torch.Tensor:
    """Pixel coordinates along an axis of n pixels -> grid_sample's, where -1 and 1 are the centres of
    the first and last pixel (align_corners=True); with one pixel every coordinate maps onto it."""
    return coord * (2 / (n - 1)) - 1 if n > 1 else torch.zeros_like(coord)


def roi_align(features: torch.Tensor, rois: torch.Tensor | list[torch.Tensor], output_size: IntPair,
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """Bilinear RoI align via ``F.grid_sample``: features (B, C, H, W), rois (R, 5) -> (R, C, ph, pw)."""
    rois = _as_rois(rois, features)
    ph, pw = _pair(output_size, "output_size")
    B, C, H, W = features.shape
    R = rois.shape[0]
    batch_index = rois[:, 0].long()                                           # (R,)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(-1)        # (R,) each
    width, height = x2 - x1, y2 - y1
    if not aligned:
        width, height = width.clamp(min=1), height.clamp(min=1)
    if sampling_ratio > 0:
        grid_h = torch.full((R,), sampling_ratio, device=rois.device)
        grid_w = grid_h
    else:
        grid_h, grid_w = torch.ceil(height / ph).long(), torch.ceil(width / pw).long()
    GH = max(int(grid_h.max()) if R else 1, 1)
    GW = max(int(grid_w.max()) if R else 1, 1)
    ys, y_used = _sample_points(y1, height, ph, grid_h, GH)                   # (R, ph, GH), (R, 1, GH)
    xs, x_used = _sample_points(x1, width, pw, grid_w, GW)                    # (R, pw, GW), (R, 1, GW)
    counts = (((ys >= -1) & (ys <= H) & y_used)[:, :, :, None, None]
              & ((xs >= -1) & (xs <= W) & x_used)[:, None, None])            # (R, ph, GH, pw, GW)
    y_norm, x_norm = _to_grid_sample(ys, H), _to_grid_sample(xs, W)          # (R, ph, GH), (R, pw, GW)
    grid = torch.stack((x_norm[:, None, None].expand(R, ph, GH, pw, GW),
                        y_norm[:, :, :, None, None].expand(R, ph, GH, pw, GW)), dim=-1)   # (R, ph, GH, pw, GW, 2)
    # each image's regions in slots 0, 1, ... of a (B, R_max) layout
    order = torch.argsort(batch_index, stable=True)                           # (R,) regions by image
    per_image = torch.bincount(batch_index, minlength=B)                      # (B,)
    first = torch.cumsum(per_image, 0) - per_image                            # (B,) first sorted position
    slot = torch.empty_like(batch_index)
    slot[order] = torch.arange(R, device=rois.device) - first[batch_index[order]]   # (R,) rank within its image
    R_max = max(int(per_image.max()) if R else 1, 1)
    grids = grid.new_zeros(B, R_max, ph * GH, pw * GW, 2)
    grids[batch_index, slot] = grid.reshape(R, ph * GH, pw * GW, 2)
    sampled = F.grid_sample(features, grids.reshape(B, R_max * ph * GH, pw * GW, 2), mode="bilinear",
                            padding_mode="border", align_corners=True)         # (B, C, R_max*ph*GH, pw*GW)
    sampled = sampled.reshape(B, C, R_max, ph, GH, pw, GW)[batch_index, :, slot]   # (R, C, ph, GH, pw, GW)
    total = torch.where(counts[:, None], sampled, 0).sum(dim=(3, 5))          # (R, C, ph, pw)
    return total / (grid_h * grid_w).clamp(min=1).to(total.dtype)[:, None, None, None]
