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


def write_detection_folder(folder, count=6, size=(48, 40), seed=0, classes=2):
    """A split in the banana format (``folder/label.csv``, ``folder/images/<i>.png``): gray noise with one
    or two filled rectangles an image, class c drawn at brightness 60 + 150 c; -> the rows written, per
    image, (label, xmin, ymin, xmax, ymax) in pixels."""
    import torch
    from PIL import Image, ImageDraw

    from divekit.data.detection import write_detection_split

    g = torch.Generator().manual_seed(seed)
    width, height = size
    images, objects = [], []
    for i in range(count):
        pixels = torch.randint(100, 140, (height, width), generator=g).to(torch.uint8)
        image = Image.fromarray(pixels.numpy(), mode="L").convert("RGB")
        draw, rows = ImageDraw.Draw(image), []
        for _ in range(1 + i % 2):
            label = int(torch.randint(classes, (1,), generator=g))
            x1 = int(torch.randint(0, width // 2, (1,), generator=g))
            y1 = int(torch.randint(0, height // 2, (1,), generator=g))
            x2, y2 = x1 + width // 3, y1 + height // 3
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=(60 + 150 * label,) * 3)
            rows.append((label, x1, y1, x2, y2))
        images.append(image)
        objects.append(rows)
    write_detection_split(folder, images, objects)
    return objects
