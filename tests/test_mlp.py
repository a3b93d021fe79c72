"""The perceptron (D2L §4.1 in the notes) and the MLP twins (D2L §4.2-4.3, §4.6)."""

import pytest
import torch
import torch.nn.functional as F

from divekit.models.perceptron import Perceptron, mistake_bound, train_perceptron
from divekit.models.registry import create_model
from divekit.ops import scratch


def mlp(impl, **config):
    return create_model("mlp", impl, **config)

XOR_X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = torch.tensor([0, 1, 1, 0])


def separable_data(n=200, dim=5, margin=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    w_star, b_star = torch.randn(dim, generator=g), 0.3
    X = torch.randn(20 * n, dim, generator=g)
    distance = (X @ w_star + b_star) / w_star.norm()
    X = X[distance.abs() >= margin][:n]
    return X, torch.where(X @ w_star + b_star > 0, 1, -1), w_star, b_star


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perceptron_fits_separable_data_within_novikoffs_bound(seed):
    X, y, w_star, b_star = separable_data(seed=seed)
    model = Perceptron(X.shape[1])
    mistakes = train_perceptron(model, X, y, max_epochs=1000)
    assert mistakes[-1] == 0 and all(m > 0 for m in mistakes[:-1])  # stops at the first clean epoch
    assert sum(mistakes) <= mistake_bound(X, y, w_star, b_star)
    assert torch.equal(model.predict(X), y)


def test_perceptron_update_rule_by_hand():
    model = Perceptron(2)
    X, y = torch.tensor([[1.0, 2.0], [-1.0, 0.5]]), torch.tensor([1, -1])
    mistakes = train_perceptron(model, X, y, max_epochs=1)
    # example 1: 0 <= 0 is a mistake -> w = [1, 2], b = 1; example 2: y o = -(-1 + 1 + 1) < 0 -> w = [2, 1.5], b = 0
    assert mistakes == [2]
    torch.testing.assert_close(model.weight, torch.tensor([2.0, 1.5]))
    assert float(model.bias) == 0.0


def test_perceptron_never_fits_xor():
    model = Perceptron(2)
    y = 2 * XOR_Y - 1
    mistakes = train_perceptron(model, XOR_X, y, max_epochs=500)
    assert len(mistakes) == 500 and min(mistakes) >= 1
    assert int((model.predict(XOR_X) != y).sum()) >= 1


def test_perceptron_rejects_0_1_labels():
    with pytest.raises(ValueError, match="-1 or \\+1"):
        train_perceptron(Perceptron(2), XOR_X, XOR_Y)


def test_mistake_bound_needs_a_separator():
    X, y, w_star, b_star = separable_data()
    with pytest.raises(ValueError, match="does not separate"):
        mistake_bound(X, -y, w_star, b_star)


@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, dropout1=0.2, dropout2=0.5),
                                    dict(num_hiddens=16, num_layers=3, dropout1=0.1, dropout2=0.1)])
def test_mlp_twins_share_state_dicts_and_outputs(config):
    torch.manual_seed(0)
    s, f = mlp("scratch", **config), mlp("fast", **config)
    assert list(s.state_dict()) == list(f.state_dict())
    assert [v.shape for v in s.state_dict().values()] == [v.shape for v in f.state_dict().values()]
    f.load_state_dict(s.state_dict())
    s.eval(), f.eval()
    X = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(s(X), f(X))
    s(X).sum().backward()
    f(X).sum().backward()
    for (name, ps), pf in zip(s.named_parameters(), f.parameters()):
        torch.testing.assert_close(ps.grad, pf.grad, msg=name)
    s2 = mlp("scratch", **config)
    s2.load_state_dict(f.state_dict())  # and back
    s2.eval()
    torch.testing.assert_close(s2(X), f(X))


def test_mlp_layout_init_and_dropout_in_training():
    torch.manual_seed(0)
    for impl in ("scratch", "fast"):
        model = mlp(impl, num_layers=2, dropout1=0.2, dropout2=0.5)
        names = [n for n, _ in model.named_children()]
        assert names == ["flatten", "hidden1", "relu1", "dropout1", "hidden2", "relu2", "dropout2", "output"]
        w = model.hidden1.weight.detach()
        assert w.shape == (256, 784) and abs(float(w.std()) - 0.01) < 0.0005 and not model.hidden1.bias.any()
        X = torch.rand(16, 1, 28, 28)
        model.train()
        assert not torch.equal(model(X), model(X))  # fresh masks each call
        model.eval()
        assert torch.equal(model(X), model(X))


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_mlp_can_keep_the_layers_own_initialisation(impl):
    torch.manual_seed(0)
    model = mlp(impl, num_layers=2, sigma=None, zero_bias=False)  # D2L §4.6.4's Net: nn.Linear's init
    torch.manual_seed(0)
    reference = [torch.nn.Linear(784, 256), torch.nn.Linear(256, 256), torch.nn.Linear(256, 10)]
    for layer, expected in zip((model.hidden1, model.hidden2, model.output), reference):
        torch.testing.assert_close(layer.weight, expected.weight)
        torch.testing.assert_close(layer.bias, expected.bias)
    torch.manual_seed(0)
    drawn = mlp(impl, sigma=0.01, zero_bias=False)  # D2L §4.3: drawn weights, nn.Linear's biases
    torch.manual_seed(0)
    torch.testing.assert_close(drawn.hidden1.bias, torch.nn.Linear(784, 256).bias)
    assert abs(float(drawn.hidden1.weight.detach().std()) - 0.01) < 0.0005


def test_scratch_mlp_uses_no_torch_layer():
    model = mlp("scratch", input_shape=(20,), num_outputs=3, num_hiddens=8, num_layers=2, dropout1=0.5, dropout2=0.5)
    torch_layers = (torch.nn.Linear, torch.nn.ReLU, torch.nn.Dropout, torch.nn.Flatten, torch.nn.Sequential)
    assert not any(isinstance(m, torch_layers) for m in model.modules())
    # the hidden layer is ReLU(X W^T + b) with ReLU from scratch
    X = torch.randn(4, 20)
    expected = scratch.relu(X @ model.hidden1.weight.T + model.hidden1.bias)
    torch.testing.assert_close(model.relu1(model.hidden1(X)), expected)


@pytest.mark.parametrize("config, message", [
    (dict(num_hiddens=0), "--num-hiddens must be at least 1"),
    (dict(num_layers=0), "--num-layers must be at least 1"),
    (dict(dropout2=1.5), "--dropout2 must be a probability between 0 and 1, got 1.5"),
])
def test_bad_mlp_arguments_are_clear_errors(config, message):
    for impl in ("scratch", "fast"):
        with pytest.raises(ValueError, match=message):
            mlp(impl, **config)
    with pytest.raises(ValueError, match="scratch, fast"):
        mlp("cuda")


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_mlp_solves_xor(impl):
    torch.manual_seed(0)
    model = mlp(impl, input_shape=(2,), num_outputs=2, num_hiddens=16, sigma=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(300):
        loss = F.cross_entropy(model(XOR_X), XOR_Y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(model(XOR_X).argmax(-1), XOR_Y) and float(loss.detach()) < 0.05
