"""What a Git source decides about its revisions and releases: pure, no I/O.

The input is plain data: the revisions known so far (``Revisions``), the release being followed,
what the last pass did (``PassFacts``: the revision it applied, its changes, the statuses it read)
and the current time as a number (``time.monotonic()``). The output is a ``Decision``: the new
revisions, the release to follow next, the problem that kept the pass from applying, and the
events to log. ``controller/sync.py`` fetches, loads, logs and writes status around it.

* **which revision**: the fetched head; when its release failed and ``rollback_on_failure`` is on,
  the last released revision instead, so the failed commit is not applied again;
* **a release** starts when a pass applied a revision that is neither released nor failed; the
  services that revision created or updated are followed, and only those: one left paused or
  rolled back by an earlier release is reported by its own status, not blamed on this one;
* **it converges** when every one of them is Ready, and **fails** when one is paused or rolled
  back by swarm, when a later pass finds one of them back at an older spec (swarm rolled it back,
  and the pass has just put it forward again), or when the timeout passes first;
* **conditions**: Fetched, Valid, Applied, Released, and Ready summing them up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import ClassVar

from ..api import Condition, ConditionStatus, Key, ObjectStatus
from ..engine.conditions import READY, condition
from ..engine.run import ObjectChange, PassOutcome
from ..sources.sync_status import Revisions

SERVICE = "SwarmService"
# Ready reasons of a service that fail the release that changed it.
FAILED_READY = frozenset({"RolledBack", "UpdatePaused"})
# Steps that only remove old versions: they do not make a service part of a release.
CLEANUPS = frozenset({"superseded", "pruned"})

Describe = Callable[[str], str]  # a revision → how a log line names it (e.g. with its subject)


@dataclass(frozen=True)
class Policy:
    rollback_on_failure: bool = False
    timeout: float = 300.0  # seconds a release may take to converge


@dataclass(frozen=True)
class Release:
    """An applied revision, followed until the services it created or updated converge."""

    revision: str
    deadline: float  # on the clock ``now`` is read from
    changed: frozenset[Key] = frozenset()


@dataclass(frozen=True)
class PassFacts:
    """One pass, as far as releases are concerned."""

    good: str | None  # the revision whose specs the pass applied; None: no valid revision yet
    statuses: Mapping[Key, ObjectStatus] = field(default_factory=dict)
    changes: tuple[ObjectChange, ...] = ()
    blocked: tuple[str, ...] = ()  # why a plan was refused as a whole (prune guard, no swarm yet)
    engine_ok: bool = True
    applied_ok: bool = True  # every engine answered and every change was made

    @classmethod
    def of(cls, outcome: PassOutcome, good: str | None) -> PassFacts:
        return cls(
            good=good,
            statuses=outcome.statuses,
            changes=tuple(outcome.changes),
            blocked=tuple(outcome.blocked),
            engine_ok=outcome.engine_ok,
            applied_ok=outcome.applied_ok,
        )

    @property
    def services(self) -> frozenset[Key]:
        """The services this pass created or updated."""
        return frozenset(c.key for c in self.changes if c.ok and c.key.kind == SERVICE and c.reason not in CLEANUPS)


# -- events: what a decision has the source log ----------------------------------------------------


@dataclass(frozen=True)
class Applied:
    revision: str
    level: ClassVar[int] = logging.INFO

    def message(self, describe: Describe) -> str:
        return f"revision {describe(self.revision)} applied"


@dataclass(frozen=True)
class Converged:
    revision: str
    level: ClassVar[int] = logging.INFO

    def message(self, describe: Describe) -> str:
        return f"revision {describe(self.revision)} released: its services converged"


@dataclass(frozen=True)
class Failed:
    revision: str
    why: str
    rollback_on_failure: bool
    rollback_to: str | None  # the earlier released revision to re-apply; None: nothing is re-applied
    level: ClassVar[int] = logging.ERROR

    def message(self, describe: Describe) -> str:
        text = f"release of revision {self.revision[:12]} failed: {self.why}"
        if not self.rollback_on_failure:
            return text
        if self.rollback_to is None:
            return f"{text}; no earlier revision converged, nothing to roll back to"
        return f"{text}; re-applying revision {self.rollback_to[:12]} (--rollback-on-failure)"


Event = Applied | Converged | Failed


@dataclass(frozen=True)
class Progress:
    """Where a release stands after a pass: converged, failed (and why), or still pending."""

    converged: bool = False
    failure: str | None = None
    pending: tuple[str, ...] = ()  # services not converged yet, with their running/desired counts


@dataclass(frozen=True)
class Decision:
    revisions: Revisions
    release: Release | None
    apply_problem: str | None
    events: tuple[Event, ...] = ()

    @property
    def rollback(self) -> bool:
        """A release failed and an earlier revision is to be re-applied: have a pass now."""
        return any(isinstance(e, Failed) and e.rollback_to is not None for e in self.events)


# -- the decisions -------------------------------------------------------------------------------


def _copy(revisions: Revisions) -> Revisions:
    return replace(revisions, failed=dict(revisions.failed))


def attempt(revisions: Revisions, policy: Policy) -> str | None:
    """The revision a pass is to apply."""
    head = revisions.fetched
    if head is not None and head in revisions.failed and policy.rollback_on_failure and revisions.released:
        return revisions.released  # the failed commit is not applied again
    return head


def follow(release: Release, statuses: Mapping[Key, ObjectStatus], now: float, timeout: float) -> Progress:
    """The release, judged by the statuses a pass read."""
    pending: list[str] = []
    for key in sorted(release.changed, key=str):
        status = statuses.get(key)
        ready = status.condition(READY) if status is not None else None
        if ready is not None and ready.reason in FAILED_READY:
            return Progress(failure=f"{key.name}: {ready.message}")
        if ready is None or ready.status != "True":
            detail = getattr(status, "ready", None)
            pending.append(key.name + (f" ({detail} running)" if detail else ""))
    if not pending:
        return Progress(converged=True)
    if now >= release.deadline:
        return Progress(failure=f"not converged within {timeout:.0f}s: {', '.join(pending)}", pending=tuple(pending))
    return Progress(pending=tuple(pending))


def reverted(release: Release, changes: Iterable[ObjectChange]) -> str | None:
    """Why the release failed, if a pass found one of its services back at another spec: swarm rolled
    it back (the previous spec carries the previous labels), and the pass has put it forward again."""
    for c in changes:
        if c.key.kind == SERVICE and c.reason == "changed" and c.key in release.changed:
            return f"{c.swarm_name} was rolled back by swarm"
    return None


def fail(revisions: Revisions, revision: str, why: str, policy: Policy) -> tuple[Revisions, Failed]:
    """The revisions once ``revision``'s release failed, and what to do about it."""
    out = _copy(revisions)
    out.failed[revision] = why
    rollback_to = revisions.released if policy.rollback_on_failure else None
    return out, Failed(revision, why, policy.rollback_on_failure, rollback_to)


def apply_problem(facts: PassFacts) -> str | None:
    """What kept the pass from applying every change, for the Applied condition."""
    if facts.blocked:
        return facts.blocked[0]
    if not facts.engine_ok:
        return "the engine is unavailable"
    if not facts.applied_ok:
        return "some changes failed (see the objects' status)"
    return None


def start(
    release: Release | None, revisions: Revisions, good: str, services: frozenset[Key], now: float, timeout: float
) -> Release | None:
    """The release to follow once a pass applied ``good``: its own (started now, or going on with the
    services this pass changed added), or none when ``good`` is released or failed already."""
    if good == revisions.released or good in revisions.failed:
        return None
    if release is None or release.revision != good:
        release = Release(good, now + timeout)
    return replace(release, changed=release.changed | services)


def after_pass(revisions: Revisions, release: Release | None, facts: PassFacts, policy: Policy, now: float) -> Decision:
    """Everything a pass's outcome decides, in order: the release followed on the statuses read,
    then what kept the pass from applying, a revert, the revision applied and the release started."""
    events: list[Event] = []
    revs = _copy(revisions)
    if release is not None and release.revision == facts.good:
        progress = follow(release, facts.statuses, now, policy.timeout)
        if progress.converged:
            revs.released, release = release.revision, None
            events.append(Converged(revs.released))
        elif progress.failure is not None:
            revs, failed = fail(revs, release.revision, progress.failure, policy)
            release = None
            events.append(failed)
    problem = apply_problem(facts)
    if release is not None and release.revision == facts.good:
        why = reverted(release, facts.changes)
        if why is not None:
            revs, failed = fail(revs, release.revision, why, policy)
            release = None
            events.append(failed)
    if facts.good is not None and facts.applied_ok:
        if revs.applied != facts.good:
            events.append(Applied(facts.good))
        revs.applied = facts.good
        release = start(release, revs, facts.good, facts.services, now, policy.timeout)
    return Decision(revs, release, problem, tuple(events))


# -- conditions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceView:
    """What a Git source's conditions are made of."""

    ref: str
    revisions: Revisions
    good: str | None = None  # the revision whose specs are applied (the last valid one)
    fetch_error: str | None = None
    spec_errors: int = 0  # errors of the attempted revision
    apply_problem: str | None = None
    release: Release | None = None
    suspended: bool = False
    policy: Policy = field(default_factory=Policy)


def conditions(view: SourceView, at: datetime) -> list[Condition]:
    """Ready first (True only when every other condition is), then Fetched, Valid, Applied, Released;
    ``at`` is the transition time of a condition whose status changed."""
    states = {
        "Fetched": _fetched(view),
        "Valid": _valid(view),
        "Applied": _applied(view),
        "Released": _released(view),
    }
    out = [condition(type_, *state, at=at) for type_, state in states.items() if state is not None]
    out.insert(0, condition(READY, *_ready(out, view.revisions), at=at))
    return out


# Each condition as (status, reason, message); None: not shown (nothing to say yet).


def _fetched(view: SourceView) -> tuple[ConditionStatus, str, str]:
    revs = view.revisions
    if view.fetch_error:
        return "False", "FetchFailed", view.fetch_error
    if revs.fetched:
        return "True", "Fetched", f"{view.ref} is at {revs.fetched[:12]}"
    return "Unknown", "NotFetched", ""


def _valid(view: SourceView) -> tuple[ConditionStatus, str, str] | None:
    revs = view.revisions
    if view.spec_errors and revs.attempted:
        kept = f"revision {view.good[:12]} stays applied" if view.good else "nothing is applied"
        return "False", "InvalidSpec", f"revision {revs.attempted[:12]} has {view.spec_errors} errors; {kept}"
    if revs.attempted:
        return "True", "Valid", f"revision {revs.attempted[:12]}"
    return None


def _applied(view: SourceView) -> tuple[ConditionStatus, str, str] | None:
    revs = view.revisions
    if view.suspended:
        return "False", "Suspended", "applying is suspended (--suspend)"
    if view.apply_problem:
        return "False", "ApplyFailed", view.apply_problem
    if revs.applied:
        return "True", "Applied", f"revision {revs.applied[:12]}"
    return None


def _released(view: SourceView) -> tuple[ConditionStatus, str, str] | None:
    revs = view.revisions
    head_failed = revs.failed.get(revs.fetched or "")
    if view.release is not None:
        return "Unknown", "Progressing", f"revision {view.release.revision[:12]} rolling out"
    if head_failed is not None and revs.fetched:
        failed = f"revision {revs.fetched[:12]} failed: {head_failed}"
        if view.policy.rollback_on_failure and revs.released and revs.applied == revs.released:
            return "False", "RolledBack", f"{failed}; revision {revs.released[:12]} re-applied"
        return "False", "ReleaseFailed", failed
    if revs.released:
        return "True", "Converged", f"revision {revs.released[:12]}"
    return None


def _ready(others: list[Condition], revs: Revisions) -> tuple[ConditionStatus, str, str]:
    """True when every other condition is; else False, naming those that are not."""
    waiting = [f"{c.type}: {c.message or c.reason}" for c in others if c.status != "True"]
    if waiting:
        return "False", "NotSynced", "; ".join(waiting)
    return "True", "Synced", f"revision {(revs.applied or '')[:12]}"
