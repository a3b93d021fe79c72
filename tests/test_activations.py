"""Activations and their derivatives (D2L §4.1.2): scratch against torch's functions, the
closed-form derivatives of both twins against autograd."""

import pytest
import torch

from divekit.ops import fast, scratch

TORCH = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
NAMES = list(TORCH)


def autograd_derivative(f, x):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x).sum(), x)  # elementwise f, so d sum f / dx_i = f'(x_i)
    return grad


@pytest.mark.parametrize("name", NAMES)
def test_scratch_values_and_gradients_match_torch(name):
    x = torch.cat([torch.randn(200, dtype=torch.float64) * 5, torch.tensor([0.0, 1e-8, -1e-8], dtype=torch.float64)])
    torch.testing.assert_close(getattr(scratch, name)(x), TORCH[name](x))
    torch.testing.assert_close(autograd_derivative(getattr(scratch, name), x), autograd_derivative(TORCH[name], x))


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_scratch_gradcheck(name):
    x = torch.randn(20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(getattr(scratch, name), (x,))


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
@pytest.mark.parametrize("name", NAMES)
def test_closed_form_derivatives_match_autograd(ops, name):
    x = torch.linspace(-8, 8, 161, dtype=torch.float64)  # includes 0, where ReLU's derivative is taken as 0
    grad = getattr(ops, f"{name}_grad")(x)
    torch.testing.assert_close(grad, autograd_derivative(TORCH[name], x))
    assert grad.dtype == x.dtype and grad.shape == x.shape


def test_known_values():
    zero = torch.zeros(1)
    for ops in (scratch, fast):
        assert float(ops.sigmoid_grad(zero)) == 0.25  # the sigmoid's steepest point
        assert float(ops.tanh_grad(zero)) == 1.0
        assert float(ops.relu_grad(zero)) == 0.0
        assert float(ops.sigmoid(zero)) == 0.5
    x = torch.linspace(-10, 10, 1001)
    assert float(scratch.sigmoid_grad(x).max()) == 0.25 and float(scratch.sigmoid_grad(torch.tensor(8.0))) < 4e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_and_tanh_stay_finite_for_huge_inputs(dtype):
    x = torch.tensor([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype, requires_grad=True)
    for name in ("sigmoid", "tanh"):
        y = getattr(scratch, name)(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        assert torch.isfinite(y).all() and torch.isfinite(grad).all(), name
        torch.testing.assert_close(y, TORCH[name](x))
        torch.testing.assert_close(grad, autograd_derivative(TORCH[name], x.detach()))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_in_values_gradients_and_as_a_layer(approximate):
    x = torch.cat([torch.randn(200, dtype=torch.float64) * 4, torch.tensor([0.0, -30.0, 30.0], dtype=torch.float64)])
    torch.testing.assert_close(scratch.gelu(x, approximate), torch.nn.functional.gelu(x, approximate=approximate))
    torch.testing.assert_close(autograd_derivative(lambda t: scratch.gelu(t, approximate), x),
                               autograd_derivative(lambda t: torch.nn.functional.gelu(t, approximate=approximate), x))
    for ops in (scratch, fast):
        torch.testing.assert_close(ops.GELU(approximate)(x), torch.nn.GELU(approximate)(x))
    assert torch.autograd.gradcheck(lambda t: scratch.gelu(t, approximate), (x[:20].clone().requires_grad_(),))


def test_gelu_values_by_hand_and_a_bad_approximation():
    assert float(scratch.gelu(torch.tensor(0.0))) == 0.0
    torch.testing.assert_close(scratch.gelu(torch.tensor(1.0, dtype=torch.float64)),
                               torch.tensor(0.8413447460685429, dtype=torch.float64))  # 1 * Phi(1)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'fast'"):
        scratch.GELU("fast")


@pytest.mark.parametrize("twin", [scratch, fast], ids=["scratch", "fast"])
def test_relu_in_place_writes_its_input_with_the_same_values_and_gradients(twin):
    """``ReLU(inplace=True)`` after batch normalization (the detection blocks, D2L §13.7): the same
    output and input gradients as the out-of-place layer, written into the normalization's output."""
    torch.manual_seed(0)
    X = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    grads = []
    for inplace in (False, True):
        norm = twin.BatchNorm2d(3).double()
        x = X.clone().requires_grad_()
        Y = norm(x)
        out = twin.ReLU(inplace=inplace)(Y)
        assert (out is Y) == inplace
        weights = torch.arange(out.numel(), dtype=torch.float64).reshape(out.shape)
        grads.append((out.detach().clone(), *torch.autograd.grad((out * weights).sum(), (x, *norm.parameters()))))
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert torch.equal(grads[0][0], torch.clamp(grads[0][0], min=0))
    assert repr(twin.ReLU(inplace=True)).endswith("(inplace=True)")
    x = torch.tensor([0.0, 1.0, -1.0], requires_grad=True)
    twin.ReLU(inplace=True)(x.clone()).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]                    # the derivative at 0 is 0, as relu's
