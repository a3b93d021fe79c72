"""Faults lose nothing: exclusive run folders, finite checkpoints, fingerprinted and mid-epoch
resume, one trainer per run folder, and bad input refused with a message that says what to do.
Processes are real where the fault is (races, kill -9); the full disk is injected."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from divekit import io
from divekit.cli import main
from divekit.data import hub
from divekit.experiments.runner import LOCK_NAME, resume_run

ROOT = Path(__file__).resolve().parents[1]


def divekit(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "divekit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir())


def image_folder(root: Path, per_class: int = 12, size: int = 8) -> Path:
    g = torch.Generator().manual_seed(0)
    for cls, brightness in (("dark", 60), ("light", 190)):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = (brightness + torch.randint(-50, 50, (size, size), generator=g)).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy(), mode="L").save(root / cls / f"{i}.png")
    return root


# -- run folders -----------------------------------------------------------------------------------

def test_run_folders_are_made_exclusively_even_in_the_same_second(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import new_run_dir

    experiment = get_experiment("linear-regression")
    options = experiment.make_options()
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_run_dir(tmp_path, experiment, options), range(32)))
    assert len(set(folders)) == 32 and all(f.is_dir() for f in folders)
    # the report orders runs by the stamp and counter it reads back from these names
    from divekit.run_folder import start_stamp

    started = [start_stamp(f.name) for f in folders]
    for stamp in {stamp for stamp, _ in started}:  # within each second, counters 1, 2, ... (1 for none)
        counters = sorted(counter for s, counter in started if s == stamp)
        assert counters == list(range(1, len(counters) + 1))
    assert start_stamp("linear-regression-fast") is None


@pytest.mark.slow
def test_runs_started_together_get_a_folder_each(tmp_path):
    seeds = range(6)
    processes = [divekit("run", "linear-regression", "--epochs", "1", "--seed", str(seed), "--out", str(tmp_path),
                         "--no-progress") for seed in seeds]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    runs = run_dirs(tmp_path)
    assert len(runs) == len(seeds)
    for run in runs:  # each folder holds one run: its config and its summary agree
        config = json.loads((run / "config.json").read_text())["config"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["config"]["seed"] == config["seed"]
    assert sorted(json.loads((r / "config.json").read_text())["config"]["seed"] for r in runs) == list(seeds)


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path, capsys):
    assert main(["run", "softmax-regression", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "runs")]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not run_dirs(tmp_path / "runs")


def test_files_are_written_with_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "a.txt", "x")
        io.save({"w": torch.zeros(1)}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o644


# -- checkpoints -----------------------------------------------------------------------------------

def test_no_checkpoint_holds_non_finite_parameters(tmp_path, capsys):
    assert main(["run", "linear-regression", "--lr", "1e38", "--epochs", "3", "--batch-size", "1000",
                 "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "became" in err and "training stopped" in err
    for checkpoint in tmp_path.rglob("checkpoint.pt"):
        assert all(torch.isfinite(t).all() for t in io.load(checkpoint)["model"].values())


def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    io.save({"w": torch.ones(2)}, tmp_path / "checkpoint.pt")

    def full_disk(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1856 vs 1750")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(io.DiskFullError, match="the disk is full: .*checkpoint.pt could not be written and the "
                                               "previous checkpoint.pt was kept"):
        io.save({"w": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    monkeypatch.undo()
    assert torch.equal(io.load(tmp_path / "checkpoint.pt")["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", no_space)
    with pytest.raises(io.DiskFullError, match="a.txt could not be written and no a.txt was written"):
        io.write_text(tmp_path / "a.txt", "x")


KILL_SCRIPT = """
import os, signal, sys
from divekit.experiments import runner
from divekit.train.callbacks import Callback

class Kill(Callback):
    def on_step_end(self, trainer, epoch, step):
        if (epoch, step) == ({epoch}, {step}):
            os.kill(os.getpid(), signal.SIGKILL)  # just after the checkpoint of this step

build = runner.build_trainer
runner.build_trainer = lambda *a, callbacks=(), **k: build(*a, callbacks=[*callbacks, Kill()], **k)
from divekit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("kill_at", [(2, 3), (1, 6)])
def test_a_run_killed_mid_epoch_resumes_there_to_the_same_result(tmp_path, kill_at):
    data = image_folder(tmp_path / "images")
    options = ["run", "mlp", "--data", str(data), "--epochs", "3", "--batch-size", "3", "--dropout1", "0.3",
               "--num-hiddens", "16", "--checkpoint-every", "0", "--no-progress"]
    assert main([*options, "--out", str(tmp_path / "whole")]) == 0
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT).format(epoch=kill_at[0], step=kill_at[1]))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    killed = subprocess.run([sys.executable, str(script), *options, "--out", str(tmp_path / "killed")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    (run,) = run_dirs(tmp_path / "killed")
    checkpoint = io.load(run / "checkpoint.pt")
    assert (checkpoint["epoch"], checkpoint["step"]) == (kill_at[0] - 1, kill_at[1])
    assert main(["resume", str(run), "--no-progress"]) == 0
    (whole,) = run_dirs(tmp_path / "whole")
    resumed, uninterrupted = (json.loads((r / "summary.json").read_text())["final"] for r in (run, whole))
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert resumed[key] == uninterrupted[key], key
    for (name, a), b in zip(io.load(run / "checkpoint.pt")["model"].items(), io.load(whole / "checkpoint.pt")["model"].values()):
        assert torch.equal(a, b), name
    # the resumed epoch's throughput counts the examples trained after the resume, in the seconds it took them
    (resumed_row,), (whole_row,) = ([r for r in csv.DictReader((d / "metrics.csv").open()) if r["epoch"] == str(kill_at[0])]
                                    for d in (run, whole))
    trained = {name: float(row["examples_per_s"]) * float(row["seconds"]) for name, row in
               (("resumed", resumed_row), ("whole", whole_row))}
    assert trained["resumed"] == pytest.approx(trained["whole"] - 3 * kill_at[1], rel=1e-3)


def test_sigterm_stops_a_run_as_ctrl_c_does_and_it_resumes(tmp_path):
    script = tmp_path / "term.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT).format(epoch=2, step=3).replace("signal.SIGKILL", "signal.SIGTERM"))
    data = image_folder(tmp_path / "images")
    options = ["run", "mlp", "--data", str(data), "--epochs", "3", "--batch-size", "3", "--checkpoint-every", "0",
               "--no-progress", "--out", str(tmp_path / "runs")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    stopped = subprocess.run([sys.executable, str(script), *options], env=env, capture_output=True, text=True,
                             timeout=300)
    (run,) = run_dirs(tmp_path / "runs")
    assert stopped.returncode == 130, stopped.stderr
    assert f"interrupted; `divekit resume {run}` continues from its last checkpoint" in stopped.stderr
    assert main(["resume", str(run), "--no-progress"]) == 0


def test_a_run_stopped_after_its_last_checkpoint_is_finished_by_resume(tmp_path, capsys):
    assert main(["run", "linear-regression", "--epochs", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    rows = (run / "metrics.csv").read_text().splitlines()
    (run / "summary.json").unlink()  # stopped while its probes ran, and before metrics.csv took the last row
    (run / "metrics.csv").write_text("\n".join(rows[:-1]) + "\n")
    assert main(["resume", str(run), "--no-progress"]) == 0
    assert (run / "metrics.csv").read_text().splitlines() == rows
    assert json.loads((run / "summary.json").read_text())["final"] == summary["final"]
    assert main(["resume", str(run), "--no-progress"]) == 1
    assert "has finished its 2 epochs; pass --epochs N (more than 2)" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, capsys):
    for impl in ("scratch", "fast"):
        assert main(["run", "linear-regression", "--impl", impl, "--epochs", "1", "--out", str(tmp_path / impl),
                     "--no-progress"]) == 0
    (scratch_run,), (fast_run,) = run_dirs(tmp_path / "scratch"), run_dirs(tmp_path / "fast")
    shutil.copy(scratch_run / "checkpoint.pt", fast_run / "checkpoint.pt")
    assert main(["resume", str(fast_run), "--epochs", "2", "--no-progress"]) == 1
    assert "config.impl: 'scratch' in the checkpoint, 'fast' here" in capsys.readouterr().err
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(30)))
    assert main(["run", "linear-regression", "--impl", "scratch", "--data", str(table), "--target", "y", "--epochs", "1",
                 "--out", str(tmp_path / "csv"), "--no-progress"]) == 0
    (csv_run,) = run_dirs(tmp_path / "csv")
    shutil.copy(scratch_run / "checkpoint.pt", csv_run / "checkpoint.pt")
    assert main(["resume", str(csv_run), "--epochs", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "belongs to another run" in err and "data:" in err and "config.data:" in err
    assert len((csv_run / "metrics.csv").read_text().splitlines()) == 2  # nothing mixed into the CSV run


def test_one_process_at_a_time_trains_a_run_folder(tmp_path):
    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT / 'src')!r})
        from pathlib import Path
        from divekit.experiments.runner import run_lock
        with run_lock(Path({str(run)!r})):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=f"is being trained by process {holder.pid}; wait for it"):
            resume_run(run, {"epochs": 2}, progress=False)
    finally:
        holder.kill()
        holder.wait()
    (run / ".checkpoint.pt.abc.tmp").write_text("left by a killed process")
    resume_run(run, {"epochs": 2}, progress=False)  # the lock is free again once its holder is gone
    assert not list(run.glob(".*.tmp")) and (run / LOCK_NAME).exists()


# -- input that is refused -------------------------------------------------------------------------

@pytest.mark.parametrize("name, argv, message", [
    ("linear-regression", ["--lr", "nan"], "--lr must be a finite number, got nan"),
    ("linear-regression", ["--lr", "inf"], "--lr must be a finite number, got inf"),
    ("linear-regression", ["--clip-grad", "nan"], "--clip-grad must be a finite number"),
    ("linear-regression", ["--noise", "-1"], "--noise must be at least 0, got -1.0"),
    ("linear-regression", ["--seed", str(2**64)], "--seed must be an integer that fits 64 bits"),
    ("linear-regression", ["--num-examples", str(10**20)], "--num-examples must be an integer that fits 64 bits"),
    ("perceptron-xor", ["--seed", str(10**20)], "--seed must be an integer that fits 64 bits"),  # a demo's too
    ("mlp-xor", ["--device", "cuda:x"], "--device must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
    ("ssd", ["--ratios", "1,nan"], "--ratios must hold finite numbers"),  # the run could not resume: NaN is null
    ("densenet", ["--num-convs", "4,4,,4"], "with none left empty, got '4,4,,4'"),  # a dense block would go
    ("fcn", ["--crop-height", "40"], "--crop-height must be a multiple of 32, got 40"),  # refused before the run
])
def test_bad_numbers_are_one_line_errors(name, argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", name, "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "Overflow" not in err


@pytest.mark.parametrize("content, message", [
    ("[1]", "is not a divekit run config: it needs an \"experiment\" name and a \"config\" object"),
    ('{"experiment": "linear-regression", "config": [1, 2]}', "is not a divekit run config"),
    ('{"config": {}}', "is not a divekit run config"),
    ('{"experiment": "linear-regr', "is not valid JSON"),
    (b"\xff\xfe\x00garbage", "is not valid JSON"),
    ('{"experiment": "linear-regression", "config": {"lr": "fast"}}', "--lr must be float"),
])
def test_a_malformed_config_json_is_named_and_explained(content, message, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "config.json" in err or "--lr" in err


def test_the_report_skips_a_damaged_summary_with_a_warning(tmp_path, capsys):
    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    for name, text in (("empty", "{}"), ("list", "[1, 2]"), ("cut", '{"experiment": ')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(text)
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipped") == 3 and "| linear-regression |" in captured.out


@pytest.mark.parametrize("cell, message", [
    ("inf", "has 'inf' in column 'a', an infinite number"),
    ("1e308", "has '1e308' in column 'a', too large for a feature"),
])
def test_csv_numbers_that_would_be_silently_wrong_are_refused(cell, message, tmp_path):
    from divekit.data.user import UserDataError, load_user_data

    table = tmp_path / "t.csv"
    table.write_text("a,y\n1,2\n" + f"{cell},3\n" + "2,4\n")
    with pytest.raises(UserDataError, match=f"line 3 of .*t.csv {message}"):
        load_user_data(table, kind="regression", target="y")
    table.write_text("a,y\n1,2\n2,1e39\n3,4\n")
    with pytest.raises(UserDataError, match="line 3 of .* has '1e39' in column 'y', too large for the target"):
        load_user_data(table, kind="regression", target="y")


def test_a_truncated_archive_and_an_absolute_tar_member_are_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("root/a.txt", "x" * 10000)
    archive.write_bytes(archive.read_bytes()[:60])
    with pytest.raises(ValueError, match="a.zip is truncated or corrupt .*delete it and download it again"):
        hub.extract_archive(archive, tmp_path / "out", "zip", root="root")
    tar_path = tmp_path / "a.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo("/etc/evil.txt")
        info.size = 1
        tar.addfile(info, __import__("io").BytesIO(b"x"))
    with pytest.raises(hub.UnsafeArchiveError, match="'/etc/evil.txt' has an absolute path; nothing was extracted"):
        hub.extract_archive(tar_path, tmp_path / "out2", "tar.gz")
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


def test_data_given_as_a_relative_path_resumes_from_anywhere(tmp_path, monkeypatch):
    image_folder(tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "softmax-regression", "--data", "images", "--epochs", "1", "--batch-size", "4",
                 "--out", "runs", "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path / "runs")
    assert json.loads((run / "config.json").read_text())["config"]["data"] == str(tmp_path / "images")
    monkeypatch.chdir(tmp_path / "runs")
    assert main(["resume", str(run), "--epochs", "2", "--no-progress"]) == 0


def test_a_runs_data_that_moved_or_changed_is_named_on_resume(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(30)))
    assert main(["run", "linear-regression", "--data", str(table), "--target", "y", "--epochs", "1",
                 "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path / "runs")
    table.rename(tmp_path / "moved.csv")
    assert main(["resume", str(run), "--epochs", "2", "--no-progress"]) == 1
    assert (f"the run's data {table} (its --data, in {run / 'config.json'}) is gone; put it back there to resume "
            "the run (a resume cannot change --data)") in capsys.readouterr().err
    (tmp_path / "moved.csv").rename(table)
    with table.open("a") as f:
        f.write("30,0,60\n")  # a row more: the same run, other data
    assert main(["resume", str(run), "--epochs", "2", "--no-progress"]) == 1
    assert (f"was trained on other data than is loaded now: its --data {table} changed since the run started; "
            "put the run's data back as it was") in capsys.readouterr().err
    # a run on the book's data: no --data to name
    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path / "book"), "--no-progress"]) == 0
    (book_run,) = run_dirs(tmp_path / "book")
    checkpoint = io.load(book_run / "checkpoint.pt")
    io.save({**checkpoint, "run": {**checkpoint["run"], "data": "0" * 40}}, book_run / "checkpoint.pt")
    assert main(["resume", str(book_run), "--epochs", "2", "--no-progress"]) == 1
    assert ("was trained on other data than is loaded now: the data set was read otherwise (another divekit, or "
            "files downloaded again) since the run started") in capsys.readouterr().err


def test_tuple_options_take_their_elements_as_scalars_do_and_a_bad_saved_value_names_its_file():
    from divekit.experiments.registry import get_experiment
    from divekit.options import from_dict

    ssd, resnet = get_experiment("ssd"), get_experiment("resnet")
    assert ssd.make_options(ratios=(1, 2)).ratios == (1.0, 2.0)  # as lr=1 is taken for 1.0
    with pytest.raises(ValueError, match="--num-residuals must hold ints"):
        resnet.make_options(num_residuals=(True, True, True, True))
    with pytest.raises(ValueError, match=r"runs/x/config.json: --lr must be positive, got -1.0"):
        from_dict(resnet.options, {**resnet.defaults, "lr": -1.0}, "runs/x/config.json")
    with pytest.raises(ValueError, match=r"runs/x/config.json: --lr must be a finite number"):
        from_dict(resnet.options, {**resnet.defaults, "lr": 10**400}, "runs/x/config.json")  # past float's range
    with pytest.raises(ValueError, match="--ratios must hold finite numbers"):
        ssd.make_options(ratios=(1, 10**400))
    with pytest.raises(ValueError, match="--num-residuals must hold integers that fit 64 bits"):
        resnet.make_options(num_residuals=(2, 2, 2, 10**20))


def test_removing_a_run_folder_already_gone_is_no_error(tmp_path):
    """Under --nproc, process 0 may remove an unstarted run's folder before its launcher looks."""
    from divekit.experiments.runner import remove_if_unstarted

    remove_if_unstarted(tmp_path / "gone")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "checkpoint.pt").write_bytes(b"x")
    remove_if_unstarted(tmp_path / "kept")
    assert (tmp_path / "kept" / "checkpoint.pt").exists()
