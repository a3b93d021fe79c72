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
