"""Which files are spec files: the files named, and the YAML files under the folders named.

Folders are working copies and Git checkouts, so hidden entries (``.git/``, ``.status/``) and the
temporary files editors leave beside the file being edited are never taken for specs. A symlink in
a folder may not lead outside it: a repository must not be able to make swarmkeeper read, apply
(as a secret, say) or write status into a file elsewhere on the machine.

The files a spec names (secret and config values, env files) must lie inside the root of its spec
tree: the folder given, or the nearest folder above it that holds the marker ``.swarmkeeper-root``.
``import compose`` copies the files a compose file names into ``_files/`` of the specs folder, which
is never searched for specs (a copied ``prometheus.yml`` is a value, not a spec); only with
``--keep-file-paths`` does it name the originals and write the marker above the specs instead.
A marker is not honoured where it would open too much: in the file system's root, or in a folder
every user may write to (``/tmp``), where anyone could have put it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .errors import SpecError

SPEC_SUFFIXES = (".yaml", ".yml")
ROOT_MARKER = ".swarmkeeper-root"
# Where import puts copies of the files a compose file names; holds values, so never searched for specs.
VALUES_FOLDER = "_files"
# Backups (web.yaml~), vim swap files, temporaries; vim probes a folder by writing a file named 4913.
_EDITOR_SUFFIXES = ("~", ".swp", ".swx", ".tmp")
_EDITOR_NAMES = frozenset({"4913"})


def is_ignored(name: str) -> bool:
    """Hidden (``.git``, ``.#web.yaml`` of Emacs), an editor's temporary file, or the folder of values."""
    return name.startswith(".") or name.endswith(_EDITOR_SUFFIXES) or name in _EDITOR_NAMES or name == VALUES_FOLDER


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
    the marker (one ``root_refusal`` accepts), else ``folder`` itself."""
    absolute = Path(os.path.abspath(folder))
    if os.path.isfile(absolute / ROOT_MARKER):
        return folder
    for candidate in absolute.parents:
        if os.path.isfile(candidate / ROOT_MARKER) and root_refusal(candidate) is None:
            return candidate
    return folder


def root_refusal(folder: Path) -> str | None:
    """Why a marker in ``folder`` is not honoured, or None when it is.

    The root of the file system would let specs read every file on the machine; in a folder every
    user may write to (``/tmp``, ``/var/tmp``), anyone could have placed the marker.
    """
    absolute = Path(os.path.abspath(folder))
    if absolute == Path(absolute.anchor):
        return "is the root of the file system: the specs could read any file on the machine"
    try:
        mode = os.stat(absolute).st_mode
    except OSError:
        return None  # a missing folder holds no marker; writing one reports its own error
    if mode & stat.S_IWOTH:
        return "is writable by every user, who could all place the marker there"
    return None


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
