"""The training engine: metrics, files, resume equivalence, the NaN stop, options."""

import csv
import logging
import math

import pytest
import torch
from torch import nn

from divekit import io
from divekit.data.base import Split
from divekit.data.loader import TensorLoader
from divekit.data.batch import Batch, Detection, Segmentation
from divekit.data.transforms import Compose, RandomHorizontalFlip, Resize
from divekit.ops import fast, scratch
from divekit.train.callbacks import Callback, CurvesFigure
from divekit.train.engine import NonFiniteLossError, Trainer
from divekit.train.metrics import MetricSums
from divekit.train.tasks import Classification, Regression


def blobs(n=240, seed=0):
    """Three well-separated Gaussian classes in 2-D."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[0.0, 4.0], [4.0, -2.0], [-4.0, -2.0]])
    return Split(centers[y] + torch.randn(n, 2, generator=g), y)


def mlp_with_dropout():
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def make_trainer(model, out_dir=None, epochs=3, callbacks=(), **kwargs):
    figures = [CurvesFigure(out_dir)] if out_dir is not None else []
    return Trainer(model, Classification(fast.cross_entropy), torch.optim.SGD(model.parameters(), lr=0.2),
                   epochs=epochs, out_dir=out_dir, progress=False, log_every=5, callbacks=[*figures, *callbacks], **kwargs)


def loaders(seed=0):
    data = blobs()
    return TensorLoader(data, 16, shuffle=True, seed=seed), TensorLoader(blobs(90, seed=1), 32)


def test_fit_learns_and_writes_the_run_files(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(mlp_with_dropout(), tmp_path, eval_name="test")
    history = trainer.fit(*loaders())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["test_acc"] > 0.95 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(history[0]) >= {"train_loss", "train_acc", "test_loss", "test_acc", "seconds", "examples_per_s"}
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 3 and math.isclose(float(rows[-1]["test_acc"]), history[-1]["test_acc"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = io.load(tmp_path / "checkpoint.pt")
    assert checkpoint["epoch"] == 3 and checkpoint["history"] == history
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_evaluation_metrics_are_exact_sums_over_the_split():
    torch.manual_seed(0)
    model = nn.Linear(2, 3)
    data = blobs(101)
    trainer = make_trainer(model)
    metrics = trainer.evaluate(TensorLoader(data, 10))  # last batch has 1 example
    with torch.no_grad():
        logits = model(data.X)
    assert math.isclose(metrics["loss"], nn.functional.cross_entropy(logits, data.y).item(), rel_tol=1e-5)
    assert metrics["acc"] == (logits.argmax(1) == data.y).sum().item() / 101


def test_regression_metrics_are_exact_over_a_split_with_a_short_last_batch():
    torchmetrics = pytest.importorskip("torchmetrics")
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    X = torch.randn(101, 2)
    y = 50 + 3 * X[:, 0] + torch.randn(101)  # a mean far from 0: R^2 is about the spread around it
    task = Regression(fast.mse_loss, target_std=2.0)
    metrics = Trainer(model, task, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
                      progress=False).evaluate(TensorLoader(Split(X, y), 10))  # the last batch has 1 example
    with torch.no_grad():
        y_hat = model(X)[:, 0]
    assert metrics["loss"] == pytest.approx(fast.mse_loss(y_hat, y).mean().item(), rel=1e-5)
    assert metrics["rmse"] == pytest.approx(2.0 * torchmetrics.functional.mean_squared_error(y_hat, y).sqrt().item(),
                                            rel=1e-5)
    reference = torchmetrics.functional.r2_score(y_hat.double(), y.double()).item()  # in float32 it is 3e-5 off
    assert metrics["r2"] == pytest.approx(reference, rel=1e-7)


def test_every_epoch_trains_on_the_loaders_order_for_that_epoch(tmp_path):
    class Recorded(TensorLoader):
        def set_epoch(self, epoch):
            epochs.append(epoch)
            super().set_epoch(epoch)

    epochs = []
    train, evaluation = loaders()
    recorded = Recorded(train.data, 16, shuffle=True, seed=0)
    make_trainer(mlp_with_dropout(), tmp_path, epochs=3).fit(recorded, evaluation)
    assert epochs == [1, 2, 3]  # a new order every epoch, each the loader's own for that epoch
    recorded.set_epoch(1)
    first = [batch.y for batch in recorded]
    recorded.set_epoch(2)
    assert any(not torch.equal(a, b) for a, b in zip(first, (batch.y for batch in recorded)))


class StopAfter(Exception):
    pass


def test_resume_continues_to_the_same_result_as_an_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    full = make_trainer(mlp_with_dropout(), tmp_path / "full", epochs=4)
    full_history = full.fit(*loaders())

    class KillAfterEpoch2(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                raise StopAfter

    torch.manual_seed(0)
    killed = make_trainer(mlp_with_dropout(), tmp_path / "killed", epochs=4, callbacks=[KillAfterEpoch2()])
    with pytest.raises(StopAfter):
        killed.fit(*loaders())
    assert io.load(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 2

    torch.manual_seed(123)  # a fresh process: different init and RNG, all replaced by the checkpoint
    resumed = make_trainer(mlp_with_dropout(), tmp_path / "killed", epochs=4)
    resumed_history = resumed.fit(*loaders(), resume=True)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "examples_per_s")} for r in h]
    assert strip(resumed_history) == strip(full_history)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_after_the_step_with_a_checkpoint_of_it_and_a_second_one_at_once(signal_name, tmp_path):
    """Without this, Ctrl-C kept only the last periodic checkpoint (up to --checkpoint-every, 5 minutes, of
    training lost, or the whole run before the first)."""
    import signal

    number = getattr(signal, signal_name)
    torch.manual_seed(0)
    full = make_trainer(mlp_with_dropout(), tmp_path / "full", epochs=2)
    full.fit(*loaders())

    class CtrlCAt(Callback):
        def __init__(self, at, times=1):
            self.at, self.times = at, times

        def on_step_end(self, trainer, epoch, step):
            if (epoch, step) == self.at:
                for _ in range(self.times):
                    signal.raise_signal(number)

    torch.manual_seed(0)
    stopped = make_trainer(mlp_with_dropout(), tmp_path / "stopped", epochs=2, callbacks=[CtrlCAt((2, 3))])
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(*loaders())
    saved = io.load(tmp_path / "stopped" / "checkpoint.pt")
    assert (saved["epoch"], saved["step"]) == (1, 4)  # the step under way when the signal came, then saved
    assert signal.getsignal(number) is not None and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    torch.manual_seed(123)
    resumed = make_trainer(mlp_with_dropout(), tmp_path / "stopped", epochs=2)
    resumed.fit(*loaders(), resume=True)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)  # nothing lost: as if never stopped
    twice = make_trainer(mlp_with_dropout(), tmp_path / "twice", epochs=2, callbacks=[CtrlCAt((1, 2), times=2)])
    with pytest.raises(KeyboardInterrupt):  # the first asks for a stop; the second, before the step ends, stops now
        twice.fit(*loaders())
    assert not (tmp_path / "twice" / "checkpoint.pt").exists()


def test_a_checkpoint_keeps_the_mps_generator_where_there_is_one(tmp_path, monkeypatch):
    """A Mac's GPU has a generator of its own (dropout there draws from it): saved and restored too."""
    mps_state = {"now": torch.tensor([7], dtype=torch.uint8)}
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: mps_state["now"].clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: mps_state.update(now=state.clone()))
    trainer = make_trainer(mlp_with_dropout(), tmp_path, epochs=1)
    trainer.fit(*loaders())
    assert torch.equal(io.load(tmp_path / "checkpoint.pt")["mps_rng"], torch.tensor([7], dtype=torch.uint8))
    mps_state["now"] = torch.tensor([0], dtype=torch.uint8)  # the generator moved on
    make_trainer(mlp_with_dropout(), tmp_path, epochs=1).resume_from_checkpoint()
    assert torch.equal(mps_state["now"], torch.tensor([7], dtype=torch.uint8))


def test_the_epochs_learning_rate_is_the_one_its_last_step_trained_at():
    class Record(Callback):
        def on_step_end(self, trainer, epoch, step):
            self.last = used[-1]

        def on_epoch_end(self, trainer, record):
            logged.append((trainer.epoch_lr, self.last))

    class SGD(torch.optim.SGD):
        def step(self, *args, **kwargs):
            used.append(self.param_groups[0]["lr"])  # the rate this step trains at
            return super().step(*args, **kwargs)

    used, logged = [], []
    model = mlp_with_dropout()
    optimizer = SGD(model.parameters(), lr=0.2)
    for interval in ("step", "epoch"):
        used.clear(), logged.clear()
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.9 ** t)
        Trainer(model, Classification(fast.cross_entropy), optimizer, epochs=2, progress=False, scheduler=scheduler,
                scheduler_interval=interval, callbacks=[Record()]).fit(*loaders())
        assert [a for a, b in logged] == [b for a, b in logged] and len(set(used)) > 1


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_trainer(nn.Linear(2, 3), tmp_path).fit(*loaders(), resume=True)


class ExplodesAtStep(nn.Module):
    """A linear model whose output becomes NaN from the given global step on."""

    def __init__(self, bad_step):
        super().__init__()
        self.linear = nn.Linear(2, 3)
        self.bad_step, self.calls = bad_step, 0

    def forward(self, X):
        if self.training:
            self.calls += 1
            if self.calls >= self.bad_step:
                return self.linear(X) * float("nan")
        return self.linear(X)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    steps_per_epoch = len(loaders()[0])  # 15
    model = ExplodesAtStep(bad_step=steps_per_epoch + 7)  # epoch 2, step 7
    trainer = make_trainer(model, tmp_path, epochs=3)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 7") as err:
        trainer.fit(*loaders())
    assert (err.value.epoch, err.value.step) == (2, 7)
    assert "last good checkpoint" in str(err.value) and "--lr" in str(err.value)
    assert "fp32" not in str(err.value)  # it trains in fp32 already: fp32 is advice only under bf16
    with pytest.raises(NonFiniteLossError, match=r"or fp32 precision \(--precision fp32\)"):
        make_trainer(ExplodesAtStep(bad_step=3), tmp_path / "bf16", epochs=1, precision="bf16").fit(*loaders())
    checkpoint = io.load(tmp_path / "checkpoint.pt")
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


def test_infinite_loss_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path):
    model = nn.Linear(1, 1)
    task = Regression(lambda y_hat, y: (y_hat - y) ** 2 * float("inf"))
    trainer = Trainer(model, task, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, out_dir=tmp_path, progress=False)
    split = Split(torch.ones(8, 1), torch.ones(8, 1) * 3)
    with pytest.raises(NonFiniteLossError, match="loss became inf at epoch 1, step 1; .*no checkpoint had been written"):
        trainer.fit(TensorLoader(split, 4))
    assert not (tmp_path / "checkpoint.pt").exists()


def test_gradient_clipping_bounds_the_global_norm():
    norms = []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            norms.append(torch.sqrt(sum((p.grad ** 2).sum() for p in self.param_groups[0]["params"])).item())
            return super().step(closure)

    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.mul_(100)  # large logits, large gradients
    trainer = Trainer(model, Classification(fast.cross_entropy), RecordingSGD(model.parameters(), lr=1e-3),
                      epochs=1, clip_grad_norm=0.5, progress=False)
    trainer.fit(loaders()[0])
    assert max(norms) <= 0.5 + 1e-5 and len(norms) == 15


def test_trainer_clips_with_the_given_clip_function():
    calls = []

    def clip_and_record(params, max_norm):
        calls.append((len(params), max_norm))
        return scratch.clip_grad_norm(params, max_norm)

    model = nn.Linear(2, 3)
    trainer = Trainer(model, Classification(fast.cross_entropy), torch.optim.SGD(model.parameters(), lr=0.1),
                      epochs=1, clip_grad_norm=0.25, clip_fn=clip_and_record, progress=False)
    trainer.fit(loaders()[0])
    assert calls == [(2, 0.25)] * 15  # weight and bias, every step


def test_bf16_autocast_trains_on_cpu():
    torch.manual_seed(0)
    history = make_trainer(nn.Linear(2, 3), precision="bf16").fit(*loaders())
    assert history[-1]["val_acc"] > 0.9


def test_bad_trainer_options_are_clear_errors():
    with pytest.raises(ValueError, match="precision"):
        make_trainer(nn.Linear(2, 3), precision="fp8")
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        make_trainer(nn.Linear(2, 3), epochs=0)
    with pytest.raises(ValueError, match="clip_grad_norm must be positive"):
        make_trainer(nn.Linear(2, 3), clip_grad_norm=-1.0)


def test_metric_sums_mix_tensors_and_numbers():
    sums = MetricSums()
    sums.add({"loss": torch.tensor(1.5), "count": 3})
    sums.add({"loss": torch.tensor(2.5), "count": 4})
    assert sums.totals() == {"loss": 4.0, "count": 7.0}
    assert MetricSums().totals() == {}


def test_loader_shuffles_reproducibly_per_epoch_and_covers_every_example():
    split = Split(torch.arange(10).float().unsqueeze(1), torch.arange(10))
    loader = TensorLoader(split, 4, shuffle=True, seed=3)
    epoch1 = torch.cat([batch.y for batch in loader])
    assert sorted(epoch1.tolist()) == list(range(10)) and len(loader) == 3
    assert torch.equal(epoch1, torch.cat([batch.y for batch in loader]))
    loader.set_epoch(1)
    assert not torch.equal(epoch1, torch.cat([batch.y for batch in loader]))
    for batch in loader:
        assert torch.equal(batch.X.squeeze(1).long(), batch.y)  # features stay with their labels


def test_a_training_loader_leaves_out_a_last_minibatch_of_one_example_that_batch_norm_cannot_train_on():
    from divekit.models.registry import create_model

    split = Split(torch.rand(33, 1, 28, 28), torch.arange(33) % 10)
    training = TensorLoader(split, 32, shuffle=True)
    assert [len(batch.y) for batch in training] == [32] and len(training) == 1
    model = create_model("lenet-bn").train()
    for batch in training:
        model(batch.X)  # one example would be refused: "Expected more than 1 value per channel"
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(split.X[:1])
    assert [len(batch.y) for batch in TensorLoader(split, 32)] == [32, 1]  # evaluation sees every example
    assert [len(batch.y) for batch in TensorLoader(Split(split.X[:1], split.y[:1]), 32, shuffle=True)] == [1]
    assert [len(batch.y) for batch in TensorLoader(Split(torch.rand(34, 1), torch.arange(34)), 32, shuffle=True)] == [32, 2]


def test_a_minibatch_smaller_than_the_processes_cannot_be_shared():
    loader = TensorLoader(Split(torch.rand(8, 1), torch.arange(8)), 2)
    with pytest.raises(ValueError, match="a minibatch of 2 examples cannot be shared by 4 processes"):
        loader.shard(0, 4)


def test_loader_converts_uint8_images_and_resizes():
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    X = next(iter(TensorLoader(Split(images, torch.zeros(5)), 5))).X
    assert X.dtype == torch.float32 and torch.allclose(X, images.float() / 255)
    X = next(iter(TensorLoader(Split(images, torch.zeros(5)), 2, transform=Resize(56)))).X
    assert X.shape == (2, 1, 56, 56)
    torch.testing.assert_close(X, torch.nn.functional.interpolate(images[:2].float() / 255, size=(56, 56), mode="bilinear"))
    assert TensorLoader(Split(images, torch.zeros(5)), 2, drop_last=True).__len__() == 2
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(Split(images, torch.zeros(5)), 0)


def test_batches_move_select_and_check_their_fields():
    batch = Detection(torch.rand(4, 3, 8, 8), torch.rand(4, 2, 4), torch.tensor([[0, -1], [1, 1], [-1, -1], [2, -1]]))
    assert len(batch) == 4 and isinstance(batch, Batch)
    picked = batch.select(torch.tensor([2, 0]))
    assert torch.equal(picked.labels, batch.labels[[2, 0]]) and torch.equal(picked.X, batch.X[[2, 0]])
    assert torch.equal(batch.select(slice(1, 3)).boxes, batch.boxes[1:3])
    assert batch.to("cpu").fields().keys() == {"X", "boxes", "labels"}
    with pytest.raises(ValueError, match="the same number of examples, got X 4, boxes 3, labels 4"):
        Detection(torch.rand(4, 3, 8, 8), torch.rand(3, 2, 4), torch.zeros(4, 2))


def test_a_flip_moves_images_masks_and_boxes_together_per_example():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(64, 1, 4, 6, generator=g)
    masks = torch.randint(0, 5, (64, 4, 6), generator=g)
    flipped = RandomHorizontalFlip(0.5)(Segmentation(X, masks), torch.Generator().manual_seed(1))
    was_flipped = [bool(torch.equal(flipped.X[i], X[i].flip(-1))) for i in range(64)]
    assert 16 < sum(was_flipped) < 48  # a coin per example, not one per batch
    for i, f in enumerate(was_flipped):  # each mask went with its image
        assert torch.equal(flipped.masks[i], masks[i].flip(-1) if f else masks[i])
        assert f or torch.equal(flipped.X[i], X[i])
    again = RandomHorizontalFlip(0.5)(Segmentation(X, masks), torch.Generator().manual_seed(1))
    assert torch.equal(again.X, flipped.X)  # the same seed, the same flips
    boxes = torch.tensor([[[0.1, 0.2, 0.4, 0.5]]]).expand(8, 1, 4)
    images = torch.zeros(8, 1, 10, 10)
    images[:, :, 2:5, 1:4] = 1  # the object the box surrounds (x from 0.1 to 0.4)
    out = RandomHorizontalFlip(1.0)(Detection(images, boxes, torch.zeros(8, 1)))
    torch.testing.assert_close(out.boxes, torch.tensor([[[0.6, 0.2, 0.9, 0.5]]]).expand(8, 1, 4))
    assert out.X[0, 0, 2:5, 6:9].eq(1).all() and out.X[0, 0].sum() == 9  # the object moved where its box did
    resized = Compose([Resize(20), RandomHorizontalFlip(0.0)])(Segmentation(X, masks))
    assert resized.X.shape == (64, 1, 20, 20) and resized.masks.shape == (64, 20, 20)
    assert set(resized.masks.unique().tolist()) <= set(masks.unique().tolist())  # nearest: no averaged classes
    with pytest.raises(ValueError, match="image transforms take float images"):
        Resize(8)(Split(torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(2)))


@pytest.mark.slow
def test_torch_compile_trains_like_eager():
    histories = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
        histories.append(make_trainer(model, compile=compile).fit(*loaders()))
    for eager, compiled in zip(*histories):
        assert math.isclose(eager["train_loss"], compiled["train_loss"], rel_tol=1e-4)
        assert eager["val_acc"] == compiled["val_acc"]


def test_verbose_false_moves_epoch_lines_to_debug(caplog):
    logger = logging.getLogger("divekit")  # the CLI may have turned propagation off: listen directly
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="divekit"):
            make_trainer(nn.Linear(2, 3), epochs=2, verbose=False).fit(loaders()[0])
            assert not [r for r in caplog.records if r.message.startswith("epoch")]
            make_trainer(nn.Linear(2, 3), epochs=2).fit(loaders()[0])
            assert [r.message.split()[1] for r in caplog.records if r.message.startswith("epoch")] == ["1/2", "2/2"]
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagate


ALLOCATION_PROBE = """
import ctypes, ctypes.util, sys
import torch
from divekit.train.engine import Trainer
libc = ctypes.CDLL(ctypes.util.find_library("c"))

class MallInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                  "fsmblks", "uordblks", "fordblks", "keepcost")]

libc.mallinfo.restype = MallInfo
model = torch.nn.Linear(2, 2)
Trainer(model, None, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, device="cpu", progress=False)
before = libc.mallinfo().hblks  # blocks that glibc serves with their own mmap
x = torch.empty(20_000_000)  # 80 MB, above glibc's largest mmap threshold (32 MiB)
print(libc.mallinfo().hblks - before)
"""


def glibc() -> bool:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return name is not None and hasattr(ctypes.CDLL(name), "gnu_get_libc_version")


@pytest.mark.skipif(not glibc(), reason="the setting is glibc's")
@pytest.mark.parametrize("choice, mmapped", [(None, "0"), ("system", "1")])
def test_cpu_training_keeps_large_blocks_on_the_heap_unless_told_not_to(choice, mmapped):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DIVEKIT_CPU_ALLOCATOR"}
    if choice:
        env["DIVEKIT_CPU_ALLOCATOR"] = choice
    out = subprocess.run([sys.executable, "-c", ALLOCATION_PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == mmapped  # reuse: the block comes from the heap, whose freed pages are kept


def test_a_bad_allocator_choice_is_a_one_line_error(monkeypatch):
    from divekit.train import device

    device.reuse_freed_memory.cache_clear()  # a bad choice raises and is not cached
    monkeypatch.setenv("DIVEKIT_CPU_ALLOCATOR", "jemalloc")
    with pytest.raises(ValueError, match="DIVEKIT_CPU_ALLOCATOR='jemalloc' is not a choice; use 'reuse'"):
        device.reuse_freed_memory()


def test_the_progress_bar_is_off_in_a_log_file_and_sized_once_in_a_notebook(monkeypatch, capsys):
    import divekit.train.engine as engine

    train, _ = loaders()
    trainer = Trainer(mlp_with_dropout(), Classification(fast.cross_entropy), torch.optim.SGD(
        mlp_with_dropout().parameters(), lr=0.1), epochs=2, progress=True)
    trainer.fit(train)
    assert "batch" not in capsys.readouterr().err  # stderr is no terminal here: no redraws in a log

    resets = []

    class Recording(engine.tqdm):
        def reset(self, total=None):
            resets.append(total)
            return super().reset(total=total)

    monkeypatch.setattr(engine, "in_notebook", lambda: True)
    monkeypatch.setattr(engine, "tqdm", Recording)
    model = mlp_with_dropout()
    Trainer(model, Classification(fast.cross_entropy), torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
            progress=True).fit(train)
    assert resets == [2 * len(train)]  # a notebook's bar takes its length from reset, not from .total


def test_best_weights_follow_what_best_pt_holds_not_an_epoch_whose_weights_were_lost(tmp_path):
    from types import SimpleNamespace

    from divekit.train.callbacks import BestWeights

    model = nn.Linear(2, 3)
    trainer = SimpleNamespace(task=SimpleNamespace(monitor=("acc", "max")), eval_name="val", model=model, history=[],
                              run_info={"model_card": "abc"})
    best = BestWeights(tmp_path)
    for epoch, acc in ((1, 0.5), (2, 0.6)):
        trainer.history.append({"epoch": epoch, "val_acc": acc})
        best.on_epoch_end(trainer, trainer.history[-1])
    trainer.history.append({"epoch": 3, "val_acc": 0.7})  # stopped after its checkpoint, before the callback
    trainer.history.append({"epoch": 4, "val_acc": 0.65})  # resumed: better than best.pt's epoch 2
    best.on_epoch_end(trainer, trainer.history[-1])
    saved = io.load(tmp_path / "best.pt")
    assert saved["epoch"] == 4 and saved["model_card"] == "abc"  # the run's model card, which predict checks


def _monitoring(monitor, model):
    from types import SimpleNamespace

    return SimpleNamespace(task=SimpleNamespace(monitor=monitor), eval_name="val", model=model, history=[],
                           run_info={"model_card": "abc"})


def test_a_resumed_runs_best_weights_compare_with_best_pt_and_another_metric_replaces_it(tmp_path):
    from divekit.train.callbacks import BestWeights

    trainer = _monitoring(("acc", "max"), nn.Linear(2, 3))
    first = BestWeights(tmp_path)
    for epoch, acc in ((1, 0.5), (2, 0.6)):
        first.on_epoch_end(trainer, {"epoch": epoch, "val_acc": acc})
    BestWeights(tmp_path).on_epoch_end(trainer, {"epoch": 3, "val_acc": 0.55})  # after a resume: a new callback
    assert io.load(tmp_path / "best.pt")["epoch"] == 2
    BestWeights(tmp_path).on_epoch_end(_monitoring(("loss", "min"), nn.Linear(2, 3)), {"epoch": 4, "val_loss": 0.3})
    saved = io.load(tmp_path / "best.pt")
    assert (saved["metric"], saved["epoch"]) == ("val_loss", 4)  # another metric: not compared, replaced


def test_tensorboard_logs_the_rate_each_epoch_trained_at(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from divekit.train.callbacks import TensorBoardLog

    model = mlp_with_dropout()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = Trainer(model, Classification(fast.cross_entropy), optimizer, epochs=4, progress=False,
                      scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1),
                      callbacks=[TensorBoardLog(tmp_path)])
    trainer.fit(loaders()[0])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([1.0, 1.0, 0.1, 0.1])


def test_regression_tasks_refuse_targets_laid_out_otherwise_than_the_predictions():
    from divekit.train.tasks import HousePriceRegression

    model = nn.Linear(3, 6)
    Regression(fast.mse_loss).step(model, Split(torch.rand(2, 3), torch.rand(2, 1, 6)), training=True)  # a 1 axis: taken
    batch = Split(torch.rand(2, 3), torch.rand(2, 3, 2) + 1)  # 6 numbers an example, but not laid out as (6,)
    for task in (Regression(fast.mse_loss), HousePriceRegression()):
        with pytest.raises(ValueError, match=r"targets of shape \(2, 3, 2\) do not match predictions of shape \(2, 6\)"):
            task.step(model, batch, training=True)
