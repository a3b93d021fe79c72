"""IDX parsing, the Fashion-MNIST/MNIST loaders (D2L §3.5) and the image grid figure."""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

import divekit.data.fashion_mnist as fashion_mnist
from divekit.data.fashion_mnist import TEXT_LABELS, load_fashion_mnist, load_mnist, text_labels
from divekit.data.idx import IdxFormatError, read_idx, write_idx
from divekit.viz.images import save_figure, show_images

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- IDX files ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=4),
    suffix=st.sampled_from([".gz", ""]),
    seed=st.integers(0, 2**16),
)
def test_idx_round_trip(shape, suffix, seed):
    values = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = write_idx(Path(folder) / f"values-ubyte{suffix}", values)
        assert path.read_bytes().startswith(b"\x1f\x8b") == (suffix == ".gz")
        loaded = read_idx(path, expect_dims=len(shape), expect_count=shape[0])
        assert sorted(os.listdir(folder)) == [path.name]  # no temporary file left behind
    assert loaded.dtype == torch.uint8
    assert tuple(loaded.shape) == tuple(shape)
    assert np.array_equal(loaded.numpy(), values)
    loaded.add_(1)  # the tensor owns writable memory


def test_idx_header_layout_matches_the_published_format(tmp_path):
    path = write_idx(tmp_path / "labels", torch.tensor([3, 1, 4], dtype=torch.uint8))
    assert path.read_bytes() == b"\x00\x00\x08\x01" + struct.pack(">I", 3) + bytes([3, 1, 4])


def test_write_idx_rejects_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def _write_raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _uint8_idx_bytes(shape: tuple[int, ...], payload_length: int | None = None) -> bytes:
    length = int(np.prod(shape)) if payload_length is None else payload_length
    return bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + bytes(length)


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", {}, "bad magic number"),
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 2) + bytes(8), {}, "type code 0x0d"),
        (_uint8_idx_bytes((2, 3)), {"expect_dims": 3}, "has 2 dimensions .* expected 3"),
        (_uint8_idx_bytes((2, 3)), {"expect_count": 5}, "holds 2 examples, expected 5"),
        (_uint8_idx_bytes((2, 3), payload_length=5), {}, "truncated: expected 6 bytes of payload, got 5"),
        (_uint8_idx_bytes((2, 3), payload_length=8), {}, "2 trailing bytes"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), {}, "truncated: its header announces 3 dimensions"),
        (b"\x00\x00", {}, "truncated"),
    ],
    ids=["magic", "type", "dims", "count", "truncated", "trailing", "short-header", "tiny"],
)
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_read_idx_rejects_malformed_files(tmp_path, data, kwargs, message, compress):
    name = "broken-ubyte.gz" if compress else "broken-ubyte"
    path = _write_raw(tmp_path / name, gzip.compress(data) if compress else data)
    with pytest.raises(IdxFormatError, match=message) as caught:
        read_idx(path, **kwargs)
    assert name in str(caught.value)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_read_idx_reports_truncated_gzip(tmp_path, cut):
    compressed = gzip.compress(_uint8_idx_bytes((50, 28, 28)) + bytes(range(256)) * 40)
    path = _write_raw(tmp_path / "cut-ubyte.gz", compressed[: int(len(compressed) * cut)])
    with pytest.raises(IdxFormatError, match="truncated or corrupt gzip") as caught:
        read_idx(path)
    assert "cut-ubyte.gz" in str(caught.value) and "download it again" in str(caught.value)


def test_read_idx_reports_corrupt_gzip(tmp_path):
    compressed = bytearray(gzip.compress(bytes(range(256)) * 64))
    compressed[20:40] = b"\xff" * 20
    path = _write_raw(tmp_path / "garbled-ubyte.gz", bytes(compressed))
    with pytest.raises(IdxFormatError, match="garbled-ubyte.gz"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


# --- Fashion-MNIST / MNIST loaders -------------------------------------------------------------


def _write_fake_data_set(folder: Path, train_n: int, test_n: int, *, image_size: int = 28, label_n=None):
    """Tiny data set files in the MNIST layout; labels cycle 0..9 and pixel values encode i."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train_n), ("t10k", test_n)):
        images = np.zeros((n, image_size, image_size), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        images[:, -1, -1] = 255
        labels = (np.arange(n if label_n is None else label_n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def fake_fetch(monkeypatch):
    """Replace the data hub with a lookup of files in ``data_dir``; records the calls."""
    calls = []

    def fetch(name, filename=None, *, data_dir=None, progress=True):
        calls.append((name, filename, progress))
        return Path(data_dir) / filename

    monkeypatch.setattr(fashion_mnist, "fetch", fetch, raising=False)
    return calls


def test_load_idx_classification_shapes_dtypes_values(tmp_path, fake_fetch):
    folder = _write_fake_data_set(tmp_path / "fake", train_n=12, test_n=5)
    data = fashion_mnist._load_idx_classification(
        "fashion-mnist", TEXT_LABELS, folder, False, expect_counts=(12, 5)
    )
    assert data.name == "fashion-mnist" and data.eval_name == "test"
    assert data.classes == TEXT_LABELS and data.num_classes == 10
    assert data.input_shape == (1, 28, 28)
    assert data.train.X.shape == (12, 1, 28, 28) and data.eval.X.shape == (5, 1, 28, 28)
    assert data.train.X.dtype == torch.uint8 and data.train.y.dtype == torch.int64
    assert data.train.X[:, 0, 0, 0].tolist() == list(range(12))
    assert data.train.X[:, 0, -1, -1].eq(255).all()
    assert data.train.y.tolist() == [i % 10 for i in range(12)]
    assert data.eval.y.tolist() == [0, 1, 2, 3, 4]
    assert {(name, progress) for name, _, progress in fake_fetch} == {("fashion-mnist", False)}
    assert sorted(filename for _, filename, _ in fake_fetch) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    ]  # fmt: skip


def test_loading_twice_reuses_the_parsed_tensors(tmp_path, fake_fetch):
    folder = _write_fake_data_set(tmp_path / "fake", train_n=4, test_n=3)
    first = fashion_mnist._load_idx_classification("mnist", ("a",) * 10, folder, False, expect_counts=(4, 3))
    second = fashion_mnist._load_idx_classification("mnist", ("a",) * 10, folder, False, expect_counts=(4, 3))
    assert second.train.X is first.train.X and second.eval.y is first.eval.y


def test_a_later_process_reads_the_decoded_copy_instead_of_the_gzip_files(tmp_path, fake_fetch, monkeypatch):
    from divekit.data.hub import cache_dir

    folder = _write_fake_data_set(tmp_path / "fake", train_n=4, test_n=3)
    first = fashion_mnist._load_idx_classification("mnist", ("a",) * 10, folder, False, expect_counts=(4, 3))
    copies = sorted((cache_dir() / "decoded").iterdir())
    assert [p.name.split("-")[0] for p in copies] == ["t10k", "train"]
    monkeypatch.setattr(fashion_mnist, "_SPLIT_CACHE", {})  # as a new process starts
    monkeypatch.setattr(fashion_mnist, "_read_split", lambda *a: pytest.fail("decoded the gzip files again"))
    again = fashion_mnist._load_idx_classification("mnist", ("a",) * 10, folder, False, expect_counts=(4, 3))
    assert torch.equal(again.train.X, first.train.X) and torch.equal(again.eval.y, first.eval.y)
    assert again.eval.y.dtype == torch.int64


def test_a_damaged_decoded_copy_is_decoded_again(tmp_path, fake_fetch, monkeypatch):
    from divekit.data.hub import cache_dir

    folder = _write_fake_data_set(tmp_path / "fake", train_n=4, test_n=3)
    first = fashion_mnist._load_idx_classification("mnist", ("a",) * 10, folder, False, expect_counts=(4, 3))
    for copy in (cache_dir() / "decoded").iterdir():
        copy.write_bytes(copy.read_bytes()[:100])
    monkeypatch.setattr(fashion_mnist, "_SPLIT_CACHE", {})
    again = fashion_mnist._load_idx_classification("mnist", ("a",) * 10, folder, False, expect_counts=(4, 3))
    assert torch.equal(again.train.X, first.train.X)
    assert all(len(copy.read_bytes()) > 100 for copy in (cache_dir() / "decoded").iterdir())  # replaced


def test_published_counts_are_checked(tmp_path, fake_fetch):
    folder = _write_fake_data_set(tmp_path / "fake", train_n=4, test_n=3)
    with pytest.raises(IdxFormatError, match="holds 4 images, expected 60000"):
        load_fashion_mnist(folder, progress=False)
    with pytest.raises(IdxFormatError, match="holds 4 images, expected 60000"):
        load_mnist(folder, progress=False)


def test_mismatched_image_and_label_counts(tmp_path, fake_fetch):
    folder = _write_fake_data_set(tmp_path / "fake", train_n=4, test_n=3, label_n=2)
    with pytest.raises(IdxFormatError, match="holds 4 images but train-labels-idx1-ubyte.gz holds 2 labels"):
        fashion_mnist._load_idx_classification("fashion-mnist", TEXT_LABELS, folder, False, expect_counts=(4, 3))


def test_wrong_image_size(tmp_path, fake_fetch):
    folder = _write_fake_data_set(tmp_path / "fake", train_n=4, test_n=3, image_size=32)
    with pytest.raises(IdxFormatError, match=r"size \(32, 32\), expected 28x28"):
        fashion_mnist._load_idx_classification("fashion-mnist", TEXT_LABELS, folder, False, expect_counts=(4, 3))


def test_labels_out_of_range(tmp_path, fake_fetch):
    folder = _write_fake_data_set(tmp_path / "fake", train_n=4, test_n=3)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 10, 2], dtype=np.uint8))
    with pytest.raises(IdxFormatError, match=r"label 10, expected labels 0\.\.9"):
        fashion_mnist._load_idx_classification("fashion-mnist", TEXT_LABELS, folder, False, expect_counts=(4, 3))


def test_labels_file_in_place_of_images(tmp_path, fake_fetch):
    folder = _write_fake_data_set(tmp_path / "fake", train_n=4, test_n=3)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte.gz has 1 dimensions .*0x00000803"):
        fashion_mnist._load_idx_classification("fashion-mnist", TEXT_LABELS, folder, False, expect_counts=(4, 3))


def test_text_labels():
    assert text_labels([0, 9]) == ["t-shirt", "ankle boot"]
    assert text_labels(torch.tensor([[2], [7]])) == ["pullover", "sneaker"]
    assert text_labels(5) == ["sandal"]
    with pytest.raises(ValueError, match="0..9"):
        text_labels([3, 10])
    with pytest.raises(ValueError, match="0..9"):
        text_labels([-1])


# --- the image grid ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images",
    [
        torch.rand(6, 1, 8, 8),
        torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8),
        torch.rand(6, 3, 8, 8),
        torch.rand(6, 8, 8),
    ],
    ids=["gray-float", "gray-uint8", "color", "no-channel"],
)
def test_show_images_grid_and_titles(images):
    titles = text_labels(range(6))
    fig = show_images(images, 2, 3, titles=titles, scale=1.0)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes] == titles
    assert not any(ax.axison for ax in fig.axes)
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert tuple(fig.get_size_inches()) == (3.0, 2.0)
    drawn = fig.axes[0].images[0].get_array()
    assert 0.0 <= drawn.min() and drawn.max() <= 1.0


def test_show_images_leaves_spare_cells_empty():
    fig = show_images(torch.rand(3, 1, 4, 4), 2, 2)
    assert len(fig.axes) == 4
    assert [len(ax.images) for ax in fig.axes] == [1, 1, 1, 0]
    assert all(ax.get_title() == "" for ax in fig.axes)


def test_show_images_rejects_bad_input():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        show_images(torch.rand(2, 2, 4, 4), 1, 2)
    with pytest.raises(ValueError, match="only 1 titles"):
        show_images(torch.rand(2, 4, 4), 1, 2, titles=["one"])
    with pytest.raises(ValueError, match="at least one row"):
        show_images(torch.rand(2, 4, 4), 0, 2)


def test_save_figure_writes_png_atomically(tmp_path):
    fig = show_images(torch.rand(2, 1, 8, 8), 1, 2, titles=["a", "b"])
    path = save_figure(fig, tmp_path / "figs" / "grid.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert os.listdir(tmp_path / "figs") == ["grid.png"]


# --- the real data set -------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("DIVEKIT_DATA"), reason="set DIVEKIT_DATA to the real data sets")
def test_real_fashion_mnist():
    data = load_fashion_mnist(progress=False)
    assert data.train.X.shape == (60_000, 1, 28, 28) and data.eval.X.shape == (10_000, 1, 28, 28)
    assert data.train.X.dtype == torch.uint8 and data.train.y.dtype == torch.int64
    assert torch.bincount(data.train.y, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(data.eval.y, minlength=10).tolist() == [1000] * 10
    assert data.train.X.max() == 255 and data.train.X.min() == 0
    assert load_fashion_mnist(progress=False).train.X is data.train.X  # parsed once per process
