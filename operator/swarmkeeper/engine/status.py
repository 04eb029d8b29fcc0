"""Status of each spec object, computed from the observed swarm (and the last apply's errors).

One function per kind builds the same status every front door writes back: the CR status
subresource, a spec file's ``status:`` block, a status file. Conditions follow Kubernetes
conventions: Ready, Progressing and Degraded, each with a CamelCase reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api import (
    Condition,
    Key,
    ObjectStatus,
    ReplicaCounts,
    ServiceStatus,
    TaskError,
    UpdateProgress,
    ValueStatus,
)
from ..api.service import RunningImage
from ..loading import Manifest
from ..swarm.build import spec_hash
from ..swarm.images import digest_of
from ..swarm.observe import SwarmState, value_version
from .adopt import adopted_networks
from .conditions import DEPENDENCY_NOT_READY, IMAGE_RESOLVED, READY, REGISTRY_ERROR, SYNCED, condition
from .conditions import merge as merge_conditions
from .desired import Desired
from .images import Pin
from .progress import UPDATE_IN_PROGRESS, service_progress


@dataclass(frozen=True)
class Change:
    """What a pass did to one object: why (missing, changed, drift) and which fields (no values)."""

    reason: str
    fields: tuple[str, ...] = ()


def merge_status(old: Mapping[str, Any] | None, new: ObjectStatus) -> dict[str, Any]:
    """The status to write: ``new``, keeping from ``old`` what a quiet pass must not churn —
    transition times of conditions whose status did not flip, the Synced condition, lastAppliedAt."""
    out = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not old:
        return out
    out["conditions"] = merge_conditions(old.get("conditions"), out.get("conditions", []))
    if "lastAppliedAt" not in out and old.get("lastAppliedAt"):
        out["lastAppliedAt"] = old["lastAppliedAt"]
    return out


def manifest_spec_hash(m: Manifest) -> str:
    """Hash of the spec as written; secret values appear masked in the dump, so never hashed."""
    return spec_hash(m.resource.spec.model_dump(mode="json", by_alias=True, exclude_none=True))


def service_status(
    key: Key,
    state: SwarmState,
    *,
    error: str | None = None,
    gen: int | None = None,
    spec_digest: str | None = None,
    now: datetime | None = None,
) -> ServiceStatus:
    """Live status of a managed service (``gen``/``spec_digest`` come from the spec, when there is one)."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    svc = state.managed_services.get(key)
    if svc is None:
        reason, msg = ("ApplyFailed", error) if error else ("NotCreated", "the service does not exist in the swarm")
        return ServiceStatus(
            observed_generation=gen,
            observed_spec_hash=spec_digest,
            conditions=[
                condition("Ready", "False", reason, msg, at=now, generation=gen),
                condition("Progressing", "False", reason, msg, at=now, generation=gen),
                condition("Degraded", "True" if error else "False", reason, msg, at=now, generation=gen),
            ],
        )
    p = service_progress(svc, state.tasks_by_service.get(svc["ID"], []))
    conditions: list[Condition] = []
    if error:
        conditions.append(condition("Ready", "False", "ApplyFailed", error, at=now, generation=gen))
    elif p.converged:
        conditions.append(
            condition("Ready", "True", "Converged", f"{p.ready} tasks running the current spec", at=now, generation=gen)
        )
    elif p.failed:
        reason = "RolledBack" if p.update_state == "rollback_completed" else "UpdatePaused"
        conditions.append(condition("Ready", "False", reason, p.failed, at=now, generation=gen))
    else:
        conditions.append(condition("Ready", "False", "Converging", f"{p.ready} running", at=now, generation=gen))
    progressing = not p.converged and not p.failed and not error
    why = "Updating" if p.update_state in UPDATE_IN_PROGRESS else ("Scaling" if progressing else "Converged")
    conditions.append(
        condition(
            "Progressing", "True" if progressing else "False", why, p.update_message or "", at=now, generation=gen
        )
    )
    task_err = p.task_error if not p.converged else None
    degraded = bool(error or p.failed or task_err)
    degraded_reason = (
        "ApplyFailed" if error else ("UpdateFailed" if p.failed else ("TaskFailed" if task_err else "Healthy"))
    )
    degraded_msg = error or p.failed or (task_err["error"] if task_err else "")
    conditions.append(
        condition("Degraded", "True" if degraded else "False", degraded_reason, degraded_msg, at=now, generation=gen)
    )
    spec = svc["Spec"]
    return ServiceStatus(
        observed_generation=gen,
        observed_spec_hash=spec_digest,
        conditions=conditions,
        swarm_name=spec["Name"],
        swarm_id=svc["ID"],
        swarm_version=svc["Version"]["Index"],
        replicas=ReplicaCounts(desired=p.desired, running=p.running, completed=p.completed),
        ready=p.ready,
        update=UpdateProgress(
            state=p.update_state,
            message=p.update_message,
            started_at=p.update_started_at,
            completed_at=p.update_completed_at,
        )
        if p.update_state
        else None,
        image=p.image,
        # The digest the service is pinned to: name:tag@sha256:... (engine/images.py).
        image_digest=digest_of(svc["Spec"]["TaskTemplate"]["ContainerSpec"].get("Image", "")),
        running_images=[RunningImage(image=i, digest=d, tasks=n) for i, d, n in p.running_images] or None,
        task_error=TaskError(**task_err) if task_err else None,
    )


def _network_status(m: Manifest, state: SwarmState, error: str | None, now: datetime) -> ObjectStatus:
    gen = m.resource.metadata.generation
    net = state.managed_networks.get(m.key)
    adopted = adopted_networks(state).get(m.key) if net is None else None
    net = net or adopted
    if net is None or error:
        reason, msg = ("ApplyFailed", error) if error else ("NotCreated", "the network does not exist in the swarm")
        ready = condition("Ready", "False", reason, msg or "", at=now, generation=gen)
        return ObjectStatus(
            observed_generation=gen,
            observed_spec_hash=manifest_spec_hash(m),
            conditions=[ready],
            swarm_name=net["Name"] if net else None,
            swarm_id=net["Id"] if net else None,
        )
    return ObjectStatus(
        observed_generation=gen,
        observed_spec_hash=manifest_spec_hash(m),
        conditions=[
            condition("Ready", "True", "Adopted", "made outside swarmkeeper, used by reference", at=now, generation=gen)
            if adopted
            else condition("Ready", "True", "Created", "", at=now, generation=gen)
        ],
        swarm_name=net["Name"],
        swarm_id=net["Id"],
    )


def _value_status(m: Manifest, state: SwarmState, desired: Desired, error: str | None, now: datetime) -> ValueStatus:
    gen = m.resource.metadata.generation
    versions = state.managed_values.get(m.key, [])
    want = desired.values.get(m.key)
    current = next((v for v in versions if want and v["Spec"]["Name"] == want.swarm_name), None)
    if current is None or error:
        reason, msg = ("ApplyFailed", error) if error else ("NotCreated", "no current version in the swarm")
        cond = condition("Ready", "False", reason, msg or "", at=now, generation=gen)
    else:
        cond = condition("Ready", "True", "Created", f"version {value_version(current)}", at=now, generation=gen)
    return ValueStatus(
        observed_generation=gen,
        observed_spec_hash=manifest_spec_hash(m),
        conditions=[cond],
        swarm_name=current["Spec"]["Name"] if current else None,
        swarm_id=current["ID"] if current else None,
        swarm_version=current["Version"]["Index"] if current else None,
        current_version=value_version(current) if current else None,
        versions=[v["Spec"]["Name"] for v in versions],
    )


def _synced(change: Change | None, error: str | None, now: datetime, gen: int | None) -> Condition | None:
    if error:
        return condition(SYNCED, "False", "ApplyFailed", error, at=now, generation=gen)
    if change is None:
        return None
    if change.reason == "drift":
        fields = ", ".join(change.fields) or "the object"
        return condition(
            SYNCED,
            "True",
            "DriftCorrected",
            f"changed outside swarmkeeper and put back: {fields}",
            at=now,
            generation=gen,
        )
    if change.reason.startswith("adopt"):
        done = "and updated from the spec" if change.reason == "adopt + update" else "as it was"
        return condition(
            SYNCED, "True", "Adopted", f"taken over from outside swarmkeeper {done}", at=now, generation=gen
        )
    verb = "created" if change.reason == "missing" else "updated"
    return condition(SYNCED, "True", "Applied", f"{verb} from the spec", at=now, generation=gen)


def _pinned(status: ObjectStatus, pin: Pin, generation: int | None, now: datetime) -> None:
    """Whether the registry could say which digest the service's image tag has, this pass."""
    if pin.problem is not None:
        message = f"the registry gave no digest, so what runs is kept: {pin.problem}"
        status.conditions.append(
            condition(IMAGE_RESOLVED, "False", REGISTRY_ERROR, message, at=now, generation=generation)
        )
    elif pin.digest is not None:
        status.conditions.append(condition(IMAGE_RESOLVED, "True", "Pinned", "", at=now, generation=generation))


def compute_statuses(
    manifests: Sequence[Manifest],
    state: SwarmState,
    desired: Desired,
    errors: Mapping[Key, str],
    *,
    changes: Mapping[Key, Change] | None = None,
    waiting: Mapping[Key, str] | None = None,
    held: Mapping[Key, str] | None = None,
    now: datetime | None = None,
) -> dict[Key, ObjectStatus]:
    """Status of every manifest. ``changes`` are what this pass did to each object; ``waiting``,
    the objects left for a later pass until what they depend on converges (and why); ``held``, the
    services whose spec swarm rolled back, not sent again (and why)."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    changes = changes or {}
    out: dict[Key, ObjectStatus] = {}
    for m in manifests:
        error = errors.get(m.key)
        status: ObjectStatus
        match m.kind:
            case "SwarmService":
                status = service_status(
                    m.key,
                    state,
                    error=error,
                    gen=m.resource.metadata.generation,
                    spec_digest=manifest_spec_hash(m),
                    now=now,
                )
                want = desired.services.get(m.key)
                if want is not None and want.pin is not None:
                    _pinned(status, want.pin, m.resource.metadata.generation, now)
            case "SwarmNetwork":
                status = _network_status(m, state, error, now)
            case "SwarmSecret" | "SwarmConfig":
                status = _value_status(m, state, desired, error, now)
            case _:
                status = ObjectStatus(
                    observed_generation=m.resource.metadata.generation,
                    conditions=[
                        condition("Ready", "True", "Configured", "", at=now, generation=m.resource.metadata.generation)
                    ],
                )
        if waiting and m.key in waiting:
            ready = condition(
                READY, "False", DEPENDENCY_NOT_READY, waiting[m.key], at=now, generation=m.resource.metadata.generation
            )
            status.conditions = [ready, *(c for c in status.conditions if c.type != READY)]
        change = changes.get(m.key)
        if change is not None:
            status.last_applied_at = now
        synced = _synced(change, error, now, m.resource.metadata.generation)
        if held and m.key in held:
            gen = m.resource.metadata.generation
            synced = condition(SYNCED, "False", "RolledBack", held[m.key], at=now, generation=gen)
        if synced is not None:
            status.conditions.append(synced)
        out[m.key] = status
    return out
