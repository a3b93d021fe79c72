"""Region-of-interest pooling and RoI align from tensor operations (D2L §13.8.2, §13.8.4, Fast and Mask R-CNN).

Letters: B batch size, C channels, H x W feature map, R regions of interest, ph x pw output size,
GH x GW sampling points per output bin (RoI align).

Both take torchvision's arguments: features (B, C, H, W); rois either a (R, 5) tensor of rows
[batch_index, x1, y1, x2, y2] or a list of B tensors (L_b, 4) of boxes per image; the boxes are in
image coordinates and ``spatial_scale`` maps them onto the feature map (1/16 for a stride-16 map).
They return (R, C, ph, pw) and follow torchvision's CPU kernels step for step (tested against loops
transcribed from the kernels, and against torchvision itself where it imports).

* :func:`roi_pool` (Fast R-CNN): the region's corners are rounded to feature-map cells (half away
  from zero, C's ``round``), its (y2 - y1 + 1) x (x2 - x1 + 1) cells cut into ph x pw bins, bin k of
  a side of n cells spanning cells [floor(k n / p), ceil((k + 1) n / p)), and each bin max-pooled.
  Bins that fall off the map are 0. Here every bin is a mask over the whole map and one masked max:
  readable, but O(R·C·ph·pw·H·W) memory (gigabytes at Fast R-CNN sizes, where ``ops.fast`` needs ph
  times less and runs ~12x faster).
* :func:`roi_align` (Mask R-CNN): no rounding. Each bin is sampled on a GH x GW grid of points at
  bilinear positions and averaged; GH = ``sampling_ratio`` or, if that is <= 0, ceil(region height /
  ph) per region. ``aligned=True`` shifts the box by -0.5 so that pixel centres sit at integer
  coordinates (Detectron2); ``False`` is the legacy version, which also stretches regions smaller
  than one cell to one cell. A sample more than one cell outside the map counts 0; one less than one
  cell outside is clamped to the border. Here the interpolation is spelled out: the four neighbouring
  pixels are gathered and weighted.
"""

from __future__ import annotations

import math

import torch

from divekit.ops.scratch.conv import IntPair, _pair

__all__ = ["roi_align", "roi_pool"]


def _as_rois(rois: torch.Tensor | list[torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """rois (R, 5) or a list of (L_b, 4) boxes per image -> (R, 5) [batch_index, x1, y1, x2, y2]; checks shapes."""
    if features.dim() != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    if isinstance(rois, (list, tuple)):
        if not all(r.dim() == 2 and r.shape[-1] == 4 for r in rois):
            raise ValueError(f"a list of rois must hold (L, 4) boxes per image, got shapes {[tuple(r.shape) for r in rois]}")
        counts = torch.tensor([len(r) for r in rois], device=features.device)
        index = torch.repeat_interleave(torch.arange(len(rois), device=features.device), counts)   # (R,)
        boxes = torch.cat([r.to(features) for r in rois]) if rois else features.new_zeros(0, 4)   # (R, 4)
        rois = torch.cat((index[:, None].to(features.dtype), boxes), dim=1)                        # (R, 5)
    if rois.dim() != 2 or rois.shape[-1] != 5:
        raise ValueError(f"rois must have shape (R, 5) [batch_index, x1, y1, x2, y2], got {tuple(rois.shape)}")
    if rois.shape[0] and not (0 <= rois[:, 0].min() and rois[:, 0].max() < features.shape[0]):
        raise ValueError(f"rois name batch indices outside [0, {features.shape[0] - 1}]")
    return rois.to(features.dtype)  # torchvision insists on one dtype; the coordinates follow the features


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves away from zero (``torch.round`` rounds them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _pool_bins(start: torch.Tensor, length: torch.Tensor, bins: int, limit: int, dtype: torch.dtype):
    """Cell ranges [lo, hi) of ``bins`` bins over ``length`` cells from ``start``, clipped to [0, limit]:
    start, length (R,) long -> lo, hi (R, bins) long. Computed in the features' dtype, as the kernel."""
    bin_size = length.to(dtype) / bins                                        # (R,)
    k = torch.arange(bins, device=start.device, dtype=dtype)                 # (bins,)
    lo = torch.floor(k * bin_size[:, None]).long() + start[:, None]           # (R, bins)
    hi = torch.ceil((k + 1) * bin_size[:, None]).long() + start[:, None]      # (R, bins)
    return lo.clamp(0, limit), hi.clamp(0, limit)


def roi_pool(features: torch.Tensor, rois: torch.Tensor | list[torch.Tensor], output_size: IntPair,
             spatial_scale: float = 1.0) -> torch.Tensor:
    """Max pooling of each region into ph x pw bins (D2L §13.8.2): features (B, C, H, W),
    rois (R, 5) -> (R, C, ph, pw). See the module docstring for the bins."""
    rois = _as_rois(rois, features)
    ph, pw = _pair(output_size, "output_size")
    B, C, H, W = features.shape
    batch_index = rois[:, 0].long()                                           # (R,)
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:] * spatial_scale).long().unbind(-1)   # (R,) each, in cells
    height, width = (y2 - y1 + 1).clamp(min=1), (x2 - x1 + 1).clamp(min=1)  # malformed regions: 1 cell
    h_lo, h_hi = _pool_bins(y1, height, ph, H, features.dtype)                # (R, ph)
    w_lo, w_hi = _pool_bins(x1, width, pw, W, features.dtype)                 # (R, pw)
    rows = torch.arange(H, device=features.device)
    cols = torch.arange(W, device=features.device)
    in_rows = (rows >= h_lo[..., None]) & (rows < h_hi[..., None])            # (R, ph, H)
    in_cols = (cols >= w_lo[..., None]) & (cols < w_hi[..., None])            # (R, pw, W)
    in_bin = in_rows[:, :, None, :, None] & in_cols[:, None, :, None, :]      # (R, ph, pw, H, W)
    X = features[batch_index][:, :, None, None]                               # (R, C, 1, 1, H, W)
    pooled = X.masked_fill(~in_bin[:, None], -math.inf).amax(dim=(-2, -1))    # (R, C, ph, pw)
    empty = ~in_bin.any(dim=(-2, -1))                                         # (R, ph, pw) off the map
    return pooled.masked_fill(empty[:, None], 0)


def _sample_points(start: torch.Tensor, size: torch.Tensor, bins: int, grid: torch.Tensor, grid_max: int):
    """Sample coordinates along one axis: start, size, grid (R,) -> (R, bins, grid_max), point i of
    bin k at start + k·size/bins + (i + 0.5)·(size/bins)/grid, and which of the grid_max points are used.
    The operations in torchvision's order, so a point that falls exactly on the map's border there
    does here too (one rounding apart, it would count on one side and be 0 on the other)."""
    bin_size = size / bins                                                    # (R,)
    k = torch.arange(bins, device=start.device, dtype=start.dtype)           # (bins,)
    i = torch.arange(grid_max, device=start.device, dtype=start.dtype)       # (grid_max,)
    points = (start[:, None, None] + k[:, None] * bin_size[:, None, None]
              + (i + 0.5) * bin_size[:, None, None] / grid.clamp(min=1)[:, None, None])  # (R, bins, grid_max)
    used = i < grid[:, None, None]                                            # (R, 1, grid_max)
    return points, used


def _neighbours(coord: torch.Tensor, n: int):
    """Bilinear neighbours along one axis of n cells, torchvision's border rule: coord (...) ->
    (low, high) long cells, (weight of low, weight of high), and whether the point counts at all."""
    inside = (coord >= -1) & (coord <= n)                                     # beyond one cell out: 0
    coord = coord.clamp(min=0)
    low = coord.long()                                                        # floor, as coord >= 0
    at_edge = low >= n - 1                                                    # the last cell: no right neighbour
    low = torch.where(at_edge, n - 1, low)
    high = torch.where(at_edge, n - 1, low + 1)
    frac = torch.where(at_edge, 0, coord - low)                               # distance from the low cell
    return low, high, 1 - frac, frac, inside


def roi_align(features: torch.Tensor, rois: torch.Tensor | list[torch.Tensor], output_size: IntPair,
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """Bilinear RoI align (Mask R-CNN): features (B, C, H, W), rois (R, 5) -> (R, C, ph, pw), the mean
    of GH x GW bilinear samples per bin (see the module docstring). Differentiable in ``features``."""
    rois = _as_rois(rois, features)
    ph, pw = _pair(output_size, "output_size")
    B, C, H, W = features.shape
    R = rois.shape[0]
    batch_index = rois[:, 0].long()                                           # (R,)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(-1)        # (R,) each, feature-map units
    width, height = x2 - x1, y2 - y1
    if not aligned:  # the legacy version stretches tiny regions to one cell
        width, height = width.clamp(min=1), height.clamp(min=1)
    if sampling_ratio > 0:
        grid_h = torch.full((R,), sampling_ratio, device=rois.device)
        grid_w = grid_h
    else:  # adaptive: about one sample per cell
        grid_h, grid_w = torch.ceil(height / ph).long(), torch.ceil(width / pw).long()   # (R,) each
    GH = max(int(grid_h.max()) if R else 1, 1)
    GW = max(int(grid_w.max()) if R else 1, 1)
    ys, y_used = _sample_points(y1, height, ph, grid_h, GH)                   # (R, ph, GH), (R, 1, GH)
    xs, x_used = _sample_points(x1, width, pw, grid_w, GW)                    # (R, pw, GW), (R, 1, GW)
    y_low, y_high, wy_low, wy_high, y_in = _neighbours(ys, H)                 # (R, ph, GH) each
    x_low, x_high, wx_low, wx_high, x_in = _neighbours(xs, W)                 # (R, pw, GW) each

    def pixels(y, x):  # features[b, :, y, x] for every sample -> (R, C, ph, GH, pw, GW)
        b = batch_index[:, None, None, None, None]                            # (R, 1, 1, 1, 1)
        v = features[b, :, y[:, :, :, None, None], x[:, None, None, :, :]]    # (R, ph, GH, pw, GW, C)
        return v.permute(0, 5, 1, 2, 3, 4)

    wy_low, wy_high = wy_low[:, None, :, :, None, None], wy_high[:, None, :, :, None, None]   # (R, 1, ph, GH, 1, 1)
    wx_low, wx_high = wx_low[:, None, None, None], wx_high[:, None, None, None]              # (R, 1, 1, 1, pw, GW)
    samples = (wy_low * wx_low * pixels(y_low, x_low) + wy_low * wx_high * pixels(y_low, x_high)
               + wy_high * wx_low * pixels(y_high, x_low) + wy_high * wx_high * pixels(y_high, x_high))
    counts = (y_in & y_used)[:, None, :, :, None, None] & (x_in & x_used)[:, None, None, None]  # (R, 1, ph, GH, pw, GW)
    total = torch.where(counts, samples, 0).sum(dim=(3, 5))                   # (R, C, ph, pw)
    return total / (grid_h * grid_w).clamp(min=1).to(total.dtype)[:, None, None, None]
