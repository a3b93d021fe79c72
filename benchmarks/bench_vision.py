"""Computer vision (D2L §13.1, §13.11): augmentation throughput and FCN training speed, in one run.

    DIVEKIT_DATA=../shared/data PYTHONPATH=src python benchmarks/bench_vision.py \
        [--repeats 3] [--threads 2] [--d2l-python /path/to/d2l-venv/bin/python] [--out benchmarks/results/vision.md]

Augmentation (images/s, the same decoded uint8 images in, float tensors ready for the model out):

* ``divekit``: the batched transforms of ``divekit.data.transforms`` on the CPU, one call per
  minibatch (every example its own draws);
* ``PIL per image``: the book's pipeline as torchvision runs it on PIL images, one image at a time
  (``_tv_vision.pil_pipeline``: torchvision's RandomResizedCrop, flip, ColorJitter with PIL's
  ``ImageEnhance`` and an HSV hue shift, ToTensor, Normalize, written out because torchvision does
  not import here), in one process (d2l's DataLoader runs it in 4 worker processes, which on this
  2-core machine can give it at most about 2x);
* ``kornia``: ``kornia.augmentation`` (RandomResizedCrop, RandomHorizontalFlip, ColorJitter,
  Normalize in an ``AugmentationSequential``) on the same float batches.

Two pipelines: the book's fine-tuning one (§13.2: RandomResizedCrop to 224 from 256x256 photos,
flip, the §13.1 colour jitter of 0.5 each, ImageNet normalisation) and its CIFAR-10 one (§13.1.2:
flip of 32x32 images, ToTensor).

FCN (images/s of training steps, after a warm-up batch): divekit's ``fcn`` (fast twin; its body in
torchvision's layout; the fcn demo's loader: uint8 images in memory, random crops, normalisation on
the device; SGD) against the book's FCN code run by d2l 0.17.6 (``_d2l_fcn.py``: ``VOCSegDataset``,
``train_batch_ch13``), both on the same generated VOC-format folder, crop, batch size and 21 classes.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_softmax import loadavg, report_header, run_meta, write_atomic  # noqa: E402

import _tv_vision  # noqa: E402


def photo_batch(count: int, size: int, seed: int) -> torch.Tensor:
    """uint8 (count, 3, size, size) crops of the bundled photographs (the photos extra)."""
    from divekit.data.photos import load_photos, random_crops

    return random_crops(load_photos(), count, size, generator=torch.Generator().manual_seed(seed))


def divekit_pipeline(kind: str):
    from divekit.data.transforms import ColorJitter, Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop

    if kind == "cifar":
        return RandomHorizontalFlip()
    return Compose([RandomResizedCrop(224), RandomHorizontalFlip(), ColorJitter(0.5, 0.5, 0.5, 0.5), Normalize()])


def kornia_pipeline(kind: str):
    import kornia.augmentation as K

    if kind == "cifar":
        return K.RandomHorizontalFlip()
    return K.AugmentationSequential(
        K.RandomResizedCrop((224, 224)), K.RandomHorizontalFlip(), K.ColorJitter(0.5, 0.5, 0.5, 0.5, p=1.0),
        K.Normalize(mean=torch.tensor(_tv_vision.IMAGENET_MEAN), std=torch.tensor(_tv_vision.IMAGENET_STD)))


def time_augmentation(kind: str, images: torch.Tensor, batch_size: int, which: str) -> float:
    """Images per second of one pass of ``which`` pipeline over ``images`` in minibatches."""
    from divekit.data.batch import Split

    start = time.perf_counter()
    if which == "PIL per image":
        from PIL import Image

        pictures = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]  # decoded, as in a Dataset
        start = time.perf_counter()
        step = _tv_vision.pil_flip_pipeline if kind == "cifar" else _tv_vision.pil_pipeline
        for i in range(0, len(pictures), batch_size):
            torch.stack([step(p) for p in pictures[i:i + batch_size]])  # what the DataLoader collates
    elif which == "divekit":
        pipeline, generator = divekit_pipeline(kind), torch.Generator().manual_seed(0)
        for i in range(0, len(images), batch_size):
            X = images[i:i + batch_size].float().div_(255)  # what the TensorLoader does
            pipeline(Split(X, torch.zeros(len(X))), generator)
    else:
        pipeline = kornia_pipeline(kind)
        for i in range(0, len(images), batch_size):
            X = images[i:i + batch_size].float().div_(255)
            pipeline(X)
    return len(images) / (time.perf_counter() - start)


def divekit_fcn(voc: Path, batch_size: int, crop: tuple[int, int], batches: int, warmup: int, seed: int) -> dict:
    """Training steps of the fcn demo's model and loader (the trainer's step, written out to time it)."""
    from divekit.data.transforms import Normalize
    from divekit.data.voc import RandomCropLoader, read_voc
    from divekit.models.registry import create_model
    from divekit.ops import fast
    from divekit.optim import create_optimizer
    from divekit.train.device import prefer_channels_last
    from divekit.train.tasks import PixelClassification

    t0 = time.perf_counter()
    data = read_voc(voc, "train", crop)
    load_seconds = time.perf_counter() - t0
    torch.manual_seed(seed)
    model = prefer_channels_last(create_model("fcn", fast, input_shape=(3, *crop), num_classes=21), fast,
                                 torch.device("cpu"))
    loader = RandomCropLoader(data, crop, batch_size, shuffle=True, seed=seed, transform=Normalize())
    task = PixelClassification(fast.cross_entropy, 21)
    optimizer = create_optimizer("sgd", model.parameters(), lr=0.001, weight_decay=1e-3)
    model.train()
    steps, images, start = 0, 0, None
    for batch in loader:
        if steps == warmup:
            start = time.perf_counter()
        out = task.step(model, batch, training=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        steps += 1
        if steps > warmup:
            images += len(batch)
        if steps == warmup + batches:
            break
    return {"images_per_s": images / (time.perf_counter() - start), "load_seconds": load_seconds}


def d2l_fcn(python: str, voc: Path, batch_size: int, crop: tuple[int, int], batches: int, warmup: int, seed: int,
            threads: int) -> dict:
    cmd = [python, str(HERE / "_d2l_fcn.py"), "--voc", str(voc), "--batch-size", str(batch_size), "--crop",
           *map(str, crop), "--batches", str(batches), "--warmup", str(warmup), "--seed", str(seed),
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(aug: dict, fcn: dict, meta: dict) -> str:
    lines = [
        *report_header("Computer vision: augmentation throughput and FCN training against d2l (D2L §13.1, §13.11)",
                       meta),
        f"- load average (1/5/15 min) before: {meta['load_before']}; after: {meta['load_after']}; "
        + ("measured while other jobs shared the machine" if float(meta['load_before'].split()[0]) > 1.5
           else "the machine was idle"),
        f"- {meta['repeats']} repeats, the pipelines interleaved within each; medians; total wall time "
        f"{meta['total_seconds']:.0f} s",
        "",
        "## Augmentation (images/s; decoded uint8 images in, float tensors out)",
        "",
        "| pipeline | images | divekit (batched) | PIL per image | kornia | divekit / PIL | divekit / kornia |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind, row in aug.items():
        d, p, k = (statistics.median(row[w]) for w in ("divekit", "PIL per image", "kornia"))
        lines.append(f"| {row['label']} | {row['images']} | {d:,.0f} | {p:,.0f} | {k:,.0f} | {d / p:.1f}x | "
                     f"{d / k:.2f}x |")
    lines += ["", "## FCN training (images/s of training steps after the warm-up)", "",
              f"Same generated VOC-format folder ({fcn['images']} training scenes), "
              f"crop {fcn['crop'][0]}x{fcn['crop'][1]}, "
              f"batch {fcn['batch_size']}, 21 classes, {fcn['batches']} timed batches per repeat, SGD lr 0.001, "
              "weight decay 0.001.", "",
              "| | divekit fcn (fast) | d2l (book's code) | divekit / d2l |", "|---|---:|---:|---:|"]
    if fcn["d2l"]:
        d, t = statistics.median(fcn["divekit"]), statistics.median(fcn["d2l"])
        lines.append(f"| images/s | {d:,.1f} | {t:,.1f} | {d / t:.2f}x |")
        lines.append(f"| data loading before training (s) | {statistics.median(fcn['divekit_load']):.1f} | "
                     f"{statistics.median(fcn['d2l_load']):.1f} | |")
    else:
        lines.append(f"| images/s | {statistics.median(fcn['divekit']):,.1f} | not run (no --d2l-python) | |")
    lines += ["", "Per repeat: " + "; ".join(f"{k}: {', '.join(f'{v:,.1f}' for v in fcn[k])}"
                                              for k in ("divekit", "d2l") if fcn[k]), "",
              "Notes:", "",
              "- The PIL pipeline is the book's torchvision pipeline written out for PIL (torchvision does not import "
              "here); d2l runs it inside 4 DataLoader worker processes, which on 2 cores buys it at most about 2x.",
              "- kornia 0.9.0 from PyPI (installed without changing torch). Its ColorJitter and ours follow "
              "torchvision's definitions; both draw every example's parameters separately.",
              "- FCN: no ImageNet weights on this machine, so both ResNet-18 bodies start from random weights; the "
              "computation per step is the same. d2l's loader converts every label with its 256^3-entry colour "
              "table and holds the images as float32; divekit holds uint8 and reads palette indices.",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every process")
    p.add_argument("--hotdog-images", type=int, default=256)
    p.add_argument("--cifar-images", type=int, default=4096)
    p.add_argument("--fcn-scenes", type=int, default=96)
    p.add_argument("--fcn-batches", type=int, default=3)
    p.add_argument("--fcn-batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, nargs=2, default=(96, 128))
    p.add_argument("--d2l-python", default=None)
    p.add_argument("--out", type=Path, default=HERE / "results" / "vision.md")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    random.seed(0)
    load_before, t_start = loadavg(), time.perf_counter()
    inputs = {"hotdog": photo_batch(args.hotdog_images, 256, seed=0),
              "cifar": photo_batch(args.cifar_images, 32, seed=1)}
    labels = {"hotdog": "fine-tuning: RandomResizedCrop 224, flip, ColorJitter 0.5, Normalize",
              "cifar": "CIFAR-10: flip, ToTensor"}
    aug = {kind: {"label": labels[kind], "images": f"{len(x)} x {x.shape[-1]}x{x.shape[-1]}", "divekit": [],
                  "PIL per image": [], "kornia": []} for kind, x in inputs.items()}
    for _ in range(args.repeats):
        for kind, images in inputs.items():
            for which in ("divekit", "PIL per image", "kornia"):
                aug[kind][which].append(time_augmentation(kind, images, 64 if kind == "hotdog" else 256, which))

    from divekit.data.shapes import SHAPES, write_voc_standin

    fcn = {"divekit": [], "d2l": [], "divekit_load": [], "d2l_load": [], "crop": tuple(args.crop),
           "batch_size": args.fcn_batch_size, "batches": args.fcn_batches, "images": args.fcn_scenes}
    with tempfile.TemporaryDirectory() as tmp:
        h, w = args.crop
        voc = write_voc_standin(Path(tmp) / "voc", SHAPES[:5], {"train": args.fcn_scenes, "val": 4},
                                image_size=((h + h // 6, h + h // 2), (w + w // 6, w + w // 2)), seed=0)
        for repeat in range(args.repeats):
            ours = divekit_fcn(voc, args.fcn_batch_size, tuple(args.crop), args.fcn_batches, 1, repeat)
            fcn["divekit"].append(ours["images_per_s"])
            fcn["divekit_load"].append(ours["load_seconds"])
            if args.d2l_python:
                theirs = d2l_fcn(args.d2l_python, voc, args.fcn_batch_size, tuple(args.crop), args.fcn_batches, 1,
                                 repeat, args.threads)
                fcn["d2l"].append(theirs["images_per_s"])
                fcn["d2l_load"].append(theirs["load_seconds"])
    meta = {**run_meta(Path(__file__).name, argv, torch.get_num_threads()), "repeats": args.repeats,
            "load_before": load_before, "load_after": loadavg(), "total_seconds": time.perf_counter() - t_start}
    text = render(aug, fcn, meta)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
