"""One reconcile pass: observe → desired → plan → apply → observe → status.

Level-triggered: whatever woke the caller (a command, a file, an event, a timer), the pass
starts from the current state of the swarm and the full set of specs, never from the event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..api import ObjectStatus
from ..loading import Manifest
from ..swarm import labels as L
from ..swarm.connect import EngineClient
from ..swarm.observe import Key, SwarmState, observe
from .apply import ApplyReport, StepResult, apply_plan
from .desired import Desired, resolve_desired
from .plan import Plan, make_plan
from .status import Change, compute_statuses

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    prune: bool = False
    force: bool = False
    dry_run: bool = False
    source: str = L.DEFAULT_SOURCE
    dependency_timeout: float = 300.0
    revision: str | None = None  # labelled on what this pass changes (e.g. a Git commit)


@dataclass
class Outcome:
    plan: Plan
    report: ApplyReport
    state: SwarmState
    desired: Desired
    statuses: dict[Key, ObjectStatus] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def errors(self) -> dict[Key, str]:
        out = {e.key: e.message for e in self.plan.errors if e.key is not None}
        out.update(self.report.errors_by_key())
        return out

    @property
    def ok(self) -> bool:
        return not self.plan.blocked and not self.plan.errors and not self.report.failed

    @property
    def changed(self) -> set[Key]:
        return {r.step.key for r in self.report.results if r.ok and not r.skipped}

    def changes(self) -> dict[Key, Change]:
        """Per object, what this pass did: creations and updates win over removals of old versions."""
        out: dict[Key, Change] = {}
        for r in self.report.results:
            if not r.ok or r.skipped or r.step.reason in ("superseded", "pruned"):
                continue
            out[r.step.key] = Change(r.step.reason, tuple(c.path for c in r.step.changes))
        return out

    @property
    def drift(self) -> list[StepResult]:
        return [r for r in self.report.results if r.ok and r.step.reason == "drift"]


def reconcile(
    client: EngineClient,
    manifests: Sequence[Manifest],
    options: Options = Options(),
    *,
    on_result: Callable[[StepResult], None] | None = None,
) -> Outcome:
    started = time.monotonic()
    state = observe(client)
    desired = resolve_desired(manifests, state, source=options.source, revision=options.revision)
    plan = make_plan(desired, state, prune=options.prune, force=options.force, source=options.source)
    report = ApplyReport()
    if not options.dry_run and not plan.blocked and not plan.empty:
        report = apply_plan(client, plan, state, dependency_timeout=options.dependency_timeout, on_result=on_result)
        # Status must show what the swarm holds after the changes, so read it once more.
        state = observe(client)
        desired = resolve_desired(manifests, state, source=options.source, revision=options.revision)
    outcome = Outcome(plan, report, state, desired, duration=time.monotonic() - started)
    if not options.dry_run:
        outcome.statuses = compute_statuses(manifests, state, desired, outcome.errors, changes=outcome.changes())
    return outcome
