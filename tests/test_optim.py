"""Scratch optimizers against torch.optim, step by step; learning-rate schedules against torch's
schedulers and the book's formulas; the optimizer registry."""

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divekit.data.base import Split
from divekit.data.loader import TensorLoader
from divekit.ops import fast
from divekit.optim import NAMES, OPTIMIZERS, TAKES_MOMENTUM, create_optimizer, optimizer_class, scratch
from divekit.optim.schedules import (
    SCHEDULES,
    CosineScheduler,
    FactorScheduler,
    MultiStepScheduler,
    SquareRootScheduler,
    StepScheduler,
    create_schedule,
)
from divekit.train.callbacks import Callback
from divekit.train.engine import Trainer
from divekit.train.tasks import Regression

# name -> (scratch class, torch.optim class, hyperparameters other than the defaults)
PAIRS = {
    "sgd": (scratch.SGD, torch.optim.SGD, {"lr": 0.05}),
    "momentum": (scratch.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    "adagrad": (scratch.AdaGrad, torch.optim.Adagrad, {"lr": 0.1}),
    "rmsprop": (scratch.RMSProp, torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9}),
    "adadelta": (scratch.Adadelta, torch.optim.Adadelta, {"lr": 1.0, "rho": 0.9}),
    "adam": (scratch.Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99)}),
    "adamw": (scratch.AdamW, torch.optim.AdamW, {"lr": 0.01}),
}


def tiny_net(seed=0):
    """A float64 MLP, plus a parameter that never gets a gradient (optimizers must skip it)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    net.unused = nn.Parameter(torch.ones(3, dtype=torch.float64))
    return net


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64))
            for _ in range(n)]


def train(net, optimizer, data, scheduler=None):
    for X, y in data:
        optimizer.zero_grad()
        F.mse_loss(net(X), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def assert_same_parameters(a, b, **tolerance):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=lambda m: f"{name}: {m}", **tolerance)


# -- against torch.optim -------------------------------------------------------------------------

@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("name", list(PAIRS))
def test_scratch_optimizer_follows_torch_for_30_steps(name, weight_decay):
    scratch_cls, torch_cls, hyper = PAIRS[name]
    ours, theirs = tiny_net(), tiny_net()
    train(ours, scratch_cls(ours.parameters(), weight_decay=weight_decay, **hyper), batches(30))
    train(theirs, torch_cls(theirs.parameters(), weight_decay=weight_decay, **hyper), batches(30))
    assert_same_parameters(ours, theirs, rtol=1e-10, atol=1e-12)
    assert not torch.equal(ours[0].weight, tiny_net()[0].weight), "the parameters did not move"
    assert torch.equal(ours.unused, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("name", list(PAIRS))
def test_defaults_are_torchs(name):
    scratch_cls, torch_cls, _ = PAIRS[name]
    ours = scratch_cls([nn.Parameter(torch.zeros(1))]).defaults
    theirs = torch_cls([nn.Parameter(torch.zeros(1))]).defaults
    shared = set(ours) & set(theirs)
    assert shared >= {"lr", "weight_decay"}
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


@pytest.mark.parametrize("name", ["momentum", "adam", "adamw"])
def test_parameter_groups_keep_their_own_hyperparameters(name):
    scratch_cls, torch_cls, hyper = PAIRS[name]

    def groups(net):
        return [{"params": net[0].parameters(), "lr": 0.1, "weight_decay": 0.05}, {"params": net[2].parameters()}]

    ours, theirs = tiny_net(), tiny_net()
    train(ours, scratch_cls(groups(ours), **hyper), batches(20))
    train(theirs, torch_cls(groups(theirs), **hyper), batches(20))
    assert_same_parameters(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(PAIRS) + ["yogi"])
def test_state_dict_round_trip_mid_training_continues_the_same_trajectory(name):
    scratch_cls, _, hyper = PAIRS.get(name, (scratch.Yogi, None, {"lr": 0.01}))
    data = batches(20)
    full = tiny_net()
    optimizer = scratch_cls(full.parameters(), weight_decay=0.01, **hyper)
    train(full, optimizer, data[:10])
    buffer = io.BytesIO()  # through bytes, as a checkpoint file: nothing shared with the live state
    torch.save({"model": full.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    train(full, optimizer, data[10:])

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = tiny_net(seed=123)
    resumed.load_state_dict(saved["model"])
    resumed_optimizer = scratch_cls(resumed.parameters(), lr=99.0)  # hyperparameters come from the state
    resumed_optimizer.load_state_dict(saved["optimizer"])
    train(resumed, resumed_optimizer, data[10:])
    for p, q in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_a_torch_optimizers_state_is_refused_by_its_scratch_twin():
    net = tiny_net()
    theirs = torch.optim.Adam(net.parameters(), lr=0.01)
    train(net, theirs, batches(2))
    ours = scratch.Adam(net.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="this state_dict is not one of divekit's scratch Adam: a parameter's state "
                                         "holds exp_avg, exp_avg_sq, step, where it keeps s, step, v"):
        ours.load_state_dict(theirs.state_dict())  # it loaded, and failed at the next step with KeyError 'v'


@pytest.mark.parametrize("source, target", [(scratch.SGD, scratch.Adam), (scratch.Adam, scratch.SGD),
                                            (scratch.RMSProp, scratch.AdaGrad)])
def test_a_scratch_optimizers_state_is_refused_by_another_kind(source, target):
    """Checked by the groups' hyperparameters: an SGD without momentum keeps no state per parameter, and
    loaded into Adam failed at the next step (KeyError 'betas'); RMSProp's loaded into AdaGrad silently."""
    net = tiny_net()
    saved = source(net.parameters(), lr=0.01)
    train(net, saved, batches(2))
    with pytest.raises(ValueError, match=f"not one of divekit's scratch {target.__name__}: its groups hold"):
        target(net.parameters(), lr=0.01).load_state_dict(saved.state_dict())
    adam = scratch.Adam(net.parameters(), lr=0.01)
    train(net, adam, batches(2))
    scratch.AdamW(net.parameters(), lr=0.01).load_state_dict(adam.state_dict())  # one family: as torch's Adam, AdamW


def test_a_scratch_optimizer_refuses_groups_missing_its_hyperparameters():
    net = tiny_net()
    saved = scratch.RMSProp(net.parameters(), lr=0.01).state_dict()
    del saved["param_groups"][0]["alpha"]
    with pytest.raises(ValueError, match="not one of divekit's scratch RMSProp: its groups hold"):
        scratch.RMSProp(net.parameters(), lr=0.01).load_state_dict(saved)


def test_yogi_follows_the_books_update():
    """D2L §11.10.3's yogi(), written out: Adam with s <- s + (1 - beta2) sign(g^2 - s) g^2."""
    net, reference = tiny_net(), tiny_net()
    beta1, beta2, eps, lr = 0.9, 0.999, 1e-3, 0.01
    train(net, scratch.Yogi(net.parameters(), lr=lr), batches(25))
    params = [p for p in reference.parameters() if p is not reference.unused]
    states = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    for t, (X, y) in enumerate(batches(25), 1):
        for p in params:
            p.grad = None
        F.mse_loss(reference(X), y).backward()
        with torch.no_grad():
            for p, (v, s) in zip(params, states):
                v[:] = beta1 * v + (1 - beta1) * p.grad
                s[:] = s + (1 - beta2) * torch.sign(torch.square(p.grad) - s) * torch.square(p.grad)
                v_bias_corr = v / (1 - beta1**t)
                s_bias_corr = s / (1 - beta2**t)
                p[:] -= lr * v_bias_corr / (torch.sqrt(s_bias_corr) + eps)
    assert_same_parameters(net, reference, rtol=1e-10, atol=1e-12)


def test_adam_bias_correction_makes_the_first_step_lr_times_the_gradient_sign():
    """At t = 1, v_hat = g and s_hat = g^2, so every coordinate moves by lr (eps aside)."""
    w = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    optimizer = scratch.Adam([w], lr=0.1, eps=1e-12)
    w.grad = torch.tensor([3.0, -0.001, 50.0, -7.0], dtype=torch.float64)
    optimizer.step()
    torch.testing.assert_close(w, torch.tensor([-0.1, 0.1, -0.1, 0.1], dtype=torch.float64))


def test_step_takes_a_closure_and_returns_its_loss():
    net = tiny_net()
    optimizer = scratch.Adam(net.parameters(), lr=0.01)
    X, y = batches(1)[0]

    def closure():
        optimizer.zero_grad()
        loss = F.mse_loss(net(X), y)
        loss.backward()
        return loss

    first = optimizer.step(closure)
    assert first.requires_grad and optimizer.step(closure).item() < first.item()


@pytest.mark.parametrize("make, message", [
    (lambda p: scratch.SGD(p, lr=0), "learning rate must be positive"),
    (lambda p: scratch.SGD(p, lr=0.1, momentum=1.0), "momentum must be in"),
    (lambda p: scratch.SGD(p, lr=0.1, weight_decay=-1), "weight_decay must be non-negative"),
    (lambda p: scratch.AdaGrad(p, eps=0), "eps must be positive"),
    (lambda p: scratch.RMSProp(p, alpha=1.5), "alpha must be in"),
    (lambda p: scratch.Adadelta(p, rho=-0.1), "rho must be in"),
    (lambda p: scratch.Adam(p, betas=(0.9, 1.0)), "beta2 must be in"),
])
def test_bad_hyperparameters_are_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make([nn.Parameter(torch.zeros(2))])


def test_sparse_gradients_are_refused():
    embedding = nn.Embedding(10, 3, sparse=True)
    optimizer = scratch.Adam(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        optimizer.step()


# -- the registry --------------------------------------------------------------------------------

def test_every_registered_optimizer_trains_a_linear_regression_in_the_trainer():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 3, generator=g)
    y = X @ torch.tensor([2.0, -3.4, 1.0]) + 4.2
    for name in NAMES:
        for impl in ("scratch", "fast"):
            if name == "yogi" and impl == "fast":
                continue  # torch.optim has none
            torch.manual_seed(0)
            model = nn.Linear(3, 1)
            lr = 0.05 if name.endswith(("sgd", "momentum")) else 5.0 if "adadelta" in name else 0.5
            optimizer = create_optimizer(name, model.parameters(), impl=impl, lr=lr)
            trainer = Trainer(model, Regression(fast.squared_loss), optimizer, epochs=3, progress=False)
            history = trainer.fit(TensorLoader(Split(X, y), 16, shuffle=True), TensorLoader(Split(X, y), 256))
            assert history[-1]["val_loss"] < 0.8 * history[0]["val_loss"], (name, impl)


def test_create_optimizer_names_classes_and_momentum():
    params = [nn.Parameter(torch.zeros(2))]
    assert set(OPTIMIZERS) == {"sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "yogi"}
    for name in OPTIMIZERS:
        for chosen in (create_optimizer(name, params, impl="scratch", lr=0.1, weight_decay=0.01),
                       create_optimizer(f"scratch-{name}", params, impl="fast", lr=0.1, weight_decay=0.01)):
            assert type(chosen).__module__ == "divekit.optim.scratch", name  # scratch-NAME: scratch whatever --impl
            assert chosen.defaults["lr"] == 0.1 and chosen.defaults["weight_decay"] == 0.01
        if name != "yogi":
            assert type(create_optimizer(name, params, lr=0.1)).__module__.startswith("torch.optim"), name
    assert optimizer_class("adam", "fast") is torch.optim.Adam and optimizer_class("adam", "scratch") is scratch.Adam
    with pytest.raises(ValueError, match="torch.optim has no yogi; use --impl scratch or --optimizer scratch-yogi"):
        create_optimizer("yogi", params, impl="fast", lr=0.1)
    assert create_optimizer("momentum", params, lr=0.1).defaults["momentum"] == 0.9
    assert create_optimizer("scratch-momentum", params, lr=0.1).defaults["momentum"] == 0.9
    assert create_optimizer("scratch-momentum", params, lr=0.1, momentum=0.5).defaults["momentum"] == 0.5
    assert create_optimizer("scratch-sgd", params, lr=0.1).defaults["momentum"] == 0.0
    assert create_optimizer("scratch-sgd", params, lr=0.1, momentum=0.9).defaults["momentum"] == 0.9
    assert create_optimizer("sgd", params, lr=0.1, momentum=0.9).defaults["momentum"] == 0.9
    for name in set(OPTIMIZERS) - set(TAKES_MOMENTUM):
        with pytest.raises(ValueError, match="takes no momentum"):
            create_optimizer(name, params, lr=0.1, momentum=0.9)


def test_param_groups_of_generators_and_single_tensors_keep_their_parameters():
    model = nn.Linear(3, 2)
    for name in ("sgd", "adam", "adamw"):  # adam and adamw look at every tensor to decide on fusing
        groups = [{"params": (p for p in [model.weight]), "lr": 0.1}, {"params": model.bias}]
        optimizer = create_optimizer(name, groups, lr=0.01)
        assert [g["params"] for g in optimizer.param_groups] == [[model.weight], [model.bias]], name


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_torchs_adam_runs_fused_and_steps_as_the_unfused_loop_does(name):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 1))
    twin = copy.deepcopy(net)
    fused = create_optimizer(name, net.parameters(), lr=0.01, weight_decay=0.01)
    loop = type(fused)(twin.parameters(), lr=0.01, weight_decay=0.01, foreach=False)
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    X, y = torch.randn(16, 5), torch.randn(16, 1)
    for model, optimizer in ((net, fused), (twin, loop)):
        for _ in range(5):
            optimizer.zero_grad()
            ((model(X) - y) ** 2).mean().backward()
            optimizer.step()
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)
    groups = [{"params": [net[0].weight], "weight_decay": 0.1}, {"params": [net[0].bias]}]
    assert create_optimizer(name, groups, lr=0.1).defaults["fused"] is True  # param groups too
    assert not create_optimizer(name, [nn.Parameter(torch.zeros(2, dtype=torch.complex64))], lr=0.1).defaults["fused"]


# -- schedules -----------------------------------------------------------------------------------

def lrs_of(make_scheduler, steps, base_lrs=(0.5, 0.05), optimizer_cls=scratch.SGD):
    """The learning rate of each group before each of ``steps`` updates."""
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base_lrs]
    optimizer = optimizer_cls(groups, lr=1.0)
    scheduler = make_scheduler(optimizer)
    seen = []
    for _ in range(steps):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return torch.tensor(seen, dtype=torch.float64)


@pytest.mark.parametrize("ours, theirs", [
    (lambda o: StepScheduler(o, step_size=3, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5)),
    (lambda o: MultiStepScheduler(o, [15, 5], gamma=0.5),
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 15], gamma=0.5)),
    (lambda o: CosineScheduler(o, max_update=20, final_lr=0.01),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.01)),
    (lambda o: FactorScheduler(o, factor=0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
])
def test_schedules_match_torchs_schedulers(ours, theirs):
    steps = 21  # t = 0..20: CosineAnnealingLR rises again after T_max, the book's cosine stays
    torch.testing.assert_close(lrs_of(ours, steps), lrs_of(theirs, steps, optimizer_cls=torch.optim.SGD),
                               rtol=1e-9, atol=1e-12)


class BookCosineScheduler:
    """D2L §11.11.3.3's CosineScheduler, verbatim but for torch for math."""

    def __init__(self, max_update, base_lr=0.01, final_lr=0, warmup_steps=0, warmup_begin_lr=0):
        self.base_lr_orig = base_lr
        self.max_update = max_update
        self.final_lr = final_lr
        self.warmup_steps = warmup_steps
        self.warmup_begin_lr = warmup_begin_lr
        self.max_steps = self.max_update - self.warmup_steps

    def get_warmup_lr(self, epoch):
        increase = (self.base_lr_orig - self.warmup_begin_lr) * float(epoch) / float(self.warmup_steps)
        return self.warmup_begin_lr + increase

    def __call__(self, epoch):
        if epoch < self.warmup_steps:
            return self.get_warmup_lr(epoch)
        if epoch <= self.max_update:
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * (
                1 + math.cos(math.pi * (epoch - self.warmup_steps) / self.max_steps)) / 2
        return self.base_lr


def test_cosine_with_warmup_and_the_other_book_schedules_follow_the_books_formulas():
    book = BookCosineScheduler(20, warmup_steps=5, base_lr=0.3, final_lr=0.01)
    ours = lrs_of(lambda o: CosineScheduler(o, 20, final_lr=0.01, warmup_steps=5), 30, base_lrs=(0.3,))
    torch.testing.assert_close(ours[:, 0], torch.tensor([book(t) for t in range(30)], dtype=torch.float64))
    assert ours[0, 0] == 0 and ours[5, 0] == 0.3 and ours[-1, 0] == 0.01

    square_root = lrs_of(lambda o: SquareRootScheduler(o), 10, base_lrs=(0.1,))[:, 0]
    expected = torch.tensor([0.1 * (t + 1.0) ** -0.5 for t in range(10)], dtype=torch.float64)
    torch.testing.assert_close(square_root, expected)
    # the book's FactorScheduler(factor=0.9, stop_factor_lr=1e-2, base_lr=2.0) keeps a running lr
    factor = lrs_of(lambda o: FactorScheduler(o, factor=0.9, stop_factor_lr=1e-2), 50, base_lrs=(2.0,))[:, 0]
    lr, expected = 2.0, []
    for _ in range(50):
        expected.append(lr)
        lr = max(1e-2, lr * 0.9)
    torch.testing.assert_close(factor, torch.tensor(expected, dtype=torch.float64))


def test_warmup_works_with_any_schedule():
    lrs = lrs_of(lambda o: StepScheduler(o, step_size=2, gamma=0.1, warmup_steps=4, warmup_begin_lr=0.1), 8,
                 base_lrs=(0.5,))[:, 0]
    torch.testing.assert_close(lrs, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.05, 0.05], dtype=torch.float64))


def test_a_schedule_drives_a_scratch_optimizer_as_a_torch_scheduler_drives_torchs():
    ours, theirs = tiny_net(), tiny_net()
    scratch_adam = scratch.Adam(ours.parameters(), lr=0.05)
    torch_adam = torch.optim.Adam(theirs.parameters(), lr=0.05)
    train(ours, scratch_adam, batches(12), StepScheduler(scratch_adam, 4, gamma=0.3))
    train(theirs, torch_adam, batches(12), torch.optim.lr_scheduler.StepLR(torch_adam, 4, gamma=0.3))
    assert_same_parameters(ours, theirs, rtol=1e-10, atol=1e-12)
    assert scratch_adam.param_groups[0]["lr"] == pytest.approx(0.05 * 0.3**3)


def test_schedule_state_round_trips_and_the_trainer_resumes_with_it(tmp_path):
    """A run stopped after epoch 2 and resumed from its checkpoint (scratch Adam state, cosine
    schedule state) ends where the uninterrupted run does."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(128, 3, generator=g)
    data = Split(X, X @ torch.tensor([1.0, -2.0, 0.5]) + 1.0)

    class Stop(Exception):
        pass

    def run(out_dir, stop_after=None, resume=False):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        optimizer = scratch.Adam(model.parameters(), lr=0.1)
        scheduler = CosineScheduler(optimizer, max_update=4, final_lr=0.001, warmup_steps=1)

        class StopAfter(Callback):
            def on_epoch_end(self, trainer, record):
                if record["epoch"] == stop_after:
                    raise Stop

        trainer = Trainer(model, Regression(fast.squared_loss), optimizer, epochs=4, scheduler=scheduler,
                          out_dir=out_dir, progress=False, callbacks=[StopAfter()])
        trainer.fit(TensorLoader(data, 16, shuffle=True), TensorLoader(data, 128), resume=resume)
        return model, optimizer

    full_model, full_optimizer = run(tmp_path / "full")
    with pytest.raises(Stop):
        run(tmp_path / "stopped", stop_after=2)
    resumed_model, resumed_optimizer = run(tmp_path / "stopped", resume=True)
    for p, q in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)
    assert resumed_optimizer.param_groups[0]["lr"] == full_optimizer.param_groups[0]["lr"] == 0.001


@pytest.mark.parametrize("make, message", [
    (lambda o: StepScheduler(o, step_size=0), "step_size must be at least 1"),
    (lambda o: MultiStepScheduler(o, []), "milestones must be positive"),
    (lambda o: CosineScheduler(o, max_update=5, warmup_steps=5), "must exceed warmup_steps"),
    (lambda o: FactorScheduler(o, factor=1.5), "factor must be in"),
    (lambda o: SquareRootScheduler(o, warmup_steps=-1), "warmup_steps must be non-negative"),
    (lambda o: create_schedule("linear", o), "unknown schedule 'linear'"),
])
def test_bad_schedule_arguments_are_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make(scratch.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))


def test_create_schedule_makes_every_named_schedule():
    arguments = {"step": {"step_size": 2}, "multistep": {"milestones": [3]}, "cosine": {"max_update": 10}}
    for name, cls in SCHEDULES.items():
        optimizer = scratch.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
        assert isinstance(create_schedule(name, optimizer, **arguments.get(name, {})), cls)
