"""Scratch convolution, transposed convolution and pooling against PyTorch's kernels, values and gradients
(D2L §6.2-§6.5, §13.10), the book's examples, and the transposed convolution as the transpose of a
convolution's matrix."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from divekit.ops import fast, scratch

FLOAT64 = {"dtype": torch.float64}


def assert_same_values_and_grads(f_ours, f_ref, *inputs, atol=1e-10, rtol=1e-8):
    """Outputs and input gradients (for a random output gradient) of two functions agree."""
    ours_in = [x.clone().requires_grad_() for x in inputs]
    ref_in = [x.clone().requires_grad_() for x in inputs]
    ours, ref = f_ours(*ours_in), f_ref(*ref_in)
    torch.testing.assert_close(ours, ref, atol=atol, rtol=rtol)
    grad_out = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, ours_in, grad_out), torch.autograd.grad(ref, ref_in, grad_out)):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


@st.composite
def conv_case(draw):
    """A random (input shape, kernel, stride, padding) whose padded input holds the kernel."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    channels = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    batch = draw(st.integers(1, 2))
    return (batch, channels, (h, w)), (kh, kw), stride, (ph, pw)


@settings(max_examples=40, deadline=None)
@given(conv_case(), st.booleans())
def test_conv2d_matches_torch_on_random_shapes(case, with_bias):
    (batch, (c_in, c_out), (h, w)), kernel, stride, padding = case
    X = torch.randn(batch, c_in, h, w, **FLOAT64)
    W = torch.randn(c_out, c_in, *kernel, **FLOAT64)
    inputs = (X, W, torch.randn(c_out, **FLOAT64)) if with_bias else (X, W)
    assert_same_values_and_grads(lambda *a: scratch.conv2d(*a, stride=stride, padding=padding),
                                 lambda *a: F.conv2d(*a, stride=stride, padding=padding), *inputs)
    # the output-shape formula floor((n - k + 2p) / s) + 1, per axis (D2L §6.3)
    expected = [scratch.conv_output_size(n, k, p, s) for n, k, p, s in zip((h, w), kernel, padding, stride)]
    assert list(scratch.conv2d(X, W, stride=stride, padding=padding).shape) == [batch, c_out, *expected]
    assert fast.conv2d(X, W, stride=stride, padding=padding).shape == (batch, c_out, *expected)


@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))  # PyTorch allows at most half the window
    h, w = draw(st.integers(max(1, kh - 2 * ph), 9)), draw(st.integers(max(1, kw - 2 * pw), 9))
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), (kh, kw), stride, (ph, pw)


@settings(max_examples=40, deadline=None)
@given(pool_case(), st.booleans())
def test_pooling_matches_torch_on_random_shapes(case, count_include_pad):
    shape, kernel, stride, padding = case
    X = torch.randn(*shape, **FLOAT64)  # distinct values: no ties for the max to split its gradient over
    assert_same_values_and_grads(lambda x: scratch.max_pool2d(x, kernel, stride, padding),
                                 lambda x: F.max_pool2d(x, kernel, stride, padding), X)
    include = dict(count_include_pad=count_include_pad)
    assert_same_values_and_grads(lambda x: scratch.avg_pool2d(x, kernel, stride, padding, **include),
                                 lambda x: F.avg_pool2d(x, kernel, stride, padding, **include), X)
    assert_same_values_and_grads(lambda x: fast.avg_pool2d(x, kernel, stride, padding, **include),
                                 lambda x: scratch.avg_pool2d(x, kernel, stride, padding, **include), X)


def test_corr2d_is_the_books_example_and_matches_fast():
    # D2L §6.2.1: X = 0..8 as 3x3, K = 0..3 as 2x2 -> [[19, 25], [37, 43]]
    X = torch.arange(9.0).reshape(3, 3)
    K = torch.arange(4.0).reshape(2, 2)
    torch.testing.assert_close(scratch.corr2d(X, K), torch.tensor([[19.0, 25.0], [37.0, 43.0]]))
    X, K = torch.randn(7, 5, **FLOAT64), torch.randn(3, 2, **FLOAT64)
    brute = torch.stack([torch.stack([(X[i:i + 3, j:j + 2] * K).sum() for j in range(4)]) for i in range(5)])
    torch.testing.assert_close(scratch.corr2d(X, K), brute)
    torch.testing.assert_close(fast.corr2d(X, K), brute)
    with pytest.raises(ValueError, match="2-D image and a 2-D kernel"):
        scratch.corr2d(X[None], K)


def test_edge_detection_kernel_marks_the_band_edges():
    # D2L §6.2.3: a black band in a white image, K = [1, -1] -> 1 at white-to-black, -1 at black-to-white
    X = torch.ones(6, 8)
    X[:, 2:6] = 0
    Y = scratch.corr2d(X, torch.tensor([[1.0, -1.0]]))
    expected_row = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    torch.testing.assert_close(Y, expected_row.expand(6, 7))
    assert scratch.corr2d(X.T, torch.tensor([[1.0, -1.0]])).abs().sum() == 0  # it sees only vertical edges


def test_multi_channel_and_1x1_convolution_follow_the_book():
    # D2L §6.4.1: two input channels are summed -> [[56, 72], [104, 120]]
    X = torch.stack([torch.arange(9.0).reshape(3, 3), torch.arange(1.0, 10.0).reshape(3, 3)])
    K = torch.stack([torch.arange(4.0).reshape(2, 2), torch.arange(1.0, 5.0).reshape(2, 2)])
    torch.testing.assert_close(scratch.conv2d(X[None], K[None])[0, 0], torch.tensor([[56.0, 72.0], [104.0, 120.0]]))
    # §6.4.2: stacking K, K + 1, K + 2 gives three output channels, one per kernel
    K3 = torch.stack([K, K + 1, K + 2])
    out = scratch.conv2d(X[None], K3)[0]
    assert out.shape == (3, 2, 2)
    torch.testing.assert_close(out[1], scratch.conv2d(X[None], (K + 1)[None])[0, 0])
    # §6.4.3: a 1x1 convolution is a matrix product over channels at every pixel
    X = torch.randn(3, 3, 3, **FLOAT64)
    W = torch.randn(2, 3, 1, 1, **FLOAT64)
    as_matmul = (W.reshape(2, 3) @ X.reshape(3, 9)).reshape(2, 3, 3)
    torch.testing.assert_close(scratch.conv2d(X[None], W)[0], as_matmul)


def test_padding_and_stride_shapes_from_the_book():
    # D2L §6.3: 8x8 input
    X = torch.rand(1, 1, 8, 8)
    assert scratch.conv2d(X, torch.rand(1, 1, 3, 3), padding=1).shape == (1, 1, 8, 8)
    assert scratch.conv2d(X, torch.rand(1, 1, 5, 3), padding=(2, 1)).shape == (1, 1, 8, 8)
    assert scratch.conv2d(X, torch.rand(1, 1, 3, 3), padding=1, stride=2).shape == (1, 1, 4, 4)
    assert scratch.conv2d(X, torch.rand(1, 1, 3, 5), padding=(0, 1), stride=(3, 4)).shape == (1, 1, 2, 2)
    assert [scratch.conv_output_size(8, 3, 1, 2), scratch.conv_output_size(8, 5, 0, 3)] == [4, 2]


def test_pooling_examples_from_the_book():
    # D2L §6.5.1: 2x2 pooling of 0..8 -> max [[4, 5], [7, 8]], mean [[2, 3], [5, 6]] (stride 1)
    X = torch.arange(9.0).reshape(1, 1, 3, 3)
    torch.testing.assert_close(scratch.max_pool2d(X, 2, 1)[0, 0], torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
    torch.testing.assert_close(scratch.avg_pool2d(X, 2, 1)[0, 0], torch.tensor([[2.0, 3.0], [5.0, 6.0]]))
    # §6.5.2: 0..15 as 4x4; a 3x3 window defaults to stride 3 -> [[10]]; padding 1, stride 2 -> [[5, 7], [13, 15]]
    X = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(scratch.max_pool2d(X, 3), torch.tensor([[[[10.0]]]]))
    torch.testing.assert_close(scratch.max_pool2d(X, 3, padding=1, stride=2)[0, 0], torch.tensor([[5.0, 7.0], [13.0, 15.0]]))
    # §6.5.3: pooling works on each channel separately
    X2 = torch.cat([X, X + 1], dim=1)
    assert scratch.max_pool2d(X2, 3, padding=1, stride=2).shape == (1, 2, 2, 2)
    # padding counts in the mean's divisor unless count_include_pad=False: corner window holds 0, 1, 4, 5
    corner = scratch.avg_pool2d(X, 2, 2, 1)[0, 0, 0, 0]
    torch.testing.assert_close(corner, torch.tensor(0.0 / 4))
    torch.testing.assert_close(scratch.avg_pool2d(X, 3, 2, 1, count_include_pad=False)[0, 0, 0, 0], torch.tensor(10.0 / 4))


def test_bad_shapes_and_arguments_say_what_is_wrong():
    X = torch.rand(1, 2, 5, 5)
    with pytest.raises(ValueError, match="does not fit input"):
        scratch.conv2d(X, torch.rand(4, 3, 3, 3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        scratch.conv2d(X, torch.rand(4, 2, 7, 7))
    with pytest.raises(ValueError, match=r"conv2d takes a batch of images \(B, C, H, W\) or one image \(C, H, W\), "
                                         r"got shape \(2, 5, 5, 1, 1\)"):
        scratch.conv2d(X[0, ..., None, None], torch.rand(4, 2, 3, 3))
    with pytest.raises(ValueError, match="at most half the window"):
        scratch.max_pool2d(X, 2, padding=2)
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        scratch.conv2d(X, torch.rand(4, 2, 3, 3), stride=(1, 2, 3))
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        scratch.conv2d(X, torch.rand(4, 2, 3, 3), stride=1.5)
    for conv in (scratch.conv2d, scratch.conv_transpose2d):  # torch refuses a bias it would have to broadcast
        weight = torch.rand(2, 4, 3, 3) if conv is scratch.conv_transpose2d else torch.rand(4, 2, 3, 3)
        with pytest.raises(ValueError, match=r"one value per output channel, shape \(4,\); got \(1,\)"):
            conv(X, weight, torch.rand(1))


def test_layers_take_numpy_sizes_and_empty_batches_as_torch_does():
    import numpy as np

    torch.manual_seed(0)
    for ours, theirs in ((scratch.Conv2d(3, 4, np.int64(3)), nn.Conv2d(3, 4, np.int64(3))),
                         (scratch.ConvTranspose2d(3, 4, np.int64(3), stride=2), nn.ConvTranspose2d(3, 4, 3, stride=2)),
                         (scratch.MaxPool2d(np.int64(3)), nn.MaxPool2d(3)), (scratch.Flatten(), nn.Flatten())):
        theirs.load_state_dict(ours.state_dict())
        for batch in (torch.rand(2, 3, 7, 7), torch.rand(0, 3, 7, 7)):
            torch.testing.assert_close(ours(batch), theirs(batch))


@pytest.mark.parametrize("kernel_size, stride, padding, bias", [(5, 1, 2, True), ((3, 2), (2, 1), (1, 0), False)])
def test_conv2d_layer_twins_share_state_dicts_and_outputs(kernel_size, stride, padding, bias):
    torch.manual_seed(0)
    ours = scratch.Conv2d(3, 4, kernel_size, stride, padding, bias=bias)
    torch.manual_seed(0)
    ref = nn.Conv2d(3, 4, kernel_size, stride, padding, bias=bias)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict())  # the same draws from the same seed
    X = torch.randn(2, 3, 9, 8)
    torch.testing.assert_close(ours(X), ref(X), atol=1e-5, rtol=1e-5)
    ours(X).square().sum().backward()
    ref(X).square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)
    # the default initialisation has nn.Conv2d's range U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / (3 * ours.weight.shape[-2] * ours.weight.shape[-1]) ** 0.5
    assert ours.weight.abs().max() <= bound and ours.weight.std() > bound / 3


@pytest.mark.parametrize("dilation, groups", [(2, 1), ((1, 3), 1), (1, 2), (2, 4)])
def test_dilated_and_grouped_convolutions_match_torch(dilation, groups):
    X = torch.randn(2, 4, 11, 12, **FLOAT64)
    W = torch.randn(8, 4 // groups, 3, 2, **FLOAT64)
    b = torch.randn(8, **FLOAT64)
    assert_same_values_and_grads(lambda *a: scratch.conv2d(*a, 2, 1, dilation, groups),
                                 lambda *a: F.conv2d(*a, 2, 1, dilation, groups), X, W, b)
    torch.testing.assert_close(scratch.conv2d(X, W, b, 2, 1, dilation, groups), fast.conv2d(X, W, b, 2, 1, dilation, groups))
    torch.manual_seed(0)
    ours = scratch.Conv2d(4, 8, (3, 2), 2, 1, dilation, groups)
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 8, (3, 2), 2, 1, dilation, groups)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict())
    torch.testing.assert_close(ours(X.float()), ref(X.float()), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="must both be divisible by groups=3"):
        scratch.Conv2d(4, 8, 3, groups=3)


def test_pool_layer_twins_agree():
    X = torch.randn(2, 3, 7, 6)
    torch.testing.assert_close(scratch.MaxPool2d(3, 2, 1)(X), fast.MaxPool2d(3, 2, 1)(X))
    torch.testing.assert_close(scratch.AvgPool2d(2)(X), fast.AvgPool2d(2)(X))
    torch.testing.assert_close(scratch.AvgPool2d(3, 2, 1)(X), fast.AvgPool2d(3, 2, 1)(X))


def _pool_axes():
    """Every (size, kernel, stride, padding) of one axis with n 1-8, k 1-4, s 1-3, p 0..k//2."""
    return [(n, k, s, p) for n in range(1, 9) for k in range(1, 5) for s in range(1, 4) for p in range(k // 2 + 1)]


def test_ceil_mode_pooling_matches_torch_on_every_small_shape():
    """ceil_mode both ways, count_include_pad both ways, odd and even sizes: values and gradients as
    F.max_pool2d and F.avg_pool2d, and the same shapes refused (torch: RuntimeError, scratch: ValueError)."""
    axes = _pool_axes()
    torch.manual_seed(0)
    checked = refused = 0
    for i, (h, kh, sh, ph) in enumerate(axes):
        w, kw, sw, pw = axes[(7 * i + 3) % len(axes)]  # a different setting for the width
        X = torch.randn(2, 2, h, w, **FLOAT64)  # distinct values: no ties for the max to split its gradient over
        kernel, stride, padding = (kh, kw), (sh, sw), (ph, pw)
        for ceil_mode in (False, True):
            try:
                F.max_pool2d(X, kernel, stride, padding, ceil_mode=ceil_mode)
            except RuntimeError:  # no window fits
                with pytest.raises(ValueError, match="larger than the padded input"):
                    scratch.max_pool2d(X, kernel, stride, padding, ceil_mode=ceil_mode)
                with pytest.raises(ValueError, match="larger than the padded input"):
                    scratch.avg_pool2d(X, kernel, stride, padding, ceil_mode=ceil_mode)
                refused += 1
                continue
            assert_same_values_and_grads(lambda x: scratch.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode),
                                         lambda x: F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode), X)
            for count_include_pad in (False, True):
                assert_same_values_and_grads(
                    lambda x: scratch.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad),
                    lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad), X)
            checked += 1
    assert checked > 300 and refused > 10  # both kinds of shape were seen


def test_ceil_mode_divides_an_overhanging_window_by_what_it_covers():
    # one row 0..5, windows of 3 columns, stride 2, padding 1: the padded row is [pad, 0..5, pad]; rounding up
    # adds a 4th window starting at 5 that covers 5, the right padding and one column beyond it
    X = torch.arange(6.0).reshape(1, 1, 1, 6)
    args = ((1, 3), (1, 2), (0, 1))
    torch.testing.assert_close(scratch.max_pool2d(X, *args)[0, 0, 0], torch.tensor([1.0, 3.0, 5.0]))
    torch.testing.assert_close(scratch.max_pool2d(X, *args, ceil_mode=True)[0, 0, 0],
                               torch.tensor([1.0, 3.0, 5.0, 5.0]))
    # with count_include_pad the padding counts in the divisor (1/3 in the first window, 5/2 in the last), the
    # column past the padding never does; without it only the real entries count (1/2 and 5/1)
    torch.testing.assert_close(scratch.avg_pool2d(X, *args, ceil_mode=True)[0, 0, 0],
                               torch.tensor([1 / 3, 2.0, 4.0, 5 / 2]))
    torch.testing.assert_close(scratch.avg_pool2d(X, *args, count_include_pad=False, ceil_mode=True)[0, 0, 0],
                               torch.tensor([1 / 2, 2.0, 4.0, 5.0]))
    for cip in (True, False):
        torch.testing.assert_close(scratch.avg_pool2d(X, *args, count_include_pad=cip, ceil_mode=True),
                                   F.avg_pool2d(X, *args, ceil_mode=True, count_include_pad=cip))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_max_pooling_of_integers_pads_with_the_types_least_value(dtype):
    X = torch.arange(25).reshape(1, 1, 5, 5).to(dtype)                        # uint8: no -inf, no negatives
    for kwargs in (dict(ceil_mode=True), dict(padding=1), dict(padding=1, ceil_mode=True)):
        out = scratch.max_pool2d(X, 2, 2, **kwargs)
        assert out.dtype == dtype and torch.equal(out, F.max_pool2d(X, 2, 2, **kwargs)), kwargs


def test_ceil_mode_drops_a_last_window_that_would_start_in_the_padding():
    # H = 5, k = 2, s = 2, p = 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th would start at padded
    # row 6, the right padding ((4 - 1) * 2 >= 5 + 1): torch drops it, leaving floor mode's 3; with H = 6 the
    # 4th window starts on the last row (6 < 6 + 1) and stays
    for h, rows in ((5, 3), (6, 4)):
        X = torch.randn(1, 1, h, h, **FLOAT64)
        for ours, ref in ((scratch.max_pool2d, F.max_pool2d), (scratch.avg_pool2d, F.avg_pool2d)):
            out = ours(X, 2, 2, 1, ceil_mode=True)
            assert out.shape == ref(X, 2, 2, 1, ceil_mode=True).shape == (1, 1, rows, rows)
            torch.testing.assert_close(out, ref(X, 2, 2, 1, ceil_mode=True))
    # the same with stride 3: H = 4, k = 3, p = 1 -> ceil(3 / 3) + 1 = 2 windows, the 2nd starts at padded row 3
    # (inside: 3 < 4 + 1); H = 5, k = 2, s = 3, p = 1 -> ceil(5 / 3) + 1 = 3, the 3rd would start at 6 >= 6
    for h, k, rows in ((4, 3, 2), (5, 2, 2)):
        X = torch.randn(1, 1, h, h, **FLOAT64)
        assert scratch.max_pool2d(X, k, 3, 1, ceil_mode=True).shape == (1, 1, rows, rows)
        torch.testing.assert_close(scratch.avg_pool2d(X, k, 3, 1, True, False), F.avg_pool2d(X, k, 3, 1, True, False))


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_ceil_mode_pooling_passes_gradcheck(count_include_pad):
    # 6 x 7 with 3x3 windows, stride 2, padding 1: a last row and column of windows hang over the edge
    X = torch.randn(1, 2, 6, 7, **FLOAT64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: scratch.avg_pool2d(x, 3, 2, 1, True, count_include_pad), (X,))
    assert torch.autograd.gradcheck(lambda x: scratch.max_pool2d(x, 3, 2, 1, ceil_mode=True), (X,))
    assert torch.autograd.gradcheck(lambda x: scratch.avg_pool2d(x, (2, 3), (3, 2), (1, 0), True, count_include_pad,
                                                                 divisor_override=5), (X,))


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},  # GoogLeNet-style
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": (2, 3), "stride": (3, 1), "padding": (1, 0), "ceil_mode": True},
    {"kernel_size": 2, "stride": 2, "ceil_mode": False},
])
@pytest.mark.parametrize("size", [(7, 7), (8, 6), (5, 9)])
def test_pool_layers_take_torchs_arguments_and_match_torchs_layers(kwargs, size):
    X = torch.randn(2, 3, *size, **FLOAT64)
    pairs = [(scratch.MaxPool2d(**kwargs), nn.MaxPool2d(**kwargs)),
             (scratch.MaxPool2d(**kwargs, dilation=2), nn.MaxPool2d(**kwargs, dilation=2)),
             (scratch.AvgPool2d(**kwargs), nn.AvgPool2d(**kwargs)),
             (scratch.AvgPool2d(**kwargs, count_include_pad=False), nn.AvgPool2d(**kwargs, count_include_pad=False)),
             (scratch.AvgPool2d(**kwargs, divisor_override=4), nn.AvgPool2d(**kwargs, divisor_override=4))]
    for ours, ref in pairs:
        assert_same_values_and_grads(ours, ref, X)
    # the fast twins are torch's layers: the same arguments build them, positionally too
    args = kwargs["kernel_size"], kwargs["stride"], kwargs.get("padding", 0)
    torch.testing.assert_close(scratch.AvgPool2d(*args, True, False)(X), fast.AvgPool2d(*args, True, False)(X))
    torch.testing.assert_close(scratch.MaxPool2d(*args, 1, False, True)(X), fast.MaxPool2d(*args, 1, False, True)(X))


def test_pool_layers_say_which_arguments_they_do_not_take():
    scratch.MaxPool2d(3, ceil_mode=True, return_indices=False)
    with pytest.raises(ValueError, match="does not return indices"):
        scratch.MaxPool2d(3, 2, return_indices=True)
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        scratch.AvgPool2d(2, divisor_override=0)(torch.rand(1, 1, 4, 4))
    assert repr(scratch.MaxPool2d(3, 2, 1, ceil_mode=True)) == \
        "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)"


@pytest.mark.parametrize("output_size", [1, (1, 1), (2, 3), (3, 4), (7, 6)])
def test_adaptive_average_pooling_matches_torch(output_size):
    X = torch.randn(2, 3, 7, 6, **FLOAT64)
    assert_same_values_and_grads(lambda x: scratch.adaptive_avg_pool2d(x, output_size),
                                 lambda x: F.adaptive_avg_pool2d(x, output_size), X)
    torch.testing.assert_close(scratch.AdaptiveAvgPool2d(output_size)(X), fast.AdaptiveAvgPool2d(output_size)(X))


@pytest.mark.parametrize("output_size", [1, (1, 1), (2, 3), (3, 4), (7, 6)])
def test_adaptive_max_pooling_matches_torch(output_size):
    X = torch.randn(2, 3, 7, 6, **FLOAT64)  # no ties: the gradient goes to one entry in both
    assert_same_values_and_grads(lambda x: scratch.adaptive_max_pool2d(x, output_size),
                                 lambda x: F.adaptive_max_pool2d(x, output_size), X)
    torch.testing.assert_close(scratch.AdaptiveMaxPool2d(output_size)(X), fast.AdaptiveMaxPool2d(output_size)(X))
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d takes a batch of images \(B, C, H, W\) or one image "
                                         r"\(C, H, W\), got shape \(7, 6\)"):
        scratch.adaptive_max_pool2d(X[0, 0], output_size)


def test_one_image_without_a_batch_axis_is_taken_as_torchs_layers_take_it():
    torch.manual_seed(0)
    X = torch.randn(2, 6, 5, **FLOAT64)  # (C, H, W)
    layers = [lambda ops: ops.Conv2d(2, 3, 3, padding=1), lambda ops: ops.ConvTranspose2d(2, 3, 3, stride=2),
              lambda ops: ops.MaxPool2d(2), lambda ops: ops.AvgPool2d(3, 1, 1),
              lambda ops: ops.AdaptiveAvgPool2d((2, 3)), lambda ops: ops.AdaptiveMaxPool2d(1)]
    for make in layers:
        torch.manual_seed(1)
        ours = make(scratch).double()
        torch.manual_seed(1)
        theirs = make(fast).double()
        out = ours(X)
        assert out.dim() == 3
        torch.testing.assert_close(out, theirs(X))


def test_learning_the_edge_kernel_recovers_it():
    # D2L §6.2.4: 10 steps of gradient descent on the summed squared error, lr 3e-2
    from divekit.experiments.cnn import learn_edge_kernel

    for impl in ("scratch", "fast"):
        torch.manual_seed(0)
        kernel, losses = learn_edge_kernel(impl, lr=3e-2, iterations=10)
        assert losses[-1] < 0.2 < losses[0]
        torch.testing.assert_close(kernel, torch.tensor([[1.0, -1.0]]), atol=0.15, rtol=0)


# -- transposed convolution (D2L §13.10) --------------------------------------------------------


@st.composite
def transposed_case(draw):
    """A random (shape, kernel, stride, padding, output padding, dilation, groups) that torch accepts."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    size = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    # padding may remove at most what leaves one output row and column
    padding = tuple(draw(st.integers(0, max(0, ((n - 1) * s + d * (k - 1) + op) // 2)))
                    for n, s, d, k, op in zip(size, stride, dilation, kernel, output_padding))
    groups = draw(st.sampled_from([1, 2]))
    channels = (groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2)))
    return (draw(st.integers(1, 2)), channels, size), kernel, stride, padding, output_padding, dilation, groups


@settings(max_examples=50, deadline=None)
@given(transposed_case(), st.booleans())
def test_conv_transpose2d_matches_torch_on_random_shapes(case, with_bias):
    (batch, (c_in, c_out), size), kernel, stride, padding, output_padding, dilation, groups = case
    X = torch.randn(batch, c_in, *size, **FLOAT64)
    W = torch.randn(c_in, c_out // groups, *kernel, **FLOAT64)
    inputs = (X, W, torch.randn(c_out, **FLOAT64)) if with_bias else (X, W)
    args = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    assert_same_values_and_grads(lambda *a: scratch.conv_transpose2d(*a, **args),
                                 lambda *a: F.conv_transpose2d(*a, **args), *inputs)
    expected = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1
                for n, s, p, d, k, op in zip(size, stride, padding, dilation, kernel, output_padding)]
    assert fast.conv_transpose2d(X, W, **args).shape == (batch, c_out, *expected)


def test_conv_transpose2d_passes_gradcheck():
    X = torch.randn(1, 2, 3, 4, **FLOAT64, requires_grad=True)
    W = torch.randn(2, 3, 3, 2, **FLOAT64, requires_grad=True)
    b = torch.randn(3, **FLOAT64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: scratch.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                                              output_padding=1), (X, W, b))


def test_the_books_examples_of_section_13_10():
    X = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    for ops in (scratch, fast):  # §13.10.1: each input entry spreads a scaled copy of the kernel
        torch.testing.assert_close(ops.trans_conv(X, K), torch.tensor([[0.0, 0.0, 1.0], [0.0, 4.0, 6.0],
                                                                       [4.0, 12.0, 9.0]]))
    X4, K4 = X.reshape(1, 1, 2, 2), K.reshape(1, 1, 2, 2)
    # §13.10.2: padding removes the outer rows and columns, stride spaces the copies apart
    torch.testing.assert_close(scratch.conv_transpose2d(X4, K4, padding=1), torch.tensor([[[[4.0]]]]))
    torch.testing.assert_close(scratch.conv_transpose2d(X4, K4, stride=2)[0, 0], torch.tensor(
        [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 2.0, 3.0], [0.0, 2.0, 0.0, 3.0], [4.0, 6.0, 6.0, 9.0]]))
    # a transposed convolution with a convolution's hyperparameters gives back the convolution's input shape
    X = torch.rand(1, 10, 16, 16)
    conv = scratch.Conv2d(10, 20, kernel_size=5, padding=2, stride=3)
    tconv = scratch.ConvTranspose2d(20, 10, kernel_size=5, padding=2, stride=3)
    assert tconv(conv(X)).shape == X.shape


def test_a_convolution_is_a_matrix_and_the_transposed_convolution_its_transpose():
    X = torch.arange(9.0).reshape(3, 3)
    K = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    M = scratch.conv_matrix(K, (3, 3))
    # the book's kernel2matrix, written out (D2L §13.10.3)
    k = torch.tensor([1.0, 2.0, 0.0, 3.0, 4.0])
    book = torch.zeros(4, 9)
    book[0, :5], book[1, 1:6], book[2, 3:8], book[3, 4:] = k, k, k, k
    torch.testing.assert_close(M, book)
    Y = scratch.corr2d(X, K)
    torch.testing.assert_close(M @ X.reshape(-1), Y.reshape(-1))
    torch.testing.assert_close(M.T @ Y.reshape(-1), scratch.trans_conv(Y, K).reshape(-1))
    # and with stride and padding: <conv(X), Y> = <X, conv_transpose(Y)>, the defining property of a transpose
    X = torch.randn(5, 7, **FLOAT64)
    K = torch.randn(3, 3, **FLOAT64)
    M = fast.conv_matrix(K, (5, 7), stride=2, padding=1)
    conv = F.conv2d(X[None, None], K[None, None], stride=2, padding=1)[0, 0]
    torch.testing.assert_close(M @ X.reshape(-1), conv.reshape(-1))
    Y = torch.randn_like(conv)
    back = scratch.conv_transpose2d(Y[None, None], K[None, None], stride=2, padding=1, output_padding=(0, 0))[0, 0]
    torch.testing.assert_close(M.T @ Y.reshape(-1), back.reshape(-1))
    assert back.shape == X.shape


@pytest.mark.parametrize("kernel_size, stride, padding, output_padding, bias", [
    (2, 1, 0, 0, True), (4, 2, 1, 0, False), ((3, 2), (2, 3), (1, 0), (1, 2), True)])
def test_conv_transpose_layer_twins_start_alike_and_share_state_dicts(kernel_size, stride, padding, output_padding,
                                                                       bias):
    torch.manual_seed(0)
    ours = scratch.ConvTranspose2d(4, 6, kernel_size, stride, padding, output_padding, bias=bias)
    torch.manual_seed(0)
    theirs = nn.ConvTranspose2d(4, 6, kernel_size, stride, padding, output_padding, bias=bias)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, tensor in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], tensor)  # the same draws from the same stream
    X = torch.randn(2, 4, 5, 6)
    torch.testing.assert_close(ours(X), theirs(X), atol=1e-5, rtol=1e-5)
    assert fast.ConvTranspose2d is nn.ConvTranspose2d


def test_bad_transposed_convolutions_say_what_is_wrong():
    X = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"weight \(C, O/groups, kh, kw\)"):
        scratch.conv_transpose2d(X, torch.zeros(3, 1, 2, 2))
    with pytest.raises(ValueError, match="output_padding .* must be smaller than the stride"):
        scratch.conv_transpose2d(X, torch.zeros(2, 1, 2, 2), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="removes the whole"):
        scratch.conv_transpose2d(X, torch.zeros(2, 1, 1, 1), padding=2)
    with pytest.raises(ValueError, match="trans_conv takes a 2-D image"):
        scratch.trans_conv(X, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="divisible by groups=2"):
        scratch.ConvTranspose2d(3, 4, 2, groups=2)
