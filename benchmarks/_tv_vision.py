"""What the book's chapter-13 code takes from torchvision, for this machine where torchvision does
not import: written from torchvision's own definitions, used only by the benchmarks.

* :func:`install` adds to the shared stand-in (``../shared/bench/tv_shim.py``) what d2l's VOC
  reader, its ``voc_rand_crop`` and the book's FCN touch: ``io.read_image`` with
  ``io.image.ImageReadMode``, ``transforms.Normalize``, ``transforms.RandomCrop.get_params``,
  ``transforms.functional.crop`` and ``models.resnet18`` (torchvision's ResNet-18: convolutions
  without bias, a batch norm on the shortcut; random weights, as no ImageNet weights are here).
* :func:`pil_pipeline` is the book's fine-tuning augmentation (``RandomResizedCrop(224)``,
  ``RandomHorizontalFlip()``, ``ColorJitter``, ``ToTensor()``, ``Normalize``) as torchvision runs
  it on a PIL image: one image at a time, PIL's resampling and ``ImageEnhance``, hue turned in HSV
  with numpy, one random draw per call.
"""

from __future__ import annotations

import math
import random
import sys
import types

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- torchvision.io, transforms, models: what d2l's §13.9 / §13.11 code calls ---------------------

class ImageReadMode:
    UNCHANGED, GRAY, RGB = 0, 1, 3


def read_image(path, mode=ImageReadMode.UNCHANGED):
    """torchvision.io.read_image: uint8 (C, H, W); ``RGB`` converts a palette image to its colours."""
    with Image.open(path) as image:
        if mode == ImageReadMode.RGB:
            image = image.convert("RGB")
        array = np.array(image)
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

    def __call__(self, tensor):
        return (tensor - self.mean) / self.std


class RandomCrop:
    @staticmethod
    def get_params(img, output_size):
        """torchvision's: a uniformly random (top, left, height, width) of ``output_size``."""
        h, w = img.shape[-2:]
        th, tw = output_size
        if h == th and w == tw:
            return 0, 0, h, w
        i = torch.randint(0, h - th + 1, size=(1,)).item()
        j = torch.randint(0, w - tw + 1, size=(1,)).item()
        return i, j, th, tw


def crop(img, top, left, height, width):
    return img[..., top:top + height, left:left + width]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.ResNet with BasicBlocks: conv1, bn1, relu, maxpool, layer1-4, avgpool, fc."""

    def __init__(self, layers=(2, 2, 2, 2), num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(pretrained=False, num_classes=1000):
    if pretrained:
        raise RuntimeError("no ImageNet weights on this machine: the benchmark times random weights")
    return ResNet((2, 2, 2, 2), num_classes)


def install() -> None:
    """Add the pieces above to the torchvision stand-in that ``tv_shim.install()`` put in sys.modules."""
    tv = sys.modules["torchvision"]
    io = types.ModuleType("torchvision.io")
    io.read_image = read_image
    io.image = types.SimpleNamespace(ImageReadMode=ImageReadMode)
    tv.io = io
    tv.transforms.Normalize, tv.transforms.RandomCrop = Normalize, RandomCrop
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.crop = crop
    tv.transforms.functional = functional
    models = types.ModuleType("torchvision.models")
    models.resnet18 = resnet18
    tv.models = models
    sys.modules.update({"torchvision.io": io, "torchvision.models": models,
                        "torchvision.transforms.functional": functional})


# -- the book's augmentation, one PIL image at a time (torchvision's functional_pil) ----------------

def random_resized_crop(img: Image.Image, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    """torchvision's RandomResizedCrop.get_params, then PIL's resize of that box (bilinear)."""
    width, height = img.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(*log_ratio))
        w, h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            i, j = random.randint(0, height - h), random.randint(0, width - w)
            break
    else:
        in_ratio = width / height
        w, h = (width, round(width / min(ratio))) if in_ratio < min(ratio) else \
            (round(height * max(ratio)), height) if in_ratio > max(ratio) else (width, height)
        i, j = (height - h) // 2, (width - w) // 2
    return img.resize((size, size), Image.BILINEAR, box=(j, i, j + w, i + h))


def adjust_hue(img: Image.Image, factor: float) -> Image.Image:
    """torchvision's functional_pil.adjust_hue: shift the H channel of HSV, in uint8 arithmetic."""
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    with np.errstate(over="ignore"):
        np_h += np.array(factor * 255).astype(np.uint8)
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert(img.mode)


def color_jitter(img: Image.Image, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5) -> Image.Image:
    """torchvision's ColorJitter on a PIL image: the four in a random order, one draw each."""
    steps = [lambda im: ImageEnhance.Brightness(im).enhance(random.uniform(max(0, 1 - brightness), 1 + brightness)),
             lambda im: ImageEnhance.Contrast(im).enhance(random.uniform(max(0, 1 - contrast), 1 + contrast)),
             lambda im: ImageEnhance.Color(im).enhance(random.uniform(max(0, 1 - saturation), 1 + saturation)),
             lambda im: adjust_hue(im, random.uniform(-hue, hue))]
    for k in torch.randperm(4).tolist():
        img = steps[k](img)
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    array = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
    array = array[None] if array.dim() == 2 else array.permute(2, 0, 1)
    return array.float().div(255)


def pil_pipeline(img: Image.Image, size: int = 224, jitter: bool = True) -> torch.Tensor:
    """The book's fine-tuning train_augs (plus its §13.1 colour jitter) on one PIL image."""
    img = random_resized_crop(img, size)
    if random.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if jitter:
        img = color_jitter(img)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (to_tensor(img) - mean) / std


def pil_flip_pipeline(img: Image.Image) -> torch.Tensor:
    """The book's CIFAR-10 train_augs (§13.1.2): RandomHorizontalFlip, ToTensor."""
    if random.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(img)
