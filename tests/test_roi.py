"""RoI pooling and RoI align (D2L §13.8.2): the book's example, loops that follow torchvision's CPU
kernels one bin and one sample at a time, hand-computed cases, gradients, both twins, and
torchvision itself where it imports."""

import inspect
import math

import pytest
import torch

from divekit.ops import fast, scratch
from divekit.ops.fast import roi as fast_roi
from divekit.ops.scratch import roi as scratch_roi

TWINS = [scratch, fast]
IDS = ["scratch", "fast"]
FLOAT64 = {"dtype": torch.float64}


def import_torchvision():
    try:
        import torchvision
        import torchvision.ops  # noqa: F401
    except (ImportError, RuntimeError, OSError) as error:
        pytest.skip(f"torchvision is not usable here: {error}")
    return torchvision


def random_rois(R, B, H, W, generator, scale=1.0, dtype=torch.float64):
    """R regions in image coordinates (feature map / scale), some sticking out of the map, a few malformed."""
    corners = torch.rand(R, 2, 2, generator=generator, dtype=dtype) * torch.tensor([W, H], dtype=dtype) * 1.4 - 1.5
    boxes = torch.cat((corners.min(dim=1).values, corners.max(dim=1).values), dim=1) / scale
    boxes[0] = torch.tensor([W - 1.5, 0.2, 0.3, H - 0.5], dtype=dtype) / scale  # x2 < x1
    boxes[1] = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=dtype) / scale          # a point
    index = torch.randint(B, (R, 1), generator=generator).to(dtype)
    return torch.cat((index, boxes), dim=1)


# ---- references: torchvision's CPU kernels, one bin or one sample at a time --------------------------

def c_round(v):
    return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def roi_pool_reference(X, rois, ph, pw, scale):
    R, (B, C, H, W) = len(rois), X.shape
    out = torch.zeros(R, C, ph, pw, dtype=X.dtype)
    for n, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sw, sh, ew, eh = (c_round(v * scale) for v in (x1, y1, x2, y2))
        rw, rh = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
        for i in range(ph):
            for j in range(pw):
                hs = min(max(math.floor(i * rh / ph) + sh, 0), H)
                he = min(max(math.ceil((i + 1) * rh / ph) + sh, 0), H)
                ws = min(max(math.floor(j * rw / pw) + sw, 0), W)
                we = min(max(math.ceil((j + 1) * rw / pw) + sw, 0), W)
                if he > hs and we > ws:
                    out[n, :, i, j] = X[int(b), :, hs:he, ws:we].amax(dim=(-2, -1))
    return out


def bilinear_reference(image, y, x):
    """torchvision's bilinear_interpolate for one (C, H, W) image at (y, x)."""
    C, H, W = image.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return torch.zeros(C, dtype=image.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= H - 1:
        yl = yh = H - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= W - 1:
        xl = xh = W - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1 - ly, 1 - lx
    return hy * hx * image[:, yl, xl] + hy * lx * image[:, yl, xh] + ly * hx * image[:, yh, xl] + ly * lx * image[:, yh, xh]


def roi_align_reference(X, rois, ph, pw, scale, sampling_ratio, aligned):
    R, (B, C, H, W) = len(rois), X.shape
    out = torch.zeros(R, C, ph, pw, dtype=X.dtype)
    off = 0.5 if aligned else 0.0
    for n, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sw, sh, ew, eh = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = ew - sw, eh - sh
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        count = max(gh * gw, 1)
        for i in range(ph):
            for j in range(pw):
                total = torch.zeros(C, dtype=X.dtype)
                for iy in range(gh):
                    y = sh + i * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = sw + j * bw + (ix + 0.5) * bw / gw
                        total += bilinear_reference(X[int(b)], y, x)
                out[n, :, i, j] = total / count
    return out


def assert_same_values_and_grads(f_ours, f_ref, X, atol=1e-10, rtol=1e-8):
    ours_in, ref_in = X.clone().requires_grad_(), X.clone().requires_grad_()
    ours, ref = f_ours(ours_in), f_ref(ref_in)
    torch.testing.assert_close(ours, ref, atol=atol, rtol=rtol)
    grad_out = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, ours_in, grad_out)[0],
                               torch.autograd.grad(ref, ref_in, grad_out)[0], atol=atol, rtol=rtol)


# ---- tests -------------------------------------------------------------------------------------------

def test_roi_twins_export_the_same_names_and_signatures():
    assert scratch_roi.__all__ == fast_roi.__all__ == ["roi_align", "roi_pool"]
    for name in scratch_roi.__all__:
        assert getattr(scratch, name) is getattr(scratch_roi, name) and getattr(fast, name) is getattr(fast_roi, name)
        assert inspect.signature(getattr(scratch_roi, name)) == inspect.signature(getattr(fast_roi, name))


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_roi_pool_reproduces_the_books_example(ops):
    # D2L §13.8.2: a 4 x 4 feature map of a 40 x 40 image, two regions, spatial_scale 0.1
    X = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], dtype=torch.float32)
    expected = torch.tensor([[[[5.0, 6.0], [9.0, 10.0]]], [[[9.0, 11.0], [13.0, 15.0]]]])
    torch.testing.assert_close(ops.roi_pool(X, rois, output_size=(2, 2), spatial_scale=0.1), expected)
    # the same regions as a list of boxes per image
    torch.testing.assert_close(ops.roi_pool(X, [rois[:, 1:]], output_size=2, spatial_scale=0.1), expected)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("output_size, scale", [((2, 3), 1.0), ((3, 3), 0.5), ((1, 4), 0.25)])
def test_roi_pool_matches_the_kernel_loop(seed, output_size, scale):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(2, 3, 7, 9, generator=g, **FLOAT64)
    rois = random_rois(8, 2, 7, 9, g, scale=scale)
    expected = roi_pool_reference(X, rois, *output_size, scale)
    for ops in TWINS:
        torch.testing.assert_close(ops.roi_pool(X, rois, output_size, scale), expected)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_roi_align_matches_the_kernel_loop(seed, sampling_ratio, aligned, scale):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(2, 2, 6, 8, generator=g, **FLOAT64)
    rois = random_rois(6, 2, 6, 8, g, scale=scale)
    expected = roi_align_reference(X, rois, 3, 2, scale, sampling_ratio, aligned)
    for ops in TWINS:
        torch.testing.assert_close(ops.roi_align(X, rois, (3, 2), scale, sampling_ratio, aligned), expected)


def test_roi_align_by_hand():
    # bilinear interpolation is exact on a plane: a bin's mean of samples is the plane at the bin centre
    H, W = 6, 8
    ys, xs = torch.meshgrid(torch.arange(H, **FLOAT64), torch.arange(W, **FLOAT64), indexing="ij")
    X = torch.stack((xs, 10 * ys + 3))[None]                        # (1, 2, H, W): f = x and f = 10 y + 3
    rois = torch.tensor([[0, 1.0, 0.5, 5.0, 3.5]], **FLOAT64)       # inside the map, 4 x 3 cells
    for ops in TWINS:
        for aligned in (False, True):
            out = ops.roi_align(X, rois, (3, 2), sampling_ratio=2, aligned=aligned)
            shift = 0.5 if aligned else 0.0
            centres_x = 1.0 - shift + (torch.arange(2, **FLOAT64) + 0.5) * 2.0    # bins 2 wide
            centres_y = 0.5 - shift + (torch.arange(3, **FLOAT64) + 0.5) * 1.0    # bins 1 high
            torch.testing.assert_close(out[0, 0], centres_x.expand(3, 2))
            torch.testing.assert_close(out[0, 1], (10 * centres_y + 3)[:, None].expand(3, 2))
    # a constant map pools to the constant while the samples stay within one cell of the pixels
    # (x in [-1, W]); x from -0.8 to 5.5 on W = 5: bins 3.15 wide, samples at 1.05 steps, the last at 4.975
    sevens = torch.full((1, 3, 5, 5), 7.0)
    for ops in TWINS:
        torch.testing.assert_close(ops.roi_align(sevens, torch.tensor([[0.0, -0.8, 0.0, 5.5, 4.0]]), 2, sampling_ratio=3),
                                   torch.full((1, 3, 2, 2), 7.0))
        # to 5.8: the right bins' last samples land at 5.25 > W and count 0, so those bins get 2/3 of 7
        out = ops.roi_align(sevens, torch.tensor([[0.0, -0.8, 0.0, 5.8, 4.0]]), 2, sampling_ratio=3)
        torch.testing.assert_close(out[0, :, :, 1], torch.full((3, 2), 7.0 * 2 / 3))
        torch.testing.assert_close(out[0, :, :, 0], torch.full((3, 2), 7.0))
    # one sample per bin (1 x 1 bins, sampling_ratio 1) at the cell centre reads the 2 x 2 mean
    X = torch.arange(16.0).reshape(1, 1, 4, 4)
    for ops in TWINS:
        out = ops.roi_align(X, torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 2, sampling_ratio=1)
        torch.testing.assert_close(out, torch.tensor([[[[2.5, 3.5], [6.5, 7.5]]]]))


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
def test_roi_align_places_samples_as_the_kernel_does_on_the_border(ops):
    # bins 5/3 wide from x = -3.5: the kernel's order puts the middle bin's second sample at exactly
    # x = -1 in float32 (it counts); (i + 0.5) * (bin / grid) put it one rounding below -1 (it was 0)
    X = torch.arange(20.0).reshape(1, 1, 5, 4)
    rois = torch.tensor([[0, -3.0, 2, 2, 2]])
    expected = roi_align_reference(X.double(), rois.double(), 2, 3, 1.0, 3, True).float()
    torch.testing.assert_close(ops.roi_align(X, rois, (2, 3), 1.0, 3, True), expected)


def test_roi_twins_agree_in_values_and_gradients_and_pass_gradcheck():
    g = torch.Generator().manual_seed(7)
    X = torch.randn(2, 3, 5, 6, generator=g, **FLOAT64)
    rois = random_rois(5, 2, 5, 6, g, scale=0.5)
    for sampling_ratio, aligned in [(-1, False), (2, True)]:
        assert_same_values_and_grads(lambda x: fast.roi_align(x, rois, (2, 3), 0.5, sampling_ratio, aligned),
                                     lambda x: scratch.roi_align(x, rois, (2, 3), 0.5, sampling_ratio, aligned), X)
    assert_same_values_and_grads(lambda x: fast.roi_pool(x, rois, (2, 3), 0.5),
                                 lambda x: scratch.roi_pool(x, rois, (2, 3), 0.5), X)
    tiny = torch.randn(1, 2, 4, 4, generator=g, **FLOAT64, requires_grad=True)
    tiny_rois = torch.tensor([[0, 0.3, 0.6, 2.9, 3.2], [0, -0.7, 1.0, 1.5, 4.6]], **FLOAT64)
    for ops in TWINS:
        assert torch.autograd.gradcheck(lambda x: ops.roi_align(x, tiny_rois, 2, 1.0, 2, True), (tiny,))
        assert torch.autograd.gradcheck(lambda x: ops.roi_align(x, tiny_rois, (2, 1), 1.0, -1, False), (tiny,))
        assert torch.autograd.gradcheck(lambda x: ops.roi_pool(x, tiny_rois, 2, 1.0), (tiny,))  # distinct values: no ties


@pytest.mark.parametrize("ops", TWINS, ids=IDS)
def test_roi_edge_cases(ops):
    X = torch.randn(2, 3, 4, 4)
    assert ops.roi_align(X, torch.zeros(0, 5), 2).shape == (0, 3, 2, 2)
    assert ops.roi_pool(X, torch.zeros(0, 5), 2).shape == (0, 3, 2, 2)
    # a list of boxes per image, one image without boxes
    boxes = [torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])]
    as_list = ops.roi_align(X, boxes, 2, sampling_ratio=2)
    as_rows = ops.roi_align(X, torch.tensor([[1, 0.0, 0.0, 2.0, 2.0], [1, 1.0, 1.0, 3.0, 3.0]]), 2, sampling_ratio=2)
    torch.testing.assert_close(as_list, as_rows)
    # regions entirely off the map pool to 0
    far = torch.tensor([[0, 20.0, 20.0, 30.0, 30.0]])
    assert ops.roi_pool(X, far, 2).abs().sum() == 0 and ops.roi_align(X, far, 2).abs().sum() == 0
    # one-pixel maps work for both
    one = torch.randn(1, 2, 1, 1)
    torch.testing.assert_close(ops.roi_align(one, torch.tensor([[0, -0.5, -0.5, 0.5, 0.5]]), 2, sampling_ratio=2),
                               one.expand(1, 2, 2, 2))


def test_bad_arguments_say_what_is_wrong():
    X = torch.randn(2, 3, 4, 4)
    for ops in TWINS:
        with pytest.raises(ValueError, match=r"rois must have shape \(R, 5\)"):
            ops.roi_align(X, torch.zeros(3, 4), 2)
        with pytest.raises(ValueError, match=r"features must have shape \(B, C, H, W\)"):
            ops.roi_pool(X[0], torch.zeros(1, 5), 2)
        with pytest.raises(ValueError, match=r"batch indices outside \[0, 1\]"):
            ops.roi_pool(X, torch.tensor([[2.0, 0, 0, 1, 1]]), 2)
        with pytest.raises(ValueError, match=r"\(L, 4\) boxes per image"):
            ops.roi_align(X, [torch.zeros(2, 5)], 2)
        with pytest.raises(ValueError, match="output_size must be an int or a pair of ints"):
            ops.roi_align(X, torch.zeros(1, 5), (2, 0))


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_ops_match_torchvision(aligned):
    tv = import_torchvision()
    g = torch.Generator().manual_seed(9)
    X = torch.randn(2, 4, 12, 10, generator=g)
    rois = random_rois(16, 2, 12, 10, g, scale=0.25, dtype=torch.float32)
    for ops in TWINS:
        for sampling_ratio in (-1, 2):
            torch.testing.assert_close(ops.roi_align(X, rois, (3, 2), 0.25, sampling_ratio, aligned),
                                       tv.ops.roi_align(X, rois, (3, 2), 0.25, sampling_ratio, aligned), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ops.roi_pool(X, rois, (3, 2), 0.25), tv.ops.roi_pool(X, rois, (3, 2), 0.25))
