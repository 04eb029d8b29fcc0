"""A state that lasts is logged when it starts, when it changes and when it ends, not every pass."""

from __future__ import annotations

import logging
from collections.abc import Mapping


class LastingStates:
    """What was last said about each subject (an object waiting, an engine away, a plan error)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.current: dict[str, str] = {}

    def update(
        self,
        states: Mapping[str, str],
        *,
        start: str,
        end: str | None,
        level: int = logging.WARNING,
    ) -> None:
        """``states``: every subject in that state now, with its detail. ``start`` and ``end`` are
        %-formats taking (subject, detail) and (subject,)."""
        for subject, detail in states.items():
            if self.current.get(subject) != detail:
                self.log.log(level, start, subject, detail)
        if end is not None:
            for subject in self.current.keys() - states.keys():
                self.log.info(end, subject)
        self.current = dict(states)
