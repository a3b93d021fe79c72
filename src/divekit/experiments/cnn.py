"""Convolutional networks (D2L chapters 6-7): learning an edge kernel, LeNet, AlexNet, VGG, NiN,
GoogLeNet, LeNet with batch normalization, ResNet-18 and DenseNet, all on Fashion-MNIST (resized on the
device where the book enlarges it) or on a user's image folder, trained with minibatch SGD on the
cross-entropy as the book's ``train_ch6`` does (the Xavier init is the model's).

``image-classifier`` is not the book's: its settings are meant for a user's small image folder (a
few hundred images per class), where the book's (LeNet's sigmoids at lr 0.9 for ten epochs of
batch 256) get too few steps to leave chance: LeNet with batch normalization (§7.5), Adam (§11.10)
at 0.01, batches of 32, 20 epochs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from divekit.experiments.parts import Classify, FashionMNIST, PredictionGrid
from divekit.experiments.registry import DemoResult, Epochs, Impl, LearningRate, Recipe, demo, register
from divekit.ops import get_ops

if TYPE_CHECKING:
    import torch


# -- §6.2.4: learning a kernel -------------------------------------------------------------------

def learn_edge_kernel(impl: str, lr: float, iterations: int) -> tuple[torch.Tensor, list[float]]:
    """Learn K from X and Y = corr2d(X, K) for the edge detector K = [1, -1] (D2L §6.2.4):
    ``Conv2d(1, 1, (1, 2), bias=False)``, loss = sum of squared errors, plain gradient descent.
    Returns the learned kernel (1, 2) and the loss before each update."""
    import torch

    ops = get_ops(impl)
    X = torch.ones(6, 8)
    X[:, 2:6] = 0  # a black band in a white image
    Y = ops.corr2d(X, torch.tensor([[1.0, -1.0]]))  # (6, 7): 1 at white-to-black edges, -1 at black-to-white
    X, Y = X.reshape(1, 1, 6, 8), Y.reshape(1, 1, 6, 7)  # (B, C, H, W)
    conv = ops.Conv2d(1, 1, kernel_size=(1, 2), bias=False)
    losses = []
    for _ in range(iterations):
        loss = ((conv(X) - Y) ** 2).sum()
        conv.zero_grad()
        loss.backward()
        with torch.no_grad():
            conv.weight -= lr * conv.weight.grad
        losses.append(loss.item())
    return conv.weight.detach().reshape(1, 2), losses


@demo("conv-edge", section="6.2", title="Learning an edge-detection kernel",
      dataset="a 6x8 image with a black band and its edges Y = corr2d(X, [1, -1])")
def conv_edge(epochs: Epochs = 10, lr: LearningRate = 3e-2, impl: Impl = "fast") -> DemoResult:
    """The learned kernel is close to [1, -1] after 10 gradient-descent iterations on one image."""
    import torch
    from matplotlib.figure import Figure

    kernel, losses = learn_edge_kernel(impl, lr, epochs)
    fig = Figure(figsize=(5, 3))
    ax = fig.add_subplot()
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set(xlabel="iteration", ylabel="squared error (sum)", yscale="log",
           title=f"learned K = [{kernel[0, 0]:.4f}, {kernel[0, 1]:.4f}]")
    results = {"loss": losses[-1], "kernel": kernel.tolist(),
               "kernel_error": float((kernel - torch.tensor([[1.0, -1.0]])).abs().max())}
    rows = [{"iteration": i + 1, "loss": loss} for i, loss in enumerate(losses)]
    return DemoResult(results, figures={"loss": fig}, rows=rows)


# -- §6.6, chapter 7: image classifiers ----------------------------------------------------------

def classifier(name: str, section: str, title: str, model: str, resize: int | None = None, **train) -> Recipe:
    """A recipe of the book's chapter 6-7 classifiers: ``model`` on Fashion-MNIST (resized to
    ``resize``) or the user's image folder, with the book's training options."""
    return Recipe(name=name, section=section, title=title, data=FashionMNIST(resize=resize), model=model,
                  task=Classify(), train=train, probes=(PredictionGrid(),), user_data_kind="classification",
                  tiny=dict(resize=None if resize is None else 67, limit=16, batch_size=8))


for recipe in (
    classifier("lenet", "6.6", "LeNet-5", "lenet", lr=0.9),
    classifier("alexnet", "7.1", "AlexNet", "alexnet", resize=224, lr=0.01, batch_size=128),
    classifier("vgg", "7.2", "VGG-11 with a quarter of the channels", "vgg", resize=224, lr=0.05, batch_size=128),
    classifier("nin", "7.3", "Network in network", "nin", resize=224, lr=0.1, batch_size=128),
    classifier("googlenet", "7.4", "GoogLeNet", "googlenet", resize=96, lr=0.1, batch_size=128),
    classifier("batch-norm", "7.5", "LeNet with batch normalization", "lenet-bn", lr=1.0),
    classifier("resnet", "7.6", "ResNet-18", "resnet18", resize=96, lr=0.05),
    classifier("densenet", "7.7", "DenseNet", "densenet", resize=96, lr=0.1),
):
    register(recipe)


# -- for a user's own images ----------------------------------------------------------------------

register(Recipe(
    name="image-classifier", section="7.5",
    title="An image classifier for your own folder: LeNet with batch normalization, trained with Adam",
    data=FashionMNIST(), model="lenet-bn", task=Classify(),
    train=dict(epochs=20, lr=0.01, batch_size=32, optimizer="adam"), probes=(PredictionGrid(),),
    user_data_kind="classification", tiny=dict(limit=16, batch_size=8, epochs=1),
))
