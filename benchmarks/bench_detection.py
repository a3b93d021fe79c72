"""Object detection against the book's code (D2L §13.4, §13.7), in one run: TinySSD training and the box
functions (IoU of all pairs, NMS).

    DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_detection.py \
        [--epochs 2] [--repeats 2] [--threads 2] [--boxes 1000,3000,10000] [--box-rounds 3] \
        [--d2l-python .d2l-venv/bin/python] [--device cpu|cuda] [--skip-ssd] \
        [--wait-idle 900] [--out benchmarks/results/detection.md]

* SSD training: divekit's registered ``ssd`` recipe (TinySSD, SGD lr 0.2, weight decay 5e-4, batch 32)
  trained as ``divekit run ssd`` trains it (``common.train`` = ``prepare_training(...).fit()``), against
  ``benchmarks/_d2l_ssd.py``: the book's notebook code (TinySSD, ``calc_loss``, ``cls_eval``, ``bbox_eval``,
  its training loop) with d2l 0.17.6's ``multibox_prior``, ``multibox_target`` and ``load_data_bananas``,
  in d2l's own virtual environment. Both read the same files: the generated banana set (1,000 / 100
  images of 256x256 in the book's format, from the divekit cache). Repeats interleave divekit and d2l;
  each trains a fresh model for ``--epochs`` epochs. Images/s = training images / seconds of the
  training passes; quality = the book's training class error and bbox MAE after the last epoch.
* Boxes: IoU of all pairs of N boxes and greedy NMS (IoU threshold 0.5) on the same N boxes and scores,
  divekit's fast and scratch twins against ``d2l.box_iou`` / ``d2l.nms``; and on a batch of 32 images
  with TinySSD's 5,444 anchors, anchor labelling (``multibox_target``, 1 and 4 objects per image) and
  prediction (``multibox_detection`` with the book's class-blind NMS), median seconds per call. The
  boxes are clustered as a detector's are (``N / 20`` jittered copies around each of 20 objects,
  random scores). Outputs are checked equal to d2l's. Where torchvision imports (a GPU machine's image; it
  has no CPU build here), ``torchvision.ops.box_iou`` and ``nms`` are timed beside ours and its NMS
  checked equal too (``gpu_check.sh detection``).
* ``--device cuda`` runs every side on the GPU (each timing waits for it); ``--skip-ssd`` times the box
  functions only.
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

import torch
from common import fmt_ratio, loadavg, report_header, run_meta, train, wait_for_idle, write_atomic

HERE = Path(__file__).resolve().parent
D2L_NAME = "d2l (the book's TinySSD code, d2l 0.17.6 box functions)"


def run_divekit(impl: str, epochs: int, seed: int, num_train: int, device: str) -> dict:
    run = train("ssd", impl=impl, epochs=epochs, seed=seed, device=device, num_train=num_train)
    options = run["training"].options
    book = (options.lr, options.batch_size, options.weight_decay, options.dataset)
    assert book == (0.2, 32, 5e-4, "generated-bananas"), book  # the book's settings
    history = run["history"]
    images = run["training"].setup.data.train.num_examples * epochs
    return {"images_per_s": images / run["train_seconds"], "class_err": history[-1]["train_class_err"],
            "bbox_mae": history[-1]["train_bbox_mae"], "seconds": run["train_seconds"]}


def d2l_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # d2l's process needs no divekit
    return env


def run_d2l(python: str, data: Path, epochs: int, seed: int, threads: int, tv_shim: str, device: str) -> dict:
    cmd = [python, str(HERE / "_d2l_ssd.py"), "--task", "ssd", "--data", str(data), "--epochs", str(epochs),
           "--seed", str(seed), "--threads", str(threads), "--tv-shim", tv_shim, "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=d2l_env(), cwd=HERE)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    seconds = sum(e["seconds"] for e in out["epochs"])
    last = out["epochs"][-1]
    return {"images_per_s": sum(e["images"] for e in out["epochs"]) / seconds, "class_err": last["class_err"],
            "bbox_mae": last["bbox_mae"], "seconds": seconds, "d2l_version": out["d2l_version"]}


def clustered_boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n boxes (n, 4) in [0, 1] around 20 objects (jittered by up to a fifth of their size) and scores (n,)."""
    g = torch.Generator().manual_seed(seed)
    centres, sizes = torch.rand(20, 2, generator=g) * 0.8 + 0.1, torch.rand(20, 2, generator=g) * 0.2 + 0.05
    which = torch.randint(20, (n,), generator=g)
    c = centres[which] + (torch.rand(n, 2, generator=g) - 0.5) * 0.4 * sizes[which]
    s = sizes[which] * (1 + (torch.rand(n, 2, generator=g) - 0.5) * 0.4)
    return torch.cat((c - s / 2, c + s / 2), dim=1), torch.rand(n, generator=g)


def median_seconds(call, repeats: int, device: str = "cpu") -> float:
    """Median seconds of ``call`` over ``repeats`` calls after a warm-up; on a GPU each timing waits for
    the device (``torch.cuda.synchronize``)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    call()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torchvision_ops():
    """``torchvision.ops``, or None where torchvision does not import (here: no CPU build for this torch)."""
    try:
        import torchvision.ops
    except Exception:  # missing, or built for another torch (importing then raises)
        return None
    return torchvision.ops


def to_device(cases, device: str):
    """The tensors of nested dicts of cases on ``device``."""
    if isinstance(cases, dict):
        return {k: to_device(v, device) for k, v in cases.items()}
    return cases.to(device) if isinstance(cases, torch.Tensor) else cases


def batch_cases(seed: int = 0) -> tuple[dict, dict]:
    """Anchor labelling and detection on a batch of 32 images with TinySSD's 5444 anchors: labels with one
    object per image (the bananas) and with four; class probabilities (2 classes and background) and
    offsets as an untrained TinySSD gives them (softmax of N(0, 1) logits, N(0, 0.1) offsets)."""
    from divekit.ops import fast

    g = torch.Generator().manual_seed(seed)
    sizes = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]
    anchors = torch.cat([fast.multibox_prior(torch.zeros(1, 1, s, s), sizes=z, ratios=[1, 2, 0.5])
                         for s, z in zip((32, 16, 8, 4, 1), sizes)], dim=1)                    # (1, 5444, 4)
    targets = {}
    for m in (1, 4):
        boxes, _ = clustered_boxes(32 * m, seed + m)
        labels = torch.cat((torch.randint(3, (32 * m, 1), generator=g).float(), boxes.clamp(0, 1)), dim=1)
        targets[f"B32_M{m}"] = {"anchors": anchors, "labels": labels.reshape(32, m, 5)}
    logits = torch.randn(32, 3, anchors.shape[1], generator=g)
    detections = {"B32_A5444": {"cls_probs": torch.softmax(logits, dim=1), "anchors": anchors,
                                "offset_preds": torch.randn(32, anchors.shape[1] * 4, generator=g) * 0.1}}
    return targets, detections


def d2l_box_seconds(python: str, cases: dict, repeats: int, threads: int, tv_shim: str,
                    device: str) -> tuple[dict, dict]:
    """d2l's seconds per call on ``cases`` on ``device`` (see ``_d2l_ssd.py --task boxes``) and its outputs
    (on the CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "boxes.pt")
        torch.save(cases, path)
        cmd = [python, str(HERE / "_d2l_ssd.py"), "--task", "boxes", "--boxes", path, "--repeats", str(repeats),
               "--threads", str(threads), "--tv-shim", tv_shim, "--device", device]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=d2l_env(), cwd=HERE)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"], torch.load(path + ".d2l.pt")


def bench_boxes(sizes: list[int], repeats: int, rounds: int, python: str | None, threads: int,
                tv_shim: str, device: str) -> tuple[list[dict], dict]:
    """Seconds per call on ``device`` of divekit's twins, d2l's box functions and, where it imports,
    torchvision's ``box_iou`` and ``nms`` (medians over ``rounds`` rounds, each timing d2l and then the
    others, ``repeats`` calls each), and whether their outputs agree with d2l's (NMS: torchvision's too)."""
    from divekit.ops import fast, scratch

    tv = torchvision_ops()
    pairs = {n: dict(zip(("boxes", "scores"), clustered_boxes(n)), threshold=0.5) for n in sizes}
    targets, detections = batch_cases()
    cases = to_device({"pairs": pairs, "targets": targets, "detections": detections}, device)
    calls: dict[str, tuple[str, dict]] = {}  # d2l's key -> (what, {impl: call})
    for n, case in cases["pairs"].items():
        boxes, scores = case["boxes"], case["scores"]
        iou = {"fast": lambda b=boxes: fast.box_iou(b, b)}
        nms = {impl: lambda ops=ops, b=boxes, s=scores: ops.nms(b, s, 0.5)
               for impl, ops in (("fast", fast), ("scratch", scratch))}
        if tv is not None:
            iou["torchvision"] = lambda b=boxes: tv.box_iou(b, b)
            nms["torchvision"] = lambda b=boxes, s=scores: tv.nms(b, s, 0.5)
        calls[f"box_iou_{n}"] = (f"IoU of all pairs, N = {n:,}", iou)
        calls[f"nms_{n}"] = (f"NMS, N = {n:,} ({len(fast.nms(boxes, scores, 0.5))} kept)", nms)
    for name, case in cases["targets"].items():
        calls[f"multibox_target_{name}"] = (f"multibox_target, {name.replace('_', ', ')}, A = 5,444",
                                            {"fast": lambda c=case: fast.multibox_target(c["anchors"], c["labels"])})
    for name, case in cases["detections"].items():  # the book's class-blind NMS, as d2l's
        calls[f"multibox_detection_{name}"] = (
            f"multibox_detection, {name.replace('_', ', ')}, 2 classes",
            {impl: lambda ops=ops, c=case: ops.multibox_detection(c["cls_probs"], c["offset_preds"], c["anchors"],
                                                                  nms_threshold=0.5, per_class_nms=False)
             for impl, ops in (("fast", fast), ("scratch", scratch))})
    d2l_rounds, d2l_out, ours_rounds = [], {}, []
    for _ in range(rounds):
        if python:
            seconds, d2l_out = d2l_box_seconds(python, {"pairs": pairs, "targets": targets, "detections": detections},
                                               repeats, threads, tv_shim, device)
            d2l_rounds.append(seconds)
        ours_rounds.append({(key, impl): median_seconds(call, repeats, device)
                            for key, (_, impls) in calls.items() for impl, call in impls.items()})
    rows = []
    for key, (what, impls) in calls.items():
        row = {impl: statistics.median(r[(key, impl)] for r in ours_rounds) for impl in impls}
        rows.append({"what": what, **row, "d2l": statistics.median(r[key] for r in d2l_rounds) if d2l_rounds else None})
    agree = {}
    for key, (_, impls) in calls.items():
        if d2l_out and key in d2l_out:
            out, theirs = impls["fast"](), d2l_out[key]
            ours = tuple(t.cpu() for t in out) if isinstance(out, tuple) else out.cpu()
            if isinstance(ours, tuple):
                agree[key] = all(torch.allclose(a.float(), b.float(), atol=1e-5) for a, b in zip(ours, theirs))
            elif key.startswith("nms"):
                agree[key] = ours.tolist() == impls["scratch"]().tolist() == theirs.tolist() and (
                    "torchvision" not in impls or impls["torchvision"]().tolist() == theirs.tolist())
            else:
                agree[key] = torch.allclose(ours, theirs, atol=1e-5)
    return rows, agree


def render(ssd: dict[str, list[dict]], boxes: list[dict], same_nms: dict, meta: dict) -> str:
    lines = [
        *report_header("Object detection: TinySSD training and box functions (D2L §13.4, §13.7), divekit vs the "
                       "book's code", meta),
        f"- load average (1/5/15 min) at start: {meta['load_before']}; at end: {meta['load_after']}"
        + (f"; waited {meta['waited']:.0f} s for the load to fall (--wait-idle)" if meta["waited"] >= 1 else ""),
        f"- total benchmark wall time: {meta['total_seconds']:.0f} s",
        "",
    ]
    if ssd:
        lines += [
            f"## TinySSD training (§13.7), {meta['epochs']} epoch(s) x {meta['repeats']} interleaved repeats",
            "",
            f"Data: the generated banana set in the book's format ({meta['num_train']:,} training images of 256x256), "
            "the same files for both. Images/s over the training passes; class error and bbox MAE are the book's "
            "training metrics after the last epoch (medians over repeats).",
            "",
            "| variant | images/s | ratio vs d2l | class err | bbox MAE | per repeat (images/s) |",
            "|---|---:|---:|---:|---:|---|",
        ]

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    ref = median(ssd[D2L_NAME], "images_per_s") if ssd.get(D2L_NAME) else None
    for name, runs in ssd.items():
        speed = median(runs, "images_per_s")
        lines.append(f"| {name} | {speed:.1f} | {fmt_ratio(speed, ref)} | {median(runs, 'class_err'):.3e} | "
                     f"{median(runs, 'bbox_mae'):.3e} | " + ", ".join(f"{r['images_per_s']:.1f}" for r in runs) + " |")
    if ref:
        ours, theirs = ssd["divekit fast"], ssd[D2L_NAME]
        paired = ", ".join(f"{o['images_per_s'] / d['images_per_s']:.2f}x" for o, d in zip(ours, theirs))
        ratio = median(ours, "images_per_s") / ref
        better = all(median(ours, key) <= median(theirs, key) for key in ("class_err", "bbox_mae"))
        lines += ["", f"Target (at least 2x d2l at equal or better class error and bbox MAE): {ratio:.2f}x on the "
                      f"medians, paired by repeat {paired}; quality {'equal or better' if better else 'WORSE'} -> "
                      f"{'met' if ratio >= 2 and better else 'NOT met'}."]
    with_tv = any("torchvision" in r for r in boxes)
    lines += ["", f"## Box functions (§13.4) on {meta['device']}: seconds per call, medians over {meta['box_rounds']} "
                  f"rounds (d2l's timings, then divekit's{' and torchvision' + chr(39) + 's' if with_tv else ''}) of "
                  f"{meta['box_repeats']} calls", "",
              "| call | divekit fast | divekit scratch | d2l | d2l / divekit fast |"
              + (" torchvision | torchvision / divekit fast |" if with_tv else ""),
              "|---|---:|---:|---:|---:|" + ("---:|---:|" if with_tv else "")]
    for r in boxes:
        scratch = f"{r['scratch']:.2e}" if "scratch" in r else "—"
        d2l, speedup = (f"{r['d2l']:.2e}", fmt_ratio(r["d2l"], r["fast"])) if r.get("d2l") else ("—", "—")
        line = f"| {r['what']} | {r['fast']:.2e} | {scratch} | {d2l} | {speedup} |"
        if with_tv:
            line += (f" {r['torchvision']:.2e} | {fmt_ratio(r['torchvision'], r['fast'])} |" if "torchvision" in r
                     else " — | — |")
        lines.append(line)
    lines += ["", "Outputs equal to d2l's (NMS: the same boxes in the same order"
              + (", divekit's twins and torchvision's" if with_tv else ", both divekit twins")
              + "; labels and detections within 1e-5): "
              + (", ".join(f"{k} {v}" for k, v in same_nms.items()) or "not checked (no d2l)") + ".",
              "Target for the box functions: 10x d2l."
              + ("" if with_tv else " torchvision does not import here: no torchvision columns."), ""]
    if float(meta["load_before"].split()[0]) > meta["cores"]:
        lines += [f"The machine was shared with other jobs (load average above its {meta['cores']} cores): absolute "
                  "rates swing; the ratios within a repeat are the fairer comparison.", ""]
    lines += ["Notes:", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2, help="SSD epochs per repeat")
    p.add_argument("--num-train", type=int, default=1000,
                   help="training images of the generated banana set (the book's: 1000)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every process")
    p.add_argument("--scratch", action="store_true", help="also time divekit's scratch twin of TinySSD")
    p.add_argument("--skip-ssd", action="store_true", help="only the box functions")
    p.add_argument("--device", default="cpu", help="cpu, or cuda for every side on the GPU")
    p.add_argument("--boxes", default="1000,3000,10000", help="box counts for IoU and NMS")
    p.add_argument("--box-repeats", type=int, default=5, help="calls per timing of a box function")
    p.add_argument("--box-rounds", type=int, default=3, help="rounds of timings, d2l's then divekit's, for the medians")
    p.add_argument("--d2l-python", default=".d2l-venv/bin/python", help="python of a venv with d2l 0.17.x")
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py", help="torchvision stand-in for d2l")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for the 1-minute load average to fall below 1")
    p.add_argument("--out", type=Path, default=HERE / "results" / "detection.md")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    tv_shim = str(Path(args.tv_shim).resolve())
    d2l_python = str(Path(args.d2l_python).absolute())  # d2l's side runs from benchmarks/; keep the venv's link
    waited = wait_for_idle(args.wait_idle)
    start, load_before = time.perf_counter(), loadavg()
    from divekit.data.detection import generated_folder, load_detection

    with_d2l = Path(args.d2l_python).exists()
    ssd: dict[str, list[dict]] = {}
    if not args.skip_ssd:
        load_detection("generated-bananas", num_train=args.num_train)  # draw (once) and read it outside every timing
        data = generated_folder("generated-bananas", args.num_train, 100, 256, 0)
        ssd = {"divekit fast": [], **({"divekit scratch": []} if args.scratch else {}),
               **({D2L_NAME: []} if with_d2l else {})}
    d2l_version = "0.17.6"
    for repeat in range(args.repeats if ssd else 0):
        ssd["divekit fast"].append(run_divekit("fast", args.epochs, repeat, args.num_train, args.device))
        if args.scratch:
            ssd["divekit scratch"].append(run_divekit("scratch", args.epochs, repeat, args.num_train, args.device))
        if with_d2l:
            ssd[D2L_NAME].append(run_d2l(d2l_python, data, args.epochs, repeat, args.threads, tv_shim, args.device))
            d2l_version = ssd[D2L_NAME][-1]["d2l_version"]
        print(f"ssd repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    boxes, same = bench_boxes([int(n) for n in args.boxes.split(",")], args.box_repeats, args.box_rounds,
                              d2l_python if with_d2l else None, args.threads, tv_shim, args.device)
    notes = [
        f"divekit: `prepare_training('ssd', epochs=E, seed=repeat, device={args.device!r}).fit()`: the uint8 images "
        "stay in one tensor (TensorLoader), anchors are labelled for the whole batch at once (`ops.multibox_target`: "
        "one IoU tensor, M argmax steps), the model is in channels-last memory format on the CPU.",
        f"d2l: d2l {d2l_version} (PyPI) in its own venv (`--d2l-python`), run by `benchmarks/_d2l_ssd.py`: `load_data_bananas` "
        "(a Dataset of uint8 images, `.float()` per image, DataLoader without workers as the book's), "
        "`multibox_target` with its Python loop over the images of a batch.",
        f"torchvision has no CPU build here: `{args.tv_shim}` stands in, and `torchvision.io.read_image` is PIL's "
        "decoding (the images are read once, before training)." if torchvision_ops() is None else
        "torchvision imports here: d2l uses it as the book does, and its `box_iou` and `nms` are timed beside ours.",
        "The book feeds the images as floats in [0, 255], divekit in [0, 1]; with batch normalization after the first "
        "convolution the network computes the same function either way.",
    ]
    meta = {**run_meta(Path(__file__).name, argv, torch.get_num_threads(), args.device), "epochs": args.epochs,
            "num_train": args.num_train, "repeats": args.repeats, "box_rounds": args.box_rounds,
            "box_repeats": args.box_repeats, "load_before": load_before, "load_after": loadavg(),
            "waited": waited, "total_seconds": time.perf_counter() - start, "notes": notes}
    text = render(ssd, boxes, same, meta)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
