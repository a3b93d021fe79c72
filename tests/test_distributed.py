"""Data-parallel training (divekit.train.distributed): the shards of a minibatch are the minibatch,
two gloo processes on the CPU train as one process does on the whole minibatch, a process that
dies stops the run and leaves its checkpoint intact, and a checkpoint written under two processes
(DDP or FSDP2) resumes under one. The processes are real: torchrun starts them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import needs_real_data

from divekit import io
from divekit.cli import main
from divekit.data.batch import Split
from divekit.data.loader import TensorLoader, share_bounds
from divekit.data.text import LMLoader

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")


def env(*paths: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), str(ROOT / "src")]), "OMP_NUM_THREADS": "1"}


def torchrun(script: Path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                           str(script), *args], env=env(), capture_output=True, text=True, timeout=600)


def only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def final(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["final"]


def assert_same_metrics(a: dict, b: dict, keys, rtol=1e-5):
    for key in keys:
        assert a[key] == pytest.approx(b[key], rel=rtol, abs=1e-7), key


def assert_same_weights(a: Path, b: Path, atol=1e-6):
    wa, wb = io.load(a / "checkpoint.pt")["model"], io.load(b / "checkpoint.pt")["model"]
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=atol, msg=name)


# -- shards (one process) --------------------------------------------------------------------------

@pytest.mark.parametrize("size, parts", [(10, 3), (2, 4), (7, 7), (0, 2)])
def test_share_bounds_split_as_tensor_split_does(size, parts):
    expected = torch.arange(size).tensor_split(parts)
    for shard in range(parts):
        lo, hi = share_bounds(size, shard, parts)
        assert torch.equal(torch.arange(size)[lo:hi], expected[shard])
    with pytest.raises(ValueError, match=r"shard must be in \[0, 3\), got 3"):
        share_bounds(size, 3, 3)


def test_the_shards_of_every_minibatch_together_are_the_minibatch():
    data = Split(torch.arange(23).float()[:, None], torch.arange(23))
    whole = TensorLoader(data, 6, shuffle=True, seed=3)
    shards = [TensorLoader(data, 6, shuffle=True, seed=3) for _ in range(3)]
    for index, loader in enumerate(shards):
        loader.shard(index, 3)
    for epoch in (1, 2):
        for loader in (whole, *shards):
            loader.set_epoch(epoch)
        batches = list(whole)
        assert [len(s) for s in shards] == [len(whole)] * 3 == [4] * 3 and [len(b) for b in batches] == [6, 6, 6, 5]
        for batch, parts in zip(batches, zip(*shards)):
            assert torch.equal(torch.cat([p.y for p in parts]), batch.y)  # the same examples, in rank order
    lone = TensorLoader(Split(torch.zeros(13, 1), torch.arange(13)), 6)
    lone.shard(1, 2)
    assert len(lone) == 2  # the last minibatch (1 example) cannot be shared by 2 processes: it is left out
    # the last minibatch of 5 is shared 2, 2, 1: weights that make the shards' mean losses average to the whole's
    weights = [[(loader.share_weight, len(part)) for part in loader] for loader in shards]
    assert [w[-1] for w in weights] == [(1.2, 2), (1.2, 2), (0.6, 1)] and all(w[0][0] == 1.0 for w in weights)
    losses = torch.arange(5.0)  # per example
    shared = [losses[:2].mean() * 1.2, losses[2:4].mean() * 1.2, losses[4:].mean() * 0.6]
    assert torch.stack(shared).mean() == losses.mean()


@pytest.mark.parametrize("sequential", [True, False])
def test_language_model_shards_are_rows_of_the_minibatch(sequential):
    corpus = torch.arange(400) % 29
    whole = LMLoader(corpus, 6, 5, sequential=sequential, seed=1)
    shards = [LMLoader(corpus, 6, 5, sequential=sequential, seed=1) for _ in range(2)]
    for index, loader in enumerate(shards):
        loader.shard(index, 2)
    for batch, (a, b) in zip(whole, zip(*shards), strict=True):
        assert a.X.shape == (3, 5)
        assert torch.equal(torch.cat([a.X, b.X]), batch.X) and torch.equal(torch.cat([a.y, b.y]), batch.y)


def test_fsdp_and_nproc_are_refused_where_they_cannot_work(tmp_path, capsys):
    assert main(["run", "linear-regression", "--fsdp", "--out", str(tmp_path)]) == 1
    assert "--fsdp shards the model over several processes: start the run with --nproc N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "conv-edge", "--nproc", "2", "--out", str(tmp_path)])
    assert "conv-edge is a demonstration; it runs in one process" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "linear-regression", "--nproc", "0", "--out", str(tmp_path)])
    assert "--nproc must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused before torchrun starts any process
        main(["run", "linear-regression", "--nproc", "2", "--batch-size", "11", "--out", str(tmp_path)])
    assert "--batch-size 11 cannot be split evenly over 2 processes; choose a multiple of 2" in \
        capsys.readouterr().err
    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = (p for p in tmp_path.iterdir() if p.is_dir())
    with pytest.raises(SystemExit):
        main(["resume", str(run), "--nproc", "3", "--epochs", "2"])  # its --batch-size 10
    assert "--batch-size 10 cannot be split evenly over 3 processes" in capsys.readouterr().err


# -- two processes ---------------------------------------------------------------------------------

ONE_STEP = """
import sys, torch
from divekit.experiments.runner import prepare_training
from divekit.train import distributed

for impl, limit in (("fast", 16), ("scratch", 16), ("fast", 19)):
    training = prepare_training("lenet", impl=impl, limit=limit, batch_size=16, epochs=1, device="cpu")
    training.fit()  # 16 examples in minibatches of 16: one step; 19: then a minibatch of 3, shared 2 and 1
    if distributed.world().main:
        torch.save(training.setup.model.state_dict(), f"{sys.argv[1]}/{impl}-{limit}-{distributed.world().size}.pt")
"""


def test_one_step_under_two_processes_equals_one_process_on_the_whole_minibatch(tmp_path):
    script = tmp_path / "one_step.py"
    script.write_text(ONE_STEP)
    done = torchrun(script, str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    from divekit.experiments.runner import prepare_training

    for impl, limit in (("fast", 16), ("scratch", 16), ("fast", 19)):
        training = prepare_training("lenet", impl=impl, limit=limit, batch_size=16, epochs=1, device="cpu")
        start = {k: v.clone() for k, v in training.setup.model.state_dict().items()}
        training.fit()
        two = torch.load(tmp_path / f"{impl}-{limit}-2.pt")
        moved = 0
        for name, value in training.setup.model.state_dict().items():
            torch.testing.assert_close(two[name], value, rtol=1e-5, atol=1e-6, msg=f"{impl} {name}")
            moved += not torch.equal(value, start[name])
        assert moved > 0  # the step changed the weights: the comparison is not of two initialisations


def test_two_processes_end_at_the_metrics_of_one_with_the_same_global_batch(tmp_path):
    options = ["run", "softmax-regression", "--limit", "512", "--batch-size", "64", "--epochs", "2", "--no-progress"]
    two = subprocess.run([sys.executable, "-m", "divekit", *options, "--nproc", "2", "--out", str(tmp_path / "two")],
                         env=env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert main([*options, "--out", str(tmp_path / "one")]) == 0
    run_two, run_one = only_run(tmp_path / "two"), only_run(tmp_path / "one")  # one run folder, written by process 0
    assert_same_metrics(final(run_two), final(run_one), ("train_loss", "train_acc", "test_loss", "test_acc"))
    assert_same_weights(run_two, run_one)
    record = json.loads((run_two / "config.json").read_text())
    assert record["distributed"] == {"processes": 2, "strategy": "ddp", "backend": "gloo", "global_batch_size": 64,
                                     "batch_size_per_process": 32}
    assert json.loads((run_one / "config.json").read_text())["distributed"]["processes"] == 1
    assert two.stderr.count("epoch 2/2") == 1  # one process speaks for the run


ONE_GRADIENT = """
import sys, torch
from divekit.experiments.runner import prepare_training
from divekit.train import distributed

for i, (name, options) in enumerate(CASES):
    training = prepare_training(name, device="cpu", **options)
    loader, task, model = training.setup.data.train, training.setup.task, training.trainer.forward_model
    loader.transform = None  # the same images in every share and in the whole minibatch
    model.eval()  # no dropout masks, batch norm from its running statistics: the weighting alone differs
    loader.set_epoch(1)
    batch = next(iter(loader))
    out = task.step(model, batch, training=True)
    share = 1.0 if task.whole_minibatch_loss else loader.share_weight
    (out.loss * share).backward()  # DDP averages the processes' gradients
    if distributed.world().main:
        torch.save([p.grad for p in model.parameters()], f"{sys.argv[1]}/{i}.pt")
"""
# losses averaged over what each share counts (real tokens, predictions, assigned anchors) or summed (seq2seq's
# book objective): the processes' averaged gradient must still be the whole minibatch's
WHOLE_MINIBATCH_CASES = [
    ("seq2seq", dict(limit=64, batch_size=16, embed_size=8, num_hiddens=8, loss_reduction="token_mean")),
    ("seq2seq", dict(limit=64, batch_size=16, embed_size=8, num_hiddens=8, loss_reduction="book")),
    ("bert-pretrain", dict(limit=64, batch_size=16, num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_layers=1,
                           mlm_reduction="real")),
    ("yolo", dict(num_train=16, num_val=8, image_size=64, batch_size=8, base_channels=(4, 4, 8), num_channels=8)),
    ("lenet", dict(resize=None, limit=16, batch_size=8)),
]


@needs_real_data(["fra-eng", "wikitext-2", "fashion-mnist"])
def test_losses_over_what_each_share_counts_give_the_whole_minibatchs_gradient(tmp_path):
    script = tmp_path / "one_gradient.py"
    script.write_text(f"CASES = {WHOLE_MINIBATCH_CASES!r}\n" + ONE_GRADIENT)
    done = torchrun(script, str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    from divekit.experiments.runner import prepare_training

    for i, (name, options) in enumerate(WHOLE_MINIBATCH_CASES):
        training = prepare_training(name, device="cpu", **options)
        loader, task, model = training.setup.data.train, training.setup.task, training.trainer.forward_model
        loader.transform = None
        model.eval()
        loader.set_epoch(1)
        task.step(model, next(iter(loader)), training=True).loss.backward()
        for theirs, ours in zip(torch.load(tmp_path / f"{i}.pt"), model.parameters()):
            torch.testing.assert_close(theirs, ours.grad, rtol=1e-4, atol=1e-6, msg=f"{name} {options}")


KILL = """
import os
if os.environ.get("RANK") == "1":  # torchrun's second process dies just after its checkpoint of this step
    import signal
    from divekit.experiments import runner
    from divekit.train.callbacks import Callback

    class Kill(Callback):
        def on_step_end(self, trainer, epoch, step):
            if (epoch, step) == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)

    prepare = runner.prepare_training

    def prepare_training(*args, **kwargs):
        training = prepare(*args, **kwargs)
        training.trainer.callbacks.append(Kill())
        return training

    runner.prepare_training = prepare_training
"""


def test_divekit_run_under_torchrun_started_by_hand(tmp_path):
    # what --nproc does for you, done by hand (the README's command): one run folder, made by process 0
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "divekit", "run", "linear-regression", "--epochs", "1", "--out", str(tmp_path),
                           "--no-progress"], env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = only_run(tmp_path)
    assert json.loads((run / "config.json").read_text())["distributed"]["processes"] == 2
    assert (run / "summary.json").exists()


def test_a_process_that_dies_stops_the_run_and_its_checkpoint_resumes_under_one_process(tmp_path):
    """An LSTM language model: mid-epoch checkpoints hold the global metric sums and both processes'
    rows of the hidden state, so one process continues exactly where the two stopped."""
    options = ["run", "lstm", "--limit", "600", "--num-hiddens", "8", "--batch-size", "4", "--epochs", "3",
               "--checkpoint-every", "0", "--no-progress"]
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(textwrap.dedent(KILL).format(kill_at=(2, 2)))
    killed = subprocess.run([sys.executable, "-m", "divekit", *options, "--nproc", "2", "--out", str(tmp_path / "two")],
                            env=env(tmp_path / "hook"), capture_output=True, text=True, timeout=600)
    assert killed.returncode == 1
    run = only_run(tmp_path / "two")
    assert ("divekit: error: a process of the run stopped, and torchrun stopped the others" in killed.stderr
            and f"its last checkpoint, after epoch 1 and 2 batches of epoch 2, is intact: `divekit resume {run}` "
                "continues from it" in killed.stderr), killed.stderr[-3000:]
    assert "interrupted" not in killed.stderr  # the process torchrun stopped says nothing of its own
    checkpoint = io.load(run / "checkpoint.pt")
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 2) and len(checkpoint["process_rngs"]) == 1
    assert checkpoint["task"]["state"][0].shape == (1, 4, 8)  # both processes' rows of the LSTM's (H, C)

    assert main(["resume", str(run), "--no-progress"]) == 0  # one process
    assert main([*options, "--out", str(tmp_path / "one")]) == 0
    whole = only_run(tmp_path / "one")
    assert_same_metrics(final(run), final(whole), ("train_loss", "train_perplexity"))
    assert_same_weights(run, whole)
    change = json.loads((run / "config.json").read_text())["changes"][-1]
    assert change == {"after_epoch": 1, "step": 2, "processes": 1, "strategy": None}


def test_sigterm_to_the_launcher_stops_torchruns_processes_too(tmp_path):
    import signal
    import time

    from divekit.experiments.runner import run_lock

    options = ["run", "lenet", "--limit", "256", "--batch-size", "16", "--epochs", "50", "--checkpoint-every", "0",
               "--no-progress", "--nproc", "2", "--out", str(tmp_path)]
    launcher = subprocess.Popen([sys.executable, "-m", "divekit", *options], env=env(), stderr=subprocess.PIPE,
                                text=True)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("*/checkpoint.pt")) and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.2)
    assert list(tmp_path.glob("*/checkpoint.pt")), "no checkpoint was written"
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=120)
    run = only_run(tmp_path)
    assert launcher.returncode == 130 and f"interrupted; `divekit resume {run}`" in err
    assert err.count("interrupted") == 1  # the launcher says it; its processes do not say it again
    with run_lock(run):  # no process of the run is left holding it
        pass


def test_ctrl_c_before_the_first_checkpoint_under_nproc_keeps_no_folder(tmp_path):
    """As in one process: nothing was kept, so the folder goes (it was left with its config and lock)."""
    import signal
    import time

    options = ["run", "lenet", "--limit", "8192", "--batch-size", "16", "--epochs", "50", "--no-progress", "--nproc",
               "2", "--out", str(tmp_path)]  # an epoch of 512 steps: seconds before its checkpoint
    launcher = subprocess.Popen([sys.executable, "-m", "divekit", *options], env=env(), stderr=subprocess.PIPE,
                                text=True, start_new_session=True)  # its own group: Ctrl-C signals the whole group
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*/model.json")) and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.1)
    assert list(tmp_path.glob("*/model.json")), "the processes never started training"
    os.killpg(launcher.pid, signal.SIGINT)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, err[-3000:]
    assert "interrupted before the run's first checkpoint, so nothing was kept" in err
    assert err.count("interrupted") == 1  # the launcher says it; its processes do not say it again
    assert not any(tmp_path.iterdir()), list(tmp_path.rglob("*"))


FSDP_TIED = """
import sys, torch
from divekit.models.registry import create_model
from divekit.train import distributed

distributed.start(fsdp=True)
model = create_model("bert", "fast", vocab_size=20, num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_layers=1,
                     max_positions=16, tie_embeddings=True)
model = distributed.shard_model(model, torch.device("cpu"))
assert model.mlm.decoder.weight is model.encoder.token_embedding.weight, "the tie was cut"
tokens = torch.randint(20, (2, 6))
_, mlm, nsp = model(tokens, None, torch.tensor([6, 4]), torch.tensor([[1, 2], [0, 3]]))
(mlm.sum() + nsp.sum()).backward()  # one gradient for the one matrix
distributed.finish()
"""


def test_fsdp_keeps_a_tied_berts_output_layer_tied(tmp_path):
    script = tmp_path / "fsdp_tied.py"
    script.write_text(FSDP_TIED)
    done = torchrun(script)
    assert done.returncode == 0, done.stderr[-3000:]


FSDP_MODELS = """
import sys, torch
from divekit.experiments.parts import ParameterErrors
from divekit.models.registry import create_model
from divekit.train import distributed
from divekit.train.callbacks import BestWeights

distributed.start(fsdp=True)
torch.manual_seed(0)
ssd = distributed.shard_model(create_model("tinyssd", "fast"), torch.device("cpu"))  # ModuleLists
from torch.distributed.fsdp import FSDPModule
assert all(isinstance(block, FSDPModule) for block in (*ssd.blocks, *ssd.cls_predictors)  # each its own unit
           if any(True for _ in block.parameters()))  # (the global max pooling has none)
anchors, classes, offsets = ssd(torch.rand(2, 3, 64, 64))
(classes.sum() + offsets.sum()).backward()
transformer = distributed.shard_model(create_model("transformer", "fast", src_vocab_size=12, tgt_vocab_size=12,
                                                   num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_layers=1),
                                      torch.device("cpu"))
X = torch.randint(12, (2, 5))
logits, _ = transformer(X, X, torch.tensor([5, 3]))  # the decoder's init_state projects the encoder's output
logits.sum().backward()

# plain SGD keeps no state: its checkpoint resumes under FSDP all the same
whole = create_model("lenet", "fast")
state = {k: v.clone() for k, v in whole.state_dict().items()}
saved = torch.optim.SGD(whole.parameters(), lr=0.3).state_dict()
lenet = distributed.shard_model(create_model("lenet", "fast"), torch.device("cpu"))
optimizer = torch.optim.SGD(lenet.parameters(), lr=0.1)
distributed.load_full_state_dicts(lenet, optimizer, dict(state), saved)  # torch turns the dict's values into shards
assert optimizer.param_groups[0]["lr"] == 0.3
full = distributed.full_model_state(lenet)  # whole on process 0
if distributed.world().main:
    assert all(torch.equal(full[k], state[k]) for k in state)

# the linear-regression probe reads whole parameters; best.pt holds the whole model
linear = distributed.shard_model(create_model("linear", "fast", input_shape=(2,)), torch.device("cpu"))
data = type("Data", (), {"eval_name": "train_full"})()
results, _ = ParameterErrors().run(linear, data, "cpu")
assert len(results["w"]) == 2
trainer = type("Trainer", (), {"task": type("Task", (), {"monitor": ("loss", "min")})(), "eval_name": "val",
                               "model": lenet, "run_info": {"model_card": "card"}})()
BestWeights(sys.argv[1]).on_epoch_end(trainer, {"epoch": 1, "val_loss": 0.5})
if distributed.world().main:
    best = torch.load(sys.argv[1] + "/best.pt", weights_only=True)
    assert best["model"].keys() == state.keys() and all(torch.equal(best["model"][k], state[k]) for k in state)
distributed.finish()
"""


def test_fsdp_shards_lists_of_blocks_and_decoders_and_gathers_the_whole_model(tmp_path):
    """SSD's predictors are a ModuleList (no forward of its own), the Transformer's decoder runs its layers in
    init_state, plain SGD keeps no optimizer state, a probe and best.pt read whole parameters: under --fsdp each
    of these failed."""
    script = tmp_path / "fsdp_models.py"
    script.write_text(FSDP_MODELS)
    done = torchrun(script, str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]


def test_fsdp_trains_as_one_process_and_its_checkpoint_resumes_under_one(tmp_path):
    options = ["run", "lenet", "--limit", "64", "--batch-size", "16", "--epochs", "2", "--optimizer", "momentum",
               "--lr", "0.05", "--checkpoint-every", "0", "--no-progress"]
    two = subprocess.run([sys.executable, "-m", "divekit", *options, "--nproc", "2", "--fsdp", "--out",
                          str(tmp_path / "fsdp")], env=env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert main([*options, "--out", str(tmp_path / "one")]) == 0
    sharded, one = only_run(tmp_path / "fsdp"), only_run(tmp_path / "one")
    assert json.loads((sharded / "config.json").read_text())["distributed"]["strategy"] == "fsdp"
    assert_same_metrics(final(sharded), final(one), ("train_loss", "train_acc", "test_loss", "test_acc"))
    assert_same_weights(sharded, one)  # the checkpoint holds the whole model, gathered from the shards
    sharded_state, one_state = (io.load(run / "checkpoint.pt")["optimizer"] for run in (sharded, one))
    assert [g["params"] for g in sharded_state["param_groups"]] == [g["params"] for g in one_state["param_groups"]]
    torch.testing.assert_close(sharded_state["state"], one_state["state"], rtol=1e-5, atol=1e-6)  # momentum buffers
    for run in (sharded, one):
        assert main(["resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    assert_same_metrics(final(sharded), final(one), ("train_loss", "test_acc"))


def test_optimizer_state_from_a_sharded_checkpoint_takes_the_parameters_layout():
    """FSDP's checkpoint holds Adam's moments contiguous; a model trained in one process is channels-last
    (the CNNs' layout here), and the fused Adam pairs state and parameter by memory order."""
    from divekit.models.registry import create_model
    from divekit.optim import create_optimizer
    from divekit.train import distributed

    torch.manual_seed(0)
    model = create_model("lenet").to(memory_format=torch.channels_last)
    optimizer = create_optimizer("adam", model.parameters(), lr=0.01)
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    optimizer.step()
    saved = optimizer.state_dict()
    results = []
    for contiguous in (False, True):  # the state as this process keeps it, and as the sharded checkpoint holds it
        state = {**saved, "state": {i: {k: (v.contiguous() if contiguous else v).clone() for k, v in s.items()}
                                    for i, s in saved["state"].items()}}
        assert contiguous == all(v.is_contiguous() for s in state["state"].values() for v in s.values())
        copy = create_model("lenet").to(memory_format=torch.channels_last)
        copy.load_state_dict(model.state_dict())
        again = create_optimizer("adam", copy.parameters(), lr=0.01)
        distributed.load_full_state_dicts(copy, again, copy.state_dict(), state)
        torch.manual_seed(1)
        copy(torch.rand(4, 1, 28, 28)).sum().backward()
        again.step()
        results.append(copy.state_dict())
    for name in results[0]:
        torch.testing.assert_close(results[1][name], results[0][name], msg=name)
