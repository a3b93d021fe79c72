"""Pieces that experiments share: which data set to use (the book's or the user's ``--data``),
loaders on the training device, and the optimizer a config names."""

from __future__ import annotations

import dataclasses

import torch

from divekit.data.base import Split, SplitData
from divekit.data.loader import TensorLoader
from divekit.experiments.config import RunConfig
from divekit.optim import create_optimizer


def book_default(name: str, value):
    """Redeclare a :class:`RunConfig` option with the book's default value and the same help."""
    return dataclasses.field(default=value, metadata=RunConfig.__dataclass_fields__[name].metadata)


DATA_STREAM = 104_729  # offset between the seed of generated data and the seed of the model's init


def data_generator(seed: int) -> torch.Generator:
    """A generator for synthetic data, on a stream apart from the global one that the runner seeds
    with ``seed`` for the model's initial weights: drawing both from one stream would make the first
    weights a copy of the first examples, scaled."""
    return torch.Generator().manual_seed(seed + DATA_STREAM)


def user_or_book_data(cfg: RunConfig, kind: str, load_book_data) -> SplitData:
    """The user's ``--data`` (an image folder or a CSV table) if given, else ``load_book_data()``."""
    if cfg.data is None:
        if cfg.target is not None:
            raise ValueError("--target names a column of your own CSV table; pass it together with --data FILE.csv")
        return load_book_data()
    from divekit.data.user import load_user_data

    return load_user_data(cfg.data, kind=kind, target=cfg.target, seed=cfg.seed)


def make_loaders(data: SplitData, cfg: RunConfig, device: torch.device, resize=None) -> tuple[TensorLoader, TensorLoader]:
    """A shuffling training loader and an in-order evaluation loader, both on ``device``
    (over the first ``cfg.limit`` examples of each split when a limit is set)."""
    train_split, eval_split = data.train, data.eval
    if cfg.limit is not None:
        train_split = Split(train_split.X[: cfg.limit], train_split.y[: cfg.limit])
        eval_split = Split(eval_split.X[: cfg.limit], eval_split.y[: cfg.limit])
    train = TensorLoader(train_split, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device, resize=resize)
    evaluation = TensorLoader(eval_split, max(cfg.batch_size, 256), device=device, resize=resize)
    return train, evaluation


def make_optimizer(cfg: RunConfig, model: torch.nn.Module, **kwargs) -> torch.optim.Optimizer:
    return create_optimizer(cfg.optimizer_name, model.parameters(), lr=cfg.lr, **kwargs)


def prediction_grid(data: SplitData, device: torch.device, resize=None, count: int = 8):
    """``figures`` hook: the first ``count`` evaluation images titled "true / predicted" (D2L §3.6.5)."""
    from divekit.viz.images import show_images

    def figures(model: torch.nn.Module) -> dict:
        if data.classes is None or data.eval.X.dtype != torch.uint8:
            return {}  # only image classification has a picture to show
        images = data.eval.X[:count]
        X, _ = next(iter(TensorLoader(Split(images, data.eval.y[:count]), count, device=device, resize=resize)))
        model.eval()
        with torch.no_grad():
            predicted = model(X).argmax(dim=-1).cpu()
        titles = [f"{data.classes[t]}\n{data.classes[p]}" for t, p in zip(data.eval.y[:count].tolist(), predicted.tolist())]
        return {"predictions": show_images(images, 1, count, titles=titles)}

    return figures
