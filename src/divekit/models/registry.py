"""The model registry: every model family of the book by name, as timm's ``register_model`` /
``create_model``, with typed configs and named presets.

A family file defines a config dataclass (sizes and options, validated in ``__post_init__``), the
model, and last one small registered factory per preset::

    @register_model("lenet-bn", config=LeNetConfig, example=image_example, section="7.5", batch_norm=True)
    def lenet_bn(cfg: LeNetConfig, ops: Ops) -> ConvNet:
        return lenet(cfg, ops)

``create_model("lenet-bn", "scratch", input_shape=(3, 32, 32))`` makes the config (the preset's
values over the config's defaults, then the overrides), and builds the model from the given ops
twin. The registry names are the names experiments and the command line use.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from divekit.ops import Ops, get_ops
from divekit.registry import Registry


class Example(NamedTuple):
    """A model's inputs for one forward pass and the shape of its (first) output."""

    args: tuple
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config: type  # a dataclass
    build: Callable[[Any, Ops], nn.Module] = field(repr=False)
    example: Callable[[Any, int], Example] = field(repr=False)  # (config, batch size) -> inputs and output shape
    section: str
    preset: dict  # field values over the config's defaults
    tiny: dict  # further values that make a test-sized model

    @property
    def description(self) -> str:
        return (self.build.__doc__ or "").strip().split("\n")[0]

    def make_config(self, **overrides):
        names = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"model {self.name!r} has no option(s) {', '.join(unknown)}; "
                             f"its {self.config.__name__} has {', '.join(sorted(names))}")
        return self.config(**{**self.preset, **overrides})


_MODELS: Registry[ModelEntry] = Registry("model", "divekit.models.list_models() names them all")


def register_model(name: str, *, config: type, example: Callable[[Any, int], Example], section: str,
                   tiny: dict | None = None, **preset):
    """Register the decorated ``build(config, ops) -> nn.Module`` under ``name``; ``preset`` gives
    this name's config values (e.g. ``batch_norm=True``), ``tiny`` a test-sized variant's."""

    def decorator(build):
        entry = ModelEntry(name, config, build, example, section, preset, tiny or {})
        entry.make_config(**entry.tiny)  # a bad preset or tiny config fails at import, not in a run
        _MODELS.add(name, entry)
        return build

    return decorator


@functools.cache
def _load_families() -> None:
    """Import every module of ``divekit.models`` (each registers its models when imported)."""
    import divekit.models as package

    for module in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(module.name)


def get_model(name: str) -> ModelEntry:
    _load_families()
    return _MODELS[name]


def list_models() -> list[str]:
    _load_families()
    return sorted(_MODELS)


def model_config(name: str, **overrides):
    """The config ``create_model(name, **overrides)`` would build from."""
    return get_model(name).make_config(**overrides)


def create_model(name: str, ops: str | Ops = "fast", **overrides) -> nn.Module:
    """Build the registered model ``name`` from the ``ops`` twin ("scratch", "fast" or the namespace),
    with config ``overrides``."""
    entry = get_model(name)
    return entry.build(entry.make_config(**overrides), get_ops(ops))


# -- example inputs, one kind per model interface -----------------------------------------------


def image_example(cfg, batch_size: int) -> Example:
    """Images (B, C, H, W) in [0, 1] -> logits (B, num_classes)."""
    return Example((torch.rand(batch_size, *cfg.input_shape),), (batch_size, cfg.num_classes))


def features_example(cfg, batch_size: int) -> Example:
    """Inputs (B, *input_shape) -> outputs (B, num_outputs)."""
    return Example((torch.randn(batch_size, *cfg.input_shape),), (batch_size, cfg.num_outputs))
