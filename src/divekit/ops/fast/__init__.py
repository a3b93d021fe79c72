"""Fast primitives on PyTorch's kernels, with the same names and signatures as ``ops.scratch``."""

from divekit.ops.fast.losses import cross_entropy, log_softmax, softmax, squared_loss

__all__ = ["cross_entropy", "log_softmax", "softmax", "squared_loss"]
