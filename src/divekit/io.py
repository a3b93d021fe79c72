"""Files that are never half-written, and tensor files that load safely (D2L §5.5).

Every write goes to a temporary file in the destination's folder and is renamed into place, so a
crash leaves either the old file or the new one, with the permissions the user's umask gives a new
file. A full disk is said in those words, naming the file that was kept. Loads use
``weights_only=True``: a checkpoint can hold tensors, numbers, strings and containers of them,
never code.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def _file_mode() -> int:
    """The mode a plain ``open`` would give a new file: 0o666 less the umask (mkstemp makes 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class DiskFullError(OSError):
    """The disk filled up while a file was written; the previous version of the file was kept."""

    def __init__(self, path: Path):
        kept = f"the previous {path.name} was kept" if path.exists() else f"no {path.name} was written"
        super().__init__(errno.ENOSPC, f"the disk is full: {path} could not be written and {kept}; "
                                       f"free some space in {path.parent}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``, else delete it. A
    symbolic link is written through (the file it points to is replaced), as ``open`` would."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=".tmp", dir=path.parent)  # short: names max out
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if error.errno == errno.ENOSPC and not isinstance(error, DiskFullError):
            raise DiskFullError(path) from error
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as JSON; NaN and infinite numbers (a class absent from a segmentation's truth and
    prediction has IoU NaN) are written as null, since JSON has no such numbers."""
    write_text(path, json.dumps(_finite_or_null(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(value) for value in obj]
    return obj


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; a file that is not UTF-8 JSON is a ValueError that names it."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e}); restore it or run again") from None


def save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` made atomic: tensors, state dicts, or containers of them. Only what :func:`load`
    reads back is written (a numpy number in a metric would make a checkpoint unreadable on resume)."""
    import torch  # here, so that reading and writing text and JSON needs no torch

    _check_loadable(obj, "the object")
    with atomic_open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as error:  # torch's zip writer reports a short write as "unexpected pos ..."
            if "unexpected pos" in str(error) or "failed writing" in str(error):
                raise OSError(errno.ENOSPC, str(error)) from error
            raise


_LOADABLE_LEAVES = (bool, int, float, complex, str, bytes, bytearray, type(None))


def _check_loadable(obj: Any, where: str) -> None:
    """Raise TypeError, naming where, for anything in ``obj`` that ``weights_only`` loading refuses
    (types checked exactly: a namedtuple or a defaultdict is refused though tuple and dict are not)."""
    import collections

    import torch

    if isinstance(obj, (torch.Tensor, torch.dtype, torch.device, torch.layout)) or type(obj) in (*_LOADABLE_LEAVES,
                                                                                                torch.Size):
        return
    if type(obj) in (dict, collections.OrderedDict, collections.Counter):
        for key, value in obj.items():
            _check_loadable(key, f"a key of {where}")
            _check_loadable(value, f"{where}[{key!r}]")
    elif type(obj) in (list, tuple, set):
        for i, value in enumerate(obj):
            _check_loadable(value, f"{where}[{i}]")
    else:
        raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which a weights_only load "
                        "refuses; convert it to a tensor or a Python number, string or container before saving")


def load(path: str | os.PathLike, map_location: str | None = "cpu", mmap: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True``; a missing or foreign file is a clear error. ``mmap``:
    tensors mapped from the file, read only where used (a checkpoint's few numbers, not its weights)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # pickle errors, truncated zip archives, code objects
        raise ValueError(
            f"{path} is not a readable divekit/PyTorch tensor file ({type(e).__name__}: {e}). "
            "It may be truncated or hold Python objects that weights_only loading refuses."
        ) from e
