"""The photographs of the photos extra: read from scikit-image's wheel without importing it."""

import sys

import pytest
import torch

from divekit.data import photos


def test_the_bundled_photos_load_as_colour_images_without_importing_scikit_image():
    if photos.importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image (the photos extra) is not installed")
    was_imported = "skimage" in sys.modules
    images = photos.load_photos()
    assert len(images) == len(photos.PHOTOS)
    assert all(p.dtype == torch.uint8 and p.shape[0] == 3 and min(p.shape[1:]) >= 256 for p in images)
    assert not all(torch.equal(images[0][0], images[0][c]) for c in (1, 2))  # colour, not gray
    assert ("skimage" in sys.modules) == was_imported


def test_random_crops_are_deterministic_per_seed_and_come_from_the_photos():
    gradient = torch.arange(200 * 300, dtype=torch.float32).reshape(1, 200, 300)
    photo = torch.cat([gradient % 256, (gradient // 256) % 256, torch.full_like(gradient, 7)]).to(torch.uint8)
    a = photos.random_crops([photo], 6, 32, generator=torch.Generator().manual_seed(0))
    b = photos.random_crops([photo], 6, (32, 32), generator=torch.Generator().manual_seed(0))
    c = photos.random_crops([photo], 6, 32, generator=torch.Generator().manual_seed(1))
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a[:, 2] == 7).all()  # a flat channel stays flat through crop and resize
    with pytest.raises(ValueError, match="needs photos and a positive count"):
        photos.random_crops([], 3, 8, generator=torch.Generator())


def test_a_missing_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(photos.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'divekit\[photos\]'"):
        photos.load_photos()
