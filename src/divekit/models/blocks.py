"""Layers and blocks (D2L §5.1-5.4): how ``nn.Module`` composes, written out.

A block is any ``nn.Module``: it owns parameters and sub-blocks, and ``forward`` says how they
combine. Assigning a module or ``nn.Parameter`` to an attribute registers it, which is how
``parameters()``, ``named_parameters()``, ``state_dict()``, ``.to(device)`` and ``apply`` find
everything, however deeply nested. Saving and loading them is :func:`divekit.io.save` /
:func:`divekit.io.load` (D2L §5.5). Letters: B batch size, D inputs, H hidden units, Q outputs.

A module's mode (``train()`` / ``eval()``) switches dropout and batch normalization; :func:`evaluating`
and :func:`inference` run it in evaluation mode and give it back in the mode it was in.

The book's ``MySequential`` (§5.1.2) and ``MyLinear`` (§5.4.2) are layers with torch twins, so they
live with the other scratch layers: :class:`divekit.ops.scratch.Sequential` and
:class:`divekit.ops.scratch.Linear`.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from divekit.ops import scratch

# -- modes ----------------------------------------------------------------------------------------

@contextmanager
def evaluating(module: nn.Module):
    """Evaluation mode without gradients inside, then every submodule's mode as it was (a prediction in the
    middle of training leaves dropout and batch normalization training, and a part kept in eval mode,
    such as frozen batch norm, in eval mode)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def inference(function: Callable) -> Callable:
    """Run ``function(module, ...)`` inside :func:`evaluating` its first argument (a method or a predictor)."""

    @functools.wraps(function)
    def wrapper(module, *args, **kwargs):
        with evaluating(module):
            return function(module, *args, **kwargs)

    return wrapper


# -- §5.1 custom blocks ------------------------------------------------------------------------


class CustomMLP(nn.Module):
    """The book's first custom block: D -> H (ReLU) -> Q, with its own ``__init__`` and ``forward``."""

    def __init__(self, num_inputs: int = 20, num_hiddens: int = 256, num_outputs: int = 10):
        super().__init__()
        self.hidden = nn.Linear(num_inputs, num_hiddens)  # registered as "hidden.weight", "hidden.bias"
        self.out = nn.Linear(num_hiddens, num_outputs)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(X)))  # (B, D) -> (B, H) -> (B, Q)


class FixedHiddenMLP(nn.Module):
    """Python control flow inside ``forward`` (the book's ``FixedHiddenMLP``).

    A constant random weight (a buffer: saved and moved with the model, never trained), one linear
    layer used twice (its parameters shared), and a while loop that halves the activations until
    their L1 norm is at most 1. Returns a scalar.
    """

    def __init__(self, num_inputs: int = 20, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("rand_weight", torch.rand(num_inputs, num_inputs, generator=generator))
        self.linear = nn.Linear(num_inputs, num_inputs)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = self.linear(X)  # (B, D)
        X = F.relu(X @ self.rand_weight + 1)
        X = self.linear(X)  # the same parameters again
        while X.abs().sum() > 1:
            X = X / 2
        return X.sum()


class NestMLP(nn.Module):
    """Blocks inside blocks (the book's ``NestMLP``): a Sequential and a Linear in one module."""

    def __init__(self, num_inputs: int = 20):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_inputs, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.linear = nn.Linear(32, 16)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.linear(self.net(X))


# -- §5.2 parameter management -----------------------------------------------------------------


InitFn = Callable[[torch.Tensor], object]


def init_linear(weight_init: InitFn, bias_init: InitFn | None = nn.init.zeros_) -> Callable[[nn.Module], None]:
    """A function for ``net.apply`` (D2L §5.2.2): ``apply`` visits every sub-block, and this one
    re-initialises each ``nn.Linear`` in place, e.g. the book's ``init_normal`` is
    ``init_linear(partial(nn.init.normal_, std=0.01))``; ``bias_init=None`` leaves biases as they are."""

    def init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, scratch.Linear)):
            weight_init(module.weight)
            if bias_init is not None and module.bias is not None:
                bias_init(module.bias)

    return init


@torch.no_grad()
def sparse_uniform_(weight: torch.Tensor) -> torch.Tensor:
    """The book's custom init ``my_init``: w ~ U(-10, 10), then w = 0 where |w| < 5 (so w is 0 with
    probability 1/2, else U(5, 10) with a random sign). In place, like ``nn.init``'s functions."""
    weight.uniform_(-10, 10)
    return weight.mul_(weight.abs() >= 5)


def tied_mlp(num_inputs: int = 4, num_hiddens: int = 8) -> nn.Sequential:
    """The book's tied-parameter net (D2L §5.2.3): one ``nn.Linear`` at positions 2 and 4.

    Both positions hold the same object, so its weight gets the sum of the gradients of both uses,
    and ``parameters()`` lists it once.
    """
    shared = nn.Linear(num_hiddens, num_hiddens)
    return nn.Sequential(nn.Linear(num_inputs, num_hiddens), nn.ReLU(),
                         shared, nn.ReLU(),
                         shared, nn.ReLU(),
                         nn.Linear(num_hiddens, 1))


# -- §5.4 custom layers ------------------------------------------------------------------------


class CenteredLayer(nn.Module):
    """A layer without parameters: subtract the mean of all of its input, X - mean(X)."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X - X.mean()
