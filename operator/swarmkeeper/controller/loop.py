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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from ..api import ObjectStatus
from ..engine.clusters import Target, connect_target, group_by_cluster
from ..engine.inventory import inventory
from ..engine.reconcile import Options, Outcome, reconcile
from ..loading import LoadResult, Manifest, SpecError
from ..swarm import labels as L
from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError
from ..swarm.observe import Key
from .engine_events import EngineEvents
from .lease_keeper import LeaseKeeper
from .metrics import HealthServer, Metrics
from .triggers import Wakeup

log = logging.getLogger(__name__)

FOLLOWUP_DELAYS = (0.1, 0.3, 0.6, 1.2, 2.5)


class Trigger(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Source(Protocol):
    """Where desired specs come from and where their status goes."""

    controller: str  # metrics label: self.name, "sync", ...

    def load(self) -> LoadResult: ...

    def publish(
        self, manifests: Sequence[Manifest], statuses: Mapping[Key, ObjectStatus], errors: Sequence[SpecError]
    ) -> None: ...

    def triggers(self, wakeup: Wakeup) -> list[Trigger]: ...

    def revision(self) -> str | None: ...


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
        self.stopping = threading.Event()
        self.last_good: list[Manifest] | None = None
        self.last_errors: list[str] = []
        self.clients: dict[str | None, EngineClient] = {}
        # The lease has its own connection: its renewals (a label update every ttl/3) are bookkeeping,
        # kept out of the reconcile's call counts, which must show zero writes when nothing changes.
        self.lease = LeaseKeeper(
            lambda: connect_target(None, [], host=options.host), options.source, self.wakeup, options.lease_ttl
        )
        self.alive_at = time.monotonic()
        self.engine_ok = False
        self.passes = 0

    # -- connections ---------------------------------------------------------------------------
    def _default_client(self) -> EngineClient:
        return self._client(None, [])

    def _client(self, cluster: str | None, manifests: Sequence[Manifest]) -> EngineClient:
        client = self.clients.get(cluster)
        if client is None:
            try:
                client = connect_target(cluster, manifests, host=self.options.host)
            except LookupError as exc:
                raise EngineError(str(exc)) from None
            self.clients[cluster] = client
        return client

    # -- health --------------------------------------------------------------------------------
    def healthy(self) -> bool:
        # The loop wakes at least every interval; far longer than that means it is stuck.
        return time.monotonic() - self.alive_at < max(60.0, 3 * self.options.interval)

    def ready(self) -> bool:
        return self.lease.held.is_set() and self.engine_ok and self.passes > 0

    # -- one pass ------------------------------------------------------------------------------
    def run_pass(self, reasons: set[str]) -> PassResult:
        """Load, reconcile, write status."""
        started = time.monotonic()
        result = self.source.load()
        errors: list[SpecError] = result.errors
        self.metrics.spec_errors.labels(self.name).set(len(errors))
        if errors:
            # The same broken file is seen by every pass until it is fixed: say it once per change.
            texts = [str(e) for e in errors]
            level = logging.DEBUG if texts == self.last_errors else logging.ERROR
            for text in texts:
                log.log(level, "invalid spec: %s", text)
            self.last_errors = texts
            if self.last_good is None:
                log.error("no valid specs yet: nothing is applied until the errors above are fixed")
        else:
            if self.last_errors:
                log.info("specs are valid again")
            self.last_errors = []
            self.last_good = result.manifests
        manifests = self.last_good or []
        statuses: dict[Key, ObjectStatus] = {}
        requeue = False
        ok = True
        targets = group_by_cluster(manifests)
        if not targets and self.last_good is not None:
            # Valid but empty specs still get a pass on the default engine: that is where
            # --prune (and its guard against mass deletion) sees that everything went away.
            targets = [Target(None, [])]
        unreachable = 0
        for target in targets:
            # Each engine on its own: one cluster being away must not stop the others converging.
            try:
                client = self._client(target.cluster, manifests)
                outcome = reconcile(
                    client,
                    target.manifests,
                    Options(
                        prune=self.options.prune,
                        force=self.options.force,
                        source=self.options.source,
                        dependency_timeout=0.0,
                        revision=self.source.revision(),
                    ),
                )
            except EngineError as exc:
                unreachable += 1
                ok = False
                requeue = True
                where = f"cluster {target.cluster}" if target.cluster else "engine"
                log.error("%s unavailable: %s; retrying", where, exc)
                self.clients.pop(target.cluster, None)
                continue
            statuses.update(outcome.statuses)
            self._report(outcome, client)
            ok = ok and outcome.ok
            requeue = requeue or any(r.deferred for r in outcome.report.results)
        self.engine_ok = unreachable == 0
        # Status goes to the objects as they are in the files now (fresh positions), the invalid ones
        # get their error; everything else keeps the status computed from the last good specs.
        current = result.manifests if errors else manifests
        try:
            self.source.publish(current, statuses, errors)
        except OSError as exc:
            log.error("cannot write status: %s", exc)
        elapsed = time.monotonic() - started
        self.metrics.reconcile_time.labels(self.name).observe(elapsed)
        self.metrics.reconcile_total.labels(self.name, "success" if ok and not errors else "error").inc()
        if not ok or errors:
            self.metrics.reconcile_errors.labels(self.name).inc()
        self.passes += 1
        log.debug("pass (%s) took %.0f ms", ",".join(sorted(reasons)) or "resync", elapsed * 1000)
        return PassResult(ok=ok and not errors, requeue=requeue)

    def _report(self, outcome: Outcome, client: EngineClient) -> None:
        for r in outcome.drift:
            fields = ", ".join(c.path for c in r.step.changes) or "the object"
            log.warning("drift corrected: %s was changed outside swarmkeeper (%s); put back", r.step.swarm_name, fields)
            self.metrics.drift_corrections.labels(self.name, r.step.key[0]).inc()
        # Each step is logged where it is carried out (engine.apply); here only what the loop adds.
        for e in outcome.plan.errors:
            log.error("%s", e.message)
        if outcome.plan.blocked:
            log.error("%s", outcome.plan.blocked)
        counts: dict[str, int] = {}
        for obj in inventory(outcome.state):
            counts[obj.kind] = counts.get(obj.kind, 0) + 1
        for kind in ("SwarmService", "SwarmNetwork", "SwarmSecret", "SwarmConfig"):
            self.metrics.managed_objects.labels(self.name, kind).set(counts.get(kind, 0))
        for (method, _), n in client.calls.items():
            self.metrics.engine_calls.labels(self.name, method).inc(n)
        client.calls.clear()

    # -- the loop ------------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        self.stopping.set()
        self.wakeup.poke("stop")

    def run(self) -> int:
        """Run until stopped (or one pass with ``once``). Returns the process exit code."""
        # Only the main thread may take signals; a controller run in a thread is stopped by its owner.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        if self.options.once:
            if not self.lease.attempt():
                log.error("another controller holds the lease for source %r; not acting", self.options.source)
                return 1
            try:
                result = self.run_pass({"once"})
            finally:
                self.lease.stop()
            return 0 if result.ok else 1
        server = None
        if self.options.metrics_addr:
            server = HealthServer(self.options.metrics_addr, self.metrics, self.healthy, self.ready)
            server.start()
            log.info("metrics and health on %s (/metrics, /healthz, /readyz)", self.options.metrics_addr)
        triggers: list[Trigger] = [*self.source.triggers(self.wakeup), EngineEvents(self._default_client, self.wakeup)]
        self.lease.start()
        for trigger in triggers:
            trigger.start()
        next_resync = time.monotonic()
        backoff, requeue_delay = 0.5, self.options.requeue
        followups: list[float] = []
        try:
            while not self.stopping.is_set():
                self.alive_at = time.monotonic()
                wake_at = min([next_resync, *followups])
                reasons, _ = self.wakeup.wait(max(0.0, wake_at - time.monotonic()))
                now = time.monotonic()
                followups = [t for t in followups if t > now]
                if "engine" in reasons:
                    # An event often comes before the swarm's own bookkeeping catches up (a container
                    # dies before its task is marked failed): look again shortly, a few times.
                    followups = sorted({*followups, *(now + d for d in FOLLOWUP_DELAYS)})
                if self.stopping.is_set():
                    break
                if not reasons:
                    reasons = {"resync"}
                if not self.lease.held.is_set():
                    next_resync = time.monotonic() + self.options.lease_ttl / 3
                    continue
                requeue = self.run_pass(reasons).requeue
                if not self.engine_ok:
                    next_resync = time.monotonic() + backoff
                    backoff = min(backoff * 2, 30.0)
                elif requeue:
                    # Work left for later (a dependency still converging): look again, less often
                    # the longer it takes, so a service that never converges does not flood the log.
                    next_resync = time.monotonic() + min(requeue_delay, self.options.interval)
                    requeue_delay = min(requeue_delay * 2, 60.0)
                else:
                    backoff, requeue_delay = 0.5, self.options.requeue
                    next_resync = time.monotonic() + self.options.interval
        finally:
            for trigger in triggers:
                trigger.stop()
            self.lease.stop()
            if server is not None:
                server.stop()
        log.info("stopped")
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s; finishing the current pass and stopping", signal.Signals(signum).name)
        self.stop()
