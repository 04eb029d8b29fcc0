"""One reconcile pass: observe → desired → plan → apply → observe → status.

A SwarmCluster with ``spec.nodes`` among the manifests is reconciled first (engine/cluster.py):
the swarm is formed and kept in shape before any object is applied to it.

Level-triggered: whatever woke the caller (a command, a file, an event, a timer), the pass
starts from the current state of the swarm and the full set of specs, never from the event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..api import Key, ObjectStatus
from ..loading import Manifest
from ..swarm import labels as L
from ..swarm.connect import EngineClient
from ..swarm.observe import SwarmState, observe
from .apply import ApplyReport, StepResult, apply_plan
from .cluster import ClusterOutcome, has_nodes, reconcile_clusters
from .desired import Desired, resolve_desired
from .images import RESOLVE_INTERVAL, pin_images
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
    adopt: bool = False  # take over objects made outside swarmkeeper under the same names (adopt.py)
    # Read the swarm again after the changes and compute each object's status: what the controllers
    # write back. A one-shot apply or diff prints the plan and results only, and saves the work.
    status: bool = True
    image_interval: float = RESOLVE_INTERVAL  # a registry's answer on a tag's digest is kept this long


@dataclass
class Outcome:
    plan: Plan
    report: ApplyReport
    state: SwarmState
    desired: Desired
    statuses: dict[Key, ObjectStatus] = field(default_factory=dict)
    duration: float = 0.0
    clusters: list[ClusterOutcome] = field(default_factory=list)  # swarms formed/kept by this pass

    @property
    def errors(self) -> dict[Key, str]:
        out = {e.key: e.message for e in self.plan.errors if e.key is not None}
        out.update(self.report.errors_by_key())
        return out

    @property
    def ok(self) -> bool:
        clusters_ok = all(c.ok for c in self.clusters)
        return (
            clusters_ok
            and not self.plan.blocked
            and not self.plan.errors
            and not self.plan.held
            and not self.report.failed
        )

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
    def waiting(self) -> dict[Key, str]:
        """Objects left for a later pass until what they depend on converges, and why."""
        return {r.step.key: r.error or "" for r in self.report.results if r.deferred and r.step.action != "delete"}

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
    # -- the swarm itself (SwarmCluster with spec.nodes), before the objects that live in it --
    clusters = reconcile_clusters(manifests, dry_run=options.dry_run)
    manifests = [m for m in manifests if not has_nodes(m)]
    formed = all(c.swarm_ready for c in clusters)
    # -- the objects --
    # No swarm yet (a dry run before bootstrap, or a bootstrap that failed): plan against an empty one.
    state = observe(client) if formed else SwarmState([], [], [], [], [])
    pins = pin_images(client, manifests, state.managed_services, interval=options.image_interval) if formed else {}
    desired = resolve_desired(
        manifests, state, source=options.source, revision=options.revision, adopt=options.adopt, pins=pins
    )
    plan = make_plan(
        desired, state, prune=options.prune, force=options.force, source=options.source, adopt=options.adopt
    )
    if not formed and not options.dry_run:
        plan.blocked = "the cluster has no swarm yet, so its objects wait (see the cluster's errors)"
    report = ApplyReport()
    if not options.dry_run and not plan.blocked and not plan.empty:
        takeovers = [s for s in plan.steps if s.reason == "adopt" and s.type in ("secret", "config")]
        if takeovers:
            # Whether services keep an adopted secret/config or move to a new version of it is known
            # only once swarm has compared the values: take those over first, then plan again.
            report = apply_plan(client, Plan(steps=takeovers), state, on_result=on_result)
            state = observe(client)
            desired = resolve_desired(
                manifests, state, source=options.source, revision=options.revision, adopt=options.adopt, pins=pins
            )
            plan = make_plan(
                desired, state, prune=options.prune, force=options.force, source=options.source, adopt=options.adopt
            )
        report.results += apply_plan(
            client, plan, state, dependency_timeout=options.dependency_timeout, on_result=on_result
        ).results
        if takeovers:  # the plan as carried out, takeovers included (numbered after the rest)
            for i, step in enumerate(takeovers):
                step.index = len(plan.steps) + i
            plan.steps[:0] = takeovers
        if options.status:  # status must show what the swarm holds after the changes: read it once more
            state = observe(client)
            desired = resolve_desired(manifests, state, source=options.source, revision=options.revision, pins=pins)
    outcome = Outcome(plan, report, state, desired, duration=time.monotonic() - started, clusters=clusters)
    if options.dry_run and options.status:  # the swarm as it is: nothing was tried, so nothing failed
        outcome.statuses = compute_statuses(manifests, state, desired, {})
    elif options.status:
        outcome.statuses = compute_statuses(
            manifests,
            state,
            desired,
            outcome.errors,
            changes=outcome.changes(),
            waiting=outcome.waiting,
            held=outcome.plan.held,
        )
        outcome.statuses.update({c.key: c.status for c in clusters})
    return outcome
