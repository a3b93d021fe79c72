"""A generated stand-in for Pascal VOC2012 (D2L §13.9), written in VOC's format, from real
photographs (the photos extra), deterministically from a seed.

The objects are shapes (a disc, a square, a star, ...) cut out of one photograph and pasted on a
crop of another, at random places, sizes and angles: what class an object is can only be told
from its outline. :func:`write_voc_standin` writes the set (``JPEGImages/*.jpg``,
``SegmentationClass/*.png`` palette PNGs with 255 on a band around each object, as VOC's
annotators drew it, ``ImageSets/Segmentation/train.txt`` and ``val.txt``) of images of several
sizes, for :func:`divekit.data.voc.read_voc`; :func:`voc_standin` keeps one in the cache.

Letters: N objects or images, H x W image size, (u, v) a pixel's coordinates in an object's own
frame (the object's centre at 0, its radius 1).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from divekit.data.hub import cache_dir
from divekit.data.photos import load_photos, random_crops
from divekit.data.voc import IGNORE, write_label_png

SHAPES = ("disc", "square", "triangle", "cross", "ring", "star", "crescent", "bar", "semicircle", "frame")


def _polygon(u: torch.Tensor, v: torch.Tensor, sides: int) -> torch.Tensor:
    """Inside the regular polygon of circumradius 1 with a vertex on the v axis."""
    angles = torch.arange(sides) * 2 * math.pi / sides + math.pi / sides + math.pi / 2  # its edges' normals
    reach = u[..., None] * torch.cos(angles) + v[..., None] * torch.sin(angles)  # (..., sides)
    return reach.amax(dim=-1) <= math.cos(math.pi / sides)


def _inside(kind: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether each point (u, v) of an object's frame is inside a shape of ``kind``."""
    r, phi = torch.sqrt(u**2 + v**2), torch.atan2(v, u)
    if kind == "disc":
        return r <= 1
    if kind == "square":
        return _polygon(u, v, 4)
    if kind == "triangle":
        return _polygon(u, v, 3)
    if kind == "cross":
        return ((u.abs() <= 0.3) & (v.abs() <= 1)) | ((v.abs() <= 0.3) & (u.abs() <= 1))
    if kind == "ring":
        return (r <= 1) & (r >= 0.6)
    if kind == "star":
        return r <= 0.45 + 0.55 * torch.cos(2.5 * phi).abs() ** 3  # five points
    if kind == "crescent":
        return (r <= 1) & ((u - 0.45) ** 2 + v**2 > 0.75**2)
    if kind == "bar":
        return (u.abs() <= 1) & (v.abs() <= 0.3)
    if kind == "semicircle":
        return (r <= 1) & (v >= -0.2)
    if kind == "frame":
        return _polygon(u, v, 4) & ~_polygon(u / 0.55, v / 0.55, 4)
    raise ValueError(f"unknown shape {kind!r}; the shapes are {', '.join(SHAPES)}")


def shape_masks(kinds: list[str], H: int, W: int, centres: torch.Tensor, radii: torch.Tensor,
                angles: torch.Tensor) -> torch.Tensor:
    """Bool (N, H, W): where object n, a ``kinds[n]`` centred at ``centres[n]`` (x, y in pixels) with
    radius ``radii[n]`` pixels turned by ``angles[n]`` radians, covers the image."""
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")  # pixel centres
    dx, dy = xs - centres[:, 0, None, None], ys - centres[:, 1, None, None]  # (N, H, W)
    cos, sin = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]
    u, v = (cos * dx + sin * dy) / radii[:, None, None], (-sin * dx + cos * dy) / radii[:, None, None]
    masks = torch.zeros(len(kinds), H, W, dtype=torch.bool)
    for kind in set(kinds):  # each shape's test once, on the objects of that shape
        chosen = torch.tensor([k == kind for k in kinds])
        masks[chosen] = _inside(kind, u[chosen], v[chosen])
    return masks


def _textures(photos: list[torch.Tensor], count: int, size: tuple[int, int],
              generator: torch.Generator) -> torch.Tensor:
    """What objects are made of: photo crops pulled halfway to one random colour each, so an object
    stands out of its background but carries no class in its colour. uint8 (count, 3, H, W)."""
    crops = random_crops(photos, count, size, generator=generator, min_scale=0.3).float()
    colours = torch.rand(count, 3, 1, 1, generator=generator) * 255
    return ((crops + colours) / 2).round().to(torch.uint8)


def shape_scene(classes: tuple[str, ...], H: int, W: int, generator: torch.Generator,
                photos: list[torch.Tensor], max_objects: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """One segmentation example: 1 to ``max_objects`` objects of ``classes`` on a photo, the later
    over the earlier. Returns the uint8 image (3, H, W) and uint8 labels (H, W): 0 background,
    c + 1 for ``classes[c]``, 255 on the band of pixels whose 3x3 neighbourhood holds two labels
    (VOC's object borders)."""
    n = int(torch.randint(1, max_objects + 1, (1,), generator=generator))
    kinds = torch.randint(len(classes), (n,), generator=generator)
    side = min(H, W)
    centres = torch.rand(n, 2, generator=generator) * torch.tensor([W, H])
    radii = side * (0.15 + 0.2 * torch.rand(n, generator=generator))
    angles = 2 * math.pi * torch.rand(n, generator=generator)
    masks = shape_masks([classes[k] for k in kinds.tolist()], H, W, centres, radii, angles)  # (n, H, W)
    image = random_crops(photos, 1, (H, W), generator=generator)[0]
    labels = torch.zeros(H, W, dtype=torch.int64)
    objects = _textures(photos, n, (H, W), generator)
    for i in range(n):  # later objects cover earlier ones
        image = torch.where(masks[i], objects[i], image)
        labels[masks[i]] = int(kinds[i]) + 1
    padded = labels[None, None].float()
    high = F.max_pool2d(padded, 3, stride=1, padding=1)
    low = -F.max_pool2d(-padded, 3, stride=1, padding=1)
    labels[(high != low)[0, 0]] = IGNORE
    return image, labels.to(torch.uint8)


def write_voc_standin(root: str | os.PathLike, classes: tuple[str, ...], sizes: dict[str, int], *,
                      image_size: tuple[tuple[int, int], tuple[int, int]], seed: int = 0) -> Path:
    """Write a VOC2012-format segmentation set of shape scenes into ``root`` (see the module
    docstring): ``sizes`` images per split ("train", "val"), each of a height and width drawn from
    ``image_size`` ((low, high) of H, (low, high) of W). The same arguments write the same files."""
    root = Path(root)
    generator = torch.Generator().manual_seed(seed)
    photos = load_photos()
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (h_low, h_high), (w_low, w_high) = image_size
    for split, count in sizes.items():
        names = []
        for i in range(count):
            name = f"{split}_{i:05d}"
            H = int(torch.randint(h_low, h_high + 1, (1,), generator=generator))
            W = int(torch.randint(w_low, w_high + 1, (1,), generator=generator))
            image, labels = shape_scene(classes, H, W, generator, photos)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
            write_label_png(root / "SegmentationClass" / f"{name}.png", labels)
            names.append(name)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def generated_folder(name: str, write: Callable[[Path], object]) -> Path:
    """``cache_dir()/generated/name``, made by ``write(folder)`` the first time (into a temporary
    folder renamed into place, so a half-written set is never used). Name it by everything that
    decides its contents."""
    folder = cache_dir() / "generated" / name
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        write(staging)
        os.replace(staging, folder)
    except OSError:
        if not folder.is_dir():  # another process finished first: use its copy
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def voc_standin(classes: tuple[str, ...], num_train: int, num_val: int,
                image_size: tuple[tuple[int, int], tuple[int, int]], seed: int = 0) -> Path:
    """The VOC-format stand-in (:func:`write_voc_standin`) in the cache, written once."""
    (h_low, h_high), (w_low, w_high) = image_size
    name = f"voc-shapes-{'-'.join(classes)}-{num_train}-{num_val}-{h_low}x{w_low}-{h_high}x{w_high}-seed{seed}"
    return generated_folder(name, lambda folder: write_voc_standin(
        folder, classes, {"train": num_train, "val": num_val}, image_size=image_size, seed=seed))
