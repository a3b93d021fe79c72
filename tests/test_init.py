"""Xavier initialization (D2L §4.8.2.2): the scratch fills against torch.nn.init's bounds and
standard deviations, and the variance it preserves through a deep stack of linear layers."""

import math

import pytest
import torch
from torch import nn

from divekit.ops import fast, scratch
from divekit.ops.scratch.init import fans

SHAPES = [(300, 200), (64, 16, 5, 5)]  # a linear weight and a conv kernel (n_out, n_in, kh, kw)


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    assert fans(torch.empty(shape)) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_xavier_uniform_bound_and_variance(ops, shape, gain):
    torch.manual_seed(0)
    n_in, n_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    a = gain * math.sqrt(6 / (n_in + n_out))
    W = torch.empty(shape)
    assert ops.xavier_uniform_(W, gain=gain) is W  # fills in place, like nn.init
    n = W.numel()
    assert float(W.abs().max()) <= a
    assert float(W.abs().max()) >= a * (1 - 20 / n)  # the largest of n uniform draws is within ~a/n of the bound
    # Var U(-a, a) = a^2 / 3 = gain^2 * 2 / (n_in + n_out); the sample variance has relative std ~ sqrt(0.8 / n)
    assert abs(float(W.var()) / (a**2 / 3) - 1) <= 5 * math.sqrt(0.8 / n)
    assert abs(float(W.mean())) <= 5 * a / math.sqrt(3 * n)


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
@pytest.mark.parametrize("shape", SHAPES)
def test_xavier_normal_std(ops, shape):
    torch.manual_seed(0)
    n_in, n_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    sigma = math.sqrt(2 / (n_in + n_out))
    W = ops.xavier_normal_(torch.empty(shape))
    n = W.numel()
    assert abs(float(W.std()) / sigma - 1) <= 5 / math.sqrt(2 * n)  # std of a sample std: sigma / sqrt(2n)
    assert abs(float(W.mean())) <= 5 * sigma / math.sqrt(n)


def _mean_output_energy(init, width=64, depth=20, trials=200):
    """E ||h_L||^2 / ||x||^2 over independent stacks h_l = W_l h_{l-1} of ``depth`` square layers."""
    torch.manual_seed(0)
    ratios = []
    for _ in range(trials):
        x = torch.randn(width)
        h = x
        for _ in range(depth):
            h = init(torch.empty(width, width)) @ h
        ratios.append(float(h.pow(2).sum() / x.pow(2).sum()))
    return sum(ratios) / trials


@pytest.mark.parametrize("init", [scratch.xavier_normal_, scratch.xavier_uniform_, fast.xavier_normal_],
                         ids=["scratch-normal", "scratch-uniform", "fast-normal"])
def test_xavier_preserves_variance_through_a_deep_linear_stack(init):
    # With n_in = n_out = n and Var[W] = 1/n, E ||W h||^2 = ||h||^2 exactly, layer after layer. One
    # layer's ratio ||W h||^2 / ||h||^2 is chi^2_n / n for Gaussian W (relative variance 2/n; less for
    # uniform W), so over depth L the ratio's variance is at most about (1 + 2/n)^L - 1 and the mean
    # over T independent stacks has standard deviation sqrt(((1 + 2/n)^L - 1) / T).
    width, depth, trials = 64, 20, 200
    std = math.sqrt(((1 + 2 / width) ** depth - 1) / trials)
    assert abs(_mean_output_energy(init, width, depth, trials) - 1) <= 5 * std


def test_small_normal_init_makes_the_signal_vanish_and_unit_normal_makes_it_explode():
    vanishing = _mean_output_energy(lambda W: W.normal_(0, 0.01), trials=20)
    exploding = _mean_output_energy(lambda W: W.normal_(0, 1.0), trials=20)
    assert vanishing < 1e-30 and exploding > 1e30  # 64 * 0.01^2 and 64 * 1 per layer, 20 layers


def test_xavier_of_a_vector_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        scratch.xavier_uniform_(torch.empty(10))
