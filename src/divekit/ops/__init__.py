"""Primitives in two twins with the same names: ``ops.scratch`` (readable, from tensor
operations) and ``ops.fast`` (PyTorch's kernels).

A model is given one of them, once, as its ``ops`` and builds every layer from it
(``ops.Conv2d(...)``, ``ops.cross_entropy(...)``); nothing below the model asks which one it is.
Topics are sub-namespaces (``ops.conv``, ``ops.rnn``, ...) whose names are also exported flat.
A scratch layer takes its torch counterpart's leading arguments, in order, with the same defaults,
has the same parameter names and shapes, and draws its initial values alike
(``tests/test_ops_twins.py`` holds every name of one twin against the other).
"""

from __future__ import annotations

from types import ModuleType
from typing import TypeAlias

IMPLS = ("scratch", "fast")
Ops: TypeAlias = ModuleType  # divekit.ops.scratch or divekit.ops.fast


def get_ops(impl: str | Ops) -> Ops:
    """The ``scratch`` or ``fast`` namespace of primitives (given one, return it)."""
    if isinstance(impl, ModuleType):
        if getattr(impl, "NAME", None) not in IMPLS:
            raise ValueError(f"{impl.__name__} is not an ops namespace; pass 'scratch', 'fast' or divekit.ops.scratch/fast")
        return impl
    if impl == "scratch":
        from divekit.ops import scratch

        return scratch
    if impl == "fast":
        from divekit.ops import fast

        return fast
    raise ValueError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
