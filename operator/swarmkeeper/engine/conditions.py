"""Conditions, with Kubernetes semantics, for every status swarmkeeper writes.

Every front door (spec files, status files, CR status subresources, a Git source's own status)
builds and merges conditions here. A condition's ``lastTransitionTime`` moves only when its
status flips, so a quiet pass produces the same bytes and a writer that skips unchanged content
rewrites nothing. The one exception is ``Synced`` with status True: it records an event (this
pass changed the object), so it carries the time of that change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from ..api import Condition, ConditionStatus

READY: Final = "Ready"
SYNCED: Final = "Synced"
# Describes the last pass that changed the object: kept as it is by passes that change nothing.
CARRIED_OVER: Final = frozenset({SYNCED})

# Whether a service's image is pinned to the digest its tag has now (resolveImage).
IMAGE_RESOLVED: Final = "ImageResolved"
REGISTRY_ERROR: Final = "RegistryError"  # the registry could not say: the last pinned digest runs on

# Ready=False reasons shared by the front doors.
INVALID_SPEC: Final = "InvalidSpec"  # the spec is rejected; its last valid version stays applied
DEPENDENCY_NOT_READY: Final = "DependencyNotReady"  # waits for what it depends on to converge

ConditionDict = dict[str, Any]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def timestamp(when: datetime | None = None) -> str:
    return (when or now()).isoformat().replace("+00:00", "Z")


def condition(
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    *,
    generation: int | None = None,
    at: datetime | None = None,
) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=at or now(),
        observed_generation=generation,
    )


def as_dict(cond: Condition | Mapping[str, Any]) -> ConditionDict:
    if isinstance(cond, Condition):
        return cond.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(cond)


def _is_event(cond: Mapping[str, Any]) -> bool:
    return cond.get("type") == SYNCED and cond.get("status") == "True"


def merge(
    old: Iterable[Mapping[str, Any]] | None,
    new: Iterable[Condition | Mapping[str, Any]],
    *,
    carry_over: bool = True,
) -> list[ConditionDict]:
    """``new``, with each condition's lastTransitionTime taken from ``old`` while its status is the
    same; with ``carry_over``, old conditions of the CARRIED_OVER types that ``new`` lacks are kept."""
    before = {c.get("type"): c for c in old or [] if isinstance(c, Mapping)}
    out: list[ConditionDict] = []
    for cond in map(as_dict, new):
        prev = before.get(cond["type"])
        steady = prev is not None and prev.get("status") == cond.get("status") and prev.get("lastTransitionTime")
        if steady and not _is_event(cond):
            cond["lastTransitionTime"] = prev["lastTransitionTime"]  # type: ignore[index]
        elif "lastTransitionTime" not in cond:
            cond["lastTransitionTime"] = timestamp()
        out.append(cond)
    if carry_over:
        present = {c["type"] for c in out}
        out += [dict(c) for t, c in before.items() if t in CARRIED_OVER and t not in present]
    return out


def put(
    old: Sequence[Mapping[str, Any]] | None, cond: Condition | Mapping[str, Any], *, first: bool = True
) -> list[ConditionDict]:
    """``old`` with ``cond`` in place of the condition of its type (transition time kept while its
    status is the same); every other condition stays as it was."""
    merged = merge(old, [cond], carry_over=False)[0]
    others = [dict(c) for c in old or [] if isinstance(c, Mapping) and c.get("type") != merged["type"]]
    return [merged, *others] if first else [*others, merged]


def status_with(old: Mapping[str, Any] | None, cond: Condition | Mapping[str, Any]) -> dict[str, Any]:
    """A status document ``old`` with one condition set (see ``put``); everything else kept."""
    previous = dict(old or {})
    conditions = [c for c in previous.get("conditions") or [] if isinstance(c, Mapping)]
    return {**previous, "conditions": put(conditions, cond)}
