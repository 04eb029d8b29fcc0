"""Keeps (or waits for) the swarm lease in the background, so the loop only asks "may I act?"."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError
from ..swarm.lease import Lease
from .triggers import Wakeup

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, connect: Callable[[], EngineClient], source: str, wakeup: Wakeup, ttl: float = 15.0) -> None:
        self.connect = connect
        self.source = source
        self.wakeup = wakeup
        self.ttl = ttl
        self.lease: Lease | None = None
        self.held = threading.Event()
        self.checked = threading.Event()  # at least one attempt finished (held or not)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self._reported_holder: str | None = None
        self._reconnect = False

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():  # never started with --once (a single attempt() instead)
            self.thread.join(timeout=5)
        if self.lease is not None:
            self.lease.release()

    def attempt(self) -> bool:
        """One acquire/renew attempt; True when we hold the lease afterwards."""
        try:
            if self.lease is None:
                self.lease = Lease(self.connect(), self.source, self.ttl)
            elif self._reconnect:
                old, self.lease.client = self.lease.client, self.connect()
                self._reconnect = False
                old.close()
            was_held = self.held.is_set()
            if self.lease.try_acquire():
                if not was_held:
                    log.info("holding the lease %s; acting on the swarm", self.lease.name)
                    self.wakeup.poke("lease")
                self.held.set()
                self._reported_holder = None
            else:
                if was_held:
                    log.error("lost the lease %s; standing by", self.lease.name)
                self.held.clear()
                info = self.lease.current()
                holder = info.holder if info else "?"
                if holder != self._reported_holder:
                    log.warning(
                        "another swarmkeeper controller (%s) holds the lease %s; standing by until it stops "
                        "or stops renewing it (%.0fs)",
                        holder,
                        self.lease.name,
                        self.ttl,
                    )
                    self._reported_holder = holder
        except EngineError as exc:
            # Unreachable engine: we cannot prove we hold it, so we do not act.
            if self.held.is_set():
                log.warning("cannot renew the lease: %s", exc)
            self.held.clear()
            # A new connection, but the same identity: back within the ttl, the lease is renewed, not
            # waited for as though another controller held it.
            self._reconnect = self.lease is not None
        finally:
            self.checked.set()
        return self.held.is_set()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self.attempt()
            self.stop_event.wait(self.ttl / 3)
