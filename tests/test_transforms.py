"""Batched image augmentation (D2L §13.1): flips, random resized crops, centre crops, colour jitter
and normalisation move an image, its mask and its boxes together, draw per example from a seeded
generator, and agree with independent references (slicing + ``F.interpolate``, Python's
``colorsys``, kornia where it is installed)."""

import colorsys
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from divekit.data.batch import Detection, Segmentation, Split
from divekit.data.transforms import (CenterCrop, ColorJitter, Compose, Normalize, RandomHorizontalFlip,
                                     RandomResizedCrop, RandomVerticalFlip, Resize, _crop_and_resize,
                                     adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, hsv_to_rgb,
                                     rgb_to_hsv, transform_from_spec)

needs_kornia = pytest.mark.skipif(importlib.util.find_spec("kornia") is None, reason="kornia is not installed")


def labelled_images(B=16, H=12, W=16, classes=5, seed=0):
    """Images whose channel 0 is the mask's class index (as a float) and whose others are noise:
    wherever a transform samples exact pixels, the image still spells out its mask."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.randint(0, classes, (B, H, W), generator=g)
    X = torch.cat([masks[:, None].float(), torch.rand(B, 2, H, W, generator=g)], dim=1)
    return Segmentation(X, masks)


def test_a_vertical_flip_moves_images_masks_and_boxes_per_example():
    batch = labelled_images(B=64)
    out = RandomVerticalFlip(0.5)(batch, torch.Generator().manual_seed(1))
    flipped = [bool(torch.equal(out.masks[i], batch.masks[i].flip(-2))) for i in range(64)]
    assert 16 < sum(flipped) < 48  # a coin per example
    assert torch.equal(out.X[:, 0].long(), out.masks)  # each mask went with its image
    images = torch.zeros(4, 1, 10, 10)
    images[:, :, 1:4, 2:5] = 1  # the object the box (x 0.2-0.5, y 0.1-0.4) surrounds
    boxes = torch.tensor([[[0.2, 0.1, 0.5, 0.4]]]).expand(4, 1, 4)
    out = RandomVerticalFlip(1.0)(Detection(images, boxes, torch.zeros(4, 1)))
    torch.testing.assert_close(out.boxes, torch.tensor([[[0.2, 0.6, 0.5, 0.9]]]).expand(4, 1, 4))
    assert out.X[0, 0, 6:9, 2:5].eq(1).all() and out.X[0, 0].sum() == 9
    assert torch.equal(RandomHorizontalFlip(1.0)(batch).X, batch.X.flip(-1))


def test_crop_and_resize_is_slicing_then_bilinear_resizing():
    batch = labelled_images(B=3, H=20, W=24)
    top, left = torch.tensor([0.0, 5.0, 3.0]), torch.tensor([0.0, 7.0, 10.0])
    height, width = torch.tensor([20.0, 12.0, 16.0]), torch.tensor([24.0, 16.0, 14.0])
    out = _crop_and_resize(batch, top, left, height, width, (8, 6))  # downsampling: no sample leaves its crop
    for b in range(3):
        t, l, h, w = (int(v[b]) for v in (top, left, height, width))
        part = batch.X[b:b + 1, :, t:t + h, l:l + w]
        torch.testing.assert_close(out.X[b:b + 1], F.interpolate(part, size=(8, 6), mode="bilinear"), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.masks[b:b + 1, None].float(),
                                   F.interpolate(batch.masks[b:b + 1, None, t:t + h, l:l + w].float(), size=(8, 6),
                                                 mode="nearest-exact"))
    big = _crop_and_resize(batch, top, left, height, width, (40, 33))  # upsampling: the crop's own pixels only
    for b in range(3):  # torchvision's resized_crop on tensors: a slice, then interpolate (no antialias upward)
        t, l, h, w = (int(v[b]) for v in (top, left, height, width))
        part = batch.X[b:b + 1, :, t:t + h, l:l + w]
        torch.testing.assert_close(big.X[b:b + 1], F.interpolate(part, size=(40, 33), mode="bilinear"), atol=1e-5, rtol=0)
    ones = torch.zeros(1, 1, 12, 12)
    ones[..., 4:8, 4:8] = 1
    box = _crop_and_resize(Split(ones, torch.zeros(1)), *(torch.tensor([v]) for v in (4.0, 4.0, 4.0, 4.0)), (8, 8))
    assert torch.equal(box.X, torch.ones(1, 1, 8, 8))  # the zeros around the box never blend in
    same = _crop_and_resize(batch, top, left, torch.full((3,), 8.0), torch.full((3,), 6.0), (8, 6))
    for b in range(3):  # a crop of the output's size takes the pixels themselves
        t, l = int(top[b]), int(left[b])
        torch.testing.assert_close(same.X[b], batch.X[b, :, t:t + 8, l:l + 6], atol=1e-5, rtol=0)
        assert torch.equal(same.masks[b], batch.masks[b, t:t + 8, l:l + 6])


def test_boxes_reaching_outside_a_crop_are_clipped_to_it():
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])  # the whole 8x8 image; the crop is its middle 4x4
    out = _crop_and_resize(Detection(torch.rand(1, 3, 8, 8), boxes, torch.zeros(1, 1)),
                           *(torch.tensor([v]) for v in (2.0, 2.0, 4.0, 4.0)), (4, 4))
    torch.testing.assert_close(out.boxes, torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]))  # not [-0.5, -0.5, 1.5, 1.5]


def test_random_resized_crops_follow_the_scale_and_ratio_and_fit_in_the_image():
    crop = RandomResizedCrop(32, scale=(0.1, 0.5), ratio=(0.5, 2.0))
    top, left, height, width = crop.sample(2000, 60, 80, torch.Generator().manual_seed(0))
    assert (top >= 0).all() and (left >= 0).all() and (top + height <= 60).all() and (left + width <= 80).all()
    area = height * width / (60 * 80)
    assert area.min() > 0.09 and area.max() < 0.52  # rounding to whole pixels moves the area a little
    assert (width / height).min() > 0.45 and (width / height).max() < 2.2
    assert top.unique().numel() > 30 and left.unique().numel() > 30  # positions spread over the image
    # no draw fits: the whole image, cut to the nearest allowed ratio and centred (torchvision's fallback)
    top, left, height, width = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(2.0, 3.0)).sample(
        5, 20, 20, torch.Generator().manual_seed(0))
    assert height.tolist() == [10.0] * 5 and width.tolist() == [20.0] * 5 and top.tolist() == [5.0] * 5


def test_random_resized_crops_move_masks_and_boxes_with_their_images_and_repeat_per_seed():
    batch = labelled_images(B=32, H=24, W=24)
    crop = RandomResizedCrop((12, 12), scale=(0.25, 1.0))
    out = crop(batch, torch.Generator().manual_seed(3))
    again = crop(batch, torch.Generator().manual_seed(3))
    assert out.X.shape == (32, 3, 12, 12) and out.masks.shape == (32, 12, 12) and out.masks.dtype == torch.int64
    assert torch.equal(out.X, again.X) and torch.equal(out.masks, again.masks)
    assert not torch.equal(out.X, crop(batch, torch.Generator().manual_seed(4)).X)
    # an image of two halves, its mask and a box around the bright half: they stay together under any crop
    X = torch.zeros(64, 1, 40, 40)
    X[:, :, :, 20:] = 1
    masks = torch.zeros(64, 40, 40, dtype=torch.int64)
    masks[:, :, 20:] = 1
    cropped = RandomResizedCrop(20, scale=(0.2, 0.6))(Segmentation(X, masks), torch.Generator().manual_seed(0))
    inside = (cropped.X[:, 0] > 0.99) | (cropped.X[:, 0] < 0.01)  # away from the blurred edge
    assert torch.equal(cropped.masks[inside], cropped.X[:, 0][inside].round().long())
    boxes = torch.tensor([[[0.5, 0.0, 1.0, 1.0]]]).expand(64, 1, 4)
    moved = RandomResizedCrop(20, scale=(0.2, 0.6))(Detection(X, boxes, torch.zeros(64, 1)),
                                                     torch.Generator().manual_seed(0))
    x1 = moved.boxes[:, 0, 0, None]  # (B, 1) the bright half starts at x1 in the crop's frame
    centres = (torch.arange(20) + 0.5) / 20  # of the output's columns
    brightness = moved.X[:, 0].mean(dim=1)  # (B, 20) per column
    assert (brightness[centres < x1 - 0.05] < 0.5).all() and (brightness[centres > x1 + 0.05] > 0.5).all()
    assert ((x1 > 0.1) & (x1 < 0.9)).sum() > 10  # many crops cut through the edge


def test_hsv_conversion_agrees_with_colorsys_and_round_trips():
    X = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    X[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # gray: no hue, no saturation
    X[0, :, 0, 1] = 0  # black
    hsv = rgb_to_hsv(X)
    for b, i, j in [(0, 0, 0), (0, 0, 1), (0, 2, 3), (1, 4, 6), (1, 1, 2)]:
        expected = colorsys.rgb_to_hsv(*X[b, :, i, j].tolist())
        torch.testing.assert_close(hsv[b, :, i, j], torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(hsv_to_rgb(hsv), X)


@needs_kornia
def test_colour_adjustments_agree_with_kornias():
    import kornia.enhance as K

    X = torch.rand(4, 3, 6, 8, dtype=torch.float64)
    f = torch.tensor([0.5, 0.9, 1.0, 1.4], dtype=torch.float64)
    torch.testing.assert_close(adjust_saturation(X, f), K.adjust_saturation_with_gray_subtraction(X, f))
    torch.testing.assert_close(adjust_contrast(X, f), K.adjust_contrast_with_mean_subtraction(X, f))
    torch.testing.assert_close(adjust_brightness(X, f), (X * f[:, None, None, None]).clamp(0, 1))
    shift = torch.tensor([-0.3, 0.0, 0.1, 0.45], dtype=torch.float64)
    torch.testing.assert_close(adjust_hue(X, shift), K.adjust_hue(X, shift * 2 * torch.pi), atol=1e-6, rtol=1e-6)


def test_colour_jitter_draws_per_example_repeats_per_seed_and_keeps_masks():
    batch = labelled_images(B=8)
    X = torch.rand(8, 3, 12, 16)
    batch = batch.replace(X=X)
    jitter = ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5)
    out = jitter(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out.X, jitter(batch, torch.Generator().manual_seed(0)).X)
    assert torch.equal(out.masks, batch.masks) and out.X.min() >= 0 and out.X.max() <= 1
    assert not torch.equal(out.X, X)
    brighter = ColorJitter(brightness=0.5)(batch, torch.Generator().manual_seed(1)).X
    ratios = (brighter / X)[X > 0.05].reshape(-1)  # one factor per image, all in [0.5, 1.5]
    per_image = [(brighter[b] / X[b])[(X[b] > 0.05) & (brighter[b] < 1)] for b in range(8)]
    assert all(r.max() - r.min() < 1e-4 for r in per_image) and 0.5 <= ratios.min() and ratios.max() <= 1.5
    assert len({round(float(r[0]), 4) for r in per_image}) == 8
    assert torch.equal(ColorJitter()(batch).X, X)  # nothing switched on: nothing changes
    gray = ColorJitter(brightness=0.4, contrast=0.4)(Split(torch.rand(4, 1, 5, 5), torch.zeros(4)))
    assert gray.X.shape == (4, 1, 5, 5)


def test_centre_crops_normalisation_and_composition():
    batch = labelled_images(B=4, H=10, W=14)
    out = CenterCrop((6, 8))(batch)
    assert torch.equal(out.X, batch.X[:, :, 2:8, 3:11])  # the pixels themselves, not resampled
    assert torch.equal(out.masks, batch.masks[:, 2:8, 3:11])
    odd = labelled_images(B=2, H=10, W=11)
    # torchvision's offsets: int(round((10 - 5) / 2)) = 2 (half to even), int(round((11 - 4) / 2)) = 4
    assert torch.equal(CenterCrop((5, 4))(odd).X, odd.X[:, :, 2:7, 4:8])
    boxes = torch.tensor([[[0.25, 0.2, 0.75, 0.6]]]).expand(2, 1, 4)  # pixels x 3.5-10.5 of 14, y 2-6 of 10
    moved = CenterCrop((6, 8))(Detection(torch.rand(2, 3, 10, 14), boxes, torch.zeros(2, 1))).boxes
    torch.testing.assert_close(moved, torch.tensor([[[0.5 / 8, 0.0, 7.5 / 8, 4 / 6]]]).expand(2, 1, 4))
    normalize = Normalize()
    X = torch.rand(4, 3, 5, 5)
    Z = normalize(Split(X, torch.zeros(4))).X
    torch.testing.assert_close(Z[:, 1], (X[:, 1] - 0.456) / 0.224)
    torch.testing.assert_close(normalize.denormalize(Z), X)
    pipeline = Compose([RandomHorizontalFlip(), ColorJitter(0.5, 0.5, 0.5, 0.5), RandomResizedCrop(8), Normalize()])
    assert pipeline(Split(X, torch.zeros(4)), torch.Generator().manual_seed(0)).X.shape == (4, 3, 8, 8)


def test_resize_takes_each_mask_pixel_where_its_image_pixel_samples():
    # the column index as image and as mask: a resized mask must hold the column its image pixel centres on
    columns = torch.arange(9.0).expand(1, 6, 9)
    batch = Segmentation(columns[None].expand(1, 3, 6, 9) / 8, columns.long())
    out = Resize((2, 3))(batch)
    assert out.X[0, 0, 0].mul(8).tolist() == pytest.approx([1.0, 4.0, 7.0])  # bilinear at the centres
    assert out.masks[0, 0].tolist() == [1, 4, 7]  # not floor(k * 9 / 3) = 0, 3, 6: a pixel to the left
    crop = _crop_and_resize(batch, *(torch.tensor([v]) for v in (0.0, 0.0, 6.0, 9.0)), (2, 3))
    assert torch.equal(crop.masks, out.masks)  # the crops' nearest neighbour agrees


def test_evaluation_transforms_are_saved_and_rebuilt():
    pipeline = Compose([Resize(12), CenterCrop((8, 10)), Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))])
    rebuilt = transform_from_spec(pipeline.spec())
    X = torch.rand(2, 3, 16, 20)
    torch.testing.assert_close(rebuilt(Split(X, torch.zeros(2))).X, pipeline(Split(X, torch.zeros(2))).X)
    with pytest.raises(ValueError, match="RandomHorizontalFlip is random, for training only"):
        RandomHorizontalFlip().spec()


def test_bad_transform_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="scale must be"):
        RandomResizedCrop(8, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="ratio must be"):
        RandomResizedCrop(8, ratio=(0, 1))
    with pytest.raises(ValueError, match="size must be a positive int"):
        RandomResizedCrop((8, 0))
    with pytest.raises(ValueError, match="hue must be in"):
        ColorJitter(hue=0.6)
    with pytest.raises(ValueError, match="brightness must be at least 0"):
        ColorJitter(brightness=-1)
    with pytest.raises(ValueError, match="need RGB images"):
        ColorJitter(hue=0.1)(Split(torch.rand(2, 1, 4, 4), torch.zeros(2)))
    with pytest.raises(ValueError, match="cannot cut a centre crop of 6x6 out of 4x4"):
        CenterCrop(6)(Split(torch.rand(2, 1, 4, 4), torch.zeros(2)))
    with pytest.raises(ValueError, match="statistics for 3 channels"):
        Normalize()(Split(torch.rand(2, 1, 4, 4), torch.zeros(2)))
    with pytest.raises(ValueError, match="flip probability"):
        RandomVerticalFlip(2)
