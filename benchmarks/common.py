"""What every benchmark script shares: the facts a report opens with (machine, command, load),
waiting for an idle machine, ratios, atomic writes, and training a registered recipe as
``divekit run`` does (``train``), through the public runner call
:func:`divekit.experiments.runner.prepare_training`."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch


def train(name: str, **options) -> dict:
    """Train the registered recipe ``name`` with ``options`` (no run folder, no progress bar) and
    return its history, the model and the training loader: timings come from the trainer's own
    per-epoch ``seconds``, which cover the training pass only."""
    from divekit.experiments.runner import prepare_training

    training = prepare_training(name, **options)
    start = time.perf_counter()
    history = training.fit()
    return {"history": history, "wall_seconds": time.perf_counter() - start, "training": training,
            "train_seconds": sum(r["seconds"] for r in history)}


def summarize(runs: list[dict]) -> dict:
    train = [r["train_examples"] / r["train_seconds"] for r in runs]
    wall = [r["train_examples"] / r["wall_seconds"] for r in runs]
    accs = [r["test_acc"] for r in runs]
    return {"train": statistics.median(train), "wall": statistics.median(wall),
            "train_all": train, "wall_all": wall, "acc": statistics.median(accs), "acc_all": accs}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run_meta(script: str, argv: list[str] | None, threads: int, device: str | torch.device = "cpu") -> dict:
    """The facts every benchmark report opens with, for ``report_header``.

    ``script`` is the file name under ``benchmarks/`` (``"bench_mlp.py"``), ``argv`` the arguments the
    script's ``main`` was given (``None``: ``sys.argv[1:]``), ``threads`` the ``torch.set_num_threads``
    value of the run, ``device`` where it trained ("cpu", "cuda", "cuda:1" or a ``torch.device``; a GPU is
    recorded by its name). The command that reproduces the run names no absolute path of this machine:
    DIVEKIT_DATA is the environment's value when that is a relative path, else ``../shared/data``;
    the arguments are kept as given (shell-quoted).
    """
    data = os.environ.get("DIVEKIT_DATA", "")
    if not data or os.path.isabs(data):
        data = "../shared/data"
    args = sys.argv[1:] if argv is None else argv
    path = f"benchmarks/{script}"
    return {
        "script": path,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([f"DIVEKIT_DATA={shlex.quote(data)}", "PYTHONPATH=src", "python", path,
                             *(shlex.quote(a) for a in args)]),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "device": torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu",
    }


def report_header(title: str, meta: dict) -> list[str]:
    """The opening lines of a benchmark report: title, the command that produced it (from ``run_meta``),
    the machine and the python/torch versions. Each script appends its own lines after these."""
    return [
        f"# {title}",
        "",
        f"Produced by `{meta['script']}` on {meta['date']} with:",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"- machine: {meta['cpu']}, {meta['cores']} logical cores; "
        + ("no GPU; device cpu" if meta["device"] == "cpu" else f"device {meta['device']}"),
        f"- python {meta['python']}, torch {meta['torch']}, `torch.set_num_threads({meta['threads']})` in every process",
    ]


def wait_for_idle(limit: float, threshold: float = 1.0) -> float:
    start = time.perf_counter()
    while limit > 0 and time.perf_counter() - start < limit:
        try:
            if float(Path("/proc/loadavg").read_text().split()[0]) < threshold:
                break
        except (OSError, ValueError):
            break
        time.sleep(10)
    return time.perf_counter() - start


def fmt_ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}x" if b else "—"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


