"""The pure core without an engine: plans, statuses, progress and conditions.

Specs are loaded from YAML files as every front door loads them; the swarm is a ``SwarmState``
built from dicts shaped like the Engine API's answers (what ``observe`` would have listed after
the plan's steps ran). Nothing here connects to anything.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from swarmkeeper.api import Condition, ConditionStatus, Key, ObjectStatus, ServiceStatus
from swarmkeeper.controller.engine_events import relevant
from swarmkeeper.engine import conditions as C
from swarmkeeper.engine.desired import resolve_desired
from swarmkeeper.engine.fingerprint import fingerprint
from swarmkeeper.engine.plan import Plan, make_plan
from swarmkeeper.engine.progress import service_progress
from swarmkeeper.engine.status import Change, compute_statuses, merge_status
from swarmkeeper.loading import Manifest, load_paths
from swarmkeeper.swarm import labels as L
from swarmkeeper.swarm.build import bind_ids
from swarmkeeper.swarm.observe import Obj, SwarmState

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EARLIER = "2025-12-01T00:00:00Z"
HEADER = "apiVersion: swarmkeeper.io/v1alpha1\n"

SPECS = {
    "backend.yaml": """
kind: SwarmNetwork
metadata: {name: backend, namespace: shop}
spec: {driver: overlay, attachable: true}
""",
    "token.yaml": """
kind: SwarmSecret
metadata: {name: token, namespace: shop}
spec: {stringData: s3cret, keepVersions: 0}
""",
    "settings.yaml": """
kind: SwarmConfig
metadata: {name: settings, namespace: shop}
spec: {stringData: "level=debug"}
""",
    "db.yaml": """
kind: SwarmService
metadata: {name: db, namespace: shop}
spec:
  image: local/busybox:1
  args: [sleep, "3600"]
  replicas: 1
  networks: [{name: backend}]
  secrets: [{source: token}]
""",
    "web.yaml": """
kind: SwarmService
metadata: {name: web, namespace: shop}
spec:
  image: local/busybox:1
  args: [sleep, "3600"]
  replicas: 2
  networks: [{name: backend}]
  configs: [{source: settings}]
  dependsOn: [db]
""",
    "cache.yaml": """
kind: SwarmService
metadata: {name: cache, namespace: shop}
spec:
  image: local/busybox:1
  args: [sleep, "3600"]
  replicas: 1
""",
}

DB, WEB, CACHE = (Key("SwarmService", "shop", n) for n in ("db", "web", "cache"))
BACKEND = Key("SwarmNetwork", "shop", "backend")
TOKEN = Key("SwarmSecret", "shop", "token")
SETTINGS = Key("SwarmConfig", "shop", "settings")


# -- specs and swarm states ----------------------------------------------------------------------


def load(folder: Path, specs: Mapping[str, str] = SPECS, **changed: str) -> list[Manifest]:
    """The manifests of ``specs`` (file name → YAML), with ``changed`` (stem → YAML) in place."""
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    for name, text in {**specs, **{f"{stem}.yaml": text for stem, text in changed.items()}}.items():
        (folder / name).write_text(HEADER + text.lstrip())
    result = load_paths([folder])
    assert result.ok, [str(e) for e in result.errors]
    return result.manifests


def without(*names: str) -> dict[str, str]:
    return {f: text for f, text in SPECS.items() if f.removesuffix(".yaml") not in names}


def empty() -> SwarmState:
    return SwarmState(services=[], tasks=[], networks=[], secrets=[], configs=[])


def plan_for(manifests: list[Manifest], state: SwarmState, **kw: Any) -> Plan:
    return make_plan(resolve_desired(manifests, state), state, **kw)


def levels(plan: Plan) -> list[list[str]]:
    return [sorted(f"{s.action} {s.type} {s.swarm_name}" for s in level) for level in plan.levels()]


@functools.cache
def _fingerprint(data: str) -> str:  # salted scrypt: derived once per value, not once per test
    return fingerprint(base64.b64decode(data))


def task(
    service: Obj,
    slot: int,
    state: str = "running",
    *,
    desired: str = "running",
    err: str | None = None,
    at: str = "2026-01-02T03:00:00.123456789Z",
    template: Obj | None = None,
) -> Obj:
    """A task of ``service`` as ``GET /tasks`` lists it (its spec: the service's task template)."""
    status: Obj = {"State": state, "Message": state, "Timestamp": at}
    if err is not None:
        status["Err"] = err
    return {
        "ID": f"{service['ID']}x{slot}x{state}".ljust(25, "0"),
        "ServiceID": service["ID"],
        "NodeID": "node0000001",
        "Slot": slot,
        "DesiredState": desired,
        "Status": status,
        "Spec": copy.deepcopy(template if template is not None else service["Spec"]["TaskTemplate"]),
    }


def engine_after(plan: Plan) -> SwarmState:
    """What an engine holds once ``plan`` (creations, from an empty swarm) has run: names bound to
    IDs, values fingerprinted, every service's replicas running its task template."""
    ids: dict[str, str] = {}
    state: dict[str, list[Obj]] = {"network": [], "secret": [], "config": [], "service": [], "task": []}
    for level in plan.levels():
        for step in level:
            assert step.action == "create" and step.payload is not None, step.describe()
            object_id = ids[step.swarm_name] = f"{step.type[:3]}{len(ids):022d}"
            payload = step.payload
            if step.type == "network":
                net = {k: v for k, v in payload.items() if k != "CheckDuplicate"}
                net |= {"Id": object_id, "Ingress": False, "IPAM": {"Driver": "default", "Config": []}}
                state["network"].append(net)
            elif step.type in ("secret", "config"):
                spec: Obj = {"Name": payload["Name"], "Labels": {**payload["Labels"]}}
                spec["Labels"][L.FINGERPRINT] = _fingerprint(payload["Data"])
                if step.type == "config":  # the engine hands back a config's data, never a secret's
                    spec["Data"] = payload["Data"]
                state[step.type].append({"ID": object_id, "Version": {"Index": 11}, "Spec": spec})
            else:
                bound = bind_ids(payload, ids, ids)
                template = bound["TaskTemplate"]
                template["Networks"] = [{**n, "Target": ids[n["Target"]]} for n in template.get("Networks", [])]
                replicas = bound["Mode"]["Replicated"]["Replicas"]
                svc: Obj = {
                    "ID": object_id,
                    "Version": {"Index": 20},
                    "Spec": bound,
                    "ServiceStatus": {"RunningTasks": replicas, "DesiredTasks": replicas, "CompletedTasks": 0},
                }
                state["service"].append(svc)
                state["task"] += [task(svc, slot) for slot in range(1, replicas + 1)]
    return SwarmState(
        services=state["service"],
        tasks=state["task"],
        networks=state["network"],
        secrets=state["secret"],
        configs=state["config"],
    )


def with_tasks(state: SwarmState, key: Key, tasks: list[Obj]) -> SwarmState:
    """``state`` with the tasks of one service replaced."""
    sid = state.managed_services[key]["ID"]
    others = [t for t in state.tasks if t["ServiceID"] != sid]
    return SwarmState(state.services, [*others, *tasks], state.networks, state.secrets, state.configs)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    return tmp_path / "specs"


@pytest.fixture
def deployed(specs: Path) -> SwarmState:
    """The swarm after the specs were applied to an empty one."""
    return engine_after(plan_for(load(specs), empty()))


# -- make_plan -----------------------------------------------------------------------------------


def test_an_empty_swarm_gets_what_services_use_first_and_dependencies_before_dependents(specs: Path) -> None:
    plan = plan_for(load(specs), empty())
    assert not plan.errors and plan.blocked is None
    assert {s.reason for s in plan.steps} == {"missing"}
    # Independent steps share a level: the network, both values and the service that uses none.
    assert levels(plan) == [
        [
            "create config shop_settings-v1",
            "create network shop_backend",
            "create secret shop_token-v1",
            "create service shop_cache",
        ],
        ["create service shop_db"],
        ["create service shop_web"],
    ]
    step = {s.key: s for s in plan.steps}
    assert step[DB].after == {step[BACKEND].index, step[TOKEN].index}
    assert step[WEB].after == {step[BACKEND].index, step[SETTINGS].index, step[DB].index}
    assert step[WEB].wait_for == ["shop_db"] and step[DB].wait_for == []


def test_the_swarm_a_plan_leaves_behind_plans_nothing(specs: Path, deployed: SwarmState) -> None:
    plan = plan_for(load(specs), deployed)
    assert plan.empty and not plan.errors and not plan.orphans and not plan.unmanaged
    assert plan.levels() == []


def test_a_changed_field_updates_that_service_alone(specs: Path, deployed: SwarmState) -> None:
    manifests = load(specs, cache=SPECS["cache.yaml"].replace("replicas: 1", "replicas: 3"))
    plan = plan_for(manifests, deployed)
    assert [(s.action, s.key, s.reason) for s in plan.steps] == [("update", CACHE, "changed")]
    (step,) = plan.steps
    assert [c.path for c in step.changes] == ["Mode.Replicated.Replicas"]
    assert step.object_id == deployed.managed_services[CACHE]["ID"] and step.after == set()


def test_a_change_made_outside_swarmkeeper_is_drift(specs: Path, deployed: SwarmState) -> None:
    deployed.managed_services[WEB]["Spec"]["Mode"]["Replicated"]["Replicas"] = 5  # docker service scale
    plan = plan_for(load(specs), deployed)
    assert [(s.action, s.key, s.reason) for s in plan.steps] == [("update", WEB, "drift")]
    assert plan.steps[0].payload is not None and plan.steps[0].payload["Mode"] == {"Replicated": {"Replicas": 2}}


def test_a_new_secret_value_is_a_new_version_created_before_and_removed_after_its_service(
    specs: Path, deployed: SwarmState
) -> None:
    manifests = load(specs, token=SPECS["token.yaml"].replace("s3cret", "rotated"))
    plan = plan_for(manifests, deployed)
    assert levels(plan) == [
        ["create secret shop_token-v2"],
        ["update service shop_db"],
        ["delete secret shop_token-v1"],  # keepVersions: 0, and in use until the update
    ]
    update = next(s for s in plan.steps if s.action == "update")
    assert update.reason == "changed"
    assert [c.path for c in update.changes] == ["TaskTemplate.ContainerSpec.Secrets[0].SecretName"]
    assert update.payload is not None
    assert [r["SecretName"] for r in update.payload["TaskTemplate"]["ContainerSpec"]["Secrets"]] == ["shop_token-v2"]


def test_pruned_services_go_before_the_networks_they_use(specs: Path, deployed: SwarmState) -> None:
    manifests = load(specs, without("web", "db", "backend"))  # 3 of 6: half is not more than half
    plan = plan_for(manifests, deployed, prune=True)
    assert plan.blocked is None and {s.reason for s in plan.steps} == {"pruned"}
    # Removing a service needs nothing of the services it depended on: both go at once.
    assert levels(plan) == [["delete service shop_db", "delete service shop_web"], ["delete network shop_backend"]]


def test_without_prune_what_left_the_specs_is_kept_and_listed(specs: Path, deployed: SwarmState) -> None:
    plan = plan_for(load(specs, without("web", "settings")), deployed)
    assert plan.empty and plan.blocked is None
    assert sorted(plan.orphans) == sorted([WEB, SETTINGS])


def test_pruning_more_than_half_is_blocked_unless_forced(specs: Path, deployed: SwarmState) -> None:
    manifests = load(specs, without("web", "db", "backend", "token"))  # 4 of 6
    blocked = plan_for(manifests, deployed, prune=True)
    assert blocked.blocked is not None and "refusing to prune 4 of the 6 objects" in blocked.blocked
    forced = plan_for(manifests, deployed, prune=True, force=True)
    assert forced.blocked is None
    assert levels(forced) == [
        ["delete service shop_db", "delete service shop_web"],
        ["delete network shop_backend", "delete secret shop_token-v1"],
    ]


def test_objects_of_another_source_are_neither_pruned_nor_counted(specs: Path, deployed: SwarmState) -> None:
    plan = plan_for(load(specs, {}), deployed, prune=True, source="elsewhere")
    assert plan.empty and plan.blocked is None and not plan.orphans


def test_a_name_taken_outside_swarmkeeper_is_left_alone_with_what_depends_on_it(specs: Path) -> None:
    foreign = {"Id": "n1", "Name": "shop_backend", "Scope": "swarm", "Driver": "overlay", "Labels": {}}
    state = SwarmState(services=[], tasks=[], networks=[foreign], secrets=[], configs=[])
    plan = plan_for(load(specs), state)
    assert {e.key for e in plan.errors} == {BACKEND, DB, WEB}
    assert sorted(s.swarm_name for s in plan.steps) == ["shop_cache", "shop_settings-v1", "shop_token-v1"]
    assert plan.unmanaged == [("network", "shop_backend")]


# -- service_progress ----------------------------------------------------------------------------


def service(replicas: int = 2, *, update: Obj | None = None, mode: Obj | None = None) -> Obj:
    svc: Obj = {
        "ID": "svc0000000000000000000001",
        "Version": {"Index": 30},
        "Spec": {
            "Name": "shop_web",
            "Mode": mode or {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"ContainerSpec": {"Image": "local/busybox:1", "Args": ["sleep", "3600"]}},
        },
        "ServiceStatus": {"RunningTasks": replicas, "DesiredTasks": replicas},
    }
    if update is not None:
        svc["UpdateStatus"] = update
    return svc


def test_progress_converged_when_every_replica_runs_the_current_template() -> None:
    svc = service(2)
    p = service_progress(svc, [task(svc, 1), task(svc, 2), task(svc, 3, "shutdown", desired="shutdown")])
    assert p.converged and not p.failed
    assert (p.desired, p.running, p.up_to_date, p.ready) == (2, 2, 2, "2/2")
    assert p.image == "local/busybox:1" and p.task_error is None and p.update_state is None


def test_progress_running_the_old_template_is_not_converged() -> None:
    svc = service(2)
    old = {"ContainerSpec": {"Image": "local/busybox:0", "Args": ["sleep", "3600"]}}
    p = service_progress(svc, [task(svc, 1, template=old), task(svc, 2)])
    assert (p.running, p.up_to_date, p.ready) == (2, 1, "2/2") and not p.converged
    assert p.image == "local/busybox:0, local/busybox:1"


def test_progress_ignores_the_runtime_field_tasks_omit() -> None:
    svc = service(1)
    svc["Spec"]["TaskTemplate"]["Runtime"] = "container"
    plain = {"ContainerSpec": svc["Spec"]["TaskTemplate"]["ContainerSpec"]}
    assert service_progress(svc, [task(svc, 1, template=plain)]).converged


def test_progress_during_an_update_reads_the_engine_times() -> None:
    update = {"State": "updating", "Message": "update in progress", "StartedAt": "2026-01-02T03:00:00.123456789Z"}
    svc = service(2, update=update | {"CompletedAt": "0001-01-01T00:00:00Z"})
    p = service_progress(svc, [task(svc, 1), task(svc, 2)])
    assert not p.converged and p.failed is None
    assert p.update_started_at == datetime(2026, 1, 2, 3, 0, 0, 123456, tzinfo=UTC)
    assert p.update_completed_at is None  # the engine's zero time


def test_progress_after_a_rollback_is_failed() -> None:
    update = {"State": "rollback_completed", "Message": "rollback completed"}
    svc = service(2, update=update)
    p = service_progress(svc, [task(svc, 1), task(svc, 2)])
    assert not p.converged and p.failed == "update rollback_completed: rollback completed"


def test_progress_reports_the_latest_task_error() -> None:
    svc = service(2)
    tasks = [
        task(svc, 1),
        task(svc, 2, "failed", desired="shutdown", err="task: non-zero exit (1)", at="2026-01-02T03:00:01Z"),
        task(svc, 2, "rejected", desired="shutdown", err="No such image", at="2026-01-02T03:00:02.5Z"),
    ]
    p = service_progress(svc, tasks)
    assert (p.running, p.ready, p.converged) == (1, "1/2", False)
    assert p.task_error == {
        "task": tasks[2]["ID"][:12],
        "node": "node0000001",
        "state": "rejected",
        "error": "No such image",
        "at": datetime(2026, 1, 2, 3, 0, 2, 500000, tzinfo=UTC),
    }


def test_progress_of_jobs_and_global_services() -> None:
    job = service(mode={"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 3}})
    job["ServiceStatus"] = {"RunningTasks": 0, "DesiredTasks": 0, "CompletedTasks": 3}
    done = service_progress(job, [])
    assert done.is_job and done.converged and done.ready == "3/3"
    job["ServiceStatus"]["CompletedTasks"] = 1
    assert service_progress(job, []).ready == "1/3" and not service_progress(job, []).converged
    glob = service(mode={"Global": {}})
    glob["ServiceStatus"] = {"RunningTasks": 1, "DesiredTasks": 3}
    p = service_progress(glob, [task(glob, 0)])
    assert (p.desired, p.ready, p.converged) == (3, "1/3", False)


# -- compute_statuses ----------------------------------------------------------------------------


def statuses(
    manifests: list[Manifest], state: SwarmState, errors: Mapping[Key, str] | None = None, **kw: Any
) -> dict[Key, ObjectStatus]:
    return compute_statuses(manifests, state, resolve_desired(manifests, state), errors or {}, now=NOW, **kw)


def conds(status: ObjectStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def message(status: ObjectStatus, type_: str) -> str:
    cond = status.condition(type_)
    assert cond is not None, f"no {type_} condition"
    return cond.message


def test_statuses_of_a_converged_swarm(specs: Path, deployed: SwarmState) -> None:
    out = statuses(load(specs), deployed)
    assert set(out) == {DB, WEB, CACHE, BACKEND, TOKEN, SETTINGS}
    web = out[WEB]
    assert isinstance(web, ServiceStatus)
    assert conds(web) == {
        "Ready": ("True", "Converged"),
        "Progressing": ("False", "Converged"),
        "Degraded": ("False", "Healthy"),
    }
    assert web.ready == "2/2" and web.swarm_name == "shop_web" and web.replicas is not None
    assert web.replicas.running == 2 and web.observed_spec_hash and web.last_applied_at is None
    assert all(c.last_transition_time == NOW for c in web.conditions)
    assert conds(out[BACKEND]) == {"Ready": ("True", "Created")}
    token = out[TOKEN]
    assert conds(token) == {"Ready": ("True", "Created")}
    assert message(token, "Ready") == "version 1"
    assert token.swarm_name == "shop_token-v1"


def test_statuses_of_services_on_their_way(specs: Path, deployed: SwarmState) -> None:
    svc = deployed.managed_services[WEB]
    state = with_tasks(deployed, WEB, [task(svc, 1), task(svc, 2, "starting")])
    assert conds(statuses(load(specs), state)[WEB]) == {
        "Ready": ("False", "Converging"),
        "Progressing": ("True", "Scaling"),
        "Degraded": ("False", "Healthy"),
    }
    svc["UpdateStatus"] = {"State": "updating", "Message": "update in progress"}
    status = statuses(load(specs), deployed)[WEB]
    assert conds(status)["Progressing"] == ("True", "Updating")
    assert isinstance(status, ServiceStatus) and status.update is not None and status.update.state == "updating"


def test_statuses_of_failing_services(specs: Path, deployed: SwarmState) -> None:
    svc = deployed.managed_services[WEB]
    crashed = task(svc, 2, "failed", desired="shutdown", err="task: non-zero exit (3)")
    state = with_tasks(deployed, WEB, [task(svc, 1), crashed, task(svc, 2, "starting")])
    web = statuses(load(specs), state)[WEB]
    assert conds(web)["Degraded"] == ("True", "TaskFailed")
    assert message(web, "Degraded") == "task: non-zero exit (3)"
    svc["UpdateStatus"] = {"State": "paused", "Message": "update paused due to failure"}
    assert conds(statuses(load(specs), deployed)[WEB]) == {
        "Ready": ("False", "UpdatePaused"),
        "Progressing": ("False", "Converged"),
        "Degraded": ("True", "UpdateFailed"),
    }
    svc["UpdateStatus"] = {"State": "rollback_completed", "Message": "rolled back"}
    assert conds(statuses(load(specs), deployed)[WEB])["Ready"] == ("False", "RolledBack")


def test_statuses_with_apply_errors_and_missing_objects(specs: Path) -> None:
    out = statuses(load(specs), empty(), {DB: "create failed: 500"})
    assert conds(out[DB]) == {
        "Ready": ("False", "ApplyFailed"),
        "Progressing": ("False", "ApplyFailed"),
        "Degraded": ("True", "ApplyFailed"),
        "Synced": ("False", "ApplyFailed"),
    }
    assert conds(out[WEB])["Ready"] == ("False", "NotCreated") and "Synced" not in conds(out[WEB])
    assert conds(out[BACKEND]) == {"Ready": ("False", "NotCreated")}
    assert conds(out[TOKEN]) == {"Ready": ("False", "NotCreated")}


def test_synced_says_what_the_pass_did(specs: Path, deployed: SwarmState) -> None:
    changes = {
        WEB: Change("missing"),
        DB: Change("changed", ("Mode.Replicated.Replicas",)),
        CACHE: Change("drift", ("TaskTemplate.ContainerSpec.Env",)),
        BACKEND: Change("adopt"),
    }
    out = statuses(load(specs), deployed, changes=changes)
    synced = {k: s.condition("Synced") for k, s in out.items()}
    assert {k: (c.status, c.reason, c.message) for k, c in synced.items() if c is not None} == {
        WEB: ("True", "Applied", "created from the spec"),
        DB: ("True", "Applied", "updated from the spec"),
        CACHE: ("True", "DriftCorrected", "changed outside swarmkeeper and put back: TaskTemplate.ContainerSpec.Env"),
        BACKEND: ("True", "Adopted", "taken over from outside swarmkeeper as it was"),
    }
    assert {k for k, s in out.items() if s.last_applied_at == NOW} == set(changes)
    assert synced[TOKEN] is None and out[TOKEN].last_applied_at is None


def test_waiting_objects_are_not_ready(specs: Path, deployed: SwarmState) -> None:
    web = statuses(load(specs), deployed, waiting={WEB: "waits for SwarmService/shop/db"})[WEB]
    assert web.conditions[0].type == "Ready"
    assert (web.conditions[0].status, web.conditions[0].reason) == ("False", "DependencyNotReady")
    assert [c.type for c in web.conditions].count("Ready") == 1


# -- merge_status --------------------------------------------------------------------------------


def ready(status: ConditionStatus, at: datetime = NOW, reason: str = "Converged") -> Condition:
    return C.condition("Ready", status, reason, at=at)


def test_merge_status_keeps_transition_times_while_the_status_holds() -> None:
    old = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Converged", "lastTransitionTime": EARLIER},
            {"type": "Degraded", "status": "False", "reason": "Healthy", "lastTransitionTime": EARLIER},
            {"type": "Synced", "status": "True", "reason": "Applied", "lastTransitionTime": EARLIER},
        ],
        "lastAppliedAt": EARLIER,
    }
    new = ObjectStatus(
        conditions=[ready("True", reason="Created"), C.condition("Degraded", "True", "TaskFailed", at=NOW)]
    )
    out = merge_status(old, new)
    times = {c["type"]: c["lastTransitionTime"] for c in out["conditions"]}
    assert times == {"Ready": EARLIER, "Degraded": "2026-01-02T03:04:05Z", "Synced": EARLIER}
    assert out["conditions"][0]["reason"] == "Created"  # the rest of the condition is the new one
    assert out["lastAppliedAt"] == EARLIER  # a quiet pass keeps the last apply's time


def test_merge_status_without_an_old_status_is_the_new_one() -> None:
    new = ObjectStatus(conditions=[ready("False")], last_applied_at=NOW)
    assert (
        merge_status(None, new)
        == merge_status({}, new)
        == new.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    assert merge_status({"lastAppliedAt": EARLIER}, new)["lastAppliedAt"] == "2026-01-02T03:04:05Z"


# -- conditions ----------------------------------------------------------------------------------


def test_condition_dicts_are_camel_case_with_utc_times() -> None:
    d = C.as_dict(C.condition("Ready", "True", "Converged", "2 tasks", generation=4, at=NOW))
    assert d == {
        "type": "Ready",
        "status": "True",
        "reason": "Converged",
        "message": "2 tasks",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "observedGeneration": 4,
    }
    assert "observedGeneration" not in C.as_dict(ready("True"))
    assert C.timestamp(NOW) == "2026-01-02T03:04:05Z"
    assert C.condition("Ready", "True", "Converged").last_transition_time is not None


def test_merge_moves_the_time_only_when_the_status_flips() -> None:
    old = [C.as_dict(ready("True", at=NOW - timedelta(hours=1)))]
    same = C.merge(old, [ready("True", reason="Created")])
    assert same[0]["lastTransitionTime"] == "2026-01-02T02:04:05Z" and same[0]["reason"] == "Created"
    flipped = C.merge(old, [ready("False", reason="Converging")])
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    # Without a time of its own, a new or flipped condition is stamped now.
    stamped = C.merge(old, [{"type": "Ready", "status": "Unknown", "reason": "EngineAway"}])
    assert (
        stamped[0]["lastTransitionTime"].endswith("Z")
        and stamped[0]["lastTransitionTime"] != old[0]["lastTransitionTime"]
    )


def test_synced_true_is_an_event_and_keeps_its_new_time() -> None:
    before = NOW - timedelta(days=1)
    old = [C.as_dict(C.condition(C.SYNCED, "True", "Applied", at=before))]
    again = C.merge(old, [C.condition(C.SYNCED, "True", "DriftCorrected", at=NOW)])
    assert again[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    failing = [C.as_dict(C.condition(C.SYNCED, "False", "ApplyFailed", at=before))]
    still = C.merge(failing, [C.condition(C.SYNCED, "False", "ApplyFailed", at=NOW)])
    assert still[0]["lastTransitionTime"] == C.timestamp(before)  # Synced=False is a state like any other


def test_merge_carries_over_synced_only() -> None:
    old = [
        C.as_dict(C.condition(C.SYNCED, "True", "Applied", at=NOW - timedelta(days=1))),
        C.as_dict(C.condition("Progressing", "True", "Scaling", at=NOW)),
    ]
    out = C.merge(old, [ready("True")])
    assert [c["type"] for c in out] == ["Ready", "Synced"] and out[1] == old[0]
    assert [c["type"] for c in C.merge(old, [ready("True")], carry_over=False)] == ["Ready"]
    assert C.merge(None, [ready("True")]) == [C.as_dict(ready("True"))]


def test_put_and_status_with_replace_one_condition_type() -> None:
    degraded = {"type": "Degraded", "status": "False", "reason": "Healthy", "lastTransitionTime": EARLIER}
    old_ready = {"type": "Ready", "status": "True", "reason": "Converged", "lastTransitionTime": EARLIER}
    old = [degraded, old_ready]
    out = C.put(old, ready("True", reason="Created"))
    assert out == [{**old_ready, "reason": "Created", "message": ""}, degraded]
    assert C.put(old, ready("False"), first=False)[0] == degraded
    assert C.put(old, ready("False"), first=False)[1]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert old == [degraded, old_ready]  # the old list is not changed
    status = {"conditions": old, "observedGeneration": 3, "lastAppliedAt": EARLIER}
    new = C.status_with(status, C.condition("Synced", "False", "ApplyFailed", "boom", at=NOW))
    assert {k: v for k, v in new.items() if k != "conditions"} == {"observedGeneration": 3, "lastAppliedAt": EARLIER}
    assert [c["type"] for c in new["conditions"]] == ["Synced", "Degraded", "Ready"]
    assert new["conditions"][1:] == old
    assert C.status_with(None, ready("True")) == {"conditions": [C.as_dict(ready("True"))]}


def test_registry_notifications_name_the_pushed_tags() -> None:
    from swarmkeeper.controller.registry_hook import pushed_tags

    body = json.dumps(
        {
            "events": [
                {"action": "push", "target": {"repository": "sk/app", "tag": "1"}, "request": {"host": "r:5000"}},
                {"action": "pull", "target": {"repository": "sk/app", "tag": "1"}, "request": {"host": "r:5000"}},
                {"action": "push", "target": {"repository": "sk/app", "digest": "sha256:x"}, "request": {}},
            ]
        }
    ).encode()
    assert pushed_tags(body) == ["r:5000/sk/app:1"]  # pulls and blob pushes (no tag) wake nothing
    with pytest.raises(ValueError):
        pushed_tags(b"not json")


@pytest.mark.parametrize(
    ("tags", "wanted", "picked"),
    [
        (["1.2.0", "1.3.0", "2.0.0", "latest"], ">=1.2,<2", "1.3.0"),
        (["v1.3.1", "1.3.1", "1.2"], ">=1.2,<2", "1.3.1"),  # one version, two tags: the plainer one
        (["1.4.0rc1", "1.3.0"], ">=1.2,<2", "1.3.0"),  # no pre-release unless the range names one
        (["1.4.0rc1", "1.3.0"], ">=1.4.0rc1", "1.4.0rc1"),
        (["main", "sha-1234"], ">=1", None),
    ],
)
def test_the_highest_tag_in_a_range(tags: list[str], wanted: str, picked: str | None) -> None:
    from swarmkeeper.swarm.images import pick_tag

    assert pick_tag(tags, wanted) == picked


@pytest.mark.parametrize(
    ("reference", "normalized", "repository"),
    [
        ("redis", "redis:latest", "redis"),
        ("redis:7", "redis:7", "redis"),
        ("127.0.0.1:5000/sk/app", "127.0.0.1:5000/sk/app:latest", "127.0.0.1:5000/sk/app"),
        ("host:5000/a/b:1@sha256:ab", "host:5000/a/b:1@sha256:ab", "host:5000/a/b"),
    ],
)
def test_image_references_as_the_docker_cli_reads_them(reference: str, normalized: str, repository: str) -> None:
    from swarmkeeper.swarm.images import normalize_image, repository_of

    assert normalize_image(reference) == normalized
    assert repository_of(reference) == repository


@pytest.mark.parametrize(
    ("event", "wakes"),
    [
        ({"Type": "config", "Action": "update", "Actor": {"Attributes": {"name": "swarmkeeper-lease.watch"}}}, False),
        ({"Type": "config", "Action": "update", "Actor": {"Attributes": {"name": "app_conf-v2"}}}, True),
        (
            {"Type": "network", "Action": "connect", "scope": "local", "Actor": {"Attributes": {"name": "bridge"}}},
            False,
        ),
        ({"Type": "network", "Action": "remove", "scope": "swarm", "Actor": {"Attributes": {"name": "ns_net"}}}, True),
        ({"Type": "service", "Action": "update", "Actor": {"Attributes": {"name": "ns_web"}}}, True),
        ({"Type": "container", "Action": "die", "Actor": {"Attributes": {"com.docker.swarm.service.id": "x"}}}, True),
        ({"Type": "container", "Action": "die", "Actor": {"Attributes": {"name": "not-a-task"}}}, False),
    ],
)
def test_engine_events_that_wake_a_pass(event: dict[str, object], wakes: bool) -> None:
    # A lease renewal or a container joining a local network must not run passes on an idle swarm.
    assert relevant(event) is wakes
