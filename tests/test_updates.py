"""Flat parameter updates (train/updates.py): the optimizer's own updates, its per-parameter checkpoints,
and the per-parameter form wherever flat would not give them."""

import pytest
import torch
from torch import nn

from divekit import io
from divekit.data.base import Split
from divekit.data.loader import TensorLoader
from divekit.ops import fast, scratch
from divekit.optim import create_optimizer
from divekit.train.callbacks import Callback
from divekit.train.engine import Trainer
from divekit.train.tasks import Classification
from divekit.train import updates as updates_module
from divekit.train.updates import ParameterUpdates


def data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return Split(torch.randn(n, 1, 6, 6, generator=g) + y[:, None, None, None], y)


def net():
    """Parameters of several shapes and kinds: a convolution (channels-last where asked), biases, a linear layer."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 8), nn.ReLU(),
                         nn.Linear(8, 3))


def groups(model):
    """Two param groups: weights decayed, biases not."""
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if n.endswith("weight")], "weight_decay": 0.01},
            {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0}]


class Seen(Callback):
    """Whether each step trained flat; and that what lies between the parameters in the flat tensors stays 0."""

    def __init__(self):
        self.flat = []

    def on_step_end(self, trainer, epoch, step):
        self.flat.append(trainer._updates.flat)
        for group in trainer._updates._groups:
            between = torch.ones_like(group.flat, dtype=torch.bool)
            for i in range(len(group.params)):
                group.view(between, i).fill_(False)
            state = trainer.optimizer.state[group.flat]
            for tensor in (group.flat, group.flat.grad, state["exp_avg"], state["exp_avg_sq"]):
                assert not tensor[between].any()


def train(flat, monkeypatch, *, optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=0.01, fused=True),
          model=net, epochs=2, out_dir=None, callbacks=(), resume=False, **kwargs):
    torch.manual_seed(0)
    m = model()
    seen = Seen()
    with monkeypatch.context() as patch:
        if not flat:
            patch.setattr(ParameterUpdates, "flat_allowed", staticmethod(lambda *args: False))
        trainer = Trainer(m, Classification(fast.cross_entropy), optimizer(m), epochs=epochs, out_dir=out_dir,
                          progress=False, callbacks=[seen, *callbacks], **kwargs)
        trainer.fit(TensorLoader(data(), 16, shuffle=True, seed=0), resume=resume)
    return trainer, seen.flat


def assert_same_training(a, b, exact=False):
    """The same parameters and Adam state; unless ``exact``, to rounding: torch's fused Adam rounds an element
    in the last bit differently by where it lies in its tensor (its vector and scalar paths)."""
    same = torch.equal if exact else (lambda x, y: torch.allclose(x, y, rtol=1e-5, atol=1e-6))
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        assert same(p, q), name
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        sa, sb = a.optimizer.state[p], b.optimizer.state[q]
        assert sa.keys() == sb.keys()
        for key in sa:
            assert same(sa[key], sb[key]), key


@pytest.mark.parametrize("optimizer", [
    lambda m: torch.optim.Adam(m.parameters(), lr=0.01, fused=True),
    lambda m: torch.optim.Adam(m.parameters(), lr=0.01),  # torch's default (foreach): the same values
    lambda m: torch.optim.AdamW(groups(m), lr=0.01, amsgrad=True, fused=True),
    lambda m: create_optimizer("adam", groups(m), lr=0.01),
], ids=["adam", "adam-foreach", "adamw-amsgrad-groups", "create_optimizer"])
def test_flat_adam_updates_equal_the_optimizers_own(optimizer, monkeypatch):
    per_parameter, flags = train(False, monkeypatch, optimizer=optimizer)
    flat, flat_flags = train(True, monkeypatch, optimizer=optimizer)
    assert flat_flags and all(flat_flags) and not any(flags)
    assert_same_training(per_parameter, flat)


def test_flat_training_follows_a_schedule_and_clips_as_the_optimizer(monkeypatch):
    def step_lr(trainer_optimizer):
        return torch.optim.lr_scheduler.StepLR(trainer_optimizer, step_size=2, gamma=0.5)

    def run(flat):
        torch.manual_seed(0)
        m = net()
        opt = torch.optim.Adam(m.parameters(), lr=0.05, fused=True)
        return train(flat, monkeypatch, model=lambda: m, optimizer=lambda _: opt, scheduler=step_lr(opt),
                     scheduler_interval="step", clip_grad_norm=0.5, epochs=2)

    (a, _), (b, flags) = run(False), run(True)
    assert all(flags) and b.optimizer.param_groups[0]["lr"] == a.optimizer.param_groups[0]["lr"] < 0.05
    assert_same_training(a, b)  # and one norm of the flat gradient: summed in another order


def test_the_scratch_clip_function_clips_the_flat_gradient(monkeypatch):
    a, _ = train(False, monkeypatch, clip_grad_norm=0.5, clip_fn=scratch.clip_grad_norm)
    b, flags = train(True, monkeypatch, clip_grad_norm=0.5, clip_fn=scratch.clip_grad_norm)
    assert all(flags)
    assert_same_training(a, b)


class OddHead(nn.Module):
    """A second head used on every other forward: its parameters get no gradient on the others."""

    def __init__(self):
        super().__init__()
        self.body, self.head, self.extra, self.calls = net(), nn.Linear(3, 3), nn.Linear(3, 3), 0

    def forward(self, x):
        self.calls += 1
        y = self.head(self.body(x))
        return self.extra(y) if self.calls % 2 == 0 else y


def test_a_step_where_a_parameter_gets_no_gradient_leaves_the_flat_form_with_the_optimizers_updates(monkeypatch):
    a, _ = train(False, monkeypatch, model=OddHead)
    b, flags = train(True, monkeypatch, model=OddHead)
    assert flags[0] is False  # the first step already: the extra head got no gradient
    assert_same_training(a, b)


@pytest.mark.parametrize("case", ["sgd", "scratch-adam", "compile", "not-all-parameters", "strided", "mixed-dtypes",
                                  "differentiable"])
def test_flat_form_only_where_it_gives_the_optimizers_updates(case):
    model = net()
    params = [p for p in model.parameters()]
    device, compiled = torch.device("cpu"), case == "compile"
    optimizer = {
        "sgd": lambda: torch.optim.SGD(params, lr=0.1),
        "scratch-adam": lambda: create_optimizer("adam", params, impl="scratch", lr=0.1),
        "not-all-parameters": lambda: torch.optim.Adam(params[1:]),
        "differentiable": lambda: torch.optim.Adam(params, differentiable=True),
    }.get(case, lambda: torch.optim.Adam(params))()
    if case == "strided":
        model[4].weight = nn.Parameter(torch.randn(8, 64).t().contiguous().t())  # a transposed layout
        params[4] = model[4].weight
        optimizer = torch.optim.Adam(params)
    if case == "mixed-dtypes":
        model[6].double()
        params = list(model.parameters())
        optimizer = torch.optim.Adam(params)
    assert ParameterUpdates.flat_allowed(torch.optim.Adam(params), params, device, False) == (
        case in ("sgd", "scratch-adam", "compile", "not-all-parameters", "differentiable"))  # the model's own
    assert not ParameterUpdates.flat_allowed(optimizer, params, device, compiled)


def test_flat_form_takes_channels_last_parameters_and_gives_them_back_in_their_layout(monkeypatch):
    def channels_last():
        return net().to(memory_format=torch.channels_last)

    a, _ = train(False, monkeypatch, model=channels_last)
    b, flags = train(True, monkeypatch, model=channels_last)
    assert all(flags)
    assert_same_training(a, b)
    conv = b.model[2].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_after_training_each_parameter_and_gradient_has_its_own_memory_and_no_hook_is_left(monkeypatch):
    trainer, _ = train(True, monkeypatch)
    params = list(trainer.model.parameters())
    storages = {p.untyped_storage().data_ptr() for p in params} | {p.grad.untyped_storage().data_ptr() for p in params}
    assert len(storages) == 2 * len(params)
    assert all(p.untyped_storage().nbytes() == p.numel() * p.element_size() for p in params)
    assert not any(p._post_accumulate_grad_hooks for p in params)
    assert [set(trainer.optimizer.state[p]) for p in params] == [{"step", "exp_avg", "exp_avg_sq"}] * len(params)


class StopAfterEpoch(Callback):
    class Stop(Exception):
        pass

    def on_epoch_end(self, trainer, record):
        if record["epoch"] == 1:
            raise self.Stop


@pytest.mark.parametrize("first, then", [(True, True), (False, True), (True, False), (False, False)],
                         ids=["flat-flat", "per-parameter-then-flat", "flat-then-per-parameter", "per-parameter"])
def test_checkpoints_hold_per_parameter_state_and_resume_either_way_to_the_uninterrupted_result(first, then, tmp_path,
                                                                                                 monkeypatch):
    full, _ = train(first, monkeypatch, epochs=2, out_dir=tmp_path / "full")
    with pytest.raises(StopAfterEpoch.Stop):
        train(first, monkeypatch, epochs=2, out_dir=tmp_path / "cut", callbacks=[StopAfterEpoch()])
    saved = io.load(tmp_path / "cut" / "checkpoint.pt")["optimizer"]
    assert sorted(saved["state"]) == list(range(len(list(full.model.parameters()))))
    assert {k: v.shape for k, v in saved["state"][0].items()} == {
        "step": torch.Size([]), "exp_avg": full.model[0].weight.shape, "exp_avg_sq": full.model[0].weight.shape}
    resumed, flags = train(then, monkeypatch, epochs=2, out_dir=tmp_path / "cut", resume=True)
    assert len(flags) == 6 and all(flags) == then
    assert_same_training(full, resumed, exact=first == then)


class Unfreeze(Callback):
    """After epoch 1 (or within it, after step ``at_step``), the first convolution trains too (frozen before);
    with ``add``, as a param group of its own."""

    def __init__(self, add: bool, at_step: int | None = None):
        self.add, self.at_step = add, at_step

    def unfreeze(self, trainer):
        trainer.model[0].requires_grad_(True)
        if self.add:
            trainer.optimizer.add_param_group({"params": list(trainer.model[0].parameters())})

    def on_step_end(self, trainer, epoch, step):
        if epoch == 1 and step == self.at_step:
            self.unfreeze(trainer)

    def on_epoch_end(self, trainer, record):
        if record["epoch"] == 1 and self.at_step is None:
            self.unfreeze(trainer)


def frozen_first_conv():
    model = net()
    model[0].requires_grad_(False)
    return model


def test_a_param_group_added_while_training_trains_as_the_optimizers_own(monkeypatch):
    def optimizer(m):
        return torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.01, fused=True)

    runs = [train(flat, monkeypatch, model=frozen_first_conv, optimizer=optimizer,
                  callbacks=[Unfreeze(add=True, at_step=3)]) for flat in (False, True)]
    (a, _), (b, flags) = runs
    assert flags == [True] * 3 + [False] * 9  # per parameter from the new group on
    assert_same_training(a, b)


@pytest.mark.parametrize("flat", [False, True])
def test_clipping_takes_the_parameters_that_train_each_epoch(flat, monkeypatch):
    norms = []

    class Norm(Callback):
        def on_step_end(self, trainer, epoch, step):
            grads = [p.grad for p in trainer.model.parameters() if p.requires_grad and p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    # SGD: per parameter in either case; the conv (in the optimizer, frozen at first) trains from epoch 2 on
    train(flat, monkeypatch, model=frozen_first_conv, optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
          clip_grad_norm=1e-3, callbacks=[Unfreeze(add=False), Norm()])
    assert len(norms) == 12 and max(norms) <= 1e-3 * (1 + 1e-5)


@pytest.mark.parametrize("clear", ["model", "optimizer"])
def test_gradients_a_callback_sets_to_none_are_the_flat_gradients_views_again(clear, monkeypatch):
    class Clear(Callback):
        def on_epoch_end(self, trainer, record):
            (trainer.model if clear == "model" else trainer.optimizer).zero_grad()

    a, _ = train(False, monkeypatch, epochs=3, callbacks=[Clear()])
    b, flags = train(True, monkeypatch, epochs=3, callbacks=[Clear()])
    assert all(flags)
    assert_same_training(a, b)


def test_a_clip_function_of_its_own_gets_the_parameters(monkeypatch):
    def per_tensor(params, max_norm):  # each gradient to its own norm: the flat tensor would be one
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], max_norm)

    a, _ = train(False, monkeypatch, clip_grad_norm=0.05, clip_fn=per_tensor)
    b, flags = train(True, monkeypatch, clip_grad_norm=0.05, clip_fn=per_tensor)
    assert all(flags)
    assert_same_training(a, b)


def test_sparse_gradients_keep_the_per_parameter_form_and_adams_error(monkeypatch):
    def bag():
        return nn.Sequential(nn.Flatten(), Indices(), nn.EmbeddingBag(40, 3, sparse=True))

    for flat in (False, True):
        with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
            train(flat, monkeypatch, model=bag)


class Indices(nn.Module):
    def forward(self, x):
        return (x.abs() * 10).long().clamp(max=39)[:, :5]


def test_epoch_end_callbacks_see_the_optimizer_per_parameter(monkeypatch):
    seen = []

    class Copy(Callback):
        def on_epoch_end(self, trainer, record):
            state = trainer.optimizer.state_dict()
            fresh = torch.optim.Adam(trainer.model.parameters())
            fresh.load_state_dict(state)  # a per-parameter state dict loads into a per-parameter optimizer
            seen.append([tuple(s["exp_avg"].shape) for s in state["state"].values()])

    trainer, flags = train(True, monkeypatch, callbacks=[Copy()])
    assert all(flags) and seen[0] == seen[1] == [tuple(p.shape) for p in trainer.model.parameters()]


@pytest.mark.parametrize("change", ["clear", "zero"])
def test_what_an_epoch_end_callback_does_to_adams_state_holds(change, monkeypatch):
    class Reset(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] != 1:
                return
            if change == "clear":
                trainer.optimizer.state.clear()  # Adam starts again: its step count too
            else:
                for state in trainer.optimizer.state.values():
                    state["exp_avg"].zero_()

    a, _ = train(False, monkeypatch, epochs=3, callbacks=[Reset()])
    b, flags = train(True, monkeypatch, epochs=3, callbacks=[Reset()])
    assert all(flags) and float(b.optimizer.state[b.model[0].weight]["step"]) == (12 if change == "clear" else 18)
    assert_same_training(a, b)


def test_an_optimizer_a_callback_gives_the_trainer_is_the_one_that_steps(monkeypatch):
    class Swap(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 1:
                trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.0)

    class Weights(Callback):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, trainer, record):
            self.seen.append([p.detach().clone() for p in trainer.model.parameters()])

    for flat in (False, True):
        weights = Weights()
        train(flat, monkeypatch, epochs=3, callbacks=[Swap(), weights])
        first, second, third = weights.seen  # after epoch 1 (and the swap), 2, 3
        assert all(torch.equal(p, q) and torch.equal(q, r) for p, q, r in zip(first, second, third)), flat


@pytest.mark.parametrize("change", ["channels-last", "new-data", "group-removed"])
def test_a_parameter_given_memory_of_its_own_or_a_group_removed_while_training_trains_as_per_parameter(
        change, monkeypatch):
    class Change(Callback):
        def on_step_end(self, trainer, epoch, step):
            if (epoch, step) != (1, 2):
                return
            if change == "channels-last":
                trainer.model.to(memory_format=torch.channels_last)
            elif change == "new-data":
                trainer.model[6].weight.data = trainer.model[6].weight.data.clone()
            else:
                del trainer.optimizer.param_groups[0]

    optimizer = lambda m: torch.optim.Adam(groups(m), lr=0.01, fused=True)  # noqa: E731
    a, _ = train(False, monkeypatch, optimizer=optimizer, callbacks=[Change()])
    b, flags = train(True, monkeypatch, optimizer=optimizer, callbacks=[Change()])
    assert flags[:2] == [True, True] and not any(flags[2:])
    assert_same_training(a, b)


def test_an_interrupt_while_the_flat_tensors_are_laid_out_leaves_the_per_parameter_form(monkeypatch):
    view, calls = updates_module._FlatGroup.view, []

    def interrupted(self, flat, i):
        calls.append(i)
        if len(calls) == 7:  # Ctrl-C, in the middle of the first group
            raise KeyboardInterrupt
        return view(self, flat, i)

    torch.manual_seed(0)
    model = net()
    optimizer = torch.optim.Adam(groups(model), lr=0.01)
    with monkeypatch.context() as patch:
        patch.setattr(updates_module._FlatGroup, "view", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ParameterUpdates.for_run(model, optimizer, torch.device("cpu"), False)
    assert [[p is q for p, q in zip(g["params"], o["params"])] for g, o in zip(optimizer.param_groups, groups(model))] \
        == [[True] * 4, [True] * 4]
    params = list(model.parameters())
    assert all(p.untyped_storage().nbytes() == p.numel() * p.element_size() for p in params)
    assert not any(p._post_accumulate_grad_hooks for p in params) and not optimizer.state
