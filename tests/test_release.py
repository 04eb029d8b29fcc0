"""A Git source's release decisions without engines or repositories.

controller/release.py is pure (revisions + what a pass did + the time → a decision), so every rule
is pinned down here on hand-made passes: which revision is attempted, when a release starts, how
it converges or fails, what a failure re-applies, and the conditions each state reports.
tests/test_git_sync.py shows the same rules on real engines and repositories.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from swarmkeeper.api import Condition, ConditionStatus, Key, ObjectStatus, ServiceStatus
from swarmkeeper.controller.release import (
    Applied,
    Converged,
    Decision,
    Failed,
    PassFacts,
    Policy,
    Release,
    SourceView,
    after_pass,
    apply_problem,
    attempt,
    conditions,
    fail,
    follow,
    reverted,
    start,
)
from swarmkeeper.engine.conditions import condition
from swarmkeeper.engine.run import ObjectChange, PassOutcome
from swarmkeeper.sources.sync_status import Revisions

A, B, C = "a" * 40, "b" * 40, "c" * 40
WEB = Key("SwarmService", "shop", "web")
API = Key("SwarmService", "shop", "api")
CONF = Key("SwarmConfig", "shop", "app-conf")
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROLLBACK = Policy(rollback_on_failure=True, timeout=60.0)
PLAIN = Policy(timeout=60.0)


def change(
    key: Key = WEB, reason: str = "changed", *, ok: bool = True, action: str = "update", deferred: bool = False
) -> ObjectChange:
    return ObjectChange(
        key=key,
        cluster=None,
        action=action,
        reason=reason,
        swarm_name=f"{key.namespace}_{key.name}",
        fields=(),
        ok=ok,
        deferred=deferred,
        error=None if ok else "boom",
    )


def service(status: ConditionStatus, reason: str, message: str = "", ready: str | None = None) -> ServiceStatus:
    return ServiceStatus(conditions=[condition("Ready", status, reason, message)], ready=ready)


CONVERGED = service("True", "Converged", ready="1/1")
UPDATING = service("False", "Updating", "update in progress", ready="0/1")


def applied(good: str, *changes: ObjectChange, **statuses: ObjectStatus) -> PassFacts:
    keys = {"web": WEB, "api": API}
    return PassFacts(good=good, changes=changes, statuses={keys[k]: v for k, v in statuses.items()})


def by_type(conds: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conds}


# -- which revision ------------------------------------------------------------------------------


def test_attempt_is_the_fetched_head() -> None:
    assert attempt(Revisions(), ROLLBACK) is None
    assert attempt(Revisions(fetched=B, released=A), ROLLBACK) == B


def test_a_failed_head_is_not_attempted_again_with_rollback_on_failure() -> None:
    revs = Revisions(fetched=B, released=A, failed={B: "web: rolled back"})
    assert attempt(revs, ROLLBACK) == A
    # without the option the head stays what is applied; with nothing released there is no way back
    assert attempt(revs, PLAIN) == B
    assert attempt(replace(revs, released=None), ROLLBACK) == B


def test_a_failed_head_starts_no_new_release() -> None:
    revs = Revisions(fetched=B, applied=B, failed={B: "web: rolled back"})
    decision = after_pass(revs, None, applied(B, change()), PLAIN, now=10.0)
    assert decision.release is None and decision.events == ()
    assert decision.revisions.failed == {B: "web: rolled back"}


# -- the start of a release ----------------------------------------------------------------------


def test_an_applied_revision_starts_a_release_of_the_services_it_changed() -> None:
    facts = applied(B, change(WEB), change(CONF, action="create", reason="missing"), change(API, "superseded"))
    decision = after_pass(Revisions(fetched=B, released=A, applied=A), None, facts, PLAIN, now=100.0)
    assert decision.events == (Applied(B),)
    assert decision.revisions.applied == B and decision.revisions.released == A
    assert decision.release == Release(B, deadline=160.0, changed=frozenset({WEB}))
    assert decision.apply_problem is None and not decision.rollback


def test_a_release_going_on_adds_what_later_passes_change_and_keeps_its_deadline() -> None:
    release = Release(B, 160.0, frozenset({WEB}))
    assert start(release, Revisions(applied=B), B, frozenset({API}), now=120.0, timeout=60.0) == Release(
        B, 160.0, frozenset({WEB, API})
    )
    # a newer revision supersedes it
    assert start(release, Revisions(applied=C), C, frozenset(), now=120.0, timeout=60.0) == Release(C, 180.0)
    # a revision released or failed already is no release; one of another revision is over too
    assert start(release, Revisions(released=A), A, frozenset({WEB}), now=120.0, timeout=60.0) is None
    assert start(None, Revisions(failed={C: "x"}), C, frozenset({WEB}), now=120.0, timeout=60.0) is None


def test_services_of_a_pass_are_those_created_or_updated() -> None:
    facts = applied(
        B,
        change(WEB, "missing", action="create"),
        change(API, ok=False),
        change(Key("SwarmService", "shop", "old"), "pruned", action="delete"),
        change(CONF, "changed"),
    )
    assert facts.services == frozenset({WEB})


def test_no_applied_revision_while_changes_fail_or_engines_are_away() -> None:
    revs = Revisions(fetched=B, applied=A, released=A)
    for facts, problem in [
        (replace(applied(B, change()), applied_ok=False), "some changes failed (see the objects' status)"),
        (replace(applied(B), engine_ok=False, applied_ok=False), "the engine is unavailable"),
        (replace(applied(B), blocked=("prune would delete 3 of 4 objects",), applied_ok=False), "prune would"),
    ]:
        decision = after_pass(revs, None, facts, PLAIN, now=0.0)
        assert decision.revisions.applied == A and decision.release is None and decision.events == ()
        assert (decision.apply_problem or "").startswith(problem)
    assert apply_problem(PassFacts(good=None)) is None


def test_pass_facts_of_an_outcome() -> None:
    outcome = PassOutcome(spec_errors=[])
    facts = PassFacts.of(outcome, B)
    assert facts == PassFacts(good=B, statuses={}, changes=(), blocked=(), engine_ok=True, applied_ok=True)


# -- following a release -------------------------------------------------------------------------


def test_a_release_converges_when_its_services_are_ready() -> None:
    release = Release(B, 160.0, frozenset({WEB, API}))
    revs = Revisions(fetched=B, applied=B, released=A)
    pending = after_pass(revs, release, applied(B, web=CONVERGED, api=UPDATING), PLAIN, now=120.0)
    assert pending.release == release and pending.events == () and pending.revisions == revs
    assert follow(release, {WEB: CONVERGED, API: UPDATING}, 120.0, 60.0).pending == ("api (0/1 running)",)
    done = after_pass(revs, release, applied(B, web=CONVERGED, api=CONVERGED), PLAIN, now=130.0)
    assert done.events == (Converged(B),)
    assert done.revisions.released == B and done.release is None
    assert "released: its services converged" in Converged(B).message(lambda r: r[:7])


def test_only_the_services_of_the_release_count() -> None:
    other = service("False", "RolledBack", "rolled back by an earlier release")
    progress = follow(Release(B, 160.0, frozenset({WEB})), {WEB: CONVERGED, API: other}, 100.0, 60.0)
    assert progress.converged


def test_a_service_paused_or_rolled_back_by_swarm_fails_the_release() -> None:
    release = Release(B, 160.0, frozenset({WEB}))
    for reason in ("UpdatePaused", "RolledBack"):
        status = service("False", reason, "update out of sequence")
        decision = after_pass(Revisions(fetched=B, applied=B), release, applied(B, web=status), PLAIN, now=120.0)
        assert decision.events == (Failed(B, "web: update out of sequence", False, None),)
        assert decision.revisions.failed == {B: "web: update out of sequence"}
        assert decision.release is None and not decision.rollback


def test_a_release_not_converged_in_time_fails() -> None:
    release = Release(B, 160.0, frozenset({WEB, API}))
    facts = applied(B, web=CONVERGED, api=UPDATING)
    assert after_pass(Revisions(applied=B), release, facts, PLAIN, now=159.9).release == release
    decision = after_pass(Revisions(applied=B), release, facts, PLAIN, now=160.0)
    assert decision.revisions.failed == {B: "not converged within 60s: api (0/1 running)"}
    # a service without status yet is pending too
    assert follow(release, {WEB: CONVERGED}, 200.0, 60.0).failure == "not converged within 60s: api"


def test_a_revert_found_by_a_later_pass_fails_the_release() -> None:
    release = Release(B, 160.0, frozenset({WEB}))
    assert reverted(release, [change(WEB)]) == "shop_web was rolled back by swarm"
    assert reverted(release, [change(API), change(WEB, "drift"), change(CONF)]) is None
    decision = after_pass(Revisions(applied=B, released=A), release, applied(B, change(WEB)), ROLLBACK, now=120.0)
    assert decision.events == (Failed(B, "shop_web was rolled back by swarm", True, A),)
    # the pass did apply B (again): it is what the swarm has until the rollback's pass
    assert decision.revisions.applied == B and decision.release is None and decision.rollback


def test_the_release_of_another_revision_is_not_followed() -> None:
    release = Release(B, 160.0, frozenset({WEB}))
    failing = service("False", "RolledBack", "rolled back")
    decision = after_pass(Revisions(applied=B), release, PassFacts(good=C, statuses={WEB: failing}), PLAIN, 200.0)
    assert decision.revisions.failed == {}
    assert decision.release == Release(C, 260.0)  # C was applied: its own release starts


# -- failures, with and without a way back ------------------------------------------------------


def test_failure_with_rollback_re_applies_the_last_released_revision() -> None:
    revs, event = fail(Revisions(applied=B, released=A), B, "web: rolled back", ROLLBACK)
    assert revs.failed == {B: "web: rolled back"} and event.rollback_to == A
    assert Decision(revs, None, None, (event,)).rollback
    assert event.level == logging.ERROR
    assert event.message(str) == (
        f"release of revision {B[:12]} failed: web: rolled back; re-applying revision {A[:12]} (--rollback-on-failure)"
    )


def test_failure_with_rollback_but_nothing_released_before() -> None:
    _, event = fail(Revisions(applied=B), B, "web: rolled back", ROLLBACK)
    assert event.rollback_to is None and not Decision(Revisions(), None, None, (event,)).rollback
    assert event.message(str).endswith("; no earlier revision converged, nothing to roll back to")


def test_failure_without_rollback_only_reports() -> None:
    _, event = fail(Revisions(applied=B, released=A), B, "web: rolled back", PLAIN)
    assert event.rollback_to is None
    assert event.message(str) == f"release of revision {B[:12]} failed: web: rolled back"


def test_decisions_leave_their_inputs_alone() -> None:
    revs = Revisions(fetched=B, applied=B, released=A)
    release = Release(B, 160.0, frozenset({WEB}))
    after_pass(revs, release, applied(B, web=service("False", "RolledBack", "x")), ROLLBACK, now=120.0)
    assert revs == Revisions(fetched=B, applied=B, released=A) and revs.failed == {}


# -- conditions ----------------------------------------------------------------------------------


def view(**kw: object) -> SourceView:
    return SourceView(ref="main", **kw)  # type: ignore[arg-type]


def test_conditions_before_the_first_fetch() -> None:
    conds = conditions(view(revisions=Revisions()), AT)
    assert [c.type for c in conds] == ["Ready", "Fetched"]
    ready, fetched = conds
    assert (fetched.status, fetched.reason) == ("Unknown", "NotFetched")
    assert (ready.status, ready.reason, ready.message) == ("False", "NotSynced", "Fetched: NotFetched")
    assert all(c.last_transition_time == AT for c in conds)


def test_conditions_of_a_synced_and_released_revision() -> None:
    conds = by_type(conditions(view(revisions=Revisions(fetched=A, attempted=A, applied=A, released=A), good=A), AT))
    assert list(conds) == ["Ready", "Fetched", "Valid", "Applied", "Released"]
    assert all(c.status == "True" for c in conds.values())
    assert conds["Ready"].reason == "Synced" and conds["Ready"].message == f"revision {A[:12]}"
    assert conds["Fetched"].message == f"main is at {A[:12]}"
    assert (conds["Released"].reason, conds["Applied"].reason) == ("Converged", "Applied")


def test_conditions_of_a_fetch_failure() -> None:
    conds = by_type(conditions(view(revisions=Revisions(fetched=A), fetch_error="cannot reach origin"), AT))
    assert (conds["Fetched"].status, conds["Fetched"].reason) == ("False", "FetchFailed")
    assert conds["Ready"].message == "Fetched: cannot reach origin"


def test_conditions_of_an_invalid_revision() -> None:
    revs = Revisions(fetched=B, attempted=B, applied=A, released=A)
    conds = by_type(conditions(view(revisions=revs, good=A, spec_errors=2), AT))
    assert (conds["Valid"].status, conds["Valid"].reason) == ("False", "InvalidSpec")
    assert conds["Valid"].message == f"revision {B[:12]} has 2 errors; revision {A[:12]} stays applied"
    assert conds["Ready"].status == "False" and conds["Ready"].message.startswith("Valid: revision")
    nothing = by_type(conditions(view(revisions=Revisions(fetched=B, attempted=B), spec_errors=1), AT))
    assert nothing["Valid"].message.endswith("; nothing is applied")


def test_conditions_while_suspended_or_not_applied() -> None:
    revs = Revisions(fetched=A, attempted=A, applied=A, released=A)
    suspended = by_type(conditions(view(revisions=revs, suspended=True, apply_problem="ignored"), AT))
    assert (suspended["Applied"].status, suspended["Applied"].reason) == ("False", "Suspended")
    failed = by_type(conditions(view(revisions=revs, apply_problem="the engine is unavailable"), AT))
    assert (failed["Applied"].reason, failed["Applied"].message) == ("ApplyFailed", "the engine is unavailable")
    assert failed["Ready"].message == "Applied: the engine is unavailable"


def test_conditions_of_a_release_rolling_out() -> None:
    revs = Revisions(fetched=B, attempted=B, applied=B, released=A)
    conds = by_type(conditions(view(revisions=revs, release=Release(B, 1.0)), AT))
    assert (conds["Released"].status, conds["Released"].reason) == ("Unknown", "Progressing")
    assert conds["Ready"].message == f"Released: revision {B[:12]} rolling out"


def test_conditions_of_a_failed_release() -> None:
    revs = Revisions(fetched=B, attempted=B, applied=B, released=A, failed={B: "web: rolled back"})
    conds = by_type(conditions(view(revisions=revs, policy=PLAIN), AT))
    assert (conds["Released"].status, conds["Released"].reason) == ("False", "ReleaseFailed")
    assert conds["Released"].message == f"revision {B[:12]} failed: web: rolled back"
    # with rollback on failure, until the last released revision is applied again
    assert by_type(conditions(view(revisions=revs, policy=ROLLBACK), AT))["Released"].reason == "ReleaseFailed"


def test_conditions_once_a_failed_release_was_rolled_back() -> None:
    revs = Revisions(fetched=B, attempted=A, applied=A, released=A, failed={B: "web: rolled back"})
    conds = by_type(conditions(view(revisions=revs, good=A, policy=ROLLBACK), AT))
    assert (conds["Released"].status, conds["Released"].reason) == ("False", "RolledBack")
    assert conds["Released"].message == f"revision {B[:12]} failed: web: rolled back; revision {A[:12]} re-applied"
    assert conds["Ready"].status == "False" and "Released: revision" in conds["Ready"].message
    # a newer head is a new chance: the failure is the old head's, no longer reported
    newer = by_type(conditions(view(revisions=replace(revs, fetched=C), good=A, policy=ROLLBACK), AT))
    assert newer["Released"].reason == "Converged"
