"""Transforms of whole batches on the device (D2L §13.1), applied to an image and its targets together.

A transform takes a :class:`~divekit.data.batch.Batch` and a ``torch.Generator`` and returns a new
batch. It acts on the batch's ``image_fields`` (B, C, H, W) float images, ``mask_fields`` (B, H, W)
per-pixel classes and ``box_fields`` (B, M, 4) relative corner boxes alike, so a flipped or cropped
image keeps its mask and boxes in place. Random choices are drawn per example, all at once, from the
generator on the CPU (no Python loop over images, the same result for the same seed on any device),
then applied to the whole batch: with ``torch.where`` (flips), one batched ``grid_sample`` (crops)
or per-example factors (colours).

The book's pipelines (torchvision's ``RandomHorizontalFlip``, ``RandomVerticalFlip``,
``RandomResizedCrop``, ``ColorJitter``, ``Normalize``, ``CenterCrop``) take one PIL image at a
time; these take the minibatch. Where torchvision draws one value per call, here each example gets
its own (torchvision's v2 transforms draw one per batch: every image of a batch gets the same crop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from divekit.data.batch import Batch


class Transform:
    """Base class: ``transform(batch, generator) -> batch``. A deterministic transform (one that
    evaluation uses) also has ``spec()``, a JSON description that :func:`transform_from_spec` turns
    back into it, so that a trained model's inputs are prepared as in training."""

    def __call__(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        raise NotImplementedError(f"{type(self).__name__} must define __call__(batch, generator)")

    def spec(self) -> list[dict]:
        raise ValueError(f"{type(self).__name__} is random, for training only; it has no description to save")


class Compose(Transform):
    """The transforms one after the other."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, batch, generator=None):
        for transform in self.transforms:
            batch = transform(batch, generator)
        return batch

    def spec(self):
        return [part for transform in self.transforms for part in transform.spec()]

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def _device(batch: Batch) -> torch.device:
    return next(iter(batch.fields().values())).device


def _images(batch: Batch, name: str) -> torch.Tensor:
    X = getattr(batch, name)
    if X.dim() != 4 or not X.is_floating_point():
        raise ValueError(f"image transforms take float images (B, C, H, W); field {name!r} of this "
                         f"{type(batch).__name__} is {X.dtype} of shape {tuple(X.shape)}")
    return X


class Resize(Transform):
    """Images to ``size`` (H, W) by bilinear interpolation, as the book's ``Resize`` (D2L §7.1.3);
    masks by nearest neighbour at the pixel centres the images sample (classes are not averaged;
    ``nearest-exact``, as PIL's NEAREST and the crops' :func:`_nearest`); relative boxes stay as they are."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, batch, generator=None):
        changes = {}
        for name in batch.image_fields:
            X = _images(batch, name)
            if tuple(X.shape[-2:]) != self.size:
                changes[name] = F.interpolate(X, size=self.size, mode="bilinear", align_corners=False, antialias=False)
        for name in batch.mask_fields:
            masks = getattr(batch, name)
            if tuple(masks.shape[-2:]) != self.size:
                changes[name] = F.interpolate(masks[:, None].float(), size=self.size,
                                              mode="nearest-exact")[:, 0].to(masks.dtype)
        return batch.replace(**changes) if changes else batch

    def spec(self):
        return [{"name": "Resize", "size": list(self.size)}]

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class _RandomFlip(Transform):
    """Mirror each example along one axis with probability ``p``: its images, its masks, and its
    boxes (padding rows move too and stay padding)."""

    axis: int  # -1 left to right, -2 top to bottom
    box_coordinates: tuple[int, int]  # (x1, x2) or (y1, y2): the pair a mirror swaps and reflects

    def __init__(self, p: float = 0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"flip probability p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, batch, generator=None):
        flip = torch.rand(len(batch), generator=generator) < self.p  # (B,) one coin per example
        flip = flip.to(_device(batch))
        changes = {}
        for name in batch.image_fields:
            X = _images(batch, name)
            changes[name] = torch.where(flip[:, None, None, None], X.flip(self.axis), X)
        for name in batch.mask_fields:
            masks = getattr(batch, name)
            changes[name] = torch.where(flip[:, None, None], masks.flip(self.axis), masks)
        for name in batch.box_fields:
            boxes = getattr(batch, name)  # (B, M, 4)
            low, high = self.box_coordinates
            mirrored = boxes.clone()
            mirrored[..., low], mirrored[..., high] = 1 - boxes[..., high], 1 - boxes[..., low]
            changes[name] = torch.where(flip[:, None, None], mirrored, boxes)
        return batch.replace(**changes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomHorizontalFlip(_RandomFlip):
    """Mirror each example left to right with probability ``p`` (D2L §13.1.1.1); boxes'
    x1, x2 become 1 - x2, 1 - x1."""

    axis, box_coordinates = -1, (0, 2)


class RandomVerticalFlip(_RandomFlip):
    """Mirror each example top to bottom with probability ``p`` (D2L §13.1.1.1); boxes'
    y1, y2 become 1 - y2, 1 - y1."""

    axis, box_coordinates = -2, (1, 3)


def _size_pair(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(n, int) and n >= 1 for n in pair):
        raise ValueError(f"{name} must be a positive int or a pair (H, W) of them, got {size!r}")
    return pair


def _crop_and_resize(batch: Batch, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor, width: torch.Tensor,
                     size: tuple[int, int]) -> Batch:
    """Cut the box (top, left, height, width) in pixels, one per example (each (B,) float), out of
    every image and mask of the batch and resize it to ``size``: images bilinearly in one batched
    ``grid_sample``, masks by nearest neighbour in one gather; relative boxes move into the crop's frame and are
    clipped to it (a box cut off entirely keeps its label with zero area: drop such boxes for detection).
    Only the box's pixels are read, as torchvision's ``resized_crop`` (a crop, then ``interpolate``)."""
    H, W = _spatial_size(batch)
    device = _device(batch)
    changes = {}
    rows = _sample_points(top, height, size[0], H)  # (B, S_h); _spatial_size found an image field
    cols = _sample_points(left, width, size[1], W)  # (B, S_w)
    grid = torch.stack(torch.broadcast_tensors(cols[:, None, :], rows[:, :, None]), dim=-1).to(device)  # (B, S_h, S_w, 2)
    for name in batch.image_fields:
        X = _images(batch, name)
        changes[name] = F.grid_sample(X, grid.to(X.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    if batch.mask_fields:
        # nearest neighbour, as PIL's NEAREST: output pixel k takes the pixel under its centre, j + (k + 1/2) w / S
        rows = _nearest(top, height, size[0], H).to(device)  # (B, S_h)
        cols = _nearest(left, width, size[1], W).to(device)  # (B, S_w)
        examples = torch.arange(len(batch), device=device)[:, None, None]
    for name in batch.mask_fields:
        changes[name] = getattr(batch, name)[examples, rows[:, :, None], cols[:, None, :]]  # (B, S_h, S_w)
    changes.update(_boxes_in_crop(batch, top, left, height, width, H, W))
    return batch.replace(**changes)


def _sample_points(start: torch.Tensor, extent: torch.Tensor, size: int, limit: int) -> torch.Tensor:
    """(B, size) coordinates in [-1, 1] (``grid_sample``'s, align_corners=False) of output pixel k of a crop
    [start, start + extent) of ``limit`` pixels resized to ``size``: pixel start + (k + 1/2) extent / size - 1/2
    (``interpolate``'s), kept between the crop's first and last pixel centres, so that an enlarged crop's
    border repeats its own pixels instead of blending in its neighbours."""
    centres = start[:, None] + (torch.arange(size) + 0.5) * extent[:, None] / size - 0.5  # (B, size)
    centres = torch.minimum(torch.maximum(centres, start[:, None]), (start + extent - 1)[:, None])
    return (2 * centres + 1) / limit - 1


def _boxes_in_crop(batch: Batch, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor, width: torch.Tensor,
                   H: int, W: int) -> dict[str, torch.Tensor]:
    """Each box field's relative (x1, y1, x2, y2) (B, M, 4) in the frame of the crop (top, left, height,
    width) of H x W images, clipped to it."""
    changes = {}
    for name in batch.box_fields:
        boxes = getattr(batch, name)  # (B, M, 4) relative (x1, y1, x2, y2)
        origin = torch.stack([left / W, top / H, left / W, top / H], dim=-1).to(boxes.device, boxes.dtype)  # (B, 4)
        extent = torch.stack([width / W, height / H, width / W, height / H], dim=-1).to(boxes.device, boxes.dtype)
        changes[name] = ((boxes - origin[:, None]) / extent[:, None]).clamp(0, 1)
    return changes


def _nearest(start: torch.Tensor, extent: torch.Tensor, size: int, limit: int) -> torch.Tensor:
    """(B, size) pixel indices: floor(start + (k + 1/2) extent / size) for k < size, kept inside [0, limit)."""
    centres = start[:, None] + (torch.arange(size) + 0.5) * extent[:, None] / size  # (B, size)
    return centres.floor().long().clamp(0, limit - 1)


def _spatial_size(batch: Batch) -> tuple[int, int]:
    if not batch.image_fields:
        raise ValueError(f"a {type(batch).__name__} has no images to crop")
    return tuple(_images(batch, batch.image_fields[0]).shape[-2:])


class RandomResizedCrop(Transform):
    """A random part of each image, resized to ``size`` (D2L §13.1.1.2), as torchvision's
    ``RandomResizedCrop``: the part covers a fraction of the image's area drawn from U(``scale``)
    and has an aspect ratio (width / height) drawn log-uniformly from ``ratio``; of ten such draws the
    first that fits in the image is taken, else a centred crop of the whole image with the ratio
    clamped to ``ratio``. Its position is uniform over where it fits. Images are resampled
    bilinearly (without antialiasing), masks by nearest neighbour, boxes moved and clipped."""

    ATTEMPTS = 10

    def __init__(self, size: int | tuple[int, int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.size = _size_pair(size, "size")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {ratio}")
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def sample(self, B: int, H: int, W: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """The crops of B examples of H x W images: (top, left, height, width) in pixels, each (B,)."""
        n = self.ATTEMPTS
        area = H * W * (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(B, n, generator=generator))
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_low + (log_high - log_low) * torch.rand(B, n, generator=generator))  # (B, n)
        width, height = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
        fits = (width >= 1) & (width <= W) & (height >= 1) & (height <= H)  # (B, n)
        first = fits.float().argmax(dim=1, keepdim=True)  # (B, 1) the first draw that fits (0 when none does)
        width, height = width.gather(1, first)[:, 0], height.gather(1, first)[:, 0]
        # the fallback: the whole image, cut to the nearest allowed aspect ratio, centred
        in_ratio = W / H
        fallback_w = W if in_ratio <= self.ratio[1] else round(H * self.ratio[1])
        fallback_h = H if in_ratio >= self.ratio[0] else round(W / self.ratio[0])
        found = fits.any(dim=1)
        width = torch.where(found, width, float(fallback_w))
        height = torch.where(found, height, float(fallback_h))
        where = torch.rand(B, 2, generator=generator)  # uniform positions among those that fit
        top = torch.where(found, torch.floor(where[:, 0] * (H - height + 1)), torch.floor((H - height) / 2))
        left = torch.where(found, torch.floor(where[:, 1] * (W - width + 1)), torch.floor((W - width) / 2))
        return top, left, height, width

    def __call__(self, batch, generator=None):
        return _crop_and_resize(batch, *self.sample(len(batch), *_spatial_size(batch), generator), self.size)

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class CenterCrop(Transform):
    """The centre ``size`` (H, W) of every image, mask and box set (the book's test-time
    ``CenterCrop``, D2L §13.2.1), cut exactly where torchvision's is (its offsets rounded half to even);
    the image must be at least that large."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = _size_pair(size, "size")

    def __call__(self, batch, generator=None):
        H, W = _spatial_size(batch)
        h, w = self.size
        if h > H or w > W:
            raise ValueError(f"cannot cut a centre crop of {h}x{w} out of {H}x{W} images")
        top, left = round((H - h) / 2), round((W - w) / 2)  # torchvision's center_crop
        changes = {name: getattr(batch, name)[..., top:top + h, left:left + w]
                   for name in (*batch.image_fields, *batch.mask_fields)}
        full = lambda value: torch.full((len(batch),), float(value))  # noqa: E731
        changes.update(_boxes_in_crop(batch, full(top), full(left), full(h), full(w), H, W))
        return batch.replace(**changes)

    def spec(self):
        return [{"name": "CenterCrop", "size": list(self.size)}]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


# the luma weights of ITU-R 601-2, as torchvision's rgb_to_grayscale and PIL's convert("L")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def grayscale(X: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma, 0.299 R + 0.587 G + 0.114 B."""
    r, g, b = GRAY_WEIGHTS
    return (r * X[:, 0:1] + g * X[:, 1:2]).add_(X[:, 2:3], alpha=b)  # (B, 1, H, W)


def rgb_to_hsv(X: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> hue, saturation, value, each in [0, 1] (hue in turns: 0 red,
    1/3 green, 2/3 blue), as Python's ``colorsys.rgb_to_hsv`` per pixel."""
    r, g, b = X.split(1, dim=-3)  # each (..., 1, H, W)
    value = X.amax(dim=-3, keepdim=True)
    chroma = value - X.amin(dim=-3, keepdim=True)
    saturation = chroma / torch.where(value > 0, value, 1)
    safe = torch.where(chroma > 0, chroma, 1)
    hue = torch.where(value == r, (g - b) / safe,  # between yellow and magenta
                      torch.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))  # cyan-yellow, magenta-cyan
    hue = torch.where(chroma > 0, (hue / 6) % 1, 0)
    return torch.cat([hue, saturation, value], dim=-3)


def hsv_to_rgb(X: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rgb_to_hsv`: (..., 3, H, W) hue, saturation, value -> RGB, channel by
    channel with the closed form c_n = V - V S max(0, min(k, 4 - k, 1)), k = (n + 6 H) mod 6, n = 5
    for red, 3 for green, 1 for blue (the six sectors of the colour wheel without a table)."""
    hue, saturation, value = X.split(1, dim=-3)  # each (..., 1, H, W)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=X.dtype, device=X.device)[:, None, None]  # (3, 1, 1)
    k = (n + 6 * hue) % 6  # (..., 3, H, W)
    ramp = torch.minimum(k, 4 - k).clamp_(0, 1)
    return value - value * saturation * ramp


def adjust_brightness(X: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each image b times factor[b] (B,), clipped to [0, 1]."""
    return (X * factor[:, None, None, None]).clamp_(0, 1)


def adjust_contrast(X: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each image b blended with its mean gray level: f X + (1 - f) mean(gray(X)), f = factor[b], clipped."""
    luma = grayscale(X) if X.shape[1] == 3 else X
    f = factor[:, None, None, None]
    return (f * X).add_((1 - f) * luma.mean(dim=(-3, -2, -1), keepdim=True)).clamp_(0, 1)


def adjust_saturation(X: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each RGB image b blended with its gray version: f X + (1 - f) gray(X), f = factor[b], clipped."""
    f = factor[:, None, None, None]
    return (f * X).add_((1 - f) * grayscale(X)).clamp_(0, 1)


def adjust_hue(X: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each RGB image b with its hue turned by shift[b] of a full turn (saturation and value kept)."""
    hsv = rgb_to_hsv(X)
    hue = (hsv[:, 0] + shift[:, None, None]) % 1
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1))


class ColorJitter(Transform):
    """Random changes of brightness, contrast, saturation and hue (D2L §13.1.1.3), as torchvision's
    ``ColorJitter``, with each example's own factors (:func:`adjust_brightness` and the others):

    * brightness: X f, f ~ U[max(0, 1 - b), 1 + b];
    * contrast: f X + (1 - f) mean(gray(X)), the mean over the image, f drawn alike;
    * saturation: f X + (1 - f) gray(X), per pixel, f drawn alike;
    * hue: the hue turned by h ~ U[-hue, hue] of a full turn (hue <= 0.5).

    Each result is clipped to [0, 1]. The four are applied in a random order, drawn once per batch.
    Masks and boxes are untouched. Saturation and hue need RGB images.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0):
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ValueError(f"{name} must be at least 0, got {value}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] (a fraction of a turn either way), got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, batch, generator=None):
        B = len(batch)
        draws = []  # (function, per-example values) of each jitter that is switched on
        for spread, adjust in ((self.brightness, adjust_brightness), (self.contrast, adjust_contrast),
                               (self.saturation, adjust_saturation)):
            low = max(0.0, 1 - spread)
            draws.append((adjust, low + (1 + spread - low) * torch.rand(B, generator=generator), spread > 0))
        draws.append((adjust_hue, (2 * torch.rand(B, generator=generator) - 1) * self.hue, self.hue > 0))
        order = torch.randperm(4, generator=generator).tolist()
        changes = {}
        for name in batch.image_fields:
            X = _images(batch, name)
            if (self.saturation or self.hue) and X.shape[1] != 3:
                raise ValueError(f"saturation and hue jitter need RGB images, field {name!r} has {X.shape[1]} channels")
            for i in order:
                adjust, values, on = draws[i]
                if on:
                    X = adjust(X, values.to(X.device, X.dtype))
            changes[name] = X
        return batch.replace(**changes)

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, "
                f"hue={self.hue})")


class Normalize(Transform):
    """Standardize each channel: (X - mean) / std (the book's ``Normalize`` with ImageNet's
    statistics, D2L §13.2.1). Last in a pipeline: the other transforms expect values in [0, 1]."""

    IMAGENET_MEAN = (0.485, 0.456, 0.406)
    IMAGENET_STD = (0.229, 0.224, 0.225)

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need one value per channel, std positive; got {mean} and {std}")
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, batch, generator=None):
        changes = {}
        for name in batch.image_fields:
            X = _images(batch, name)
            if X.shape[1] != len(self.mean):
                raise ValueError(f"Normalize has statistics for {len(self.mean)} channels, "
                                 f"field {name!r} has {X.shape[1]}")
            mean = torch.tensor(self.mean, dtype=X.dtype, device=X.device)[:, None, None]
            std = torch.tensor(self.std, dtype=X.dtype, device=X.device)[:, None, None]
            changes[name] = (X - mean) / std
        return batch.replace(**changes)

    def denormalize(self, X: torch.Tensor) -> torch.Tensor:
        """The images before normalisation, clipped to [0, 1] (the book's ``postprocess``)."""
        mean = torch.tensor(self.mean, dtype=X.dtype, device=X.device)[:, None, None]
        std = torch.tensor(self.std, dtype=X.dtype, device=X.device)[:, None, None]
        return (X * std + mean).clamp(0, 1)

    def spec(self):
        return [{"name": "Normalize", "mean": list(self.mean), "std": list(self.std)}]

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def transform_from_spec(spec) -> Transform:
    """The transform that ``Transform.spec()`` described (a list of steps)."""
    known = {"Resize": Resize, "CenterCrop": CenterCrop, "Normalize": Normalize}
    steps = []
    for step in spec:
        step = dict(step)
        name = step.pop("name", None)
        if name not in known:
            raise ValueError(f"unknown transform {name!r} in a saved description; this divekit knows {', '.join(known)}")
        steps.append(known[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in step.items()}))
    return steps[0] if len(steps) == 1 else Compose(steps)
