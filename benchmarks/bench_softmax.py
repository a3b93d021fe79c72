"""Training throughput of softmax regression on Fashion-MNIST (D2L §3.6/§3.7), in one run.

    DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_softmax.py \
        [--epochs 3] [--repeats 3] [--d2l-python .d2l-venv/bin/python] [--out benchmarks/results/softmax.md]

Variants, all with batch size 256, SGD lr 0.1, torch.set_num_threads(--threads) in every process:

* divekit fast / scratch: the registered ``softmax-regression`` recipe built and trained as the CLI
  does (``prepare_training``; no run folder, no progress bar).
* bare loop: a hand-written PyTorch loop over the same uint8 tensors (randperm shuffle, ``.float()
  / 255`` per batch, ``nn.Linear(784, 10)``, ``F.cross_entropy``, ``torch.optim.SGD``, loss sum and
  correct count accumulated on the device and read once per epoch), plus the same evaluation pass.
* d2l (optional, needs ``--d2l-python``): d2l 0.17.x's ``train_epoch_ch3`` + ``evaluate_accuracy``
  on ``d2l.load_data_fashion_mnist(256)`` (see ``_d2l_softmax.py``), in a subprocess.

"examples/s (train pass)" = training examples over the time of the training passes only;
"examples/s (train+eval)" = training examples over the wall time of whole epochs (training pass
plus evaluation on the 10,000 test images), which is what ``d2l.train_ch3`` spends per epoch.
Each repeat trains a fresh model for ``--epochs`` epochs; the table gives the median over repeats.
Data loading and model construction are outside the timings.
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
import torch.nn.functional as F
from torch import nn

from common import fmt_ratio, loadavg, report_header, run_meta, summarize, train, wait_for_idle, write_atomic

HERE = Path(__file__).resolve().parent
BATCH_SIZE = 256
LR = 0.1


# -- variants ------------------------------------------------------------------------------------

def run_divekit(impl: str, epochs: int) -> dict:
    run = train("softmax-regression", impl=impl, epochs=epochs, device="cpu")
    options, history = run["training"].options, run["history"]
    assert options.batch_size == BATCH_SIZE and options.lr == LR, (options.batch_size, options.lr)
    return {
        "train_examples": run["training"].setup.data.train.num_examples * epochs,
        "train_seconds": run["train_seconds"],
        "wall_seconds": run["wall_seconds"],
        # the trainer's own per-epoch number, for the record
        "trainer_examples_per_s": [r["examples_per_s"] for r in history],
        "test_acc": history[-1]["test_acc"],
    }


def run_bare(epochs: int, seed: int = 0) -> dict:
    from divekit.data.fashion_mnist import load_fashion_mnist

    data = load_fashion_mnist()
    X, y = data.train.X, data.train.y  # uint8 (N, 1, 28, 28), int64 (N,)
    Xt, yt = data.eval.X, data.eval.y
    device = torch.device("cpu")
    torch.manual_seed(seed)
    net = nn.Linear(784, 10).to(device)
    nn.init.normal_(net.weight, std=0.01)
    nn.init.zeros_(net.bias)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    n = len(X)
    train_seconds = 0.0
    start = time.perf_counter()
    for _ in range(epochs):
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        order = torch.randperm(n, device=device)
        for i in range(0, n, BATCH_SIZE):
            idx = order[i:i + BATCH_SIZE]
            xb = X.index_select(0, idx).float() / 255
            yb = y.index_select(0, idx)
            logits = net(xb.flatten(1))
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
        _train_loss, _train_acc = float(loss_sum) / n, int(correct) / n  # one read per epoch
        train_seconds += time.perf_counter() - t0
        with torch.no_grad():
            test_correct = torch.zeros((), dtype=torch.int64, device=device)
            for i in range(0, len(Xt), BATCH_SIZE):
                xb = Xt[i:i + BATCH_SIZE].float() / 255
                test_correct += (net(xb.flatten(1)).argmax(1) == yt[i:i + BATCH_SIZE]).sum()
            test_acc = int(test_correct) / len(Xt)
    wall = time.perf_counter() - start
    return {"train_examples": n * epochs, "train_seconds": train_seconds, "wall_seconds": wall, "test_acc": test_acc}


def run_d2l(python: str, impl: str, workers: int | None, epochs: int, repeats: int, threads: int,
            tv_shim: str, env: dict) -> dict:
    cmd = [python, str(HERE / "_d2l_softmax.py"), "--impl", impl, "--epochs", str(epochs),
           "--repeats", str(repeats), "--threads", str(threads), "--tv-shim", tv_shim]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["runs"] = [
        {
            "train_examples": run["train_examples"] * epochs,
            "train_seconds": sum(e["train_seconds"] for e in run["epochs"]),
            "wall_seconds": sum(e["train_seconds"] + e["eval_seconds"] for e in run["epochs"]),
            "test_acc": run["epochs"][-1]["test_acc"],
        }
        for run in out["runs"]
    ]
    return out


# -- reporting -----------------------------------------------------------------------------------

def render(results: dict, meta: dict) -> str:
    rows = results["rows"]
    bare = rows["bare loop"]["wall"], rows["bare loop"]["train"]
    d2l_ref = rows.get("d2l 0.17 concise, num_workers=4 (d2l default)")
    lines = [
        *report_header("Softmax regression throughput (D2L §3.6/§3.7, Fashion-MNIST)", meta),
        f"- {meta['epochs']} epochs x {meta['repeats']} repeats per variant{meta['d2l_repeats']}, batch size {BATCH_SIZE}, SGD lr {LR}; "
        "each repeat trains a fresh model; numbers are medians over repeats",
        "- load average (1/5/15 min) when each phase started: " + "; ".join(f"{n}: {l}" for n, l in meta["phase_loads"])
        + " (a d2l phase with 4 workers raises the load average that the next phase starts with)",
        f"- total benchmark wall time: {meta['total_seconds']:.0f} s",
        "",
        "Columns: *train pass* = training examples / time in training passes only (for divekit this is",
        "the trainer's own `examples_per_s` timing); *train+eval* = training examples / wall time of whole",
        "epochs including the evaluation pass over the 10,000 test images (what `d2l.train_ch3` does each",
        "epoch). Ratios use the *train pass* column against the bare loop and the *train+eval* column",
        "against d2l's default (4 DataLoader workers). Data loading from disk and model setup are excluded.",
        "",
        "| variant | examples/s (train pass) | examples/s (train+eval per epoch) | ratio vs bare loop (train pass) | ratio vs d2l (train+eval) | final test acc |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in rows.items():
        vs_d2l = fmt_ratio(s["wall"], d2l_ref["wall"]) if d2l_ref else "—"
        acc = f"{s['acc']:.4f}"
        if len(set(round(a, 4) for a in s["acc_all"])) > 1:
            acc += f" ({min(s['acc_all']):.4f}–{max(s['acc_all']):.4f})"
        lines.append(f"| {name} | {s['train']:,.0f} | {s['wall']:,.0f} | {fmt_ratio(s['train'], bare[1])} | {vs_d2l} | {acc} |")
    lines += ["", "Per-repeat examples/s (train pass; train+eval):", ""]
    for name, s in rows.items():
        per = ", ".join(f"{t:,.0f}; {w:,.0f}" for t, w in zip(s["train_all"], s["wall_all"]))
        lines.append(f"- {name}: {per}")
    lines += [""]
    if "divekit fast" in rows:
        f = rows["divekit fast"]
        lines.append(f"Target 1 (divekit fast trainer >= 0.9x bare loop, train pass): "
                     f"{f['train'] / bare[1]:.2f}x -> {'met' if f['train'] >= 0.9 * bare[1] else 'NOT met'}.")
        if d2l_ref:
            faster = f["wall"] > d2l_ref["wall"]
            acc_ok = f["acc"] >= d2l_ref["acc"]
            lines.append(f"Target 2 (divekit fast faster than d2l, train+eval): {f['wall'] / d2l_ref['wall']:.2f}x -> "
                         f"{'met' if faster else 'NOT met'}; accuracy {f['acc']:.4f} vs d2l {d2l_ref['acc']:.4f} -> "
                         f"{'equal or better' if acc_ok else 'WORSE'}.")
        lines.append("")
    if results.get("trainer_per_epoch"):
        lines.append("divekit trainer's own per-epoch `examples_per_s` (first repeat): " + "; ".join(
            f"{k}: " + ", ".join(f"{v:,.0f}" for v in vals) for k, vals in results["trainer_per_epoch"].items()))
        lines.append("")
    lines += ["Notes:", ""]
    lines += [f"- {n}" for n in results["notes"]]
    lines.append("")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--d2l-repeats", type=int, default=None, help="repeats of each d2l variant (default: --repeats)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every process")
    p.add_argument("--out", type=Path, default=HERE / "results" / "softmax.md")
    p.add_argument("--d2l-python", default=None, help="python of a venv with d2l 0.17.x; d2l is skipped without it")
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py", help="torchvision stand-in for d2l")
    p.add_argument("--no-d2l-extras", action="store_true", help="only d2l's default (concise, 4 workers)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for the 1-minute load average to fall below 1")
    args = p.parse_args(argv)

    waited = wait_for_idle(args.wait_idle)

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    phase_loads: list[tuple[str, str]] = [("divekit and bare loop (start)", loadavg())]
    notes: list[str] = []

    from divekit.data.fashion_mnist import load_fashion_mnist

    load_fashion_mnist()  # parse the IDX files once, outside every timing

    # warm-up (one short epoch of each in-process variant; not recorded)
    run_bare(1)
    run_divekit("fast", 1)

    runs: dict[str, list[dict]] = {"bare loop": [], "divekit fast": [], "divekit scratch": []}
    trainer_per_epoch: dict[str, list[float]] = {}
    for repeat in range(args.repeats):  # interleaved, so load drift hits all variants alike
        runs["bare loop"].append(run_bare(args.epochs, seed=repeat))
        for impl in ("fast", "scratch"):
            r = run_divekit(impl, args.epochs)
            runs[f"divekit {impl}"].append(r)
            trainer_per_epoch.setdefault(f"divekit {impl}", r["trainer_examples_per_s"])
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

    rows = {name: summarize(r) for name, r in runs.items()}
    phase_loads.append(("divekit and bare loop (end)", loadavg()))

    if args.d2l_python and Path(args.d2l_python).exists():
        env = dict(os.environ)
        env.setdefault("FMNIST_DIR", str(Path(os.environ.get("DIVEKIT_DATA", "../shared/data")) / "fashion-mnist"))
        env.pop("PYTHONPATH", None)  # d2l's process needs no divekit
        configs = [("concise", None, "d2l 0.17 concise, num_workers=4 (d2l default)")]
        if not args.no_d2l_extras:
            configs += [("concise", 0, "d2l 0.17 concise, num_workers=0"),
                        ("scratch", None, "d2l 0.17 scratch, num_workers=4 (d2l default)")]
        for impl, workers, name in configs:
            phase_loads.append((name, loadavg()))
            out = run_d2l(args.d2l_python, impl, workers, args.epochs, args.d2l_repeats or args.repeats,
                          args.threads, args.tv_shim, env)
            rows[name] = summarize(out["runs"])
            print(f"{name} done", file=sys.stderr)
        notes.append(
            f"d2l: package d2l {out['d2l_version']} (PyPI) in a separate venv ({args.d2l_python}), run as a subprocess "
            "by `benchmarks/_d2l_softmax.py`: the body of `d2l.train_ch3` (`d2l.train_epoch_ch3` then "
            "`d2l.evaluate_accuracy` each epoch; its Animator plotting left out) on `d2l.load_data_fashion_mnist(256)`; "
            "model/loss/updater as in the book's §3.7 (concise: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "
            "normal(0, 0.01) weights, CrossEntropyLoss(reduction='none'), torch.optim.SGD lr 0.1) and §3.6 (scratch: "
            "W, b, softmax, cross_entropy, `d2l.sgd` lr 0.1). torchvision has no CPU build here, so "
            f"`{args.tv_shim}` stands in for torchvision.datasets.FashionMNIST/transforms.ToTensor (PIL image per "
            "sample, then ToTensor, as torchvision does). With 4 workers on this machine the DataLoader starts 4 "
            "processes per pass (train and test, each epoch) that compete with training for the cores.")
    else:
        notes.append("d2l: skipped (pass --d2l-python PATH to a venv python with d2l 0.17.x installed).")

    notes += [
        "divekit: `prepare_training('softmax-regression', impl=..., epochs=E, device='cpu').fit()` (the CLI's "
        "setup and trainer, no run folder, no progress bar); fast = nn.Linear + "
        "F.cross_entropy + torch.optim.SGD, scratch = divekit's scratch linear model, cross-entropy and SGD. "
        "Its loaders hold the uint8 tensors in memory (TensorLoader); no worker processes.",
        "bare loop: same uint8 tensors, torch.randperm per epoch, index_select + `.float() / 255`, nn.Linear(784, 10), "
        "F.cross_entropy, torch.optim.SGD(lr=0.1), loss sum and correct count kept on the device and read once "
        "per epoch; evaluation over the test tensors in batches of 256.",
        "One untimed warm-up epoch of the bare loop and of divekit fast runs first; repeats are interleaved "
        "(bare, divekit fast, divekit scratch) so that load changes hit every in-process variant alike.",
    ]

    total = time.perf_counter() - t_start
    phase_loads.append(("end", loadavg()))
    # the in-process variants are compared with each other, so their phase decides the warning; the
    # d2l phases raise the load themselves (4 DataLoader workers), so only their start is looked at
    watched = [load for name, load in phase_loads[:3] if load != "n/a"]
    busiest = max((float(x.split()[0]) for x in watched), default=0.0)
    if busiest >= 1.5:
        notes.insert(0, f"WARNING: the machine was busy (1-minute load average up to {busiest:.1f} on "
                        f"{os.cpu_count()} cores) while this ran; the numbers are depressed and noisy.")
    if waited >= 1:
        notes.append(f"Waited {waited:.0f} s for the load average to fall before measuring (--wait-idle).")
    meta = {
        **run_meta(Path(__file__).name, argv, torch.get_num_threads()),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "d2l_repeats": f" ({args.d2l_repeats} for each d2l variant)" if args.d2l_repeats and args.d2l_python else "",
        "phase_loads": phase_loads,
        "total_seconds": total,
    }
    text = render({"rows": rows, "trainer_per_epoch": trainer_per_epoch, "notes": notes}, meta)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
