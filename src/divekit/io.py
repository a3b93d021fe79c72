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
    """Open a temporary file beside ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; a file that is not JSON is a ValueError that names it."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); restore it or run again") from None


def save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` made atomic: tensors, state dicts, or containers of them."""
    import torch  # here, so that reading and writing text and JSON needs no torch

    with atomic_open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as error:  # torch's zip writer reports a short write as "unexpected pos ..."
            if "unexpected pos" in str(error) or "failed writing" in str(error):
                raise OSError(errno.ENOSPC, str(error)) from error
            raise


def load(path: str | os.PathLike, map_location: str | None = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; a missing or foreign file is a clear error."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated zip archives, code objects
        raise ValueError(
            f"{path} is not a readable divekit/PyTorch tensor file ({type(e).__name__}: {e}). "
            "It may be truncated or hold Python objects that weights_only loading refuses."
        ) from e
