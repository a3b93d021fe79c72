"""The Transformer (D2L §10.7): training throughput against d2l's own code at the book's settings, and
the larger preset's speed-ups and profile, in one run.

    DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_transformer.py \
        [--epochs 200] [--repeats 3] [--threads 1] [--d2l-python .d2l-venv/bin/python] \
        [--large-steps 20] [--device cpu|cuda] [--wait-idle 900] [--out benchmarks/results/transformer.md]

1. The book's settings (601 pairs, batch 64, 10 steps, width 32, 2 blocks, 4 heads, FFN 64, dropout
   0.1, Adam lr 0.005, clipping at 1): divekit's registered ``transformer`` recipe, built by the
   runner's public ``prepare_training`` and trained by its trainer, against ``_d2l_transformer.py``
   (d2l 0.17.6's ``TransformerEncoder``, the book's decoder, ``train_seq2seq``'s loop) in a
   subprocess. Repeats interleave divekit and d2l, so load from other processes hits both alike.
   Tokens/s is what both count: real target tokens trained on / seconds of the training passes.
   Quality: the final printed loss (per token / num_steps) and the BLEU (k = 2) of the book's four
   translations, each side decoding as its own code does (d2l: ``predict_seq2seq``).
2. The larger preset (``transformer-large``, width 256, 4 blocks, 8 heads, FFN 1024) on its recipe's
   data: tokens/s of the fast twin eager fp32, with bf16 autocast, with ``torch.compile`` and with
   both, each over ``--large-steps`` steps after a warm-up epoch of the same length (which also
   pays for compilation); then ``torch.profiler``'s top operators of eager fp32.

With ``--device cuda`` both sides train on the GPU (d2l's code as the book runs it there) and the
profile ranks operators by their time on the GPU; the fast twin's attention is then PyTorch's fused
``scaled_dot_product_attention`` wherever it needs no weights and no dropout on them.
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

LARGE_BATCH = 128


def run_divekit(epochs: int, seed: int, device: str) -> dict:
    from divekit.experiments.runner import prepare_training

    training = prepare_training("transformer", epochs=epochs, seed=seed, device=device)
    history = training.fit()
    seconds = sum(r["seconds"] for r in history)
    tokens = sum(r["tokens_per_s"] * r["seconds"] for r in history)
    translations, bleu = [], []
    for probe in training.setup.probes[:1]:  # Translations
        results, _ = probe.run(training.setup.model, training.setup.data, training.device)
        translations = [r["prediction"] for r in results["translations"]]
        bleu = [r["bleu"] for r in results["translations"]]
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "loss": history[-1]["train_loss_d2l"],
            "bleu": bleu, "translations": translations}


def run_d2l(python: str, epochs: int, seed: int, threads: int, device: str) -> dict:
    cmd = [python, str(HERE / "_d2l_transformer.py"), "--epochs", str(epochs), "--seed", str(seed),
           "--threads", str(threads), "--device", device, "--data", os.environ.get("DIVEKIT_DATA", "../shared/data")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    seconds = sum(e["seconds"] for e in out["epochs"])
    tokens = sum(e["tokens_per_s_d2l"] * e["seconds"] for e in out["epochs"])  # d2l's own tokens/s x its time
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "loss": out["epochs"][-1]["loss_d2l"],
            "bleu": [t["bleu"] for t in out["translations"]],
            "translations": [t["prediction"] for t in out["translations"]]}


def run_large(steps: int, seed: int, device: str, **speed) -> dict:
    """tokens/s of transformer-large over ``steps`` steps (epoch 2), after a warm-up epoch 1 of as many."""
    from divekit.experiments.runner import prepare_training

    training = prepare_training("transformer-large", epochs=2, seed=seed, device=device, limit=steps * LARGE_BATCH,
                                batch_size=LARGE_BATCH, **speed)
    history = training.fit()
    return {"tokens_per_s": history[-1]["tokens_per_s"], "warmup_seconds": history[0]["seconds"],
            "loss": history[-1]["train_loss"]}


def profile_large(steps: int, device: str) -> tuple[list[tuple[str, float, float, int]], float]:
    """torch.profiler's operators of eager fp32 transformer-large by self time on ``device`` (the CPU's
    time, or the GPU's): (name, ms, %, calls), and the total seconds."""
    from torch.profiler import ProfilerActivity, profile

    from divekit.experiments.runner import prepare_training

    training = prepare_training("transformer-large", epochs=1, device=device, limit=steps * LARGE_BATCH,
                                batch_size=LARGE_BATCH)
    training.fit()  # warm-up
    on_gpu = device.startswith("cuda")
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]) as prof:
        training.trainer.epochs = 2
        training.trainer.fit(training.setup.data.train)  # one more epoch, without evaluation
        if on_gpu:
            torch.cuda.synchronize()

    def self_time(e):  # microseconds
        return e.self_device_time_total if on_gpu else e.self_cpu_time_total

    events = [e for e in prof.key_averages() if e.key.startswith("aten::") or "Optimizer" in e.key or on_gpu]
    total = sum(self_time(e) for e in prof.key_averages())
    top = sorted(events, key=self_time, reverse=True)[:12]
    rows = [(e.key, self_time(e) / 1000, 100 * self_time(e) / total, e.count) for e in top]
    return rows, total / 1e6


def render(book: dict, large: dict, profile: list, profile_seconds: float, meta: dict) -> str:
    ours, theirs = book["divekit"], book["d2l"]

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    paired = statistics.median(a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(ours, theirs))
    lines = [
        *report_header("Transformer (D2L §10.7): training throughput against d2l, and the larger preset", meta),
        "- d2l 0.17.6 (classic): its package's `TransformerEncoder`, the book's `DecoderBlock`/`TransformerDecoder`, "
        "`train_seq2seq`'s loop (without its Animator); divekit: the `transformer` recipe via `prepare_training`",
        f"- book settings: {meta['epochs']} epochs x {meta['repeats']} repeats per side, interleaved; "
        "medians over repeats",
        f"- load average (1/5/15 min) before: {meta['load_before']}; after the book-settings part: {meta['load_mid']}; "
        f"at the end: {meta['load_after']} (other jobs share this machine){meta['waited']}",
        f"- total benchmark wall time: {meta['total_seconds']:.0f} s",
        "",
        "## The book's settings",
        "",
        "*speed-up* = ratio of the median tokens/s; *paired* = median over repeats of divekit / d2l within one repeat.",
        "",
        "| | tokens/s | seconds for the epochs | final loss (d2l's print) | BLEU go / i lost / he's calm / i'm home |",
        "|---|---:|---:|---:|---|",
    ]
    for name, runs in (("divekit `transformer` (fast)", ours), ("d2l 0.17.6", theirs)):
        bleus = " / ".join(f"{statistics.median(r['bleu'][i] for r in runs):.3f}" for i in range(4))
        lines.append(f"| {name} | {med(runs, 'tokens_per_s'):,.0f} | {med(runs, 'seconds'):.1f} | "
                     f"{med(runs, 'loss'):.4f} | {bleus} |")
    lines += ["", f"Speed-up {med(ours, 'tokens_per_s') / med(theirs, 'tokens_per_s'):.2f}x, paired {paired:.2f}x.",
              "", "Per repeat (seed), tokens/s, loss, translations:", ""]
    for i, (a, b) in enumerate(zip(ours, theirs)):
        lines.append(f"- seed {i}: divekit {a['tokens_per_s']:,.0f}, {a['loss']:.4f}, {a['translations']}; "
                     f"d2l {b['tokens_per_s']:,.0f}, {b['loss']:.4f}, {b['translations']}")
    base = large["eager fp32"]["tokens_per_s"]
    lines += ["", "## The larger preset (`transformer-large`, fast twin)", "",
              f"{meta['large_steps']} timed steps of batch {LARGE_BATCH} after a warm-up epoch of as many (the warm-up "
              "includes `torch.compile`'s compilation); load average at the start of this part: "
              f"{meta['load_mid']}.", "",
              "| variant | tokens/s | vs eager fp32 | warm-up epoch (s) | loss after 2 epochs |",
              "|---|---:|---:|---:|---:|"]
    for name, r in large.items():
        lines.append(f"| {name} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / base:.2f}x | "
                     f"{r['warmup_seconds']:.1f} | {r['loss']:.3f} |")
    where = "GPU" if meta["on_gpu"] else "CPU"
    lines += ["", f"Where the time goes (eager fp32, one epoch of {meta['large_steps']} steps, "
                  f"{profile_seconds:.1f} s of self {where} time; torch.profiler, top operators by self time):", "",
              f"| operator | self {where} (ms) | share | calls |", "|---|---:|---:|---:|"]
    lines += [f"| `{name}` | {ms:,.0f} | {share:.1f}% | {calls:,} |" for name, ms, share, calls in profile]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in every process")
    p.add_argument("--d2l-python", default=".d2l-venv/bin/python")
    p.add_argument("--large-steps", type=int, default=20)
    p.add_argument("--device", default="cpu", help="cpu, or cuda for both sides on the GPU")
    p.add_argument("--skip-book", action="store_true", help="only the larger preset's part")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for the 1-minute load average to fall below 1")
    p.add_argument("--out", type=Path, default=HERE / "results" / "transformer.md")
    args = p.parse_args(argv)

    waited = wait_for_idle(args.wait_idle)
    torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), loadavg()
    book = {"divekit": [], "d2l": []}
    for seed in range(0 if args.skip_book else args.repeats):
        book["divekit"].append(run_divekit(args.epochs, seed, args.device))
        book["d2l"].append(run_d2l(args.d2l_python, args.epochs, seed, args.threads, args.device))
        print(f"seed {seed}: divekit {book['divekit'][-1]}\n        d2l {book['d2l'][-1]}", flush=True)
    load_mid = loadavg()
    large = {}
    for name, speed in (("eager fp32", {}), ("bf16 autocast", {"precision": "bf16"}),
                        ("torch.compile fp32", {"compile": True}),
                        ("torch.compile + bf16", {"compile": True, "precision": "bf16"})):
        large[name] = run_large(args.large_steps, 0, args.device, **speed)
        print(name, large[name], flush=True)
    profile, profile_seconds = profile_large(args.large_steps, args.device)
    meta = {**run_meta(Path(__file__).name, argv, args.threads, args.device),
            "epochs": args.epochs, "repeats": args.repeats, "large_steps": args.large_steps,
            "on_gpu": args.device.startswith("cuda"),
            "load_before": load_before, "load_mid": load_mid,
            "load_after": loadavg(), "total_seconds": time.perf_counter() - start,
            "waited": f"; waited {waited:.0f} s for the load to fall (--wait-idle)" if args.wait_idle else ""}
    if args.skip_book:
        print(json.dumps({"large": large, "profile": profile}, indent=1))
        return 0
    text = render(book, large, profile, profile_seconds, meta)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
