"""d2l's own softmax regression (D2L 0.17.x, §3.6 scratch / §3.7 concise), timed per epoch.

Run by ``bench_softmax.py`` with the Python of a virtual environment that has d2l installed (this
file does not import divekit). It prints one JSON object on stdout.

The loop is the body of ``d2l.train_ch3`` verbatim, minus its ``Animator`` (matplotlib plotting
in a notebook, and asserts that assume 10 epochs):

    for epoch in range(num_epochs):
        train_metrics = d2l.train_epoch_ch3(net, train_iter, loss, updater)   # timed: train pass
        test_acc = d2l.evaluate_accuracy(net, test_iter)                      # timed: eval pass

with d2l's own ``load_data_fashion_mnist(256)`` DataLoaders (``num_workers =
d2l.get_dataloader_workers()`` = 4, or 0 with ``--workers 0``), ``train_epoch_ch3``,
``Accumulator``, ``accuracy``, ``evaluate_accuracy`` and (scratch) ``sgd``. torchvision's
FashionMNIST/ToTensor come from the stand-in ``tv_shim`` (PIL image per sample, then ToTensor).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time


def load_shim(path: str):
    spec = importlib.util.spec_from_file_location("tv_shim", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.install()


def timed_train_ch3(d2lt, net, train_iter, test_iter, loss, updater, num_epochs: int) -> dict:
    """The body of ``d2l.train_ch3`` without its Animator, each epoch's two passes timed."""
    epochs = []
    for _ in range(num_epochs):
        t0 = time.perf_counter()
        train_loss, train_acc = d2lt.train_epoch_ch3(net, train_iter, loss, updater)
        t1 = time.perf_counter()
        test_acc = d2lt.evaluate_accuracy(net, test_iter)
        t2 = time.perf_counter()
        epochs.append({"train_seconds": t1 - t0, "eval_seconds": t2 - t1, "train_loss": train_loss,
                       "train_acc": train_acc, "test_acc": test_acc})
    return {"epochs": epochs, "train_examples": len(train_iter.dataset)}


def print_runs(d2l, d2lt, impl: str, shimmed, runs: list[dict]) -> None:
    """The one JSON object the benchmark reads from stdout."""
    import torch

    print(json.dumps({
        "d2l_version": getattr(d2l, "__version__", "?"),
        "impl": impl,
        "workers": d2lt.get_dataloader_workers(),
        "tv_shim": shimmed,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "runs": runs,
    }))


def build(impl: str, d2lt):
    """The book's softmax regression: (net, loss, updater)."""
    import torch
    from torch import nn

    lr = 0.1
    if impl == "concise":  # D2L §3.7 (0.17.x text)
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

        def init_weights(m):
            if type(m) == nn.Linear:
                nn.init.normal_(m.weight, std=0.01)

        net.apply(init_weights)
        return net, nn.CrossEntropyLoss(reduction="none"), torch.optim.SGD(net.parameters(), lr=lr)
    # D2L §3.6 (0.17.x text), which the d2l package does not export
    num_inputs, num_outputs = 784, 10
    W = torch.normal(0, 0.01, size=(num_inputs, num_outputs), requires_grad=True)
    b = torch.zeros(num_outputs, requires_grad=True)

    def softmax(X):
        X_exp = torch.exp(X)
        partition = X_exp.sum(1, keepdim=True)
        return X_exp / partition

    def net(X):
        return softmax(torch.matmul(X.reshape((-1, W.shape[0])), W) + b)

    def loss(y_hat, y):
        return -torch.log(y_hat[range(len(y_hat)), y])

    def updater(batch_size):
        return d2lt.sgd([W, b], lr, batch_size)

    return net, loss, updater


def run_main(build, default_epochs: int, default_repeats: int) -> None:
    """The command line shared by the d2l runners: ``build(impl, d2lt)`` gives the book's
    (net, loss, updater); each repeat loads the data, builds a fresh model and trains it."""
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=default_epochs)
    p.add_argument("--repeats", type=int, default=default_repeats)
    p.add_argument("--seed", type=int, default=0, help="repeat r uses torch.manual_seed(seed + r)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: d2l's own, 4)")
    p.add_argument("--impl", choices=("concise", "scratch"), default="concise")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    shimmed = load_shim(args.tv_shim)
    import d2l
    from d2l import torch as d2lt

    if args.workers is not None:
        d2lt.get_dataloader_workers = lambda: args.workers  # load_data_fashion_mnist looks it up here

    runs = []
    for repeat in range(args.repeats):
        torch.manual_seed(args.seed + repeat)
        train_iter, test_iter = d2lt.load_data_fashion_mnist(256)
        net, loss, updater = build(args.impl, d2lt)
        runs.append(timed_train_ch3(d2lt, net, train_iter, test_iter, loss, updater, args.epochs))

    print_runs(d2l, d2lt, args.impl, shimmed, runs)


if __name__ == "__main__":
    run_main(build, default_epochs=3, default_repeats=3)
