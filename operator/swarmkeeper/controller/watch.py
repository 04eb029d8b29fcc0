"""``swarmkeeper watch``: a specs folder as the source of the shared reconcile loop.

The folder adds one trigger (file changes) and one way back for status (the spec files' own
``status:`` blocks, or a ``.status/`` tree); everything else is the loop's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.run import PassOutcome
from ..loading import LoadResult, Manifest
from ..loading.discovery import tree_root
from ..sources.folder import FolderSource, StatusMode
from .file_events import FileEvents
from .loop import Controller, LoopOptions, Trigger
from .triggers import Wakeup


@dataclass(frozen=True)
class WatchOptions:
    paths: Sequence[Path]
    status: StatusMode = "inline"
    loop: LoopOptions = field(default_factory=LoopOptions)


class FolderLoopSource:
    controller = "watch"

    def __init__(self, paths: Sequence[Path], status: StatusMode) -> None:
        self.paths = list(paths)
        self.folder = FolderSource(self.paths, status)

    def load(self) -> LoadResult:
        return self.folder.load()

    def publish(self, manifests: Sequence[Manifest], outcome: PassOutcome) -> None:
        self.folder.publish(manifests, outcome.statuses, outcome.spec_errors)

    def triggers(self, wakeup: Wakeup) -> list[Trigger]:
        # The whole spec tree: a value file beside the compose file (above specs/) changes specs too.
        watched = list(dict.fromkeys(_watched(p) for p in self.paths))
        return [FileEvents(watched, wakeup, self.folder.is_own_write)]

    def revision(self) -> str | None:
        return None


def _watched(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    root = tree_root(folder)
    return path if root == folder else root


def run_watch(options: WatchOptions) -> int:
    return Controller(FolderLoopSource(options.paths, options.status), options.loop).run()
