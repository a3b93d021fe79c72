"""Device choice and mixed precision (D2L §5.6, §12.4.5)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")


def choose_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable device is an error."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)} or cuda:N")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but MPS is not available here; use --device cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """A context that runs the forward pass in bf16 where asked for, else does nothing."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not support bf16; use --precision fp32")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    """Seed torch's generators (CPU and every GPU); divekit draws all randomness from them."""
    torch.manual_seed(seed)


def prefer_channels_last(model: nn.Module, ops, device: torch.device) -> nn.Module:
    """The model in the channels-last memory format when it is a convolutional network of the fast
    twin on the CPU, whose convolution and pooling kernels run faster on NHWC tensors (measured: the
    NCHW rows of benchmarks/results/cnn.md); else the model as it is."""
    from divekit.ops import get_ops

    if get_ops(ops).NAME == "fast" and device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model.to(memory_format=torch.channels_last)
    return model
