"""d2l's own FCN training (D2L §13.11), timed; run by ``bench_vision.py``.

Run with the Python of a virtual environment that has the d2l package (0.17.x); this file does not
import divekit. It prints one JSON object on stdout.

The network is the book's notebook code (fcn.md, classic edition): ``torchvision.models.resnet18``
minus its last two children, ``final_conv`` (1x1, 512 -> 21) and ``transpose_conv`` (k 64, padding
16, stride 32) initialised with the book's ``bilinear_kernel``; the loss is the book's
``F.cross_entropy(..., reduction='none').mean(1).mean(1)``; SGD lr 0.001, weight decay 0.001. The
data is ``d2l.load_data_voc(batch_size, crop_size)`` (d2l's ``VOCSegDataset``: all images read into
memory as float32, ``voc_rand_crop`` per example, the 256^3 colour table per label, 4 loader
workers), pointed at a VOC-format folder. Each step is ``d2l.train_batch_ch13``, the body of
``d2l.train_ch13`` minus its Animator. torchvision comes from the stand-ins
(``../shared/bench/tv_shim.py`` and ``_tv_vision.py``): no ImageNet weights, so the ResNet-18 has
random weights (the same computation).

The first ``--warmup`` batches (which also start the loader's worker processes) are left out of the timing.
"""

from __future__ import annotations

import argparse
import json
import time

from _d2l_softmax import load_shim


def bilinear_kernel(torch, in_channels, out_channels, kernel_size):
    """D2L §13.11.2, verbatim."""
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = (torch.arange(kernel_size).reshape(-1, 1),
          torch.arange(kernel_size).reshape(1, -1))
    filt = (1 - torch.abs(og[0] - center) / factor) * \
           (1 - torch.abs(og[1] - center) / factor)
    weight = torch.zeros((in_channels, out_channels,
                          kernel_size, kernel_size))
    weight[range(in_channels), range(out_channels), :, :] = filt
    return weight


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--voc", required=True, help="a VOC-format folder (JPEGImages/, SegmentationClass/, ImageSets/)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop", type=int, nargs=2, default=(96, 128))
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load_shim("../shared/bench/tv_shim.py")
    import _tv_vision

    _tv_vision.install()
    import torchvision
    from d2l import torch as d2l

    d2l.download_extract = lambda name, folder=None: args.voc

    # D2L §13.11.1, verbatim but for pretrained=False (no ImageNet weights here)
    pretrained_net = torchvision.models.resnet18(pretrained=False)
    net = nn.Sequential(*list(pretrained_net.children())[:-2])
    num_classes = 21
    net.add_module('final_conv', nn.Conv2d(512, num_classes, kernel_size=1))
    net.add_module('transpose_conv', nn.ConvTranspose2d(num_classes, num_classes,
                                                        kernel_size=64, padding=16, stride=32))
    W = bilinear_kernel(torch, num_classes, num_classes, 64)
    net.transpose_conv.weight.data.copy_(W)

    def loss(inputs, targets):
        return F.cross_entropy(inputs, targets, reduction='none').mean(1).mean(1)

    lr, wd, devices = 0.001, 1e-3, [torch.device("cpu")]
    trainer = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=wd)
    t0 = time.perf_counter()
    train_iter, _ = d2l.load_data_voc(args.batch_size, tuple(args.crop))
    load_seconds = time.perf_counter() - t0
    net = nn.DataParallel(net, device_ids=devices).to(devices[0])  # as d2l.train_ch13
    steps, images, start = 0, 0, None
    for X, y in train_iter:
        if steps == args.warmup:
            start = time.perf_counter()
        l, acc = d2l.train_batch_ch13(net, X, y, loss, trainer, devices)
        steps += 1
        if steps > args.warmup:
            images += X.shape[0]
        if steps == args.warmup + args.batches:
            break
    seconds = time.perf_counter() - start
    print(json.dumps({"images_per_s": images / seconds, "images": images, "seconds": seconds,
                      "load_seconds": load_seconds, "last_loss_sum": float(l.detach())}))


if __name__ == "__main__":
    main()
