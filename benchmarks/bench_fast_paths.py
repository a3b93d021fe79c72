"""One of divekit's CPU fast paths against the steps it replaces, on the ``transformer`` recipe at the
book's settings: the same trainer, once with the path and once with it refused, interleaved in one
process.

    DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_fast_paths.py --path NAME \
        [--epochs 20] [--repeats 6] [--threads 1] [--out benchmarks/results/NAME.md]

Paths (``--path``):

- ``flat-updates``: parameters, gradients and Adam's state of a param group in one flat tensor
  (``divekit.train.updates``); refused by ``ParameterUpdates.flat_allowed`` saying no.
- ``attention-node``: attention with dropout in training as one autograd node with its own backward
  (``_DroppedAttention`` and, for multi-head self-attention from the projections to the merged heads,
  ``_DroppedSelfAttention``, in ``divekit.ops.fast.attention``); refused by sending their calls to the
  plain steps they replace (the path that keeps the weights), which give the same numbers bit for bit.

Each repeat trains both forms from the same seed, in alternating order; the ratio is the refused
form's seconds / the path's seconds, its median over repeats. The final losses show both train alike.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import loadavg, report_header, run_meta, write_atomic


@contextlib.contextmanager
def flat_updates_refused():
    from divekit.train.updates import ParameterUpdates

    allowed = ParameterUpdates.flat_allowed
    ParameterUpdates.flat_allowed = staticmethod(lambda *args: False)
    try:
        yield
    finally:
        ParameterUpdates.flat_allowed = allowed


@contextlib.contextmanager
def attention_node_refused():
    from divekit.ops.fast import attention

    node, dropouts = attention._DroppedAttention, {}  # one Dropout module per p, as the layers hold

    class PlainSteps:
        @staticmethod
        def apply(queries, keys, values, mask, p):
            if p not in dropouts:
                dropouts[p] = attention.Dropout(p)
            return attention._scaled_dot_product(queries, keys, values, mask, dropouts[p], True)[0]

    self_node_takes = attention.MultiHeadAttention._self_node_takes
    attention._DroppedAttention = PlainSteps
    attention.MultiHeadAttention._self_node_takes = lambda self, projected: False
    try:
        yield
    finally:
        attention._DroppedAttention = node
        attention.MultiHeadAttention._self_node_takes = self_node_takes


PATHS = {  # name: (title, what refuses it)
    "flat-updates": ("Flat parameter updates against per-parameter ones", flat_updates_refused),
    "attention-node": ("Attention with dropout as one autograd node against autograd's steps",
                       attention_node_refused),
}


def train_seconds(refuse, epochs: int, seed: int, threads: int) -> tuple[float, float]:
    """Seconds of ``fit`` and the final loss of the ``transformer`` recipe, in the context ``refuse``."""
    from divekit.experiments.runner import prepare_training

    with refuse:
        training = prepare_training("transformer", epochs=epochs, seed=seed, device="cpu")
        torch.set_num_threads(threads)
        start = time.perf_counter()
        history = training.fit()
        return time.perf_counter() - start, history[-1]["train_loss_d2l"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=sorted(PATHS), required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    title, refused = PATHS[args.path]
    meta = run_meta("bench_fast_paths.py", argv, args.threads)
    load_before = loadavg()
    runs = {True: [], False: []}  # with the path, without it
    for repeat in range(args.repeats):
        for used in (False, True) if repeat % 2 == 0 else (True, False):
            runs[used].append(train_seconds(contextlib.nullcontext() if used else refused(), args.epochs, repeat,
                                            args.threads))
            print(f"repeat {repeat} {'with' if used else 'without'} {args.path}: {runs[used][-1][0]:.2f} s, "
                  f"loss {runs[used][-1][1]:.4f}", flush=True)
    ratios = [without[0] / with_[0] for without, with_ in zip(runs[False], runs[True])]
    lines = report_header(f"{title} (the `transformer` recipe)", meta) + [
        f"- load average (1/5/15 min) before: {load_before}; after: {loadavg()}",
        f"- {args.repeats} repeats x {args.epochs} epochs per form, interleaved, each repeat from its own seed",
        "",
        "| | median seconds | final losses (per repeat) |",
        "|---|---:|---|",
        *(f"| {name} | {statistics.median(s for s, _ in runs[used]):.2f} | "
          f"{', '.join(f'{loss:.4f}' for _, loss in runs[used])} |"
          for name, used in ((f"without {args.path}", False), (f"with {args.path}", True))),
        "",
        f"With {args.path}: **{statistics.median(ratios):.2f}x** as fast (median of the repeats' ratios; per repeat "
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
