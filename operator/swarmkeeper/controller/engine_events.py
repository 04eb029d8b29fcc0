"""Docker events → wake-ups, reconnecting with backoff when the engine goes away.

Only "something changed" is taken from an event; what changed is read by the next pass.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from tenacity import Retrying, retry_if_exception_type, stop_never, wait_exponential

from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError, engine_errors
from .triggers import Wakeup

log = logging.getLogger(__name__)

EVENT_TYPES = ["service", "node", "network", "secret", "config", "container"]


class EngineEvents:
    def __init__(self, connect: Callable[[], EngineClient], wakeup: Wakeup) -> None:
        self.connect = connect
        self.wakeup = wakeup
        self.stop_event = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, name="engine-events", daemon=True)
        self._stream: object | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        close = getattr(self._stream, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def _run(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(EngineError),
            wait=wait_exponential(multiplier=0.5, max=10),
            stop=stop_never,
            before_sleep=lambda rs: log.warning(
                "engine events unavailable (%s); retrying", rs.outcome.exception() if rs.outcome else "?"
            ),
        )
        try:
            retrying(self._follow)
        except Exception:
            log.exception("engine event stream stopped")

    def _follow(self) -> None:
        while not self.stop_event.is_set():
            with engine_errors():
                client = self.connect()
                stream = client.events(decode=True, filters={"type": EVENT_TYPES}, since=int(time.time()))
                self._stream = stream
                self.connected.set()
                # Missed events while disconnected are covered: reconnecting is itself a trigger.
                self.wakeup.poke("engine-connected")
                for event in stream:
                    if self.stop_event.is_set():
                        return
                    if _relevant(event):
                        self.wakeup.poke("engine")
                self.connected.clear()
            if not self.stop_event.is_set():
                raise EngineError("event stream ended")


def _relevant(event: dict[str, object]) -> bool:
    if event.get("Type") != "container":
        return True
    # Containers matter only as swarm tasks (a task dying changes a service's running count).
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") if isinstance(actor, dict) else None
    return (
        isinstance(attributes, dict)
        and "com.docker.swarm.service.id" in attributes
        and (
            event.get("Action") in {"die", "start", "kill", "oom", "destroy", "health_status: unhealthy"}
            or str(event.get("Action", "")).startswith("health_status")
        )
    )
