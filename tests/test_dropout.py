"""Dropout (D2L §4.6) and weight decay (D2L §4.5): scratch against torch, statistically where the
output is random (fixed seeds, tolerances of several standard deviations of the estimate)."""

import math

import pytest
import torch
from torch import nn

from divekit.data.batch import Split
from divekit.ops import fast, scratch
from divekit.train.tasks import Regression

N = 200_000  # entries per statistical check
SIGMAS = 5  # tolerance in standard deviations of the estimate


@pytest.mark.parametrize("twin", [scratch, fast], ids=["scratch", "fast"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_is_unbiased_and_drops_a_fraction_p(twin, dtype, p):
    torch.manual_seed(0)
    x = torch.randn(10, dtype=dtype).abs() + 0.5  # 10 features, each repeated N times
    X = x.expand(N, 10)
    Y = twin.dropout(X, p)
    assert Y.dtype == dtype
    # each entry is x / (1 - p) with probability 1 - p, else 0: mean x, variance x^2 p / (1 - p)
    std_of_mean = x * math.sqrt(p / (1 - p) / N)
    assert ((Y.mean(0) - x).abs() <= SIGMAS * std_of_mean).all()
    kept = Y != 0
    torch.testing.assert_close(Y[kept], X[kept] / (1 - p))
    fraction_dropped = 1 - kept.float().mean()
    assert abs(float(fraction_dropped) - p) <= SIGMAS * math.sqrt(p * (1 - p) / X.numel())


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_scratch_dropout_matches_nn_dropout_in_distribution(p):
    torch.manual_seed(1)
    X = torch.ones(N)
    ours, theirs = scratch.Dropout(p)(X), nn.Dropout(p)(X)  # modules start in training mode
    tolerance = SIGMAS * math.sqrt(2 * p * (1 - p) / N)  # difference of two fractions
    assert abs(float((ours == 0).float().mean() - (theirs == 0).float().mean())) <= tolerance
    for Y in (ours, theirs):  # the same two values: dropped, or scaled up by 1 / (1 - p)
        torch.testing.assert_close(Y.unique(), torch.tensor([0.0, 1 / (1 - p)]))


def test_dropout_layer_is_the_identity_in_eval_mode_and_functions_follow_training():
    X = torch.randn(64, 32)
    for layer in (scratch.Dropout(0.5), fast.Dropout(0.5)):
        layer.eval()
        assert torch.equal(layer(X), X)
        layer.train()
        assert (layer(X) == 0).any()
    for ops in (scratch, fast):
        assert torch.equal(ops.dropout(X, 0.5, training=False), X)


def test_dropout_edge_cases_p0_and_p1():
    X = torch.randn(100, 10, requires_grad=True)
    for ops in (scratch, fast):
        torch.testing.assert_close(ops.dropout(X, 0.0), X)
        Y = ops.dropout(X, 1.0)
        assert torch.equal(Y, torch.zeros_like(X)) and torch.isfinite(Y).all()
        (grad,) = torch.autograd.grad(Y.sum(), X)
        assert torch.equal(grad, torch.zeros_like(X))  # no nan from dividing by 1 - p = 0


@pytest.mark.parametrize("make", [scratch.dropout, fast.dropout, lambda X, p: fast.Dropout(p)(X)],
                         ids=["scratch", "fast", "fast layer"])
def test_dropout_gradient_flows_through_kept_entries_only(make):
    torch.manual_seed(0)
    X = torch.randn(50, 40, requires_grad=True)
    Y = make(X, 0.3)
    (grad,) = torch.autograd.grad(Y.sum(), X)
    torch.testing.assert_close(grad, (Y != 0).float() / 0.7)
    assert isinstance(fast.Dropout(0.3), nn.Dropout) and repr(fast.Dropout(0.3)) == repr(nn.Dropout(0.3))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_probability_outside_unit_interval_is_a_clear_error(p):
    for make in (lambda: scratch.Dropout(p), lambda: fast.Dropout(p), lambda: scratch.dropout(torch.ones(3), p),
                 lambda: fast.dropout(torch.ones(3), p)):
        with pytest.raises(ValueError, match="between 0 and 1"):
            make()


def test_l2_penalty_is_half_the_squared_norm_with_gradient_w():
    w = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    for ops in (scratch, fast):
        penalty = ops.l2_penalty(w)
        torch.testing.assert_close(penalty, torch.linalg.vector_norm(w) ** 2 / 2)
        (grad,) = torch.autograd.grad(penalty, w)
        torch.testing.assert_close(grad, w.detach())


def _regression_problem(seed=0):
    torch.manual_seed(seed)
    X, y = torch.randn(20, 30, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
    model = nn.Linear(30, 1).double()
    return X, y, model


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_weight_decay_twins_train_alike(optimizer):
    """Minimising loss + lambda * ||w||^2 / 2 (the scratch twin, D2L §4.5.3) gives the same
    trajectory as the optimizer's weight_decay on the weight's parameter group (the fast twin,
    §4.5.4), for SGD and for Adam (whose weight_decay is this same L2 gradient)."""
    lambd, lr = 3.0, 0.01
    X, y, penalized = _regression_problem()
    decayed = nn.Linear(30, 1).double()
    decayed.load_state_dict(penalized.state_dict())
    twins = [(scratch.WeightDecay(lambd), penalized), (fast.WeightDecay(lambd), decayed)]
    optimizers = [optimizer(decay.param_groups(model), lr=lr) for decay, model in twins]
    for step in range(30):
        batch = Split(*(t[5 * (step % 4):5 * (step % 4 + 1)] for t in (X, y)))
        for (decay, model), opt in zip(twins, optimizers):
            loss = Regression(fast.mse_loss, penalty=decay.penalty).step(model, batch, training=True).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.testing.assert_close(penalized.weight, decayed.weight)
        torch.testing.assert_close(penalized.bias, decayed.bias)
    untouched = nn.Linear(30, 1).double()
    assert not torch.allclose(untouched.weight, decayed.weight)


def test_weight_decay_twins_split_weights_from_biases():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    weights, biases = fast.WeightDecay(0.5).param_groups(model)
    assert weights["weight_decay"] == 0.5 and biases["weight_decay"] == 0.0
    assert [p.shape for p in weights["params"]] == [(3, 4), (2, 3)]
    assert [p.shape for p in biases["params"]] == [(3,), (2,)]
    (group,) = scratch.WeightDecay(0.5).param_groups(model)
    assert len(group["params"]) == 4 and "weight_decay" not in group
    expected = 0.5 * (model[0].weight.square().sum() + model[2].weight.square().sum()) / 2
    torch.testing.assert_close(scratch.WeightDecay(0.5).penalty(model), expected)
    assert float(fast.WeightDecay(0.5).penalty(model)) == 0.0
    with pytest.raises(ValueError, match="lambda must be non-negative"):
        scratch.WeightDecay(-1.0)


def test_regression_adds_the_penalty_to_the_training_loss_only():
    X, y, model = _regression_problem()
    task = Regression(scratch.squared_loss, penalty=lambda m: 3.0 * scratch.l2_penalty(m.weight))
    train, evaluation = task.step(model, Split(X, y), training=True), task.step(model, Split(X, y), training=False)
    expected = scratch.squared_loss(model(X), y).mean() + 3.0 * scratch.l2_penalty(model.weight)
    torch.testing.assert_close(train.loss, expected)
    torch.testing.assert_close(train.sums["loss"], evaluation.sums["loss"])  # reported: the data loss alone
    torch.testing.assert_close(evaluation.loss, scratch.squared_loss(model(X), y).mean())
