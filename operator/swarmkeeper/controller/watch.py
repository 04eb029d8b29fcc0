"""``swarmkeeper watch``: a specs folder as the source of the shared reconcile loop.

The folder adds one trigger (file changes) and one way back for status (the spec files' own
``status:`` blocks, or a ``.status/`` tree); everything else is the loop's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import Key
from ..engine.run import PassOutcome
from ..loading import LoadResult, Manifest
from ..loading.discovery import tree_root
from ..sources.folder import FolderSource, StatusMode
from .file_events import FileEvents, is_spec_change
from .loop import Controller, LoopOptions, Trigger
from .triggers import Wakeup


@dataclass(frozen=True)
class WatchOptions:
    paths: Sequence[Path]
    status: StatusMode = "inline"
    loop: LoopOptions = field(default_factory=LoopOptions)


# A save in place is a truncate, then a write. A pass that read the file in between would act on an
# empty or cut file (with --prune: delete what it held, and create it again on the next pass), so a
# load that a change may have overlapped is done again once the files have been still this long.
SETTLE = 0.05
SETTLE_TRIES = 20
# A save in place whose writer stalls between the truncate and the write (a loaded machine) leaves
# an empty file for longer than that: objects that left the specs are believed once the files have
# been still this long (a deletion waits a second; an edit does not).
VANISHED_SETTLE = 1.0


class FolderLoopSource:
    controller = "watch"

    def __init__(self, paths: Sequence[Path], status: StatusMode) -> None:
        self.paths = list(paths)
        self.folder = FolderSource(self.paths, status)
        self._keys: set[Key] = set()  # what the last load held

    def load(self) -> LoadResult:
        result = self._settled(SETTLE)
        keys = {m.key for m in result.manifests}
        if self._keys - keys and not result.errors:
            result = self._settled(VANISHED_SETTLE)
            keys = {m.key for m in result.manifests}
        if not result.errors:
            self._keys = keys
        return result

    def _settled(self, settle: float) -> LoadResult:
        """A load that no write overlapped: done again until the files have been still ``settle`` s."""
        for _ in range(SETTLE_TRIES):
            started = time.time()
            result = self.folder.load()
            newest = _newest_change(self.paths, started - settle)
            if newest is None:
                break
            time.sleep(min(settle, max(0.005, newest + settle - time.time())))
        return result

    def publish(self, manifests: Sequence[Manifest], outcome: PassOutcome) -> None:
        self.folder.publish(manifests, outcome.statuses, outcome.spec_errors)

    def triggers(self, wakeup: Wakeup) -> list[Trigger]:
        # The whole spec tree: a value file beside the compose file (above specs/) changes specs too.
        watched = list(dict.fromkeys(_watched(p) for p in self.paths))
        return [FileEvents(watched, wakeup, self.folder.is_own_write)]

    def revision(self) -> str | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": "folder", "paths": [str(p) for p in self.paths]}


class SwarmOnlySource:
    """No specs: ``swarmkeeper ui`` without a path shows the swarm as it is."""

    controller = "ui"

    def load(self) -> LoadResult:
        return LoadResult(manifests=[], errors=[])

    def publish(self, manifests: Sequence[Manifest], outcome: PassOutcome) -> None:
        pass

    def triggers(self, wakeup: Wakeup) -> list[Trigger]:
        return []

    def revision(self) -> str | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": "engine"}


def _newest_change(paths: Sequence[Path], since: float) -> float | None:
    """The latest modification time after ``since`` of a file under ``paths`` that the watcher would
    act on, or None. Times in the future (a clock set back, a copied file) are not a write going on."""
    now = time.time()
    times = [_mtime(p) for p in _watched_files(paths)]
    recent = [t for t in times if since < t <= now + SETTLE]
    return max(recent, default=None)


def _watched_files(paths: Sequence[Path]) -> list[str]:
    """Folders (a file deleted and written again shows in its folder's time) and the files in them
    that the watcher would act on."""
    found = []
    for path in paths:
        walked = os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]
        for folder, subfolders, names in walked:
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
            found.append(folder)
            found += [f for f in (os.path.join(folder, n) for n in names) if is_spec_change(f)]
    return found


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _watched(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    root = tree_root(folder)
    return path if root == folder else root


def run_watch(options: WatchOptions) -> int:
    source = FolderLoopSource(options.paths, options.status) if options.paths else SwarmOnlySource()
    return Controller(source, options.loop).run()
