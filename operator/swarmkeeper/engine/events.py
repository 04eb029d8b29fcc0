"""What people are told about: events per object, derived from consecutive passes. Pure.

``derive(memory, outcome)`` reads one ``PassOutcome`` against what earlier passes left in
``Memory`` and returns the events of this pass and the memory for the next. Changes (Applied,
DriftCorrected) are events each time they happen; states (Failed, InvalidSpec, Degraded,
RolledBack, NodeDown) are events when they start, and Recovered when a Degraded object or a down
node is well again, so a state that persists is told once, not on every pass.

* **Applied**: changes made from the specs (created, updated, deleted by prune); a service re-sent
  with the spec it already had (swarm rolled it back, the pass put it forward again) is not news;
* **DriftCorrected**: what was changed outside swarmkeeper and put back;
* **Failed**: a change the engine refused, an object the plan left alone, an engine away, a plan
  refused as a whole (the prune guard);
* **RolledBack**: swarm rolled a service's update back: its update state is a rollback
  (``rollback_started``, ``_paused``, ``_completed``), or the pass found it back at an older spec
  and put it forward again (watch re-applies what the specs say); once per spec rolled back;
* **InvalidSpec**: each spec error (file:line: object: field: message), once while it stands;
* **Degraded** / **Recovered**: the Degraded condition turning True; Recovered once it is False
  and the object Ready again;
* **NodeDown** / **Recovered**: a SwarmCluster node down, disconnected, unreachable or locked;
* **ImageUpdated**: the digest a service's image is pinned to moved.

Messages are names, field paths, states and the engine's words; never a value (the PassOutcome
carries none).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..api import ALERT_EVENTS, AlertEvent, Key, ObjectStatus, ServiceStatus, SwarmAlertSpec
from ..api.cluster import SwarmClusterStatus
from ..loading import Manifest, SpecError
from .run import ObjectChange, PassOutcome

ROLLBACK_STATES = frozenset({"rollback_started", "rollback_paused", "rollback_completed"})
NODE_DOWN_STATES = frozenset({"down", "disconnected", "unreachable", "locked"})
CLEANUPS = frozenset({"superseded"})  # old secret/config versions removed: bookkeeping, not news

# How a message with these events is flagged (Apprise's notify types), worst first.
SEVERITY: Mapping[AlertEvent, str] = {
    "Failed": "failure",
    "RolledBack": "failure",
    "InvalidSpec": "failure",
    "NodeDown": "failure",
    "Degraded": "warning",
    "DriftCorrected": "warning",
    "ImageUpdated": "info",
    "Applied": "success",
    "Recovered": "success",
}
_SEVERITY_ORDER = ("failure", "warning", "info", "success")


@dataclass(frozen=True)
class Event:
    type: AlertEvent
    key: Key | None  # None: about no one object (an engine away, a file that is not YAML)
    message: str

    @property
    def subject(self) -> str:
        return str(self.key) if self.key is not None else "-"

    def __str__(self) -> str:
        return f"{self.type} {self.subject}: {self.message}" if self.message else f"{self.type} {self.subject}"


@dataclass(frozen=True)
class Memory:
    """The lasting states earlier passes told about, so that they are not told again."""

    invalid: frozenset[str] = frozenset()  # spec errors, as text
    failing: Mapping[tuple[Key | None, str], str] = field(default_factory=dict)  # (object, what) → message
    degraded: frozenset[Key] = frozenset()  # told Degraded, not Recovered yet
    rolled_back: Mapping[Key, str] = field(default_factory=dict)  # service → spec hash swarm rolled back
    applied: Mapping[Key, str] = field(default_factory=dict)  # service → spec hash last told Applied
    nodes_down: frozenset[tuple[Key, str]] = frozenset()  # (SwarmCluster, node name)
    digests: Mapping[Key, str] = field(default_factory=dict)  # service → pinned image


def derive(
    memory: Memory, outcome: PassOutcome, manifests: Sequence[Manifest] = (), *, namespace: str | None = None
) -> tuple[list[Event], Memory]:
    """This pass's events, one per type and object, and the memory for the next pass.

    ``manifests`` name the namespace of an invalid object (spec errors name kind and name only);
    ``namespace``: every object's, when the front door knows it (a Kubernetes namespace).
    """
    hashes = {k: s.spec_hash for o in outcome.outcomes for k, s in o.desired.services.items()}
    seen = set(outcome.statuses)
    collected: list[Event] = []
    invalid, events = _invalid(memory, outcome.spec_errors, manifests, namespace)
    collected += events
    applied, reapplied, events = _changes(memory, outcome.changes, hashes, seen, outcome.engine_ok)
    collected += events
    failing, events = _failures(memory, outcome, seen)
    collected += events
    degraded, rolled_back, events = _services(memory, outcome.statuses, hashes, reapplied, outcome.engine_ok)
    collected += events
    nodes_down, events = _nodes(memory, outcome.statuses, outcome.engine_ok)
    collected += events
    digests, events = _images(memory, outcome.pinned_images)
    collected += events
    after = Memory(invalid, failing, degraded, rolled_back, applied, nodes_down, digests)
    return merge(collected), after


def merge(events: Iterable[Event]) -> list[Event]:
    """One event per type and object: the messages of several joined, in order."""
    out: dict[tuple[AlertEvent, Key | None], list[str]] = {}
    for e in events:
        messages = out.setdefault((e.type, e.key), [])
        if e.message and e.message not in messages:
            messages.append(e.message)
    return [Event(type_, key, "; ".join(messages)) for (type_, key), messages in out.items()]


def selected(alert: SwarmAlertSpec, events: Iterable[Event]) -> list[Event]:
    """The events ``alert`` asks for: of its event types, about its objects."""
    wanted = set(alert.events or ALERT_EVENTS)
    return [e for e in events if e.type in wanted and _about(alert, e.key)]


def _about(alert: SwarmAlertSpec, key: Key | None) -> bool:
    if not alert.objects:
        return True
    if key is None:
        return False  # a selector names objects; this is about none
    for s in alert.objects:
        namespace_ok = fnmatch.fnmatchcase(key.namespace, s.namespace) if key.namespace else s.namespace == "*"
        if namespace_ok and fnmatch.fnmatchcase(key.kind, s.kind) and fnmatch.fnmatchcase(key.name, s.name):
            return True
    return False


def severity(events: Iterable[Event]) -> str:
    """The worst severity among ``events`` (failure, warning, info, success)."""
    found = {SEVERITY[e.type] for e in events}
    return next((s for s in _SEVERITY_ORDER if s in found), "info")


# -- one kind of event each --------------------------------------------------------------------------


def _invalid(
    memory: Memory, errors: Sequence[SpecError], manifests: Sequence[Manifest], namespace: str | None
) -> tuple[frozenset[str], list[Event]]:
    texts = {str(e): e for e in errors}
    events = [Event("InvalidSpec", _error_key(e, manifests, namespace), text) for text, e in texts.items()]
    return frozenset(texts), [e for e in events if e.message not in memory.invalid]


def _error_key(error: SpecError, manifests: Sequence[Manifest], namespace: str | None) -> Key | None:
    if error.kind is None or error.name is None:
        return None
    if namespace is None:
        found = {m.namespace for m in manifests if m.kind == error.kind and m.name == error.name}
        namespace = found.pop() if len(found) == 1 else None
    return Key(error.kind, namespace, error.name)


def _changes(
    memory: Memory, changes: Sequence[ObjectChange], hashes: Mapping[Key, str], seen: set[Key], engine_ok: bool
) -> tuple[dict[Key, str], set[Key], list[Event]]:
    """Applied and DriftCorrected events; and the services found rolled back and put forward again."""
    applied = _carried(memory.applied, seen, engine_ok)
    reapplied: set[Key] = set()
    events: list[Event] = []
    for c in changes:
        if not c.ok or c.deferred or c.reason in CLEANUPS:
            continue
        fields = ", ".join(c.fields)
        if c.reason == "drift":
            events.append(Event("DriftCorrected", c.key, f"{c.swarm_name} put back: {fields or 'the object'}"))
            continue
        digest = hashes.get(c.key)
        if c.action != "delete" and digest is not None:
            if memory.applied.get(c.key) == digest and c.reason == "changed":
                reapplied.add(c.key)  # the same spec again: swarm had rolled it back
                continue
            applied[c.key] = digest
        verb = {"create": "created", "recreate": "recreated", "update": "updated", "delete": "deleted"}
        text = f"{verb.get(c.action, c.action)} {c.swarm_name}" + (f" ({fields})" if fields else "")
        events.append(Event("Applied", c.key, text + (" (pruned)" if c.reason == "pruned" else "")))
    return applied, reapplied, events


def _failures(
    memory: Memory, outcome: PassOutcome, seen: set[Key]
) -> tuple[dict[tuple[Key | None, str], str], list[Event]]:
    now: dict[tuple[Key | None, str], str] = {}
    for c in outcome.failed:
        error = c.error or "failed"
        if not error.startswith("skipped:"):  # skipped: a dependency's failure, told for that one
            now[(c.key, c.action)] = f"{c.action} {c.swarm_name} failed: {error}"
    for o in outcome.outcomes:
        for e in o.plan.errors:
            now[(e.key, "plan" if e.key is not None else e.message)] = e.message
    for blocked in outcome.blocked:
        now[(None, blocked)] = blocked
    for t in outcome.targets:
        if t.error is not None:
            key = Key("SwarmCluster", None, t.cluster) if t.cluster else None
            now[(key, "engine")] = f"{t.where} unavailable: {t.error}"
    if not outcome.engine_ok:  # objects on an engine this pass could not read: their failures stand
        for (key, what), message in memory.failing.items():
            if what != "engine" and key not in seen:
                now.setdefault((key, what), message)
    events = [Event("Failed", key, text) for (key, what), text in now.items() if (key, what) not in memory.failing]
    return now, events


def _services(
    memory: Memory,
    statuses: Mapping[Key, ObjectStatus],
    hashes: Mapping[Key, str],
    reapplied: set[Key],
    engine_ok: bool,
) -> tuple[frozenset[Key], dict[Key, str], list[Event]]:
    degraded = set(_carried(dict.fromkeys(memory.degraded, ""), set(statuses), engine_ok))
    rolled_back = _carried(memory.rolled_back, set(statuses), engine_ok)
    events: list[Event] = []
    for key, status in statuses.items():
        cond = status.condition("Degraded")
        ready = status.condition("Ready")
        if cond is not None and cond.status == "True":
            if key not in memory.degraded:
                events.append(Event("Degraded", key, f"{cond.reason}: {cond.message}" if cond.message else cond.reason))
            degraded.add(key)
        elif key in memory.degraded and ready is not None and ready.status == "True":
            events.append(Event("Recovered", key, ready.message or ready.reason))
            degraded.discard(key)
        service = status if isinstance(status, ServiceStatus) else None
        update = service.update if service is not None else None
        state = update.state if update is not None else None
        digest = hashes.get(key, "")
        if state in ROLLBACK_STATES or key in reapplied:
            if memory.rolled_back.get(key) != digest:
                events.append(Event("RolledBack", key, _rollback_message(service, state)))
            rolled_back[key] = digest
        elif ready is not None and ready.status == "True":
            rolled_back.pop(key, None)  # converged: a later rollback of the same spec is news again
    return frozenset(degraded), rolled_back, events


def _rollback_message(service: ServiceStatus | None, state: str | None) -> str:
    update = service.update if service is not None else None
    if state in ROLLBACK_STATES and update is not None:
        text = f"update {state}" + (f": {update.message}" if update.message else "")
    else:
        text = "swarm rolled the update back; the spec was applied again"
    error = service.task_error if service is not None else None
    return text + (f" (last task error: {error.error})" if error is not None else "")


def _nodes(
    memory: Memory, statuses: Mapping[Key, ObjectStatus], engine_ok: bool
) -> tuple[frozenset[tuple[Key, str]], list[Event]]:
    down: set[tuple[Key, str]] = set()
    events: list[Event] = []
    clusters = {k: s for k, s in statuses.items() if isinstance(s, SwarmClusterStatus)}
    for key, status in clusters.items():
        for node in status.nodes:
            if node.state in NODE_DOWN_STATES:
                down.add((key, node.name))
                if (key, node.name) not in memory.nodes_down:
                    detail = f": {node.message}" if node.message else ""
                    events.append(Event("NodeDown", key, f"node {node.name} is {node.state}{detail}"))
            elif (key, node.name) in memory.nodes_down and node.state == "ready":
                events.append(Event("Recovered", key, f"node {node.name} is ready again"))
            elif (key, node.name) in memory.nodes_down:
                down.add((key, node.name))  # not back yet (unknown, not-joined): still down as told
    for key, name in memory.nodes_down:
        if key not in clusters and not engine_ok:
            down.add((key, name))
    return frozenset(down), events


def _images(memory: Memory, pinned: Mapping[Key, str]) -> tuple[dict[Key, str], list[Event]]:
    digests = {**memory.digests, **pinned}
    events = [
        Event("ImageUpdated", key, f"now {image} (was {memory.digests[key]})")
        for key, image in pinned.items()
        if key in memory.digests and memory.digests[key] != image
    ]
    return digests, events


def _carried(previous: Mapping[Key, str], seen: set[Key], engine_ok: bool) -> dict[Key, str]:
    """What is remembered of objects: all of it while an engine is away (their status was not read),
    else only of the objects this pass read."""
    return dict(previous) if not engine_ok else {k: v for k, v in previous.items() if k in seen}
