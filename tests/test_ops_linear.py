"""Scratch losses and linear models against PyTorch's own (D2L §3.2-3.7)."""

import pytest
import torch
import torch.nn.functional as F

from divekit.models.registry import create_model
from divekit.ops import fast, scratch
from divekit.optim import create_optimizer
from divekit.optim.scratch import SGD


def assert_same_values_and_grads(f_ours, f_ref, *inputs, atol=1e-6, rtol=1e-6):
    ours_in = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    ref_in = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    ours, ref = f_ours(*ours_in), f_ref(*ref_in)
    torch.testing.assert_close(ours, ref, atol=atol, rtol=rtol)
    grad_out = torch.randn_like(ref)
    ours_grads = torch.autograd.grad(ours, [x for x in ours_in if x.requires_grad], grad_out)
    ref_grads = torch.autograd.grad(ref, [x for x in ref_in if x.requires_grad], grad_out)
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_softmax_and_log_softmax_match_torch(scale):
    X = torch.randn(7, 5, dtype=torch.float64) * scale
    assert_same_values_and_grads(scratch.softmax, lambda x: torch.softmax(x, -1), X)
    assert_same_values_and_grads(scratch.log_softmax, lambda x: F.log_softmax(x, -1), X)
    torch.testing.assert_close(scratch.softmax(X).sum(-1), torch.ones(7, dtype=torch.float64))


def test_cross_entropy_matches_torch_and_stays_finite_for_huge_logits():
    logits = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]])
    y = torch.tensor([1, 2])
    loss = scratch.cross_entropy(logits, y)
    assert torch.isfinite(loss).all()
    expected = torch.tensor([2000.0, 1.0 + torch.log1p(torch.exp(torch.tensor(-1.0))).item()])
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=0)  # float32 spacing near 1000 is 6e-5
    X = torch.randn(16, 10, dtype=torch.float64) * 30
    labels = torch.randint(0, 10, (16,))
    assert_same_values_and_grads(lambda x: scratch.cross_entropy(x, labels), lambda x: F.cross_entropy(x, labels, reduction="none"), X)
    assert_same_values_and_grads(lambda x: fast.cross_entropy(x, labels), lambda x: scratch.cross_entropy(x, labels), X)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_fast_cross_entropy_fused_path_matches_torch(monkeypatch, dtype):
    from divekit.ops.fast import losses

    monkeypatch.setattr(losses, "FUSED_MIN_ELEMENTS", 1)  # every call takes the fused Function
    logits = (torch.randn(37, 11, dtype=torch.float64) * 30).to(dtype)
    labels = torch.randint(0, 11, (37,))
    labels[:3] = torch.tensor([0, 10, 10])  # both ends of the classes
    ours = logits.clone().requires_grad_()
    loss = fast.cross_entropy(ours, labels)
    assert isinstance(loss.grad_fn, torch.autograd.function.BackwardCFunction)  # the fused Function ran
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    ref_logits = logits.double().requires_grad_()
    ref = F.cross_entropy(ref_logits, labels, reduction="none")
    weights = torch.rand(37, dtype=torch.float64)
    (grad,) = torch.autograd.grad((loss * weights.to(loss.dtype)).sum(), ours)
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), ref_logits)
    tol = dict(atol=1e-10, rtol=1e-8) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss.double(), ref.detach(), **tol)
    assert grad.dtype == dtype  # the gradient comes back in the logits' dtype
    torch.testing.assert_close(grad.double(), ref_grad.to(dtype).double(), **tol)


def test_fast_cross_entropy_fused_path_refuses_a_second_backward_and_bad_shapes(monkeypatch):
    from divekit.ops.fast import losses

    monkeypatch.setattr(losses, "FUSED_MIN_ELEMENTS", 1)
    logits = torch.randn(4, 3, requires_grad=True)
    loss = fast.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        loss.backward()
    with pytest.raises(ValueError, match=r"logits \(N, C\) and labels \(N,\)"):
        fast.cross_entropy(logits, torch.tensor([0, 1]))
    # below the threshold, F.cross_entropy: the same numbers, a backward that can run twice
    monkeypatch.setattr(losses, "FUSED_MIN_ELEMENTS", 1 << 18)
    torch.testing.assert_close(fast.cross_entropy(logits, torch.tensor([0, 1, 2, 0])),
                               F.cross_entropy(logits, torch.tensor([0, 1, 2, 0]), reduction="none"))


def test_cross_entropy_gradcheck():
    X = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 5, 2, 2])
    assert torch.autograd.gradcheck(lambda x: scratch.cross_entropy(x, y), (X,))


def test_squared_loss_is_half_the_squared_error_and_matches_fast():
    y_hat, y = torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 0.0])  # y reshaped like y_hat
    torch.testing.assert_close(scratch.squared_loss(y_hat, y), torch.tensor([[0.5], [4.5]]))
    a, b = torch.randn(9, 1, dtype=torch.float64), torch.randn(9, 1, dtype=torch.float64)
    assert_same_values_and_grads(scratch.squared_loss, fast.squared_loss, a, b)


def test_mse_loss_is_twice_the_squared_loss_and_matches_torch():
    a, b = torch.randn(9, 1, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    torch.testing.assert_close(scratch.mse_loss(a, b), 2 * scratch.squared_loss(a, b))
    assert_same_values_and_grads(scratch.mse_loss, lambda x, y: F.mse_loss(x, y.reshape(x.shape), reduction="none"), a, b)
    assert_same_values_and_grads(scratch.mse_loss, fast.mse_loss, a, b)


def test_linear_models_of_both_twins_share_state_dicts_and_outputs():
    torch.manual_seed(0)
    s = create_model("linear", "scratch", input_shape=(3, 2, 2), num_outputs=3)
    f = create_model("linear", "fast", input_shape=(3, 2, 2), num_outputs=3)
    assert s.state_dict().keys() == f.state_dict().keys() == {"linear.weight", "linear.bias"}
    f.load_state_dict(s.state_dict())
    X = torch.randn(5, 3, 2, 2)  # flattened to 12 features
    assert_same_values_and_grads(s, f, X, atol=1e-6)
    s(X).sum().backward()
    f(X).sum().backward()
    torch.testing.assert_close(s.linear.weight.grad, f.linear.weight.grad)
    torch.testing.assert_close(s.linear.bias.grad, f.linear.bias.grad)


def test_linear_init_follows_the_book():
    torch.manual_seed(0)
    for impl in ("scratch", "fast"):
        model = create_model("linear", impl, input_shape=(784,), num_outputs=10)
        assert model.linear.weight.shape == (10, 784)
        assert torch.all(model.linear.bias == 0)
        assert abs(model.linear.weight.std().item() - 0.01) < 0.001
    with pytest.raises(ValueError, match="unknown impl"):
        create_model("linear", "slow")
    # §3.7's concise net draws the weights and keeps nn.Linear's bias: softmax-regression's default (fast) impl
    from divekit.experiments.registry import get_experiment

    experiment = get_experiment("softmax-regression")
    assert (experiment.make_options().zero_bias, experiment.make_options(impl="scratch").zero_bias) == (False, True)
    torch.manual_seed(0)
    model = create_model("linear", "fast", input_shape=(784,), num_outputs=10, zero_bias=False)
    torch.manual_seed(0)
    torch.testing.assert_close(model.linear.bias, torch.nn.Linear(784, 10).bias)


def test_synthetic_data_takes_the_books_column_w():
    from divekit.data.synthetic import synthetic_regression

    flat = synthetic_regression([2.0, -3.4], 4.2, 5, generator=torch.Generator().manual_seed(0))
    column = synthetic_regression(torch.tensor([[2.0], [-3.4]]), 4.2, 5, generator=torch.Generator().manual_seed(0))
    assert column.X.shape == (5, 2) and column.y.shape == (5, 1)  # §4.5 passes w as (d, 1)
    torch.testing.assert_close(column.y, flat.y)
    torch.testing.assert_close(flat.y, flat.X @ torch.tensor([[2.0], [-3.4]]) + 4.2, atol=0.05, rtol=0)


def test_linear_regression_without_a_bias_reports_the_weights_errors(tmp_path):
    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import run_experiment

    experiment = get_experiment("linear-regression")
    summary = run_experiment(experiment, experiment.make_options(bias=False, epochs=1), tmp_path / "run", progress=False)
    results = summary["results"]
    assert "b" not in results and len(results["w_error"]) == 2
    assert results["max_abs_param_error"] == max(abs(e) for e in results["w_error"])


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_scratch_sgd_matches_torch_sgd(weight_decay):
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    b = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    b.load_state_dict(a.state_dict())
    opt_a = SGD(a.parameters(), lr=0.05, weight_decay=weight_decay)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.05, weight_decay=weight_decay)
    for _ in range(20):
        X, y = torch.randn(16, 6), torch.randn(16, 2)
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            F.mse_loss(model(X), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)


def test_scratch_sgd_rejects_bad_hyperparameters_and_create_optimizer_names():
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="learning rate must be positive"):
        SGD(params, lr=0)
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'"):
        create_optimizer("sgdd", params, lr=0.1)
    with pytest.raises(ValueError, match="takes no momentum"):
        create_optimizer("adam", params, lr=0.1, momentum=0.9)
    assert isinstance(create_optimizer("scratch-sgd", params, lr=0.1), SGD)
    assert isinstance(create_optimizer("sgd", params, impl="scratch", lr=0.1), SGD)
    assert isinstance(create_optimizer("adam", params, lr=0.1), torch.optim.Adam)


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_the_linear_layer_draws_what_nn_linear_draws(impl):
    torch.manual_seed(3)
    layer = getattr(fast if impl == "fast" else scratch, "Linear")(30, 7)
    torch.manual_seed(3)
    reference = torch.nn.Linear(30, 7)  # kaiming_uniform_(a=sqrt(5)) for the weight, then the bias
    torch.testing.assert_close(layer.weight, reference.weight)
    torch.testing.assert_close(layer.bias, reference.bias)


@pytest.mark.parametrize("make", [lambda ops: ops.Linear(4, 3), lambda ops: ops.Conv2d(2, 3, 3),
                                  lambda ops: ops.ConvTranspose2d(2, 3, 3)], ids=["Linear", "Conv2d", "ConvTranspose2d"])
def test_layers_with_a_bias_give_autocasts_bf16_in_both_twins(make):
    """Under bf16 autocast torch's layers return bf16 with the bias added in bf16; a float32 bias added to the
    scratch twin's bf16 product once made its output float32."""
    torch.manual_seed(0)
    ours, theirs = make(scratch), make(fast)
    theirs.load_state_dict(ours.state_dict())
    X = torch.randn(2, 2, 5, 4) if not isinstance(ours, scratch.Linear) else torch.randn(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ours(X), theirs(X)
    assert a.dtype == b.dtype == torch.bfloat16
    torch.testing.assert_close(a, b, atol=0.05, rtol=0.02)
