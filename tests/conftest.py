import os
from pathlib import Path

import pytest

REAL_DATA = os.environ.get("DIVEKIT_DATA")


def needs_real_data(names):
    """Skip unless $DIVEKIT_DATA holds the given data set folders."""
    missing = [n for n in names if not (REAL_DATA and (Path(REAL_DATA) / n).is_dir())]
    return pytest.mark.skipif(bool(missing), reason=f"set DIVEKIT_DATA to a folder with {', '.join(missing)}")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never write into the user's real cache from a test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def write_image_folder(root, size=(8, 8), per_class=12, seed=0):
    """Two classes told apart by brightness, as grayscale PNGs: ``root/dark/*.png`` and ``root/light/*.png``."""
    import torch
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for cls, brightness in (("dark", 40), ("light", 210)):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = (brightness + torch.randint(-30, 30, size[::-1], generator=g)).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy(), mode="L").save(root / cls / f"{i}.png")
    return root
