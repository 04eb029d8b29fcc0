"""One pass over every engine the specs name: the entry point of every front door and the CLI.

``run_pass`` groups the specs by engine (``spec.cluster``, else the default engine), reconciles each
engine on its own — one being away must not stop the others converging — and returns a
``PassOutcome``: what each object became, what changed and why, what waits, what failed and where.
Front doors only produce the specs and publish the outcome; the dashboard, notifications, metrics
and the CLI all read this one record. ``run_delete`` is the same for removals by key.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api import Key, ObjectStatus, SwarmCluster
from ..loading import Manifest, SpecError
from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError
from ..swarm.observe import observe
from .apply import ApplyReport, StepResult, apply_plan
from .clusters import Target, connect_target, group_by_cluster
from .conditions import READY, condition
from .inventory import inventory
from .plan import Plan, make_delete_plan, owned_keys
from .reconcile import Options, Outcome, reconcile

# Kinds that configure swarmkeeper itself (who is told what): they live in no swarm, so nothing is
# planned, applied, deleted or pruned for them; a pass only gives them a status.
OWN_KINDS = frozenset({"SwarmAlert"})

__all__ = [
    "OWN_KINDS",
    "Clients",
    "DeleteOutcome",
    "ObjectChange",
    "Options",
    "PassOutcome",
    "TargetOutcome",
    "run_delete",
    "run_pass",
]


class Clients:
    """One engine client per cluster, kept across passes and dropped when its engine fails, so the
    next pass reconnects. A SwarmCluster whose engine endpoint changed gets a new client."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host
        self._clients: dict[tuple[str | None, str], EngineClient] = {}
        self._lock = threading.Lock()
        self._logins: Mapping[str, Any] | None = None

    def use_registry_logins(self, config: Mapping[str, Any] | None) -> None:
        """Registry logins (a parsed docker config) for every engine without logins of its own; None:
        the local docker config's, as at start."""
        if config == self._logins:
            return
        self._logins = config
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            self._apply_logins(client)

    def _apply_logins(self, client: EngineClient) -> None:
        if client.own_logins:
            return
        client.set_registry_logins(self._logins)

    @staticmethod
    def _endpoint(cluster: str | None, manifests: Sequence[Manifest]) -> str:
        for m in manifests:
            if isinstance(m.resource, SwarmCluster) and m.name == cluster:
                return m.resource.spec.engine.model_dump_json()
        return ""

    def get(self, cluster: str | None, manifests: Sequence[Manifest] = ()) -> EngineClient:
        """The client for ``cluster`` (None: the default engine); raises EngineError if unknown or away."""
        key = (cluster, self._endpoint(cluster, manifests))
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        try:
            client = connect_target(cluster, manifests, host=self.host)
        except LookupError as exc:
            raise EngineError(str(exc)) from None
        if self._logins is not None:
            self._apply_logins(client)
        with self._lock:
            for old in [k for k in self._clients if k[0] == cluster]:
                self._clients.pop(old).close()
            self._clients[key] = client
        return client

    def drop(self, cluster: str | None) -> None:
        with self._lock:
            for key in [k for k in self._clients if k[0] == cluster]:
                self._clients.pop(key).close()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def take_calls(self) -> Counter[tuple[str, str]]:
        """Engine calls made since the last take, over every client (metrics count them)."""
        total: Counter[tuple[str, str]] = Counter()
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            total.update(client.calls)
            client.calls.clear()
        return total


@dataclass(frozen=True)
class ObjectChange:
    """One step a pass took (or tried) on one swarm object; never a value, only names and paths."""

    key: Key
    cluster: str | None
    action: str  # create, update, recreate, delete
    reason: str  # missing, changed, drift, adopt, superseded, pruned, ...
    swarm_name: str
    fields: tuple[str, ...]  # the field paths that differed (diff's lines name them too)
    ok: bool
    deferred: bool  # left for a later pass (a dependency converging, a version still in use)
    error: str | None

    @classmethod
    def of(cls, result: StepResult, cluster: str | None) -> ObjectChange:
        step = result.step
        return cls(
            key=step.key,
            cluster=cluster,
            action=step.action,
            reason=step.reason,
            swarm_name=step.swarm_name,
            fields=tuple(c.path for c in step.changes),
            ok=result.ok,
            deferred=result.deferred,
            error=result.error,
        )


@dataclass
class TargetOutcome:
    """One engine's share of a pass: its outcome, or why it could not be reached."""

    cluster: str | None
    manifests: list[Manifest] = field(default_factory=list)  # the specs that go to this engine
    outcome: Outcome | None = None
    error: str | None = None  # the engine was unavailable: nothing was done on it

    @property
    def where(self) -> str:
        return f"cluster {self.cluster}" if self.cluster else "engine"


@dataclass
class PassOutcome:
    """Everything one pass did and found, for whoever reports it: status write-back, Events,
    logs, metrics, the CLI (and anything that shows passes to people). Names, field paths and
    messages only: a secret value never reaches it."""

    targets: list[TargetOutcome] = field(default_factory=list)
    spec_errors: list[SpecError] = field(default_factory=list)  # the front door's load errors
    revision: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: float = 0.0
    own_statuses: dict[Key, ObjectStatus] = field(default_factory=dict)  # OWN_KINDS objects

    @property
    def outcomes(self) -> list[Outcome]:
        return [t.outcome for t in self.targets if t.outcome is not None]

    @property
    def statuses(self) -> dict[Key, ObjectStatus]:
        out: dict[Key, ObjectStatus] = dict(self.own_statuses)
        for o in self.outcomes:
            out.update(o.statuses)
        return out

    @property
    def pinned_images(self) -> dict[Key, str]:
        """The image reference each service was made to run, where it is pinned to a digest."""
        return {
            key: want.pin.image
            for o in self.outcomes
            for key, want in o.desired.services.items()
            if want.pin is not None and want.pin.digest is not None
        }

    @property
    def unreachable(self) -> dict[str | None, str]:
        return {t.cluster: t.error for t in self.targets if t.error is not None}

    @property
    def engine_ok(self) -> bool:
        return not self.unreachable

    @property
    def applied_ok(self) -> bool:
        """Every engine answered and every change was made (spec errors aside)."""
        return self.engine_ok and all(o.ok for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return self.applied_ok and not self.spec_errors

    @property
    def blocked(self) -> list[str]:
        return [o.plan.blocked for o in self.outcomes if o.plan.blocked]

    @property
    def changes(self) -> list[ObjectChange]:
        return [ObjectChange.of(r, t.cluster) for t in self.targets if t.outcome for r in t.outcome.report.results]

    @property
    def applied(self) -> list[ObjectChange]:
        return [c for c in self.changes if c.ok]

    @property
    def drift(self) -> list[ObjectChange]:
        return [c for c in self.applied if c.reason == "drift"]

    @property
    def failed(self) -> list[ObjectChange]:
        return [c for c in self.changes if not c.ok and not c.deferred]

    @property
    def waiting(self) -> dict[Key, str]:
        """Objects left for a later pass because what they depend on is not converged yet."""
        return {k: why for o in self.outcomes for k, why in o.waiting.items()}

    @property
    def requeue(self) -> bool:
        """Work was left for a later pass (dependencies converging, versions in use, engines away)."""
        return not self.engine_ok or any(c.deferred for c in self.changes)

    @property
    def held(self) -> dict[Key, str]:
        """Services whose spec swarm rolled back: not sent again until the spec changes."""
        return {k: why for o in self.outcomes for k, why in o.plan.held.items()}

    @property
    def plan_errors(self) -> list[str]:
        return [e.message for o in self.outcomes for e in o.plan.errors]

    def managed_counts(self) -> Counter[str]:
        """Managed objects per kind on the engines this pass read."""
        return Counter(obj.kind for o in self.outcomes for obj in inventory(o.state))

    def owned_counts(self, source: str) -> Counter[str]:
        """Objects per kind that ``source`` applied, on the engines this pass read."""
        return Counter(k.kind for o in self.outcomes for k in owned_keys(o.state, source))


def run_pass(
    manifests: Sequence[Manifest],
    clients: Clients,
    options: Options | None = None,
    *,
    only: str | None = None,
    spec_errors: Sequence[SpecError] = (),
    empty_pass: bool = True,
    on_result: Callable[[StepResult], None] | None = None,
    on_target: Callable[[TargetOutcome], None] | None = None,
) -> PassOutcome:
    """Reconcile ``manifests`` on every engine they name (``only``: just that cluster).

    With ``empty_pass``, valid but empty specs still get a pass on the default engine: that is
    where prune (and its guard against mass deletion) sees that everything went away.
    """
    started = time.monotonic()
    options = options or Options()
    outcome = PassOutcome(spec_errors=list(spec_errors), revision=options.revision)
    outcome.own_statuses = {m.key: _own_status(m) for m in manifests if m.kind in OWN_KINDS}
    manifests = [m for m in manifests if m.kind not in OWN_KINDS]
    targets = group_by_cluster(manifests, only)
    if not targets and empty_pass:
        targets = [Target(None, [])]
    for target in targets:
        done = TargetOutcome(target.cluster, target.manifests)
        try:
            client = clients.get(target.cluster, manifests)
            done.outcome = reconcile(client, target.manifests, options, on_result=on_result)
        except EngineError as exc:
            clients.drop(target.cluster)
            done.error = str(exc)
        outcome.targets.append(done)
        if on_target is not None:
            on_target(done)
    outcome.duration = time.monotonic() - started
    return outcome


def _own_status(m: Manifest) -> ObjectStatus:
    gen = m.resource.metadata.generation
    targets = len(getattr(m.resource.spec, "targets", ()))
    message = f"{targets} target{'s' if targets != 1 else ''}"
    return ObjectStatus(
        observed_generation=gen, conditions=[condition(READY, "True", "Configured", message, generation=gen)]
    )


@dataclass
class DeleteOutcome:
    plans: dict[str | None, Plan] = field(default_factory=dict)
    reports: dict[str | None, ApplyReport] = field(default_factory=dict)
    missing: list[Key] = field(default_factory=list)  # asked for, but not there (or not managed)
    unreachable: dict[str | None, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[StepResult]:
        return [r for report in self.reports.values() for r in report.failed]

    @property
    def ok(self) -> bool:
        return not self.unreachable and not self.failed


def run_delete(
    keys: Mapping[str | None, set[Key]],
    clients: Clients,
    manifests: Sequence[Manifest] = (),
    *,
    source: str | None = None,
) -> DeleteOutcome:
    """Remove exactly the managed objects named by ``keys`` (per cluster), services first.

    ``source``: only objects that source applied (a Kubernetes namespace never removes another's).
    """
    outcome = DeleteOutcome()
    for cluster, asked in keys.items():
        wanted = {k for k in asked if k.kind not in OWN_KINDS}
        try:
            client = clients.get(cluster, manifests)
            state = observe(client)
            present = owned_keys(state, source) if source is not None else state.managed_keys()
            outcome.missing += sorted(wanted - present, key=str)
            plan = make_delete_plan(state, wanted & present)
            outcome.plans[cluster] = plan
            outcome.reports[cluster] = apply_plan(client, plan, state)
        except EngineError as exc:
            clients.drop(cluster)
            outcome.unreachable[cluster] = str(exc)
    return outcome
