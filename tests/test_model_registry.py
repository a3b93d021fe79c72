"""Every registered model, with both ops twins: shapes, finite outputs, a gradient for every
parameter, identical initial weights at one seed, and a scratch state dict that loads into the fast
twin (and back) with equal outputs (timm's test_models, made for twins)."""

import dataclasses

import pytest
import torch

from divekit.models.registry import create_model, get_model, list_models, model_config, register_model

NAMES = list_models()


def _tensors(output) -> list[torch.Tensor]:
    """Every tensor a model returns: one tensor, or those inside a tuple (logits and a state, a
    detector's anchors and predictions), nested tuples flattened, None and state objects left out."""
    if isinstance(output, torch.Tensor):
        return [output]
    if not isinstance(output, (tuple, list)):
        return []  # a decoder's state object
    return [t for part in output for t in _tensors(part)]


def _build(name, impl, seed=0):
    entry = get_model(name)
    torch.manual_seed(seed)
    return create_model(name, impl, **entry.tiny), entry.example(entry.make_config(**entry.tiny), 3)


@pytest.mark.parametrize("impl", ["scratch", "fast"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_finite_outputs_and_a_gradient_for_every_parameter(name, impl):
    model, example = _build(name, impl)
    model.train()
    outputs = _tensors(model(*example.args))
    assert tuple(outputs[0].shape) == example.output_shape
    assert all(torch.isfinite(out).all() for out in outputs)
    sum(out.float().square().mean() for out in outputs if out.requires_grad).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"{name} ({impl}): no finite gradient for {missing}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_twins_start_identical_at_one_seed_and_load_each_others_state_dicts(name):
    scratch, example = _build(name, "scratch")
    fast, _ = _build(name, "fast")
    s_state, f_state = scratch.state_dict(), fast.state_dict()
    assert list(s_state) == list(f_state), f"{name}: the twins' state dict keys differ"
    for key in s_state:
        torch.testing.assert_close(s_state[key], f_state[key], msg=f"{name}: {key} starts differently")
    torch.manual_seed(1)
    other = create_model(name, "scratch", **get_model(name).tiny)  # different weights, loaded into both twins
    fast.load_state_dict(other.state_dict())
    other.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(_tensors(fast(*example.args)), _tensors(other(*example.args)),
                                   rtol=1e-4, atol=1e-5)
    scratch.load_state_dict(fast.state_dict())
    scratch.eval()
    with torch.no_grad():
        torch.testing.assert_close(_tensors(scratch(*example.args)), _tensors(fast(*example.args)),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_every_config_field_has_a_default_and_a_docstring_description(name):
    entry = get_model(name)
    assert entry.description, f"{name}: its factory needs a docstring"
    assert dataclasses.is_dataclass(entry.config)
    cfg = model_config(name)
    assert all(f.default is not dataclasses.MISSING for f in dataclasses.fields(cfg))


def test_presets_override_defaults_and_unknown_options_are_refused():
    assert model_config("lenet").batch_norm is False and model_config("lenet-bn").batch_norm is True
    assert model_config("vgg").ratio == 4 and model_config("vgg11").ratio == 1
    assert model_config("lenet-bn", input_shape=(3, 32, 32)).input_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="model 'lenet' has no option\\(s\\) num_hidens"):
        create_model("lenet", num_hidens=3)
    with pytest.raises(KeyError, match="did you mean lenet"):
        create_model("lenett")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet", config=dataclasses.make_dataclass("C", []), example=None, section="6.6")(lambda c, o: None)


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(ValueError, match="--num-hiddens must be at least 1"):
        create_model("mlp", num_hiddens=0)
    with pytest.raises(ValueError, match="images \\(C, H, W\\)"):
        create_model("lenet", input_shape=(28, 28))
    with pytest.raises(ValueError, match="--ratio must divide"):
        create_model("vgg", ratio=3)
    with pytest.raises(ValueError, match="cannot take 8x8 images"):
        create_model("alexnet", input_shape=(1, 8, 8))
