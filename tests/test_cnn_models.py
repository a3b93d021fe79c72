"""The CNNs of D2L chapters 6-7: layer-by-layer shapes as the book prints them, every parameter
trained, scratch and fast twins agreeing, and any channels / classes / image size."""

import pytest
import torch
from conftest import needs_real_data

from divekit.models.cnn import layer_shapes
from divekit.models.cnn.densenet import DenseBlock, transition_block
from divekit.models.cnn.googlenet import Inception
from divekit.models.cnn.nin import nin_block
from divekit.models.cnn.resnet import Residual
from divekit.models.cnn.vgg import vgg_block
from divekit.models.registry import create_model
from divekit.ops import fast

MODELS = ("lenet", "lenet-bn", "alexnet", "vgg", "nin", "googlenet", "resnet18", "densenet")

# the smallest image size each model takes comfortably (the book's sizes are larger)
SMALL = {"lenet": 28, "lenet-bn": 28, "alexnet": 96, "vgg": 32, "nin": 96, "googlenet": 32, "resnet18": 32,
         "densenet": 32}

BOOK_SHAPES = {  # D2L's printed layer-by-layer output shapes for one 1-channel image
    ("lenet", 28): [("Conv2d", (1, 6, 28, 28)), ("Sigmoid", (1, 6, 28, 28)), ("AvgPool2d", (1, 6, 14, 14)),
                    ("Conv2d", (1, 16, 10, 10)), ("Sigmoid", (1, 16, 10, 10)), ("AvgPool2d", (1, 16, 5, 5)),
                    ("Flatten", (1, 400)), ("Linear", (1, 120)), ("Sigmoid", (1, 120)), ("Linear", (1, 84)),
                    ("Sigmoid", (1, 84)), ("Linear", (1, 10))],  # §6.6.1
    ("alexnet", 224): [("Conv2d", (1, 96, 54, 54)), ("ReLU", (1, 96, 54, 54)), ("MaxPool2d", (1, 96, 26, 26)),
                       ("Conv2d", (1, 256, 26, 26)), ("ReLU", (1, 256, 26, 26)), ("MaxPool2d", (1, 256, 12, 12)),
                       ("Conv2d", (1, 384, 12, 12)), ("ReLU", (1, 384, 12, 12)), ("Conv2d", (1, 384, 12, 12)),
                       ("ReLU", (1, 384, 12, 12)), ("Conv2d", (1, 256, 12, 12)), ("ReLU", (1, 256, 12, 12)),
                       ("MaxPool2d", (1, 256, 5, 5)), ("Flatten", (1, 6400)), ("Linear", (1, 4096)), ("ReLU", (1, 4096)),
                       ("Dropout", (1, 4096)), ("Linear", (1, 4096)), ("ReLU", (1, 4096)), ("Dropout", (1, 4096)),
                       ("Linear", (1, 10))],  # §7.1.2
    ("vgg", 224): [("Sequential", (1, 16, 112, 112)), ("Sequential", (1, 32, 56, 56)), ("Sequential", (1, 64, 28, 28)),
                   ("Sequential", (1, 128, 14, 14)), ("Sequential", (1, 128, 7, 7)), ("Flatten", (1, 6272)),
                   ("Linear", (1, 4096)), ("ReLU", (1, 4096)), ("Dropout", (1, 4096)), ("Linear", (1, 4096)),
                   ("ReLU", (1, 4096)), ("Dropout", (1, 4096)), ("Linear", (1, 10))],  # §7.2.2, channels / 4
    ("nin", 224): [("Sequential", (1, 96, 54, 54)), ("MaxPool2d", (1, 96, 26, 26)), ("Sequential", (1, 256, 26, 26)),
                   ("MaxPool2d", (1, 256, 12, 12)), ("Sequential", (1, 384, 12, 12)), ("MaxPool2d", (1, 384, 5, 5)),
                   ("Dropout", (1, 384, 5, 5)), ("Sequential", (1, 10, 5, 5)), ("AdaptiveAvgPool2d", (1, 10, 1, 1)),
                   ("Flatten", (1, 10))],  # §7.3.2
    ("googlenet", 96): [("Sequential", (1, 64, 24, 24)), ("Sequential", (1, 192, 12, 12)), ("Sequential", (1, 480, 6, 6)),
                        ("Sequential", (1, 832, 3, 3)), ("Sequential", (1, 1024, 3, 3)),
                        ("AdaptiveAvgPool2d", (1, 1024, 1, 1)), ("Flatten", (1, 1024)), ("Linear", (1, 10))],  # §7.4.2
    ("resnet18", 224): [("Sequential", (1, 64, 56, 56)), ("Sequential", (1, 64, 56, 56)), ("Sequential", (1, 128, 28, 28)),
                        ("Sequential", (1, 256, 14, 14)), ("Sequential", (1, 512, 7, 7)),
                        ("AdaptiveAvgPool2d", (1, 512, 1, 1)), ("Flatten", (1, 512)), ("Linear", (1, 10))],  # §7.6.2
}


@pytest.mark.parametrize("name, size", list(BOOK_SHAPES))
def test_layer_shapes_are_the_books(name, size):
    torch.manual_seed(0)
    model = create_model(name, input_shape=(1, size, size), num_classes=10)
    assert layer_shapes(model, torch.rand(1, 1, size, size)) == BOOK_SHAPES[name, size]


@pytest.mark.parametrize("name", MODELS)
def test_every_model_takes_colour_images_and_any_number_of_classes_and_trains_every_parameter(name):
    torch.manual_seed(0)
    size = SMALL[name]
    model = create_model(name, input_shape=(3, size, size), num_classes=5)
    X = torch.rand(2, 3, size, size)
    features = model.forward_features(X)
    assert features.dim() == 4 and features.shape[0] == 2  # feature maps, for backbone reuse
    logits = model.forward_head(features)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"


def test_models_initialise_weights_xavier_uniform_like_train_ch6():
    torch.manual_seed(0)
    conv = create_model("lenet").features[0]
    fan_in, fan_out = 1 * 25, 6 * 25
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize("name", ["lenet", "lenet-bn"])
def test_scratch_and_fast_lenets_share_state_dicts_and_outputs(name):
    torch.manual_seed(0)
    ours, ref = create_model(name, "scratch").double(), create_model(name, "fast").double()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ref.load_state_dict(ours.state_dict())
    X = torch.rand(8, 1, 28, 28, dtype=torch.float64)
    for mode in ("train", "eval"):
        getattr(ours, mode)(), getattr(ref, mode)()
        torch.testing.assert_close(ours(X), ref(X))
    ours.train(), ref.train()
    ours(X).sum().backward()
    ref(X).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_blocks_give_the_books_shapes():
    X = torch.rand(2, 3, 8, 8)
    assert vgg_block(2, 3, 16, fast)(X).shape == (2, 16, 4, 4)  # §7.2.1: halves H and W
    assert nin_block(3, 7, kernel_size=3, stride=1, padding=1, ops=fast)(X).shape == (2, 7, 8, 8)
    assert Inception(3, 4, (2, 5), (2, 6), 7, fast)(X).shape == (2, 4 + 5 + 6 + 7, 8, 8)  # §7.4.1: concatenated paths
    # §7.6.2: same shape without the 1x1 convolution; halved and 6 channels with it and stride 2
    assert Residual(3, 3, ops=fast)(X).shape == (2, 3, 8, 8)
    assert Residual(3, 6, use_1x1conv=True, strides=2, ops=fast)(X).shape == (2, 6, 4, 4)
    with pytest.raises(RuntimeError):
        Residual(3, 6, ops=fast)(X)  # changing the channels needs the 1x1 convolution on the shortcut
    # §7.7.2-7.7.3: 3 + 2 x 10 channels; a transition to 10 channels halves H and W
    Y = DenseBlock(2, 3, 10, fast)(torch.rand(4, 3, 8, 8))
    assert Y.shape == (4, 23, 8, 8) and transition_block(23, 10, fast)(Y).shape == (4, 10, 4, 4)


def books_densenet() -> torch.nn.Sequential:
    """D2L §7.7's DenseNet in plain torch.nn, as the book writes it (its ``conv_block``, ``DenseBlock``,
    ``transition_block``, ``b1`` and the loop over ``num_convs_in_dense_blocks``)."""
    from torch import nn

    def conv_block(input_channels, num_channels):
        return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                             nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1))

    class BooksDenseBlock(nn.Module):
        def __init__(self, num_convs, input_channels, num_channels):
            super().__init__()
            self.net = nn.Sequential(*[conv_block(num_channels * i + input_channels, num_channels)
                                       for i in range(num_convs)])

        def forward(self, X):
            for blk in self.net:
                X = torch.cat((X, blk(X)), dim=1)
            return X

    def books_transition_block(input_channels, num_channels):
        return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                             nn.Conv2d(input_channels, num_channels, kernel_size=1), nn.AvgPool2d(kernel_size=2, stride=2))

    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    num_channels, growth_rate = 64, 32
    blks = []
    for i, num_convs in enumerate([4, 4, 4, 4]):
        blks.append(BooksDenseBlock(num_convs, num_channels, growth_rate))
        num_channels += num_convs * growth_rate
        if i != 3:
            blks.append(books_transition_block(num_channels, num_channels // 2))
            num_channels = num_channels // 2
    return nn.Sequential(b1, *blks, nn.BatchNorm2d(num_channels), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)),
                         nn.Flatten(), nn.Linear(num_channels, 10))


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_densenet_is_the_books_in_both_twins(impl):
    torch.manual_seed(0)
    reference = books_densenet().double()
    ours = create_model("densenet", impl, input_shape=(1, 96, 96)).double()
    ours_params = list(ours.parameters())
    assert [p.shape for p in ours_params] == [p.shape for p in reference.parameters()]  # same layers, same order
    assert sum(p.numel() for p in ours_params) == 758_226
    ours_buffers = [b for _, b in ours.named_buffers()]
    with torch.no_grad():
        for mine, theirs in zip(ours_params + ours_buffers, list(reference.parameters()) + list(reference.buffers())):
            theirs.copy_(mine)
    X = torch.rand(2, 1, 96, 96, dtype=torch.float64)
    for mode in ("train", "eval"):  # batch statistics, then the running ones both just updated
        getattr(ours, mode)(), getattr(reference, mode)()
        torch.testing.assert_close(ours(X), reference(X))
    ours.train(), reference.train()
    ours(X).square().sum().backward()
    reference(X).square().sum().backward()
    for p, q in zip(ours_params, reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


# -- the classic CNNs against the book's own PyTorch code -----------------------------------------
# Each ``books_*`` function is the book's (classic edition's) PyTorch network in plain torch.nn,
# written as the book writes it. Where the book hard-codes a size that only fits its 224x224 (or
# 96x96) images, or its 4096-wide dense layers, that number is an argument with the book's value as
# its default, so the tests can run on small images. ``Dropout`` is the book's ``nn.Dropout``
# unless a test passes the twin's own dropout layer: ``nn.Dropout`` draws its masks differently
# from the twins (their dropout is tested in test_dropout.py), and with the same layer at the same
# places the same seed drops the same units, so the networks can be compared in training mode too.


def books_lenet() -> torch.nn.Sequential:
    """D2L §6.6.1's LeNet-5: sigmoid and average pooling, for 28x28 images."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))


def books_lenet_bn() -> torch.nn.Sequential:
    """D2L §7.5.5's concise LeNet with batch normalization (nn.BatchNorm2d / 1d), for 28x28 images."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
        nn.Linear(84, 10))


def books_alexnet(flat=6400, hidden=4096, Dropout=torch.nn.Dropout) -> torch.nn.Sequential:
    """D2L §7.1.2's AlexNet; ``flat`` is 6400 for the book's 224x224 images."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(flat, hidden), nn.ReLU(),
        Dropout(p=0.5),
        nn.Linear(hidden, hidden), nn.ReLU(),
        Dropout(p=0.5),
        nn.Linear(hidden, 10))


def books_vgg(side=7, hidden=4096, Dropout=torch.nn.Dropout) -> torch.nn.Sequential:
    """D2L §7.2's ``vgg(small_conv_arch)``, the VGG-11 it trains (a quarter of the channels,
    ``ratio = 4``); the last block's maps are ``side`` x ``side``, 7 for 224x224 images."""
    from torch import nn

    def vgg_block(num_convs, in_channels, out_channels):
        layers = []
        for _ in range(num_convs):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
            layers.append(nn.ReLU())
            in_channels = out_channels
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        return nn.Sequential(*layers)

    def vgg(conv_arch):
        conv_blks = []
        in_channels = 1
        for (num_convs, out_channels) in conv_arch:
            conv_blks.append(vgg_block(num_convs, in_channels, out_channels))
            in_channels = out_channels
        return nn.Sequential(
            *conv_blks, nn.Flatten(),
            nn.Linear(out_channels * side * side, hidden), nn.ReLU(), Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(), Dropout(0.5),
            nn.Linear(hidden, 10))

    conv_arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    ratio = 4
    small_conv_arch = [(pair[0], pair[1] // ratio) for pair in conv_arch]
    return vgg(small_conv_arch)


def books_nin(Dropout=torch.nn.Dropout) -> torch.nn.Sequential:
    """D2L §7.3's network in network."""
    from torch import nn

    def nin_block(in_channels, out_channels, kernel_size, strides, padding):
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())

    return nn.Sequential(
        nin_block(1, 96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        Dropout(0.5),
        nin_block(384, 10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten())


def books_googlenet() -> torch.nn.Sequential:
    """D2L §7.4's GoogLeNet: its ``Inception`` block and the stages ``b1`` to ``b5``."""
    from torch import nn
    from torch.nn import functional as F

    class BooksInception(nn.Module):
        def __init__(self, in_channels, c1, c2, c3, c4, **kwargs):
            super().__init__(**kwargs)
            self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
            self.p2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
            self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
            self.p3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
            self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
            self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
            self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)

        def forward(self, x):
            p1 = F.relu(self.p1_1(x))
            p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
            p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
            p4 = F.relu(self.p4_2(self.p4_1(x)))
            return torch.cat((p1, p2, p3, p4), dim=1)

    Inception = BooksInception
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
                       nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b3 = nn.Sequential(Inception(192, 64, (96, 128), (16, 32), 32),
                       Inception(256, 128, (128, 192), (32, 96), 64),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b4 = nn.Sequential(Inception(480, 192, (96, 208), (16, 48), 64),
                       Inception(512, 160, (112, 224), (24, 64), 64),
                       Inception(512, 128, (128, 256), (24, 64), 64),
                       Inception(512, 112, (144, 288), (32, 64), 64),
                       Inception(528, 256, (160, 320), (32, 128), 128),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b5 = nn.Sequential(Inception(832, 256, (160, 320), (32, 128), 128),
                       Inception(832, 384, (192, 384), (48, 128), 128),
                       nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, 10))


BOOKS_NETS = {  # registry name: (image size, divekit config beyond it, the book's net given the twin's Dropout)
    "lenet": (28, {}, lambda Dropout: books_lenet()),  # the book's size
    "lenet-bn": (28, {}, lambda Dropout: books_lenet_bn()),
    "alexnet": (67, dict(hidden=32), lambda Dropout: books_alexnet(flat=256 * 1 * 1, hidden=32, Dropout=Dropout)),
    "vgg": (64, dict(hidden=32), lambda Dropout: books_vgg(side=2, hidden=32, Dropout=Dropout)),  # the preset's ratio
    "nin": (67, {}, lambda Dropout: books_nin(Dropout=Dropout)),
    "googlenet": (64, {}, lambda Dropout: books_googlenet()),
}


def assert_same_network(ours: torch.nn.Module, reference: torch.nn.Module, X: torch.Tensor) -> None:
    """``reference`` given ``ours``'s parameters and buffers computes the same outputs in training
    mode (dropout seeded alike, batch statistics), then in evaluation mode (the running statistics
    both just updated), and the same gradients of a scalar loss."""
    ours_params, ref_params = list(ours.parameters()), list(reference.parameters())
    assert [p.shape for p in ours_params] == [p.shape for p in ref_params]  # same layers, same order
    ours_buffers, ref_buffers = list(ours.buffers()), list(reference.buffers())
    assert [b.shape for b in ours_buffers] == [b.shape for b in ref_buffers]
    with torch.no_grad():
        for mine, theirs in zip(ours_params + ours_buffers, ref_params + ref_buffers):
            theirs.copy_(mine)

    def output(net, mode):
        getattr(net, mode)()
        torch.manual_seed(1)  # the same dropout masks in both
        return net(X)

    for mode in ("train", "eval"):
        torch.testing.assert_close(output(ours, mode), output(reference, mode), msg=lambda m: f"{mode} mode: {m}")
    output(ours, "train").square().sum().backward()
    output(reference, "train").square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), ref_params):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("impl", ["scratch", "fast"])
@pytest.mark.parametrize("name", list(BOOKS_NETS))
def test_classic_cnns_are_the_books_in_both_twins(name, impl):
    from divekit.ops import get_ops

    size, config, books_net = BOOKS_NETS[name]
    torch.manual_seed(0)
    ours = create_model(name, impl, input_shape=(1, size, size), **config).double()
    reference = books_net(get_ops(impl).Dropout).double()
    assert_same_network(ours, reference, torch.rand(4, 1, size, size, dtype=torch.float64))


def test_too_small_or_badly_shaped_inputs_say_what_to_do():
    with pytest.raises(ValueError, match="cannot take 8x8 images.*--resize"):
        create_model("lenet", input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"takes images \(C, H, W\)"):
        create_model("lenet", input_shape=(784,))
    with pytest.raises(ValueError, match="unknown impl"):
        create_model("lenet", "gpu")


BOOK_DEFAULTS = {  # D2L's hyperparameters: (lr, batch size, resize)
    "lenet": (0.9, 256, None), "alexnet": (0.01, 128, 224), "vgg": (0.05, 128, 224), "nin": (0.1, 128, 224),
    "googlenet": (0.1, 128, 96), "batch-norm": (1.0, 256, None), "resnet": (0.05, 256, 96),
    "densenet": (0.1, 256, 96),
}


def test_experiments_carry_the_books_hyperparameters():
    from divekit.experiments.registry import get_experiment

    for name, (lr, batch_size, resize) in BOOK_DEFAULTS.items():
        options = get_experiment(name).make_options()
        assert (options.lr, options.batch_size, options.resize, options.epochs) == (lr, batch_size, resize, 10), name
    with pytest.raises(ValueError, match="--resize must be int"):
        get_experiment("lenet").make_options(resize="big")


def test_lenet_experiment_trains_on_a_folder_of_colour_images(tmp_path):
    import numpy as np
    from PIL import Image

    from divekit.experiments.runner import prepare_training

    rng = np.random.default_rng(0)
    for k, name in enumerate(["cat", "dog", "fox"]):  # 3 classes of 36x40 RGB images, one colour channel lit per class
        (tmp_path / name).mkdir()
        for i in range(6):
            pixels = rng.integers(0, 60, size=(36, 40, 3), dtype=np.uint8)
            pixels[..., k] += 180
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    training = prepare_training("lenet", data=str(tmp_path), epochs=2, batch_size=4, lr=0.1, device="cpu")
    model = training.setup.model
    assert model.features[0].weight.shape == (6, 3, 5, 5)  # 3 input channels
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)  # faster on the CPU
    history = training.fit()
    assert len(history) == 2 and 0.0 <= history[-1]["val_acc"] <= 1.0
    assert model(torch.rand(2, 3, 36, 40)).shape == (2, 3)
    (grid,) = training.setup.probes
    results, figures = grid.run(model, training.setup.data, training.device)
    assert results == {} and set(figures) == {"predictions"}


def run(name, tmp_path, **overrides):
    from divekit.experiments.registry import get_experiment
    from divekit.experiments.runner import run_experiment

    experiment = get_experiment(name)
    return run_experiment(experiment, experiment.make_options(**overrides), tmp_path / name, progress=False)


@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_conv_edge_demo_learns_the_kernel_and_writes_its_run_folder(tmp_path, impl):
    summary = run("conv-edge", tmp_path, impl=impl)
    assert summary["results"]["kernel_error"] < 0.1
    assert all(row["reached"] for row in summary["reference"]), summary["reference"]
    assert {"loss.png", "metrics.csv", "summary.json"} <= {p.name for p in (tmp_path / "conv-edge").iterdir()}


@pytest.mark.slow
@needs_real_data(["fashion-mnist"])
@pytest.mark.parametrize("name", ["lenet", "batch-norm"])
@pytest.mark.parametrize("impl", ["scratch", "fast"])
def test_lenets_reach_the_books_test_accuracy(tmp_path, name, impl):
    summary = run(name, tmp_path, impl=impl)
    test_acc = next(row for row in summary["reference"] if row["metric"] == "test_acc")
    assert test_acc["reached"], test_acc
