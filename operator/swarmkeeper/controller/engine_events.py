"""Docker events → wake-ups, reconnecting with backoff when the engine goes away.

Only "something changed" is taken from an event; what changed is read by the next pass. The default
engine is followed from the start; each SwarmCluster's engine once a pass has seen it in the specs
(:class:`ClusterEvents`), over the same kind of connection as its passes (unix, TLS or ssh).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_never, wait_exponential

from ..api import SwarmCluster
from ..engine.clusters import connect_target, group_by_cluster
from ..loading import Manifest
from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError, engine_errors
from ..swarm.lease import is_lease
from .triggers import Wakeup

log = logging.getLogger(__name__)

EVENT_TYPES = ["service", "node", "network", "secret", "config", "container"]
CLUSTER_EVENT = "engine:"  # wake-up reason of an event on a cluster's engine: engine:<cluster>


class EngineEvents:
    """Follows one engine's events, waking the loop with ``reason``. ``name`` says which engine in
    logs; with ``owns_client`` each client ``connect`` returns is made for the stream alone and
    closed when the stream ends."""

    def __init__(
        self,
        connect: Callable[[], EngineClient],
        wakeup: Wakeup,
        *,
        name: str = "engine",
        reason: str = "engine",
        owns_client: bool = False,
    ) -> None:
        self.connect = connect
        self.wakeup = wakeup
        self.name = name
        self.reason = reason
        self.owns_client = owns_client
        self.stop_event = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"{name}-events", daemon=True)
        self._stream: object | None = None
        self._failing = False

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
            before_sleep=self._retrying,
        )
        try:
            retrying(self._follow)
        except Exception:
            log.exception("%s event stream stopped", self.name)

    def _retrying(self, state: RetryCallState) -> None:
        if self.stop_event.is_set():
            return
        why = state.outcome.exception() if state.outcome else "?"
        # An engine that stays away is said once (its passes report it too), not at every retry.
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(level, "%s events unavailable (%s); retrying", self.name, why)
        self._failing = True

    def _follow(self) -> None:
        while not self.stop_event.is_set():
            with engine_errors():
                client = self.connect()
                try:
                    self._stream_events(client)
                finally:
                    if self.owns_client:
                        client.close()
            if not self.stop_event.is_set():
                raise EngineError("event stream ended")

    def _stream_events(self, client: EngineClient) -> None:
        if self.stop_event.is_set():
            return
        stream = client.events(decode=True, filters={"type": EVENT_TYPES}, since=int(time.time()))
        self._stream = stream
        if self.stop_event.is_set():  # stopped while connecting: stop() saw no stream to close
            stream.close()
            return
        self.connected.set()
        if self._failing:
            log.info("%s events followed again", self.name)
            self._failing = False
        # Missed events while disconnected are covered: reconnecting is itself a trigger.
        self.wakeup.poke("engine-connected")
        for event in stream:
            if self.stop_event.is_set():
                return
            if relevant(event):
                self.wakeup.poke(self.reason)
        self.connected.clear()


class ClusterEvents:
    """One :class:`EngineEvents` per SwarmCluster in the specs: started when a pass first sees it,
    started again when how it is reached changes, stopped when it leaves the specs. A cluster that
    cannot be reached is retried by its follower with backoff, apart from the passes."""

    def __init__(self, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        self._followers: dict[str, tuple[str, EngineEvents]] = {}
        self._lock = threading.Lock()
        self._active = False

    def start(self) -> None:
        self._active = True

    def follow(self, manifests: Sequence[Manifest]) -> None:
        """Follow the clusters of ``manifests`` (the specs last applied), and only those."""
        if not self._active:
            return
        wanted: dict[str, str] = {}
        for target in group_by_cluster(manifests):
            reach = _reach(manifests, target.cluster) if target.cluster is not None else None
            if target.cluster is not None and reach is not None:
                wanted[target.cluster] = reach
        with self._lock:
            for name in list(self._followers):
                key, follower = self._followers[name]
                if wanted.get(name) != key:
                    follower.stop()
                    del self._followers[name]
            for name, key in wanted.items():
                if name not in self._followers:
                    follower = EngineEvents(
                        _connector(name, list(manifests)),
                        self.wakeup,
                        name=f"cluster {name}",
                        reason=f"{CLUSTER_EVENT}{name}",
                        owns_client=True,
                    )
                    self._followers[name] = (key, follower)
                    follower.start()

    def stop(self) -> None:
        self._active = False
        with self._lock:
            for _, follower in self._followers.values():
                follower.stop()
            self._followers.clear()


def _reach(manifests: Sequence[Manifest], name: str) -> str | None:
    """How cluster ``name`` is reached (its engines and the folder their files are relative to)."""
    for m in manifests:
        if isinstance(m.resource, SwarmCluster) and m.name == name:
            spec = m.resource.spec
            engines: list[Any] = [spec.engine.model_dump(mode="json")]
            engines += [n.engine.model_dump(mode="json") for n in spec.nodes]
            folder = str(m.origin.file.parent) if m.origin is not None else ""
            return json.dumps([folder, engines], sort_keys=True)
    return None


def _connector(name: str, manifests: list[Manifest]) -> Callable[[], EngineClient]:
    return lambda: connect_target(name, manifests)


def relevant(event: dict[str, object]) -> bool:
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") if isinstance(actor, dict) else None
    if event.get("Type") == "config":
        # A lease renewal (every ttl/3, by this controller or another) changes nothing spec'd: waking
        # for it would run a pass, and its follow-ups, every few seconds on an idle swarm.
        name = attributes.get("name") if isinstance(attributes, dict) else None
        return not (isinstance(name, str) and is_lease(name))
    if event.get("Type") == "network":
        # Containers joining and leaving networks are node-local events; the swarm's own networks
        # are created, changed and removed in the swarm scope.
        return event.get("scope") != "local"
    if event.get("Type") != "container":
        return True
    # Containers matter only as swarm tasks (a task dying changes a service's running count).
    return (
        isinstance(attributes, dict)
        and "com.docker.swarm.service.id" in attributes
        and (
            event.get("Action") in {"die", "start", "kill", "oom", "destroy", "health_status: unhealthy"}
            or str(event.get("Action", "")).startswith("health_status")
        )
    )
