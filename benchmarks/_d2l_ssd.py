"""d2l's own TinySSD training (D2L 0.17.x §13.7) and d2l's box functions, timed; run by ``bench_detection.py``.

Run with the Python of a virtual environment that has the d2l package (0.17.x) installed; this file
does not import divekit. It prints one JSON object on stdout.

* ``--task ssd``: the book's notebook code copied from ``chapter_computer-vision/ssd.md`` of
  d2l-ai/d2l-en, branch r0.17 (``cls_predictor``, ``bbox_predictor``, ``flatten_pred``,
  ``concat_preds``, ``down_sample_blk``, ``base_net``, ``get_blk``, ``blk_forward``, ``sizes``,
  ``ratios``, ``TinySSD``, ``calc_loss``, ``cls_eval``, ``bbox_eval`` and the training loop, minus
  its ``Animator``), on ``d2l.load_data_bananas(32)`` with the package's ``multibox_prior`` and
  ``multibox_target``. ``d2l.download_extract`` is pointed at ``--data`` (a folder with
  ``bananas_train`` and ``bananas_val`` in the book's format), and ``torchvision.io.read_image`` (the
  stand-in ``tv_shim`` has none) decodes each PNG with PIL into a uint8 (3, H, W) tensor, as
  torchvision's does.
* ``--task boxes``: ``d2l.box_iou`` and ``d2l.nms`` on the boxes and scores of ``--boxes`` (a
  ``torch.save``d dict), and ``d2l.multibox_target`` / ``d2l.multibox_detection`` on its batches, median
  seconds over ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
from _d2l_softmax import load_shim


def read_image(path):
    """torchvision.io.read_image for the stand-in: the file's pixels as uint8 (3, H, W)."""
    import torch
    from PIL import Image

    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def book_ssd(d2l, torch, nn, batch_size: int, num_epochs: int, device) -> dict:
    """D2L §13.7, verbatim from the notebook (pytorch tab), the Animator left out, timers per epoch."""
    def cls_predictor(num_inputs, num_anchors, num_classes):
        return nn.Conv2d(num_inputs, num_anchors * (num_classes + 1),
                         kernel_size=3, padding=1)

    def bbox_predictor(num_inputs, num_anchors):
        return nn.Conv2d(num_inputs, num_anchors * 4, kernel_size=3, padding=1)

    def flatten_pred(pred):
        return torch.flatten(pred.permute(0, 2, 3, 1), start_dim=1)

    def concat_preds(preds):
        return torch.cat([flatten_pred(p) for p in preds], dim=1)

    def down_sample_blk(in_channels, out_channels):
        blk = []
        for _ in range(2):
            blk.append(nn.Conv2d(in_channels, out_channels,
                                 kernel_size=3, padding=1))
            blk.append(nn.BatchNorm2d(out_channels))
            blk.append(nn.ReLU())
            in_channels = out_channels
        blk.append(nn.MaxPool2d(2))
        return nn.Sequential(*blk)

    def base_net():
        blk = []
        num_filters = [3, 16, 32, 64]
        for i in range(len(num_filters) - 1):
            blk.append(down_sample_blk(num_filters[i], num_filters[i+1]))
        return nn.Sequential(*blk)

    def get_blk(i):
        if i == 0:
            blk = base_net()
        elif i == 1:
            blk = down_sample_blk(64, 128)
        elif i == 4:
            blk = nn.AdaptiveMaxPool2d((1,1))
        else:
            blk = down_sample_blk(128, 128)
        return blk

    def blk_forward(X, blk, size, ratio, cls_predictor, bbox_predictor):
        Y = blk(X)
        anchors = d2l.multibox_prior(Y, sizes=size, ratios=ratio)
        cls_preds = cls_predictor(Y)
        bbox_preds = bbox_predictor(Y)
        return (Y, anchors, cls_preds, bbox_preds)

    sizes = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79],
             [0.88, 0.961]]
    ratios = [[1, 2, 0.5]] * 5
    num_anchors = len(sizes[0]) + len(ratios[0]) - 1

    class TinySSD(nn.Module):
        def __init__(self, num_classes, **kwargs):
            super(TinySSD, self).__init__(**kwargs)
            self.num_classes = num_classes
            idx_to_in_channels = [64, 128, 128, 128, 128]
            for i in range(5):
                # Equivalent to the assignment statement `self.blk_i = get_blk(i)`
                setattr(self, f'blk_{i}', get_blk(i))
                setattr(self, f'cls_{i}', cls_predictor(idx_to_in_channels[i],
                                                        num_anchors, num_classes))
                setattr(self, f'bbox_{i}', bbox_predictor(idx_to_in_channels[i],
                                                          num_anchors))

        def forward(self, X):
            anchors, cls_preds, bbox_preds = [None] * 5, [None] * 5, [None] * 5
            for i in range(5):
                # Here `getattr(self, 'blk_%d' % i)` accesses `self.blk_i`
                X, anchors[i], cls_preds[i], bbox_preds[i] = blk_forward(
                    X, getattr(self, f'blk_{i}'), sizes[i], ratios[i],
                    getattr(self, f'cls_{i}'), getattr(self, f'bbox_{i}'))
            anchors = torch.cat(anchors, dim=1)
            cls_preds = concat_preds(cls_preds)
            cls_preds = cls_preds.reshape(
                cls_preds.shape[0], -1, self.num_classes + 1)
            bbox_preds = concat_preds(bbox_preds)
            return anchors, cls_preds, bbox_preds

    train_iter, _ = d2l.load_data_bananas(batch_size)
    net = TinySSD(num_classes=1)
    trainer = torch.optim.SGD(net.parameters(), lr=0.2, weight_decay=5e-4)

    cls_loss = nn.CrossEntropyLoss(reduction='none')
    bbox_loss = nn.L1Loss(reduction='none')

    def calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks):
        batch_size, num_classes = cls_preds.shape[0], cls_preds.shape[2]
        cls = cls_loss(cls_preds.reshape(-1, num_classes),
                       cls_labels.reshape(-1)).reshape(batch_size, -1).mean(dim=1)
        bbox = bbox_loss(bbox_preds * bbox_masks,
                         bbox_labels * bbox_masks).mean(dim=1)
        return cls + bbox

    def cls_eval(cls_preds, cls_labels):
        # Because the class prediction results are on the final dimension,
        # `argmax` needs to specify this dimension
        return float((cls_preds.argmax(dim=-1).type(
            cls_labels.dtype) == cls_labels).sum())

    def bbox_eval(bbox_preds, bbox_labels, bbox_masks):
        return float((torch.abs((bbox_labels - bbox_preds) * bbox_masks)).sum())

    timer = d2l.Timer()
    net = net.to(device)
    epochs = []
    for epoch in range(num_epochs):
        # Sum of training accuracy, no. of examples in sum of training accuracy,
        # Sum of absolute error, no. of examples in sum of absolute error
        metric = d2l.Accumulator(4)
        net.train()
        t0 = time.perf_counter()
        for features, target in train_iter:
            timer.start()
            trainer.zero_grad()
            X, Y = features.to(device), target.to(device)
            # Generate multiscale anchor boxes and predict their classes and
            # offsets
            anchors, cls_preds, bbox_preds = net(X)
            # Label the classes and offsets of these anchor boxes
            bbox_labels, bbox_masks, cls_labels = d2l.multibox_target(anchors, Y)
            # Calculate the loss function using the predicted and labeled values
            # of the classes and offsets
            l = calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels,
                          bbox_masks)
            l.mean().backward()
            trainer.step()
            metric.add(cls_eval(cls_preds, cls_labels), cls_labels.numel(),
                       bbox_eval(bbox_preds, bbox_labels, bbox_masks),
                       bbox_labels.numel())
        cls_err, bbox_mae = 1 - metric[0] / metric[1], metric[2] / metric[3]
        epochs.append({"seconds": time.perf_counter() - t0, "images": len(train_iter.dataset),
                       "class_err": cls_err, "bbox_mae": bbox_mae})
    return {"epochs": epochs, "book_examples_per_s": len(train_iter.dataset) * num_epochs / timer.stop()}


def book_boxes(d2l, torch, path: str, repeats: int, device) -> dict:
    """d2l's box functions on the cases of ``path`` on ``device``, median seconds per call: ``box_iou`` of
    all pairs and ``nms`` of N boxes; ``multibox_target`` and ``multibox_detection`` on a batch. Their
    outputs are saved beside ``path`` (``<path>.d2l.pt``, on the CPU) for the caller to compare."""

    def to(cases):
        if isinstance(cases, dict):
            return {k: to(v) for k, v in cases.items()}
        return cases.to(device) if isinstance(cases, torch.Tensor) else cases  # a threshold stays a float

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cases = to(torch.load(path))
    times, outputs = {}, {}
    calls = {}
    for n, case in cases["pairs"].items():
        boxes, scores, threshold = case["boxes"], case["scores"], case["threshold"]
        calls[f"box_iou_{n}"] = lambda boxes=boxes: d2l.box_iou(boxes, boxes)
        calls[f"nms_{n}"] = lambda boxes=boxes, scores=scores, threshold=threshold: d2l.nms(boxes, scores, threshold)
    for name, case in cases["targets"].items():
        calls[f"multibox_target_{name}"] = lambda case=case: d2l.multibox_target(case["anchors"], case["labels"])
    for name, case in cases["detections"].items():
        calls[f"multibox_detection_{name}"] = lambda case=case: d2l.multibox_detection(
            case["cls_probs"], case["offset_preds"], case["anchors"], nms_threshold=0.5)
    for name, call in calls.items():
        outputs[name] = call()  # also the warm-up
        sync()
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            sync()
            runs.append(time.perf_counter() - t0)
        times[name] = statistics.median(runs)
    cpu = {k: tuple(t.cpu() for t in v) if isinstance(v, tuple) else v.cpu() for k, v in outputs.items()
           if not k.startswith("box_iou")}
    torch.save(cpu, path + ".d2l.pt")
    return {"seconds": times}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=("ssd", "boxes"), required=True)
    p.add_argument("--data", help="a folder with bananas_train/ and bananas_val/ in the book's format")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--boxes", help="a torch.save'd dict of cases (see bench_detection.py)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shimmed = load_shim(args.tv_shim)
    import torchvision

    if not hasattr(torchvision, "io"):  # the stand-in has no image decoding
        import types

        torchvision.io = types.SimpleNamespace(read_image=read_image)
        sys.modules["torchvision.io"] = torchvision.io
    import d2l
    from d2l import torch as d2lt

    d2lt.download_extract = lambda name, folder=None: os.path.abspath(args.data)
    result = (book_ssd(d2lt, torch, nn, args.batch_size, args.epochs, torch.device(args.device)) if args.task == "ssd"
              else book_boxes(d2lt, torch, args.boxes, args.repeats, torch.device(args.device)))
    print(json.dumps({"d2l_version": getattr(d2l, "__version__", "?"), "tv_shim": shimmed, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "python": sys.version.split()[0], **result}))


if __name__ == "__main__":
    main()
