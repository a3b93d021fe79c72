"""Data-parallel scaling on this machine: softmax regression (D2L §3.6) and LeNet (D2L §6.6) on
Fashion-MNIST, trained as ``divekit run`` trains them in 1 process and in N processes under
torchrun (gloo on the CPU, one thread per process), with the same global minibatch.

    flock /tmp/divekit-bench.lock env DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_distributed.py \
        [--nproc 2] [--repeats 3] [--softmax-epochs 3] [--lenet-epochs 2] [--wait-idle 600] [--out benchmarks/results/distributed.md]

Each measurement is a fresh torchrun launch (``--standalone``; also for 1 process, which then
trains without torch.distributed) of this file with ``--worker``: the registered recipe built by
``prepare_training`` (the runner's public call) and trained for the given epochs; process 0 reports
the trainer's examples/s of each epoch (global training examples over the training pass's wall
time; evaluation, start-up and data loading excluded). Repeats are interleaved (1, N, 1, N, ...).
Ratio to ideal = (examples/s under N processes) / (N x examples/s under 1 process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import loadavg, report_header, run_meta, wait_for_idle, write_atomic  # noqa: E402

MODELS = {"softmax-regression": "softmax-regression (§3.6), 784 x 10 linear", "lenet": "LeNet (§6.6)"}


def worker(args) -> int:
    """One measurement, in each process that torchrun started."""
    import torch

    torch.set_num_threads(args.threads)
    from common import train
    from divekit.train import distributed

    result = train(args.model, epochs=args.epochs, device="cpu", seed=args.seed)
    if distributed.world().main:
        history = result["history"]
        Path(args.result).write_text(json.dumps({
            "per_epoch": [r["examples_per_s"] for r in history],
            "final": {k: v for k, v in history[-1].items() if k.endswith(("_loss", "_acc"))},
            "processes": distributed.world().size,
        }))
    distributed.finish()
    return 0


def measure(model: str, nproc: int, epochs: int, threads: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", __file__,
                   "--worker", "--model", model, "--epochs", str(epochs), "--threads", str(threads), "--seed", str(seed),
                   "--result", str(result)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        out = json.loads(result.read_text())
    steady = out["per_epoch"][1:] or out["per_epoch"]  # the first epoch warms up (allocations, gloo's buffers)
    out["speed"] = statistics.median(steady)
    out["load"] = loadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel runs (default 2)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--softmax-epochs", type=int, default=3)
    p.add_argument("--lenet-epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--wait-idle", type=float, default=0, help="wait up to this many seconds for a load average below 1")
    p.add_argument("--out", type=Path, default=HERE / "results" / "distributed.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    waited = wait_for_idle(args.wait_idle)
    start, load_before = time.perf_counter(), loadavg()
    epochs = {"softmax-regression": args.softmax_epochs, "lenet": args.lenet_epochs}
    runs = {(m, n): [] for m in MODELS for n in (1, args.nproc)}
    for repeat in range(args.repeats):
        for model in MODELS:
            for n in (1, args.nproc):
                runs[model, n].append(measure(model, n, epochs[model], args.threads, repeat))
        print(f"repeat {repeat + 1}/{args.repeats} done (load {loadavg()})", file=sys.stderr)

    meta = run_meta(Path(__file__).name, argv, args.threads)
    lines = [
        *report_header(f"Data-parallel scaling: 1 vs {args.nproc} processes (gloo, CPU)", meta),
        f"- load average (1/5/15 min) before: {load_before} (after waiting {waited:.0f} s for an idle machine); "
        f"after: {loadavg()}",
        f"- total wall time: {time.perf_counter() - start:.0f} s",
        "",
        (f"Each row: a fresh `torchrun --standalone --nproc-per-node=N` launch, the registered recipe as `divekit run` "
         f"trains it (full Fashion-MNIST, 60,000 training images, the book's global batch of 256: each of N processes "
         f"takes 256/N of every minibatch), softmax regression for {args.softmax_epochs} epochs and LeNet for "
         f"{args.lenet_epochs}, {args.repeats} repeats interleaved. examples/s = the trainer's global training examples "
         "over the training pass's wall time, median over the epochs after the first and then over repeats. Ratio to "
         f"ideal = examples/s under N processes / (N x examples/s under 1)."),
        "",
        "| model | processes | examples/s | speed-up vs 1 | ratio to ideal | per repeat (examples/s) | load average after each |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for model, label in MODELS.items():
        one = statistics.median(r["speed"] for r in runs[model, 1])
        for n in (1, args.nproc):
            speed = statistics.median(r["speed"] for r in runs[model, n])
            each = ", ".join(f"{r['speed']:,.0f}" for r in runs[model, n])
            loads = "; ".join(r["load"] for r in runs[model, n])
            lines.append(f"| {label} | {n} | {speed:,.0f} | {speed / one:.2f}x | {speed / one / n:.2f} | {each} | {loads} |")
    finals = {f"{m}, {n} process{'es' if n > 1 else ''}": runs[m, n][0]["final"] for m in MODELS for n in (1, args.nproc)}
    lines += ["", "Final metrics of the first repeat (the same seed and global batch: the two columns should agree "
                  "to float rounding):", "", "```", json.dumps(finals, indent=1), "```", "",
              "Notes:", "",
              (f"- This machine has {os.cpu_count()} logical cores shared with other jobs: a load average near or above "
               f"{os.cpu_count()} means the processes waited for a core, and the N-process rows suffer most (every step "
               "waits for the slowest process's gradient all-reduce)."),
              ("- Softmax regression's step is short (about 8k multiply-adds per example, 128 examples per process) next "
               "to gloo's all-reduce of its 7,850 gradients over local TCP, which every step waits for; LeNet's step "
               "takes about 25 times longer per example (the 1-process rows). This run does not separate that cost from the machine's load."), ""]
    text = "\n".join(lines)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
