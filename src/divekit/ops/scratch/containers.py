"""Containers from scratch (D2L §5.1): the book's ``MySequential``.

A block is any ``nn.Module``: assigning a module to an attribute (or ``add_module``) registers it, so
``parameters()``, ``state_dict()``, ``.to(device)`` and ``apply`` find everything inside.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["Sequential"]


class Sequential(nn.Module):
    """Blocks run in the given order, ``nn.Sequential`` written out (the book's ``MySequential``).

    Each block is registered under its position ("0", "1", ...), or under its name when given an
    ordered dict, so parameter names and the state dict are exactly those of ``nn.Sequential``
    and either loads the other's weights.
    """

    def __init__(self, *args: nn.Module):
        super().__init__()
        named = args[0].items() if len(args) == 1 and isinstance(args[0], dict) else enumerate(args)
        for name, block in named:
            if not isinstance(block, nn.Module):
                raise TypeError(f"block {name} is a {type(block).__name__}, not an nn.Module; wrap functions in a module")
            self.add_module(str(name), block)  # the book writes self._modules[str(idx)] = module

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._modules.values())

    def __setitem__(self, index: int, block: nn.Module) -> None:
        """Replace the block at ``index`` (e.g. a new output layer for fine-tuning, D2L §13.2), as
        ``nn.Sequential`` does, under the same name."""
        self._modules[list(self._modules)[index]] = block

    def __getitem__(self, index: int | slice) -> nn.Module:
        if isinstance(index, slice):  # a Sequential of those blocks, as nn.Sequential gives
            return type(self)(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        for block in self._modules.values():  # insertion order
            X = block(X)
        return X
