"""Primitives in two twins with the same names: ``ops.scratch`` (readable, from tensor
operations) and ``ops.fast`` (PyTorch's kernels). Models pick one with :func:`get_ops`."""

from __future__ import annotations

from types import ModuleType

IMPLS = ("scratch", "fast")


def get_ops(impl: str) -> ModuleType:
    """The ``scratch`` or ``fast`` namespace of primitives."""
    if impl == "scratch":
        from divekit.ops import scratch

        return scratch
    if impl == "fast":
        from divekit.ops import fast

        return fast
    raise ValueError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
