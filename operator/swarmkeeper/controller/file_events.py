"""Spec folder changes → wake-ups, with editor noise and the controller's own writes filtered out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from watchfiles import Change, watch

from .triggers import Wakeup

log = logging.getLogger(__name__)

_NOISE_SUFFIXES = (".swp", ".swx", ".swo", "~", ".tmp", ".swarmkeeper.tmp", ".part")


class FileEvents:
    def __init__(self, paths: Sequence[Path], wakeup: Wakeup, is_own_write: Callable[[Path], bool]) -> None:
        self.paths = [p for p in paths]
        self.wakeup = wakeup
        self.is_own_write = is_own_write
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="file-events", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        def keep(change: Change, path: str) -> bool:
            return is_spec_change(path)

        # Small debounce: a save is a burst of events within milliseconds; the loop coalesces the rest.
        for changes in watch(
            *self.paths,
            watch_filter=keep,
            debounce=40,
            step=10,
            stop_event=self.stop_event,
            yield_on_timeout=False,
            raise_interrupt=False,
            rust_timeout=500,
        ):
            relevant = [Path(p) for _, p in changes if not self.is_own_write(Path(p))]
            if relevant:
                log.debug("spec files changed: %s", ", ".join(sorted(str(p) for p in relevant)))
                self.wakeup.poke("file")


def is_spec_change(path: str) -> bool:
    """A change that can alter specs: YAML files and the value/env files they point at, not editor
    swap files, backups or temp files (an atomic-rename save shows up under the final name), nor
    anything in hidden folders (.git, .status)."""
    p = Path(path)
    name = p.name
    if name.startswith(".#") or name.startswith(".") or name == "4913" or name.endswith(_NOISE_SUFFIXES):
        return False
    return not any(part.startswith(".") and part not in (".", "..") for part in p.parts[:-1])
