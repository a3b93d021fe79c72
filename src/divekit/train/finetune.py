"""Fine-tuning (D2L §13.2): a target model made of a source model's body and a new output layer,
trained with a smaller learning rate for the body than for the new head, or with the body frozen.

The source's weights come from a divekit run folder (its ``checkpoint.pt``), from a divekit
checkpoint or state-dict file, or from a user's file of torchvision's ResNet-18 weights (keys
``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``; renamed by
:func:`~divekit.models.cnn.resnet.from_torchvision`). Every file is read with ``weights_only``
(:func:`divekit.io.load`): a weights file can hold tensors, never code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from divekit import io
from divekit.models.cnn.base import ConvNet
from divekit.models.cnn.resnet import from_torchvision
from divekit.ops import Ops
from divekit.run_folder import CHECKPOINT_NAME
from divekit.train.checkpoint import FORMAT


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A model's state dict from a run folder, a divekit checkpoint, or a state-dict file in
    divekit's keys or torchvision's ResNet keys (renamed to divekit's)."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).is_file():
            raise FileNotFoundError(f"{path} is not a divekit run folder: it has no {CHECKPOINT_NAME}")
        path = path / CHECKPOINT_NAME
    content = io.load(path)
    if isinstance(content, dict) and content.get("format") == FORMAT and "model" in content:
        content = content["model"]  # a divekit checkpoint
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    if "fc.weight" in content or "conv1.weight" in content:
        content = from_torchvision(content)
    return content


def load_body(model: ConvNet, state_dict: dict[str, torch.Tensor]) -> None:
    """Copy the source's feature extractor (every ``features.*`` entry) into ``model``; its head is
    left as it is (the source's output layer has the source's classes). Keys or shapes that do not
    fit are an error that names them."""
    body = {k: v for k, v in state_dict.items() if k.startswith("features.")}
    own = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
    missing, unexpected = sorted(own.keys() - body.keys()), sorted(body.keys() - own.keys())
    if missing or unexpected:
        raise ValueError(f"the source's body does not fit this model: missing {missing[:4]}, unexpected "
                         f"{unexpected[:4]} (is it the same architecture and layout?)")
    wrong = [f"{k} {tuple(body[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if body[k].shape != v.shape]
    if wrong:
        raise ValueError(f"the source's body has other shapes: {', '.join(wrong[:4])}")
    model.load_state_dict(body, strict=False)


def new_output_layer(model: ConvNet, num_classes: int, ops: Ops) -> nn.Module:
    """Replace the last layer of ``model.head`` (a Linear) by a fresh one with ``num_classes``
    outputs, Xavier-initialised as the book's ``finetune_net.fc`` (D2L §13.2.2). Returns it."""
    old = model.head[-1]
    if not hasattr(old, "in_features"):
        raise ValueError(f"the model's head ends in {type(old).__name__}, not a linear output layer")
    layer = ops.Linear(old.in_features, num_classes).to(old.weight.device)
    ops.xavier_uniform_(layer.weight)
    model.head[-1] = layer
    return layer


def parameter_groups(model: ConvNet, lr: float, head_lr_scale: float = 10.0,
                     freeze_body: bool = False) -> list[dict]:
    """Optimizer parameter groups: the body at ``lr`` and the head at ``lr * head_lr_scale`` (the
    book's ``param_group=True``: ten times), or, with ``freeze_body``, the head alone with the
    body's parameters set not to need gradients and its batch normalization kept in evaluation mode
    (its running statistics stay those of the source data; D2L §13.2.2)."""
    body = [p for name, p in model.named_parameters() if not name.startswith("head.")]
    head = [p for name, p in model.named_parameters() if name.startswith("head.")]
    if freeze_body:
        if set(dict(model.named_children())) != {"features", "head"}:
            raise ValueError(f"freezing the body needs a ConvNet of features and head, got {type(model).__name__}")
        for p in body:
            p.requires_grad_(False)
        model.frozen_features = True
        model.train(model.training)
        return [{"params": head, "lr": lr * head_lr_scale}]
    return [{"params": body, "lr": lr}, {"params": head, "lr": lr * head_lr_scale}]
