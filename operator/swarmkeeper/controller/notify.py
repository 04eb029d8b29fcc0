"""Telling people: each pass's events go to the SwarmAlert targets that ask for them, off the pass.

A front door calls ``Notifier.observe(manifests, outcome)`` after publishing a pass. That derives
the pass's events (``engine/events.py``, pure), picks for each SwarmAlert the ones it asks for, and
hands one batch per target to that target's lane: a bounded queue and a worker thread of its own.
``observe`` never waits for the network, so a slow or dead target can slow neither a pass nor the
other targets. Each lane

* sends one message per batch (the pass's events for that target), with Apprise;
* is rate-limited (a token bucket: a burst, then one message every few seconds); batches that
  queue meanwhile go out together, as one message;
* retries a failed send with backoff, then gives the message up (counted as failed);
* drops the oldest batch when its queue is full (counted as dropped, logged once per episode).

A target's URL holds its token: it is only handed to Apprise. Whatever libraries log from a lane's
thread is dropped (Apprise's own log, urllib3's request lines: they name URLs); what is logged names
the SwarmAlert, the target's index and the URL's schema.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from ..api import Key, SwarmAlert
from ..engine.events import Event, Memory, derive, selected, severity
from ..engine.run import PassOutcome
from ..loading import Manifest
from .metrics import Metrics

log = logging.getLogger(__name__)

MAX_EVENTS_PER_MESSAGE = 50  # a message stays readable; the rest is summed up in one line


@dataclass(frozen=True)
class Limits:
    queue: int = 20  # batches waiting per target; beyond, the oldest is dropped
    burst: float = 10.0  # messages a target may get at once...
    per_second: float = 1 / 6  # ...then one every 6 s
    retries: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between attempts
    connect_timeout: float = 3.0
    read_timeout: float = 5.0


@dataclass
class TokenBucket:
    """``capacity`` sends at once, refilled at ``per_second``; time is passed in (pure)."""

    capacity: float
    per_second: float
    tokens: float = -1.0
    at: float = 0.0

    def wait(self, now: float) -> float:
        """Seconds until a send is allowed (0: take it now, and the token is taken)."""
        if self.tokens < 0:
            self.tokens, self.at = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


@dataclass(frozen=True)
class Batch:
    """One pass's events for one target."""

    events: tuple[Event, ...]
    source: str
    revision: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))  # the end of the pass that saw them


def render(batches: Sequence[Batch]) -> tuple[str, str, str]:
    """(title, body, notify type) of one message carrying ``batches`` (one, or several held back)."""
    events = [e for b in batches for e in b.events]
    shown = events[:MAX_EVENTS_PER_MESSAGE]
    if len(events) == 1:
        title = f"swarmkeeper: {events[0].type} {events[0].subject}"
    else:
        types = ", ".join(dict.fromkeys(e.type for e in events))
        title = f"swarmkeeper: {len(events)} events ({types})"
    lines = [str(e) for e in shown]
    if len(events) > len(shown):
        lines.append(f"... and {len(events) - len(shown)} more")
    last = batches[-1]
    footer = f"source {last.source}" + (f", revision {last.revision[:12]}" if last.revision else "")
    lines.append(f"-- {footer}, pass at {last.at.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}")
    return title, "\n".join(lines), severity(events)


def schema_of(url: SecretStr) -> str:
    """The part of a URL that may be named (``json``, ``slack``): never what follows it."""
    head, sep, _ = url.get_secret_value().partition("://")
    return head if sep and head.isalnum() and len(head) <= 16 else "?"


LANE_THREAD = "notify "  # the name of every lane's thread starts so


class _LibrariesInLanes(logging.Filter):
    """Drops the records that libraries make in a lane's thread: a request line holds the URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith(LANE_THREAD) or record.name.startswith("swarmkeeper.")


_apprise_lock = threading.Lock()
_quiet = _LibrariesInLanes()


def _apprise() -> Any:
    """Apprise, imported on first use (it loads its plugins), with what libraries log in lanes dropped."""
    with _apprise_lock:
        import apprise

        quiet = logging.getLogger("apprise")
        quiet.propagate = False
        quiet.handlers = [logging.NullHandler()]
        # On the loggers that emit (a logger's filters do not see its children's records) and on the
        # root's handlers, for any other library a plugin brings.
        names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("urllib3", "requests")]
        for target in [*map(logging.getLogger, names), *logging.getLogger().handlers]:
            if _quiet not in target.filters:
                target.addFilter(_quiet)
        return apprise


class Lane:
    """One target: its queue, its worker thread, its rate limit and retries."""

    def __init__(self, name: str, url: SecretStr, count: Callable[[str, int], None], limits: Limits) -> None:
        self.name = name  # "SwarmAlert shop/ops target 0 (json)"
        self.limits = limits
        self._url = url
        self._count = count
        self._pending: deque[Batch] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._dropped = 0  # in the current episode: logged when it starts and when it ends
        self._failing = False
        self._bucket = TokenBucket(limits.burst, limits.per_second)
        self._plugin: Any = None
        self._thread = threading.Thread(target=self._run, name=f"{LANE_THREAD}{name}", daemon=True)
        self._thread.start()

    # -- the front door's side: never blocks ------------------------------------------------------
    def set_url(self, url: SecretStr) -> None:
        with self._cond:
            if url.get_secret_value() != self._url.get_secret_value():
                self._url, self._plugin = url, None

    def submit(self, batch: Batch) -> None:
        with self._cond:
            if len(self._pending) >= self.limits.queue:
                self._pending.popleft()
                self._dropped += 1
                self._count("dropped", 1)
                if self._dropped == 1:
                    log.warning(
                        "%s: messages are dropped, its queue is full (the target is slow or away); "
                        "counted in swarmkeeper_notifications_total{result=dropped}",
                        self.name,
                    )
            self._pending.append(batch)
            self._cond.notify()

    def close(self, timeout: float = 0.0) -> None:
        """Stop taking batches; wait up to ``timeout`` for those queued to be sent."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending or self._busy) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, min(0.1, deadline - time.monotonic())))
            self._closed = True
            self._cond.notify_all()

    # -- the worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        with contextlib.suppress(Exception):  # a failure here is met again, and reported, when sending
            self._plugin_for(self._url)  # Apprise loads its plugins now, not when the first event is due
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                wait = self._bucket.wait(time.monotonic())
                if wait > 0:
                    self._cond.wait(wait)  # batches arriving meanwhile go out with these
                    continue
                batches = list(self._pending)
                self._pending.clear()
                self._busy = True
                url = self._url
                if self._dropped and len(batches) < self.limits.queue:
                    log.info("%s: queue drained; %d message(s) were dropped", self.name, self._dropped)
                    self._dropped = 0
            try:
                self._deliver(url, batches)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, url: SecretStr, batches: Sequence[Batch]) -> None:
        title, body, kind = render(batches)
        attempts = 0
        why = ""
        for delay in (0.0, *self.limits.retries):
            if delay and self._sleep(delay):
                break
            attempts += 1
            why = self._send(url, title, body, kind)
            if not why:
                self._count("sent", 1)
                if self._failing:
                    log.info("%s: delivering again", self.name)
                    self._failing = False
                return
        self._count("failed", 1)
        if not self._failing:  # logged once per episode: a dead target must not flood the log
            log.warning("%s: message not delivered after %d attempt(s): %s", self.name, attempts, why)
            self._failing = True

    def _sleep(self, seconds: float) -> bool:
        """Wait between attempts; True when the lane was closed meanwhile."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed, seconds)
            return self._closed

    def _plugin_for(self, url: SecretStr) -> Any:
        with self._cond:
            plugin = self._plugin
        if plugin is None:
            plugin = _apprise().Apprise.instantiate(url.get_secret_value(), suppress_exceptions=True)
            if plugin is None:
                return None
            # Apprise's defaults (4 s each); a stuck target costs this lane, never a pass.
            plugin.socket_connect_timeout = self.limits.connect_timeout
            plugin.socket_read_timeout = self.limits.read_timeout
            with self._cond:
                if url is self._url:
                    self._plugin = plugin
        return plugin

    def _send(self, url: SecretStr, title: str, body: str, kind: str) -> str:
        """'' when the target took the message, else why not (never the URL)."""
        try:
            plugin = self._plugin_for(url)
            if plugin is None:
                return "not a URL Apprise supports"
            return "" if plugin.notify(body=body, title=title, notify_type=kind) else "the target did not accept it"
        except Exception as exc:  # a plugin's own failure; its text may hold the URL: only its type
            return f"{type(exc).__name__} while sending"


class Notifier:
    """Events of every pass of one front door, to its SwarmAlerts' targets."""

    def __init__(self, controller: str, metrics: Metrics | None = None, limits: Limits | None = None) -> None:
        self.controller = controller
        self.metrics = metrics
        self.limits = limits or Limits()
        self._memory: dict[str | None, Memory] = {}  # per scope (a Kubernetes namespace; None)
        self._lanes: dict[tuple[Key, int], tuple[str | None, Lane]] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        manifests: Sequence[Manifest],
        outcome: PassOutcome,
        *,
        source: str,
        scope: str | None = None,
        alerts: Sequence[Manifest] | None = None,
    ) -> list[Event]:
        """Derive this pass's events and queue them for the targets that ask for them; returns them.

        ``manifests``: the objects as the source has them now; ``alerts``: the specs whose SwarmAlerts
        are in force (default: ``manifests``); ``scope``: a Kubernetes namespace, whose alerts see
        only that namespace's passes.
        """
        with self._lock:
            events, self._memory[scope] = derive(self._memory.get(scope, Memory()), outcome, manifests, namespace=scope)
            chosen = [m for m in (manifests if alerts is None else alerts) if isinstance(m.resource, SwarmAlert)]
            lanes = self._lanes_for(scope, chosen)
        for m in chosen:
            assert isinstance(m.resource, SwarmAlert)
            wanted = selected(m.resource.spec, events)
            if not wanted:
                continue
            batch = Batch(tuple(wanted), source, outcome.revision)
            for i in range(len(m.urls)):
                lane = lanes.get((m.key, i))
                if lane is not None:
                    lane.submit(batch)
        return events

    def _lanes_for(self, scope: str | None, alerts: Sequence[Manifest]) -> dict[tuple[Key, int], Lane]:
        """A lane per target of ``alerts``; those of the scope's alerts that are gone are closed."""
        wanted: dict[tuple[Key, int], SecretStr] = {
            (m.key, i): url for m in alerts for i, url in enumerate(m.urls) if url is not None
        }
        for target, (lane_scope, lane) in list(self._lanes.items()):
            if lane_scope == scope and target not in wanted:
                del self._lanes[target]
                lane.close()
        out: dict[tuple[Key, int], Lane] = {}
        for target, url in wanted.items():
            found = self._lanes.get(target)
            if found is None:
                key, index = target
                name = f"SwarmAlert {key.namespace + '/' if key.namespace else ''}{key.name} target {index}"
                lane = Lane(f"{name} ({schema_of(url)})", url, self._count, self.limits)
                self._lanes[target] = (scope, lane)
            else:
                lane = found[1]
                lane.set_url(url)
            out[target] = lane
        return out

    def _count(self, result: str, n: int) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(self.controller, result).inc(n)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds in all), then stop every lane."""
        deadline = time.monotonic() + timeout
        with self._lock:
            lanes = [lane for _, lane in self._lanes.values()]
            self._lanes.clear()
        for lane in lanes:
            lane.close(max(0.0, deadline - time.monotonic()))
