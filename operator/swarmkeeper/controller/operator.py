"""``swarmkeeper operator``: swarmkeeper's custom resources in Kubernetes drive the swarm.

kopf delivers the events; every handler is thin and ends in the same place: a pass over the whole
namespace of the object that changed (``namespace_pass``). kopf indexes keep every CR body in
memory, so a pass reads no list from the API server, and kopf fills them completely before any
handler runs, so the first passes after a start already see every object. Passes of one namespace
never overlap, and requests that arrive while one runs become a single next pass. Handlers never
reconcile one object alone, never return a value (kopf would store it in the status) and never
block the event loop: passes run in worker threads.

Triggers: a CR created, updated or resumed; the resync timer of any CR; a change of a Secret or
ConfigMap that a SwarmSecret/SwarmConfig refers to; the Docker events stream (a task died, someone
changed a service by hand); and, in a namespace whose services follow a tag, the image interval,
after which the registries are asked again (a tag pushed again rolls out). Deleting a CR goes
through a finalizer that removes its swarm objects (unless it carries ``swarmkeeper.io/orphan: "true"``).

One operator acts at a time: it holds a ``coordination.k8s.io`` Lease (``kube_lease``) before it
starts kopf, and exits (non-zero, so its Deployment restarts it as a standby) if another one takes
it. An API server that stops answering (a control-plane restart) is not that: past the renewal
deadline the operator stops acting, since another replica may then hold the Lease, but it stays up
with kopf's watches retrying, and acts again once it has renewed the Lease. kopf's own peering is
off: with equal priorities it lets two operators act at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from prometheus_client import Gauge

from ..engine.images import RESOLVE_INTERVAL
from ..engine.run import Clients
from ..sources.kubernetes import (
    BOOKKEEPING_PREFIX,
    FINALIZER,
    GROUP,
    PLURALS,
    VERSION,
    CustomResource,
    KubeApi,
    referenced_values,
)
from ..swarm.errors import EngineError
from ..swarm.membership import NotAManager, require_manager
from .engine_events import EngineEvents
from .kube_lease import KubeLease
from .loop import FOLLOWUP_DELAYS
from .metrics import HealthServer, Metrics
from .namespace_pass import Body, NamespaceReconciler
from .triggers import Wakeup
from .ui import start_dashboard

log = logging.getLogger(__name__)

CONTROLLER = "operator"
DELETE_RETRY = 5.0  # seconds before a failed removal (a network still in use, say) is tried again


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    host: str | None = None
    metrics_addr: str | None = None
    resync: float = 30.0
    lease_namespace: str = "default"
    lease_name: str = "swarmkeeper-operator"
    lease_ttl: float = 15.0
    identity: str = field(default_factory=lambda: default_identity())
    registry_secret: str | None = None  # each namespace's Secret (dockerconfigjson) with its registry logins
    # How often a tag's digest is asked of its registry (resolveImage: always): a tag pushed again
    # is rolled out within this time.
    image_interval: float = RESOLVE_INTERVAL
    # The read-only dashboard (controller/ui): HOST:PORT, and its token (empty: loopback only).
    ui_addr: str | None = None
    ui_token: bytes = field(default=b"", repr=False)


def default_identity() -> str:
    """The Lease holder's name: the pod's (from the downward API) or host and pid, made unique."""
    base = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}-{uuid.uuid4().hex[:6]}"


@dataclass
class _Namespace:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requested: int = 0  # requests made
    served: int = 0  # requests covered by a finished pass
    last_pass: float = 0.0
    requeue_delay: float = 2.0
    requeue: asyncio.TimerHandle | None = None
    # When a pass asks the registries again about the tags its services follow (inf: none followed,
    # or a pass for that is under way).
    next_images: float = float("inf")


class Operator:
    """The namespaces' pass scheduler, fed by kopf's handlers and by Docker events."""

    def __init__(self, options: OperatorOptions, reconciler: NamespaceReconciler) -> None:
        self.options = options
        self.reconciler = reconciler
        self.indices: dict[str, Mapping[str, Iterable[Body]]] = {}
        self.started = False
        self.acting = True  # False while the Lease cannot be renewed: no pass runs, nothing is removed
        self.stop_flag: asyncio.Event | None = None  # set to stop kopf
        self._namespaces: dict[str, _Namespace] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what kopf knows -----------------------------------------------------------------------
    def bodies(self, namespace: str) -> list[Body]:
        """Every CR of the namespace, as last seen (a snapshot: passes run in other threads)."""
        return [body for index in self.indices.values() for body in index.get(namespace, ())]

    def namespaces(self) -> set[str]:
        return {str(ns) for index in self.indices.values() for ns in index}

    def refers_to(self, namespace: str, kind: str, name: str) -> bool:
        return (kind, name) in referenced_values(self.bodies(namespace))

    # -- passes --------------------------------------------------------------------------------
    async def reconcile(self, namespace: str, reason: str) -> None:
        """Run a pass over ``namespace`` that starts after this call; returns when it is done."""
        state = self._namespaces.setdefault(namespace, _Namespace())
        state.requested += 1
        ticket = state.requested
        async with state.lock:
            if state.served >= ticket:
                return  # a pass that started after this request has covered it
            if not self.acting:
                return  # resume() runs a pass over every namespace, this one included
            covered = state.requested
            bodies = self.bodies(namespace)
            state.last_pass = time.monotonic()
            log.debug("namespace %s: pass (%s)", namespace, reason)
            result = await asyncio.to_thread(self.reconciler.run, namespace, bodies)
            state.served = covered
            # The registries' answers are now at most this old; passes for other reasons in
            # between must not push the next asking back.
            now = time.monotonic()
            if not result.follows_tags:
                state.next_images = float("inf")
            elif state.next_images == float("inf") or state.next_images <= now:
                state.next_images = now + self.options.image_interval
        if result.requeue:
            # Work left for later (a dependency converging, an engine away): look again, less often
            # the longer it takes, so what never converges does not flood the log.
            self._later(namespace, state, state.requeue_delay)
            state.requeue_delay = min(state.requeue_delay * 2, 60.0)
        else:
            state.requeue_delay = 2.0

    def pause(self) -> None:
        """Stop acting (the Lease cannot be renewed); passes under way finish."""
        self.acting = False

    def resume(self) -> None:
        """Act again, starting with a pass over every namespace: triggers were dropped meanwhile."""
        self.acting = True
        for namespace in sorted(self.namespaces()):
            self._spawn(namespace, "acting again")

    def _later(self, namespace: str, state: _Namespace, delay: float) -> None:
        if state.requeue is not None:
            state.requeue.cancel()
        state.requeue = asyncio.get_running_loop().call_later(delay, self._spawn, namespace, "requeue")

    def _spawn(self, namespace: str, reason: str) -> None:
        task = asyncio.create_task(self._reconcile_logged(namespace, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resync(self, namespace: str) -> None:
        """The timer: a pass, unless one ran recently (every CR has a timer, one pass is enough)."""
        state = self._namespaces.get(namespace)
        if state is None or time.monotonic() - state.last_pass >= self.options.resync * 0.9:
            await self.reconcile(namespace, "resync")

    async def remove(self, body: Body, namespace: str) -> None:
        """The finalizer: remove the CR's swarm objects, then let the namespace converge without it."""
        cr = CustomResource.from_body(body)
        if cr.orphans:
            log.info("%s/%s/%s deleted; its swarm objects stay (orphan)", cr.kind, namespace, cr.name)
        else:
            if not self.acting:  # kopf keeps the finalizer and calls again
                raise kopf.TemporaryError("not acting: the Lease is not renewed", delay=DELETE_RETRY)
            state = self._namespaces.setdefault(namespace, _Namespace())
            async with state.lock:  # never while a pass that could still apply it runs
                error = await asyncio.to_thread(self.reconciler.delete, namespace, body, self.bodies(namespace))
            if error:
                raise kopf.TemporaryError(f"swarm objects not removed yet: {error}", delay=DELETE_RETRY)
        self.reconciler.forget(cr.uid)
        self._spawn(namespace, "deleted")

    async def follow_engine(self, wakeup: Wakeup) -> None:
        """Docker events → a pass over every namespace, plus a few follow-ups: an event often comes
        before swarm's own bookkeeping has caught up (a container dies before its task fails)."""
        followups: list[float] = []
        while True:
            wait = min([1.0, *(t - time.monotonic() for t in followups)])  # short: a stop never waits long
            reasons, _ = await asyncio.to_thread(wakeup.wait, max(0.0, wait))
            now = time.monotonic()
            due = [t for t in followups if t <= now]
            followups = [t for t in followups if t > now]
            if "engine-connected" in reasons:
                self.reconciler.engine_ok = True
            if "engine" in reasons:
                followups = sorted({*followups, *(now + d for d in FOLLOWUP_DELAYS)})
            if (reasons or due) and self.started:
                await asyncio.gather(*(self._reconcile_logged(ns, "engine") for ns in sorted(self.namespaces())))

    async def follow_images(self) -> None:
        """A pass over each namespace that follows tags once its registries' answers are
        ``image_interval`` old: that pass asks them again and rolls out a tag pushed again."""
        while True:
            now = time.monotonic()
            if self.started and self.acting:
                for namespace, state in list(self._namespaces.items()):
                    if state.next_images <= now:
                        state.next_images = float("inf")  # until that pass has run and sets the next
                        self._spawn(namespace, "image interval")
            soonest = min((s.next_images for s in self._namespaces.values()), default=float("inf"))
            await asyncio.sleep(min(1.0, max(0.05, soonest - time.monotonic())))

    async def _reconcile_logged(self, namespace: str, reason: str) -> None:
        # Outside kopf nothing would retry or report a failed pass; the next trigger runs another.
        try:
            await self.reconcile(namespace, reason)
        except Exception:
            log.exception("namespace %s: pass failed", namespace)


# --- kopf ---------------------------------------------------------------------------------------


def build_settings(identity: str) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    # kopf's bookkeeping goes into annotations of our own prefix; the status subresource is ours
    # alone (and its schema would prune kopf's fields anyway).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=BOOKKEEPING_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=BOOKKEEPING_PREFIX)
    # Events are ours (Applied, DriftCorrected, ApplyFailed); kopf reports only its failures.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "swarmkeeper"
    settings.posting.reporting_instance = identity
    # No cluster-wide listing of CRDs and namespaces: the ServiceAccount need not be allowed it.
    settings.scanning.disabled = True
    settings.peering.standalone = True  # the Lease decides who acts
    settings.watching.server_timeout = 300  # re-open long watches regularly, as client-go does
    return settings


def build_registry(op: Operator) -> kopf.OperatorRegistry:
    """The handlers, bound to ``op``; none returns a value (kopf would store it in the status)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(**kwargs: Any) -> None:
        # kopf hands every index to every handler; keep them for the passes and the engine trigger.
        op.indices = {plural: kwargs[plural] for plural in PLURALS.values()}
        op.started = True

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        # Stopped by a signal, kopf would wait 5 s for the waiter of its (unset) stop flag.
        if op.stop_flag is not None:
            op.stop_flag.set()

    # kopf passes every handler a long list of keyword arguments; each takes only what it needs.
    def index(**kw: Any) -> dict[str, dict[str, Any]]:
        return {kw["namespace"]: _plain(kw["body"])}

    async def changed(**kw: Any) -> None:
        await op.reconcile(kw["namespace"], str(kw.get("reason") or "change"))

    async def timer(**kw: Any) -> None:
        await op.resync(kw["namespace"])

    async def deleted(**kw: Any) -> None:
        await op.remove(_plain(kw["body"]), kw["namespace"])

    for plural in PLURALS.values():
        resource = (GROUP, VERSION, plural)
        kopf.index(*resource, id=plural, registry=registry)(index)
        kopf.on.resume(*resource, id="reconcile-on-resume", registry=registry)(changed)
        kopf.on.create(*resource, id="reconcile-on-create", registry=registry)(changed)
        kopf.on.update(*resource, id="reconcile-on-update", registry=registry)(changed)
        kopf.on.delete(*resource, id="remove-swarm-objects", registry=registry)(deleted)
        kopf.timer(
            *resource, id="resync", interval=op.options.resync, initial_delay=op.options.resync, registry=registry
        )(timer)

    # Secrets and ConfigMaps only trigger: their values are read by the pass, and only when referenced.
    for kind, plural in (("Secret", "secrets"), ("ConfigMap", "configmaps")):
        referenced, value_changed = _value_triggers(op, kind)
        kopf.on.event("v1", plural, id="trigger-referrers", when=referenced, registry=registry)(value_changed)
    return registry


def _value_triggers(op: Operator, kind: str) -> tuple[Callable[..., bool], Callable[..., Awaitable[None]]]:
    """A filter (the Secret/ConfigMap is referenced) and a handler (reconcile its namespace)."""

    def referenced(**kw: Any) -> bool:
        return op.refers_to(kw["namespace"], kind, kw["name"])

    async def value_changed(**kw: Any) -> None:
        await op.reconcile(kw["namespace"], f"{kind} changed")

    return referenced, value_changed


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A detached copy of a body: passes read it in another thread while kopf moves on."""
    return copy.deepcopy(dict(body))


# --- the process --------------------------------------------------------------------------------


class _Health:
    def __init__(self, lease: KubeLease, op: Operator, reconciler: NamespaceReconciler) -> None:
        self.lease, self.op, self.reconciler = lease, op, reconciler
        self.alive_at = time.monotonic()
        self.leading = False

    def healthy(self) -> bool:
        return time.monotonic() - self.alive_at < 60.0  # the event loop is stuck otherwise

    def ready(self) -> bool:
        """The API server answers; and when leading, kopf runs and the engine answers. A standby is
        ready too: readiness is about serving, and which replica acts is the Lease's business."""
        if not self.lease.api_ok:
            return False
        return not self.leading or (self.op.started and self.reconciler.engine_ok)


def _load_kube_config() -> None:
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


async def serve(options: OperatorOptions) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until the Lease is lost (exit 1)."""
    from kubernetes import client

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        _load_kube_config()
        kube = KubeApi(client.ApiClient(), instance=options.identity)
        missing = await asyncio.to_thread(kube.missing_kinds)
    except Exception as exc:  # no configuration, an unreachable or refusing API server
        log.error("cannot use the Kubernetes API server: %s", exc)
        return 1
    if missing:
        log.error(
            "the API server does not serve %s (group %s/%s): install the CRDs first (kubectl apply -f crds/)",
            ", ".join(missing),
            GROUP,
            VERSION,
        )
        return 1
    metrics = Metrics(CONTROLLER)
    leader = Gauge(
        "swarmkeeper_leader",
        "1 while this operator holds the Lease and acts.",
        ["controller"],
        registry=metrics.registry,
    )
    reconciler = NamespaceReconciler(
        kube, metrics, options.host, options.registry_secret, image_interval=options.image_interval
    )
    op = Operator(options, reconciler)
    lease = KubeLease(kube.custom, options.lease_namespace, options.lease_name, options.identity, options.lease_ttl)
    health = _Health(lease, op, reconciler)
    if not await asyncio.to_thread(_engine_check, options.host, reconciler):
        return 1
    stops = _start_servers(options, metrics, health, reconciler)
    if stops is None:
        return 2

    async def heartbeat() -> None:
        while True:
            health.alive_at = time.monotonic()
            await asyncio.sleep(5)

    def leading(on: bool) -> None:
        health.leading = on
        leader.labels(CONTROLLER).set(1 if on else 0)

    beating = asyncio.create_task(heartbeat())
    try:
        if not await _wait_for_lease(lease, stop):
            return 0
        log.info("holding the lease %s/%s as %s; acting", options.lease_namespace, options.lease_name, lease.identity)
        leading(True)
        return await _act(options, op, lease, stop, leading)
    finally:
        leading(False)
        beating.cancel()
        for stop_serving in stops:
            stop_serving()
        await asyncio.to_thread(reconciler.notifier.close)


def _start_servers(
    options: OperatorOptions, metrics: Metrics, health: _Health, reconciler: NamespaceReconciler
) -> list[Callable[[], None]] | None:
    """The metrics and health server and the dashboard, as asked: how to stop them (None: the
    dashboard's address cannot be had, and nothing runs)."""
    stops: list[Callable[[], None]] = []
    if options.metrics_addr:
        server = HealthServer(options.metrics_addr, metrics, health.healthy, health.ready)
        server.start()
        stops.append(server.stop)
        log.info("metrics and health on %s (/metrics, /healthz, /readyz)", options.metrics_addr)
    if options.ui_addr:
        dashboard = start_dashboard(options.ui_addr, options.ui_token, source=CONTROLLER, host=options.host)
        if dashboard is None:
            for stop in stops:
                stop()
            return None
        reconciler.dashboard = dashboard
        stops.append(dashboard.stop)
    return stops


def _engine_check(host: str | None, reconciler: NamespaceReconciler) -> bool:
    """False when the default engine answers but cannot host swarm objects; an engine that does
    not answer yet is waited for (the passes retry)."""
    try:
        require_manager(Clients(host).get(None))
    except NotAManager as exc:
        log.error("%s", exc)
        return False
    except EngineError as exc:
        log.warning("the Docker engine does not answer yet (%s); retrying in every pass", exc)
        return True
    reconciler.engine_ok = True
    return True


async def _wait_for_lease(lease: KubeLease, stop: asyncio.Event) -> bool:
    """Stand by until the Lease is ours (True) or we are told to stop (False)."""
    reported: str | None = None
    while not stop.is_set():
        if await asyncio.to_thread(lease.attempt):
            return True
        if lease.holder and lease.holder != reported:
            log.warning(
                "another operator (%s) holds the lease %s/%s; standing by", lease.holder, lease.namespace, lease.name
            )
            reported = lease.holder
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), lease.retry_period)
    return False


async def _act(
    options: OperatorOptions, op: Operator, lease: KubeLease, stop: asyncio.Event, leading: Callable[[bool], None]
) -> int:
    lost = False
    op.stop_flag = stop  # kopf's stop flag: set when the Lease is lost (and by kopf's cleanup)

    def pause() -> None:
        # Past the renewal deadline another replica may take the Lease, so stop acting. But exiting
        # would gain nothing: a restarted operator needs the API server just as much.
        if op.acting:
            log.warning(
                "the lease %s/%s was not renewed in time (the API server does not answer); not acting until it is",
                lease.namespace,
                lease.name,
            )
            leading(False)
            op.pause()

    async def keep() -> None:
        nonlocal lost
        while True:
            await asyncio.sleep(lease.retry_period)
            attempt = asyncio.ensure_future(asyncio.to_thread(lease.attempt))
            # An API server that stalls holds the attempt: stop acting at the deadline, not when it ends.
            done, _ = await asyncio.wait({attempt}, timeout=max(0.0, lease.held_until - time.monotonic()))
            if not done:
                pause()
            if await attempt:
                if not op.acting:
                    log.info("renewed the lease %s/%s; acting again", lease.namespace, lease.name)
                    leading(True)
                    op.resume()
            elif lease.api_ok and lease.holder != lease.identity:  # the API server says another holds it
                log.error("lost the lease %s/%s; stopping so that only one operator acts", lease.namespace, lease.name)
                lost = True
                stop.set()
                return
            else:
                pause()

    wakeup = Wakeup()
    events = EngineEvents(lambda: Clients(options.host).get(None), wakeup)
    # Created before kopf starts, so that kopf, when it stops, neither waits for nor cancels them.
    keeper = asyncio.create_task(keep())
    follower = asyncio.create_task(op.follow_engine(wakeup))
    images = asyncio.create_task(op.follow_images())
    events.start()
    try:
        if not stop.is_set():  # a signal that came while standing by
            await kopf.operator(
                registry=build_registry(op),
                settings=build_settings(options.identity),
                namespaces=list(options.namespaces),
                clusterwide=not options.namespaces,
                standalone=True,
                stop_flag=stop,
            )
    finally:
        keeper.cancel()
        follower.cancel()
        images.cancel()
        events.stop()
    if lost:
        return 1
    await asyncio.to_thread(lease.release)
    log.info("stopped")
    return 0


def run_operator(options: OperatorOptions) -> int:
    return asyncio.run(serve(options))
