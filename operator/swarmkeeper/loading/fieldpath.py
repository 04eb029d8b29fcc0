"""Field paths (``spec.secrets[0].mode``) and where in a file each field was written.

Validation errors and set-level checks both name a field by its path and point at the line that
holds it; this module is the one place that spells paths and finds their positions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TypeAlias

from .errors import shorten

FieldPath: TypeAlias = tuple[str | int, ...]
"""Keys and list indexes from the document root, as written in YAML (camelCase)."""

Position: TypeAlias = tuple[int, int]
"""1-based (line, column) of a mapping key or a sequence item."""

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: FieldPath) -> str | None:
    """``("spec", "secrets", 0, "mode")`` → ``"spec.secrets[0].mode"``; None for the root.

    Keys that are not identifier-like (label names such as ``com.example.tier``) are quoted so the
    path stays unambiguous: ``metadata.labels["com.example.tier"]``.
    """
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif _PLAIN_KEY.match(segment):
            text += f".{shorten(segment)}" if text else shorten(segment)
        else:
            text += f"[{json.dumps(shorten(segment), ensure_ascii=False)}]"
    return text or None


def locate(positions: Mapping[FieldPath, Position], path: FieldPath) -> Position | None:
    """The position of ``path``, or of its nearest ancestor that was written in the file.

    A missing field has no position of its own; its parent mapping's key is where to add it.
    """
    for end in range(len(path), -1, -1):
        found = positions.get(path[:end])
        if found is not None:
            return found
    return None
