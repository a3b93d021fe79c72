"""Training throughput of the MLP on Fashion-MNIST (D2L §4.2/§4.3), divekit against d2l, in one run.

    DIVEKIT_DATA=../shared/data PYTHONPATH=src flock /tmp/divekit-bench.lock python benchmarks/bench_mlp.py \
        [--epochs 1] [--repeats 3] [--d2l-python .d2l-venv/bin/python] [--out benchmarks/results/mlp.md]

Variants, all 784-256-10 with ReLU, batch size 256, SGD lr 0.1, torch.set_num_threads(--threads):

* divekit fast / scratch: the registered ``mlp`` experiment built as the CLI builds it, trained by
  ``divekit.train.engine.Trainer`` (no run folder, no progress bar);
* d2l concise / scratch: d2l 0.17.x's ``train_epoch_ch3`` + ``evaluate_accuracy`` on
  ``d2l.load_data_fashion_mnist(256)`` with the book's §4.3 / §4.2 model (``_d2l_mlp.py``), in a
  subprocess of the d2l virtual environment.

Repeats are interleaved (divekit fast, divekit scratch, d2l concise, d2l scratch, then again), so
that changes in the machine's load hit every variant alike; each repeat trains a fresh model for
``--epochs`` epochs. The reporting helpers are ``common.py``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import fmt_ratio, loadavg, report_header, run_meta, summarize, train, write_atomic

HERE = Path(__file__).resolve().parent
D2L_DEFAULT = "d2l concise (num_workers=4, d2l default)"


def run_divekit(impl: str, epochs: int, seed: int) -> dict:
    run = train("mlp", impl=impl, epochs=epochs, seed=seed, device="cpu")
    options = run["training"].options
    assert (options.batch_size, options.lr, options.num_hiddens, options.num_layers) == (256, 0.1, 256, 1)
    return {"train_examples": run["training"].setup.data.train.num_examples * epochs,
            "train_seconds": run["train_seconds"], "wall_seconds": run["wall_seconds"],
            "test_acc": run["history"][-1]["test_acc"]}


def run_d2l(python: str, impl: str, epochs: int, seed: int, threads: int, tv_shim: str, env: dict) -> tuple[dict, dict]:
    cmd = [python, str(HERE / "_d2l_mlp.py"), "--impl", impl, "--epochs", str(epochs), "--repeats", "1",
           "--seed", str(seed), "--threads", str(threads), "--tv-shim", tv_shim]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    (run,) = out["runs"]
    return {"train_examples": run["train_examples"] * epochs,
            "train_seconds": sum(e["train_seconds"] for e in run["epochs"]),
            "wall_seconds": sum(e["train_seconds"] + e["eval_seconds"] for e in run["epochs"]),
            "test_acc": run["epochs"][-1]["test_acc"]}, out


def render(rows: dict, meta: dict, notes: list[str]) -> str:
    ref = rows.get(D2L_DEFAULT)
    lines = [
        *report_header("MLP throughput (D2L §4.2/§4.3, Fashion-MNIST, 784-256-10)", meta),
        f"- {meta['epochs']} epoch(s) x {meta['repeats']} interleaved repeats per variant, batch size 256, SGD lr 0.1; "
        "each repeat trains a fresh model; numbers are medians over repeats",
        f"- load average (1/5/15 min) at start: {meta['load_before']}; at end: {meta['load_after']}",
        f"- total benchmark wall time: {meta['total_seconds']:.0f} s",
        "",
        "*train pass* = training examples / time of the training passes; *train+eval* = training examples / time",
        "of whole epochs (training pass plus evaluation on the 10,000 test images, what `d2l.train_ch3` spends per",
        "epoch). The ratio compares *train+eval* with d2l's default (concise, 4 DataLoader workers).",
        "",
        "| variant | examples/s (train pass) | examples/s (train+eval) | ratio vs d2l concise (train+eval) | test acc after the epochs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in rows.items():
        lines.append(f"| {name} | {s['train']:,.0f} | {s['wall']:,.0f} | {fmt_ratio(s['wall'], ref['wall'] if ref else None)} | "
                     f"{s['acc']:.4f} |")
    lines += ["", "Per-repeat examples/s (train pass; train+eval):", ""]
    for name, s in rows.items():
        lines.append(f"- {name}: " + ", ".join(f"{t:,.0f}; {w:,.0f}" for t, w in zip(s["train_all"], s["wall_all"])))
    if ref and "divekit fast" in rows:
        ratio = rows["divekit fast"]["wall"] / ref["wall"]
        paired = [f / d for f, d in zip(rows["divekit fast"]["wall_all"], ref["wall_all"])]
        lines += ["", f"Target (divekit fast faster than d2l's default, train+eval): {ratio:.2f}x on the medians -> "
                      f"{'met' if ratio > 1 else 'NOT met'}; within each repeat (run back to back): "
                      + ", ".join(f"{r:.2f}x" for r in paired) + "."]
    if float(meta["load_before"].split()[0]) > meta["cores"]:
        lines += ["", f"The machine was shared with other jobs (load average above its {meta['cores']} cores), so "
                      "absolute rates swing from repeat to repeat; the ratios within a repeat are the fairer comparison."]
    lines += ["", "Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every process")
    p.add_argument("--out", type=Path, default=HERE / "results" / "mlp.md")
    p.add_argument("--d2l-python", default=".d2l-venv/bin/python", help="python of a venv with d2l 0.17.x")
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py", help="torchvision stand-in for d2l")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load_before = loadavg()
    from divekit.data.fashion_mnist import load_fashion_mnist

    load_fashion_mnist()  # parse the IDX files once, outside every timing
    with_d2l = Path(args.d2l_python).exists()
    env = dict(os.environ)
    env.setdefault("FMNIST_DIR", str(Path(os.environ.get("DIVEKIT_DATA", "../shared/data")) / "fashion-mnist"))
    env.pop("PYTHONPATH", None)  # d2l's process needs no divekit

    runs: dict[str, list[dict]] = {"divekit fast": [], "divekit scratch": []}
    if with_d2l:
        runs.update({D2L_DEFAULT: [], "d2l scratch (num_workers=4, d2l default)": []})
    d2l_info = None
    for repeat in range(args.repeats):
        for impl in ("fast", "scratch"):
            runs[f"divekit {impl}"].append(run_divekit(impl, args.epochs, seed=repeat))
        if with_d2l:
            for impl, name in (("concise", D2L_DEFAULT), ("scratch", "d2l scratch (num_workers=4, d2l default)")):
                result, d2l_info = run_d2l(args.d2l_python, impl, args.epochs, repeat, args.threads, args.tv_shim, env)
                runs[name].append(result)
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

    notes = [
        "divekit: `prepare_training('mlp', impl=..., epochs=E, device='cpu').fit()`; fast = a Sequential of Flatten, "
        "Linear, ReLU, Linear + F.cross_entropy + torch.optim.SGD; scratch = the same model on divekit's scratch layers "
        "(X W^T + b, ReLU and cross-entropy from tensor operations) + "
        "divekit's scratch SGD. Data: uint8 tensors in memory (TensorLoader), no worker processes.",
        "No warm-up epoch: the first repeat of every variant includes its one-time start-up costs alike.",
    ]
    if with_d2l:
        notes.append(f"d2l: package d2l {d2l_info['d2l_version']} (PyPI) in its own venv (`--d2l-python`), torch {d2l_info['torch']}, "
                     "run as a subprocess by `benchmarks/_d2l_mlp.py` (the body of `d2l.train_ch3` without its Animator). "
                     f"torchvision has no CPU build here, so `{args.tv_shim}` stands in for FashionMNIST/ToTensor (PIL "
                     "image per sample, then ToTensor, as torchvision does); the 4 DataLoader worker processes compete "
                     "with training for the cores.")
    else:
        notes.append(f"d2l: skipped ({args.d2l_python} not found).")
    meta = {
        **run_meta(Path(__file__).name, argv, torch.get_num_threads()), "epochs": args.epochs, "repeats": args.repeats,
        "load_before": load_before, "load_after": loadavg(), "total_seconds": time.perf_counter() - t_start,
    }
    text = render({name: summarize(r) for name, r in runs.items()}, meta, notes)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
