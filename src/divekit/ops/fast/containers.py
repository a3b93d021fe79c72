"""Containers: ``nn.Sequential`` itself, twin of :mod:`divekit.ops.scratch.containers`."""

from torch.nn import Sequential

__all__ = ["Sequential"]
