"""Spec objects → YAML files: one object per file, its comments on top, checked to load as specs.

Nothing is written unless every file loads (values are not read: secret files may be missing) and,
without ``force``, none of the files exists yet. Printing and exit codes are the caller's.

A spec may read only files inside its spec tree, so the files an import names outside the specs
folder are copied into it (``place_files``): ``_files/`` holds them under their path as seen from
the compose file's folder, which works wherever the specs go and keeps the tree no wider than the
specs folder. Copies of secrets are readable by their owner only.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from ...loading import LoadResult, check_references, load_text
from ...loading.discovery import ROOT_MARKER, VALUES_FOLDER
from ...loading.envfiles import MAX_ENV_FILE_BYTES
from ...loading.files import FileProblem, read_bounded
from ...loading.values import MAX_VALUE_BYTES
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


def spec_folders(objects: Sequence[SpecObject], output: Path | None) -> list[Path]:
    """The folder each object's file goes to: ``output`` (a subfolder per namespace when there are
    several), or the current folder when the files go to stdout."""
    namespaces = {o.document["metadata"].get("namespace") for o in objects}
    per_namespace = output is not None and len(namespaces) > 1
    folders = []
    for obj in objects:
        folder = output or Path(".")
        namespace = obj.document["metadata"].get("namespace")
        folders.append(folder / namespace if per_namespace and namespace else folder)
    return folders


def render_all(objects: Sequence[SpecObject], header: Sequence[str], output: Path | None) -> Rendered:
    """Every object as a file in its ``spec_folders`` folder; checked as one set of specs."""
    texts = {
        folder / filename(obj): render(obj, header)
        for obj, folder in zip(objects, spec_folders(objects, output), strict=True)
    }
    return Rendered(texts, check(texts, output or Path(".")))


@dataclass(frozen=True)
class FileCopy:
    """A file named by a spec, to be written into the specs folder: its content never leaves memory
    but for that file."""

    source: Path
    data: bytes = field(repr=False)
    mode: int
    secret: bool = False


@dataclass
class Placement:
    """Where the files named outside the specs folder go, and those that could not be read."""

    copies: dict[Path, FileCopy] = field(default_factory=dict)
    # (original, copy) for each file that could not be read: the spec names the copy, to be filled.
    unread: list[tuple[Path, Path, str]] = field(default_factory=list)


def file_references(obj: SpecObject) -> list[tuple[list[Any] | dict[str, Any], Any]]:
    """Where ``obj`` names a file: ``(container, key)`` of a secret's or config's ``spec.file`` and
    of each of a service's ``spec.envFile``."""
    spec = obj.document.get("spec") or {}
    if obj.kind in ("SwarmSecret", "SwarmConfig") and isinstance(spec.get("file"), str):
        return [(spec, "file")]
    if obj.kind == "SwarmService" and isinstance(spec.get("envFile"), list):
        return [(spec["envFile"], i) for i in range(len(spec["envFile"]))]
    return []


def place_files(objects: Sequence[SpecObject], output: Path, *, names_from: Path, compose_dir: Path) -> Placement:
    """Make every file reference of ``objects`` point inside ``output``, and read what to copy there.

    References are read relative to ``names_from``. A file already inside ``output`` is named where
    it is; any other goes to ``output/_files/`` under its path relative to ``compose_dir`` (relative
    to the folder holding both, for a file outside the compose folder). The documents are changed
    in place; nothing is written here.
    """
    out = Path(os.path.abspath(output))
    named: list[tuple[list[Any] | dict[str, Any], Any, Path, Path, bool]] = []
    for obj, folder in zip(objects, spec_folders(objects, output), strict=True):
        for container, key in file_references(obj):
            full = Path(os.path.normpath(names_from / container[key]))
            named.append((container, key, full, Path(os.path.abspath(folder)), obj.kind == "SwarmSecret"))
    outside = sorted({full for _, _, full, _, _ in named if not full.is_relative_to(out)})
    base = Path(os.path.commonpath([os.path.abspath(compose_dir), *outside]))
    copy_of = {full: out / VALUES_FOLDER / full.relative_to(base) for full in outside}
    placement = Placement()
    secret = {full for _, _, full, _, is_secret in named if is_secret}
    for full, copy in copy_of.items():
        try:
            data = read_bounded(full, max(MAX_VALUE_BYTES, MAX_ENV_FILE_BYTES))
            # A secret's copy is its owner's alone, whatever the original allowed.
            mode = 0o600 if full in secret else stat.S_IMODE(os.stat(full).st_mode) & 0o777
        except (FileProblem, OSError) as exc:
            placement.unread.append((full, copy, str(exc)))
            continue
        placement.copies[copy] = FileCopy(full, data, mode, secret=full in secret)
    for container, key, full, folder, _ in named:
        container[key] = Path(os.path.relpath(copy_of.get(full, full), folder)).as_posix()
    return placement


def _secret_ignores(copies: Mapping[Path, FileCopy]) -> dict[Path, str]:
    """A ``.gitignore`` in each ``_files/`` holding secret copies, naming them: specs are meant to be
    committed, a secret in plain text is not (encrypt it with SOPS to keep it in Git)."""
    listed: dict[Path, list[str]] = {}
    for path, copy in copies.items():
        folder = next((a for a in path.parents if a.name == VALUES_FOLDER), None)
        if copy.secret and folder is not None:
            listed.setdefault(folder, []).append("/" + path.relative_to(folder).as_posix())
    return {
        folder / ".gitignore": "# Secret values copied by swarmkeeper import: not for Git in plain text.\n"
        + "".join(f"{name}\n" for name in sorted(names))
        for folder, names in listed.items()
    }


def write(texts: Mapping[Path, str], *, force: bool, copies: Mapping[Path, FileCopy] | None = None) -> None:
    """The copies, then each text to its path; raises ``FilesExist`` (before writing any) if some
    exist, unless ``force``."""
    copies = copies or {}
    ignores = _secret_ignores(copies)
    existing = [p for p in [*copies, *ignores, *texts] if p.exists()]
    if existing and not force:
        raise FilesExist(existing)
    for path, copy in copies.items():  # first: a spec never names a file that is not there yet
        if not write_atomic(path, copy.data, mode=copy.mode):
            os.chmod(path, copy.mode)  # the same content: the mode still has to be the copy's
    for path, text in ignores.items():
        write_atomic(path, text.encode("utf-8"))
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
