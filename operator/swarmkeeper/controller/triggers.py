"""Wake-ups for the reconcile loop. Any number of triggers between two passes become one pass:
the loop is level-triggered and never acts on a single event, only on the state it reads."""

from __future__ import annotations

import threading
import time


class Wakeup:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._reasons: set[str] = set()
        self._first_at: float | None = None

    def poke(self, reason: str) -> None:
        with self._cond:
            if not self._reasons:
                self._first_at = time.monotonic()
            self._reasons.add(reason)
            self._cond.notify_all()

    def wait(self, timeout: float, settle: float = 0.02) -> tuple[set[str], float | None]:
        """Block until poked or ``timeout``; then give a burst ``settle`` seconds to finish.

        Returns the reasons (empty on timeout) and when the first of them arrived.
        """
        with self._cond:
            if not self._reasons:
                self._cond.wait(timeout)
        if settle:
            time.sleep(settle)
        with self._cond:
            reasons, first = self._reasons, self._first_at
            self._reasons, self._first_at = set(), None
        return reasons, first
