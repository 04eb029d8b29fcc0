"""Reading the files that users and specs name: bounded in size and kept inside the specs root.

A spec may name a file for a secret's value; specs can come from a Git repository that others
write to, so a path (or a symlink on it) must not reach outside the specs root and turn, say,
``~/.docker/config.json`` into a swarm secret.
"""

from __future__ import annotations

import stat
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB


class FileProblem(Exception):
    """Why a file cannot be used, in words fit for an error message (no file content)."""


def inside_root(path: Path, root: Path) -> Path:
    """The real path of ``path``, provided it (after following every symlink) lies inside ``root``."""
    try:
        real, real_root = path.resolve(), root.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        raise FileProblem("cannot be resolved (a symlink loop?)") from None
    if not real.is_relative_to(real_root):
        raise FileProblem("escapes the specs root")
    return real


def read_bounded(path: Path, limit: int) -> bytes:
    """The content of the regular file ``path``, refusing one over ``limit`` bytes unread.

    Anything but a regular file is refused before opening: a FIFO would block the reader forever.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise FileProblem("is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("is not a regular file")
        if info.st_size > limit:
            raise FileProblem(f"is larger than {format_size(limit)}")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)  # one more: the file may have grown since stat
    except FileNotFoundError:
        raise FileProblem("no such file") from None
    except OSError as exc:
        raise FileProblem(exc.strerror or type(exc).__name__) from None
    if len(data) > limit:
        raise FileProblem(f"is larger than {format_size(limit)}")
    return data


def format_size(size: int) -> str:
    """``4194304`` → ``"4 MiB"``."""
    for unit, factor in (("MiB", MiB), ("KiB", KiB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"
