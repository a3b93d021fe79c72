"""Pascal VOC's segmentation format (D2L §13.9): palette label PNGs read as class indices with 255
kept, the colour map both ways, the folder reader with its crop filter, the random-crop loader, and
the generated VOC-format stand-in."""

import importlib.util
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from divekit.data.batch import Segmentation
from divekit.data.transforms import RandomHorizontalFlip
from divekit.data.voc import (VOC_CLASSES, VOC_COLORMAP, RandomCropLoader, SegmentationImages, colors_to_labels,
                              labels_to_colors, read_label_png, read_voc, voc_palette, write_label_png)

needs_photos = pytest.mark.skipif(importlib.util.find_spec("skimage") is None,
                                  reason="the photos extra (scikit-image) is not installed")

# the book's VOC_COLORMAP (D2L §13.9.2), written out
BOOK_COLORMAP = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128],
                 [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0], [64, 0, 128], [192, 0, 128],
                 [64, 128, 128], [192, 128, 128], [0, 64, 0], [128, 64, 0], [0, 192, 0], [128, 192, 0], [0, 64, 128]]


def test_the_palette_is_vocs():
    assert VOC_COLORMAP.tolist() == BOOK_COLORMAP and len(VOC_CLASSES) == 21
    assert voc_palette()[255].tolist() == [224, 224, 192]  # the cream of the object borders
    assert voc_palette().unique(dim=0).shape == (256, 3)


def test_label_pngs_keep_their_indices_and_the_ignore_value(tmp_path):
    labels = torch.randint(0, 21, (7, 9), dtype=torch.uint8)
    labels[0, :4] = 255
    write_label_png(tmp_path / "a.png", labels)
    with Image.open(tmp_path / "a.png") as image:
        assert image.mode == "P" and image.getpalette()[255 * 3:256 * 3] == [224, 224, 192]
    assert torch.equal(read_label_png(tmp_path / "a.png"), labels)
    # the same labels saved as colours (what d2l reads them as) come back as the same indices
    colours = labels_to_colors(labels)
    assert colours.shape == (7, 9, 3) and colours[0, 0].tolist() == [224, 224, 192]
    Image.fromarray(colours.numpy()).save(tmp_path / "rgb.png")
    assert torch.equal(read_label_png(tmp_path / "rgb.png"), labels)
    assert torch.equal(colors_to_labels(colours), labels.long())
    with pytest.raises(ValueError, match=r"colours \[\[1, 2, 3\]\] are not VOC label colours"):
        colors_to_labels(torch.tensor([[[1, 2, 3], [0, 0, 0]]], dtype=torch.uint8))
    # grayscale masks, 8- and 16-bit (numpy's and OpenCV's uint16), hold the indices themselves
    for values in (labels.numpy(), labels.numpy().astype(np.uint16)):
        Image.fromarray(values).save(tmp_path / "gray.png")
        assert torch.equal(read_label_png(tmp_path / "gray.png"), labels)
    Image.fromarray(np.full((2, 2), 300, dtype=np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="values 300..300; class indices must lie in 0..255"):
        read_label_png(tmp_path / "big.png")


def write_tiny_voc(root, sizes: dict[str, list[tuple[int, int]]]):
    """A VOC folder by hand: one JPEG, one palette PNG per name, and the split lists."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, shapes in sizes.items():
        names = [f"{split}{i}" for i in range(len(shapes))]
        for name, (h, w) in zip(names, shapes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
            write_label_png(root / "SegmentationClass" / f"{name}.png",
                            torch.full((h, w), len(name), dtype=torch.uint8))
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")


def test_read_voc_reads_a_split_and_says_which_images_are_smaller_than_the_crop(tmp_path, caplog):
    write_tiny_voc(tmp_path, {"train": [(20, 30), (12, 40), (25, 25)], "val": [(20, 20)]})
    data = read_voc(tmp_path, "train")
    assert data.names == ["train0", "train1", "train2"] and len(data) == 3
    assert data.images[1].shape == (3, 12, 40) and data.images[1].dtype == torch.uint8
    assert data.masks[1].shape == (12, 40) and (data.masks[1] == 6).all()
    with caplog.at_level(logging.WARNING, logger="divekit"):
        kept = read_voc(tmp_path, "train", crop=(15, 28))
    assert kept.names == ["train0"]
    assert "left out 2 of 3 images smaller than the 15x28 crop: train1 (12x40), train2 (25x25)" in caplog.text
    with pytest.raises(ValueError, match="no image of VOC val .* is at least 30x30"):
        read_voc(tmp_path, "val", crop=(30, 30))
    with pytest.raises(ValueError, match="splits are train, val"):
        read_voc(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="is not a VOC folder"):
        read_voc(tmp_path / "JPEGImages", "train")


def spelled_out(count=6, seed=0) -> SegmentationImages:
    """Images of different sizes whose red channel is ten times their labels, so a crop of both
    at one place keeps red == 10 * labels."""
    g = torch.Generator().manual_seed(seed)
    images, masks = [], []
    for i in range(count):
        h, w = 10 + i, 14 + 2 * i
        mask = torch.randint(0, 21, (h, w), generator=g, dtype=torch.int64).to(torch.uint8)
        mask[0, 0] = 255
        images.append(torch.stack([mask * 0 + (mask.long() * 10 % 256).to(torch.uint8),
                                   torch.randint(0, 256, (h, w), generator=g, dtype=torch.uint8), mask * 0]))
        masks.append(mask)
    return SegmentationImages(images, masks, [f"im{i}" for i in range(count)])


def test_the_random_crop_loader_cuts_images_and_labels_at_the_same_place():
    data = spelled_out()
    loader = RandomCropLoader(data, (8, 12), 4, shuffle=True, seed=1, transform=RandomHorizontalFlip())
    batches = list(loader)
    assert [len(b) for b in batches] == [4, 2] and len(loader) == 2
    for batch in batches:
        assert isinstance(batch, Segmentation) and batch.X.shape[1:] == (3, 8, 12) and batch.masks.dtype == torch.int64
        assert torch.equal((batch.X[:, 0] * 255).round().long(), batch.masks * 10 % 256)
    again = list(RandomCropLoader(data, (8, 12), 4, shuffle=True, seed=1, transform=RandomHorizontalFlip()))
    assert all(torch.equal(a.X, b.X) and torch.equal(a.masks, b.masks) for a, b in zip(batches, again))
    loader.set_epoch(2)
    assert not torch.equal(next(iter(loader)).X, batches[0].X)
    evaluation = RandomCropLoader(data, (8, 12), 6)
    assert torch.equal(next(iter(evaluation)).X, next(iter(evaluation)).X)  # the same crops every evaluation
    with pytest.raises(ValueError, match=r"1 images are smaller than the 11x12 crop \(e.g. im0\)"):
        RandomCropLoader(data, (11, 12), 2)


@needs_photos
def test_the_generated_voc_set_is_deterministic_and_reads_back(tmp_path):
    from divekit.data.shapes import write_voc_standin

    classes = ("disc", "square", "star")
    args = dict(classes=classes, sizes={"train": 3, "val": 2}, image_size=((40, 48), (50, 60)), seed=5)
    write_voc_standin(tmp_path / "a", **args)
    write_voc_standin(tmp_path / "b", **args)
    for name in ("JPEGImages/train_00001.jpg", "SegmentationClass/val_00001.png", "ImageSets/Segmentation/val.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    data = read_voc(tmp_path / "a", "train")
    assert data.names == ["train_00000", "train_00001", "train_00002"]
    for image, mask in zip(data.images, data.masks):
        assert 40 <= image.shape[1] <= 48 and 50 <= image.shape[2] <= 60 and image.shape[1:] == mask.shape
        assert set(mask.unique().tolist()) <= {0, 1, 2, 3, 255} and (mask > 0).any() and (mask == 255).any()
        # the border band separates labels: no two 4-neighbours hold two different classes
        inner = mask.long()
        for a, b in ((inner[1:], inner[:-1]), (inner[:, 1:], inner[:, :-1])):
            assert not ((a != b) & (a != 255) & (b != 255)).any()
