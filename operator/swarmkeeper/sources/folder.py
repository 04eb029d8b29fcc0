"""The local specs folder as a front door: specs in, status back into the files (or ``.status/``).

Thin by design: loading is ``loading``'s, reconciling is ``engine``'s; this module only knows where
objects live on disk and how their status gets back there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..api import Key, ObjectStatus
from ..engine.conditions import INVALID_SPEC, READY, condition, status_with
from ..engine.status import merge_status
from ..loading import LoadResult, Manifest, SpecError, load_paths
from .status_files import StatusEntry, StatusWriter, make_writer

log = logging.getLogger(__name__)

StatusMode = Literal["inline", "file", "none"]


def _root_of(path: Path) -> Path:
    return path if path.is_dir() else path.parent


class FolderSource:
    def __init__(self, paths: Sequence[Path], status_mode: StatusMode = "inline") -> None:
        self.paths = list(paths)
        self.status_mode = status_mode
        self.writers: dict[Path, StatusWriter] = {}
        for p in self.paths:
            root = _root_of(p)
            self.writers.setdefault(root.resolve(), make_writer(status_mode, root))

    def load(self) -> LoadResult:
        return load_paths(self.paths)

    def is_own_write(self, path: Path) -> bool:
        return any(w.is_own_write(path) for w in self.writers.values())

    def _writer(self, file: Path) -> StatusWriter:
        """The writer of the folder given that holds ``file``."""
        real = file.resolve()
        return next((w for r, w in self.writers.items() if real.is_relative_to(r)), next(iter(self.writers.values())))

    def publish(
        self,
        manifests: Sequence[Manifest],
        statuses: Mapping[Key, ObjectStatus],
        errors: Sequence[SpecError] = (),
    ) -> list[Path]:
        """Write status for every object that has one, and an InvalidSpec condition on every object
        whose spec is invalid now (its last good version keeps running). Returns files rewritten."""
        if self.status_mode == "none":
            return []
        by_writer: dict[int, tuple[StatusWriter, list[StatusEntry]]] = {}

        def add(writer: StatusWriter, entry: StatusEntry) -> None:
            by_writer.setdefault(id(writer), (writer, []))[1].append(entry)

        for m in manifests:
            status = statuses.get(m.key)
            if status is None or m.origin is None:
                continue
            writer = self._writer(m.origin.file)
            old = writer.read(m.origin.file, m.origin.document, m.kind, m.name, m.namespace)
            merged = merge_status(old, status)
            add(writer, StatusEntry(m.origin.file, m.origin.document, m.kind, m.name, m.namespace, merged))
        for entry, writer in self._invalid_entries(errors):
            add(writer, entry)
        written: list[Path] = []
        for writer, entries in by_writer.values():
            written += writer.write(entries)
        return written

    def _invalid_entries(self, errors: Sequence[SpecError]) -> list[tuple[StatusEntry, StatusWriter]]:
        grouped: dict[tuple[Path, int], list[SpecError]] = {}
        for e in errors:
            if e.file is None or e.line is None:
                continue
            located = _document_at(e.file, e.line)
            if located is not None:
                grouped.setdefault((e.file, located[0]), []).append(e)
        out = []
        for (file, document), errs in grouped.items():
            located = _document_at(file, errs[0].line or 1)
            if located is None:
                continue
            _, kind, name, namespace = located
            if not kind or not name:
                continue
            writer = self._writer(file)
            old = writer.read(file, document, kind, name, namespace) or {}
            message = "; ".join(str(e) for e in errs[:5]) + (f" (+{len(errs) - 5} more)" if len(errs) > 5 else "")
            invalid = condition(READY, "False", INVALID_SPEC, f"the last valid spec stays applied: {message}")
            status = status_with(old, invalid)
            out.append((StatusEntry(file, document, kind, name, namespace, status), writer))
        return out


def _document_at(file: Path, line: int) -> tuple[int, str | None, str | None, str | None] | None:
    """(document index, kind, name, namespace) of the document holding 1-based ``line``."""
    try:
        text = file.read_text(encoding="utf-8")
        yaml = YAML(typ="rt")
        nodes = list(yaml.compose_all(text))
    except (OSError, UnicodeDecodeError, YAMLError, ValueError):
        return None  # unparsable: there is no document to put a status into
    for index, node in enumerate(nodes):
        if node is None:
            continue
        if node.start_mark.line + 1 <= line <= node.end_mark.line + 1:
            return (index, *_identity(node))
    return None


def _identity(node: Any) -> tuple[str | None, str | None, str | None]:
    def scalar(mapping: Any, key: str) -> Any:
        if getattr(mapping, "id", None) != "mapping":
            return None
        for k, v in mapping.value:
            if getattr(k, "value", None) == key:
                return v
        return None

    kind = scalar(node, "kind")
    meta = scalar(node, "metadata")
    name = scalar(meta, "name") if meta is not None else None
    ns = scalar(meta, "namespace") if meta is not None else None

    def text(n: Any) -> str | None:
        return n.value if getattr(n, "id", None) == "scalar" and isinstance(n.value, str) else None

    return text(kind), text(name), text(ns)
