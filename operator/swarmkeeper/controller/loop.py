"""The reconcile loop every long-running front door shares (watch, sync).

One loop, several triggers (the source's own — file changes, webhooks, polls — plus Docker events
and a periodic resync), one kind of pass: load all specs from the source, reconcile all of them
from the swarm's current state, hand status back to the source. The loop holds a lease in the
swarm, so a second controller for the same source stands by instead of fighting.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from ..engine.images import RESOLVE_INTERVAL, follows_tags
from ..engine.run import Clients, Options, PassOutcome, run_pass
from ..loading import LoadResult, Manifest
from ..swarm import labels as L
from ..swarm.connect import EngineClient
from .engine_events import CLUSTER_EVENT, ClusterEvents, EngineEvents
from .lease_keeper import LeaseKeeper
from .metrics import HealthServer, Metrics
from .notify import Notifier
from .once import LastingStates
from .registry_hook import REASON as REGISTRY
from .registry_hook import RegistryHook
from .triggers import Wakeup
from .ui import Dashboard, start_dashboard

log = logging.getLogger(__name__)

FOLLOWUP_DELAYS = (0.1, 0.3, 0.6, 1.2, 2.5)


class Trigger(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Source(Protocol):
    """Where desired specs come from and where their status goes."""

    controller: str  # metrics label: self.name, "sync", ...

    def load(self) -> LoadResult: ...

    def publish(self, manifests: Sequence[Manifest], outcome: PassOutcome) -> None:
        """Status back to the source: ``manifests`` are the objects as the source has them now (an
        invalid one is among them, with its error in ``outcome.spec_errors``)."""

    def triggers(self, wakeup: Wakeup) -> list[Trigger]: ...

    def revision(self) -> str | None: ...

    def describe(self) -> dict[str, Any]:
        """What the dashboard shows of the source itself (where specs come from, revisions); no secret."""
        ...


@dataclass(frozen=True)
class LoopOptions:
    interval: float = 300.0
    prune: bool = False
    force: bool = False
    once: bool = False
    source: str = L.DEFAULT_SOURCE
    host: str | None = None
    metrics_addr: str | None = None
    lease_ttl: float = 15.0
    requeue: float = 2.0  # a pass that left work for later (dependencies converging) runs again this soon
    # How often a tag's digest is asked of its registry (resolveImage: always): a tag pushed again
    # is rolled out within this time.
    image_interval: float = RESOLVE_INTERVAL
    # A registry's push notifications (registry_hook.py): HOST:PORT to listen on, and the token.
    registry_hook_addr: str | None = None
    registry_hook_token: bytes = field(default=b"", repr=False)
    # The read-only dashboard (controller/ui): HOST:PORT, and its token (empty: loopback only).
    ui_addr: str | None = None
    ui_token: bytes = field(default=b"", repr=False)
    # Plan and show, never change (``swarmkeeper ui``): no lease, no status written, nothing told.
    read_only: bool = False


@dataclass(frozen=True)
class PassResult:
    ok: bool  # specs valid and every change applied
    requeue: bool  # work was left for a later pass (dependencies converging, engine away)


class Controller:
    def __init__(self, source: Source, options: LoopOptions) -> None:
        self.options = options
        self.source = source
        self.name = source.controller
        self.wakeup = Wakeup()
        self.metrics = Metrics(self.name)
        self.notifier = Notifier(self.name, self.metrics)
        self.stopping = threading.Event()
        self.last_good: list[Manifest] | None = None
        self.last_errors: list[str] = []
        self.clients = Clients(options.host)
        self.waiting = LastingStates(log)
        self.problems = LastingStates(log)
        self.away = LastingStates(log)
        # The lease has its own connection: its renewals (a label update every ttl/3) are bookkeeping,
        # kept out of the reconcile's call counts, which must show zero writes when nothing changes.
        self.lease = LeaseKeeper(
            lambda: Clients(options.host).get(None), options.source, self.wakeup, options.lease_ttl
        )
        self.cluster_events = ClusterEvents(self.wakeup)  # follows the clusters the specs name (run only)
        self.alive_at = time.monotonic()
        self.engine_ok = False
        self.passes = 0
        self.dashboard: Dashboard | None = None

    # -- connections ---------------------------------------------------------------------------
    def _default_client(self) -> EngineClient:
        return self.clients.get(None)

    # -- health --------------------------------------------------------------------------------
    def healthy(self) -> bool:
        # The loop wakes at least every interval; far longer than that means it is stuck.
        return time.monotonic() - self.alive_at < max(60.0, 3 * self.options.interval)

    def ready(self) -> bool:
        return (self.options.read_only or self.lease.held.is_set()) and self.engine_ok and self.passes > 0

    # -- one pass ------------------------------------------------------------------------------
    def run_pass(self, reasons: set[str]) -> PassResult:
        """Load, reconcile, write status."""
        started = time.monotonic()
        result = self.source.load()
        errors = result.errors
        if errors:
            # The same broken file is seen by every pass until it is fixed: say it once per change.
            texts = [str(e) for e in errors]
            level = logging.DEBUG if texts == self.last_errors else logging.ERROR
            for text in texts:
                log.log(level, "invalid spec: %s", text)
            self.last_errors = texts
            if self.last_good is None:
                log.log(level, "no valid specs yet: nothing is applied until the errors above are fixed")
        else:
            if self.last_errors:
                log.info("specs are valid again")
            self.last_errors = []
            self.last_good = result.manifests
        if self.last_good is None:
            outcome = PassOutcome(spec_errors=list(errors))
        else:
            options = Options(
                prune=self.options.prune,
                force=self.options.force,
                source=self.options.source,
                dependency_timeout=0.0,
                dry_run=self.options.read_only,
                revision=self.source.revision(),
                # A registry said a tag was pushed: ask again now, however recent the last answer.
                image_interval=0.0 if REGISTRY in reasons else self.options.image_interval,
            )
            outcome = run_pass(self.last_good, self.clients, options, spec_errors=errors)
            self.cluster_events.follow(self.last_good)
        self._report(outcome)
        self.engine_ok = outcome.engine_ok
        # Status goes to the objects as they are in the files now (fresh positions), the invalid ones
        # get their error; everything else keeps the status computed from the last good specs.
        published = result.manifests if errors else (self.last_good or [])
        if not self.options.read_only:
            try:
                self.source.publish(published, outcome)
            except OSError as exc:
                log.error("cannot write status: %s", exc)
            # Like the rest of the specs, an invalid edit leaves the last good alerts in force.
            alerts = self.last_good if self.last_good is not None else published
            self.notifier.observe(published, outcome, source=self.options.source, alerts=alerts)  # never waits
        outcome.duration = time.monotonic() - started
        if self.dashboard is not None:
            self.dashboard.publish(published, outcome)  # never waits
        self.metrics.record_pass(outcome, self.clients.take_calls())
        self.passes += 1
        log.debug("pass (%s) took %.0f ms", ",".join(sorted(reasons)) or "resync", outcome.duration * 1000)
        return PassResult(ok=outcome.ok, requeue=outcome.requeue)

    def _report(self, outcome: PassOutcome) -> None:
        """What the loop logs of a pass; each step is logged where it is carried out (engine.apply).
        Lasting states (an object waiting, an engine away, a refused plan) are logged when they
        start, change and end."""
        for c in outcome.drift:
            log.warning(
                "drift corrected: %s was changed outside swarmkeeper (%s); put back",
                c.swarm_name,
                ", ".join(c.fields) or "the object",
            )
        self.away.update(
            {t.where: t.error for t in outcome.targets if t.error is not None},
            start="%s unavailable: %s; retrying",
            end="%s reachable again",
            level=logging.ERROR,
        )
        self.waiting.update(
            {str(k): why for k, why in outcome.waiting.items()},
            start="%s: %s",
            end="%s: no longer waits",
            level=logging.INFO,
        )
        problems = {m: "" for m in [*outcome.plan_errors, *outcome.blocked]}
        problems.update({f"{k}: {why}": "" for k, why in outcome.held.items()})
        self.problems.update(problems, start="%s%s", end="resolved: %s", level=logging.ERROR)

    # -- the loop ------------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        self.stopping.set()
        self.wakeup.poke("stop")

    def run(self) -> int:
        """Run until stopped (or one pass with ``once``). Returns the process exit code."""
        self._take_signals()
        if self.options.once:
            return self._run_once()
        server = self._start_health_server()
        if self.options.ui_addr:
            self.dashboard = start_dashboard(
                self.options.ui_addr,
                self.options.ui_token,
                source=self.options.source,
                host=self.options.host,
                read_only=self.options.read_only,
                describe=self.source.describe,
            )
            if self.dashboard is None:
                if server is not None:
                    server.stop()
                return 2
        triggers: list[Trigger] = [*self.source.triggers(self.wakeup), EngineEvents(self._default_client, self.wakeup)]
        if self.options.registry_hook_addr:
            triggers.append(
                RegistryHook(self.options.registry_hook_addr, self.options.registry_hook_token, self.wakeup)
            )
            log.info("registry notifications on http://%s/registry", self.options.registry_hook_addr)
        if not self.options.read_only:
            self.lease.start()
        for trigger in triggers:
            trigger.start()
        self.cluster_events.start()
        try:
            self._loop()
        finally:
            self.cluster_events.stop()
            for trigger in triggers:
                trigger.stop()
            if not self.options.read_only:
                self.lease.stop()
            if server is not None:
                server.stop()
            if self.dashboard is not None:
                self.dashboard.stop()
            self.clients.close()
            self.notifier.close()
        log.info("stopped")
        return 0

    def _take_signals(self) -> None:
        # Only the main thread may take signals; a controller run in a thread is stopped by its owner.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)

    def _run_once(self) -> int:
        """One pass, if the lease can be had at once."""
        if not self.lease.attempt():
            log.error("another controller holds the lease for source %r; not acting", self.options.source)
            return 1
        try:
            result = self.run_pass({"once"})
        finally:
            self.lease.stop()
            self.notifier.close()
        return 0 if result.ok else 1

    def _start_health_server(self) -> HealthServer | None:
        if not self.options.metrics_addr:
            return None
        server = HealthServer(self.options.metrics_addr, self.metrics, self.healthy, self.ready)
        server.start()
        log.info("metrics and health on %s (/metrics, /healthz, /readyz)", self.options.metrics_addr)
        return server

    def _loop(self) -> None:
        """Wait for a reason (or the next resync), run a pass, repeat until stopped."""
        pacing = _Pacing(self.options)
        while not self.stopping.is_set():
            self.alive_at = time.monotonic()
            reasons, _ = self.wakeup.wait(pacing.timeout())
            pacing.woke(reasons)
            if self.stopping.is_set():
                break
            if not reasons:
                reasons = {"resync"}
            if not self.options.read_only and not self.lease.held.is_set():
                pacing.standing_by()
                continue
            requeue = self.run_pass(reasons).requeue
            pacing.passed(self.engine_ok, requeue, follow_tags=follows_tags(self.last_good or []))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s; finishing the current pass and stopping", signal.Signals(signum).name)
        self.stop()


class _Pacing:
    """When the loop looks next: every interval, soon again after engine events, backing off while
    the engine is away or work is left for later."""

    def __init__(self, options: LoopOptions) -> None:
        self.options = options
        self.next_resync = time.monotonic()
        self.backoff, self.requeue_delay = 0.5, options.requeue
        self.followups: list[float] = []
        self.next_images = float("inf")  # when to ask registries about tags again (follow_tags)

    def timeout(self) -> float:
        wake_at = min([self.next_resync, self.next_images, *self.followups])
        return max(0.0, wake_at - time.monotonic())

    def woke(self, reasons: set[str]) -> None:
        now = time.monotonic()
        self.followups = [t for t in self.followups if t > now]
        if any(r == "engine" or r.startswith(CLUSTER_EVENT) for r in reasons):
            # An event often comes before the swarm's own bookkeeping catches up (a container
            # dies before its task is marked failed): look again shortly, a few times.
            self.followups = sorted({*self.followups, *(now + d for d in FOLLOWUP_DELAYS)})

    def standing_by(self) -> None:
        """Another controller holds the lease: look again before it would expire."""
        self.next_resync = time.monotonic() + self.options.lease_ttl / 3

    def passed(self, engine_ok: bool, requeue: bool, *, follow_tags: bool = False) -> None:
        # A pass asks a registry once its last answer is image_interval old: wake for that then. Passes
        # for other reasons in between must not push that moment back.
        now = time.monotonic()
        if not follow_tags:
            self.next_images = float("inf")
        elif self.next_images <= now or self.next_images == float("inf"):
            self.next_images = now + self.options.image_interval
        if not engine_ok:
            self.next_resync = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, 30.0)
        elif requeue:
            # Work left for later (a dependency still converging): look again, less often
            # the longer it takes, so a service that never converges does not flood the log.
            self.next_resync = time.monotonic() + min(self.requeue_delay, self.options.interval)
            self.requeue_delay = min(self.requeue_delay * 2, 60.0)
        else:
            self.backoff, self.requeue_delay = 0.5, self.options.requeue
            self.next_resync = time.monotonic() + self.options.interval
