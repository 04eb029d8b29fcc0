"""SwarmCluster planning without engines: which node is which, what to do, and when to refuse.

The planner is pure (spec + observed view → actions), so its rules — quorum above all, trust only
in named nodes — are pinned down here on hand-made views; tests/test_cluster.py shows the same
rules on real engines.
"""

from __future__ import annotations

import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from cli_helpers import sk, write_spec
from swarmkeeper.api.cluster import SwarmCluster, SwarmClusterSpec
from swarmkeeper.engine.cluster_plan import (
    ClusterView,
    EngineView,
    InitSwarm,
    JoinNode,
    RemoveNode,
    StoreUnlockKey,
    UnlockNode,
    UpdateNode,
    UpdateSwarm,
    plan_cluster,
    quorum,
)
from swarmkeeper.engine.cluster_status import cluster_status
from swarmkeeper.engine.unlock_key import read_key, write_key
from swarmkeeper.loading import load_text
from swarmkeeper.swarm.nodes import NODE_ENGINE, NODE_NAME, ROTATION, LocalNode, Member, SwarmInfo

HOST = "unix:///run/e{}.sock"


def spec(*roles: str, **extra: Any) -> SwarmClusterSpec:
    nodes = [
        {"name": f"n{i}", "engine": {"host": HOST.format(i)}, "role": role} for i, role in enumerate(roles, start=1)
    ]
    return SwarmClusterSpec.model_validate({"nodes": nodes, **extra})


def local(i: int, state: str = "active", manager: bool = True) -> LocalNode:
    node_id = f"id{i}" if state in ("active", "locked") else ""
    return LocalNode(state=state, node_id=node_id, manager=manager, cluster_id="c1", version="20.10", hostname=f"n{i}")


def member(i: int, role: str = "manager", state: str = "ready", reach: str | None = "reachable", **kw: Any) -> Member:
    labels = kw.pop("labels", {NODE_NAME: f"n{i}", NODE_ENGINE: HOST.format(i)})
    return Member(
        id=kw.pop("id", f"id{i}"),
        version=7,
        hostname=f"n{i}",
        role=role,
        availability=kw.pop("availability", "active"),
        labels=labels,
        state=state,
        address=f"10.0.0.{i}",
        message="",
        leader=kw.pop("leader", i == 1),
        reachability=reach if role == "manager" else None,
        manager_addr=f"10.0.0.{i}:2377" if role == "manager" else None,
        engine_version="20.10",
        created_at=kw.pop("created_at", "2024-01-01"),
    )


def swarm(**settings: Any) -> SwarmInfo:
    return SwarmInfo(
        id="c1",
        version=3,
        labels=settings.pop("labels", {}),
        settings={"taskHistoryLimit": 5, "dispatcherHeartbeat": 5_000_000_000, "autolock": False, **settings},
        default_addr_pool=("10.0.0.0/8",),
        subnet_size=24,
        data_path_port=4789,
        raw_spec={},
    )


def view(engines: dict[str, LocalNode | None], members: list[Member], **kw: Any) -> ClusterView:
    views = {name: EngineView(lo, None if lo else "connection refused") for name, lo in engines.items()}
    return ClusterView(views, kw.pop("swarm", swarm()), members, "n1", **kw)


def healthy(n: int = 3, managers: int = 3) -> ClusterView:
    return view(
        {f"n{i}": local(i, manager=i <= managers) for i in range(1, n + 1)},
        [member(i, "manager" if i <= managers else "worker") for i in range(1, n + 1)],
    )


def kinds(plan: Any) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


# --- bootstrap -----------------------------------------------------------------------------------


def test_bare_engines_init_on_the_first_manager_then_managers_join_before_workers() -> None:
    s = spec("worker", "manager", "manager", swarm={"dispatcherHeartbeat": "1s"}, rotateJoinTokens=4)
    bare = ClusterView({f"n{i}": EngineView(local(i, "inactive", False)) for i in (1, 2, 3)})
    plan = plan_cluster(s, bare)
    init = plan.actions[0]
    assert isinstance(init, InitSwarm) and init.node == "n2"
    assert init.settings == {"dispatcherHeartbeat": 1_000_000_000}
    assert init.labels == {ROTATION: "4"}  # the marker is recorded at once: no rotation right after init
    joins = [a for a in plan.actions if isinstance(a, JoinNode)]
    assert [(j.node, j.role) for j in joins] == [("n3", "manager"), ("n1", "worker")]


def test_no_new_swarm_while_a_node_is_silent_or_already_in_one() -> None:
    s = spec("manager", "manager", "manager")
    v = ClusterView(
        {
            "n1": EngineView(local(1, "inactive", False)),
            "n2": EngineView(None, "connection refused"),
            "n3": EngineView(local(3, "active", False)),
        }
    )
    plan = plan_cluster(s, v)
    assert plan.actions == [] and plan.refusal is not None and plan.refusal.reason == "NoSwarm"
    assert "n2's engine does not answer" in plan.refusal.message
    assert "n3 is already in a swarm" in plan.refusal.message


def test_a_converged_swarm_needs_nothing() -> None:
    plan = plan_cluster(spec("manager", "manager", "manager"), healthy())
    assert plan.actions == [] and plan.converged and not plan.warnings


# --- quorum ---------------------------------------------------------------------------------------


def test_quorum() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5, 7)] == [1, 2, 2, 3, 3, 4]


def test_demoting_below_a_majority_of_reachable_managers_is_refused_as_a_whole() -> None:
    # n3 is down; demoting n2 would leave n1 alone of two managers.
    v = healthy()
    v = replace(v, members=[member(1), member(2), member(3, state="down", reach="unreachable")])
    v = replace(v, engines={**v.engines, "n3": EngineView(None, "connection refused")})
    s = spec("manager", "worker", "manager")
    s.nodes[0].labels["zone"] = "a"  # another change in the same spec is not carried out either
    plan = plan_cluster(s, v)
    assert plan.actions == []
    assert plan.refusal is not None and plan.refusal.reason == "WouldLoseQuorum"
    assert "demoting n2 would leave 1 reachable of 2 managers" in plan.refusal.message


def test_demoting_the_dead_manager_is_how_a_swarm_recovers() -> None:
    v = healthy()
    v = replace(v, members=[member(1), member(2), member(3, state="down", reach="unreachable")])
    v = replace(v, engines={**v.engines, "n3": EngineView(None, "connection refused")})
    plan = plan_cluster(spec("manager", "manager", "worker"), v)
    assert kinds(plan) == ["UpdateNode"] and plan.refusal is None
    assert any("2 managers" in w for w in plan.warnings)  # even: said, not refused


def test_three_to_one_manager_step_by_step_with_everyone_reachable_is_allowed() -> None:
    plan = plan_cluster(spec("manager", "worker", "worker"), healthy())
    assert kinds(plan) == ["UpdateNode", "UpdateNode"] and plan.refusal is None


def test_lost_quorum_changes_nothing() -> None:
    v = healthy()
    v = replace(
        v,
        members=[member(1), member(2, state="down", reach="unreachable"), member(3, state="down", reach="unreachable")],
    )
    plan = plan_cluster(spec("manager", "manager", "manager", rotateJoinTokens=1), v)
    assert plan.actions == [] and plan.refusal is not None and plan.refusal.reason == "QuorumLost"


def test_promotions_come_before_demotions_so_a_manager_swap_never_dips() -> None:
    # 3 managers → swap n3 (manager) for n4 (worker): promote first, then demote.
    v = view(
        {f"n{i}": local(i, manager=i <= 3) for i in range(1, 5)},
        [member(1), member(2), member(3), member(4, "worker")],
    )
    plan = plan_cluster(spec("manager", "manager", "worker", "manager"), v)
    assert [(a.node, a.role) for a in plan.actions if isinstance(a, UpdateNode)] == [
        ("n4", "manager"),
        ("n3", "worker"),
    ]


# --- trust: which swarm node is which --------------------------------------------------------------


def test_unknown_nodes_are_reported_and_only_removed_on_request() -> None:
    stranger = member(9, "worker", labels={}, id="x9")
    v = replace(healthy(), members=[*healthy().members, stranger])
    plan = plan_cluster(spec("manager", "manager", "manager"), v)
    assert plan.actions == [] and [m.id for m in plan.matching.unknown] == ["x9"]
    assert any("n9" in w and "not in spec.nodes" in w for w in plan.warnings)
    plan = plan_cluster(spec("manager", "manager", "manager", removeUnknownNodes=True), v)
    assert kinds(plan) == ["RemoveNode"]
    removal = plan.actions[0]
    assert isinstance(removal, RemoveNode) and removal.engine_host is None


def test_a_node_that_left_the_spec_is_removed_through_its_recorded_engine() -> None:
    plan = plan_cluster(
        spec("manager", "manager"), replace(healthy(), engines={n: healthy().engines[n] for n in ("n1", "n2")})
    )
    assert kinds(plan) == ["RemoveNode"]
    removal = plan.actions[0]
    assert isinstance(removal, RemoveNode) and removal.node == "n3" and removal.engine_host == HOST.format(3)
    assert removal.why == "left the spec"


def test_a_silent_engine_is_matched_by_label_a_free_one_joins_again() -> None:
    down = replace(healthy(), engines={**healthy().engines, "n3": EngineView(None, "connection refused")})
    plan = plan_cluster(spec("manager", "manager", "manager"), down)
    assert plan.matching.members["n3"].id == "id3" and plan.actions == []
    # The engine answers again, but out of any swarm (its state was wiped): join anew, drop the old entry.
    fresh = replace(healthy(), engines={**healthy().engines, "n3": EngineView(local(3, "inactive", False))})
    plan = plan_cluster(spec("manager", "manager", "manager"), fresh)
    assert kinds(plan) == ["JoinNode", "RemoveNode"]
    assert isinstance(plan.actions[1], RemoveNode) and "joined again" in plan.actions[1].why


def test_a_locked_manager_is_unlocked_never_taken_for_a_stale_entry() -> None:
    locked = LocalNode(state="locked", node_id="", manager=False, cluster_id=None, version="20.10", hostname="n2")
    v = replace(healthy(), engines={**healthy().engines, "n2": EngineView(locked)})
    plan = plan_cluster(spec("manager", "manager", "manager"), replace(v, unlock_key_available=True))
    assert kinds(plan) == ["UnlockNode"] and plan.matching.members["n2"].id == "id2"
    plan = plan_cluster(spec("manager", "manager", "manager"), v)
    assert plan.actions == [] and "locked" in plan.problems["n2"]


def test_an_engine_in_another_swarm_is_left_alone() -> None:
    elsewhere = LocalNode(state="active", node_id="zz", manager=True, cluster_id="other", version="", hostname="n3")
    v = view({"n1": local(1), "n2": local(2), "n3": elsewhere}, [member(1), member(2)])
    plan = plan_cluster(spec("manager", "manager", "manager"), v)
    assert plan.actions == [] and "another swarm" in plan.problems["n3"]


# --- node and swarm settings -------------------------------------------------------------------------


def test_labels_availability_and_swarm_settings() -> None:
    s = spec(
        "manager",
        "manager",
        "manager",
        swarm={"taskHistoryLimit": 2, "dispatcherHeartbeat": "1s", "subnetSize": 26},
        rotateJoinTokens="2024-05-01",
    )
    s.nodes[1].labels["zone"] = "edge"
    s.nodes[2].availability = "drain"
    plan = plan_cluster(s, healthy())
    updates = {a.node: a for a in plan.actions if isinstance(a, UpdateNode)}
    assert updates["n2"].labels == {"zone": "edge", NODE_NAME: "n2", NODE_ENGINE: HOST.format(2)}
    assert updates["n3"].changes == ("availability active → drain",)
    settings = plan.actions[-1]
    assert isinstance(settings, UpdateSwarm) and settings.rotate_join_tokens
    assert settings.changes == ("taskHistoryLimit", "dispatcherHeartbeat", "rotate join tokens")
    assert settings.labels[ROTATION] == "2024-05-01"
    assert any("subnetSize" in w for w in plan.warnings)  # fixed at creation: said, not attempted
    # once recorded, the same marker does not rotate again
    done = replace(
        healthy(), swarm=swarm(taskHistoryLimit=2, dispatcherHeartbeat=1_000_000_000, labels=dict(settings.labels))
    )
    assert not [a for a in plan_cluster(s, done).actions if isinstance(a, UpdateSwarm)]


def test_autolock_keeps_the_key_file_current() -> None:
    s = spec("manager", swarm={"autolock": True, "unlockKeyFile": "unlock.key"})
    one = view({"n1": local(1)}, [member(1)])
    plan = plan_cluster(s, one)
    assert kinds(plan) == ["UpdateSwarm", "StoreUnlockKey"]
    on = replace(one, swarm=swarm(autolock=True), unlock_key_stored=False)
    assert kinds(plan_cluster(s, on)) == ["StoreUnlockKey"]
    assert isinstance(plan_cluster(s, on).actions[0], StoreUnlockKey)
    assert plan_cluster(s, replace(on, unlock_key_stored=True)).actions == []


def test_unlock_actions_come_first() -> None:
    locked = LocalNode(state="locked", node_id="", manager=False, cluster_id=None, version="", hostname="n1")
    v = ClusterView({"n1": EngineView(locked)}, unlock_key_available=True)
    plan = plan_cluster(spec("manager", swarm={"autolock": True, "unlockKeyFile": "k"}), v)
    assert plan.actions == [UnlockNode("n1")]


# --- status -------------------------------------------------------------------------------------------


def test_status_with_one_of_three_managers_down() -> None:
    v = replace(healthy(), members=[member(1), member(2), member(3, state="down", reach="unreachable")])
    v = replace(v, engines={**v.engines, "n3": EngineView(None, "connection refused")})
    s = spec("manager", "manager", "manager")
    status = cluster_status(s, v, plan_cluster(s, v), done=[], errors=[], now=datetime.now(UTC))
    conditions = {c.type: c for c in status.conditions}
    assert conditions["QuorumHealthy"].status == "True"
    assert conditions["QuorumHealthy"].message.startswith("2/3 managers reachable")
    assert conditions["AllNodesReady"].status == "False" and "n3: down" in conditions["AllNodesReady"].message
    assert conditions["Ready"].status == "False"
    assert status.managers == "2/3" and status.leader == "n1"
    n3 = status.nodes[2]
    assert (n3.state, n3.reachability, n3.role) == ("down", "unreachable", "manager")


# --- the spec ----------------------------------------------------------------------------------------

CLUSTER = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmCluster
metadata: {{name: lab}}
spec:
  nodes:
    - name: a
      engine: {{host: "unix:///run/a.sock"}}
      role: {role_a}
    - name: {name_b}
      engine: {{host: "unix:///run/b.sock"}}
  swarm:
    autolock: {autolock}
"""


def _errors(text: str) -> list[str]:
    return [str(e) for e in load_text(text, Path("specs/cluster.yaml")).errors]


def test_bad_cluster_specs_are_rejected_with_file_line_and_field() -> None:
    assert _errors(CLUSTER.format(role_a="manager", name_b="b", autolock="false")) == []
    assert _errors(CLUSTER.format(role_a="worker", name_b="b", autolock="false")) == [
        "specs/cluster.yaml:5:3: SwarmCluster/lab: spec.nodes: at least one node must have role manager "
        "(the first one initialises the swarm)"
    ]
    assert _errors(CLUSTER.format(role_a="manager", name_b="a", autolock="false")) == [
        'specs/cluster.yaml:5:3: SwarmCluster/lab: spec.nodes: node name "a" appears twice (nodes[0] and nodes[1])'
    ]
    [error] = _errors(CLUSTER.format(role_a="manager", name_b="b", autolock="true"))
    assert error.startswith("specs/cluster.yaml:11:3: SwarmCluster/lab: spec.swarm: autolock needs unlockKeyFile")
    [error] = _errors(CLUSTER.format(role_a="boss", name_b="b", autolock="false"))
    assert error.startswith("specs/cluster.yaml:8:7: SwarmCluster/lab: spec.nodes[0].role:")


def test_invalid_cluster_spec_exits_2_and_changes_nothing(specs_dir: Path) -> None:
    write_spec(specs_dir, "cluster.yaml", CLUSTER.format(role_a="worker", name_b="b", autolock="false"))
    result = sk("apply", specs_dir)
    assert result.code == 2, result.output
    assert "spec.nodes: at least one node must have role manager" in result.stderr


def test_a_cluster_without_nodes_is_only_a_connection() -> None:
    cluster = SwarmCluster.model_validate({"metadata": {"name": "x"}, "spec": {"engine": {"host": "tcp://h:2376"}}})
    assert cluster.spec.nodes == [] and plan_cluster(cluster.spec, ClusterView({})).actions == []


# --- the unlock key file -------------------------------------------------------------------------------


def test_unlock_key_file_is_private_from_the_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "unlock.key"
    write_key(path, SecretStr("SWMKEY-1-abc"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = read_key(path)
    assert key is not None and key.get_secret_value() == "SWMKEY-1-abc" and "abc" not in repr(key)
    write_key(path, SecretStr("SWMKEY-1-def"))  # replaced atomically, still private
    assert path.read_text() == "SWMKEY-1-def\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["unlock.key"]
