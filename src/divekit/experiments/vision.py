"""Computer vision, part 1 (D2L §13.1-§13.2, §13.10-§13.12): training with image augmentation,
fine-tuning, transposed convolution, fully convolutional segmentation and neural style transfer.

The book's data (CIFAR-10, the hotdog photographs, Pascal VOC2012, its two style photographs)
cannot be downloaded here. Each experiment reads the real format when the data is there (the data
hub registers all three with their checksums) and otherwise runs on what is: Fashion-MNIST for
augmentation, MNIST (or Fashion-MNIST) for fine-tuning (the source a ResNet-18 trained here on eight
of its classes, the target the other two), and a VOC-format segmentation set of shape scenes
generated from the photographs of the photos extra (see :mod:`divekit.data.shapes`). Its numbers
are then not the book's, and no reference entry claims a comparison: the summary says which data it
ran on.

CPU budget (a 2-core machine): the defaults are sized so that each experiment takes minutes, not
hours: 3,000 training images at 28x28 for augmentation, 8,000 source and 100 target images at 28x28
for fine-tuning, 96x128 crops of 300 scenes for FCN, a VGG-19 with a quarter of the channels at
150x225 for style transfer.

Fine-tuning (D2L §13.2) at the defaults (seed 0, fast, a 2-core CPU, 38 s): a source trained on
8,000 MNIST images of the digits 0-7 (0.96 test accuracy), fine-tuned on 100 images of 8 and 9,
ended at 0.92 test accuracy (0.95 on its training images); the same network trained from scratch
ended at 0.38 (0.80 on its training images: 20 steps leave its BatchNorm running statistics far
from the data's). Over seeds 0-2: 0.85-0.93 against 0.49-0.59. The gap is one of steps, not of
the final accuracy: with 200 images in batches of 16 the network from scratch caught up by the
third to fifth epoch (0.95-0.97 against 0.94-0.96 fine-tuned), for 8 vs 9 as for 4 vs 9. On
Fashion-MNIST's shirts and coats (``--dataset fashion-mnist``) the source's features separate the
two poorly (they are near its pullovers): with 400 images both ended near 0.70-0.80, fine-tuning
ahead in the first epochs only; random crops of half an image, tried first as the small set's
augmentation, cost the fine-tuned model about 0.05 there, so the small sets are flipped (garments)
or left as they are (digits). None of this is the book's comparison (0.94 vs 0.84 on the hotdog
photographs, from ImageNet weights) or comparable with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from divekit.experiments.registry import BatchSize, DemoResult, Device, Epochs, Impl, LearningRate, Seed, demo
from divekit.options import at_least, each_at_least, multiple_of, positive

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from divekit.data.base import Split, SplitData
    from divekit.data.transforms import Transform

WeightDecay = Annotated[float, "SGD's weight decay on the minibatch's mean loss (the book's 0.001 goes with its loss "
                               "summed over the minibatch: the same pull here is 0.001 / batch size)", at_least(0)]
SourceWeights = Annotated[str | None, "the source model: a divekit run folder of a ResNet-18, or a weights file "
                                      "(divekit's keys, or torchvision's ResNet-18's such as its ImageNet weights)"]


def _fit(model, task, optimizer, train, evaluation, epochs: int, device, eval_name: str = "test") -> list[dict]:
    """Train a demo's model with the trainer (no run folder, no progress bar; a log line per epoch,
    as these take minutes)."""
    from divekit.train.engine import Trainer

    trainer = Trainer(model, task, optimizer, epochs=epochs, device=device, eval_name=eval_name, progress=False)
    return trainer.fit(train, evaluation)


def _tagged(history: list[dict], tag: str) -> list[dict]:
    """History rows with every metric renamed ``tag``_metric, for two runs on one figure."""
    return [{"epoch": r["epoch"], **{f"{tag}_{k}": v for k, v in r.items() if k not in ("epoch", "seconds")}}
            for r in history]


def _merged(*histories: list[dict]) -> list[dict]:
    return [{k: v for row in rows for k, v in row.items()} for rows in zip(*histories)]


# -- §13.1 image augmentation ---------------------------------------------------------------------

def augmentation_gallery(photo: torch.Tensor, count: int = 8, seed: int = 0) -> Figure:
    """The book's pictures of §13.1.1: each augmentation applied to ``count`` copies of one photo
    (uint8 (3, H, W)), as one batch, so every copy gets its own draw."""
    import torch

    from divekit.data.base import Split
    from divekit.data.transforms import (
        ColorJitter,
        Compose,
        RandomHorizontalFlip,
        RandomResizedCrop,
        RandomVerticalFlip,
    )
    from divekit.viz.images import show_images

    X = photo[None].expand(count, -1, -1, -1).float() / 255  # (count, 3, H, W)
    side = min(X.shape[-2:]) // 2
    crop = RandomResizedCrop(side, scale=(0.1, 1), ratio=(0.5, 2))
    color = ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5)
    rows = {"horizontal flip": RandomHorizontalFlip(), "vertical flip": RandomVerticalFlip(),
            "resized crop": crop, "brightness": ColorJitter(brightness=0.5), "hue": ColorJitter(hue=0.5),
            "colour jitter": color, "flip + colour + crop": Compose([RandomHorizontalFlip(), color, crop])}
    generator = torch.Generator().manual_seed(seed)
    pictures, titles = [], []
    for name, augment in rows.items():
        out = augment(Split(X, torch.zeros(count)), generator).X
        out = torch.nn.functional.interpolate(out, size=(side, side), mode="bilinear") if out.shape[-1] != side else out
        pictures.append(out)
        titles += [name] + [""] * (count - 1)
    return show_images(torch.cat(pictures), len(rows), count, titles=titles, scale=1.2)


def _classification_data(dataset: str, train_size: int | None, test_size: int | None) -> SplitData:
    from divekit.data.base import Split, SplitData

    if dataset == "cifar-10":
        from divekit.data.cifar10 import load_cifar10

        data = load_cifar10()
    else:
        from divekit.data.fashion_mnist import load_fashion_mnist

        data = load_fashion_mnist()
    train, test = data.train, data.eval
    return SplitData(data.name, Split(train.X[:train_size], train.y[:train_size]),
                     Split(test.X[:test_size], test.y[:test_size]), data.eval_name, data.classes)


def _train_augmentations(kind: str, size: tuple[int, int], channels: int) -> Transform:
    from divekit.data.transforms import ColorJitter, Compose, RandomHorizontalFlip, RandomResizedCrop

    if kind == "flip":  # the book's train_augs
        return RandomHorizontalFlip()
    colour = channels == 3
    color = ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5 if colour else 0, hue=0.1 if colour else 0)
    return Compose([RandomHorizontalFlip(), RandomResizedCrop(size, scale=(0.5, 1.0)), color])


@demo("augmentation", section="13.1", title="Training with image augmentation",
      dataset="Fashion-MNIST, first 3,000 training and 2,000 test images (the book trains on CIFAR-10, which is not "
              "here: --dataset cifar-10 where it is)",
      tiny=dict(epochs=1, train_size=32, test_size=32, batch_size=16))
def augmentation(
    epochs: Epochs = 10, lr: LearningRate = 0.001, batch_size: BatchSize = 256,
    dataset: Annotated[Literal["fashion-mnist", "cifar-10"],
                       "the images: Fashion-MNIST (here) or CIFAR-10 (the book's)"] = "fashion-mnist",
    train_size: Annotated[int | None, "train on the first N training images (none: all)", at_least(1)] = 3000,
    test_size: Annotated[int | None, "test on the first N test images (none: all)", at_least(1)] = 2000,
    augs: Annotated[Literal["flip", "flip-crop-color"], "flip: the book's random horizontal flip; flip-crop-color: "
                    "also a random resized crop (scale 0.5-1) and colour jitter"] = "flip",
    impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
) -> DemoResult:
    """ResNet-18 trained twice from the same initial weights with Adam, once with random
    augmentation of the training images and once without; their test accuracies side by side.

    The network is the book's ResNet-18 of §7.6 (7x7 stem); §13.1 trains the variant of §12.6 with a
    3x3 stem and no max-pool, which costs 16 times as much at 32x32."""
    import torch

    from divekit.data.loader import TensorLoader
    from divekit.models.registry import create_model
    from divekit.ops import get_ops
    from divekit.optim import create_optimizer
    from divekit.train.device import choose_device, prefer_channels_last
    from divekit.train.tasks import Classification

    device = choose_device(device)
    ops = get_ops(impl)
    data = _classification_data(dataset, train_size, test_size)
    test = TensorLoader(data.eval, max(batch_size, 256), device=device)
    histories = {}
    for name, transform in (("aug", _train_augmentations(augs, data.input_shape[1:], data.input_shape[0])),
                            ("no_aug", None)):
        torch.manual_seed(seed)  # the same initial weights for both
        model = prefer_channels_last(create_model("resnet18", ops, input_shape=data.input_shape,
                                                  num_classes=data.num_classes).to(device), ops, device)
        train = TensorLoader(data.train, batch_size, shuffle=True, seed=seed, device=device, transform=transform)
        optimizer = create_optimizer("adam", model.parameters(), impl=impl, lr=lr)
        histories[name] = _fit(model, Classification(ops.cross_entropy), optimizer, train, test, epochs, device)
    aug, plain = histories["aug"][-1], histories["no_aug"][-1]
    results = {"test_acc": aug["test_acc"], "test_acc_no_aug": plain["test_acc"],
               "train_acc": aug["train_acc"], "train_acc_no_aug": plain["train_acc"],
               "gain": aug["test_acc"] - plain["test_acc"], "augmentations": augs,
               "data": f"{data.name}: {len(data.train.y)} training, {len(data.eval.y)} test images"}
    from divekit.viz.curves import plot_history

    rows = _merged(_tagged(histories["aug"], "aug"), _tagged(histories["no_aug"], "no_aug"))
    figures = {"curves": plot_history(rows, title=f"ResNet-18 with and without augmentation ({augs})")}
    try:
        from divekit.data.photos import load_photos

        figures["augmentations"] = augmentation_gallery(load_photos(("chelsea.png",))[0][:, ::2, ::2], seed=seed)
    except ModuleNotFoundError:
        pass  # no photos extra: no gallery
    return DemoResult(results, figures, rows)


# -- §13.2 fine-tuning ----------------------------------------------------------------------------

TARGET_CLASSES = {"mnist": ("8", "9"), "fashion-mnist": ("shirt", "coat")}  # the classes the source never sees


def _class_subset(split: Split, names: tuple[str, ...], classes: tuple[str, ...], count: int | None) -> Split:
    """The first ``count`` examples of the classes ``names``, relabelled 0, 1, ... in that order."""
    import torch

    from divekit.data.base import Split

    wanted = torch.tensor([classes.index(name) for name in names])
    keep = torch.isin(split.y, wanted)
    relabel = torch.full((len(classes),), -1, dtype=torch.int64)
    relabel[wanted] = torch.arange(len(names))
    return Split(split.X[keep][:count], relabel[split.y[keep]][:count])


def _finetune_data(dataset: str, target_train: int, source_size: int,
                   test_size: int | None) -> tuple[SplitData, SplitData | None]:
    """(target data, source data): MNIST's 8s and 9s or Fashion-MNIST's shirts and coats (the first
    ``target_train`` training images, the first ``test_size`` test images of the two) and the other
    eight classes, or the book's hotdog photographs (from the data hub; no source data: the book's
    source is ImageNet)."""
    from divekit.data.base import SplitData

    if dataset == "hotdog":
        from divekit.data.hub import fetch
        from divekit.data.user import load_image_folder

        # the book's Resize([256, 256]), then crops of 224; its training crops come from the photograph
        # itself, ours from its 256 x 256 copy (a batch holds images of one size)
        return load_image_folder(fetch("hotdog"), stretch=256), None
    from divekit.data.fashion_mnist import load_fashion_mnist, load_mnist

    data = load_mnist() if dataset == "mnist" else load_fashion_mnist()
    name, targets = "MNIST" if dataset == "mnist" else "Fashion-MNIST", TARGET_CLASSES[dataset]
    others = tuple(c for c in data.classes if c not in targets)
    target = SplitData(f"{name} {' and '.join(targets)}",
                       _class_subset(data.train, targets, data.classes, target_train),
                       _class_subset(data.eval, targets, data.classes, test_size), "test", targets)
    source = SplitData(f"{name} {', '.join(others)}",
                       _class_subset(data.train, others, data.classes, source_size),
                       _class_subset(data.eval, others, data.classes, test_size or 2000), "test", others)
    return target, source


@demo("fine-tune", section="13.2", title="Fine-tuning a ResNet-18 trained on other classes",
      dataset="MNIST: a ResNet-18 trained on 8,000 images of the digits 0-7, fine-tuned on 100 images of 8 and 9 "
              "(tested on their 1,983 test images); the book fine-tunes ImageNet weights on the hotdog photographs, "
              "which are not here (--dataset hotdog --source FILE where they are)",
      tiny=dict(epochs=1, source_epochs=1, source_size=32, target_train=16, test_size=16, batch_size=16))
def fine_tune(
    epochs: Epochs = 5, lr: LearningRate = 0.001, batch_size: BatchSize = 32,
    weight_decay: WeightDecay = 0.001,
    head_lr_scale: Annotated[float, "the new output layer's learning rate is lr times this (the book: 10)", positive]
    = 10.0,
    scratch_lr: Annotated[float, "learning rate of the same model trained from scratch (the book: 10 lr)", positive]
    = 0.01,
    freeze_body: Annotated[bool, "train the new output layer alone, the body frozen (D2L §13.2.2)"] = False,
    source: SourceWeights = None,
    source_epochs: Annotated[int, "epochs of the source model's training (without --source)", at_least(1)] = 3,
    source_size: Annotated[int, "training images of the source classes (without --source)", at_least(1)] = 8000,
    dataset: Annotated[Literal["mnist", "fashion-mnist", "hotdog"],
                       "the target images: MNIST's 8s and 9s, Fashion-MNIST's shirts and coats (each with a source "
                       "trained here on the other 8 classes), or the book's hotdog photographs (from the data hub; "
                       "needs --source)"] = "mnist",
    target_train: Annotated[int, "training images of the target classes", at_least(2)] = 100,
    test_size: Annotated[int | None, "test on the first N test images of the target classes (none: all) and "
                         "of the source's (none: 2,000)", at_least(1)] = None,
    impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
) -> DemoResult:
    """Test accuracy of a model whose body comes from a source model, trained with a 10x larger
    learning rate for the new output layer, against the same model trained from scratch. Without
    --source, the source is a ResNet-18 trained here (Adam) on the source classes."""
    import torch

    from divekit.data.loader import TensorLoader
    from divekit.data.transforms import CenterCrop, Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop
    from divekit.models.registry import create_model
    from divekit.ops import get_ops
    from divekit.optim import create_optimizer
    from divekit.train.device import choose_device, prefer_channels_last
    from divekit.train.finetune import load_body, new_output_layer, parameter_groups, read_weights
    from divekit.train.tasks import Classification
    from divekit.viz.curves import plot_history
    from divekit.viz.images import show_images

    if dataset == "hotdog" and source is None:
        raise ValueError("--dataset hotdog fine-tunes given weights: pass --source FILE (the book: torchvision's "
                         "ImageNet ResNet-18)")
    device = choose_device(device)
    ops = get_ops(impl)
    data, source_data = _finetune_data(dataset, target_train, source_size, test_size)
    if dataset == "hotdog":  # the book's pipeline: ImageNet statistics, crops of 224
        normalize = Normalize()
        train_augs = Compose([RandomResizedCrop(224), RandomHorizontalFlip(), normalize])
        test_augs = Compose([CenterCrop(224), normalize])
    else:  # garments flipped; digits as they are (a flipped 9 is no digit); crops of 28x28 images cost accuracy
        train_augs, test_augs = (RandomHorizontalFlip() if dataset == "fashion-mnist" else None), None
    shape = (3, 224, 224) if dataset == "hotdog" else data.input_shape
    classifier = Classification(ops.cross_entropy)
    results = {"data": f"{data.name}: {len(data.train.y)} training, {len(data.eval.y)} test images"}
    if source is not None:
        weights, results["source"] = read_weights(source), source
    else:  # the source model, trained here: the stand-in for ImageNet pretraining
        torch.manual_seed(seed)
        model = prefer_channels_last(create_model("resnet18-tv", ops, input_shape=shape,
                                                  num_classes=source_data.num_classes).to(device), ops, device)
        history = _fit(model, classifier, create_optimizer("adam", model.parameters(), impl=impl, lr=1e-3),
                       TensorLoader(source_data.train, 128, shuffle=True, seed=seed, device=device,
                                    transform=train_augs),
                       TensorLoader(source_data.eval, 512, device=device), source_epochs, device)
        weights, results["source_test_acc"] = model.state_dict(), history[-1]["test_acc"]
        results["source"] = f"ResNet-18 trained here on {len(source_data.train.y)} images of {source_data.name}"
    layout = "torchvision" if any(".bn3." in key for key in weights) else "d2l"
    train = TensorLoader(data.train, batch_size, shuffle=True, seed=seed, device=device, transform=train_augs)
    test = TensorLoader(data.eval, 512, device=device, transform=test_augs)
    histories = {}
    for name in ("finetune", "scratch"):
        torch.manual_seed(seed)
        model = create_model("resnet18", ops, input_shape=shape, num_classes=data.num_classes, layout=layout).to(device)
        if name == "finetune":  # the source's body, a new output layer, its own learning rate
            load_body(model, weights)
            new_output_layer(model, data.num_classes, ops)
            params = parameter_groups(model, lr, head_lr_scale, freeze_body)
        else:
            params = model.parameters()
        optimizer = create_optimizer("sgd", params, impl=impl, lr=lr if name == "finetune" else scratch_lr,
                                     weight_decay=weight_decay)
        model = prefer_channels_last(model, ops, device)  # in place: the optimizer keeps the same parameters
        histories[name] = _fit(model, classifier, optimizer, train, test, epochs, device)
    tuned, scratch = histories["finetune"][-1], histories["scratch"][-1]
    results.update({"test_acc": tuned["test_acc"], "test_acc_scratch": scratch["test_acc"],
                    "train_acc": tuned["train_acc"], "train_acc_scratch": scratch["train_acc"],
                    "gain": tuned["test_acc"] - scratch["test_acc"]})
    rows = _merged(_tagged(histories["finetune"], "finetune"), _tagged(histories["scratch"], "scratch"))
    examples = torch.cat([data.train.X[data.train.y == c][:8] for c in range(2)])  # the book shows 8 of each class
    figures = {"curves": plot_history(rows, title="fine-tuned vs trained from scratch"),
               "examples": show_images(examples, 2, 8, titles=[data.classes[c] for c in (0, 1) for _ in range(8)][
                   :len(examples)])}
    return DemoResult(results, figures, rows)


# -- §13.10 transposed convolution ----------------------------------------------------------------

BOOK_TRANSPOSED = {  # what the book prints (D2L §13.10), for X = K = [[0, 1], [2, 3]]
    "basic": [[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]],
    "padding_1": [[4.0]],
    "stride_2": [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 2.0, 3.0], [0.0, 2.0, 0.0, 3.0], [4.0, 6.0, 6.0, 9.0]],
}


@demo("transposed-conv", section="13.10", title="Transposed convolution",
      dataset="the book's 2x2 examples and a 3x3 image")
def transposed_conv(impl: Impl = "fast") -> DemoResult:
    """The book's examples of transposed convolution (basic, padding 1, stride 2), the shape a
    transposed convolution gives back after a convolution, and the transposed convolution as the
    transpose of the convolution's matrix."""
    import torch
    from matplotlib.figure import Figure

    from divekit.ops import get_ops

    ops = get_ops(impl)
    X = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    X4, K4 = X.reshape(1, 1, 2, 2), K.reshape(1, 1, 2, 2)
    ours = {"basic": ops.trans_conv(X, K), "padding_1": ops.conv_transpose2d(X4, K4, padding=1)[0, 0],
            "stride_2": ops.conv_transpose2d(X4, K4, stride=2)[0, 0]}
    error = max(float((ours[k] - torch.tensor(v)).abs().max()) for k, v in BOOK_TRANSPOSED.items())
    # §13.10.2: with a convolution's hyperparameters, the transposed convolution restores its input's shape
    torch.manual_seed(0)
    image = torch.rand(1, 10, 16, 16)
    conv = ops.Conv2d(10, 20, kernel_size=5, padding=2, stride=3)
    tconv = ops.ConvTranspose2d(20, 10, kernel_size=5, padding=2, stride=3)
    restored = tuple(tconv(conv(image)).shape)
    # §13.10.3: a convolution is a matrix W; the transposed convolution multiplies by W^T
    X3 = torch.arange(9.0).reshape(3, 3)
    K2 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    W = ops.conv_matrix(K2, (3, 3))
    Y = ops.corr2d(X3, K2)
    conv_as_matrix = bool(torch.equal(Y, (W @ X3.reshape(-1)).reshape(2, 2)))
    transpose_as_matrix = bool(torch.equal(ops.trans_conv(Y, K2), (W.T @ Y.reshape(-1)).reshape(3, 3)))
    results = {**{k: v.tolist() for k, v in ours.items()}, "max_abs_difference_from_book": error,
               "conv_then_transposed_shape": list(restored), "input_shape": list(image.shape),
               "kernel_matrix": W.tolist(), "conv_equals_matrix_product": conv_as_matrix,
               "transposed_conv_equals_transposed_matrix_product": transpose_as_matrix}
    fig = Figure(figsize=(9, 2.6), layout="constrained")
    panels = (("X", X), ("K", K), ("trans_conv(X, K)", ours["basic"]), ("stride 2", ours["stride_2"]))
    for ax, (title, values) in zip(fig.subplots(1, len(panels)), panels):
        ax.imshow(values.detach().numpy(), cmap="viridis")
        cells = torch.cartesian_prod(*map(torch.arange, values.shape)).tolist()  # (H * W, 2) row, column
        for (i, j), v in zip(cells, values.reshape(-1).tolist()):
            ax.text(j, i, f"{v:g}", ha="center", va="center", color="white")
        ax.set_title(title)
        ax.set_xticks([]), ax.set_yticks([])
    return DemoResult(results, {"transposed_conv": fig})


# -- §13.11 fully convolutional networks ----------------------------------------------------------

SCENE_CLASSES = ("disc", "square", "triangle", "cross", "star")


def _segmentation_data(dataset: str, crop: tuple[int, int], num_train: int, num_val: int, seed: int):
    """(train images, val images, class names) read from a VOC folder: the book's VOC2012 from the
    data hub, or the generated VOC-format set."""
    from divekit.data.voc import VOC_CLASSES, read_voc

    if dataset == "voc2012":
        from divekit.data.hub import fetch

        root, classes, label = fetch("voc2012"), VOC_CLASSES, "Pascal VOC2012"
    else:
        from divekit.data.shapes import voc_standin

        size = ((crop[0] + crop[0] // 6, crop[0] + crop[0] // 2), (crop[1] + crop[1] // 6, crop[1] + crop[1] // 2))
        root = voc_standin(SCENE_CLASSES, num_train, num_val, size, seed=seed)
        classes, label = ("background", *SCENE_CLASSES), "generated VOC-format shape scenes"
    return read_voc(root, "train", crop), read_voc(root, "val", crop), classes, label


def prediction_figure(images: torch.Tensor, truth: torch.Tensor, predicted: torch.Tensor) -> Figure:
    """The book's figure (D2L §13.11.5): images (n, 3, H, W) in [0, 1], their labels and the
    predictions (n, H, W) in VOC's colours, one column per image: image, prediction, truth."""
    import torch

    from divekit.data.voc import labels_to_colors
    from divekit.viz.images import show_images

    n = len(images)
    rows = torch.cat([images.cpu(), labels_to_colors(predicted.cpu()).permute(0, 3, 1, 2),
                      labels_to_colors(truth.cpu()).permute(0, 3, 1, 2)])
    titles = ["image"] * n + ["prediction"] * n + ["truth"] * n
    return show_images(rows, 3, n, titles=titles, scale=2.0)


@demo("fcn", section="13.11", title="Fully convolutional network for semantic segmentation",
      dataset="generated VOC-format scenes (5 shapes + background; by default 300 training and 100 validation images "
              "about 112-144 x 149-192, random 96x128 crops) from the photos extra; the book's VOC2012 with --dataset "
              "voc2012 --crop-height 320 --crop-width 480",
      tiny=dict(epochs=1, num_train=4, num_val=2, batch_size=2, crop_height=32, crop_width=32,
                num_residuals=(1, 1, 1, 1)))
def fcn(
    epochs: Epochs = 10, lr: LearningRate = 0.05, batch_size: BatchSize = 32,
    weight_decay: WeightDecay = 0.001,
    momentum: Annotated[float, "SGD's momentum (the book: none, from ImageNet weights)", at_least(0)] = 0.9,
    dataset: Annotated[Literal["generated", "voc2012"], "generated VOC-format scenes, or the book's VOC2012 "
                       "(from the data hub)"] = "generated",
    crop_height: Annotated[int, "height of the random crops (a multiple of 32; the book: 320)", at_least(32),
                           multiple_of(32)] = 96,
    crop_width: Annotated[int, "width of the random crops (a multiple of 32; the book: 480)", at_least(32),
                          multiple_of(32)] = 128,
    num_train: Annotated[int, "training scenes of the generated set", at_least(1)] = 300,
    num_val: Annotated[int, "validation scenes of the generated set", at_least(1)] = 100,
    source: SourceWeights = None,
    num_residuals: Annotated[tuple[int, ...], "residual blocks of the body's stages (ResNet-18: 2,2,2,2)",
                             each_at_least(1)] = (2, 2, 2, 2),
    impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
) -> DemoResult:
    """Pixel accuracy and mean IoU on the validation images of an FCN (a ResNet-18 body, a 1x1
    convolution, a transposed convolution initialised bilinearly), trained with SGD on random crops.
    Its body starts from --source when given (the book: ImageNet weights), else from random weights."""
    import torch

    from divekit.data.base import Split
    from divekit.data.transforms import Normalize
    from divekit.data.voc import RandomCropLoader
    from divekit.metrics.segmentation import class_iou
    from divekit.models.registry import create_model
    from divekit.ops import get_ops
    from divekit.optim import create_optimizer
    from divekit.train.device import choose_device, prefer_channels_last
    from divekit.train.finetune import load_body, read_weights
    from divekit.train.tasks import PixelClassification
    from divekit.viz.curves import plot_history

    device = choose_device(device)
    ops = get_ops(impl)
    crop = (crop_height, crop_width)
    train_images, val_images, classes, label = _segmentation_data(dataset, crop, num_train, num_val, seed)
    torch.manual_seed(seed)
    model = create_model("fcn", ops, input_shape=(3, *crop), num_classes=len(classes),
                         num_residuals=num_residuals).to(device)
    if source is not None:
        load_body(model, read_weights(source))
    model = prefer_channels_last(model, ops, device)
    normalize = Normalize()
    train = RandomCropLoader(train_images, crop, batch_size, shuffle=True, seed=seed, device=device,
                             transform=normalize)
    val = RandomCropLoader(val_images, crop, batch_size, seed=seed, device=device, transform=normalize)
    task = PixelClassification(ops.cross_entropy, len(classes))
    optimizer = create_optimizer("sgd", model.parameters(), impl=impl, lr=lr, weight_decay=weight_decay,
                                 momentum=momentum or None)
    history = _fit(model, task, optimizer, train, val, epochs, device, eval_name="val")
    # the per-class IoU and the figure: the top-left crop of the first validation images, as the book
    n = min(4, len(val_images))
    images = torch.stack([image[:, :crop_height, :crop_width] for image in val_images.images[:n]]).float() / 255
    truth = torch.stack([mask[:crop_height, :crop_width] for mask in val_images.masks[:n]]).long()
    model.eval()
    with torch.no_grad():
        predicted = model(normalize(Split(images.to(device), truth.to(device))).X).argmax(dim=1)
    matrix = torch.zeros(len(classes), len(classes), dtype=torch.int64)
    with torch.no_grad():
        from divekit.metrics.segmentation import confusion_matrix

        for batch in val:
            matrix += confusion_matrix(model(batch.X).argmax(dim=1), batch.masks, len(classes)).cpu()
    last = history[-1]
    results = {"val_acc": last["val_acc"], "val_miou": last["val_miou"],
               "class_iou": {c: round(float(v), 4) for c, v in zip(classes, class_iou(matrix))},
               "data": f"{label}: {len(train_images)} training, {len(val_images)} validation images, crops "
                       f"{crop_height}x{crop_width}",
               "body": source or "random initialisation (no ImageNet weights here)"}
    figures = {"curves": plot_history(history, title="FCN"), "predictions": prediction_figure(images, truth, predicted)}
    return DemoResult(results, figures, history)


# -- §13.12 neural style transfer -----------------------------------------------------------------

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "ihc", "motorcycle_left", "retina", "rocket")


def _photo(name: str, size: tuple[int, int]) -> torch.Tensor:
    """A bundled photograph resized to ``size``: float (1, 3, H, W) in [0, 1] (the book's ``Resize``)."""
    import torch

    from divekit.data.photos import PHOTOS, load_photos

    file = next(f for f in PHOTOS if f.rsplit(".", 1)[0] == name)
    photo = load_photos((file,))[0][None].float() / 255  # (1, 3, H, W)
    return torch.nn.functional.interpolate(photo, size=size, mode="bilinear", antialias=True).clamp(0, 1)


def _style_extractor(weights: str | None, ratio: int, size: tuple[int, int], impl: str, seed: int):
    import torch

    from divekit.models.registry import create_model
    from divekit.models.style import FeatureExtractor

    torch.manual_seed(seed)
    vgg = create_model("vgg19", impl, input_shape=(3, *size), ratio=1 if weights else ratio, num_classes=10, hidden=8)
    if weights is not None:
        from divekit import io

        state = {k: v for k, v in io.load(weights).items() if k.startswith("features.")}
        vgg.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})
    return FeatureExtractor(vgg.features)


@demo("style-transfer", section="13.12", title="Neural style transfer",
      dataset="two photographs of the photos extra (chelsea the cat, in the style of an immunohistochemistry "
              "stain), by default 150x225; a frozen VGG-19 with random weights and a quarter of the channels (the book: "
              "ImageNet VGG-19, its own photos, 300x450; --weights FILE for torchvision's VGG-19 weights)",
      tiny=dict(epochs=2, image_height=32, image_width=48, ratio=16))
def style_transfer(
    epochs: Epochs = 500, lr: LearningRate = 0.3,
    lr_decay_epoch: Annotated[int, "multiply the learning rate by 0.8 every N epochs", at_least(1)] = 50,
    content_weight: Annotated[float, "weight of the content loss", at_least(0)] = 1.0,
    style_weight: Annotated[float, "weight of each style layer's loss", at_least(0)] = 1e3,
    tv_weight: Annotated[float, "weight of the total variation loss", at_least(0)] = 10.0,
    image_height: Annotated[int, "height of the images (the book: 300)", at_least(16)] = 150,
    image_width: Annotated[int, "width of the images (the book: 450)", at_least(16)] = 225,
    content: Annotated[Literal[PHOTO_NAMES], "the content photograph"] = "chelsea",
    style: Annotated[Literal[PHOTO_NAMES], "the style photograph"] = "ihc",
    weights: Annotated[str | None, "a VGG-19 state dict in torchvision's layout (features.N.weight); none: "
                       "random weights"] = None,
    ratio: Annotated[int, "divide the random VGG-19's channels by this (1 with --weights)", at_least(1)] = 4,
    impl: Impl = "fast", seed: Seed = 0, device: Device = "auto",
) -> DemoResult:
    """The content, style and total variation losses every 10 epochs of Adam on the image itself,
    and the content, style and synthesized images."""
    import torch
    from matplotlib.figure import Figure

    from divekit.data.base import Split
    from divekit.data.transforms import Normalize
    from divekit.models.style import SynthesizedImage, content_loss, gram, style_loss, tv_loss
    from divekit.optim import create_optimizer
    from divekit.train.device import choose_device
    from divekit.viz.images import show_images

    device = choose_device(device)
    size = (image_height, image_width)
    normalize = Normalize()
    extractor = _style_extractor(weights, ratio, size, impl, seed).to(device)
    content_X = normalize(Split(_photo(content, size).to(device), torch.zeros(1))).X
    style_X = normalize(Split(_photo(style, size).to(device), torch.zeros(1))).X
    contents_Y, _ = extractor(content_X)
    _, styles_Y = extractor(style_X)
    styles_gram = [gram(Y) for Y in styles_Y]  # computed once, outside the loop
    image = SynthesizedImage(content_X).to(device)
    optimizer = create_optimizer("adam", image.parameters(), impl=impl, lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, lr_decay_epoch, 0.8)
    rows = []
    for epoch in range(1, epochs + 1):
        X = image()
        contents_hat, styles_hat = extractor(X)
        contents_l = [content_loss(Y_hat, Y) * content_weight for Y_hat, Y in zip(contents_hat, contents_Y)]
        styles_l = [style_loss(Y_hat, G) * style_weight for Y_hat, G in zip(styles_hat, styles_gram)]
        tv_l = tv_loss(X) * tv_weight
        # the book's sum(10 * styles_l + contents_l + [tv_l]) repeats the list of style losses ten times
        loss = sum(contents_l) + 10 * sum(styles_l) + tv_l
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if epoch % 10 == 0 or epoch == epochs:
            rows.append({"epoch": epoch, "content_loss": float(sum(contents_l).detach()),
                         "style_loss": float(sum(styles_l).detach()), "tv_loss": float(tv_l.detach())})
    result = normalize.denormalize(image().detach()).cpu()
    last = rows[-1]
    results = {"content_loss": last["content_loss"], "style_loss": last["style_loss"], "tv_loss": last["tv_loss"],
               "extractor": weights or f"VGG-19 with random weights, channels / {ratio}",
               "images": f"content {content}, style {style}, {image_height}x{image_width}"}
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.add_subplot()
    for key in ("content_loss", "style_loss", "tv_loss"):
        ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], label=key.removesuffix("_loss"))
    ax.set(xlabel="epoch", ylabel="loss (weighted)", yscale="log")
    ax.legend()
    pictures = torch.cat([normalize.denormalize(content_X).cpu(), normalize.denormalize(style_X).cpu(), result])
    figures = {"losses": fig, "images": show_images(pictures, 1, 3, titles=["content", "style", "result"], scale=3)}
    return DemoResult(results, figures, rows)
