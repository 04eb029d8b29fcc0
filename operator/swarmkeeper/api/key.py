"""The identity of a spec object: kind, namespace (None outside a stack) and name."""

from __future__ import annotations

from typing import NamedTuple


class Key(NamedTuple):
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}" if self.namespace is None else f"{self.kind}/{self.namespace}/{self.name}"
