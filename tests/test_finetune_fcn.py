"""Fine-tuning (D2L §13.2) and FCN (§13.11): torchvision's ResNet-18 keys mapped onto divekit's
ResNet-18 and held against a copy of torchvision's network, weights read from run folders and
files, new heads and parameter groups, the fine-tuning demo's class split and its error without
source weights, the bilinear kernel against ``F.interpolate``, and FCN's shapes and its body's weights."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import needs_real_data
from divekit import io
from divekit.models.cnn.fcn import bilinear_kernel
from divekit.models.cnn.resnet import from_torchvision
from divekit.models.registry import create_model
from divekit.ops import fast, scratch
from divekit.train.checkpoint import TrainingState, save_checkpoint
from divekit.train.finetune import load_body, new_output_layer, parameter_groups, read_weights


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written out for the test (torchvision does not import here)."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchvisionResNet18(nn.Module):
    """torchvision.models.resnet18's modules and names: conv1, bn1, relu, maxpool, layer1-4, avgpool, fc."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, inplanes = (64, 128, 256, 512), 64
        for i, planes in enumerate(widths, 1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and batch-norm statistics everywhere, so that a misplaced tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=g) + 0.5 if "running_var" in name else \
                    torch.randn(tensor.shape, generator=g) * 0.1
                tensor.copy_(values)
    return model.eval()


@pytest.mark.parametrize("ops", [scratch, fast], ids=["scratch", "fast"])
def test_torchvisions_resnet18_weights_load_into_divekits_resnet18(ops):
    reference = randomized(TorchvisionResNet18(num_classes=7))
    ours = create_model("resnet18-tv", ops, input_shape=(3, 64, 64), num_classes=7).eval()
    mapped = from_torchvision(reference.state_dict())
    assert mapped.keys() == ours.state_dict().keys() and len(mapped) == 122  # every tensor has its place
    ours.load_state_dict(mapped)
    X = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(X), reference(X), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not a torchvision ResNet's: classifier.weight"):
        from_torchvision({"classifier.weight": torch.zeros(1)})


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_torchvisions_own_resnet18_loads():
    try:
        import torchvision
    except Exception as error:  # installed but broken (a CPU build without its kernels)
        pytest.skip(f"torchvision does not import: {error}")
    reference = randomized(torchvision.models.resnet18(num_classes=5))
    ours = create_model("resnet18-tv", "fast", input_shape=(3, 64, 64), num_classes=5).eval()
    ours.load_state_dict(from_torchvision(reference.state_dict()))
    X = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(X), reference(X), rtol=1e-4, atol=1e-4)


def test_weights_come_from_run_folders_checkpoints_and_files(tmp_path):
    source = create_model("resnet18-tv", "fast", input_shape=(3, 32, 32), num_classes=4, num_residuals=(1, 1, 1, 1))
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", model=source, optimizer=optimizer, scheduler=None,
                    state=TrainingState(epoch=1))
    io.save(source.state_dict(), tmp_path / "weights.pt")
    reference = randomized(TorchvisionResNet18(num_classes=3))
    io.save(reference.state_dict(), tmp_path / "resnet18.pth")
    for path in (tmp_path / "run", tmp_path / "run" / "checkpoint.pt", tmp_path / "weights.pt"):
        weights = read_weights(path)
        assert all(torch.equal(weights[k], v) for k, v in source.state_dict().items())
    assert "features.2.0.bn3.running_var" in read_weights(tmp_path / "resnet18.pth")
    with pytest.raises(FileNotFoundError, match="is not a divekit run folder"):
        read_weights(tmp_path)
    io.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds no state dict"):
        read_weights(tmp_path / "list.pt")


def test_a_target_model_takes_the_sources_body_and_a_new_head_with_its_own_learning_rate():
    torch.manual_seed(0)
    source = create_model("resnet18-tv", "fast", input_shape=(3, 32, 32), num_classes=8, num_residuals=(1, 1, 1, 1))
    target = create_model("resnet18-tv", "fast", input_shape=(3, 32, 32), num_classes=8, num_residuals=(1, 1, 1, 1))
    load_body(target, source.state_dict())
    head = new_output_layer(target, 2, fast)
    assert target.head[-1] is head and head.weight.shape == (2, 512)
    for key, value in source.state_dict().items():
        if key.startswith("features."):
            assert torch.equal(target.state_dict()[key], value)
    groups = parameter_groups(target, lr=5e-5)
    assert [g["lr"] for g in groups] == [5e-5, 5e-4]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in target.parameters())
    optimizer = torch.optim.SGD(groups, lr=5e-5)
    assert [g["lr"] for g in optimizer.param_groups] == [5e-5, 5e-4]
    frozen = parameter_groups(target, lr=0.1, freeze_body=True)
    assert len(frozen) == 1 and frozen[0]["params"] == [head.weight, head.bias]
    assert not any(p.requires_grad for n, p in target.named_parameters() if n.startswith("features."))
    # a training step moves the head alone: the frozen body's batch norm keeps its running statistics
    before = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("features.")}
    head_before = head.weight.detach().clone()
    target.train()
    assert not target.features.training and target.head.training
    step = torch.optim.SGD(frozen, lr=0.1)
    torch.nn.functional.cross_entropy(target(torch.randn(8, 3, 32, 32) * 3 + 1), torch.randint(2, (8,))).backward()
    step.step()
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())
    assert not torch.equal(head.weight, head_before)
    other = create_model("resnet18", "fast", input_shape=(3, 32, 32), num_residuals=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="does not fit this model: missing .*bn3"):
        load_body(other, source.state_dict())


def test_the_scratch_twin_takes_a_new_output_layer_too():
    from divekit.ops import scratch

    torch.manual_seed(0)
    model = create_model("resnet18", "scratch", input_shape=(3, 32, 32), num_classes=8, num_residuals=(1, 1, 1, 1))
    head = new_output_layer(model, 2, scratch)
    assert model.head[-1] is head and "head.2.weight" in dict(model.named_parameters())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 2)


def test_the_bilinear_kernel_upsamples_as_bilinear_interpolation():
    kernel = bilinear_kernel(3, 3, 4)
    torch.testing.assert_close(kernel[0, 0], torch.tensor([0.25, 0.75, 0.75, 0.25]).outer(torch.tensor(
        [0.25, 0.75, 0.75, 0.25])))
    assert kernel[0, 1].abs().sum() == 0 and kernel[2, 2].equal(kernel[0, 0])  # each channel to itself only
    X = torch.rand(1, 3, 10, 12)
    for ops in (scratch, fast):  # the book's conv_trans: k 4, padding 1, stride 2 doubles the size
        Y = ops.conv_transpose2d(X, kernel, stride=2, padding=1)
        expected = F.interpolate(X, scale_factor=2, mode="bilinear", align_corners=False)
        assert Y.shape == (1, 3, 20, 24)
        torch.testing.assert_close(Y[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1])  # the border sees zero padding
    Y = fast.conv_transpose2d(X, bilinear_kernel(3, 3, 64), stride=32, padding=16)  # FCN's: times 32
    expected = F.interpolate(X, scale_factor=32, mode="bilinear", align_corners=False)
    torch.testing.assert_close(Y[..., 16:-16, 16:-16], expected[..., 16:-16, 16:-16], atol=1e-5, rtol=1e-5)
    assert bilinear_kernel(1, 1, 3)[0, 0].tolist() == [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]


def test_fcn_segments_at_the_input_size_and_its_body_takes_a_resnets_weights():
    model = create_model("fcn", "fast", input_shape=(3, 64, 96), num_classes=6, num_residuals=(1, 1, 1, 1)).eval()
    X = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert model(X).shape == (2, 6, 64, 96)
    torch.testing.assert_close(model.transpose_conv.weight, bilinear_kernel(6, 6, 64))
    source = create_model("resnet18-tv", "fast", input_shape=(3, 64, 96), num_residuals=(1, 1, 1, 1))
    load_body(model, source.state_dict())
    assert torch.equal(model.features[1][0].conv1.weight, source.features[1][0].conv1.weight)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 60, 96))
    with pytest.raises(ValueError, match="multiples of 32, got 100x96"):
        create_model("fcn", input_shape=(3, 100, 96))


def test_the_fine_tuning_classes_are_picked_and_relabelled_in_the_order_named():
    from divekit.data.base import Split
    from divekit.experiments.vision import _class_subset

    X = torch.arange(8, dtype=torch.uint8).reshape(8, 1, 1, 1)
    y = torch.tensor([0, 3, 1, 3, 2, 1, 3, 0])  # classes a b c d
    every = _class_subset(Split(X, y), ("d", "b"), ("a", "b", "c", "d"), None)
    assert every.y.tolist() == [0, 1, 0, 1, 0] and every.X.flatten().tolist() == [1, 2, 3, 5, 6]  # d -> 0, b -> 1
    first = _class_subset(Split(X, y), ("d", "b"), ("a", "b", "c", "d"), 3)
    assert first.y.tolist() == [0, 1, 0] and first.X.flatten().tolist() == [1, 2, 3]


@needs_real_data(["mnist"])
def test_the_mnist_source_never_sees_the_target_digits():
    from divekit.data.fashion_mnist import load_mnist
    from divekit.experiments.vision import _finetune_data

    target, source = _finetune_data("mnist", 100, 500, None)
    assert target.classes == ("8", "9") and source.classes == ("0", "1", "2", "3", "4", "5", "6", "7")
    assert len(target.train.y) == 100 and len(source.train.y) == 500
    digits = load_mnist()
    first_100 = digits.train.y[(digits.train.y == 8) | (digits.train.y == 9)][:100]
    assert target.train.y.tolist() == (first_100 - 8).tolist()  # 8 -> 0, 9 -> 1, in the files' order
    assert len(target.eval.y) == int(((digits.eval.y == 8) | (digits.eval.y == 9)).sum())  # every test 8 and 9
    assert int(source.train.y.max()) == 7 and int(source.eval.y.max()) == 7


def test_fine_tuning_the_hotdog_photographs_needs_source_weights():
    from divekit.experiments.vision import fine_tune

    with pytest.raises(ValueError, match="--dataset hotdog fine-tunes given weights: pass --source FILE"):
        fine_tune(dataset="hotdog")  # before any download is tried
