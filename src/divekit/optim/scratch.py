"""Optimizers from scratch (D2L §3.2.6, §11.5-11.10), as ``torch.optim.Optimizer`` subclasses so
that the trainer, the learning-rate schedulers and checkpoints treat them exactly like torch's own.

Every optimizer here runs the same loop (:meth:`Optimizer.step`): for each parameter ``w`` with a
gradient ``g``, add the L2 penalty's gradient ``weight_decay * w`` to ``g``, then apply the
optimizer's own update rule. Each class only says what state it keeps (``init_state``) and how it
updates one parameter (``update``); a variant overrides one of those hooks, nothing else
(:class:`Yogi` changes Adam's second moment, :class:`AdamW` its weight decay).

Symbols are the book's: ``w`` a parameter, ``g`` its gradient, ``lr`` the learning rate eta,
``v`` momentum (a leaky average of gradients), ``s`` a leaky average (or sum) of squared gradients,
``t`` the step count. Each update matches its ``torch.optim`` counterpart's defaults and formulas
(including where torch puts ``eps``), so one can replace the other; ``tests/test_optim.py`` holds
every class against torch step by step.

The loop visits one parameter tensor at a time, as the book does: that is the lesson. It uses
in-place tensor operations, so an update makes at most one temporary. On the CPU a step costs
about as much as one of ``torch.optim``'s own for-loop and ``foreach`` implementations, which run
alike per-tensor kernels (``benchmarks/results/optim.md``: a ResNet-18-sized step); torch's fused
CPU kernels, which make one pass over memory, are several times faster for AdaGrad and Adam. On a
GPU, where every tensor's operations are separate kernel launches, use torch's foreach and fused
optimizers (the plain names in ``divekit.optim``) for real training.
"""

from __future__ import annotations

import inspect

import torch

__all__ = ["SGD", "AdaGrad", "RMSProp", "Adadelta", "Adam", "AdamW", "Yogi"]


class Optimizer(torch.optim.Optimizer):
    """The loop all scratch optimizers share. Subclasses override :meth:`init_state` (the tensors
    kept per parameter, made on the parameter's first step) and :meth:`update` (one step for one
    parameter); :meth:`decay` applies weight decay and is a hook too."""

    def __init__(self, params, lr: float, weight_decay: float, **hyperparameters):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, **hyperparameters})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                if w.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[w]
                if not state:
                    self.init_state(state, w, group)
                g = self.decay(w, w.grad, group)
                self.update(w, g, state, group)
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's, between checks that the state is this optimizer's: its groups' hyperparameters (an SGD's
        momentum where Adam has betas) and each parameter's state (torch.optim.Adam's exp_avg where ours keeps
        v), which would load and fail at the next step. Adam, AdamW and Yogi share both, as torch's Adam and
        AdamW do: one loads another's state."""
        ours = set(self.defaults)
        for saved in state_dict.get("param_groups", []):
            # another optimizer's hyperparameters, or ours missing (a scheduler's initial_lr is neither)
            if not ours <= set(saved) or set(saved) & (_hyperparameter_names() - ours):
                held = sorted(set(saved) - {"params", "param_names"})
                raise ValueError(f"this state_dict is not one of divekit's scratch {type(self).__name__}: its "
                                 f"groups hold {', '.join(held)}, where this optimizer has "
                                 f"{', '.join(sorted(ours))}; load a state saved by the same optimizer")
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for w in group["params"]:
                state = self.state.get(w)
                if not state:
                    continue
                expected: dict = {}
                self.init_state(expected, w, group)
                if set(expected) - set(state):
                    raise ValueError(f"this state_dict is not one of divekit's scratch {type(self).__name__}: a "
                                     f"parameter's state holds {', '.join(sorted(state))}, where it keeps "
                                     f"{', '.join(sorted(expected))}; load a state saved by the same optimizer")

    def decay(self, w: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
        """L2 regularisation (D2L §4.5): the penalty (wd / 2) ||w||^2 adds wd * w to the gradient."""
        if group["weight_decay"]:
            return g.add(w, alpha=group["weight_decay"])
        return g

    def init_state(self, state: dict, w: torch.Tensor, group: dict) -> None:
        """Fill ``state`` (empty) with what this optimizer remembers about ``w``."""

    def update(self, w: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define update()")


def _hyperparameter_names() -> set[str]:
    """Every hyperparameter that some scratch optimizer keeps in its groups: the arguments of their constructors."""
    return {name for cls in (SGD, AdaGrad, RMSProp, Adadelta, Adam, AdamW, Yogi)
            for name in inspect.signature(cls).parameters if name != "params"}


def _check_unit_interval(name: str, value: float, *, closed: bool = True) -> None:
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


class SGD(Optimizer):
    """Minibatch stochastic gradient descent (D2L §3.2.6, §11.5), with momentum (§11.6).

    Without momentum: w <- w - lr * g. The loss is a mean over the batch, so ``g`` is already the
    batch average that the book divides by the batch size to get.

    With momentum beta, the step follows a leaky average of past gradients instead of the last one:
    v <- beta * v + g; w <- w - lr * v. Directions where gradients agree build up speed (up to
    1 / (1 - beta) times the plain step); directions where they flip sign cancel out. Same as
    ``torch.optim.SGD(momentum=beta)`` without dampening or Nesterov.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0):
        _check_unit_interval("momentum", momentum, closed=False)
        super().__init__(params, lr, weight_decay, momentum=momentum)

    def init_state(self, state, w, group):
        if group["momentum"]:
            state["v"] = torch.zeros_like(w, memory_format=torch.preserve_format)

    def update(self, w, g, state, group):
        if group["momentum"]:
            v = state["v"]
            v.mul_(group["momentum"]).add_(g)  # v <- beta v + g
            g = v
        w.add_(g, alpha=-group["lr"])  # w <- w - lr g   (or - lr v)


class AdaGrad(Optimizer):
    """AdaGrad (D2L §11.7): a learning rate per coordinate, shrinking with the gradients seen there.

    s <- s + g^2; w <- w - lr * g / (sqrt(s) + eps). Coordinates with large or frequent gradients
    take ever smaller steps, which suits sparse features; the steps decay like 1 / sqrt(t) even
    where that is too fast. The book puts eps inside the root, sqrt(s + eps); torch (and we) add it
    outside, with eps = 1e-10.
    """

    def __init__(self, params, lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0):
        _check_positive("eps", eps)
        super().__init__(params, lr, weight_decay, eps=eps)

    def init_state(self, state, w, group):
        state["s"] = torch.zeros_like(w, memory_format=torch.preserve_format)

    def update(self, w, g, state, group):
        s = state["s"]
        s.addcmul_(g, g)  # s <- s + g^2
        w.addcdiv_(g, s.sqrt().add_(group["eps"]), value=-group["lr"])  # w <- w - lr g / (sqrt(s) + eps)


class RMSProp(Optimizer):
    """RMSProp (D2L §11.8): AdaGrad with a leaky average of squared gradients instead of a sum.

    s <- gamma * s + (1 - gamma) * g^2; w <- w - lr * g / (sqrt(s) + eps). The scale forgets old
    gradients with time constant 1 / (1 - gamma), so steps no longer decay for ever. ``alpha`` is
    torch's name for the book's gamma (default 0.99 as torch; the book uses 0.9). The book puts eps
    inside the root, sqrt(s + 1e-6); torch (and we) add it outside, with eps = 1e-8: where gradients are
    small the two steps differ, by a factor of about sqrt(2) at |g| ~ 1e-3 and 10 at 1e-4.
    """

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0):
        _check_unit_interval("alpha", alpha)
        _check_positive("eps", eps)
        super().__init__(params, lr, weight_decay, alpha=alpha, eps=eps)

    def init_state(self, state, w, group):
        state["s"] = torch.zeros_like(w, memory_format=torch.preserve_format)

    def update(self, w, g, state, group):
        s, gamma = state["s"], group["alpha"]
        s.mul_(gamma).addcmul_(g, g, value=1 - gamma)  # s <- gamma s + (1 - gamma) g^2
        w.addcdiv_(g, s.sqrt().add_(group["eps"]), value=-group["lr"])  # w <- w - lr g / (sqrt(s) + eps)


class Adadelta(Optimizer):
    """Adadelta (D2L §11.9): RMSProp whose step size is itself a leaky average of past updates.

    s <- rho s + (1 - rho) g^2;  g' = sqrt(dw + eps) / sqrt(s + eps) * g;
    w <- w - lr g';  dw <- rho dw + (1 - rho) g'^2.
    The ratio of the two roots has the units of ``w``, so no learning rate is needed (``lr`` = 1,
    as in the book and torch, only rescales the step). eps sits inside both roots, as in the book and
    torch; its default is torch's 1e-6, the book's 1e-5 (which ``optimizers-airfoil`` passes).
    """

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0):
        _check_unit_interval("rho", rho)
        _check_positive("eps", eps)
        super().__init__(params, lr, weight_decay, rho=rho, eps=eps)

    def init_state(self, state, w, group):
        state["s"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        state["delta"] = torch.zeros_like(w, memory_format=torch.preserve_format)

    def update(self, w, g, state, group):
        s, delta, rho, eps = state["s"], state["delta"], group["rho"], group["eps"]
        s.mul_(rho).addcmul_(g, g, value=1 - rho)  # s <- rho s + (1 - rho) g^2
        g_rescaled = delta.add(eps).sqrt_().div_(s.add(eps).sqrt_()).mul_(g)  # g' = sqrt(dw + eps) / sqrt(s + eps) g
        w.add_(g_rescaled, alpha=-group["lr"])  # w <- w - lr g'
        delta.mul_(rho).addcmul_(g_rescaled, g_rescaled, value=1 - rho)  # dw <- rho dw + (1 - rho) g'^2


class Adam(Optimizer):
    """Adam (D2L §11.10): momentum and RMSProp together, with bias correction.

    v <- beta1 v + (1 - beta1) g            (first moment: momentum as a leaky average)
    s <- beta2 s + (1 - beta2) g^2          (second moment, as RMSProp)
    v_hat = v / (1 - beta1^t), s_hat = s / (1 - beta2^t)
    w <- w - lr v_hat / (sqrt(s_hat) + eps)

    ``v`` and ``s`` start at zero, so early on they underestimate the moments by the factors
    1 - beta^t; dividing those out is the bias correction (without it the first steps would be
    tiny, and with beta2 = 0.999 they would stay small for about a thousand steps). eps is torch's
    1e-8, added outside the root as in the book, whose eps is 1e-6.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        _check_unit_interval("beta1", betas[0], closed=False)
        _check_unit_interval("beta2", betas[1], closed=False)
        _check_positive("eps", eps)
        super().__init__(params, lr, weight_decay, betas=tuple(betas), eps=eps)

    def init_state(self, state, w, group):
        state["step"] = 0
        state["v"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        state["s"] = torch.zeros_like(w, memory_format=torch.preserve_format)

    def second_moment(self, s: torch.Tensor, g: torch.Tensor, beta2: float) -> None:
        """Update s in place: s <- beta2 s + (1 - beta2) g^2."""
        s.mul_(beta2).addcmul_(g, g, value=1 - beta2)

    def update(self, w, g, state, group):
        (beta1, beta2), v, s = group["betas"], state["v"], state["s"]
        state["step"] += 1
        t = state["step"]
        v.mul_(beta1).add_(g, alpha=1 - beta1)  # v <- beta1 v + (1 - beta1) g
        self.second_moment(s, g, beta2)
        # w <- w - lr v_hat / (sqrt(s_hat) + eps), with v_hat's 1 / (1 - beta1^t) folded into the
        # step size, so that the only temporary is the denominator
        s_hat_sqrt = s.div(1 - beta2**t).sqrt_()
        w.addcdiv_(v, s_hat_sqrt.add_(group["eps"]), value=-group["lr"] / (1 - beta1**t))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, https://arxiv.org/abs/1711.05101):
    w <- (1 - lr wd) w before the Adam step, instead of adding wd * w to the gradient, where
    Adam's per-coordinate scaling would weaken the penalty on coordinates with large gradients.
    As ``torch.optim.AdamW`` (default wd 0.01)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)

    def decay(self, w, g, group):
        if group["weight_decay"]:
            w.mul_(1 - group["lr"] * group["weight_decay"])  # w <- (1 - lr wd) w
        return g


class Yogi(Adam):
    """Yogi (D2L §11.10.3; Zaheer et al. 2018): Adam whose second moment moves towards g^2 by a
    fixed amount, (1 - beta2) g^2, in the direction of g^2 - s, instead of by a fraction of the gap:
    s <- s + (1 - beta2) g^2 sign(g^2 - s). So a large gradient can't blow s up in one step, and
    s can't forget a large scale too quickly. The book's eps for Yogi is 1e-3."""

    def __init__(self, params, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-3,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, betas, eps, weight_decay)

    def second_moment(self, s, g, beta2):
        g2 = g * g
        s.addcmul_(g2, torch.sign(g2 - s), value=1 - beta2)  # s <- s + (1 - beta2) g^2 sign(g^2 - s)

