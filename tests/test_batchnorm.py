"""Scratch batch normalization against nn.BatchNorm1d/2d in training and evaluation (D2L §7.5)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divekit.ops import fast, scratch

CASES = [("BatchNorm1d", (16, 5), nn.BatchNorm1d), ("BatchNorm1d", (6, 5, 7), nn.BatchNorm1d),  # (B, C, L) too
         ("BatchNorm2d", (8, 3, 5, 4), nn.BatchNorm2d)]


@pytest.mark.parametrize("name, shape, reference", CASES)
@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
def test_batch_norm_layer_matches_torch_in_both_modes(name, shape, reference, ops):
    torch.manual_seed(0)
    C = shape[1]
    ours = getattr(ops, name)(C).double()
    ref = reference(C).double()
    assert ours.state_dict().keys() == ref.state_dict().keys()
    with torch.no_grad():  # non-trivial gamma and beta
        for m in (ours, ref):
            m.weight.copy_(torch.linspace(0.5, 2.0, C))
            m.bias.copy_(torch.linspace(-1.0, 1.0, C))
    # several training steps: outputs, gradients and the running statistics agree
    for step in range(4):
        X = torch.randn(*shape, dtype=torch.float64) * (step + 1) + step
        X_ours, X_ref = X.clone().requires_grad_(), X.clone().requires_grad_()
        y_ours, y_ref = ours(X_ours), ref(X_ref)
        torch.testing.assert_close(y_ours, y_ref)
        g = torch.randn_like(y_ref)
        (y_ours * g).sum().backward()
        (y_ref * g).sum().backward()
        torch.testing.assert_close(X_ours.grad, X_ref.grad)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(ref, name).grad)
    for name, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, msg=name)
    assert int(ours.num_batches_tracked) == 4
    # evaluation uses the running statistics, and leaves them alone
    ours.eval(), ref.eval()
    X = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(ours(X), ref(X))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    # and the state dicts load across, both ways
    ref.load_state_dict(ours.state_dict())
    ours.load_state_dict(ref.state_dict())


def test_momentum_none_averages_every_batch_alike_as_torch():
    torch.manual_seed(0)
    ours, theirs = scratch.BatchNorm2d(3, 1e-5, None), nn.BatchNorm2d(3, 1e-5, None)
    for step in range(4):
        X = torch.randn(4, 3, 5, 5) * (step + 1) + step
        torch.testing.assert_close(ours(X), theirs(X))
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, msg=name)


def test_training_output_is_standardised_per_channel_then_scaled_and_shifted():
    X = torch.randn(6, 3, 4, 4, dtype=torch.float64) * 5 + 2
    gamma, beta = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), torch.tensor([0.0, -1.0, 4.0], dtype=torch.float64)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    Y = scratch.batch_norm(X, gamma, beta, rm, rv, training=True, eps=0.0)
    torch.testing.assert_close(Y.mean(dim=(0, 2, 3)), beta)
    torch.testing.assert_close(Y.var(dim=(0, 2, 3), unbiased=False), gamma ** 2)
    # running = 0.9 * running + 0.1 * batch, with the unbiased variance
    torch.testing.assert_close(rm, 0.1 * X.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(rv, 0.9 + 0.1 * X.var(dim=(0, 2, 3), unbiased=True))


def test_batch_norm_functions_agree_and_gradcheck():
    X = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    gamma = torch.rand(4, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def stats():  # fresh running mean and variance
        return torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)

    assert torch.autograd.gradcheck(lambda x, g, b: scratch.batch_norm(x, g, b, *stats(), training=True), (X, gamma, beta))
    rm_s, rv_s = stats()
    rm_f, rv_f = stats()
    torch.testing.assert_close(scratch.batch_norm(X, gamma, beta, rm_s, rv_s, True, 0.3),
                               fast.batch_norm(X, gamma, beta, rm_f, rv_f, True, 0.3))
    torch.testing.assert_close((rm_s, rv_s), (rm_f, rv_f))
    torch.testing.assert_close(scratch.batch_norm(X, gamma, beta, rm_s, rv_s, False),
                               F.batch_norm(X, rm_f, rv_f, gamma, beta, False))


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) takes inputs of 4 dimensions with 3 features on axis 1, "
                                         r"got shape \(2, 3\)"):
        scratch.BatchNorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) takes inputs of 2 or 3 dimensions"):
        scratch.BatchNorm1d(3)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"expected 4D input \(got 2D input\)"):
        fast.BatchNorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="more than one value per channel"):
        scratch.BatchNorm1d(3)(torch.randn(1, 3))


@pytest.mark.parametrize("shape, normalized", [((4, 6), (6,)), ((2, 3, 5, 4), (5, 4))])
def test_layer_norm_matches_torch_in_values_and_gradients(shape, normalized):
    torch.manual_seed(0)
    ours, ref = scratch.LayerNorm(normalized).double(), nn.LayerNorm(normalized).double()
    assert ours.state_dict().keys() == ref.state_dict().keys()
    gamma, beta = torch.rand(normalized) + 0.5, torch.randn(normalized)
    with torch.no_grad():
        for m in (ours, ref):
            m.weight.copy_(gamma)
            m.bias.copy_(beta)
    X = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    X_ours, X_ref = X.clone().requires_grad_(), X.clone().requires_grad_()
    torch.testing.assert_close(ours(X_ours), ref(X_ref))
    ours(X_ours).sin().sum().backward()
    ref(X_ref).sin().sum().backward()
    torch.testing.assert_close(X_ours.grad, X_ref.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    # each example standardised on its own: the batch size does not matter, training and evaluation agree
    torch.testing.assert_close(ours(X[:1]), ours.eval()(X)[:1])
    assert torch.autograd.gradcheck(lambda x: scratch.layer_norm(x, normalized), (X[:2].clone().requires_grad_(),))
    torch.testing.assert_close(scratch.layer_norm(X, normalized, eps=1e-3), fast.layer_norm(X, normalized, eps=1e-3))
    with pytest.raises(ValueError, match="layer_norm over the last dimensions"):
        scratch.layer_norm(X, (7,))
