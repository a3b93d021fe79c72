"""Pieces that experiments share: which data set to use (the book's or the user's ``--data``),
loaders on the training device, and the optimizer a config names."""

from __future__ import annotations

import dataclasses

import torch

from divekit.data.base import SplitData
from divekit.data.loader import TensorLoader
from divekit.experiments.config import RunConfig
from divekit.optim import create_optimizer


def book_default(name: str, value):
    """Redeclare a :class:`RunConfig` option with the book's default value and the same help."""
    return dataclasses.field(default=value, metadata=RunConfig.__dataclass_fields__[name].metadata)


def user_or_book_data(cfg: RunConfig, kind: str, load_book_data) -> SplitData:
    """The user's ``--data`` (an image folder or a CSV table) if given, else ``load_book_data()``."""
    if cfg.data is None:
        if cfg.target is not None:
            raise ValueError("--target names a column of your own CSV table; pass it together with --data FILE.csv")
        return load_book_data()
    from divekit.data.user import load_user_data

    return load_user_data(cfg.data, kind=kind, target=cfg.target, seed=cfg.seed)


def make_loaders(data: SplitData, cfg: RunConfig, device: torch.device, resize=None) -> tuple[TensorLoader, TensorLoader]:
    """A shuffling training loader and an in-order evaluation loader, both on ``device``."""
    train = TensorLoader(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device, resize=resize)
    evaluation = TensorLoader(data.eval, max(cfg.batch_size, 256), device=device, resize=resize)
    return train, evaluation


def make_optimizer(cfg: RunConfig, model: torch.nn.Module, **kwargs) -> torch.optim.Optimizer:
    return create_optimizer(cfg.optimizer_name, model.parameters(), lr=cfg.lr, **kwargs)
