"""Follow services until they converge, fail (paused or rolled back) or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..api import Key
from ..swarm.connect import EngineClient
from ..swarm.observe import SwarmState, observe
from .progress import Progress, service_progress


@dataclass
class WaitResult:
    converged: bool
    timed_out: bool
    progress: dict[Key, Progress | None]  # None: the service does not exist
    state: SwarmState

    @property
    def failures(self) -> dict[Key, str]:
        out = {}
        for key, p in self.progress.items():
            if p is None:
                out[key] = "service does not exist"
            elif p.failed:
                out[key] = p.failed + (f"; task error: {p.task_error['error']}" if p.task_error else "")
        return out


def snapshot(state: SwarmState, keys: Sequence[Key]) -> dict[Key, Progress | None]:
    out: dict[Key, Progress | None] = {}
    for key in keys:
        svc = state.managed_services.get(key)
        out[key] = None if svc is None else service_progress(svc, state.tasks_by_service.get(svc["ID"], []))
    return out


def wait_for_services(
    client: EngineClient,
    keys: Sequence[Key],
    timeout: float,
    *,
    poll: float = 0.5,
    on_progress: Callable[[dict[Key, Progress | None]], None] | None = None,
) -> WaitResult:
    deadline = time.monotonic() + timeout
    while True:
        state = observe(client)
        progress = snapshot(state, keys)
        if on_progress is not None:
            on_progress(progress)
        done = all(p is not None and p.converged for p in progress.values())
        failed = any(p is None or p.failed for p in progress.values())
        if done or failed:
            return WaitResult(done, False, progress, state)
        if time.monotonic() >= deadline:
            return WaitResult(False, True, progress, state)
        time.sleep(poll)
