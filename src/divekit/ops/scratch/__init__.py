"""Scratch primitives, written from tensor operations to be read top to bottom."""

from divekit.ops.scratch.losses import cross_entropy, log_softmax, softmax, squared_loss

__all__ = ["cross_entropy", "log_softmax", "softmax", "squared_loss"]
