"""Spec objects → YAML files: one object per file, its comments on top, checked to load as specs.

Nothing is written unless every file loads (values are not read: secret files may be missing) and,
without ``force``, none of the files exists yet. Printing and exit codes are the caller's.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from ...loading import LoadResult, check_references, load_text
from ...loading.discovery import ROOT_MARKER
from ...loading.writes import write_atomic

# The short word for each kind: the start of its file name, and how notes name an object.
KIND_PREFIX = {"SwarmNetwork": "network", "SwarmSecret": "secret", "SwarmConfig": "config", "SwarmService": "service"}


class SpecObject(Protocol):
    kind: str
    name: str
    document: dict[str, Any]
    comments: list[str]


class FilesExist(Exception):
    """Spec files that would be overwritten; nothing was written."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__(", ".join(str(p) for p in paths))
        self.paths = list(paths)


@dataclass(frozen=True)
class Rendered:
    """The text of every file by its path, and what loading those texts found."""

    texts: dict[Path, str]
    checked: LoadResult

    @property
    def ok(self) -> bool:
        return self.checked.ok

    def stream(self) -> str:
        """All files as one multi-document YAML text, for stdout."""
        return "---\n".join(self.texts.values()).rstrip("\n")


def filename(obj: SpecObject) -> str:
    return f"{KIND_PREFIX[obj.kind]}-{obj.name}.yaml"


def render(obj: SpecObject, header: Sequence[str]) -> str:
    def literal(value: Any) -> Any:
        # Multi-line text (a config file's content) reads best as a block, and loads back unchanged.
        if isinstance(value, str) and "\n" in value.rstrip("\n") and not value.startswith((" ", "\n")):
            return LiteralScalarString(value)
        if isinstance(value, dict):
            return {k: literal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [literal(v) for v in value]
        return value

    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 120
    buf = io.StringIO()
    yaml.dump(literal(obj.document), buf)
    lines = [*header, *obj.comments]
    return "".join(f"# {line}\n" if line else "#\n" for line in lines) + buf.getvalue()


def check(texts: Mapping[Path, str], root: Path) -> LoadResult:
    """What was generated must load as specs (values are not read: secret files may be missing)."""
    manifests, errors = [], []
    for path, text in texts.items():
        result = load_text(text, path, root=root, resolve_values=False)
        manifests += result.manifests
        errors += result.errors
    errors += check_references(manifests)
    return LoadResult(manifests, errors)


def render_all(objects: Sequence[SpecObject], header: Sequence[str], output: Path | None) -> Rendered:
    """Every object as a file under ``output`` (a subfolder per namespace when there are several),
    or under the current folder when the files go to stdout; checked as one set of specs."""
    namespaces = {o.document["metadata"].get("namespace") for o in objects}
    per_namespace = output is not None and len(namespaces) > 1
    texts: dict[Path, str] = {}
    for obj in objects:
        folder = output or Path(".")
        namespace = obj.document["metadata"].get("namespace")
        if per_namespace and namespace:
            folder = folder / namespace
        texts[folder / filename(obj)] = render(obj, header)
    return Rendered(texts, check(texts, output or Path(".")))


def write(texts: Mapping[Path, str], *, force: bool) -> None:
    """Each text to its path; raises ``FilesExist`` (before writing any) if some exist, unless ``force``."""
    existing = [p for p in texts if p.exists()]
    if existing and not force:
        raise FilesExist(existing)
    for path, text in texts.items():
        write_atomic(path, text.encode("utf-8"))


def mark_tree_root(folder: Path) -> Path:
    """Write the marker that makes ``folder`` the root of a spec tree (``discovery.tree_root``)."""
    marker = folder / ROOT_MARKER
    if not marker.exists():
        write_atomic(
            marker,
            b"# The root of a swarmkeeper spec tree: specs below this folder may read files\n"
            b"# (secret and config values, env files) anywhere under it, and nowhere above it.\n",
        )
    return marker
