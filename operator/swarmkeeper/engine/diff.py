"""Field-level differences between two normalized payloads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_MISSING: Any = None


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any

    def describe(self) -> str:
        if self.old is None:
            return f"+ {self.path}: {_short(self.new)}"
        if self.new is None:
            return f"- {self.path}: {_short(self.old)}"
        return f"~ {self.path}: {_short(self.old)} → {_short(self.new)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def diff(old: Any, new: Any, path: str = "") -> list[Change]:
    """Changes that turn ``old`` into ``new``; dict keys recurse, lists of dicts recurse by index."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[Change] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            out += diff(old.get(key), new.get(key), sub)
        return out
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and all(isinstance(x, Mapping) for x in old + new)
    ):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += diff(a, b, f"{path}[{i}]")
        return out
    return [] if old == new else [Change(path, old, new)]
