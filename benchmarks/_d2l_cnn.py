"""d2l's own LeNet (D2L §6.6) and ResNet-18 (D2L §7.6) training, timed; run by ``bench_cnn.py``.

Run with the Python of a virtual environment that has the d2l package (0.17.x) installed; this
file does not import divekit. It prints one JSON object on stdout.

The networks are the book's code verbatim (§6.6 ``net = nn.Sequential(...)``; §7.6 ``b1``,
``resnet_block`` with ``d2l.Residual``, ``net``). The training loop is the body of
``d2l.train_ch6`` verbatim (Xavier-uniform init of Linear/Conv2d, ``torch.optim.SGD``,
``nn.CrossEntropyLoss()``, ``d2l.Accumulator``, ``d2l.accuracy``, ``d2l.evaluate_accuracy_gpu``
after each epoch) minus its ``Animator`` (notebook plotting), with wall-clock timers around the
training pass and the evaluation pass. Data: ``d2l.load_data_fashion_mnist(batch_size,
resize=...)`` with d2l's DataLoaders (``num_workers = d2l.get_dataloader_workers()`` = 4);
torchvision's FashionMNIST/Resize/ToTensor come from the stand-in ``tv_shim`` (PIL image per
sample, as torchvision does).

``--batches N`` times a slice instead of whole epochs: N + 1 training batches, the first one
(which also starts the DataLoader's worker processes) left out of the timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _d2l_softmax import load_shim


def book_lenet(nn):
    """D2L §6.6.1, verbatim."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))


def book_resnet18(nn, d2l):
    """D2L §7.6.2, verbatim."""
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(d2l.Residual(input_channels, num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(d2l.Residual(num_channels, num_channels))
        return blk

    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))
    return nn.Sequential(b1, b2, b3, b4, b5, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=("lenet", "resnet"), default="lenet")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batches", type=int, default=None, help="time only this many training batches (after one)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.9)
    p.add_argument("--resize", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py")
    p.add_argument("--device", default="cpu", help="cpu or cuda (train_ch6 takes d2l.try_gpu())")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    shimmed = load_shim(args.tv_shim)
    import d2l
    from d2l import torch as d2lt
    from torch import nn

    torch.manual_seed(args.seed)
    train_iter, test_iter = d2lt.load_data_fashion_mnist(args.batch_size, resize=args.resize)
    net = book_lenet(nn) if args.model == "lenet" else book_resnet18(nn, d2lt)
    device = torch.device(args.device)

    # -- the body of d2l.train_ch6 (0.17.x), Animator left out, timers added --------------------
    def init_weights(m):
        if type(m) == nn.Linear or type(m) == nn.Conv2d:
            nn.init.xavier_uniform_(m.weight)
    net.apply(init_weights)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr)
    loss = nn.CrossEntropyLoss()
    epochs = []
    for epoch in range(1 if args.batches else args.epochs):
        metric = d2lt.Accumulator(3)
        net.train()
        t0 = time.perf_counter()
        for i, (X, y) in enumerate(train_iter):
            optimizer.zero_grad()
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric.add(l * X.shape[0], d2lt.accuracy(y_hat, y), X.shape[0])
            train_l = metric[0] / metric[2]
            train_acc = metric[1] / metric[2]
            if args.batches and i == 0:
                t0, metric = time.perf_counter(), d2lt.Accumulator(3)  # leave the first batch out
            elif args.batches and i == args.batches:
                break
        t1 = time.perf_counter()
        record = {"train_seconds": t1 - t0, "train_examples": int(metric[2]), "train_loss": train_l, "train_acc": train_acc}
        if not args.batches:
            record["test_acc"] = d2lt.evaluate_accuracy_gpu(net, test_iter)
            record["eval_seconds"] = time.perf_counter() - t1
        epochs.append(record)

    print(json.dumps({
        "d2l_version": getattr(d2l, "__version__", "?"),
        "model": args.model,
        "workers": d2lt.get_dataloader_workers(),
        "tv_shim": shimmed,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "epochs": epochs,
    }))


if __name__ == "__main__":
    main()
