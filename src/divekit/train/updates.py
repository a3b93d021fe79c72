"""How the trainer updates the parameters each step: zero the gradients, clip them, step the optimizer.

Per parameter, as the optimizer does it; or, where it gives the same updates faster, **flat**: in a
single-process CPU run with torch's Adam or AdamW, each param group's parameters and gradients become
views of one flat parameter and one flat gradient, so zeroing, clipping and Adam's update each run once
per group instead of once per tensor (the book's Transformer has 52 tensors of 61k numbers in all:
zeroing, clipping and Adam took ~1.3 ms of its 13 ms step, flat ~0.65 ms). Adam's update is elementwise:
the same numbers as per parameter; only the clipping norm is summed in another order (last bits).

It is the optimizer given that steps: while flat, each of its param groups holds the group's flat
parameter (schedulers, hooks and hyperparameters work as ever) and its state is the flat parameter's.
For every checkpoint and at :meth:`ParameterUpdates.close`, groups and state are per parameter again, so
checkpoints have the form of any other run's (resumed under torchrun, by another --impl, or from before).
A step in which some parameter gets no gradient (an unused head; post-accumulate-grad hooks tell) leaves
the flat form for the rest of the run: Adam skips such a parameter, which a flat update cannot.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from divekit.train import distributed

ALIGN_BYTES = 64  # each parameter starts on a cache line of its flat tensor, as a tensor of its own would
ADAM_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # the tensors torch's Adam keeps per parameter, with "step"


@dataclass
class _FlatGroup:
    """One param group on flat tensors: ``flat`` (its parameters' values, each parameter a view of its slice
    with the parameter's strides), whose ``.grad`` is the flat gradient."""

    params: list[nn.Parameter]
    offsets: list[int]
    flat: torch.Tensor

    def view(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        """Parameter ``i``'s slice of a flat tensor (its values, gradient or an Adam state), shaped and strided as it."""
        p = self.params[i]
        return flat.as_strided(p.shape, p.stride(), self.offsets[i])


class ParameterUpdates:
    """Zero, clip and step ``optimizer``'s parameters; flat where :meth:`flat_allowed` (see the module)."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], flat: bool):
        self.optimizer = optimizer
        self.params = params  # every parameter that trains, for clipping
        self._groups: list[_FlatGroup] = []  # while flat: one per param group
        self._got_gradient: list[bool] = []  # per parameter, since the last zero_grad
        self._hooks: list = []
        if flat:
            self._flatten()

    @classmethod
    def for_run(cls, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                compiled: bool) -> ParameterUpdates:
        params = [p for p in model.parameters() if p.requires_grad]
        return cls(optimizer, params, flat=cls.flat_allowed(optimizer, params, device, compiled))

    @staticmethod
    def flat_allowed(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], device: torch.device,
                     compiled: bool) -> bool:
        """Whether the flat form gives this run the optimizer's own updates: one process on the CPU, no
        torch.compile, torch's Adam or AdamW (not differentiable), every parameter of the model that trains in
        exactly one group and the other way round, one floating dtype a group, dense tensors (contiguous or
        channels-last), and the optimizer's state (after a resume) one step count for all."""
        if device.type != "cpu" or compiled or distributed.world().enabled:
            return False
        if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
            return False
        grouped = [p for g in optimizer.param_groups for p in g["params"]]
        if len(grouped) != len(params) or {id(p) for p in grouped} != {id(p) for p in params}:
            return False
        for group in optimizer.param_groups:
            if group["differentiable"] or not group["params"]:
                return False
            if len({p.dtype for p in group["params"]}) != 1 or not group["params"][0].is_floating_point():
                return False
        if not all(_dense(p) and p.requires_grad and not p.is_sparse and p.device.type == "cpu" for p in params):
            return False
        if optimizer.state:
            states = [optimizer.state.get(p) for p in params]
            if not all(states) or len({float(s["step"]) for s in states}) != 1 \
                    or len({tuple(sorted(s)) for s in states}) != 1:
                return False
        return True

    @property
    def flat(self) -> bool:
        """Whether the parameters train flat now."""
        return bool(self._groups)

    # -- a step ---------------------------------------------------------------------------------------------

    def zero_grad(self) -> None:
        if not self._groups:
            self.optimizer.zero_grad(set_to_none=True)
            return
        for group in self._groups:
            group.flat.grad.zero_()
        self._got_gradient = [False] * len(self.params)

    @property
    def clipped(self) -> list[torch.Tensor]:
        """What to hand a clip function (``clip_fn(updates.clipped, max_norm)``): tensors whose ``.grad`` are
        all the gradients."""
        return [g.flat for g in self._groups] if self._groups else self.params

    def step(self) -> None:
        if self._groups and not all(self._got_gradient):  # Adam skips a parameter without one: per parameter now
            got = self._got_gradient
            self._unflatten()
            for p, has in zip(self.params, got):
                if not has:
                    p.grad = None
        self.optimizer.step()

    # -- checkpoints and the end ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def per_parameter_state(self):
        """Within: the optimizer's param groups and state per parameter, as a checkpoint saves them."""
        if not self._groups:
            yield
            return
        flat_states = self._to_per_parameter()
        try:
            yield
        finally:
            for fg, group, flat_state in zip(self._groups, self.optimizer.param_groups, flat_states):
                for p in fg.params:
                    self.optimizer.state.pop(p, None)
                group["params"] = [fg.flat]
                if flat_state:
                    self.optimizer.state[fg.flat] = flat_state

    def close(self) -> None:
        """Back to the per-parameter form: the optimizer's groups and state, and each parameter and gradient in
        memory of its own."""
        if self._groups:
            self._unflatten()

    def _flatten(self) -> None:
        state = self.optimizer.state
        for group in self.optimizer.param_groups:
            params = list(group["params"])
            align = ALIGN_BYTES // params[0].element_size()
            offsets = [0]
            for p in params:
                offsets.append(-(-(offsets[-1] + p.numel()) // align) * align)
            fg = _FlatGroup(params, offsets[:-1], torch.zeros(offsets[-1], dtype=params[0].dtype))
            fg.flat.grad = torch.zeros_like(fg.flat)
            for i, p in enumerate(params):
                fg.view(fg.flat, i).copy_(p.detach())
                p.data = fg.view(fg.flat, i)
                p.grad = fg.view(fg.flat.grad, i)
            if state:  # resumed: the per-parameter state, flat
                per_parameter = [state.pop(p) for p in params]
                flat_state = {"step": per_parameter[0]["step"]}
                for key in ADAM_STATE:
                    if key in per_parameter[0]:
                        flat_state[key] = torch.zeros_like(fg.flat)  # zeros between parameters too
                        for i, s in enumerate(per_parameter):
                            fg.view(flat_state[key], i).copy_(s[key])
                state[fg.flat] = flat_state
            group["params"] = [fg.flat]
            self._groups.append(fg)
        self._got_gradient = [True] * len(self.params)
        index = {id(p): i for i, p in enumerate(self.params)}
        self._hooks = [p.register_post_accumulate_grad_hook(self._gradient_hook(index[id(p)])) for p in self.params]

    def _gradient_hook(self, i: int) -> Callable[[torch.Tensor], None]:
        def got_gradient(param: torch.Tensor) -> None:
            self._got_gradient[i] = True
        return got_gradient

    def _to_per_parameter(self) -> list[dict]:
        """Give the optimizer its per-parameter groups and state back (copies of the flat state's slices);
        returns each group's flat state."""
        flat_states = []
        for fg, group in zip(self._groups, self.optimizer.param_groups):
            flat_state = self.optimizer.state.pop(fg.flat, {})
            for i, p in enumerate(fg.params):
                if flat_state:  # else no step yet
                    self.optimizer.state[p] = {"step": flat_state["step"].clone(),
                                               **{k: fg.view(flat_state[k], i).clone() for k in ADAM_STATE
                                                  if k in flat_state}}
            group["params"] = fg.params
            flat_states.append(flat_state)
        return flat_states

    def _unflatten(self) -> None:
        self._to_per_parameter()
        for fg in self._groups:
            for p in fg.params:
                p.data = p.data.clone()
                p.grad = p.grad.clone()
        for hook in self._hooks:
            hook.remove()
        self._groups, self._hooks = [], []


def _dense(p: torch.Tensor) -> bool:
    """Whether ``p``'s elements fill ``p.numel()`` places of memory (a flat slice can take its strides)."""
    return p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))
