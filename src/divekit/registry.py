"""A name -> object table that refuses a second entry of one name and answers an unknown name
with the closest known ones (the model registry and the experiment registry are two of these)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``what`` names the kind of entry in messages ("model"); ``hint`` says where to see them all."""

    def __init__(self, what: str, hint: str = ""):
        self.what, self.hint = what, hint
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"a {self.what} named {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            suggestion = f"; did you mean {' or '.join(close)}?" if close else ""
            raise KeyError(f"no {self.what} named {name!r}{suggestion}{f' ({self.hint})' if self.hint else ''}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def values(self) -> list[T]:
        return list(self._entries.values())
