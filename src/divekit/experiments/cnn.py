"""Convolutional networks (D2L chapters 6-7): learning an edge kernel, LeNet, AlexNet, VGG, NiN,
GoogLeNet, LeNet with batch normalization and ResNet-18, all on Fashion-MNIST (resized on the
device where the book enlarges it) or on a user's image folder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from divekit.experiments.common import book_default, make_loaders, make_optimizer, prediction_grid, user_or_book_data
from divekit.experiments.config import RunConfig, option
from divekit.experiments.registry import DemoResult, Experiment, Setup, register
from divekit.models.cnn import MODELS
from divekit.ops import get_ops
from divekit.train.tasks import Classification

RESIZE_HELP = "resize images to SIZE x SIZE on the device (bilinear), or none to keep their size"


# -- §6.2.4: learning a kernel -------------------------------------------------------------------

@dataclass
class ConvEdgeConfig(RunConfig):
    epochs: int = option(10, "gradient descent iterations on the one 6x8 image")
    lr: float = book_default("lr", 3e-2)


def learn_edge_kernel(impl: str, lr: float, iterations: int) -> tuple[torch.Tensor, list[float]]:
    """Learn K from X and Y = corr2d(X, K) for the edge detector K = [1, -1] (D2L §6.2.4):
    ``Conv2d(1, 1, (1, 2), bias=False)``, loss = sum of squared errors, plain gradient descent.
    Returns the learned kernel (1, 2) and the loss before each update."""
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


def conv_edge(cfg: ConvEdgeConfig, device: torch.device) -> DemoResult:
    kernel, losses = learn_edge_kernel(cfg.impl, cfg.lr, cfg.epochs)
    fig = Figure(figsize=(5, 3))
    ax = fig.add_subplot()
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set(xlabel="iteration", ylabel="squared error (sum)", yscale="log",
           title=f"learned K = [{kernel[0, 0]:.4f}, {kernel[0, 1]:.4f}]")
    results = {"loss": losses[-1], "kernel": kernel.tolist(),
               "kernel_error": float((kernel - torch.tensor([[1.0, -1.0]])).abs().max())}
    rows = [{"iteration": i + 1, "loss": loss} for i, loss in enumerate(losses)]
    return DemoResult(results, figures={"loss": fig}, rows=rows)


register(Experiment(
    name="conv-edge",
    section="6.2",
    title="Learning an edge-detection kernel",
    dataset="a 6x8 image with a black band and its edges Y = corr2d(X, [1, -1])",
    reproduces="the learned kernel is close to [1, -1] after 10 iterations (book: [[1.0010, -0.9739]], loss 0.022)",
    config=ConvEdgeConfig,
    demo=conv_edge,
))


# -- §6.6, chapter 7: image classifiers ----------------------------------------------------------

@dataclass
class LeNetConfig(RunConfig):
    lr: float = book_default("lr", 0.9)
    resize: int | None = option(None, RESIZE_HELP)


@dataclass
class BatchNormConfig(RunConfig):
    lr: float = book_default("lr", 1.0)
    resize: int | None = option(None, RESIZE_HELP)


@dataclass
class AlexNetConfig(RunConfig):
    lr: float = book_default("lr", 0.01)
    batch_size: int = book_default("batch_size", 128)
    resize: int | None = option(224, RESIZE_HELP)


@dataclass
class VGGConfig(AlexNetConfig):
    lr: float = book_default("lr", 0.05)


@dataclass
class NiNConfig(AlexNetConfig):
    lr: float = book_default("lr", 0.1)


@dataclass
class GoogLeNetConfig(AlexNetConfig):
    lr: float = book_default("lr", 0.1)
    resize: int | None = option(96, RESIZE_HELP)


@dataclass
class ResNetConfig(RunConfig):
    lr: float = book_default("lr", 0.05)
    resize: int | None = option(96, RESIZE_HELP)


def classifier(model_name: str):
    """A ``build`` function: ``MODELS[model_name]`` sized for the data (the book's Fashion-MNIST
    or the user's ``--data`` folder, resized on the device by ``--resize``), trained with
    minibatch SGD on the cross-entropy as the book's ``train_ch6`` does (Xavier init is the model's).
    On the CPU the fast model's tensors are laid out channels-last (NHWC), which is faster there."""

    def build(cfg: RunConfig, device: torch.device) -> Setup:
        from divekit.data.fashion_mnist import load_fashion_mnist

        data = user_or_book_data(cfg, "classification", load_fashion_mnist)
        if len(data.input_shape) != 3:
            raise ValueError(f"{model_name} classifies images; {data.name} has features of shape {data.input_shape}: "
                             "pass an image folder (one sub-folder per class) with --data")
        resize = None if cfg.resize is None else (cfg.resize, cfg.resize)
        channels, height, width = data.input_shape
        model = MODELS[model_name]((channels, *(resize or (height, width))), data.num_classes, cfg.impl)
        if cfg.impl == "fast" and device.type == "cpu":
            # PyTorch's CPU convolution and pooling kernels run faster on NHWC tensors (measured: the NCHW rows
            # of benchmarks/results/cnn.md)
            model = model.to(memory_format=torch.channels_last)
        train_loader, eval_loader = make_loaders(data, cfg, device, resize=resize)
        task = Classification(get_ops(cfg.impl).cross_entropy)
        return Setup(model, task, make_optimizer(cfg, model), train_loader, eval_loader, eval_name=data.eval_name,
                     data_name=data.name, figures=prediction_grid(data, device, resize=resize))

    return build


CLASSIFIERS = [  # (name, model, section, title, config, what the run reproduces)
    ("lenet", "lenet", "6.6", "LeNet-5", LeNetConfig,
     "test accuracy about 0.78-0.82 after 10 epochs (sigmoid, average pooling, SGD lr 0.9)"),
    ("alexnet", "alexnet", "7.1", "AlexNet", AlexNetConfig, "test accuracy about 0.88 after 10 epochs at 224x224"),
    ("vgg", "vgg", "7.2", "VGG-11 with a quarter of the channels", VGGConfig,
     "test accuracy about 0.92 after 10 epochs at 224x224"),
    ("nin", "nin", "7.3", "Network in network", NiNConfig,
     "test accuracy about 0.79-0.88 after 10 epochs at 224x224 (unstable across the book's builds)"),
    ("googlenet", "googlenet", "7.4", "GoogLeNet", GoogLeNetConfig, "test accuracy about 0.89 after 10 epochs at 96x96"),
    ("batch-norm", "lenet-bn", "7.5", "LeNet with batch normalization", BatchNormConfig,
     "test accuracy 0.70-0.87 after 10 epochs at lr 1.0 (noisy across the book's builds); scratch or PyTorch batch norm"),
    ("resnet", "resnet18", "7.6", "ResNet-18", ResNetConfig, "test accuracy about 0.89-0.92 after 10 epochs at 96x96"),
]

for name, model_name, section, title, config, reproduces in CLASSIFIERS:
    register(Experiment(name=name, section=section, title=title, dataset="Fashion-MNIST", reproduces=reproduces,
                        config=config, build=classifier(model_name), user_data="classification"))
