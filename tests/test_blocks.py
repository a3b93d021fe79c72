"""Layers and blocks, parameter management, custom layers, and saving them (D2L §5.1-5.5)."""

import copy
from functools import partial

import pytest
import torch
from torch import nn

from divekit import io
from divekit.models.blocks import (
    CenteredLayer,
    CustomMLP,
    FixedHiddenMLP,
    NestMLP,
    init_linear,
    sparse_uniform_,
    tied_mlp,
)
from divekit.ops.scratch import Linear as MyLinear, Sequential as SequentialScratch


def test_custom_block_registers_its_layers_and_computes_the_mlp():
    torch.manual_seed(0)
    net = CustomMLP()
    assert [name for name, _ in net.named_parameters()] == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    X = torch.rand(2, 20)
    expected = torch.relu(X @ net.hidden.weight.T + net.hidden.bias) @ net.out.weight.T + net.out.bias
    torch.testing.assert_close(net(X), expected)


def test_sequential_scratch_is_interchangeable_with_nn_sequential():
    torch.manual_seed(0)
    ours = SequentialScratch(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))
    theirs = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    ours.load_state_dict(theirs.state_dict())
    X = torch.rand(3, 20)
    torch.testing.assert_close(ours(X), theirs(X))
    assert len(ours) == 3 and isinstance(ours[1], nn.ReLU) and ours[-1] is list(ours.children())[-1]
    assert list(ours) == list(ours.children())
    named = SequentialScratch({"hidden": nn.Linear(20, 256), "out": nn.Linear(256, 10)})  # an ordered dict names them
    assert list(named.state_dict()) == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    # the blocks run in the order given, not in any other (Linear(20, 256) cannot take 256 inputs)
    with pytest.raises(RuntimeError):
        SequentialScratch(nn.Linear(256, 10), nn.Linear(20, 256))(X)


def test_sequential_scratch_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="block 1 is a builtin_function_or_method, not an nn.Module"):
        SequentialScratch(nn.Linear(2, 2), torch.relu)


def test_fixed_hidden_mlp_control_flow_and_shared_layer():
    torch.manual_seed(0)
    net = FixedHiddenMLP(generator=torch.Generator().manual_seed(1))
    assert [name for name, _ in net.named_parameters()] == ["linear.weight", "linear.bias"]
    assert "rand_weight" in net.state_dict() and not net.rand_weight.requires_grad
    X = torch.rand(2, 20)
    # the same computation written out: linear, fixed weight, the same linear, halve until |X|_1 <= 1
    H = X @ net.linear.weight.T + net.linear.bias
    H = torch.relu(H @ net.rand_weight + 1) @ net.linear.weight.T + net.linear.bias
    halvings = 0
    while H.abs().sum() > 1:
        H, halvings = H / 2, halvings + 1
    assert halvings > 0, "the example should exercise the while loop"
    out = net(X)
    assert out.shape == () and abs(out.item()) <= 1
    torch.testing.assert_close(out, H.sum())
    out.backward()
    assert net.linear.weight.grad is not None and net.linear.weight.grad.abs().sum() > 0


def test_named_parameters_of_nested_blocks():
    torch.manual_seed(0)
    chimera = nn.Sequential(NestMLP(), nn.Linear(16, 20), FixedHiddenMLP())
    names = [name for name, _ in chimera.named_parameters()]
    assert names == ["0.net.0.weight", "0.net.0.bias", "0.net.2.weight", "0.net.2.bias", "0.linear.weight",
                     "0.linear.bias", "1.weight", "1.bias", "2.linear.weight", "2.linear.bias"]
    params = dict(chimera.named_parameters())
    assert params["0.net.2.weight"] is chimera[0].net[2].weight and params["0.net.2.weight"].shape == (32, 64)
    assert chimera(torch.rand(2, 20)).shape == ()
    assert set(chimera.state_dict()) == set(names) | {"2.rand_weight"}


def test_init_linear_through_apply_reaches_nested_layers():
    torch.manual_seed(0)
    net = nn.Sequential(NestMLP(num_inputs=400), nn.Linear(16, 4))
    net.apply(init_linear(partial(nn.init.normal_, std=0.01)))
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4
    first = linears[0].weight.detach()  # 64 x 400 samples
    assert abs(float(first.std()) - 0.01) < 0.0005 and abs(float(first.mean())) < 0.0005
    assert all(float(m.bias.detach().abs().max()) == 0 for m in linears)
    net.apply(init_linear(partial(nn.init.constant_, val=1.0)))
    assert all(bool((m.weight.detach() == 1).all()) for m in linears)


def test_sparse_uniform_init_is_the_books_my_init():
    torch.manual_seed(0)
    layer = nn.Linear(200, 100)
    bias = layer.bias.detach().clone()
    nn.Sequential(layer).apply(init_linear(sparse_uniform_, bias_init=None))
    w = layer.weight.detach().abs()
    assert bool(((w == 0) | ((w >= 5) & (w <= 10))).all())
    assert abs(float((w == 0).float().mean()) - 0.5) < 0.02  # P(|U(-10, 10)| < 5) = 1/2
    torch.testing.assert_close(layer.bias.detach(), bias)  # left as it was


def test_tied_parameters_accumulate_the_gradients_of_both_uses():
    torch.manual_seed(0)
    net = tied_mlp().double()
    assert net[2] is net[4]
    assert len(list(net.parameters())) == 6  # the shared weight and bias are listed once
    untied = copy.deepcopy(net)
    untied[4] = copy.deepcopy(untied[2])  # same values, now two separate layers
    assert untied[2] is not untied[4]
    X = torch.rand(5, 4, dtype=torch.float64)
    torch.testing.assert_close(net(X), untied(X))
    net(X).pow(2).sum().backward()
    untied(X).pow(2).sum().backward()
    for name in ("weight", "bias"):
        shared_grad = getattr(net[2], name).grad
        first_use, second_use = getattr(untied[2], name).grad, getattr(untied[4], name).grad
        assert first_use.abs().sum() > 0 and second_use.abs().sum() > 0
        torch.testing.assert_close(shared_grad, first_use + second_use)
    # changing the one tensor changes both uses
    with torch.no_grad():
        net[2].weight[0, 0] = 100.0
    assert net[4].weight[0, 0].item() == 100.0


def test_centered_layer_has_no_parameters_and_centres():
    layer = CenteredLayer()
    assert list(layer.parameters()) == []
    torch.testing.assert_close(layer(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])), torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]))
    net = nn.Sequential(nn.Linear(8, 128), CenteredLayer())
    assert abs(net(torch.rand(4, 8)).mean().item()) < 1e-6


def test_my_linear_matches_nn_linear():
    torch.manual_seed(3)
    ours = MyLinear(5, 3)
    torch.manual_seed(3)
    theirs = nn.Linear(5, 3)
    # same names, shapes and the same draws from the same seed
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    torch.testing.assert_close(ours.state_dict(), theirs.state_dict())
    ours, theirs = ours.double(), theirs.double()
    X = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(X), theirs(X))
    ours(X).sin().sum().backward()
    theirs(X).sin().sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)
    assert torch.autograd.gradcheck(lambda x: ours(x), (X.requires_grad_(),))
    # U(-1/sqrt(D), 1/sqrt(D)) on a large layer
    big = MyLinear(400, 300)
    assert 0.049 < float(big.weight.detach().abs().max()) <= 0.05
    with pytest.raises(ValueError, match="at least one input"):
        MyLinear(0, 3)
    no_bias = MyLinear(5, 3, bias=False)
    assert no_bias.bias is None and no_bias(X.float()).shape == (4, 3)


def test_my_linear_in_a_network():
    torch.manual_seed(0)
    net = nn.Sequential(MyLinear(64, 8), nn.ReLU(), MyLinear(8, 1))
    assert net(torch.rand(2, 64)).shape == (2, 1)
    assert [name for name, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]


# -- §5.5 reading and writing files --------------------------------------------------------------


def test_tensors_round_trip(tmp_path):
    x, y = torch.arange(4), torch.zeros(4)
    io.save(x, tmp_path / "x-file")
    torch.testing.assert_close(io.load(tmp_path / "x-file"), x)
    io.save([x, y], tmp_path / "x-files")
    x2, y2 = io.load(tmp_path / "x-files")
    assert torch.equal(x2, x) and torch.equal(y2, y)
    io.save({"x": x, "y": y}, tmp_path / "mydict")
    loaded = io.load(tmp_path / "mydict")
    assert set(loaded) == {"x", "y"} and torch.equal(loaded["y"], y)


def test_model_parameters_round_trip(tmp_path):
    torch.manual_seed(0)
    net = CustomMLP()
    X = torch.randn(2, 20)
    io.save(net.state_dict(), tmp_path / "mlp.params")
    clone = CustomMLP()
    assert not torch.equal(clone(X), net(X))
    clone.load_state_dict(io.load(tmp_path / "mlp.params"))
    clone.eval()
    assert torch.equal(clone(X), net(X))


class _NotATensor:
    """A Python object; unpickling it could run code, so weights_only loading refuses it."""


def test_a_file_holding_a_python_object_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"weights": torch.ones(2), "object": _NotATensor()}, path)  # a plain, unsafe save
    with pytest.raises(ValueError, match="weights_only") as error:
        io.load(path)
    assert str(path) in str(error.value)


def test_a_crashed_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "params.pt"
    io.save({"w": torch.ones(3)}, path)
    before = path.read_bytes()

    def crash_midway(obj, f):
        f.write(b"PK\x03\x04 half of an archive")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        io.save({"w": torch.zeros(3)}, path)
    with pytest.raises(OSError, match="disk full"):
        io.save({"w": torch.zeros(3)}, tmp_path / "new.pt")
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.pt"]  # no new file, no temporary left
    monkeypatch.undo()
    torch.testing.assert_close(io.load(path)["w"], torch.ones(3))


def test_init_linear_skips_missing_biases_and_reaches_the_scratch_linear():
    net = nn.Sequential(nn.Linear(3, 4, bias=False), MyLinear(4, 2))
    net.apply(init_linear(nn.init.ones_))
    assert torch.equal(net[0].weight, torch.ones(4, 3)) and torch.equal(net[1].weight, torch.ones(2, 4))
    assert torch.equal(net[1].bias, torch.zeros(2))


def test_a_slice_of_the_scratch_sequential_runs_as_nn_sequentials_does():
    torch.manual_seed(0)
    ours = SequentialScratch(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    reference = nn.Sequential(*ours)
    X = torch.randn(4, 3)
    part = ours[:2]
    assert isinstance(part, SequentialScratch) and list(part.state_dict()) == list(reference[:2].state_dict())
    torch.testing.assert_close(part(X), reference[:2](X))


def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path):
    import numpy as np

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(TypeError, match=r"the object\['history'\]\[0\]\['loss'\] is a numpy.float64"):
        io.save({"history": [{"loss": np.float64(0.5)}]}, path)
    assert list(tmp_path.iterdir()) == []
    io.save({"history": [{"loss": 0.5}], "state": {"a": (torch.ones(2), [1, None, "x"])}}, path)
    assert io.load(path)["history"] == [{"loss": 0.5}]


def test_writes_go_through_links_and_take_long_names(tmp_path):
    target = tmp_path / "real.pt"
    io.save(torch.zeros(1), target)
    link = tmp_path / "link.pt"
    link.symlink_to(target)
    io.save(torch.ones(1), link)
    assert link.is_symlink() and torch.equal(io.load(target), torch.ones(1))  # as open(link, "wb") would
    long_name = tmp_path / ("w" * 250)  # the longest name the file system takes, less a few
    io.save(torch.ones(1), long_name)
    assert torch.equal(io.load(long_name), torch.ones(1))


def test_a_json_file_that_is_not_utf8_is_named_in_the_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        io.read_json(path)


def test_json_files_hold_null_where_a_number_is_not_finite(tmp_path):
    import json

    io.write_json(tmp_path / "s.json", {"class_iou": [0.5, float("nan")], "loss": float("inf"), "n": 3})
    text = (tmp_path / "s.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a JSON file")) == {
        "class_iou": [0.5, None], "loss": None, "n": 3}



def _inference_case(name: str):
    """(model in training mode, call) for a public prediction helper."""
    from divekit.data.text import Vocab
    from divekit.experiments.attention import attention_maps
    from divekit.models.bert import encode_text
    from divekit.models.registry import create_model, get_model
    from divekit.models.rnn import predict_chars
    from divekit.models.seq2seq import translate

    torch.manual_seed(0)
    if name in ("tinyssd", "yolo"):
        tiny = get_model(name).tiny
        model, X = create_model(name, "fast", **tiny), torch.rand(2, *tiny["input_shape"])
        return model, lambda: model.detect(X)
    if name in ("translate", "attention_maps"):
        words = Vocab([list("abcd")], reserved_tokens=("<pad>", "<bos>", "<eos>"))
        model = create_model("transformer", "fast", src_vocab_size=len(words), tgt_vocab_size=len(words),
                             **get_model("transformer").tiny)
        if name == "translate":
            return model, lambda: translate(model, "a b c", words, words, 6)
        return model, lambda: attention_maps(model, "a b c", "a b", words, words, 6)
    if name == "predict_chars":
        chars = Vocab(list("time traveller"))
        model = create_model("rnn-lm", "fast", vocab_size=len(chars), **get_model("rnn-lm").tiny)
        return model, lambda: predict_chars("time", 5, model, chars)
    vocab = Vocab("a crane is flying".split(), reserved_tokens=["<pad>", "<mask>", "<cls>", "<sep>"])
    model = create_model("bert", "fast", vocab_size=len(vocab), num_hiddens=8, ffn_num_hiddens=16, max_positions=16,
                         dropout=0.5)
    return model, lambda: encode_text(model, vocab, "a crane is flying")


def test_evaluating_gives_each_part_back_its_own_mode():
    from divekit.models.blocks import evaluating

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5))
    model.train()
    model[1].eval()  # batch norm frozen on purpose, as when fine-tuning
    with evaluating(model):
        assert not any(m.training for m in model.modules()) and not torch.is_grad_enabled()
    assert [m.training for m in model.modules()] == [True, True, False, True]


@pytest.mark.parametrize("name", ["tinyssd", "yolo", "translate", "attention_maps", "predict_chars", "encode_text"])
def test_predictions_run_in_evaluation_mode_and_give_the_mode_back(name):
    model, call = _inference_case(name)
    model.train()
    state = copy.deepcopy(model.state_dict())
    first, second = call(), call()
    assert model.training  # a prediction in the middle of training leaves the model training
    for key, value in model.state_dict().items():  # batch normalization's running statistics untouched
        torch.testing.assert_close(value, state[key], msg=key)
    if isinstance(first, str):
        assert first == second
    else:
        torch.testing.assert_close(first, second)  # no dropout: the same answer twice
    tensors = [first] if isinstance(first, torch.Tensor) else [
        v for item in (first.values() if isinstance(first, dict) else first)
        for v in (item.values() if isinstance(item, dict) else [item]) if isinstance(v, torch.Tensor)]
    assert not any(t.requires_grad for t in tensors)
