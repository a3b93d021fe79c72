"""Device choice and mixed precision (D2L §5.6, §12.4.5)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os

import torch
from torch import nn

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")
ALLOCATOR_ENV = "DIVEKIT_CPU_ALLOCATOR"  # "reuse" (the default) or "system"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


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


@functools.cache
def reuse_freed_memory() -> bool:
    """Have the C allocator keep freed memory for the next tensors, so that each training step on
    the CPU reuses the pages of the one before (Linux with glibc; once per process).

    glibc serves every block above 32 MiB (its largest mmap threshold) with fresh pages from the kernel
    and unmaps them on free, so each large activation and gradient of a step is faulted in and zeroed
    again: 55 ms to allocate and fill a 134 MB tensor (TinySSD's first block, batch 32) against 4 ms to
    refill one. This turns that off (``M_MMAP_MAX = 0``) and never trims the heap, as PyTorch's caching
    allocator does on a GPU and as its CPU tuning guide gets by preloading jemalloc or tcmalloc:
    TinySSD trains 1.7x and BERT 1.2x faster here, the process keeping its peak memory (+50% for
    TinySSD) until it exits. ``DIVEKIT_CPU_ALLOCATOR=system`` leaves the allocator as it is.
    Returns whether the setting is in force."""
    choice = os.environ.get(ALLOCATOR_ENV, "reuse")
    if choice not in ("reuse", "system"):
        raise ValueError(f"{ALLOCATOR_ENV}={choice!r} is not a choice; use 'reuse' (the default) or 'system'")
    applied = False
    name = ctypes.util.find_library("c")
    if choice == "reuse" and name is not None:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):  # glibc, not musl or macOS
            applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
    return applied
