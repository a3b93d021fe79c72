"""Pascal VOC2012 semantic segmentation (D2L §13.9), read from its own folder layout, and loaded in
random crops of image and labels together.

A VOC folder (``VOCdevkit/VOC2012``) holds ``JPEGImages/NAME.jpg``, ``SegmentationClass/NAME.png``
and the lists ``ImageSets/Segmentation/train.txt`` and ``val.txt``. A label PNG is a palette image:
its pixels are class indices 0-20 into :data:`VOC_CLASSES`, and 255 on the thin border around each
object and on what the annotators left undecided; the palette only makes them visible, as the
colours of :data:`VOC_COLORMAP` (255 is cream, (224, 224, 192)). So the indices are read directly:
no colour lookup table (the book builds one of 256^3 int64 entries, 128 MiB, and maps the cream
border to background), and 255 is kept, to be ignored by the loss and the metrics.

Images differ in size, so they are kept as uint8 tensors of their own sizes (about 1.2 GB for all
of VOC's 2913 segmentation images); :class:`RandomCropLoader` cuts a random ``crop`` out of each
image and its labels at the same place (the book's ``voc_rand_crop``) to make minibatches, then
runs the batch transforms on the device. Images smaller than the crop cannot be used: they are
dropped, as the book drops them, but never silently (a warning names how many and which).

Letters: B batch size, H x W an image's size, h x w the crop's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from divekit.data.batch import Segmentation
from divekit.data.loader import TensorLoader
from divekit.data.transforms import Transform

log = logging.getLogger("divekit")

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train",
               "tv/monitor")
IGNORE = Segmentation.IGNORE
SPLITS = ("train", "val")
CROP_STREAM = 700_000_001  # seed offset of the crops' positions, apart from the shuffling's and the transform's


def voc_palette() -> torch.Tensor:
    """The 256 colours of VOC's label PNGs, uint8 (256, 3): entry i spreads the bits of i over the
    three channels, most significant first (VOC's devkit ``labelcolormap``), so the 21 classes get
    well separated colours and 255 is cream (224, 224, 192)."""
    index = torch.arange(256)
    palette = torch.zeros(256, 3, dtype=torch.int64)
    for j in range(8):  # bit 3j + c of the index becomes bit 7 - j of channel c
        for c in range(3):
            palette[:, c] |= ((index >> (3 * j + c)) & 1) << (7 - j)
    return palette.to(torch.uint8)


VOC_COLORMAP = voc_palette()[:len(VOC_CLASSES)]  # (21, 3): the book's VOC_COLORMAP


def labels_to_colors(labels: torch.Tensor) -> torch.Tensor:
    """Class indices (..., H, W) -> their VOC colours, uint8 (..., H, W, 3) (the book's ``label2image``, §13.11.5)."""
    return voc_palette().to(labels.device)[labels.long()]


def colors_to_labels(colors: torch.Tensor) -> torch.Tensor:
    """VOC colours uint8 (..., H, W, 3) -> class indices int64 (..., H, W), 255 for the border colour
    (the book's ``voc_label_indices``, by comparing with the 22 colours in use, not a 256^3 table).
    A colour that is neither a class's nor the border's is an error."""
    known = torch.cat([VOC_COLORMAP, voc_palette()[IGNORE:]]).to(colors.device)  # (22, 3)
    codes = torch.tensor([IGNORE if i == len(VOC_CLASSES) else i for i in range(len(known))], device=colors.device)
    matches = (colors[..., None, :] == known).all(dim=-1)  # (..., H, W, 22)
    if not matches.any(dim=-1).all():
        strange = colors[~matches.any(dim=-1)].unique(dim=0)[:5].tolist()
        raise ValueError(f"colours {strange} are not VOC label colours (the 21 classes' and the border's)")
    return codes[matches.float().argmax(dim=-1)]


def read_label_png(path: str | os.PathLike) -> torch.Tensor:
    """A VOC label image as uint8 (H, W) class indices (255: ignore): a palette PNG's indices as
    they are, an RGB one through :func:`colors_to_labels`, a grayscale one's values as indices."""
    with Image.open(path) as image:
        image.load()
        if image.mode == "P":
            return torch.from_numpy(np.asarray(image).copy())
        if image.mode in ("L", "I", "I;16", "I;16B", "I;16L"):  # grayscale: the values are the indices
            values = np.asarray(image)
            if values.min() < 0 or values.max() > 255:
                raise ValueError(f"{path} is a grayscale label image with values {values.min()}..{values.max()}; "
                                 "class indices must lie in 0..255 (255: ignore)")
            return torch.from_numpy(values.astype(np.uint8))
        rgb = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    return colors_to_labels(rgb).to(torch.uint8)


def write_label_png(path: str | os.PathLike, labels: torch.Tensor) -> None:
    """Class indices uint8 (H, W) as a palette PNG with VOC's colours, as VOC stores its labels."""
    image = Image.fromarray(labels.to(torch.uint8).numpy())
    image.putpalette(voc_palette().reshape(-1).tolist())  # an "L" image with a palette becomes a "P" image
    image.save(path)


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as uint8 (3, H, W) RGB."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # (3, H, W)


@dataclass
class SegmentationImages:
    """Images and their labels, each of its own size: uint8 (3, H, W) images and uint8 (H, W) class
    indices (255: ignore), with their VOC names."""

    images: list[torch.Tensor]
    masks: list[torch.Tensor]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)


def read_voc(root: str | os.PathLike, split: str, crop: tuple[int, int] | None = None) -> SegmentationImages:
    """The images and labels listed in ``ImageSets/Segmentation/{split}.txt`` of a VOC folder (the
    book's ``read_voc_images``). With ``crop`` (h, w), images smaller than it are left out with a
    warning that says how many and which (the book's ``filter`` drops them silently)."""
    if split not in SPLITS:
        raise ValueError(f"VOC's segmentation splits are {', '.join(SPLITS)}, got {split!r}")
    root = Path(root)
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{root} is not a VOC folder: no {listing.relative_to(root)} (expected JPEGImages/, "
                                "SegmentationClass/ and ImageSets/Segmentation/ as in VOCdevkit/VOC2012)")
    names = listing.read_text().split()
    images, masks, kept, small = [], [], [], []
    for name in names:
        image = read_image(root / "JPEGImages" / f"{name}.jpg")
        mask = read_label_png(root / "SegmentationClass" / f"{name}.png")
        if image.shape[1:] != mask.shape:
            raise ValueError(f"{name}: the image is {tuple(image.shape[1:])} but its labels are {tuple(mask.shape)}")
        if crop is not None and (image.shape[1] < crop[0] or image.shape[2] < crop[1]):
            small.append(f"{name} ({image.shape[1]}x{image.shape[2]})")
            continue
        images.append(image)
        masks.append(mask)
        kept.append(name)
    if small:
        log.warning(f"VOC {split}: left out {len(small)} of {len(names)} images smaller than the {crop[0]}x{crop[1]} "
                    f"crop: {', '.join(small[:10])}{', ...' if len(small) > 10 else ''}")
    if not kept:
        raise ValueError(f"no image of VOC {split} in {root} is at least {crop[0]}x{crop[1]}; use a smaller crop")
    return SegmentationImages(images, masks, kept)


class RandomCropLoader(TensorLoader):
    """Minibatches of ``crop`` (h, w) pieces of images of different sizes, each cut at a random place
    in its image and labels alike (the book's ``VOCSegDataset`` with ``voc_rand_crop``), as
    ``Segmentation(X, masks)`` on the device: X float in [0, 1] (B, 3, h, w), masks int64 (B, h, w).
    The images stay uint8 on the CPU; the places are drawn from a generator seeded with the seed
    and the epoch, so an evaluation loader (whose epoch never changes) cuts the same crops each time."""

    def __init__(self, data: SegmentationImages, crop: tuple[int, int], batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu", transform: Transform | None = None,
                 drop_last: bool = False):
        small = [name for name, image in zip(data.names, data.images)
                 if image.shape[1] < crop[0] or image.shape[2] < crop[1]]
        if small:
            raise ValueError(f"{len(small)} images are smaller than the {crop[0]}x{crop[1]} crop (e.g. {small[0]}); "
                             "read them with read_voc(..., crop=crop) to leave them out")
        self.crop = tuple(crop)
        super().__init__(data, batch_size, shuffle=shuffle, seed=seed, device=device, transform=transform,
                         drop_last=drop_last)

    def _place(self, data: SegmentationImages) -> SegmentationImages:
        return data  # kept on the CPU, as uint8; only the crops go to the device

    def __iter__(self):
        self._crops = self._generator(CROP_STREAM)
        yield from super().__iter__()

    def _take(self, index: torch.Tensor | slice) -> Segmentation:
        positions = range(self.num_examples)[index] if isinstance(index, slice) else index.tolist()
        h, w = self.crop
        corners = torch.rand(len(positions), 2, generator=self._crops)  # uniform over where the crop fits
        images, masks = [], []
        for (i, (u, v)) in zip(positions, corners.tolist()):  # one slice per example: each image has its own size
            image, mask = self.data.images[i], self.data.masks[i]
            top, left = int(u * (image.shape[1] - h + 1)), int(v * (image.shape[2] - w + 1))
            images.append(image[:, top:top + h, left:left + w])
            masks.append(mask[top:top + h, left:left + w])
        X = torch.stack(images).to(self.device).float().div_(255)  # (B, 3, h, w)
        return Segmentation(X, torch.stack(masks).to(self.device).long())  # masks (B, h, w)
