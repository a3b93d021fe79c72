"""Training throughput of the recurrent models (D2L §8.5, §9.1, §9.7) against d2l's own code, in one run.

    DIVEKIT_DATA=../shared/data PYTHONPATH=src flock /tmp/divekit-bench.lock python benchmarks/bench_rnn.py \
        [--epochs 5] [--repeats 3] [--threads 1] [--d2l-python .d2l-venv/bin/python] [--out benchmarks/results/rnn.md]

Variants, each with the book's hyperparameters (Time Machine: first 10,000 characters, batch 32,
35 steps, sequential partitioning, SGD lr 1, clip 1; seq2seq: 600 pairs, batch 64, 10 steps, Adam
lr 0.005, clip 1):

* ``rnn-scratch``: divekit's registered ``rnn-scratch`` (hidden 512, scratch RNN, scratch SGD,
  scratch clipping) trained as the CLI trains it (``prepare_training``), against
  ``d2l.RNNModelScratch`` with the book's §8.5 functions and ``d2l.train_epoch_ch8``.
* ``gru``: divekit's ``gru`` (``nn.GRU``, hidden 256) against ``d2l.RNNModel(nn.GRU)`` with
  ``d2l.train_epoch_ch8``.
* ``seq2seq``: divekit's ``seq2seq`` against ``d2l.train_seq2seq``'s loop (see ``_d2l_rnn.py``).

Repeats interleave divekit and d2l so that load from other processes hits both alike. Each repeat
trains a fresh model for ``--epochs`` epochs. Tokens/s = tokens trained on / seconds of the
training passes (d2l: its own ``Timer`` per epoch; divekit: the trainer's per-epoch timing); the
table gives medians over repeats of the per-repeat total. Quality: perplexity (LMs) or d2l's
printed loss (per token / num_steps, seq2seq) after the last epoch, median over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import loadavg, report_header, run_meta, train, write_atomic

VARIANTS = ("rnn-scratch", "gru", "seq2seq")
QUALITY = {"rnn-scratch": "train_perplexity", "gru": "train_perplexity", "seq2seq": "train_loss_d2l"}


def run_divekit(variant: str, epochs: int, seed: int) -> dict:
    history = train(variant, epochs=epochs, device="cpu", seed=seed)["history"]
    seconds = sum(r["seconds"] for r in history)
    tokens = sum(r["tokens_per_s"] * r["seconds"] for r in history)
    return {"tokens_per_s": tokens / seconds, "quality": history[-1][QUALITY[variant]]}


def run_d2l(python: str, variant: str, epochs: int, seed: int, threads: int) -> dict:
    cmd = [python, str(HERE / "_d2l_rnn.py"), "--variant", variant, "--epochs", str(epochs), "--seed", str(seed),
           "--threads", str(threads), "--data", os.environ.get("DIVEKIT_DATA", "../shared/data")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    runs = json.loads(proc.stdout.strip().splitlines()[-1])["epochs"]
    seconds = sum(e["seconds"] for e in runs)
    tokens = sum(e["tokens_per_s_d2l"] * e["seconds"] for e in runs)  # d2l's own tokens/s times its epoch time
    quality = runs[-1]["perplexity" if variant != "seq2seq" else "loss_d2l"]
    return {"tokens_per_s": tokens / seconds, "quality": quality}


def render(rows: dict, meta: dict) -> str:
    lines = [
        *report_header("Recurrent models: training throughput against d2l (D2L §8.5, §9.1, §9.7)", meta),
        "- d2l 0.17.6 (classic)",
        f"- {meta['epochs']} epochs x {meta['repeats']} repeats per variant, interleaved; medians over repeats",
        (f"- load average (1/5/15 min) before: {meta['load_before']}; after: {meta['load_after']} "
         "(other engineers' jobs share this machine)"),
        f"- total benchmark wall time: {meta['total_seconds']:.0f} s",
        "",
        "*speed-up* = median tokens/s ratio; *paired* = median over repeats of divekit / d2l within the same",
        "repeat (the two ran back to back, so this one is less exposed to changes in the machine's load).",
        "",
        "| variant | divekit tokens/s | d2l tokens/s | speed-up | paired speed-up | divekit quality | d2l quality | quality measure |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for variant, r in rows.items():
        ours, theirs = r["divekit"], r["d2l"]
        paired = statistics.median(a / b for a, b in zip(r["divekit_all"], r["d2l_all"]))
        lines.append(f"| {variant} | {ours['tokens_per_s']:,.0f} | {theirs['tokens_per_s']:,.0f} | "
                     f"{ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x | {paired:.2f}x | {ours['quality']:.4g} | {theirs['quality']:.4g} | "
                     f"{'perplexity' if variant != 'seq2seq' else 'loss per token / num_steps (d2l print)'} after {meta['epochs']} epochs |")
    lines += ["", "Per repeat, tokens/s (quality): divekit; d2l", ""]
    for variant, r in rows.items():
        pairs = ", ".join(f"{a:,.0f} ({qa:.4g}); {b:,.0f} ({qb:.4g})" for a, qa, b, qb in
                          zip(r["divekit_all"], r["divekit_quality"], r["d2l_all"], r["d2l_quality"]))
        lines.append(f"- {variant}: {pairs}")
    lines += ["", "Notes:", "",
              ("- Same data files, same hyperparameters, same batches per epoch (the book's first 10,000 characters "
               "and 600 sentence pairs)."),
              ("- gru: both sides run torch's nn.GRU kernel, so the difference is only the code around it "
               "(data, loss, clipping, metrics); parity is the expected result."),
              ("- Initialisation differs by design: divekit's scratch RNN uses torch's U(-1/sqrt(H), 1/sqrt(H)) so that "
               "it is a twin of nn.RNN; d2l's scratch RNN uses N(0, 0.01^2). After a few epochs the perplexities are "
               "therefore not identical; the quality columns show where each stands."),
              ("- seq2seq: both minimise the book's objective (token losses summed over the batch / num_steps) and "
               "both columns show d2l's printed measure (loss per token / num_steps)."),
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in every process")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--d2l-python", default=".d2l-venv/bin/python")
    p.add_argument("--out", type=Path, default=HERE / "results" / "rnn.md")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), loadavg()
    rows = {v: {"divekit_runs": [], "d2l_runs": []} for v in args.variants}
    for repeat in range(args.repeats):
        for variant in args.variants:
            rows[variant]["divekit_runs"].append(run_divekit(variant, args.epochs, seed=repeat))
            rows[variant]["d2l_runs"].append(run_d2l(args.d2l_python, variant, args.epochs, repeat, args.threads))
            print(f"repeat {repeat + 1}/{args.repeats} {variant}: divekit {rows[variant]['divekit_runs'][-1]}, "
                  f"d2l {rows[variant]['d2l_runs'][-1]}", flush=True)
    summary = {}
    for variant, r in rows.items():
        summary[variant] = {"divekit_all": [x["tokens_per_s"] for x in r["divekit_runs"]],
                            "d2l_all": [x["tokens_per_s"] for x in r["d2l_runs"]],
                            "divekit_quality": [x["quality"] for x in r["divekit_runs"]],
                            "d2l_quality": [x["quality"] for x in r["d2l_runs"]]}
        for side in ("divekit", "d2l"):
            runs = r[f"{side}_runs"]
            summary[variant][side] = {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in runs),
                                      "quality": statistics.median(x["quality"] for x in runs)}
    meta = {
        **run_meta(Path(__file__).name, argv, args.threads), "epochs": args.epochs, "repeats": args.repeats,
        "load_before": load_before, "load_after": loadavg(), "total_seconds": time.perf_counter() - start,
    }
    text = render(summary, meta)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
