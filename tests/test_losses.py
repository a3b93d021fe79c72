"""L1, Huber and sigmoid binary cross-entropy losses against PyTorch's own (D2L §1.2.3, §1.3.1)."""

import pytest
import torch
import torch.nn.functional as F
from test_ops_linear import assert_same_values_and_grads

from divekit.ops import fast, scratch
from divekit.viz.losses import loss_curves, plot_loss_curves

TIGHT = {"atol": 1e-10, "rtol": 1e-10}  # float64 inputs throughout


def regression_pair():
    """Targets (8, 5) and predictions whose errors spread evenly over [-4, 4] (in random places),
    so both Huber pieces are used, and none sits on |error| = delta or 0."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(8, 5, generator=g, dtype=torch.float64)
    errors = torch.linspace(-4, 4, 40, dtype=torch.float64)[torch.randperm(40, generator=g)].reshape(8, 5)
    return y + errors, y


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
def test_l1_matches_torch(ops):
    y_hat, y = regression_pair()
    assert_same_values_and_grads(ops.l1_loss, lambda a, b: F.l1_loss(a, b, reduction="none"), y_hat, y, **TIGHT)


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
@pytest.mark.parametrize("delta", [0.5, 1.0, 2.5])
def test_huber_matches_torch(ops, delta):
    y_hat, y = regression_pair()
    error = (y_hat - y).abs()
    assert (error < delta).any() and (error > delta).any(), "the test must use both pieces"
    assert_same_values_and_grads(lambda a, b: ops.huber_loss(a, b, delta),
                                 lambda a, b: F.huber_loss(a, b, reduction="none", delta=delta), y_hat, y, **TIGHT)


def test_huber_pieces_and_gradient_clipping():
    """Half the squared error inside delta, delta * (|e| - delta / 2) outside; gradient clip(e, ±delta)."""
    y_hat = torch.tensor([-5.0, -2.0, -0.5, 0.0, 0.5, 2.0, 5.0], dtype=torch.float64, requires_grad=True)
    loss = scratch.huber_loss(y_hat, torch.zeros(7, dtype=torch.float64), delta=2.0)
    expected = torch.tensor([8.0, 2.0, 0.125, 0.0, 0.125, 2.0, 8.0], dtype=torch.float64)
    torch.testing.assert_close(loss.detach(), expected)
    loss.sum().backward()
    torch.testing.assert_close(y_hat.grad, y_hat.detach().clamp(-2, 2))


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
def test_huber_rejects_a_non_positive_delta(ops):
    with pytest.raises(ValueError, match="delta > 0"):
        ops.huber_loss(torch.zeros(3), torch.zeros(3), delta=0.0)


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
def test_sigmoid_bce_matches_torch(ops):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, 2, (8, 5), generator=g).double()
    y[0] = torch.rand(5, generator=g, dtype=torch.float64)  # soft labels are allowed too
    assert_same_values_and_grads(ops.binary_cross_entropy_with_logits,
                                 lambda o, t: F.binary_cross_entropy_with_logits(o, t, reduction="none"), logits, y, **TIGHT)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_bce_is_finite_and_exact_for_huge_logits(dtype):
    logits = torch.tensor([1000.0, -1000.0, 1000.0, -1000.0, 0.0, 0.0], dtype=dtype, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0], dtype=dtype)
    ours = scratch.binary_cross_entropy_with_logits(logits, y)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    ref_logits = logits.detach().clone().requires_grad_()
    ref = F.binary_cross_entropy_with_logits(ref_logits, y, reduction="none")
    (ref_grad,) = torch.autograd.grad(ref.sum(), ref_logits)
    log2 = torch.log(torch.tensor(2.0, dtype=dtype))
    expected = torch.stack([torch.tensor(0.0, dtype=dtype), torch.tensor(0.0, dtype=dtype),
                            torch.tensor(1000.0, dtype=dtype), torch.tensor(1000.0, dtype=dtype), log2, log2])
    assert torch.isfinite(ours).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(ours.detach(), expected)
    torch.testing.assert_close(ours.detach(), ref.detach())
    # dl/do = sigmoid(o) - y: 0, 0, 1, -1, and 1/2 - y at o = 0 (where max(o, 0) has a kink)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 1.0, -1.0, 0.5, -0.5], dtype=dtype))
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize(
    "loss",
    [scratch.l1_loss, scratch.huber_loss, scratch.binary_cross_entropy_with_logits],
    ids=["l1", "huber", "bce"],
)
def test_gradcheck(loss):
    y_hat, y = regression_pair()  # |y_hat - y| is at least 0.07 from the kinks at 0 and delta = 1
    assert torch.autograd.gradcheck(loss, (y_hat.requires_grad_(), y.requires_grad_()))


def test_targets_are_reshaped_like_predictions():
    y_hat, y = torch.randn(4, 1), torch.randn(4)
    for name in ("l1_loss", "huber_loss", "binary_cross_entropy_with_logits", "squared_loss"):
        assert getattr(scratch, name)(y_hat, y).shape == (4, 1)
        torch.testing.assert_close(getattr(scratch, name)(y_hat, y), getattr(fast, name)(y_hat, y))


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_loss_curves_of_the_figure(impl):
    y_hat, curves = loss_curves(impl, span=3.0, delta=1.0, num_points=61)  # y' = -3, -2.9, ..., 3
    l2, l1, huber = curves.values()
    torch.testing.assert_close(l2["gradient"], y_hat)  # d/dy' (y'^2 / 2) = y'
    torch.testing.assert_close(l1["gradient"], torch.sign(y_hat))
    torch.testing.assert_close(huber["gradient"], y_hat.clamp(-1, 1))
    for curve in curves.values():
        torch.testing.assert_close(curve["likelihood"], torch.exp(-curve["loss"]))
        assert float(curve["likelihood"].max()) == pytest.approx(1.0)  # at y' = y, where every loss is 0
    fig = plot_loss_curves(y_hat, curves)
    assert [ax.get_title() for ax in fig.axes] == ["L2 loss", "L1 loss", "Huber loss (delta = 1)"]
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()][:3] == ["loss", "likelihood", "gradient"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_scratch_cross_entropy_takes_16_bit_logits_in_float32_as_autocast_does(dtype):
    logits = (torch.randn(64, 10) * 8).to(dtype)
    y = torch.randint(10, (64,))
    loss = scratch.cross_entropy(logits, y)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float(), y, reduction="none"))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the trainer's --precision bf16
        torch.testing.assert_close(scratch.cross_entropy(logits, y), fast.cross_entropy(logits, y))


@pytest.mark.parametrize("shape", [(5,), (2, 4, 5), (3, 2, 2, 5)])
def test_cross_entropy_twins_take_the_classes_from_the_last_axis(shape):
    logits = torch.randn(*shape, dtype=torch.float64)
    y = torch.randint(5, shape[:-1])
    expected = F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1), reduction="none").reshape(y.shape)
    for ops in (scratch, fast):
        assert_same_values_and_grads(lambda x: ops.cross_entropy(x, y),
                                     lambda x: F.cross_entropy(x.reshape(-1, 5), y.reshape(-1), reduction="none")
                                     .reshape(y.shape), logits)
        torch.testing.assert_close(ops.cross_entropy(logits, y), expected)


@pytest.mark.parametrize("ops", [scratch, fast])
def test_targets_laid_out_otherwise_than_the_predictions_are_refused(ops):
    logits = torch.randn(2, 3)
    y = (torch.rand(2, 3) > 0.5).float()
    with pytest.raises(ValueError, match=r"targets of shape \(3, 2\) do not match predictions of shape \(2, 3\)"):
        ops.binary_cross_entropy_with_logits(logits, y.T)  # torch refuses it too
    with pytest.raises(ValueError, match="do not match"):
        ops.squared_loss(torch.randn(4, 1), torch.randn(2, 2))
    torch.testing.assert_close(ops.squared_loss(torch.ones(4, 1), torch.zeros(4)), torch.full((4, 1), 0.5))
