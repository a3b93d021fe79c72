"""Flat parameter updates (``divekit.train.updates``) against per-parameter ones, on the ``transformer``
recipe at the book's settings: the same trainer, once with the flat form and once with it refused
(``ParameterUpdates.flat_allowed`` patched to say no), interleaved in one process.

    DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_flat_updates.py \
        [--epochs 20] [--repeats 6] [--threads 1] [--out benchmarks/results/flat-updates.md]

Each repeat trains both forms from the same seed, in alternating order; the ratio is per-parameter
seconds / flat seconds, its median over repeats. The final losses show both train alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import loadavg, report_header, run_meta, write_atomic


def train_seconds(flat: bool, epochs: int, seed: int, threads: int) -> tuple[float, float]:
    """Seconds of ``fit`` and the final loss of the ``transformer`` recipe, flat or per parameter."""
    from divekit.experiments.runner import prepare_training
    from divekit.train.updates import ParameterUpdates

    allowed = ParameterUpdates.flat_allowed
    if not flat:
        ParameterUpdates.flat_allowed = staticmethod(lambda *args: False)
    try:
        training = prepare_training("transformer", epochs=epochs, seed=seed, device="cpu")
        torch.set_num_threads(threads)
        start = time.perf_counter()
        history = training.fit()
        return time.perf_counter() - start, history[-1]["train_loss_d2l"]
    finally:
        ParameterUpdates.flat_allowed = allowed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    meta = run_meta("bench_flat_updates.py", argv, args.threads)
    load_before = loadavg()
    runs = {True: [], False: []}
    for repeat in range(args.repeats):
        for flat in (False, True) if repeat % 2 == 0 else (True, False):
            runs[flat].append(train_seconds(flat, args.epochs, repeat, args.threads))
            print(f"repeat {repeat} {'flat' if flat else 'per-parameter'}: {runs[flat][-1][0]:.2f} s, "
                  f"loss {runs[flat][-1][1]:.4f}", flush=True)
    ratios = [p[0] / f[0] for p, f in zip(runs[False], runs[True])]
    lines = report_header("Flat parameter updates against per-parameter ones (the `transformer` recipe)", meta) + [
        f"- load average (1/5/15 min) before: {load_before}; after: {loadavg()}",
        f"- {args.repeats} repeats x {args.epochs} epochs per form, interleaved, each repeat from its own seed",
        "",
        "| | median seconds | final losses (per repeat) |",
        "|---|---:|---|",
        *(f"| {name} | {statistics.median(s for s, _ in runs[flat]):.2f} | "
          f"{', '.join(f'{loss:.4f}' for _, loss in runs[flat])} |"
          for name, flat in (("per parameter", False), ("flat", True))),
        "",
        f"Flat is **{statistics.median(ratios):.2f}x** as fast (median of the repeats' ratios; per repeat "
        f"{min(ratios):.2f}x-{max(ratios):.2f}x).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out is not None:
        write_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
