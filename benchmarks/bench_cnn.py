"""Training throughput of LeNet (D2L §6.6) and ResNet-18 (D2L §7.6) on Fashion-MNIST, divekit
against the book's own code, in one run.

    flock /tmp/divekit-bench.lock env DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_cnn.py \
        [--epochs 2] [--repeats 2] [--resnet-batches 3] [--d2l-python .d2l-venv/bin/python] [--out benchmarks/results/cnn.md]

LeNet: each repeat trains a fresh model for ``--epochs`` epochs (batch 256, SGD lr 0.9, Xavier init)
in every variant; repeats are interleaved (divekit variants, then d2l) so that load from other
processes hits all alike. ResNet-18: a slice of ``--resnet-batches`` training batches of 256 at
96x96 (lr 0.05) after one untimed batch, per variant and repeat.

* divekit: the registered experiments (``lenet``, ``resnet``) built and trained as the CLI does
  (``prepare_training``; no run folder, no progress bar). CPU variants: as is (channels-last); with
  the model put back to NCHW; with ``torch.backends.mkldnn`` disabled. GPU variants (``--device
  cuda``): as is (NCHW fp32), channels_last, bf16 autocast, both, and both with torch.compile;
  there examples/s leave each run's first epoch out (warm-up and compilation), and
  ``--resnet-epochs N`` trains ResNet-18 for whole epochs.
* d2l: ``benchmarks/_d2l_cnn.py`` in a subprocess with d2l's own venv: the book's networks and the
  body of ``d2l.train_ch6`` on ``d2l.load_data_fashion_mnist`` (4 DataLoader workers).

examples/s = training examples / wall time of the training passes (data loading included, the
evaluation pass excluded). Accuracy: test accuracy after the last epoch (LeNet only).
"""

from __future__ import annotations

import argparse
import contextlib
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
from common import loadavg, report_header, run_meta, write_atomic

# variant -> (memory format to put the model in, or None to keep the experiment's; config options;
# mkldnn off). "as is" is what `divekit run` trains: channels-last on the CPU, NCHW fp32 on a GPU.
VARIANTS = {
    "cpu": {"as is": (None, {}, False), "NCHW": (torch.contiguous_format, {}, False), "mkldnn off": (None, {}, True)},
    "cuda": {"as is": (None, {}, False), "channels_last": (torch.channels_last, {}, False),
             "bf16": (None, {"precision": "bf16"}, False),
             "channels_last + bf16": (torch.channels_last, {"precision": "bf16"}, False),
             "channels_last + bf16 + compile": (torch.channels_last, {"precision": "bf16", "compile": True}, False)},
}


def run_divekit(name: str, variant: str, epochs: int, device: torch.device, variant_set: str, limit: int | None = None,
                impl: str = "fast", **overrides) -> dict:
    from divekit.experiments.runner import prepare_training

    memory_format, options, mkldnn_off = VARIANTS[variant_set][variant]
    training = prepare_training(name, impl=impl, epochs=epochs, limit=limit, device=device.type, **options, **overrides)
    if memory_format is not None:
        training.setup.model.to(memory_format=memory_format)
    flags = torch.backends.mkldnn.flags(enabled=False) if mkldnn_off else contextlib.nullcontext()
    with flags:
        history = training.fit()
    return {"epoch_examples": [training.setup.data.train.num_examples] * epochs,
            "epoch_seconds": [r["seconds"] for r in history],
            "test_acc": history[-1][f"{training.setup.data.eval_name}_acc"], "train_loss": history[-1]["train_loss"]}


def run_d2l(python: str, args: list[str], threads: int, tv_shim: str, device: torch.device) -> dict:
    env = dict(os.environ)
    env.setdefault("FMNIST_DIR", str(Path(os.environ.get("DIVEKIT_DATA", "../shared/data")) / "fashion-mnist"))
    env.pop("PYTHONPATH", None)  # d2l's process needs no divekit
    cmd = [python, str(HERE / "_d2l_cnn.py"), *args, "--threads", str(threads), "--tv-shim", tv_shim,
           "--device", str(device)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    epochs = out["epochs"]
    return {"epoch_examples": [e["train_examples"] for e in epochs], "epoch_seconds": [e["train_seconds"] for e in epochs],
            "test_acc": epochs[-1].get("test_acc"), "train_loss": epochs[-1]["train_loss"], "d2l_version": out["d2l_version"]}


def summarize(runs: list[dict], skip_first_epoch: bool = False) -> dict:
    """Median examples/s over repeats, each over its epochs' training passes (all of them, or all
    but the first: a GPU's warm-up, cuDNN's algorithm search and torch.compile's compilation)."""
    first = 1 if skip_first_epoch else 0
    speeds = [sum(r["epoch_examples"][first:]) / sum(r["epoch_seconds"][first:]) for r in runs]
    accs = [r["test_acc"] for r in runs if r["test_acc"] is not None]
    return {"speed": statistics.median(speeds), "speeds": speeds,
            "acc": statistics.median(accs) if accs else None, "accs": accs}


def table(title: str, rows: dict[str, dict], reference: str) -> list[str]:
    lines = [f"### {title}", "", f"| variant | examples/s (train pass) | ratio vs {reference} | test acc (median) | per repeat (examples/s) |",
             "|---|---:|---:|---:|---|"]
    ref = rows[reference]["speed"]
    for name, s in rows.items():
        acc = "—" if s["acc"] is None else f"{s['acc']:.4f}" + (f" ({min(s['accs']):.4f}–{max(s['accs']):.4f})" if len(s["accs"]) > 1 else "")
        lines.append(f"| {name} | {s['speed']:,.0f} | {s['speed'] / ref:.2f}x | {acc} | {', '.join(f'{v:,.0f}' for v in s['speeds'])} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2, help="LeNet epochs per repeat")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--resnet-batches", type=int, default=3, help="timed ResNet-18 batches per repeat (0: skip ResNet)")
    p.add_argument("--resnet-batch-size", type=int, default=256, help="the book's is 256")
    p.add_argument("--scratch", action="store_true", help="also time LeNet on the scratch convolutions")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every process")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both sides train there)")
    p.add_argument("--variant-set", choices=tuple(VARIANTS), default=None,
                   help="which divekit variants (default: the --device's; `--device cpu --variant-set cuda` checks "
                        "the GPU variants' code on a CPU)")
    p.add_argument("--limit", type=int, default=None,
                   help="a quick check of this script: LeNet on the first N examples (d2l: N / 256 timed batches)")
    p.add_argument("--resnet-epochs", type=int, default=0,
                   help="train ResNet-18 for whole epochs (with test accuracy) instead of --resnet-batches (for a GPU)")
    p.add_argument("--d2l-python", default=".d2l-venv/bin/python")
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py")
    p.add_argument("--out", type=Path, default=HERE / "results" / "cnn.md")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variant_set = args.variant_set or device.type
    variants = VARIANTS[variant_set]
    skip_first = device.type == "cuda"  # steady state: a GPU's first epoch is warm-up
    start, load_before = time.perf_counter(), loadavg()
    from divekit.data.fashion_mnist import load_fashion_mnist

    load_fashion_mnist()  # parse the IDX files once, outside every timing
    run_divekit("lenet", "as is", 1, device, variant_set, limit=2560)  # warm-up, not recorded
    d2l_name = "d2l train_ch6 (book code)"
    lenet_runs = {f"divekit fast, {v}": [] for v in variants} | ({"divekit scratch": []} if args.scratch else {}) | {d2l_name: []}
    d2l_version = "?"
    for repeat in range(args.repeats):
        for v in variants:
            lenet_runs[f"divekit fast, {v}"].append(run_divekit("lenet", v, args.epochs, device, variant_set, limit=args.limit))
        if args.scratch:
            lenet_runs["divekit scratch"].append(run_divekit("lenet", "as is", args.epochs, device, variant_set, impl="scratch",
                                                             limit=args.limit))
        d2l_slice = ["--batches", str(max(1, args.limit // 256))] if args.limit else []
        d2l = run_d2l(args.d2l_python, ["--model", "lenet", "--epochs", str(args.epochs), "--lr", "0.9", "--seed", str(repeat),
                                        *d2l_slice],
                      args.threads, args.tv_shim, device)
        lenet_runs[d2l_name].append(d2l)
        d2l_version = d2l["d2l_version"]
        print(f"lenet repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

    resnet_runs: dict[str, list[dict]] = {}
    n, bs = args.resnet_batches, args.resnet_batch_size
    if args.resnet_epochs or n:
        whole = {"epochs": args.resnet_epochs, "limit": None} if args.resnet_epochs else {"epochs": 1, "limit": bs * n}
        run_divekit("resnet", "as is", 1, device, variant_set, limit=bs, batch_size=bs)  # warm-up, not recorded
        resnet_runs = {f"divekit fast, {v}": [] for v in variants} | {d2l_name: []}
        for repeat in range(args.repeats):
            for v in variants:
                run = run_divekit("resnet", v, whole["epochs"], device, variant_set, limit=whole["limit"], batch_size=bs)
                if not args.resnet_epochs:
                    run["test_acc"] = None  # tested on bs * n images: no measure
                resnet_runs[f"divekit fast, {v}"].append(run)
            d2l_args = ["--batch-size", str(bs), "--lr", "0.05", "--resize", "96", "--seed", str(repeat), "--model", "resnet"]
            d2l_args += ["--epochs", str(args.resnet_epochs)] if args.resnet_epochs else ["--batches", str(n)]
            resnet_runs[d2l_name].append(run_d2l(args.d2l_python, d2l_args, args.threads, args.tv_shim, device))
            print(f"resnet repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

    on_gpu = device.type == "cuda"
    meta = run_meta(Path(__file__).name, argv, args.threads, device)
    if not resnet_runs:
        resnet_text = "skipped."
    elif args.resnet_epochs:
        resnet_text = f"{args.resnet_epochs} whole epochs per repeat, batch {bs}, 96x96, lr 0.05."
    else:
        resnet_text = (f"{n} timed batches of {bs} at 96x96 (lr 0.05) per repeat after one untimed batch (divekit: a "
                       "separate one-batch warm-up run; d2l: the run's first batch, which also starts its DataLoader workers).")
    lines = [
        *report_header("CNN training throughput: LeNet and ResNet-18 (D2L §6.6, §7.6), divekit vs the book's code", meta),
        (f"- d2l {d2l_version} (PyPI) in its own venv ({args.d2l_python}), run by `benchmarks/_d2l_cnn.py`: the book's nets and "
        "the body of `d2l.train_ch6` on `d2l.load_data_fashion_mnist` (4 DataLoader workers; torchvision replaced by "
        f"`{args.tv_shim}`, PIL image per sample as torchvision does)"),
        f"- load average (1/5/15 min) before: {load_before}; after: {loadavg()}",
        f"- total wall time: {time.perf_counter() - start:.0f} s",
        "",
        (f"LeNet: {args.epochs} epochs x {args.repeats} repeats per variant (fresh model each), batch 256, SGD lr 0.9, "
        f"full Fashion-MNIST (60,000 train / 10,000 test). ResNet-18: {resnet_text}"),
        ("examples/s = training examples over the wall time of the training passes (data loading included, evaluation "
        "excluded)" + (", of every epoch but the first (warm-up, cuDNN's algorithm search, compilation)" if skip_first else "")
        + "; medians over repeats."),
        "",
        *table("LeNet (§6.6)", {k: summarize(v, skip_first) for k, v in lenet_runs.items()}, d2l_name),
    ]
    ours, theirs = summarize(lenet_runs["divekit fast, as is"], skip_first), summarize(lenet_runs[d2l_name], skip_first)
    ratio = ours["speed"] / theirs["speed"]
    lines += [(f"LeNet, divekit fast as `divekit run lenet` trains it against d2l: {ratio:.2f}x"
               + ("" if on_gpu else f" (target on the CPU: at least 2x at equal or better accuracy: {'met' if ratio >= 2 else 'NOT met'})")
               + (f"; test accuracy {ours['acc']:.4f} vs d2l {theirs['acc']:.4f} after {args.epochs} epochs."
                  if theirs["acc"] is not None else "; d2l timed a slice (--limit): no accuracy.")), ""]
    if resnet_runs:
        resnet_rows = {k: summarize(v, skip_first) for k, v in resnet_runs.items()}
        lines += table(f"ResNet-18 at 96x96 (§7.6), {'whole epochs' if args.resnet_epochs else 'a slice of one epoch'}",
                       resnet_rows, d2l_name)
    layout = ("on the CPU the experiments put the fast model in `torch.channels_last` (NHWC) memory format (inputs stay "
              "NCHW; the first convolution converts them); `NCHW` puts it back to `torch.contiguous_format`; `mkldnn off` "
              "trains the channels-last model inside `torch.backends.mkldnn.flags(enabled=False)`."
              if variant_set == "cpu" else
              "on a GPU the experiments train NCHW in fp32; `channels_last` puts the model in NHWC memory format, `bf16` "
              "runs the forward pass and loss under bf16 autocast (`--precision bf16`), `compile` adds `--compile` "
              "(torch.compile of the forward pass).")
    lines += ["Notes:", "",
              ("- divekit keeps Fashion-MNIST as uint8 tensors on the device and makes each batch with one `index_select`, "
              "`.float() / 255` and (ResNet) one bilinear `F.interpolate` of the whole batch; d2l decodes a PIL image, "
              "resizes it (ResNet) and converts it to a tensor per example in 4 DataLoader worker processes"
              + (", which compete with training for the same CPU cores." if not on_gpu else ".")),
              f"- `as is` is what `divekit run lenet|resnet` trains: {layout}",
              ("- Accuracy differences between variants of the same code are seed and kernel noise; d2l's runs use its own "
              "DataLoader shuffling."), ""]
    text = "\n".join(lines)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
