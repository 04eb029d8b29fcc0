"""What the dashboard shows, as JSON-ready data, built from a published pass alone.

Everything comes from the ``PassOutcome`` the loop already computed (statuses, changes, spec errors)
and the ``SwarmState`` that pass observed (tasks); only the node list is read on its own. Like the
outcome itself this holds names, field paths and messages: never a secret or config value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...api import Key, ObjectStatus
from ...api.cluster import SwarmClusterStatus
from ...engine.inventory import inventory
from ...engine.run import PassOutcome
from ...loading import Manifest
from ...swarm import labels as L
from ...swarm.nodes import Member

MAX_PASSES = 20  # the "last passes" list
SHOWN_STATES = frozenset({"failed", "rejected", "orphaned"})  # ended tasks kept on show, with their error


def _when(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at is not None else None


def _age(created: str | None, now: datetime) -> str:
    if not created:
        return ""
    head = created.split(".")[0].rstrip("Z")
    try:
        then = datetime.fromisoformat(head).replace(tzinfo=UTC)
    except ValueError:
        return ""
    seconds = max(int((now - then).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _key(key: Key) -> dict[str, Any]:
    return {"kind": key.kind, "namespace": key.namespace, "name": key.name, "id": str(Key(*key))}


def pass_summary(outcome: PassOutcome) -> dict[str, Any]:
    """One entry of the "last passes" list: what changed and why, by field path (as ``diff``)."""
    return {
        "at": _when(outcome.started_at),
        "duration_ms": round(outcome.duration * 1000, 1),
        "ok": outcome.ok,
        "revision": outcome.revision,
        "changes": [
            {
                **_key(c.key),
                "action": c.action,
                "reason": c.reason,
                "fields": list(c.fields),
                "ok": c.ok,
                "deferred": c.deferred,
                "error": c.error,
            }
            for c in outcome.changes
        ],
        "drift": [str(Key(*c.key)) for c in outcome.drift],
        "spec_errors": [str(e) for e in outcome.spec_errors],
        "plan_errors": outcome.plan_errors + outcome.blocked,
        "held": {str(Key(*k)): why for k, why in outcome.held.items()},
        "waiting": {str(Key(*k)): why for k, why in outcome.waiting.items()},
        "unreachable": {t.where: t.error for t in outcome.targets if t.error is not None},
    }


def eventful(summary: Mapping[str, Any]) -> bool:
    """Whether a pass did or found anything: a change, drift, an error, something held, waiting or away."""
    return not summary["ok"] or any(
        summary[k] for k in ("changes", "drift", "spec_errors", "plan_errors", "held", "waiting", "unreachable")
    )


def _conditions(status: ObjectStatus) -> list[dict[str, Any]]:
    return [
        {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "since": _when(c.last_transition_time),
        }
        for c in status.conditions
    ]


def _tasks(outcome: PassOutcome) -> dict[str, list[dict[str, Any]]]:
    """Each managed service's tasks (by service key): the current ones and the last ended-in-error one."""
    out: dict[str, list[dict[str, Any]]] = {}
    for o in outcome.outcomes:
        state = o.state
        for key, svc in state.managed_services.items():
            rows: list[dict[str, Any]] = []
            failed: dict[str, Any] | None = None
            for task in state.tasks_by_service.get(svc["ID"], []):
                status = task.get("Status") or {}
                row = {
                    "id": str(task.get("ID", ""))[:12],
                    "slot": task.get("Slot"),
                    "node": task.get("NodeID") or "",
                    "state": status.get("State") or "",
                    "desired": task.get("DesiredState") or "",
                    "error": status.get("Err") or "",
                    "at": status.get("Timestamp") or "",
                }
                if row["desired"] == "running":
                    rows.append(row)
                elif row["state"] in SHOWN_STATES and (failed is None or row["at"] > failed["at"]):
                    failed = row
            if failed is not None:
                rows.append(failed)
            out[str(Key(*key))] = sorted(rows, key=lambda r: (r["slot"] or 0, r["desired"] != "running"))
    return out


@dataclass(frozen=True)
class NodeView:
    id: str
    hostname: str
    role: str
    availability: str
    state: str
    leader: bool
    message: str
    reachability: str | None = None
    address: str | None = None


def node_views(members: Sequence[Member]) -> list[NodeView]:
    return [
        NodeView(m.id, m.hostname, m.role, m.availability, m.state, m.leader, m.message, m.reachability, m.address)
        for m in sorted(members, key=lambda m: (m.role != "manager", m.hostname))
    ]


def cluster_nodes(statuses: Mapping[Key, ObjectStatus]) -> list[dict[str, Any]]:
    """The nodes of each SwarmCluster as its status has them: engines reached over TLS or ssh, not
    only the default one."""
    out = []
    for key, status in sorted(statuses.items()):
        if key.kind != "SwarmCluster" or not isinstance(status, SwarmClusterStatus):
            continue
        nodes = [
            {
                "name": n.name,
                "hostname": n.hostname or n.name,
                "id": n.id or "",
                "role": n.role or "",
                "availability": n.availability or "",
                "state": n.state,
                "leader": n.leader,
                "reachability": n.reachability,
                "address": n.address,
                "message": n.message or "",
                "unknown": unknown,
            }
            for ns, unknown in ((status.nodes, False), (status.unknown_nodes, True))
            for n in ns
        ]
        out.append({**_key(key), "leader": status.leader, "nodes": nodes})
    return out


def snapshot(
    manifests: Sequence[Manifest],
    outcome: PassOutcome,
    passes: Sequence[Mapping[str, Any]],
    nodes: Sequence[NodeView] | None,
    *,
    source: str,
    version: int,
    now: datetime | None = None,
    read_only: bool = False,
    origin: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole page's data after ``outcome``."""
    now = now or datetime.now(UTC)
    origins = {m.key: f"{m.origin.file}:{m.origin.line}" for m in manifests if m.origin is not None}
    created: dict[Key, str | None] = {}
    # Everything managed in the swarms this pass saw, from any source: what the specs here do not
    # hold is listed too, with the status read from the swarm and the source that owns it.
    live: dict[Key, tuple[ObjectStatus, str, str]] = {}
    for o in outcome.outcomes:
        owners = o.state.sources()
        for obj in inventory(o.state):
            created[obj.key] = obj.created
            live[obj.key] = (obj.status, owners.get(obj.key, L.DEFAULT_SOURCE), obj.details.get("revision", ""))
    errors: dict[tuple[str | None, str | None], list[str]] = {}
    for e in outcome.spec_errors:
        errors.setdefault((e.kind, e.name), []).append(str(e))
    tasks = _tasks(outcome)
    keys = set(outcome.statuses) | set(origins) | set(live)
    objects = []
    for key in sorted(keys, key=lambda k: (k.namespace or "", k.kind, k.name)):
        in_specs = key in outcome.statuses or key in origins
        status = outcome.statuses.get(key) or (live[key][0] if key in live else ObjectStatus())
        owner, revision = (live[key][1], live[key][2]) if key in live else (source, "")
        update = getattr(status, "update", None)
        task_error = getattr(status, "task_error", None)
        objects.append(
            {
                **_key(key),
                "source": owner,
                "in_specs": in_specs,
                "revision": revision or None,
                "file": origins.get(key),
                "ready": getattr(status, "ready", None),
                "update": getattr(update, "state", None),
                "image": getattr(status, "image", None),
                "digest": getattr(status, "image_digest", None),
                "conditions": _conditions(status),
                "task_error": task_error.model_dump(mode="json") if task_error is not None else None,
                "errors": errors.get((key.kind, key.name), []),
                "swarm_name": status.swarm_name,
                "age": _age(created.get(key), now),
                "tasks": tasks.get(str(Key(*key)), []),
            }
        )
    return {
        "version": version,
        "source": source,
        "generated_at": _when(now),
        "objects": objects,
        "nodes": [vars(n) for n in nodes] if nodes is not None else None,
        "spec_errors": [str(e) for e in outcome.spec_errors],
        "unreachable": {t.where: t.error for t in outcome.targets if t.error is not None},
        "passes": list(passes),
        # The pass this state comes from (listed in ``passes`` only when it had something to say).
        "last_pass": {"at": _when(outcome.started_at), "duration_ms": round(outcome.duration * 1000, 1)},
        "read_only": read_only,
        "origin": origin,
        "plan": pending_plan(outcome),
        "clusters": cluster_nodes(outcome.statuses),
        "unmanaged": [
            {"type": type_, "name": name, "cluster": cluster}
            for cluster, type_, name in sorted(
                {(t.cluster, *f) for t in outcome.targets if t.outcome is not None for f in t.outcome.state.foreign()},
                key=lambda u: (u[0] or "", u[1], u[2]),
            )
        ],
    }


def merged(
    scopes: Mapping[str | None, tuple[Sequence[Manifest], PassOutcome]], latest: str | None
) -> tuple[list[Manifest], PassOutcome]:
    """One view of the last pass of each scope (the operator's namespaces): their specs and outcomes
    together; ``latest``'s targets last, so that what it just observed wins over older reads."""
    order = [s for s in scopes if s != latest] + ([latest] if latest in scopes else [])
    manifests = [m for s in order for m in scopes[s][0]]
    newest = scopes[latest][1] if latest in scopes else None
    out = PassOutcome(
        targets=[t for s in order for t in scopes[s][1].targets],
        spec_errors=[e for s in order for e in scopes[s][1].spec_errors],
        revision=newest.revision if newest is not None else None,
        own_statuses={k: v for s in order for k, v in scopes[s][1].own_statuses.items()},
    )
    if newest is not None:
        out.started_at, out.duration = newest.started_at, newest.duration
    return manifests, out


def pending_plan(outcome: PassOutcome) -> list[dict[str, Any]]:
    """The steps a pass planned and did not carry out: all of them in a read-only pass (a plan to
    look at), those refused or left for later otherwise; field paths only, as ``diff`` prints them."""
    steps = []
    for t in outcome.targets:
        if t.outcome is None:
            continue
        done = {r.step.index for r in t.outcome.report.results if r.ok}
        for step in t.outcome.plan.steps:
            if step.index not in done:
                steps.append(
                    {
                        **_key(step.key),
                        "cluster": t.cluster,
                        "action": step.action,
                        "reason": step.reason,
                        "swarm_name": step.swarm_name,
                        "fields": [c.path for c in step.changes],
                        "blocked": t.outcome.plan.blocked,
                    }
                )
    return steps
