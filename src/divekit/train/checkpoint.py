"""Checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model and optimizer (and scheduler) state, the finished epoch, the metric
history and torch's random state. It is written atomically and loaded with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from divekit import io

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, *, model, optimizer, scheduler, epoch: int, history: list[dict]) -> None:
    state = {
        "format": 1,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    io.save(state, path)


def load_checkpoint(path: Path, *, model, optimizer, scheduler) -> tuple[int, list[dict]]:
    """Restore states in place; return (finished epoch, history)."""
    state = io.load(path)
    if not isinstance(state, dict) or state.get("format") != 1:
        raise ValueError(f"{path} is not a divekit checkpoint")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["epoch"], state["history"]
