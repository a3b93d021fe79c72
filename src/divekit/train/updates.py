"""How the trainer updates the parameters each step: zero the gradients, clip them, step the optimizer.

Per parameter, as the optimizer does it; or, where it gives the same updates faster, **flat**: in a
single-process CPU run with torch's Adam or AdamW, each param group's parameters and gradients become
views of one flat parameter and one flat gradient, so zeroing, clipping and Adam's update each run once
per group instead of once per tensor (the book's Transformer has 52 tensors of 61k numbers in all:
zeroing, clipping and Adam took ~1.3 ms of its 13 ms step, flat ~0.7 ms, while autograd's adding into the
gradient views costs ~0.1 ms; benchmarks/results/flat-updates.md). Adam's update is elementwise:
the same numbers as per parameter up to the last bit (torch's fused kernel rounds an element by where it
lies in its tensor), and the clipping norm is summed in another order.

It is the optimizer given that steps: while flat, each of its param groups holds the group's flat
parameter (schedulers, hooks and hyperparameters work as ever) and its state is the flat parameter's.
For every checkpoint and at :meth:`ParameterUpdates.close`, groups and state are per parameter again, so
checkpoints have the form of any other run's (resumed under torchrun, by another --impl, or from before).
A step in which some parameter gets no gradient (an unused head; post-accumulate-grad hooks tell) leaves
the flat form for the rest of the run: Adam skips such a parameter, which a flat update cannot; so do a
param group added or removed, a parameter frozen or unfrozen, or given memory of its own (``model.to``,
``p.data = ...``) during training. Gradients that a callback sets to None are the flat gradient's views
again at the next step. Callbacks see the per-parameter form at the end of an epoch, and what they do to
the optimizer's state there holds; after a step (``on_step_end``) the groups hold the flat tensors. A
tensor that shares a parameter's memory from before ``fit`` (``w = net[0].weight.data``) no longer does
after a flat run: every parameter ends with memory of its own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
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
    with the parameter's strides), whose ``.grad`` is ``grad``, the flat gradient."""

    params: list[nn.Parameter]
    offsets: list[int]
    flat: torch.Tensor
    grad: torch.Tensor
    layouts: list[tuple[torch.Size, tuple[int, ...]]] = field(init=False)  # each parameter's shape and strides
    grads: list[torch.Tensor] = field(default_factory=list)  # each parameter's view of ``grad``
    pointers: list[tuple[int, int]] = field(default_factory=list)  # where each one's values and gradient start

    def __post_init__(self):
        self.layouts = [(p.shape, p.stride()) for p in self.params]

    def view(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        """Parameter ``i``'s slice of a flat tensor (its values, gradient or an Adam state), shaped and strided as
        the parameter was when it was laid there."""
        shape, strides = self.layouts[i]
        return flat.as_strided(shape, strides, self.offsets[i])

    def flat_state(self, states: list[dict | None]) -> dict | None:
        """The parameters' Adam states (one step count: :func:`_one_state`) as one state of ``flat``; None for none."""
        if not states or not states[0]:
            return None
        flat_state = {"step": states[0]["step"].clone()}
        for key in ADAM_STATE:
            if key in states[0]:
                flat_state[key] = torch.zeros_like(self.flat)  # zeros between parameters too
                for i, state in enumerate(states):
                    self.view(flat_state[key], i).copy_(state[key])
        return flat_state


class ParameterUpdates:
    """Zero, clip and step ``optimizer``'s parameters; flat where :meth:`flat_allowed` (see the module)."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], flat: bool):
        self.optimizer = optimizer
        self.params = params  # every parameter that trains, for clipping
        self._groups: list[_FlatGroup] = []  # while flat: one per param group
        self._optimizer_flat = False  # whether the optimizer's groups and state are the flat tensors' now
        self._got_gradient: list[bool] = []  # per parameter, since the last zero_grad
        self._hooks: list = []
        self._lent = False  # within per_parameter_state
        if flat:
            try:
                self._flatten()
            except BaseException:  # Ctrl-C: nothing half done is left
                self._unflatten()
                raise

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
        return _one_state([optimizer.state.get(p) for p in params])

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
        if self._groups and not self._intact():
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

    def _intact(self) -> bool:
        """Whether the flat form still holds: the optimizer's groups are the flat tensors' (a callback may add
        or remove one), and every parameter's values and gradient view are still their slices of them
        (``model.to(...)`` or ``p.data = ...`` give a parameter and its gradient memory of their own)."""
        groups = self.optimizer.param_groups
        return len(groups) == len(self._groups) and all(
            len(group["params"]) == 1 and group["params"][0] is fg.flat for group, fg in zip(groups, self._groups)) \
            and all((p.data_ptr(), g.data_ptr()) == pointers
                    for fg in self._groups for p, g, pointers in zip(fg.params, fg.grads, fg.pointers))

    # -- checkpoints and the end ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def per_parameter_state(self):
        """Within: the optimizer's param groups and state per parameter, as a checkpoint saves them and as
        callbacks see them at the end of an epoch. What changes within (a callback that resets Adam's state,
        or loads another) holds after: flat again from that state where it has one step count for all and
        the groups are as they were, else per parameter from here."""
        if not self._groups or self._lent:
            yield
            return
        self._lent = True
        self._to_per_parameter()
        try:
            yield
        finally:
            self._lent = False
            state, groups = self.optimizer.state, self.optimizer.param_groups
            same_groups = len(groups) == len(self._groups) and all(
                len(group["params"]) == len(fg.params) and all(p is q for p, q in zip(group["params"], fg.params))
                for group, fg in zip(groups, self._groups))
            if same_groups and _one_state([state.get(p) for p in self.params]):
                for group, fg in zip(groups, self._groups):
                    self._group_to_flat(group, fg)
            else:
                self._unflatten()

    def close(self) -> None:
        """Back to the per-parameter form: the optimizer's groups and state, and each parameter and gradient in
        memory of its own."""
        if self._groups:
            self._unflatten()

    def _flatten(self) -> None:
        for group in self.optimizer.param_groups:
            params = list(group["params"])
            align = ALIGN_BYTES // params[0].element_size()
            offsets = [0]
            for p in params:
                offsets.append(-(-(offsets[-1] + p.numel()) // align) * align)
            flat = torch.zeros(offsets[-1], dtype=params[0].dtype)
            fg = _FlatGroup(params, offsets[:-1], flat, torch.zeros_like(flat))
            for i, p in enumerate(params):
                fg.view(flat, i).copy_(p.detach())
            self._groups.append(fg)  # from here the group is flat
            self._group_to_flat(group, fg)  # resumed: the state per parameter, flat
            flat.grad = fg.grad
            for i, p in enumerate(params):
                p.data = fg.view(flat, i)
                fg.grads.append(fg.view(fg.grad, i))
                p.grad = fg.grads[i]
            fg.pointers = [(p.data_ptr(), g.data_ptr()) for p, g in zip(params, fg.grads)]
        self._got_gradient = [True] * len(self.params)
        index = {id(p): i for i, p in enumerate(self.params)}
        self._hooks = [p.register_post_accumulate_grad_hook(self._gradient_hook(index[id(p)])) for p in self.params]

    def _group_to_flat(self, group: dict, fg: _FlatGroup) -> None:
        """The optimizer's ``group`` holds ``fg``'s flat tensor, and its parameters' state as the flat tensor's."""
        state = self.optimizer.state
        flat_state = fg.flat_state([state.get(p) for p in fg.params])
        group["params"] = [fg.flat]
        if flat_state:
            state[fg.flat] = flat_state
        for p in fg.params:
            state.pop(p, None)
        self._optimizer_flat = True

    def _gradient_hook(self, i: int) -> Callable[[torch.Tensor], None]:
        def got_gradient(param: torch.Tensor) -> None:
            self._got_gradient[i] = True
        return got_gradient

    def _to_per_parameter(self) -> None:
        """Give the optimizer its per-parameter groups and state back (copies of the flat state's slices), each
        group found by its flat tensor (a callback may have removed one)."""
        if not self._optimizer_flat:
            return
        by_flat = {id(fg.flat): fg for fg in self._groups}
        for group in self.optimizer.param_groups:
            fg = by_flat.get(id(group["params"][0])) if len(group["params"]) == 1 else None
            if fg is not None:
                group["params"] = fg.params
        for fg in self._groups:
            flat_state = self.optimizer.state.pop(fg.flat, None)
            for i, p in enumerate(fg.params):
                if flat_state:  # else no step yet
                    self.optimizer.state[p] = {"step": flat_state["step"].clone(),
                                               **{k: fg.view(flat_state[k], i).clone() for k in ADAM_STATE
                                                  if k in flat_state}}
        self._optimizer_flat = False

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


def _one_state(states: list[dict | None]) -> bool:
    """Whether the parameters' optimizer states fit one flat state: none of them, or all with the same
    tensors and one step count."""
    if not any(states):
        return True
    return all(states) and len({float(s["step"]) for s in states}) == 1 and len({tuple(sorted(s)) for s in states}) == 1


def _dense(p: torch.Tensor) -> bool:
    """Whether ``p``'s elements fill ``p.numel()`` places of memory (a flat slice can take its strides)."""
    return p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))
