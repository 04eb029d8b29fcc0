"""Which files are spec files: the files named, and the YAML files under the folders named.

Folders are working copies and Git checkouts, so hidden entries (``.git/``, ``.status/``) and the
temporary files editors leave beside the file being edited are never taken for specs. A symlink in
a folder may not lead outside it: a repository must not be able to make swarmkeeper read, apply
(as a secret, say) or write status into a file elsewhere on the machine.

The files a spec names (secret and config values, env files) must lie inside the root of its spec
tree: the folder given, or the nearest folder above it that holds the marker ``.swarmkeeper-root``.
``import compose`` writes that marker where a stack keeps its files beside the compose file and
the specs in a folder of their own, so they can name ``../db_pw.txt`` without copying it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .errors import SpecError

SPEC_SUFFIXES = (".yaml", ".yml")
ROOT_MARKER = ".swarmkeeper-root"
# Backups (web.yaml~), vim swap files, temporaries; vim probes a folder by writing a file named 4913.
_EDITOR_SUFFIXES = ("~", ".swp", ".swx", ".tmp")
_EDITOR_NAMES = frozenset({"4913"})


def is_ignored(name: str) -> bool:
    """Hidden (``.git``, ``.#web.yaml`` of Emacs) or an editor's temporary file."""
    return name.startswith(".") or name.endswith(_EDITOR_SUFFIXES) or name in _EDITOR_NAMES


def find_spec_files(paths: Sequence[Path]) -> tuple[list[tuple[Path, Path]], list[SpecError]]:
    """``(file, root)`` for every spec file, in a stable order, each file once.

    A file named explicitly is loaded whatever its name; a folder is searched recursively for
    ``*.yaml``/``*.yml`` in sorted order. ``root`` is the root of the spec tree (``tree_root``) of
    the file's folder or of the folder named.
    """
    found: list[tuple[Path, Path]] = []
    errors: list[SpecError] = []
    seen: set[Path] = set()
    for path in paths:
        try:
            kind = os.stat(path).st_mode
        except OSError as exc:  # missing, a name too long, a loop, no permission on the way
            problem = "no such file or folder" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
            errors.append(SpecError(problem, file=path))
            continue
        if stat.S_ISDIR(kind):
            folder, candidates = path, _walk(path, errors)
        elif stat.S_ISREG(kind):
            folder, candidates = path.parent, [path]
        else:
            errors.append(SpecError("is not a file or folder", file=path))
            continue
        root = tree_root(folder)
        for file in candidates:
            try:
                real = file.resolve()
            except (OSError, RuntimeError):  # RuntimeError: a symlink loop
                errors.append(SpecError("cannot be resolved (a symlink loop?)", file=file))
                continue
            if not real.is_relative_to(folder.resolve()):
                errors.append(SpecError("is a symlink to a file outside the specs folder", file=file))
                continue
            if real not in seen:  # a folder and a file inside it may both be named
                seen.add(real)
                found.append((file, root))
    return found, errors


def tree_root(folder: Path) -> Path:
    """The root of the spec tree ``folder`` belongs to: the nearest folder at or above it holding
    the marker, else ``folder`` itself."""
    absolute = Path(os.path.abspath(folder))
    for candidate in (absolute, *absolute.parents):
        if os.path.isfile(candidate / ROOT_MARKER):
            return folder if candidate == absolute else candidate
    return folder


def _walk(folder: Path, errors: list[SpecError]) -> list[Path]:
    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else folder
        errors.append(SpecError(f"cannot read the folder: {exc.strerror or type(exc).__name__}", file=where))

    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))  # pruned in place: not descended
        files.extend(
            Path(dirpath, name)
            for name in sorted(filenames)
            if not is_ignored(name) and name.lower().endswith(SPEC_SUFFIXES)
        )
    return files
