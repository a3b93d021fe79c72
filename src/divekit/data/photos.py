"""Real photographs for the computer-vision chapters (D2L §13) where the book's data cannot be had:
the colour photographs that scikit-image ships inside its wheel (the optional extra
``pip install 'divekit[photos]'``), read straight from the installed package's ``data`` folder
with Pillow (scikit-image itself is never imported, and nothing is fetched at run time).

Generated data sets (objects pasted on photo backgrounds, VOC-style segmentation sets) take their
backgrounds from :func:`random_crops`, deterministically from a seed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# colour photographs bundled in scikit-image's wheel (skimage/data/); the gray ones are left out
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
          "motorcycle_right.png", "retina.jpg", "rocket.jpg")
EXTRA = "pip install 'divekit[photos]'"


def photo_folder() -> Path:
    """scikit-image's bundled data folder, found without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"the photographs come from scikit-image's wheel, which is not installed; {EXTRA}")
    return Path(spec.origin).parent / "data"


def load_photos(names: tuple[str, ...] = PHOTOS) -> list[torch.Tensor]:
    """The photographs ``names`` as uint8 tensors (3, H, W), in the order given."""
    folder = photo_folder()
    photos = []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed scikit-image; reinstall it ({EXTRA})")
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # (H, W, 3)
        photos.append(torch.from_numpy(pixels.copy()).permute(2, 0, 1))  # (3, H, W)
    return photos


def random_crops(photos: list[torch.Tensor], count: int, size: int | tuple[int, int], *,
                 generator: torch.Generator, min_scale: float = 0.2) -> torch.Tensor:
    """``count`` random square-ish crops of the photos, each covering between ``min_scale`` and all
    of its photo's shorter side, resized to ``size`` (bilinear): uint8 (count, 3, H, W)."""
    H, W = (size, size) if isinstance(size, int) else size
    if count < 1 or not photos:
        raise ValueError(f"random_crops needs photos and a positive count, got {len(photos)} photos and count {count}")
    which = torch.randint(len(photos), (count,), generator=generator)
    scales = min_scale + (1 - min_scale) * torch.rand(count, generator=generator)
    corners = torch.rand(count, 2, generator=generator)
    crops = torch.empty(count, 3, H, W, dtype=torch.uint8)
    for i in range(count):  # generation happens once per data set; each crop has its own size
        photo = photos[int(which[i])]
        side = max(8, int(scales[i] * min(photo.shape[1:])))
        top = int(corners[i, 0] * (photo.shape[1] - side))
        left = int(corners[i, 1] * (photo.shape[2] - side))
        patch = photo[:, top:top + side, left:left + side].float()[None]  # (1, 3, side, side)
        resized = F.interpolate(patch, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
        crops[i] = resized[0].round().clamp(0, 255).to(torch.uint8)
    return crops
