"""Boxes, anchors and NMS, twins of ``ops.scratch.boxes`` (D2L §13.3-§13.4).

Without torchvision there is no PyTorch kernel for any of these, and the scratch versions are already
vectorised tensor code, so most names are the scratch functions themselves (re-exported, same
signatures). The IoU of all pairs (:func:`box_iou`, in blocks of rows; see its docstring) and NMS are
the exceptions. The scratch NMS loop takes one step per kept box (an IoU row over
all N boxes each, about ten tensor operations each): cheap in arithmetic, costly in steps. Here
:func:`nms`, :func:`batched_nms` and :func:`multibox_detection` take fewer, larger steps:

* on a CPU, block by block (:func:`_nms_row`): the best ``BLOCK`` candidates left are
  resolved among themselves at once (their (b, b) IoUs, then the greedy scan over that small matrix,
  each row one 64-bit word), and the boxes they keep drop every remaining candidate they cover in one
  (k, R) IoU test, after which the candidates are compacted. Steps: about N / BLOCK plus a few, not
  one per kept box, all on numpy arrays: each step is a small array operation, where numpy's cost
  per call is a fifth of torch's (measured 0.6x the time of the same steps on torch tensors at
  1,000 and 3,000 clustered boxes; benchmarks/results/detection.md has the numbers against d2l);
* on an accelerator, all pairwise IoUs at once while G·N² <= 2^28 pairs, greedy NMS solved as a
  fixed point in a few rounds, since every step would wait for the device (not measured here: no
  GPU); larger inputs go block by block on the CPU (copied there, the result copied back).

Integer boxes take the scratch loop; 16-bit float boxes are compared in float32, as :func:`box_iou`
measures them.

Both rank the boxes by descending score, ties by position, as the scratch loop; on a CPU the blocks
never sort all the boxes (only the best ``BLOCK`` left, picked by numpy's partition of the rank keys,
:func:`_rank_keys`). Results are identical to the scratch loop's (tested on the CPU, both forms).
Greedy NMS as a fixed point: in rank order, box j is kept iff no *kept* higher-ranked box i covers it (IoU > threshold,
same group). That recursion has exactly one solution, and iterating
keep <- not any_i(keep_i and covers_ij) from keep = all reaches it after at most (length of the
longest chain of covering boxes + 1) rounds, each one batched (N, N) product and one sync.
After 32 rounds without convergence the greedy scan finishes on the host with the same matrix.
"""


from __future__ import annotations

import functools

import numpy as np
import torch

from divekit.ops.scratch import boxes as _scratch
from divekit.ops.scratch.boxes import (
    assign_anchor_to_bbox,
    box_area,
    box_center_to_corner,
    box_corner_to_center,
    multibox_prior,
    multibox_target,
    offset_boxes,
    offset_inverse,
)

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
SHARED = ("assign_anchor_to_bbox", "box_area", "box_center_to_corner", "box_corner_to_center", "multibox_prior",
          "multibox_target", "offset_boxes", "offset_inverse")  # the scratch code is already vectorised

MAX_FIXED_POINT_ROUNDS = 32
ALL_PAIRS_MAX = 2**28  # G·N² pairs on an accelerator: 1 GiB of float32
BLOCK = 64             # candidates resolved together on a CPU (at most 64: a row of covers is one 64-bit word)
IOU_BLOCK = 1 << 16    # IoU pairs per step of the blocked IoU: each temporary is 256 KiB of float32
SAMPLE_FROM = 4096     # candidates from which a block's best are found through a sample of them (_kth_smallest)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair: (..., N, 4) x (..., M, 4) -> (..., N, M) (D2L §13.4.2), the
    scratch formula computed in blocks of rows.

    The scratch version makes six (..., N, M) temporaries; at N = M = 10,000 each is 400 MB, and the
    time goes to filling fresh memory, not to arithmetic. Here rows are taken ``IOU_BLOCK // M`` at a
    time into three reused temporaries that stay in the cache, every step in place, and the result is
    written once into its place. Where a gradient is wanted the scratch version runs (in-place steps
    would hide what autograd needs); for finite coordinates both give the same numbers, including
    IoU 0 for two empty boxes."""
    if torch.is_grad_enabled() and (boxes1.requires_grad or boxes2.requires_grad):
        return _scratch.box_iou(boxes1, boxes2)
    _scratch._check_iou_inputs(boxes1, boxes2)
    boxes1, boxes2 = _scratch._upcast(boxes1), _scratch._upcast(boxes2)          # 16-bit floats: float32
    dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float32                 # integer pixel boxes
    lead = torch.broadcast_shapes(boxes1.shape[:-2], boxes2.shape[:-2])
    N, M = boxes1.shape[-2], boxes2.shape[-2]
    boxes1, boxes2 = boxes1.to(dtype).expand(*lead, N, 4), boxes2.to(dtype).expand(*lead, M, 4)
    out = _empty((*lead, N, M), dtype, boxes1.device)
    areas1, areas2 = box_area(boxes1), box_area(boxes2)                          # (..., N), (..., M)
    # each coordinate in its own contiguous row: the (r, 1) x (1, M) steps below then run vectorised
    # (on the (N, 4) layout's stride-4 views they took 9x as long)
    coords1 = boxes1.movedim(-1, 0).contiguous()                                  # (4, ..., N)
    coords2 = boxes2.movedim(-1, 0).contiguous()[..., None, :]                    # (4, ..., 1, M)
    rows = max(1, IOU_BLOCK // max(M, 1))
    width, height, spare = (torch.empty(*lead, min(rows, N), M, dtype=dtype, device=boxes1.device)
                            for _ in range(3))
    for start in range(0, N, rows):
        stop = min(N, start + rows)
        _iou_block(coords1[..., start:stop, None], coords2, areas1[..., start:stop, None], areas2[..., None, :],
                   *(buffer[..., :stop - start, :] for buffer in (width, height, spare)), out[..., start:stop, :])
    return out


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.empty``, but a CPU float tensor comes from numpy (shared, not copied): numpy asks the kernel
    for huge pages from 4 MB (torch's allocator does not), so a fresh 36 MB IoU matrix (3,000 boxes)
    faults in within 3 ms instead of 14."""
    if device.type == "cpu" and dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.empty(shape, dtype=np.float32 if dtype == torch.float32 else np.float64))
    return torch.empty(shape, dtype=dtype, device=device)


def _iou_block(coords_a, coords_b, areas_a, areas_b, w, h, spare, out, exact: bool = True):
    """The scratch IoU formula for rows against columns, step by step in place, on torch tensors or numpy
    arrays (all of one kind): coordinates coords_a (4, ..., r, 1) and coords_b (4, ..., 1, M) (x1, y1, x2,
    y2), areas (..., r, 1) and (..., 1, M) -> (..., r, M) in ``out``, through the buffers w, h, spare
    (..., r, M): torch's for :func:`box_iou`, numpy's for NMS's blocks of at most ``IOU_BLOCK`` pairs
    (see :func:`_covers`). ``exact=False`` (numpy only) is for comparisons with a threshold >= 0, two
    passes fewer: where the scratch formula gives a positive IoU it gives the same number, elsewhere a
    number <= 0 or NaN (the height is not clamped, so boxes apart in y give a negative intersection, and
    0 / 0 stays NaN where the union is not positive), none of them above such a threshold.

    numpy's minimum and maximum take ~4x as long when an operand repeats along the inner axis (a
    row's (r, 1) coordinate, or the clamp's scalar 0): there the buffer is filled with the row's
    coordinate first, and the clamp takes a row of zeros."""
    on_numpy = isinstance(areas_a, np.ndarray)
    (x1a, y1a, x2a, y2a), (x1b, y1b, x2b, y2b) = coords_a, coords_b

    def rows_op_columns(op, rows, columns, into):                              # op(rows (r, 1), columns (1, M))
        if not on_numpy:
            return op(rows, columns, out=into)
        np.copyto(into, rows)
        return op(into, columns, out=into)

    zeros = np.zeros_like(x2b) if on_numpy else None                           # (..., 1, M)

    def clamp(x):
        return np.maximum(x, zeros, out=x) if on_numpy else x.clamp_(min=0)

    minimum, maximum = (np.minimum, np.maximum) if on_numpy else (torch.minimum, torch.maximum)
    w = rows_op_columns(minimum, x2a, x2b, w)
    w -= rows_op_columns(maximum, x1a, x1b, spare)
    h = rows_op_columns(minimum, y2a, y2b, h)
    h -= rows_op_columns(maximum, y1a, y1b, spare)
    inter = clamp(w)
    inter *= clamp(h) if exact else h                                           # w >= 0, h < 0: inter <= 0
    union = (np.add if on_numpy else torch.add)(areas_a, areas_b, out=spare)
    union -= inter
    if not on_numpy:
        return torch.div(inter, union, out=out).nan_to_num_(0.0)               # 0 / 0: two empty boxes
    iou = np.divide(inter, union, out=out)                                      # 0 / 0 quiet: the caller's np.errstate
    if exact:
        iou[~(union > 0)] = 0.0                                                 # two empty boxes, or NaN: as scratch
    return iou


def _host_scan(covers: torch.Tensor) -> torch.Tensor:
    """Greedy pass over a (G, N, N) upper-triangular covers matrix (i covers j, i ranked first) on the
    host -> kept (G, N) bool: each box still alive when reached is kept and drops the later ones it covers."""
    matrix = covers.cpu().numpy()
    G, N, _ = matrix.shape
    kept = np.ones((G, N), dtype=bool)
    for row in range(G):
        alive = kept[row]
        for i in range(N):
            if alive[i]:
                alive[i + 1:] &= ~matrix[row, i, i + 1:]
    return torch.from_numpy(kept).to(covers.device)


POSITION_BITS = 31                 # a rank key's low bits: the box's position in its row
POSITION_MASK = (1 << POSITION_BITS) - 1


def _rank_keys(scores: torch.Tensor) -> np.ndarray:
    """Keys of each row's boxes in rank order: scores (G, N) on the CPU -> (G, N) int64, all distinct,
    ascending by descending score, ties by position, each key holding its box's position in its low
    ``POSITION_BITS``. For float32 scores the key packs the score's bits (made to order as the floats
    do) above the position: no sort needed, -0.0 ranks as 0.0, and every NaN (whatever its sign bit and
    payload: x86 makes inf - inf with the sign bit set) above every number, ties by position, as torch
    ranks them. Other dtypes: the ranks from torch's stable sort above the position."""
    G, N = scores.shape
    positions = np.arange(N, dtype=np.int64)
    if scores.dtype != torch.float32 or N > POSITION_MASK:
        order = scores.argsort(dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order).scatter_(1, order, torch.arange(N).expand(G, N))
        return (ranks.numpy() << POSITION_BITS) | positions
    with np.errstate(invalid="ignore"):                                        # a signalling NaN stays quiet
        values = scores.numpy() + np.float32(0.0)                             # + 0.0: -0.0 becomes 0.0
    bits = values.view(np.int32).astype(np.int64)
    ordered = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)                     # signed order = the floats' order
    ordered[np.isnan(values)] = 2 ** 31 - 1                                   # every NaN one key, above +inf
    return ((2 ** 31 - 1 - ordered) << POSITION_BITS) | positions             # ascending: best score, then position


def _columns(coords: np.ndarray, areas: np.ndarray, groups: np.ndarray | None, j: np.ndarray):
    """The column side of :func:`_covers`, boxes j (b,) gathered once: coordinates (4, 1, b), areas (1, b)
    and groups (1, b) or None."""
    return (coords.take(j, axis=1)[:, None, :], areas.take(j)[None, :],
            None if groups is None else groups.take(j)[None, :])


def _covers(coords: np.ndarray, areas: np.ndarray, groups: np.ndarray | None, i: np.ndarray, columns: tuple,
            iou_threshold: float, buffers: list[np.ndarray] = ()) -> np.ndarray:
    """Whether box i covers box j, boxes as coordinate rows coords (4, N) (x1, y1, x2, y2) with their
    areas (N,), groups (N,) or None, positions i (a,), the boxes j as :func:`_columns` gives them -> (a, b)
    bool: IoU above the threshold, and the same group, through three ``buffers`` (a, b) (new ones if not
    given; the IoU overwrites the intersection in the first: a smaller working set). All in numpy: its
    cost per call is a fifth of torch's, and torch's comparison to a bool tensor alone takes ~7x as long
    as numpy's (measured faster in NMS at 1,000 to 10,000 boxes)."""
    coords_j, areas_j, groups_j = columns
    buffers = buffers or [np.empty((len(i), areas_j.shape[-1]), dtype=coords.dtype) for _ in range(3)]
    iou = _iou_block(coords.take(i, axis=1)[:, :, None], coords_j, areas.take(i)[:, None], areas_j, *buffers,
                     buffers[0], exact=iou_threshold < 0)
    covers = iou > iou_threshold                                                 # (a, b)
    return covers if groups is None else covers & (groups.take(i)[:, None] == groups_j)


def _covered(coords: np.ndarray, areas: np.ndarray, groups: np.ndarray | None, i: np.ndarray,
             j: np.ndarray | None, iou_threshold: float) -> np.ndarray:
    """Whether any box i covers box j (see :func:`_covers`) -> (b,) bool, ``IOU_BLOCK`` pairs at a time
    through three reused buffers (fresh ones each block would cost page faults). ``j=None``: every box,
    straight from ``coords`` (nothing gathered)."""
    columns = (coords[:, None, :], areas[None, :], None if groups is None else groups[None, :]) if j is None \
        else _columns(coords, areas, groups, j)
    M = columns[1].shape[1]
    rows = max(1, IOU_BLOCK // max(M, 1))
    buffers = [np.empty((min(rows, len(i)), M), dtype=coords.dtype) for _ in range(3)]
    gone = np.zeros(M, dtype=bool)
    for start in range(0, len(i), rows):
        block = i[start:start + rows]
        gone |= _covers(coords, areas, groups, block, columns, iou_threshold, [b[:len(block)] for b in buffers]).any(0)
    return gone


def _greedy_in_block(covers: np.ndarray) -> np.ndarray:
    """Greedy NMS within a block of b <= 64 boxes from its (b, b) covers matrix (only i < j counts: box i
    ranked first) -> kept (b,) bool: each box still alive when reached is kept and drops those it
    covers, each row of the matrix one 64-bit integer (2x faster than rounds of the fixed point on
    arrays, which took 2-4 rounds on clustered boxes)."""
    b = len(covers)
    words = np.zeros((b, 8), dtype=np.uint8)
    words[:, :(b + 7) // 8] = np.packbits(covers & _strictly_upper(b), axis=1, bitorder="little")
    alive = (1 << b) - 1
    for i, row in enumerate(words.view(np.uint64)[:, 0].tolist()):
        if alive >> i & 1:
            alive &= ~row
    return np.unpackbits(np.array([alive], dtype=np.uint64).view(np.uint8), bitorder="little")[:b].view(bool)


@functools.cache
def _strictly_upper(b: int) -> np.ndarray:
    """(b, b) bool, True above the diagonal."""
    return np.triu(np.ones((b, b), dtype=bool), 1)


def _kth_smallest(keys: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest of distinct keys (R,), R >= k. From ``SAMPLE_FROM`` keys and k >= 2, numpy
    partitions only those below the 8th smallest of a sample of ~4k (~8 · R / 4k ≈ 2k keys expected; all
    of them if fewer than k fall below): at 10,000 keys 4x faster than partitioning them all."""
    if len(keys) >= SAMPLE_FROM and k >= 2:
        sample = keys[::len(keys) // (4 * k)]
        below = keys[keys <= np.partition(sample, 7)[7]]
        keys = below if len(below) >= k else keys
    return np.partition(keys, k - 1)[k - 1]


def _nms_row(boxes: np.ndarray, groups: np.ndarray | None, keys: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS of one row block by block: boxes (N, 4), groups (N,) or None, keys (N,) the boxes' rank
    keys (:func:`_rank_keys`) -> the kept positions (K,), best first. The best ``BLOCK`` candidates left
    are resolved among themselves, and the winners drop every candidate they cover. The candidates are
    never sorted: each block takes those up to the ``BLOCK``-th smallest key (:func:`_kth_smallest`),
    and most candidates are gone before their turn. The first block tests the winners against all
    the boxes as they lie (nothing gathered)."""
    coords = np.ascontiguousarray(boxes.T)                                       # (4, N)
    x1, y1, x2, y2 = coords
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)                      # box_area's numbers
    args = (coords, areas, groups)
    candidates, kept = keys, []                                                  # keys left, by position
    while len(candidates):
        left = candidates > _kth_smallest(candidates, BLOCK) if len(candidates) > BLOCK else None
        head = np.sort(candidates if left is None else candidates[~left]) & POSITION_MASK
        covers = _covers(*args, head, _columns(*args, head), iou_threshold)     # (b, b)
        winners = head[_greedy_in_block(covers)]
        kept.append(winners)
        if left is not None:                                                     # what the winners cover is gone
            j = None if candidates is keys else candidates & POSITION_MASK
            candidates = candidates[left & ~_covered(*args, winners, j, iou_threshold)]
        else:
            candidates = candidates[:0]
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)


def _nms_rows(boxes: torch.Tensor, keys: np.ndarray, iou_threshold: float,
              groups: torch.Tensor | None = None) -> list[np.ndarray]:
    """Greedy NMS block by block on the CPU (see the module note): boxes (G, N, 4) float32/64 on the CPU,
    the scores' rank keys (G, N) (:func:`_rank_keys`), groups (G, N) or None -> each row's kept positions
    (K_g,), best first. Each row on its own (:func:`_nms_row`), since rows keep different numbers of boxes;
    every step in numpy (see :func:`_covers`). Time O(N·kept) IoUs in about N / BLOCK steps; memory
    O(BLOCK·N)."""
    if groups is not None:  # compared for equality only: any dtype numpy lacks (bfloat16) as float32, exactly
        groups = groups.detach().cpu()
        groups = groups.float() if groups.dtype == torch.bfloat16 else groups
    with np.errstate(all="ignore"):                                              # empty, infinite and NaN boxes
        return [_nms_row(boxes[row].numpy(), None if groups is None else groups[row].numpy(), keys[row],
                         iou_threshold) for row in range(len(keys))]


def _nms_keep_blocks(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                     groups: torch.Tensor | None = None):
    """:func:`_nms_rows` as the other forms give it: (keep (G, N) bool in input order, order (G, N)), the
    order read from the same rank keys (sorted: every key differs, so their sort is the stable one)."""
    keys = _rank_keys(scores)                                                    # (G, N)
    keep = torch.zeros(scores.shape, dtype=torch.bool)
    for row, kept in enumerate(_nms_rows(boxes, keys, iou_threshold, groups)):
        keep[row, torch.from_numpy(kept)] = True
    return keep, torch.from_numpy(np.sort(keys, axis=1) & POSITION_MASK)


def _nms_keep_all_pairs(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                        groups: torch.Tensor | None = None):
    """Greedy NMS from all pairwise IoUs: boxes (G, N, 4), scores (G, N), groups (G, N) or None
    -> (keep (G, N) bool in input order, order (G, N)). Memory O(G·N²)."""
    G, N = scores.shape
    order, ranked, ranked_groups = _scratch._rank(boxes, scores, groups)
    covers = box_iou(ranked, ranked) > iou_threshold                            # (G, N, N) i covers j
    if ranked_groups is not None:
        covers &= ranked_groups[:, :, None] == ranked_groups[:, None, :]
    covers = covers.triu(diagonal=1)                                            # only a higher rank covers
    covers_f = covers.to(torch.float32)                                         # counts stay exact to 2^24
    kept = torch.ones(G, N, dtype=torch.bool, device=boxes.device)
    for _ in range(MAX_FIXED_POINT_ROUNDS):
        # number of kept boxes covering each box, (G, 1, N) @ (G, N, N) -> (G, 1, N)
        new_kept = (kept[:, None, :].to(covers_f.dtype) @ covers_f)[:, 0] == 0
        if torch.equal(new_kept, kept):
            break
        kept = new_kept
    else:
        kept = _host_scan(covers)
    return torch.zeros_like(kept).scatter_(1, order, kept), order


def _nms_keep(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, groups: torch.Tensor | None = None):
    """All pairs at once on an accelerator while the (G, N, N) matrix is small; else block by block on
    the CPU (an accelerator's boxes copied there and the result back); the scratch loop for integer
    boxes. 16-bit float boxes are compared in float32, as :func:`box_iou` computes them, and the threshold
    is taken as a Python float (a numpy or 0-d tensor one too), which numpy, as torch, compares in the
    IoUs' own dtype. See the module note."""
    G, N = scores.shape
    boxes, device, iou_threshold = _scratch._upcast(boxes), boxes.device, float(iou_threshold)
    if device.type != "cpu" and G * N * N <= ALL_PAIRS_MAX:
        return _nms_keep_all_pairs(boxes, scores, iou_threshold, groups)
    if not boxes.is_floating_point():
        return _scratch._nms_keep(boxes, scores, iou_threshold, groups)
    keep, order = _nms_keep_blocks(boxes.detach().cpu(), scores.detach().cpu(), iou_threshold, groups)
    return keep.to(device), order.to(device)


def _kept_indices(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                  groups: torch.Tensor | None = None) -> torch.Tensor:
    """What :func:`nms` and :func:`batched_nms` return: boxes (N, 4), scores (N,), groups (N,) or None ->
    kept indices (K,) by descending score; on the CPU straight from the blocks (which never sort all
    the boxes), not through a mask in input order."""
    upcast = _scratch._upcast(boxes)
    if boxes.device.type == "cpu" and upcast.is_floating_point():
        kept = _nms_rows(upcast[None].detach(), _rank_keys(scores[None].detach()), float(iou_threshold),
                         None if groups is None else groups[None])
        return torch.from_numpy(kept[0])
    keep, order = _nms_keep(boxes[None], scores[None], iou_threshold, None if groups is None else groups[None])
    return order[0][keep[0].gather(0, order[0])]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS (D2L §13.4.4): boxes (N, 4), scores (N,) -> kept indices (K,), by descending score."""
    _scratch._check_nms_inputs(boxes, scores)
    return _kept_indices(boxes, scores, iou_threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category idxs (N,): boxes (N, 4), scores (N,) -> kept indices (K,), by descending score."""
    _scratch._check_nms_inputs(boxes, scores, idxs)
    return _kept_indices(boxes, scores, iou_threshold, idxs)


def multibox_detection(cls_probs: torch.Tensor, offset_preds: torch.Tensor, anchors: torch.Tensor,
                       nms_threshold: float = 0.5, pos_threshold: float = 0.009999999,
                       per_class_nms: bool = True) -> torch.Tensor:
    """cls_probs (B, K + 1, A), offset_preds (B, A*4), anchors (1, A, 4) -> (B, A, 6) rows
    [class_id, confidence, x1, y1, x2, y2], as ``ops.scratch.multibox_detection`` (D2L §13.4.4)."""
    return _scratch._detect(cls_probs, offset_preds, anchors, nms_threshold, pos_threshold, per_class_nms, _nms_keep)
