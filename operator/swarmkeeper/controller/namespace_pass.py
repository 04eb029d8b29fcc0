"""One pass over one Kubernetes namespace: its custom resources → the engine → status and Events.

Every operator trigger ends here (a CR created, changed or resumed, the resync timer, a referenced
Secret changed, a Docker event). Level-triggered: a pass starts from all of the namespace's CRs and
the swarm as it is now, never from what woke it. The namespace is its own ownership source
(``k8s.<namespace>``), so namespaces never touch each other's objects.

It blocks on Docker and on the API server: the operator runs it in a worker thread, and never two
passes of one namespace at once. It must not know about kopf; it only gets CR bodies.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.conditions import READY, condition, merge
from ..engine.images import RESOLVE_INTERVAL, follows_tags
from ..engine.run import Clients, ObjectChange, Options, PassOutcome, run_delete, run_pass
from ..engine.status import merge_status
from ..sources.kubernetes import (
    CustomResource,
    KubeApi,
    NamespaceSpecs,
    ValueReadError,
    load_namespace,
    merge_patch,
    problem_status,
    source_name,
    to_manifest,
)
from .metrics import Metrics
from .notify import Notifier
from .ui import Dashboard

log = logging.getLogger(__name__)

Body = Mapping[str, Any]


@dataclass
class PassResult:
    engine_ok: bool = True
    requeue: bool = False  # work left for a later pass (a dependency still converging, an engine away)
    changed: int = 0
    follows_tags: bool = False  # some service runs whatever digest its tag has now: ask registries again


@dataclass
class _Memory:
    """What the operator last told the API server about one CR (by uid), so quiet passes write nothing."""

    status: dict[str, Any] | None = None
    failure: str | None = None  # the last Warning posted, so a lasting failure is reported once


class NamespaceReconciler:
    def __init__(
        self,
        kube: KubeApi,
        metrics: Metrics,
        host: str | None = None,
        registry_secret: str | None = None,
        *,
        image_interval: float = RESOLVE_INTERVAL,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.host = host
        self.image_interval = image_interval  # a registry's answer on a tag's digest is kept this long
        self.registry_secret = registry_secret  # the Secret (dockerconfigjson) with each namespace's registry logins
        self._login_problems: dict[str, str] = {}  # namespace → what is wrong with its Secret, said once
        self._clients: dict[str, Clients] = {}  # per namespace: a namespace's pass is their only user
        self._memory: dict[str, _Memory] = {}
        self._owned: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()  # for the shared dicts above; passes of different namespaces overlap
        self.engine_ok = False
        self.notifier = Notifier(metrics.controller, metrics)  # each namespace's SwarmAlerts, its own events
        self.dashboard: Dashboard | None = None  # --ui-addr: every namespace's last pass, on one page

    def _clients_of(self, namespace: str) -> Clients:
        with self._lock:
            return self._clients.setdefault(namespace, Clients(self.host))

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
        clients = self._clients_of(namespace)
        if self.registry_secret:
            clients.use_registry_logins(self._registry_logins(namespace, self.registry_secret))
        options = Options(source=source_name(namespace), dependency_timeout=0.0, image_interval=self.image_interval)
        outcome = run_pass(specs.manifests, clients, options, empty_pass=False)
        outcome.spec_errors = [e for problem in specs.problems.values() for e in problem.errors]
        for t in outcome.targets:
            if t.error is not None:
                log.error("namespace %s: engine %s unavailable: %s", namespace, t.cluster or "(default)", t.error)
        if any(t.cluster is None for t in outcome.targets):  # readiness follows the default engine
            self.engine_ok = None not in outcome.unreachable
        self._publish_outcome(outcome, specs)
        self._publish_problems(specs)
        self._publish_clusters(specs, outcome)
        self.notifier.observe(specs.manifests, outcome, source=source_name(namespace), scope=namespace)
        if self.dashboard is not None:
            self.dashboard.publish(specs.manifests, outcome, scope=namespace)  # never waits
        with self._lock:
            if outcome.engine_ok:
                self._owned[namespace] = outcome.owned_counts(source_name(namespace))
            managed: Counter[str] = Counter()
            for counts in self._owned.values():
                managed.update(counts)
        outcome.duration = time.monotonic() - started
        self.metrics.record_pass(outcome, clients.take_calls(), managed=managed)
        changed = len(outcome.applied)
        log.debug("namespace %s: pass took %.0f ms, %d change(s)", namespace, outcome.duration * 1000, changed)
        return PassResult(
            engine_ok=outcome.engine_ok,
            requeue=outcome.requeue,
            changed=changed,
            follows_tags=follows_tags(specs.manifests),
        )

    def _registry_logins(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The namespace's registry logins: its Secret ``name`` of type kubernetes.io/dockerconfigjson,
        as for a pod's imagePullSecrets; None (the operator's own docker config) without one."""
        problem, config = "", None
        try:
            data = self.kube.read_value("Secret", namespace, name)
        except ValueReadError as exc:
            data, problem = None, f"cannot be read: {exc}"
        if data is not None:
            raw = data.get(".dockerconfigjson")
            try:
                parsed = json.loads(raw) if raw is not None else None
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                config = parsed
            else:
                problem = "has no .dockerconfigjson key holding a docker config (type kubernetes.io/dockerconfigjson)"
        if problem != self._login_problems.get(namespace, ""):
            if problem:
                log.error("namespace %s: registry logins: Secret %s %s", namespace, name, problem)
            else:
                log.info("namespace %s: registry logins: Secret %s is usable again", namespace, name)
            self._login_problems[namespace] = problem
        return config

    def _publish_outcome(self, outcome: PassOutcome, specs: NamespaceSpecs) -> None:
        for key, status in outcome.statuses.items():
            cr = specs.resources.get(key)
            if cr is not None:
                old = self._status_of(cr)
                self._write_status(cr, old, merge_status(old, status))
        for change in outcome.changes:
            cr = specs.resources.get(change.key)
            if cr is not None:
                self._event_for(cr, change)
        for o in outcome.outcomes:
            for e in o.plan.errors:
                cr = specs.resources.get(e.key) if e.key is not None else None
                if cr is not None:
                    self._warn_once(cr, "ApplyFailed", e.message)
            for key, why in o.plan.held.items():
                cr = specs.resources.get(key)
                if cr is not None:
                    self._warn_once(cr, "RolledBack", why)
        failed = {k for o in outcome.outcomes for k in [*o.errors, *o.plan.held]}
        for key in outcome.statuses:  # a failure that is over is reported again if it comes back
            cr = specs.resources.get(key)
            if cr is not None and key not in failed:
                self._memory_of(cr).failure = None

    def _event_for(self, cr: CustomResource, change: ObjectChange) -> None:
        if change.deferred or change.reason in ("superseded", "pruned"):
            return
        if not change.ok:
            if change.error and not change.error.startswith("skipped:"):
                self._warn_once(cr, "ApplyFailed", f"{change.action} {change.swarm_name} failed: {change.error}")
            return
        fields = ", ".join(change.fields)
        if change.reason == "drift":
            message = f"{change.swarm_name} was changed outside swarmkeeper and put back: {fields or 'the object'}"
            self.kube.post_event(cr, "Warning", "DriftCorrected", message)
            return
        verb = {"create": "created", "recreate": "recreated", "update": "updated"}.get(change.action, change.action)
        message = f"{verb} {change.swarm_name}" + (f" ({fields})" if fields else "")
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

    def _publish_clusters(self, specs: NamespaceSpecs, outcome: PassOutcome) -> None:
        """A SwarmCluster that only names an engine: Ready says whether that engine answered."""
        published = outcome.statuses  # a SwarmCluster with nodes has the status its outcome gave
        reached = {t.cluster: t.error for t in outcome.targets}
        for key, cr in specs.resources.items():
            if cr.kind != "SwarmCluster" or key in specs.problems or key in published:
                continue
            if cr.name not in reached:
                ready = condition(READY, "True", "Configured", "no object uses this cluster", generation=cr.generation)
            elif reached[cr.name] is None:
                ready = condition(READY, "True", "Connected", "", generation=cr.generation)
            else:
                ready = condition(READY, "False", "EngineUnavailable", str(reached[cr.name]), generation=cr.generation)
            old = self._status_of(cr)
            new: dict[str, Any] = {"conditions": merge((old or {}).get("conditions"), [ready], carry_over=False)}
            if cr.generation is not None:
                new["observedGeneration"] = cr.generation
            self._write_status(cr, old, new)

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
        result = run_delete({cluster: keys}, self._clients_of(namespace), clusters, source=source_name(namespace))
        if result.unreachable:
            return f"engine unavailable: {result.unreachable[cluster]}"
        by_key = {c.key: c for c in going}
        for report in result.reports.values():
            for r in report.results:
                other = by_key.get(r.step.key, cr if r.step.key == cr.key else None)
                if other is not None and r.ok:
                    self.kube.post_event(other, "Normal", "Deleted", f"removed {r.step.swarm_name}")
        errors = [r.error or "failed" for r in result.failed if r.step.key == cr.key]
        return "; ".join(errors) or None


def _cluster_of(body: Body) -> str | None:
    cluster = (body.get("spec") or {}).get("cluster")
    return cluster if isinstance(cluster, str) else None


def _reason(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return f"{status} {getattr(exc, 'reason', '')}".strip() if status is not None else type(exc).__name__
