"""Run configurations: typed dataclasses whose fields are the ``divekit run`` options.

Every experiment's config subclasses :class:`RunConfig` and changes its defaults to the book's
hyperparameters (or adds its own fields). ``Literal`` fields list their allowed values;
``__post_init__`` rejects bad values with a message that says what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from divekit.optim import OPTIMIZERS


def option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class RunConfig:
    """Options every experiment takes."""

    epochs: int = option(10, "number of passes over the training data")
    lr: float = option(0.1, "learning rate")
    batch_size: int = option(256, "examples per minibatch")
    impl: Literal["scratch", "fast"] = option("fast", "scratch: built from tensor operations; fast: PyTorch's kernels")
    optimizer: str = option("auto", "auto (scratch-sgd for --impl scratch, else sgd) or one of: " + ", ".join(OPTIMIZERS))
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    seed: int = option(0, "random seed for initialisation, shuffling and dropout")
    precision: Literal["fp32", "bf16"] = option("fp32", "bf16 runs the forward pass under autocast")
    compile: bool = option(False, "run the model through torch.compile")
    clip_grad: float | None = option(None, "clip the global gradient norm to this value")
    data: str | None = option(None, "your own data: an image folder (one sub-folder per class) or a CSV file")
    target: str | None = option(None, "the column to predict, for --data FILE.csv")
    limit: int | None = option(None, "use only the first N training and N evaluation examples (a quick check)")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check_value(type(self), f.name, getattr(self, f.name))
        if self.optimizer != "auto" and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer: unknown optimizer {self.optimizer!r}; choose auto or one of {', '.join(OPTIMIZERS)}")

    @property
    def optimizer_name(self) -> str:
        if self.optimizer != "auto":
            return self.optimizer
        return "scratch-sgd" if self.impl == "scratch" else "sgd"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def base_type(annotation: Any) -> tuple[type, tuple | None, bool]:
    """(python type, allowed values or None, optional?) of a field annotation."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        optional = type(None) in args
        (annotation,) = [a for a in args if a is not type(None)]
        args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return type(args[0]), args, optional
    return annotation, None, optional


def check_value(cls: type, name: str, value: Any) -> None:
    kind, choices, optional = base_type(field_types(cls)[name])
    flag = "--" + name.replace("_", "-")
    if value is None:
        if not optional:
            raise ValueError(f"{flag} needs a value")
        return
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{flag} must be {kind.__name__}, got {value!r}")
    if choices is not None and value not in choices:
        raise ValueError(f"{flag} must be one of {', '.join(map(str, choices))}, got {value!r}")
    if name in ("epochs", "batch_size", "limit") and value < 1:
        raise ValueError(f"{flag} must be at least 1, got {value}")
    if name == "lr" and value <= 0:
        raise ValueError(f"{flag} must be positive, got {value}")
    if name == "clip_grad" and value <= 0:
        raise ValueError(f"{flag} must be positive, got {value}")


def parse_value(cls: type, name: str, text: str) -> Any:
    """Turn a command-line string into the field's type, or raise ValueError saying why not
    (the message leaves out the flag, which argparse puts in front)."""
    kind, _, optional = base_type(field_types(cls)[name])
    if optional and text.lower() == "none":
        return None
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"must be true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"must be {'an integer' if kind is int else 'a number' if kind is float else kind.__name__}, got {text!r}") from None


def from_dict(cls: type, values: dict[str, Any]) -> RunConfig:
    """Build ``cls`` from a dict (a saved config.json), refusing unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; known: {', '.join(sorted(names))}")
    return cls(**values)
