"""Writing a file so that no reader, and no crash, ever sees half of it: every file swarmkeeper
writes (status in spec files, status files, imported specs, unlock keys) goes through here.

The data goes to a temporary file beside the target (a name file watchers ignore), is flushed to
disk, takes the target's permissions and owner, and replaces the target by a rename, which is then
made durable too.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

# File watchers ignore names like this, so a write in progress never looks like a spec change.
TEMP_SUFFIX = ".swarmkeeper.tmp"
NEW_FILE_MODE = 0o644


def write_temp(target: Path, data: bytes, *, mode: int | None = None) -> Path:
    """A durable copy of ``data`` beside ``target``, with ``mode`` if given, else ``target``'s
    permissions and owner (a new file: 0644). Never readable more widely than that, even briefly."""
    try:
        like: os.stat_result | None = target.stat()
    except FileNotFoundError:
        like = None
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if mode is None:
                mode = NEW_FILE_MODE if like is None else stat.S_IMODE(like.st_mode)
            os.fchmod(out.fileno(), mode)
            if like is not None:
                # A controller running as root must not leave the user's file owned by root.
                with contextlib.suppress(OSError):
                    os.fchown(out.fileno(), like.st_uid, like.st_gid)
            os.fsync(out.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def fsync_dir(folder: Path) -> None:
    # Makes a rename durable; not every platform lets a folder be opened for it.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(target: Path, data: bytes, *, mode: int | None = None) -> bool:
    """Replace ``target`` with ``data``; False (and nothing written) when it already holds it."""
    try:
        if target.read_bytes() == data:
            return False
    except OSError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = write_temp(target, data, mode=mode)
    try:
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)  # a no-op after os.replace; removes the copy otherwise
    fsync_dir(target.parent)
    return True
