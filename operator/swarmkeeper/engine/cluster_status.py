"""The status of a ``SwarmCluster`` with nodes, from what was observed and what the last pass did.

Pure: computed from the spec, the observed ``ClusterView``, the plan and the pass's errors. It
never holds a join token or the unlock key (the view carries neither).

Conditions, beside ``Ready`` (everything in the spec is in place) and ``Synced`` (what the pass
changed): ``QuorumHealthy`` (a majority of the managers is reachable, so the swarm can act) and
``AllNodesReady`` (every node in the spec is in the swarm and ready).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..api import Condition
from ..api.cluster import NodeStatus, SwarmClusterSpec, SwarmClusterStatus
from ..swarm import labels as L
from ..swarm.nodes import Member
from .cluster_plan import ClusterPlan, ClusterView, quorum
from .conditions import condition


def member_status(name: str, member: Member, engine_version: str | None, message: str | None) -> NodeStatus:
    """A swarm node as status shows it, under ``name``."""
    return NodeStatus(
        name=name,
        id=member.id,
        hostname=member.hostname,
        address=member.address or None,
        role="manager" if member.is_manager else "worker",
        availability=member.availability,
        state=member.state,
        leader=member.leader,
        reachability=member.reachability,
        engine_version=member.engine_version or engine_version,
        labels={k: v for k, v in member.labels.items() if not k.startswith(L.PREFIX)},
        message=message,
    )


def node_statuses(spec: SwarmClusterSpec, view: ClusterView, plan: ClusterPlan) -> list[NodeStatus]:
    out: list[NodeStatus] = []
    for node in spec.nodes:
        engine = view.engines.get(node.name)
        local = engine.local if engine is not None else None
        message = plan.problems.get(node.name) or plan.waiting.get(node.name)
        member = plan.matching.members.get(node.name)
        weak = plan.matching.weak.get(node.name)
        if member is not None:
            out.append(member_status(node.name, member, local.version if local else None, message))
        elif weak is not None:
            note = "not verified: its engine does not answer, and the node was never labelled by swarmkeeper"
            out.append(member_status(node.name, weak, None, f"{note}; {message}" if message else note))
        else:
            if local is None:
                state = "unreachable" if engine is not None and engine.error else "unknown"
            else:
                state = {"inactive": "not-joined", "active": "other-swarm"}.get(local.state, local.state)
            out.append(
                NodeStatus(
                    name=node.name,
                    id=(local.node_id or None) if local else None,
                    hostname=(local.hostname or None) if local else None,
                    state=state,
                    engine_version=(local.version or None) if local else None,
                    message=message,
                )
            )
    return out


def unknown_statuses(plan: ClusterPlan) -> list[NodeStatus]:
    note = "not in spec.nodes (removed only with removeUnknownNodes: true)"
    return [member_status(m.hostname or m.id[:12], m, None, note) for m in plan.matching.unknown]


def _manager_version(view: ClusterView) -> str | None:
    engine = view.engines.get(view.manager) if view.manager else None
    return engine.local.version if engine is not None and engine.local is not None else None


def cluster_status(
    spec: SwarmClusterSpec,
    view: ClusterView,
    plan: ClusterPlan,
    *,
    done: Sequence[str],
    errors: Sequence[str],
    now: datetime,
    generation: int | None = None,
    spec_hash: str | None = None,
) -> SwarmClusterStatus:
    nodes = node_statuses(spec, view, plan)
    managers = [m for m in view.members if m.is_manager]
    reachable = [m for m in managers if m.reachability == "reachable"]
    leader = next((m for m in view.members if m.leader), None)
    names = {n.id: n.name for n in nodes if n.id}

    conditions: list[Condition] = []
    if view.swarm is None or not managers:
        why = plan.refusal.message if plan.refusal else "no manager in spec.nodes answers"
        quorum_cond = condition("QuorumHealthy", "False", "NoSwarm", why, at=now, generation=generation)
    else:
        need = quorum(len(managers))
        spare = len(reachable) - need
        message = f"{len(reachable)}/{len(managers)} managers reachable; a majority is {need}"
        if spare >= 0:
            message += f", so {spare} more may fail"
        if len(managers) % 2 == 0:
            message += "; an even number of managers adds no failure tolerance"
        ok = spare >= 0
        quorum_cond = condition(
            "QuorumHealthy",
            "True" if ok else "False",
            "Quorum" if ok else "QuorumLost",
            message,
            at=now,
            generation=generation,
        )
    conditions.append(quorum_cond)

    not_ready = [n for n in nodes if n.state != "ready" or n.name in plan.matching.weak]
    if not_ready:
        detail = "; ".join(f"{n.name}: {n.state}" + (f" ({n.message})" if n.message else "") for n in not_ready)
        conditions.append(condition("AllNodesReady", "False", "NodesNotReady", detail, at=now, generation=generation))
    else:
        conditions.append(
            condition("AllNodesReady", "True", "AllReady", f"{len(nodes)} nodes ready", at=now, generation=generation)
        )

    if plan.refusal is not None:
        ready = condition("Ready", "False", plan.refusal.reason, plan.refusal.message, at=now, generation=generation)
    elif errors:
        ready = condition("Ready", "False", "ApplyFailed", "; ".join(errors), at=now, generation=generation)
    elif plan.problems:
        detail = "; ".join(f"{name}: {why}" for name, why in plan.problems.items())
        ready = condition("Ready", "False", "NodeProblem", detail, at=now, generation=generation)
    elif plan.actions:
        pending = "; ".join(a.describe() for a in plan.actions)
        ready = condition("Ready", "False", "Pending", pending, at=now, generation=generation)
    elif not_ready or quorum_cond.status != "True":
        ready = condition("Ready", "False", "NodesNotReady", "not every node is ready", at=now, generation=generation)
    else:
        ready = condition("Ready", "True", "Converged", "the swarm matches the spec", at=now, generation=generation)
    conditions.insert(0, ready)
    if errors:
        conditions.append(condition("Synced", "False", "ApplyFailed", "; ".join(errors), at=now, generation=generation))
    elif done:
        conditions.append(condition("Synced", "True", "Applied", "; ".join(done), at=now, generation=generation))

    return SwarmClusterStatus(
        observed_generation=generation,
        observed_spec_hash=spec_hash,
        conditions=conditions,
        swarm_cluster_id=view.swarm.id if view.swarm else None,
        swarm_version=view.swarm.version if view.swarm else None,
        engine_version=_manager_version(view),
        leader=names.get(leader.id, leader.hostname) if leader else None,
        managers=f"{len(reachable)}/{len(managers)}" if managers else None,
        nodes=nodes,
        unknown_nodes=unknown_statuses(plan),
        last_applied_at=now if done else None,
    )
