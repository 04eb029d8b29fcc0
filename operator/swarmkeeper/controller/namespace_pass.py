"""One pass over one Kubernetes namespace: its custom resources → the engine → status and Events.

Every operator trigger ends here (a CR created, changed or resumed, the resync timer, a referenced
Secret changed, a Docker event). Level-triggered: a pass starts from all of the namespace's CRs and
the swarm as it is now, never from what woke it. The namespace is its own ownership source
(``k8s.<namespace>``), so namespaces never touch each other's objects.

It blocks on Docker and on the API server: the operator runs it in a worker thread, and never two
passes of one namespace at once. It must not know about kopf; it only gets CR bodies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api import SwarmCluster
from ..engine.apply import StepResult, apply_plan
from ..engine.clusters import connect_target, group_by_cluster
from ..engine.plan import make_delete_plan
from ..engine.reconcile import Options, Outcome, reconcile
from ..engine.status import merge_status
from ..loading import Manifest
from ..sources.kubernetes import (
    CustomResource,
    KubeApi,
    NamespaceSpecs,
    load_namespace,
    merge_patch,
    problem_status,
    source_name,
    to_manifest,
)
from ..swarm import labels as L
from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError, call
from ..swarm.observe import Key, SwarmState, observe
from .metrics import Metrics

log = logging.getLogger(__name__)

Body = Mapping[str, Any]
_SWARM_KINDS = ("SwarmService", "SwarmNetwork", "SwarmSecret", "SwarmConfig")


@dataclass
class PassResult:
    engine_ok: bool = True
    requeue: bool = False  # work left for a later pass (a dependency still converging, an engine away)
    changed: int = 0


@dataclass
class _Memory:
    """What the operator last told the API server about one CR (by uid), so quiet passes write nothing."""

    status: dict[str, Any] | None = None
    failure: str | None = None  # the last Warning posted, so a lasting failure is reported once


class NamespaceReconciler:
    def __init__(self, kube: KubeApi, metrics: Metrics, host: str | None = None) -> None:
        self.kube = kube
        self.metrics = metrics
        self.host = host
        self._clients: dict[tuple[str, str | None, str], EngineClient] = {}
        self._memory: dict[str, _Memory] = {}
        self._owned: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()  # for the shared dicts above; passes of different namespaces overlap
        self.engine_ok = False

    # -- connections ---------------------------------------------------------------------------
    def _client(self, namespace: str, cluster: str | None, manifests: Sequence[Manifest]) -> EngineClient:
        """One client per namespace and engine: a namespace's pass is the only user of its clients."""
        endpoint = ""
        for m in manifests:
            if isinstance(m.resource, SwarmCluster) and m.name == cluster:
                endpoint = m.resource.spec.engine.model_dump_json()
        key = (namespace, cluster, endpoint)
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            try:
                client = call(lambda: connect_target(cluster, manifests, host=self.host))
            except LookupError as exc:
                raise EngineError(str(exc)) from None
            with self._lock:
                self._clients[key] = client
        return client

    def _drop_clients(self, namespace: str) -> None:
        with self._lock:
            for key in [k for k in self._clients if k[0] == namespace]:
                self._clients.pop(key).close()

    def _memory_of(self, cr: CustomResource) -> _Memory:
        with self._lock:
            return self._memory.setdefault(cr.uid, _Memory())

    def forget(self, uid: str) -> None:
        with self._lock:
            self._memory.pop(uid, None)

    # -- a pass --------------------------------------------------------------------------------
    def run(self, namespace: str, bodies: Sequence[Body]) -> PassResult:
        """Reconcile every CR of ``namespace`` (``bodies``: all of them, as the API server has them)."""
        started = time.monotonic()
        specs = load_namespace(bodies, self.kube.read_value)
        result = PassResult()
        cluster_errors: dict[str | None, str | None] = {}
        published: set[Key] = set()  # CRs whose status an outcome gave (a SwarmCluster with nodes, too)
        for target in group_by_cluster(specs.manifests):
            try:
                client = self._client(namespace, target.cluster, specs.manifests)
                outcome = reconcile(
                    client,
                    target.manifests,
                    Options(source=source_name(namespace), dependency_timeout=0.0),
                )
            except EngineError as exc:
                log.error("namespace %s: engine %s unavailable: %s", namespace, target.cluster or "(default)", exc)
                cluster_errors[target.cluster] = str(exc)
                result.engine_ok = False
                result.requeue = True
                self._drop_clients(namespace)
                continue
            cluster_errors[target.cluster] = None
            self._publish_outcome(namespace, outcome, specs)
            published |= set(outcome.statuses)
            self._count(namespace, outcome, client)
            result.requeue = result.requeue or any(r.deferred for r in outcome.report.results)
            result.changed += len(outcome.changed)
        if None in cluster_errors:  # readiness follows the default engine
            self.engine_ok = cluster_errors[None] is None
        self._publish_problems(specs)
        self._publish_clusters(specs, cluster_errors, published)
        ok = result.engine_ok and not specs.problems
        elapsed = time.monotonic() - started
        self.metrics.reconcile_time.labels(self.metrics.controller).observe(elapsed)
        self.metrics.reconcile_total.labels(self.metrics.controller, "success" if ok else "error").inc()
        if not ok:
            self.metrics.reconcile_errors.labels(self.metrics.controller).inc()
        self.metrics.spec_errors.labels(self.metrics.controller).set(len(specs.problems))
        log.debug("namespace %s: pass took %.0f ms, %d change(s)", namespace, elapsed * 1000, result.changed)
        return result

    def _publish_outcome(self, namespace: str, outcome: Outcome, specs: NamespaceSpecs) -> None:
        for key, status in outcome.statuses.items():
            cr = specs.resources.get(key)
            if cr is not None:
                old = self._status_of(cr)
                self._write_status(cr, old, merge_status(old, status))
        for r in outcome.report.results:
            cr = specs.resources.get(r.step.key)
            if cr is not None:
                self._event_for_step(cr, r)
        for e in outcome.plan.errors:
            cr = specs.resources.get(e.key) if e.key is not None else None
            if cr is not None:
                self._warn_once(cr, "ApplyFailed", e.message)
        failed = outcome.errors
        for key in outcome.statuses:  # a failure that is over is reported again if it comes back
            cr = specs.resources.get(key)
            if cr is not None and key not in failed:
                self._memory_of(cr).failure = None

    def _event_for_step(self, cr: CustomResource, r: StepResult) -> None:
        step = r.step
        if r.deferred or step.reason in ("superseded", "pruned"):
            return
        if not r.ok:
            if not r.skipped:
                self._warn_once(cr, "ApplyFailed", f"{step.action} {step.swarm_name} failed: {r.error}")
            return
        fields = ", ".join(c.path for c in step.changes)
        if step.reason == "drift":
            message = f"{step.swarm_name} was changed outside swarmkeeper and put back: {fields or 'the object'}"
            self.kube.post_event(cr, "Warning", "DriftCorrected", message)
            return
        verb = {"create": "created", "recreate": "recreated", "update": "updated"}.get(step.action, step.action)
        message = f"{verb} {step.swarm_name}" + (f" ({fields})" if fields else "")
        self.kube.post_event(cr, "Normal", "Applied", message)

    def _warn_once(self, cr: CustomResource, reason: str, message: str) -> None:
        memory = self._memory_of(cr)
        if memory.failure != message:  # logged and posted when it starts or changes, not every pass
            memory.failure = message
            log.error("%s/%s/%s: %s: %s", cr.kind, cr.namespace, cr.name, reason, message)
            self.kube.post_event(cr, "Warning", reason, message)

    def _publish_problems(self, specs: NamespaceSpecs) -> None:
        for key, problem in specs.problems.items():
            cr = specs.resources[key]
            old = self._status_of(cr)
            self._write_status(cr, old, problem_status(old, problem, cr.generation))
            self._warn_once(cr, problem.reason, problem.message)

    def _publish_clusters(
        self, specs: NamespaceSpecs, errors: Mapping[str | None, str | None], published: set[Key]
    ) -> None:
        """A SwarmCluster that only names an engine: Ready says whether that engine answered."""
        for key, cr in specs.resources.items():
            if cr.kind != "SwarmCluster" or key in specs.problems or key in published:
                continue
            if cr.name not in errors:
                ready = ("True", "Configured", "no object uses this cluster")
            elif errors[cr.name] is None:
                ready = ("True", "Connected", "")
            else:
                ready = ("False", "EngineUnavailable", str(errors[cr.name]))
            old = self._status_of(cr)
            self._write_status(cr, old, _cluster_status(old, ready, cr.generation))

    def _status_of(self, cr: CustomResource) -> dict[str, Any]:
        """The CR's status as last written by this process, else as the API server sent it.

        The operator is the status' only writer, so what it wrote is newer than a body that may
        not have caught up with its last patch yet.
        """
        memory = self._memory_of(cr)
        return dict(memory.status if memory.status is not None else cr.status or {})

    def _write_status(self, cr: CustomResource, old: Mapping[str, Any], new: dict[str, Any]) -> None:
        """Merge-patch the CR's status subresource from ``old`` to ``new``, unless that changes nothing."""
        memory = self._memory_of(cr)
        patch = merge_patch(old, new)
        if not patch:
            memory.status = new
            return
        try:
            if self.kube.patch_status(cr, patch):
                memory.status = new
        except Exception as exc:  # the next pass tries again; one CR must not stop the others
            memory.status = None
            log.warning("status of %s/%s/%s not written: %s", cr.kind, cr.namespace, cr.name, _reason(exc))

    def _count(self, namespace: str, outcome: Outcome, client: EngineClient) -> None:
        for r in outcome.drift:
            self.metrics.drift_corrections.labels(self.metrics.controller, r.step.key[0]).inc()
        owned = Counter(key[0] for key in _owned(outcome.state, source_name(namespace)))
        with self._lock:
            self._owned[namespace] = owned
            totals = {kind: sum(c[kind] for c in self._owned.values()) for kind in _SWARM_KINDS}
        for kind, n in totals.items():
            self.metrics.managed_objects.labels(self.metrics.controller, kind).set(n)
        for (method, _), n in client.calls.items():
            self.metrics.engine_calls.labels(self.metrics.controller, method).inc(n)
        client.calls.clear()

    # -- deletion ------------------------------------------------------------------------------
    def delete(self, namespace: str, body: Body, bodies: Sequence[Body]) -> str | None:
        """Remove the swarm objects of a CR being deleted; None when none are left, else why not.

        Every other CR of the namespace that is being deleted too (and does not orphan) is removed
        in the same plan, so services go before the networks and secrets they use, whatever order
        the deletions arrive in.
        """
        cr = CustomResource.from_body(body)
        if cr.kind == "SwarmCluster":
            # Nothing of its own in the swarm (a swarm is never torn down for a deleted CR); it stays
            # while objects on it still need it to be found and removed.
            users = sorted(f"{b.get('kind')}/{b['metadata']['name']}" for b in bodies if _cluster_of(b) == cr.name)
            return f"still used by {', '.join(users)}" if users else None
        cluster = _cluster_of(body)
        going = [
            CustomResource.from_body(b)
            for b in bodies
            if (b.get("metadata") or {}).get("deletionTimestamp") is not None and _cluster_of(b) == cluster
        ]
        keys = {c.key for c in going if not c.orphans and c.kind != "SwarmCluster"} | {cr.key}
        # The SwarmCluster that says where the objects are, even if it is being deleted too.
        clusters = [m for b in bodies if b.get("kind") == "SwarmCluster" and (m := to_manifest(b)[0]) is not None]
        try:
            client = self._client(namespace, cluster, clusters)
            state = observe(client)
            owned = keys & _owned(state, source_name(namespace))
            if not owned:
                return None
            plan = make_delete_plan(state, owned)
            report = apply_plan(client, plan, state)
        except EngineError as exc:
            self._drop_clients(namespace)
            return f"engine unavailable: {exc}"
        by_key = {c.key: c for c in going}
        for r in report.results:
            other = by_key.get(r.step.key, cr if r.step.key == cr.key else None)
            if other is not None and r.ok:
                self.kube.post_event(other, "Normal", "Deleted", f"removed {r.step.swarm_name}")
        errors = [r.error or "failed" for r in report.failed if r.step.key == cr.key]
        return "; ".join(errors) or None


def _cluster_of(body: Body) -> str | None:
    cluster = (body.get("spec") or {}).get("cluster")
    return cluster if isinstance(cluster, str) else None


def _owned(state: SwarmState, source: str) -> set[Key]:
    """Keys of the managed objects in ``state`` that ``source`` applied."""

    def mine(labels: Mapping[str, str] | None) -> bool:
        return (labels or {}).get(L.SOURCE) == source

    keys = {k for k, s in state.managed_services.items() if mine(s["Spec"].get("Labels"))}
    keys |= {k for k, n in state.managed_networks.items() if mine(n.get("Labels"))}
    keys |= {k for k, vs in state.managed_values.items() if mine(vs[-1]["Spec"].get("Labels"))}
    return keys


def _cluster_status(old: Mapping[str, Any] | None, ready: tuple[str, str, str], gen: int | None) -> dict[str, Any]:
    status, reason, message = ready
    previous = next((c for c in (old or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        since = previous["lastTransitionTime"]
    else:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    condition = {"type": "Ready", "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    if gen is not None:
        condition["observedGeneration"] = gen
    out: dict[str, Any] = {"conditions": [condition]}
    if gen is not None:
        out["observedGeneration"] = gen
    return out


def _reason(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return f"{status} {getattr(exc, 'reason', '')}".strip() if status is not None else type(exc).__name__
