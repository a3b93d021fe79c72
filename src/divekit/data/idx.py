"""The IDX file format of MNIST and Fashion-MNIST (D2L §3.5): read and write uint8 arrays.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 size per dimension, then the values in row-major order. Files may be
gzip-compressed, as the published data sets are. Every inconsistency is an
:class:`IdxFormatError` naming the file, so a bad download never turns into silently wrong data.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from divekit.io import atomic_open

UINT8_TYPE_CODE = 0x08
_GZIP_SIGNATURE = b"\x1f\x8b"
_REDOWNLOAD_HINT = "Delete the file and download it again."


class IdxFormatError(ValueError):
    """A file is not a well-formed IDX file of the expected shape."""


def read_idx(
    path: str | os.PathLike, *, expect_dims: int | None = None, expect_count: int | None = None
) -> torch.Tensor:
    """Read an IDX file (raw or gzip) of uint8 values into a uint8 tensor of its stored shape.

    Args:
        path: the file; gzip compression is recognised by its content, not its name.
        expect_dims: if given, the number of dimensions the file must have.
        expect_count: if given, the size the first dimension (the number of examples) must have.

    Raises:
        IdxFormatError: bad magic number, a type other than uint8, unexpected dimensions or
            count, a truncated or over-long payload, or a corrupt gzip stream.
    """
    path = Path(path)
    data = _read_decompressed(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path} is truncated: {len(data)} bytes, too short for an IDX header")
    zero_bytes, type_code, num_dims = data[:2], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero_bytes != b"\x00\x00":
        raise IdxFormatError(
            f"{path} is not an IDX file: bad magic number 0x{magic:08x} "
            "(an IDX file starts with two zero bytes)"
        )
    if type_code != UINT8_TYPE_CODE:
        raise IdxFormatError(
            f"{path} holds IDX type code 0x{type_code:02x}; only unsigned bytes "
            f"(type code 0x{UINT8_TYPE_CODE:02x}) are supported"
        )
    if expect_dims is not None and num_dims != expect_dims:
        raise IdxFormatError(
            f"{path} has {num_dims} dimensions (magic 0x{magic:08x}), expected {expect_dims} "
            f"(magic 0x{(UINT8_TYPE_CODE << 8) | expect_dims:08x})"
        )
    header_length = 4 + 4 * num_dims
    if len(data) < header_length:
        raise IdxFormatError(
            f"{path} is truncated: its header announces {num_dims} dimensions but the file has "
            f"only {len(data)} bytes. {_REDOWNLOAD_HINT}"
        )
    shape = struct.unpack(f">{num_dims}I", data[4:header_length])
    if expect_count is not None and (not shape or shape[0] != expect_count):
        count = shape[0] if shape else "no"
        raise IdxFormatError(f"{path} holds {count} examples, expected {expect_count}")
    expected_payload = math.prod(shape)
    payload = len(data) - header_length
    if payload < expected_payload:
        raise IdxFormatError(
            f"{path} is truncated: expected {expected_payload} bytes of payload, got {payload} "
            f"(shape {shape}). {_REDOWNLOAD_HINT}"
        )
    if payload > expected_payload:
        raise IdxFormatError(
            f"{path} has {payload - expected_payload} trailing bytes after the payload of shape "
            f"{shape} (expected {expected_payload} bytes of payload, got {payload}). {_REDOWNLOAD_HINT}"
        )
    values = np.frombuffer(data, dtype=np.uint8, offset=header_length).reshape(shape)
    return torch.from_numpy(values.copy())


def write_idx(path: str | os.PathLike, array: np.ndarray | torch.Tensor) -> Path:
    """Write a uint8 array as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    The write is atomic, so an interrupted write never leaves a truncated file behind. Handy for
    making tiny data sets in the MNIST layout. Returns ``path``.
    """
    path = Path(path)
    values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if values.dtype != np.uint8:
        raise ValueError(f"write_idx writes uint8 arrays only, got dtype {values.dtype}; convert it first")
    if values.ndim > 255 or any(size >= 2**32 for size in values.shape):
        raise ValueError(f"shape {values.shape} does not fit an IDX header (at most 255 sizes below 2**32)")
    header = bytes([0, 0, UINT8_TYPE_CODE, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    data = header + np.ascontiguousarray(values).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    with atomic_open(path, "wb") as f:
        f.write(data)
    return path


def _read_decompressed(path: Path) -> bytes:
    """The file's bytes, gunzipped if it is a gzip file; a corrupt stream is an IdxFormatError."""
    if not path.is_file():
        raise FileNotFoundError(f"no such IDX file: {path}")
    data = path.read_bytes()
    if not data.startswith(_GZIP_SIGNATURE):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise IdxFormatError(
            f"{path} is a truncated or corrupt gzip file ({type(e).__name__}: {e}). {_REDOWNLOAD_HINT}"
        ) from e
