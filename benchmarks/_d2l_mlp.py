"""d2l's own MLP on Fashion-MNIST (D2L 0.17.x, §4.2 scratch / §4.3 concise), timed per epoch.

Run by ``bench_mlp.py`` with the Python of a virtual environment that has d2l installed (this
file does not import divekit). It prints one JSON object on stdout, in the same format as
``_d2l_softmax.py``, whose command line and timed loop (``run_main``) it reuses.

The loop is the body of ``d2l.train_ch3`` minus its Animator: ``d2l.train_epoch_ch3`` (timed:
train pass) then ``d2l.evaluate_accuracy`` (timed: eval pass) each epoch, on
``d2l.load_data_fashion_mnist(256)`` (4 DataLoader workers, d2l's default, or ``--workers``).
Model, loss and updater are the book's: 784-256-10, ReLU, weights 0.01 * randn (scratch) or
normal(0, 0.01) (concise), ``nn.CrossEntropyLoss(reduction='none')``, ``torch.optim.SGD(lr=0.1)``.
"""

from __future__ import annotations

from _d2l_softmax import run_main


def build(impl: str, d2lt):
    """The book's MLP: (net, loss, updater); ``d2lt`` (d2l.torch) is not needed here."""
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


if __name__ == "__main__":
    run_main(build, default_epochs=1, default_repeats=1)
