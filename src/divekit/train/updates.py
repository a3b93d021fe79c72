"""How the trainer updates the parameters each step: zero the gradients, clip them, step the optimizer.

Per parameter, as the optimizer does it; or, where it gives the same updates faster, **flat**: in a
single-process CPU run with torch's Adam or AdamW, each param group's parameters and gradients become
views of one flat parameter and one flat gradient, so zeroing, clipping and Adam's update each run once
per group instead of once per tensor (the book's Transformer has 52 tensors of 61k numbers in all:
zeroing, clipping and Adam took ~1.3 ms of its 13 ms step, flat ~0.65 ms). Adam's update is elementwise:
the same numbers as per parameter up to the last bit (torch's fused kernel rounds an element by where it
lies in its tensor), and the clipping norm is summed in another order.

It is the optimizer given that steps: while flat, each of its param groups holds the group's flat
parameter (schedulers, hooks and hyperparameters work as ever) and its state is the flat parameter's.
For every checkpoint and at :meth:`ParameterUpdates.close`, groups and state are per parameter again, so
checkpoints have the form of any other run's (resumed under torchrun, by another --impl, or from before).
A step in which some parameter gets no gradient (an unused head; post-accumulate-grad hooks tell) leaves
the flat form for the rest of the run: Adam skips such a parameter, which a flat update cannot; so do a
param group added and a parameter frozen or unfrozen during training. Gradients that a callback sets to
None are the flat gradient's views again at the next step. Callbacks see the per-parameter form at the
end of an epoch; after a step (``on_step_end``) the groups hold the flat tensors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from divekit.ops.fast.rnn import clip_grad_norm as fast_clip_grad_norm
from divekit.ops.scratch.rnn import clip_grad_norm as scratch_clip_grad_norm
from divekit.train import distributed

ALIGN_BYTES = 64  # each parameter starts on a cache line of its flat tensor, as a tensor of its own would
GLOBAL_NORM_CLIPPING = (torch.nn.utils.clip_grad_norm_, fast_clip_grad_norm, scratch_clip_grad_norm)  # of all as one
ADAM_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # the tensors torch's Adam keeps per parameter, with "step"


@dataclass
class _FlatGroup:
    """One param group on flat tensors: ``flat`` (its parameters' values, each parameter a view of its slice
    with the parameter's strides), whose ``.grad`` is the flat gradient."""

    params: list[nn.Parameter]
    offsets: list[int]
    flat: torch.Tensor
    grad: torch.Tensor  # the flat gradient
    grads: list[torch.Tensor]  # each parameter's view of it

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
        self._lent = False  # within per_parameter_state
        if flat:
            self._flatten()

    @classmethod
    def for_run(cls, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                compiled: bool) -> ParameterUpdates:
        params = [p for p in model.parameters() if p.requires_grad]
        sparse = any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse for m in model.modules())
        return cls(optimizer, params, flat=not sparse and cls.flat_allowed(optimizer, params, device, compiled))

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

    def start_epoch(self, params: list[nn.Parameter]) -> None:
        """The parameters that train this epoch (a callback may have frozen or unfrozen some since the last:
        then per parameter from here)."""
        if len(params) != len(self.params) or any(p is not q for p, q in zip(params, self.params)):
            if self._groups:
                self._unflatten()
            self.params = params

    def zero_grad(self) -> None:
        if self._groups and len(self.optimizer.param_groups) != len(self._groups):  # a group added while training
            self._unflatten()
        if not self._groups:
            self.optimizer.zero_grad(set_to_none=True)
            return
        for group in self._groups:  # gradients set to None since (model.zero_grad()) are the views again
            group.flat.grad = group.grad
            for p, view in zip(group.params, group.grads):
                if p.grad is not view:
                    p.grad = view
            group.grad.zero_()
        self._got_gradient = [False] * len(self.params)

    def clip(self, clip_fn: Callable[[list[torch.Tensor], float], torch.Tensor], max_norm: float) -> None:
        """``clip_fn(parameters, max_norm)`` over every gradient: a clip function of the global norm (torch's,
        divekit's twins) takes the flat gradients, any other the parameters (their gradients are views)."""
        flat = self._groups and clip_fn in GLOBAL_NORM_CLIPPING
        clip_fn([g.flat for g in self._groups] if flat else self.params, max_norm)

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
        if not self._groups or self._lent:
            yield
            return
        self._lent = True
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
            self._lent = False

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
            flat = torch.zeros(offsets[-1], dtype=params[0].dtype)
            fg = _FlatGroup(params, offsets[:-1], flat, torch.zeros_like(flat), [])
            flat.grad = fg.grad
            for i, p in enumerate(params):
                fg.view(flat, i).copy_(p.detach())
                p.data = fg.view(flat, i)
                fg.grads.append(fg.view(fg.grad, i))
                p.grad = fg.grads[i]
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
        try:
            self._to_per_parameter()
            for fg in self._groups:
                for p in fg.params:
                    p.data = p.data.clone()
                    p.grad = None if p.grad is None else p.grad.clone()
        finally:
            for hook in self._hooks:
                hook.remove()
            self._groups, self._hooks = [], []


def _dense(p: torch.Tensor) -> bool:
    """Whether ``p``'s elements fill ``p.numel()`` places of memory (a flat slice can take its strides)."""
    return p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))
