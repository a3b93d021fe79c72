"""CIFAR-10's python batches (D2L §13.1), read from tiny files written the way the authors' Python 2
pickles are, and never running what a pickle names."""

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from divekit.data.cifar10 import CLASSES, TEST_BATCH, TRAIN_BATCHES, load_cifar10, read_batch


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), as cPickle wrote the authors' files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_batch(path, images: np.ndarray, labels: list[int]) -> None:
    import io

    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump({b"batch_label": b"testing batch", b"labels": labels,
                                         b"data": images.reshape(len(images), -1),
                                         b"filenames": [b"x.png"] * len(labels)})
    # numpy 1.x, which wrote the files, named its array constructor numpy.core.multiarray
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def test_a_python_2_batch_reads_as_images_and_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    write_batch(tmp_path / "data_batch_1", images, [0, 9, 4])
    assert b"numpy.core.multiarray" in (tmp_path / "data_batch_1").read_bytes()
    X, y = read_batch(tmp_path / "data_batch_1")
    assert X.dtype == torch.uint8 and X.shape == (3, 3, 32, 32) and torch.equal(X, torch.from_numpy(images))
    assert y.tolist() == [0, 9, 4] and y.dtype == torch.int64
    # each row is 1024 red values (32 rows of 32), then green, then blue
    assert X[1, 2, 0, 1] == images.reshape(3, -1)[1, 2048 + 1]


def test_the_whole_set_loads_from_a_folder_of_batches(tmp_path):
    rng = np.random.default_rng(1)
    for i, name in enumerate((*TRAIN_BATCHES, TEST_BATCH)):
        write_batch(tmp_path / name, rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), [i, (i + 1) % 10])
    data = load_cifar10(tmp_path)
    assert data.train.X.shape == (10, 3, 32, 32) and data.eval.X.shape == (2, 3, 32, 32)
    assert data.train.y.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5] and data.classes == CLASSES
    assert data.eval_name == "test" and data.input_shape == (3, 32, 32)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="no data_batch_3"):
        load_cifar10(tmp_path)


class RunsACommand:
    def __reduce__(self):
        return os.system, ("echo this must never run",)


def test_a_pickle_that_names_anything_else_is_refused_unrun(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": RunsACommand(), "labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"refused to load (posix|nt)\.system"):
        read_batch(path)
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]}, protocol=4))
    with pytest.raises(ValueError, match="'data' must be uint8 rows of 3072 values"):
        read_batch(path)
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, protocol=4))
    with pytest.raises(ValueError, match="one class index 0..9 per image"):
        read_batch(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="is not a CIFAR-10 python batch"):
        read_batch(path)
