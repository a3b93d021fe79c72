"""Multilayer perceptrons (D2L §4.2 scratch, §4.3 concise, §4.6 with dropout).

With L hidden layers of width n and H_0 = X flattened:
    H_l = ReLU(H_{l-1} W_l^T + b_l)      (then dropout in training, if asked for)
    O   = H_L W_{L+1}^T + b_{L+1}        (logits; the loss applies the softmax)
Shapes: X (B, ...) flattened to (B, D); W_l (n, n_{l-1}); H_l (B, n); O (B, Q).
The book's §4.2 net is D-256-Q with one hidden layer; §4.6's is 784-256-256-10 with dropout 0.2
after the first hidden layer and 0.5 after the second.

The model is a ``Sequential`` of named layers (flatten, hidden1, relu1, dropout1, hidden2, ...,
output), made from the ops twin it is given, so both twins have the same state dict keys
(hidden1.weight, ..., output.bias). By default weights start at N(0, sigma^2) with sigma = 0.01 and
biases at 0, §4.2's ``W = 0.01 * randn``, ``b = 0``. The book's other sections start elsewhere, and the
recipes follow each: §4.3 and §4.6.5 (concise) draw the weights but keep ``nn.Linear``'s biases
(``zero_bias=False``); §4.6.4 (dropout from scratch) keeps ``nn.Linear``'s weights and biases too
(``sigma=None``), U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which both twins' Linear layers draw.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from divekit.models.registry import features_example, register_model
from divekit.options import Checked, at_least, option, positive, probability
from divekit.ops import Ops


@dataclass
class MLPConfig(Checked):
    input_shape: tuple[int, ...] = option((1, 28, 28), "shape of one example; flattened")
    num_outputs: int = option(10, "number of outputs (classes)", at_least(1))
    num_hiddens: int = option(256, "width of each hidden layer", at_least(1))
    num_layers: int = option(1, "number of hidden layers", at_least(1))
    dropout1: float = option(0.0, "dropout probability after the first hidden layer", probability)
    dropout2: float = option(0.0, "dropout probability after the second and later hidden layers", probability)
    sigma: float | None = option(0.01, "weights start at N(0, sigma^2); none keeps the layers' own "
                                       "U(-1/sqrt(fan_in), 1/sqrt(fan_in))", positive)
    zero_bias: bool = option(True, "biases start at 0; false keeps the layers' own U(-1/sqrt(fan_in), 1/sqrt(fan_in))")


def mlp_layers(cfg: MLPConfig, ops: Ops) -> OrderedDict:
    """The named layers of an MLP."""
    widths = [math.prod(cfg.input_shape)] + [cfg.num_hiddens] * cfg.num_layers
    layers = OrderedDict(flatten=ops.Flatten())
    for i in range(1, cfg.num_layers + 1):
        layers[f"hidden{i}"] = ops.Linear(widths[i - 1], widths[i])  # H_i = H_{i-1} W_i^T + b_i, (B, n)
        layers[f"relu{i}"] = ops.ReLU()
        p = cfg.dropout1 if i == 1 else cfg.dropout2
        if p > 0:
            layers[f"dropout{i}"] = ops.Dropout(p)
    layers["output"] = ops.Linear(widths[-1], cfg.num_outputs)  # O = H_L W^T + b, (B, Q)
    return layers


@register_model("mlp", config=MLPConfig, example=features_example, section="4.2-4.3, 4.6",
                tiny=dict(input_shape=(1, 8, 8), num_hiddens=16, num_layers=2, dropout1=0.2, dropout2=0.5))
def mlp(cfg: MLPConfig, ops: Ops) -> nn.Module:
    """ReLU hidden layers of one width, optional dropout, then the output layer."""
    model = ops.Sequential(mlp_layers(cfg, ops))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and cfg.sigma is not None:
                p.normal_(0, cfg.sigma)
            elif name.endswith("bias") and cfg.zero_bias:
                p.zero_()
    return model
