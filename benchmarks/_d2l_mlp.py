"""d2l's own MLP on Fashion-MNIST (D2L 0.17.x, §4.2 scratch / §4.3 concise), timed per epoch.

Run by ``bench_mlp.py`` with the Python of a virtual environment that has d2l installed (this
file does not import divekit). It prints one JSON object on stdout, in the same format as
``_d2l_softmax.py`` (whose torchvision stand-in loader it reuses).

The loop is the body of ``d2l.train_ch3`` minus its Animator: ``d2l.train_epoch_ch3`` (timed:
train pass) then ``d2l.evaluate_accuracy`` (timed: eval pass) each epoch, on
``d2l.load_data_fashion_mnist(256)`` (4 DataLoader workers, d2l's default, or ``--workers``).
Model, loss and updater are the book's: 784-256-10, ReLU, weights 0.01 * randn (scratch) or
normal(0, 0.01) (concise), ``nn.CrossEntropyLoss(reduction='none')``, ``torch.optim.SGD(lr=0.1)``.
"""

from __future__ import annotations

import argparse

from _d2l_softmax import load_shim, print_runs, timed_train_ch3


def build(impl: str):
    import torch
    from torch import nn

    num_inputs, num_outputs, num_hiddens = 784, 10, 256
    if impl == "concise":  # D2L §4.3 (0.17.x text)
        net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_hiddens), nn.ReLU(), nn.Linear(num_hiddens, num_outputs))

        def init_weights(m):
            if type(m) == nn.Linear:
                nn.init.normal_(m.weight, std=0.01)

        net.apply(init_weights)
        params = net.parameters()
    else:  # D2L §4.2 (0.17.x text)
        W1 = nn.Parameter(torch.randn(num_inputs, num_hiddens, requires_grad=True) * 0.01)
        b1 = nn.Parameter(torch.zeros(num_hiddens, requires_grad=True))
        W2 = nn.Parameter(torch.randn(num_hiddens, num_outputs, requires_grad=True) * 0.01)
        b2 = nn.Parameter(torch.zeros(num_outputs, requires_grad=True))
        params = [W1, b1, W2, b2]

        def relu(X):
            a = torch.zeros_like(X)
            return torch.max(X, a)

        def net(X):
            X = X.reshape((-1, num_inputs))
            H = relu(X @ W1 + b1)
            return H @ W2 + b2

    return net, nn.CrossEntropyLoss(reduction="none"), torch.optim.SGD(params, lr=0.1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
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
        net, loss, updater = build(args.impl)
        runs.append(timed_train_ch3(d2lt, net, train_iter, test_iter, loss, updater, args.epochs))

    print_runs(d2l, d2lt, args.impl, shimmed, runs)


if __name__ == "__main__":
    main()
