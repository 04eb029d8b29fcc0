"""Desired vs actual → an ordered plan of steps.

Order: networks, secrets and configs before the services that use them; services in
``dependsOn`` order; services removed before what they use; old secret/config versions removed
last. Steps without an order between them run concurrently (``Plan.levels``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..api import Key, SwarmConfig, SwarmSecret
from ..swarm import labels as L
from ..swarm.build import Payload
from ..swarm.normalize import normalize_network, normalize_service
from ..swarm.observe import Obj, SwarmState, value_version
from . import adopt as A
from .desired import Desired, DesiredNetwork, DesiredService, DesiredValue
from .diff import Change, diff

Action = Literal["create", "update", "recreate", "delete"]
ObjectType = Literal["network", "secret", "config", "service"]
# "adopt": an object made outside swarmkeeper is taken over as it is (labels only, no task restarts);
# "adopt + update": taken over and changed to the spec (a service's tasks restart).
Reason = Literal["missing", "changed", "drift", "pruned", "superseded", "adopt", "adopt + update"]

_TYPE_OF_KIND: dict[str, ObjectType] = {
    "SwarmNetwork": "network",
    "SwarmSecret": "secret",
    "SwarmConfig": "config",
    "SwarmService": "service",
}


@dataclass
class Step:
    index: int
    action: Action
    type: ObjectType
    key: Key
    swarm_name: str
    reason: Reason
    payload: Payload | None = None
    object_id: str | None = None
    changes: list[Change] = field(default_factory=list)
    after: set[int] = field(default_factory=set)
    wait_for: list[str] = field(default_factory=list)  # swarm names of services to be converged first
    with_registry_auth: bool = True

    def describe(self) -> str:
        kind, ns, name = self.key
        what = f"{kind}/{name}" if ns is None else f"{kind}/{ns}/{name}"
        return f"{self.action} {what} ({self.swarm_name}): {self.reason}"


@dataclass(frozen=True)
class PlanError:
    key: Key | None
    message: str


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    errors: list[PlanError] = field(default_factory=list)  # per object: that object is left alone
    blocked: str | None = None  # the whole plan is refused (prune guard)
    orphans: list[Key] = field(default_factory=list)  # managed, no longer in specs, kept (no --prune)
    # Services whose spec swarm rolled back: not sent again until the spec changes (or --force).
    held: dict[Key, str] = field(default_factory=dict)
    unmanaged: list[tuple[str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.steps

    def levels(self) -> list[list[Step]]:
        """Steps grouped so that every step comes after all steps it depends on."""
        done: set[int] = set()
        pending = list(self.steps)
        out: list[list[Step]] = []
        while pending:
            ready = [s for s in pending if s.after <= done]
            if not ready:  # a cycle cannot be built from validated specs; refuse rather than spin
                raise RuntimeError("plan has a dependency cycle")
            out.append(ready)
            done |= {s.index for s in ready}
            pending = [s for s in pending if s.index not in done]
        return out


ROLLBACK_STATES = frozenset({"rollback_started", "rollback_paused", "rollback_completed"})
ROLLED_BACK = "swarm rolled this spec back after its update failed; it is not sent again until the spec changes"


class _Builder:
    def __init__(
        self, desired: Desired, state: SwarmState, source: str, adopt: bool = False, force: bool = False
    ) -> None:
        self.desired, self.state, self.source, self.adopt, self.force = desired, state, source, adopt, force
        by_reference = {("network", n["Name"]) for n in A.adopted_networks(state).values()}
        self.plan = Plan(unmanaged=[u for u in state.foreign() if u not in by_reference])
        self.by_key: dict[tuple[Action, Key], Step] = {}
        self.taken = state.names_in_use()

    def add(self, action: Action, key: Key, swarm_name: str, reason: Reason, **kw: object) -> Step:
        step = Step(len(self.plan.steps), action, _TYPE_OF_KIND[key.kind], key, swarm_name, reason, **kw)  # type: ignore[arg-type]
        self.plan.steps.append(step)
        self.by_key[(action, key)] = step
        return step

    def conflict(self, key: Key, type_: ObjectType, name: str) -> bool:
        if name in self.taken[type_]:
            self.plan.errors.append(
                PlanError(
                    key,
                    f"a {type_} named {name!r} exists and is not managed by swarmkeeper; it is left alone "
                    + (
                        "(take it over with --adopt, rename the spec, or remove the existing object)"
                        if type_ in ("service", "network")
                        else "(rename the spec, or remove the existing object)"
                    ),
                )
            )
            return True
        return False

    # -- networks ----------------------------------------------------------------------------
    def networks(self) -> None:
        by_reference = A.adopted_networks(self.state)
        for key, want in self.desired.networks.items():
            actual = self.state.managed_networks.get(key)
            if actual is None:
                foreign = A.foreign_network(self.state, want.swarm_name)
                if foreign is not None and (self.adopt or key in by_reference):
                    self.adopt_network(key, want, foreign, already=key in by_reference)
                elif not self.conflict(key, "network", want.swarm_name):
                    self.add("create", key, want.swarm_name, "missing", payload=want.payload)
                continue
            if actual["Labels"].get(L.SPEC_HASH) == want.payload["Labels"][L.SPEC_HASH]:
                continue
            changes = diff(normalize_network(actual), normalize_network(want.payload))
            users = self._services_using_network(actual["Id"])
            if users:
                self.plan.errors.append(
                    PlanError(
                        key,
                        f"network {want.swarm_name!r} changed, but swarm networks cannot be changed "
                        f"in place and it is in use by {', '.join(sorted(users))}; detach them first or "
                        "give the network a new name",
                    )
                )
                continue
            self.add(
                "recreate",
                key,
                want.swarm_name,
                "changed",
                payload=want.payload,
                object_id=actual["Id"],
                changes=changes,
            )

    def _services_using_network(self, network_id: str) -> set[str]:
        users = set()
        for svc in self.state.services:
            nets = svc["Spec"].get("TaskTemplate", {}).get("Networks") or svc["Spec"].get("Networks") or []
            if any(n.get("Target") == network_id for n in nets):
                users.add(svc["Spec"]["Name"])
        return users

    # -- secrets and configs -----------------------------------------------------------------
    def values(self) -> None:
        for key, want in self.desired.values.items():
            if self.adopt and want.version == 0 and key not in self.state.managed_values:
                self.adopt_value(key, want)
            if want.payload is None:
                continue
            versions = self.state.managed_values.get(key, [])
            if not self.conflict(key, want.kind, want.swarm_name):
                self.add("create", key, want.swarm_name, "changed" if versions else "missing", payload=want.payload)

    # -- services ----------------------------------------------------------------------------
    def services(self) -> None:
        for key, want in self.desired.services.items():
            step = self.plan_service(key, want)
            if step is None:
                continue
            self.after_resources(step, want)
            step.wait_for = [self.desired.services[d].swarm_name for d in want.depends_on]
        self.order_by_depends_on()

    def plan_service(self, key: Key, want: DesiredService) -> Step | None:
        """The step that brings one service to its spec (None: nothing to do, or a name conflict)."""
        actual = self.state.managed_services.get(key)
        foreign = A.foreign_service(self.state, want.swarm_name) if actual is None and self.adopt else None
        if foreign is not None:
            return self.adopt_service(key, want, foreign)
        if actual is None:
            if self.conflict(key, "service", want.swarm_name):
                return None
            return self.add(
                "create",
                key,
                want.swarm_name,
                "missing",
                payload=want.payload,
                with_registry_auth=want.with_registry_auth,
            )
        changes = self.service_changes(want, actual)
        if not changes:
            return None
        labels = actual["Spec"].get("Labels") or {}
        reason: Reason = "drift" if labels.get(L.SPEC_HASH) == want.spec_hash else "changed"
        if reason == "changed" and not self.force and self.rolled_back(want, actual):
            # Sending it again would start the same failing update at every pass: a crash loop.
            self.plan.held[key] = ROLLED_BACK
            return None
        return self.add(
            "update",
            key,
            want.swarm_name,
            reason,
            payload=want.payload,
            object_id=actual["ID"],
            changes=changes,
            with_registry_auth=want.with_registry_auth,
        )

    def after_resources(self, step: Step, want: DesiredService) -> None:
        """A service's step runs after the steps that create the networks, secrets and configs it uses."""
        for dep in [*want.networks, *want.values]:
            for action in ("create", "recreate"):
                if (action, dep) in self.by_key:
                    step.after.add(self.by_key[(action, dep)].index)

    def order_by_depends_on(self) -> None:
        """dependsOn: a service's step runs after the steps of what it depends on."""
        for key, want in self.desired.services.items():
            mine = self.service_step(key)
            if mine is None:
                continue
            for dep in want.depends_on:
                other = self.service_step(dep)
                if other is not None:
                    mine.after.add(other.index)

    def service_step(self, key: Key) -> Step | None:
        return self.by_key.get(("create", key)) or self.by_key.get(("update", key))

    def rolled_back(self, want: DesiredService, actual: Obj) -> bool:
        """Whether swarm rolled ``actual`` back from exactly the desired spec. Swarm drops the
        rolled-back spec from the service (PreviousSpec is emptied), but the tasks it started from
        that spec stay in the task history, each with its own copy of the task template."""
        if (actual.get("UpdateStatus") or {}).get("State") not in ROLLBACK_STATES:
            return False
        wanted = normalize_service({"TaskTemplate": want.payload.get("TaskTemplate") or {}})["TaskTemplate"]
        names = self.state.network_names
        return any(
            not diff(normalize_service({"TaskTemplate": task.get("Spec") or {}}, names)["TaskTemplate"], wanted)
            for task in self.state.tasks_by_service.get(actual["ID"], [])
        )

    def service_changes(self, want: DesiredService, actual: Obj) -> list[Change]:
        return diff(
            normalize_service(actual["Spec"], self.state.network_names),
            normalize_service(want.payload),
        )

    # -- adoption (--adopt; the rules are in adopt.py) -------------------------------------
    def adopted(self, type_: ObjectType, name: str) -> None:
        """An adopted object is no longer one left alone."""
        self.plan.unmanaged = [u for u in self.plan.unmanaged if u != (type_, name)]

    def adopt_network(self, key: Key, want: DesiredNetwork, foreign: Obj, *, already: bool) -> None:
        """Networks cannot be relabelled: a matching one is used by reference (a step that calls
        nothing, for the record), a differing one recreated while nothing uses it."""
        self.adopted("network", want.swarm_name)
        changes = diff(A.network_shape(foreign), A.network_shape(want.payload))
        if not changes:
            if not already:
                self.add("update", key, want.swarm_name, "adopt", object_id=foreign["Id"])
            return
        users = self._services_using_network(foreign["Id"])
        if users:
            fields = ", ".join(c.path for c in changes)
            self.plan.errors.append(
                PlanError(
                    key,
                    f"network {want.swarm_name!r} was made outside swarmkeeper and differs from the spec ({fields}); "
                    f"swarm networks cannot be changed in place and it is in use by {', '.join(sorted(users))}",
                )
            )
            return
        self.add(
            "recreate",
            key,
            want.swarm_name,
            "adopt + update",
            payload=want.payload,
            object_id=foreign["Id"],
            changes=changes,
        )

    def adopt_value(self, key: Key, want: DesiredValue) -> None:
        foreign = A.foreign_value(self.state, want.kind, want.swarm_name)
        if foreign is None:
            return
        self.adopted(want.kind, want.swarm_name)
        res = want.manifest.resource
        assert isinstance(res, SwarmSecret | SwarmConfig)
        value = want.manifest.value.get_secret_value() if want.manifest.value is not None else None
        payload = A.value_takeover(
            res.kind,
            res.metadata.name,
            res.metadata.namespace,
            res.spec.labels,
            value,
            self.source,
            res.spec.template_driver,
            res.spec.swarm_name,
        )
        self.add("update", key, want.swarm_name, "adopt", payload=payload, object_id=foreign["ID"])

    def adopt_service(self, key: Key, want: DesiredService, foreign: Obj) -> Step:
        self.adopted("service", want.swarm_name)
        changes = self.service_changes(want, foreign)
        if all(c.path == "Labels" or c.path.startswith("Labels.") for c in changes):
            # Same spec: send the live one back with our labels, so not even a field the spec
            # leaves to the engine changes, and no task restarts.
            payload = A.relabelled_service(foreign["Spec"], want.payload["Labels"])
            return self.add(
                "update",
                key,
                want.swarm_name,
                "adopt",
                payload=payload,
                object_id=foreign["ID"],
                changes=changes,
                with_registry_auth=False,  # credentials would change the task's pull options
            )
        return self.add(
            "update",
            key,
            want.swarm_name,
            "adopt + update",
            payload=want.payload,
            object_id=foreign["ID"],
            changes=changes,
            with_registry_auth=want.with_registry_auth,
        )

    # -- removals ----------------------------------------------------------------------------
    def removals(self, prune: bool, only: set[Key] | None = None) -> None:
        if only is None:
            mine = owned_keys(self.state, self.source)
            gone = sorted((k for k in mine if k not in self.desired.all_keys()), key=str)
        else:
            gone = sorted(only, key=str)
        if not prune:
            self.plan.orphans = gone
        service_steps = [s.index for s in self.plan.steps if s.type == "service"]
        deletes: list[Step] = []
        if prune:
            for key in gone:
                if key.kind == "SwarmService" and key in self.state.managed_services:
                    svc = self.state.managed_services[key]
                    deletes.append(self.add("delete", key, svc["Spec"]["Name"], "pruned", object_id=svc["ID"]))
            # Services go first; among themselves their order is free (removing a service does not
            # need the services it depended on to stay).
            service_steps += [s.index for s in deletes]
            for key in gone:
                if key.kind == "SwarmNetwork" and key in self.state.managed_networks:
                    net = self.state.managed_networks[key]
                    self.add("delete", key, net["Name"], "pruned", object_id=net["Id"], after=set(service_steps))
                elif key.kind in ("SwarmSecret", "SwarmConfig"):
                    for obj in self.state.managed_values.get(key, []):
                        self.add(
                            "delete", key, obj["Spec"]["Name"], "pruned", object_id=obj["ID"], after=set(service_steps)
                        )
        self._superseded_versions(set(service_steps))

    def _superseded_versions(self, after: set[int]) -> None:
        # A version still used by a service this plan does not touch cannot go yet; trying every
        # pass would make an idle pass mutate. One freed by this plan's updates is tried after them.
        in_use = self.state.secrets_in_use() | self.state.configs_in_use()
        for key, want in self.desired.values.items():
            versions = [v for v in self.state.managed_values.get(key, []) if v["Spec"]["Name"] != want.swarm_name]
            older = [v for v in versions if value_version(v) < want.version]
            keep = {v["ID"] for v in older[len(older) - want.keep_versions :]} if want.keep_versions else set()
            for obj in versions:
                if obj["ID"] not in keep and (obj["ID"] not in in_use or after):
                    self.add("delete", key, obj["Spec"]["Name"], "superseded", object_id=obj["ID"], after=set(after))

    def prune_guard(self, force: bool) -> None:
        pruned = {s.key for s in self.plan.steps if s.reason == "pruned"}
        managed = owned_keys(self.state, self.source)
        if pruned and not force and len(pruned) * 2 > len(managed):
            self.plan.blocked = (
                f"refusing to prune {len(pruned)} of the {len(managed)} objects managed from source "
                f"{self.source!r} in one run (more than half: a wrong path or an emptied folder?); "
                "re-run with --force if this is intended"
            )


def make_plan(
    desired: Desired,
    state: SwarmState,
    *,
    prune: bool = False,
    force: bool = False,
    source: str = L.DEFAULT_SOURCE,
    adopt: bool = False,
) -> Plan:
    """``adopt``: objects made outside swarmkeeper under the names the specs use are taken over
    (adopt.py) instead of being reported as conflicts."""
    b = _Builder(desired, state, source, adopt, force)
    b.networks()
    b.values()
    b.services()
    b.removals(prune)
    b.prune_guard(force)
    _skip_dependents_of_errors(b.plan, desired)
    return b.plan


def make_delete_plan(state: SwarmState, keys: set[Key]) -> Plan:
    """Remove exactly these managed objects (services first), whatever the specs say."""
    b = _Builder(Desired(), state, L.DEFAULT_SOURCE)
    b.removals(prune=True, only=keys)
    b.plan.orphans = []
    return b.plan


def _skip_dependents_of_errors(plan: Plan, desired: Desired) -> None:
    """A service whose network, secret or config is in conflict is not touched either."""
    bad = {e.key for e in plan.errors if e.key is not None}
    if not bad:
        return
    for key, svc in desired.services.items():
        blockers = [d for d in (*svc.networks, *svc.values, *svc.depends_on) if d in bad]
        if blockers:
            plan.errors.append(PlanError(key, "not applied: depends on " + ", ".join(str(k) for k in blockers)))
    bad = {e.key for e in plan.errors if e.key is not None}
    plan.steps = [s for s in plan.steps if s.key not in bad]
    kept = {s.index for s in plan.steps}
    for s in plan.steps:
        s.after &= kept


def owned_keys(state: SwarmState, source: str) -> set[Key]:
    """Keys of the managed objects in ``state`` that ``source`` applied (unlabelled: the default)."""
    return {k for k, owner in state.sources().items() if owner == source}
