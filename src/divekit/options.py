"""Typed options: dataclass fields that are also ``divekit run`` flags (imports no torch).

A field made with :func:`option` carries its help text; its annotation says what a value may be:
``int``, ``float``, ``str``, ``bool``, a ``Literal[...]`` of allowed values, a ``tuple[int, ...]``
(written ``64,128`` on the command line), or any of these ``| None`` (written ``none``). Model
configs, the parts of an experiment and the training options are all made of such fields, and an
experiment's options are the union of its parts' fields (:func:`merge_fields`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import field
from typing import Annotated, Any, Literal


def option(default: Any, help: str, *checks) -> Any:
    """A dataclass field with a default, a help text and checks of its value, e.g.
    ``lr: float = option(0.1, "learning rate", positive)``."""
    return field(default=default, metadata={"help": help, "checks": checks})


def flag(name: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


class Kind(typing.NamedTuple):
    """What an annotation allows: the Python type, allowed values, None allowed, for a tuple its
    element type, and from ``Annotated[type, help, check, ...]`` a help text and checks."""

    type: type
    choices: tuple | None
    optional: bool
    element: type | None = None
    help: str = ""
    checks: tuple = ()


def at_least(low: float):
    """A check for ``Annotated``: the value (when not None) is at least ``low``."""

    def check(name: str, value) -> None:
        if value is not None and value < low:
            raise ValueError(f"{flag(name)} must be at least {low}, got {value}")

    return check


def below(high: float):
    """A check: the value (when not None) is below ``high``."""

    def check(name: str, value) -> None:
        if value is not None and not value < high:
            raise ValueError(f"{flag(name)} must be below {high}, got {value}")

    return check


def positive(name: str, value) -> None:
    """A check: the value (when not None) is above 0."""
    if value is not None and not value > 0:
        raise ValueError(f"{flag(name)} must be positive, got {value}")


def probability(name: str, value) -> None:
    """A check: the value is a probability, in [0, 1]."""
    if value is not None and not 0 <= value <= 1:
        raise ValueError(f"{flag(name)} must be a probability between 0 and 1, got {value}")


def multiple_of(step: int):
    """A check: the value (when not None) is a multiple of ``step``."""

    def check(name: str, value) -> None:
        if value is not None and value % step:
            raise ValueError(f"{flag(name)} must be a multiple of {step}, got {value}")

    return check


def device_name(name: str, value) -> None:
    """A check: a device divekit runs on, auto, cpu, cuda, cuda:N or mps."""
    if value is not None and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError(f"{flag(name)} must be auto, cpu, cuda, cuda:N or mps, got {value!r}")


def each_at_least(low: float):
    """A check for a tuple: every element is at least ``low``."""

    def check(name: str, value) -> None:
        if value is not None and (not value or not all(v >= low for v in value)):  # NaN is not at least low
            raise ValueError(f"{flag(name)} must hold numbers of at least {low}, got {value}")

    return check


def kind_of(annotation: Any) -> Kind:
    help, checks = "", ()
    if typing.get_origin(annotation) is Annotated:
        annotation, help, *checks = typing.get_args(annotation)
        checks = tuple(checks)
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"an option is one type or that type | None, got {annotation}")
        annotation = rest[0]
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        return Kind(type(choices[0]), choices, optional, help=help, checks=checks)
    if typing.get_origin(annotation) is tuple:
        elements = {a for a in typing.get_args(annotation) if a is not Ellipsis}
        if len(elements) != 1 or not elements <= {int, float}:
            raise TypeError(f"a tuple option holds ints or floats, got {annotation}")
        return Kind(tuple, None, optional, elements.pop(), help=help, checks=checks)
    if annotation not in (int, float, str, bool):
        raise TypeError(f"an option is int, float, str, bool, a Literal or a tuple of numbers, got {annotation}")
    return Kind(annotation, None, optional, help=help, checks=checks)


def kinds(cls: type) -> dict[str, Kind]:
    """The :class:`Kind` of every field of the dataclass ``cls``, with the checks of its annotation
    and of its :func:`option`."""
    hints = typing.get_type_hints(cls, include_extras=True)
    result = {}
    for f in dataclasses.fields(cls):
        kind = kind_of(hints[f.name])
        result[f.name] = kind._replace(checks=kind.checks + tuple(f.metadata.get("checks", ())))
    return result


def help_of(cls: type, name: str) -> str:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.metadata.get("help") or kinds(cls)[name].help


def parse_value(kind: Kind, text: str) -> Any:
    """A command-line string as a value of ``kind``, or a ValueError saying why not (without the flag,
    which argparse puts in front)."""
    if kind.optional and text.lower() == "none":
        return None
    if kind.type is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"must be true or false, got {text!r}")
    if kind.type is tuple:
        parts = text.split(",")
        if parts[-1].strip() == "" and len(parts) > 1:
            parts = parts[:-1]  # one trailing comma: "4," is (4,)
        if not all(part.strip() for part in parts):
            raise ValueError(f"must be {kind.element.__name__}s separated by commas, with none left empty, got {text!r}")
        try:
            return tuple(kind.element(part) for part in parts)
        except ValueError:
            raise ValueError(f"must be {kind.element.__name__}s separated by commas, got {text!r}") from None
    try:
        return kind.type(text)
    except ValueError:
        what = {int: "an integer", float: "a number"}.get(kind.type, kind.type.__name__)
        raise ValueError(f"must be {what}{' or none' if kind.optional else ''}, got {text!r}") from None


def check_value(name: str, kind: Kind, value: Any) -> Any:
    """``value`` checked against ``kind`` (an int is taken for a float), or a ValueError naming the flag."""
    if value is None:
        if not kind.optional:
            raise ValueError(f"{flag(name)} needs a value")
        return None
    too_big = f"{flag(name)} must {'hold finite numbers' if kind.type is tuple else 'be a finite number'}, got {value!r}"
    try:
        if kind.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind.type is tuple and kind.element is float and isinstance(value, (tuple, list)):
            value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
    except OverflowError:  # an integer past the float range
        raise ValueError(too_big) from None
    if kind.type is tuple and isinstance(value, list):
        value = tuple(value)  # as read back from JSON
    if not isinstance(value, kind.type) or (kind.type is int and isinstance(value, bool)):
        raise ValueError(f"{flag(name)} must be {kind.type.__name__}, got {value!r}")
    if kind.type is tuple:  # each element as a scalar of its type: ints taken for floats (above), no bools for ints
        if not all(isinstance(v, kind.element) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{flag(name)} must hold {kind.element.__name__}s, got {value!r}")
    numbers = value if kind.type is tuple else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise ValueError(too_big)
    if any(isinstance(v, int) and not -2**63 <= v < 2**63 for v in numbers):  # what torch takes
        what = "hold integers" if kind.type is tuple else "be an integer"
        raise ValueError(f"{flag(name)} must {what} that fit{'' if kind.type is tuple else 's'} 64 bits, got {value!r}")
    if kind.choices is not None and value not in kind.choices:
        raise ValueError(f"{flag(name)} must be one of {', '.join(map(str, kind.choices))}, got {value!r}")
    for check in kind.checks:
        check(name, value)
    return value


def check_fields(obj: Any) -> None:
    """Check (and normalise) every field of a dataclass instance against its annotation and checks."""
    for name, kind in kinds(type(obj)).items():
        value = check_value(name, kind, getattr(obj, name))
        if value is not getattr(obj, name):
            object.__setattr__(obj, name, value)


class Checked:
    """Base of dataclasses whose fields are checked when an instance is made (subclasses with
    further checks call ``super().__post_init__()`` first)."""

    def __post_init__(self):
        check_fields(self)


def merge_fields(name: str, sources: dict[str, tuple[type, dict[str, Any]]], bases: tuple[type, ...] = ()) -> type:
    """One dataclass with the fields of several: ``sources`` maps a label (for the error message) to
    (dataclass, defaults to use for its fields). Two sources with a field of the same name are an
    error. Field order: the bases', then each source's in turn."""
    owner: dict[str, str] = {f.name: f"{b.__name__}" for b in bases for f in dataclasses.fields(b)}
    specs = []
    for label, (cls, defaults) in sources.items():
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            if f.name in owner:
                raise ValueError(f"option {flag(f.name)} is both {owner[f.name]}'s and {label}'s; rename one")
            owner[f.name] = label
            default = defaults.get(f.name, f.default)
            metadata = {"help": help_of(cls, f.name), "checks": f.metadata.get("checks", ())}
            specs.append((f.name, hints[f.name], field(default=default, metadata=metadata)))
    return dataclasses.make_dataclass(name, specs, bases=bases)


def from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build the dataclass ``cls`` from a dict (a saved config.json), refusing unknown keys; a value
    that fails its check is an error that names ``where``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    try:
        return cls(**values)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
