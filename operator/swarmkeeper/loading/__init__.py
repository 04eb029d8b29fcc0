"""Spec files → validated models, with every error naming file, line, column, object and field.

Layering: imports only ``swarmkeeper.api``. ``load_paths`` is the entry point for folders and
files; ``load_text`` and ``check_references`` serve sources that read specs some other way.
"""

from __future__ import annotations

from .errors import SpecError, SpecLoadError
from .loader import load_paths, load_text
from .manifest import LoadResult, Manifest, Origin
from .references import check_references

__all__ = [
    "LoadResult",
    "Manifest",
    "Origin",
    "SpecError",
    "SpecLoadError",
    "check_references",
    "load_paths",
    "load_text",
]
