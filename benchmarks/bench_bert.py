"""BERT pretraining throughput (D2L §14.9-14.10) against d2l's own code, and the fast twin's speed options.

    DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_bert.py \
        [--steps 50] [--repeats 2] [--d2l-python .d2l-venv/bin/python] [--wait-idle 900] \
        [--variant-steps 8] [--device cpu] [--peak-tflops X] [--out benchmarks/results/bert.md]

1. The book's run: ``d2l.load_data_wiki(512, 64)`` and the book's ``train_bert`` for 50 steps on
   ``d2l.BERTModel`` (see ``_d2l_bert.py``) against ``divekit run bert-pretrain`` (the same data,
   sizes, Adam lr 0.01, 50 steps, fast twin, fp32), each as a fresh process-level run, repeats
   interleaved. Sentence pairs per second of the training steps alone (d2l: its own ``Timer`` around
   each step, as the book prints it; divekit: the trainer's epoch time), and with the data
   preparation included (pairs / (data preparation + training)). Quality: the book's printed MLM and
   NSP losses (means over the steps; divekit's ``mlm_loss_d2l`` is the same formula, padding slots
   included, see ``divekit.train.bert``).
2. The fast twin's options on the same recipe: fp32 eager, bf16 autocast, ``torch.compile``, both,
   and the scratch twin; each trains one warm-up epoch of ``--variant-steps`` steps (compilation
   happens there), then one measured epoch of as many steps. Model FLOPs are counted from the
   matrix products of the forward pass (x3 for forward and backward); with ``--peak-tflops`` the
   report gives the model FLOP utilisation.
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
from bench_softmax import loadavg, report_header, run_meta, wait_for_idle, write_atomic

VARIANTS = {
    "fast, fp32, eager": dict(impl="fast"),
    "fast, bf16 autocast": dict(impl="fast", precision="bf16"),
    "fast, torch.compile": dict(impl="fast", compile=True),
    "fast, torch.compile + bf16": dict(impl="fast", compile=True, precision="bf16"),
    "scratch, fp32": dict(impl="scratch"),
}


def model_flops(cfg, batch) -> float:
    """Forward + backward FLOPs of the matrix products of one divekit step (3x the forward's): the
    projections and FFNs on the real tokens (divekit packs them), QK^T and AV on the padded T x T."""
    (B, T), d, f, V = batch.tokens.shape, cfg.num_hiddens, cfg.ffn_num_hiddens, cfg.vocab_size
    tokens = int(batch.valid_lens.sum())
    layers = cfg.num_layers * (tokens * 2 * (4 * d * d + 2 * d * f) + B * T * 2 * 2 * T * d)
    rows = int((batch.mlm_weights > 0).sum()) + B  # real predictions + the book's padding row per sequence
    forward = layers + rows * 2 * (d * d + d * V) + B * 2 * (d * d + 2 * d)
    return 3.0 * forward


def run_divekit(steps: int, seed: int, device: str, epochs: int = 1, **options) -> dict:
    from divekit.experiments.runner import prepare_training

    t0 = time.perf_counter()
    training = prepare_training("bert-pretrain", steps=steps, epochs=epochs, device=device, seed=seed, **options)
    data_seconds = time.perf_counter() - t0  # WikiText-2 read, pairs, masks, vocabulary, model
    history = training.fit()
    last = history[-1]
    batch = next(iter(training.setup.data.train))
    return {"data_seconds": data_seconds, "train_seconds": last["seconds"],
            "pairs": last["pairs_per_s"] * last["seconds"],
            "mlm_loss_d2l": last["train_mlm_loss_d2l"], "mlm_loss": last["train_mlm_loss"],
            "nsp_loss": last["train_nsp_loss"], "flops_per_step": model_flops(training.setup.model.config, batch),
            "steps": steps}


def run_d2l(python: str, steps: int, seed: int, threads: int, device: str) -> dict:
    cmd = [python, str(HERE / "_d2l_bert.py"), "--steps", str(steps), "--seed", str(seed), "--threads", str(threads),
           "--device", device, "--data", os.environ.get("DIVEKIT_DATA", "../shared/data")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rates(run: dict) -> tuple[float, float]:
    """(pairs/s of the training steps, pairs/s with the data preparation included)."""
    return run["pairs"] / run["train_seconds"], run["pairs"] / (run["train_seconds"] + run["data_seconds"])


def render(book: dict, variants: dict, meta: dict) -> str:
    lines = [*report_header("BERT pretraining: throughput against d2l (D2L §14.9-14.10)", meta),
             "- d2l 0.17.6 (classic), its BERTModel, load_data_wiki and the book's train_bert (see _d2l_bert.py)",
             f"- load average (1/5/15 min) before: {meta['load_before']}; after: {meta['load_after']}",
             f"- total benchmark wall time: {meta['total_seconds']:.0f} s", ""]
    if book:
        ours, theirs = book["divekit"], book["d2l"]
        lines += [f"## The book's run: batch 512, max length 64, Adam lr 0.01, {meta['steps']} steps "
                  f"({meta['repeats']} repeats, interleaved; medians)", "",
                  "| | divekit (fast, fp32) | d2l | divekit / d2l |", "|---|---:|---:|---:|"]
        for label, key in (("pairs/s, training steps", 0), ("pairs/s, data preparation included", 1)):
            a = statistics.median(rates(r)[key] for r in ours)
            b = statistics.median(rates(r)[key] for r in theirs)
            lines.append(f"| {label} | {a:,.1f} | {b:,.1f} | {a / b:.2f}x |")
        for label, key in (("data preparation, s", "data_seconds"), ("training steps, s", "train_seconds"),
                           ("MLM loss (book's formula), mean over steps", "mlm_loss_d2l"),
                           ("NSP loss, mean over steps", "nsp_loss")):
            a, b = statistics.median(r[key] for r in ours), statistics.median(r[key] for r in theirs)
            lines.append(f"| {label} | {a:.4g} | {b:.4g} | |")
        lines += ["", "Per repeat (training pairs/s, data s, MLM, NSP): divekit; d2l", ""]
        for i, (a, b) in enumerate(zip(ours, theirs), 1):
            lines.append(f"- {i}: {rates(a)[0]:,.1f}, {a['data_seconds']:.1f} s, {a['mlm_loss_d2l']:.3f}, "
                         f"{a['nsp_loss']:.3f}; {rates(b)[0]:,.1f}, {b['data_seconds']:.1f} s, "
                         f"{b['mlm_loss_d2l']:.3f}, {b['nsp_loss']:.3f}")
        lines.append("")
    if variants:
        base = variants["fast, fp32, eager"]
        peak = meta.get("peak_tflops")
        lines += [f"## The fast twin's options ({meta['variant_steps']} measured steps after as many warm-up "
                  "steps)", "",
                  "| variant | pairs/s | vs fast fp32 eager | model GFLOP/s" + (" | MFU" if peak else "") + " |",
                  "|---|---:|---:|---:|" + ("---:|" if peak else "")]
        for name, run in variants.items():
            per_s = rates(run)[0]
            gflops = run["flops_per_step"] * run["steps"] / run["train_seconds"] / 1e9
            mfu = f" | {gflops / (peak * 1e3):.1%}" if peak else ""
            lines.append(f"| {name} | {per_s:,.1f} | {per_s / rates(base)[0]:.2f}x | {gflops:,.1f}{mfu} |")
        lines.append("")
    lines += ["Notes:", "",
              "- Both sides build their data from the same wiki.train.tokens; divekit with tensor operations over the "
              "whole corpus, d2l one example at a time in Python. divekit's data preparation also builds the model.",
              "- divekit's encoder blocks run on the real tokens only (`ops.TokenPacking`; the book's batches are about "
              "28% padding), and its training keeps freed memory for the next step (`DIVEKIT_CPU_ALLOCATOR`, see the "
              "README); d2l computes every padded position and runs with the system allocator.",
              "- divekit computes the masked language model's output only at the real prediction positions (plus one "
              "row per sequence for the book's padding slots); d2l computes all 512 x 10 and weights padding by 0.",
              "- The MLM loss of both columns is the book's printed number: nn.CrossEntropyLoss's mean over all 10 "
              "prediction slots of a sequence, padding slots (position 0, label <unk>) included.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every process")
    p.add_argument("--d2l-python", default=".d2l-venv/bin/python")
    p.add_argument("--skip-book", action="store_true", help="measure only the fast twin's options")
    p.add_argument("--variant-steps", type=int, default=8, help="0: skip the fast twin's options")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for model FLOP utilisation")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for the 1-minute load average to fall below 1")
    p.add_argument("--out", type=Path, default=HERE / "results" / "bert.md")
    args = p.parse_args(argv)

    waited = wait_for_idle(args.wait_idle)
    torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), loadavg()
    book = {}
    if not args.skip_book:
        book = {"divekit": [], "d2l": []}
        for repeat in range(args.repeats):
            book["divekit"].append(run_divekit(args.steps, repeat, args.device))
            book["d2l"].append(run_d2l(args.d2l_python, args.steps, repeat, args.threads, args.device))
            print(f"repeat {repeat + 1}: divekit {book['divekit'][-1]}, d2l {book['d2l'][-1]}", flush=True)
    variants = {}
    if args.variant_steps:
        for name in args.variants:
            variants[name] = run_divekit(args.variant_steps, 0, args.device, epochs=2, **VARIANTS[name])
            print(f"{name}: {variants[name]}", flush=True)
    meta = {**run_meta(Path(__file__).name, argv, args.threads, args.device), "steps": args.steps,
            "repeats": args.repeats, "variant_steps": args.variant_steps, "peak_tflops": args.peak_tflops,
            "load_before": load_before, "load_after": loadavg(), "total_seconds": time.perf_counter() - start}
    text = render(book, variants, meta)
    if args.wait_idle:
        text += f"\nWaited {waited:.0f} s for the load average to fall before measuring (--wait-idle).\n"
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
