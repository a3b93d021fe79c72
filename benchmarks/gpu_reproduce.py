"""The book's chapter 7 reproductions on one GPU, with the fastest settings that keep the book's
recipe: AlexNet, VGG, NiN, GoogLeNet and ResNet-18 (D2L §7.1-7.4, §7.6), each for the book's 10
epochs with its learning rate and batch size, on Fashion-MNIST resized on the device, the model in
channels-last memory format and the forward pass under bf16 autocast (``--precision bf16``; the
book's numbers were fp32, and precision is one of the incidental options, so the runs stay
comparable with the book). Run by ``gpu_check.sh``.

    PYTHONPATH=src python benchmarks/gpu_reproduce.py [--device cuda] [--tiny] [--compile NAME ...] \
        [--out DIR] [NAME ...]

Each experiment is built by ``prepare_training`` (the runner's public call, as ``divekit run``
builds it, without a run folder: no checkpoints are written, to time training alone), trained,
and its final metrics compared with the book's (``divekit.experiments.book.compare``). After each
experiment ``DIR/reproductions.md`` and ``DIR/reproductions.json`` are rewritten, so a run cut
short keeps what it finished. ``--tiny``: each recipe's smoke-test values and one epoch (a check of
this script on a CPU, not a reproduction). ``--compile NAME``: also ``torch.compile`` that model
(off by default: at 10 epochs of tens of seconds each, compiling a CNN takes about as long as it
saves unless the GPU check's own ``cnn-gpu.md`` shows otherwise).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import loadavg, write_atomic  # noqa: E402

BOOK_CNNS = ("alexnet", "vgg", "nin", "googlenet", "resnet", "densenet")


def reproduce(name: str, device: str, tiny: bool, compile: bool) -> dict:
    from divekit.experiments.book import changed_options, compare
    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import prepare_training

    recipe = get_experiment(name)
    values = {**recipe.tiny, "epochs": 1} if tiny else {}
    on_gpu = device.startswith("cuda")
    options = recipe.make_options(**values, device=device, precision="bf16" if on_gpu else "fp32", compile=compile)
    training = prepare_training(recipe, options)
    if on_gpu:
        training.setup.model.to(memory_format=torch.channels_last)  # NHWC: the layout bf16 tensor-core convolutions use
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    history = training.fit()
    wall = time.perf_counter() - start
    final = {k: v for k, v in history[-1].items() if k != "epoch"}
    config = options.to_dict()
    speeds = [r["examples_per_s"] for r in history]
    return {
        "experiment": name, "section": recipe.section, "epochs": len(history), "device": str(training.device),
        "precision": options.precision, "compile": compile, "channels_last": on_gpu,
        "comparable": not changed_options(recipe.make_options().to_dict(), config, name, options.impl),
        "final": final, "book": compare(name, options.impl, final, config),
        "examples_per_s": statistics.median(speeds[1:] or speeds),  # after the first epoch (warm-up, cuDNN's search)
        "train_seconds": sum(r["seconds"] for r in history), "wall_seconds": wall,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "history": history,
    }


def report(results: list[dict], meta: dict) -> str:
    lines = ["# The book's chapter 7 CNNs on one GPU: 10-epoch reproductions", "",
             f"Produced by `benchmarks/gpu_reproduce.py` on {meta['date']} ({meta['device']}, torch {torch.__version__}, "
             f"load average at the start {meta['load']}); command: `{meta['command']}`.", "",
             "| experiment | section | epochs | settings | train acc | test acc | book test acc (builds) | reached | "
             "examples/s | train s | wall s | peak GiB |", "|---|---|---:|---|---:|---:|---|---|---:|---:|---:|---:|"]
    for r in results:
        book = {row["metric"]: row for row in r["book"]}
        acc = book.get("test_acc")
        book_text = f"{acc['book']} ({acc['spread'][0]}–{acc['spread'][1]})" if acc else "—"
        reached = ("yes" if acc["reached"] else "NO") if acc and r["comparable"] else "not compared"
        settings = ", ".join(s for s, on in ((r["precision"], True), ("channels-last", r["channels_last"]),
                                             ("compile", r["compile"])) if on)
        peak = f"{r['peak_gpu_memory_gib']:.1f}" if r["peak_gpu_memory_gib"] is not None else "—"
        lines.append(f"| {r['experiment']} | {r['section']} | {r['epochs']} | {settings} | {r['final'].get('train_acc', 0):.4f} "
                     f"| {r['final'].get('test_acc', 0):.4f} | {book_text} | {reached} | {r['examples_per_s']:,.0f} | "
                     f"{r['train_seconds']:.0f} | {r['wall_seconds']:.0f} | {peak} |")
    lines += ["", "examples/s: training examples over the training pass's wall time, median over epochs after the first; "
              "train s: the training passes; wall s: training and the evaluation after each epoch. \"reached\": at least "
              "the low end of the book's builds (only for runs with the book's settings).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", default=list(BOOK_CNNS), help=f"experiments (default: {' '.join(BOOK_CNNS)})")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="the recipes' smoke-test values and one epoch")
    p.add_argument("--compile", nargs="*", default=[], metavar="NAME", help="experiments to run through torch.compile")
    p.add_argument("--out", type=Path, default=Path("gpu-check-out"))
    args = p.parse_args(argv)

    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": loadavg(),
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "command": " ".join(["python", "benchmarks/gpu_reproduce.py", *(sys.argv[1:] if argv is None else argv)])}
    results = []
    for name in args.names:
        print(f"{name}: training", file=sys.stderr, flush=True)
        results.append(reproduce(name, args.device, args.tiny, name in args.compile))
        write_atomic(args.out / "reproductions.json", json.dumps({"meta": meta, "results": results}, indent=1))
        write_atomic(args.out / "reproductions.md", report(results, meta))
        r = results[-1]
        print(f"{name}: test acc {r['final'].get('test_acc', float('nan')):.4f}, {r['examples_per_s']:,.0f} examples/s, "
              f"{r['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    print(report(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
