"""What to do so a swarm's members and settings match a ``SwarmCluster``: pure, no I/O.

The input is the spec and a ``ClusterView`` (what each node's own engine and the swarm's managers
reported); the output is a ``ClusterPlan``: actions in the order they are safe to carry out, or a
refusal. The orchestrator carries out the first action, observes again and plans again, so each
action is decided on fresh state; the whole list is what a dry run shows.

Quorum is the rule everything else yields to: a swarm whose managers lose their majority can no
longer change anything (nor reschedule a task), so no plan may take a manager away when the
reachable managers left would not be a majority of the managers left. A spec that asks for that is
refused as a whole, before anything is changed.

Trust: only nodes named in the spec are joined. A swarm node is tied to a spec node by the node ID
its engine reports, or (engine unreachable) by the ``io.swarmkeeper.node`` label put on it when it
joined. Anything else in the swarm is unknown: reported, and removed only on request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..api.cluster import ClusterNode, SwarmClusterSpec, SwarmSettings
from ..api.units import duration_to_ns
from ..swarm.nodes import NODE_ENGINE, NODE_NAME, ROTATION, LocalNode, Member, Setting, SwarmInfo


def quorum(managers: int) -> int:
    """Managers that must be reachable for the raft to work: a strict majority."""
    return managers // 2 + 1


# -- what was observed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineView:
    """One spec node's own engine: its answer, or why there was none."""

    local: LocalNode | None
    error: str | None = None


@dataclass(frozen=True)
class ClusterView:
    engines: Mapping[str, EngineView]  # by spec node name
    swarm: SwarmInfo | None = None  # None: no manager among the spec's nodes answers swarm calls
    members: Sequence[Member] = ()
    manager: str | None = None  # the spec node whose engine swarm calls go through
    swarm_error: str | None = None  # a manager answered, but not to swarm calls (no leader)
    unlock_key_available: bool = False  # the unlock key file exists (to unlock a locked manager)
    unlock_key_stored: bool | None = None  # autolock on: the file holds the current key


# -- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitSwarm:
    node: str
    advertise_addr: str | None
    listen_addr: str
    settings: Mapping[str, Setting]
    labels: Mapping[str, str]
    default_addr_pool: tuple[str, ...] = ()
    subnet_size: int | None = None
    data_path_port: int | None = None

    def describe(self) -> str:
        return f"initialise the swarm on {self.node}"


@dataclass(frozen=True)
class UnlockNode:
    node: str

    def describe(self) -> str:
        return f"unlock {self.node} (a manager restarted with autolock)"


@dataclass(frozen=True)
class JoinNode:
    node: str
    role: str
    listen_addr: str
    advertise_addr: str | None

    def describe(self) -> str:
        return f"join {self.node} as {self.role}"


@dataclass(frozen=True)
class UpdateNode:
    node: str
    member: Member | None  # None: a node that is still to join (dry run only)
    role: str
    availability: str
    labels: Mapping[str, str]
    changes: tuple[str, ...]

    def describe(self) -> str:
        return f"update node {self.node}: {', '.join(self.changes)}"


@dataclass(frozen=True)
class UpdateSwarm:
    settings: Mapping[str, Setting]
    labels: Mapping[str, str]
    rotate_join_tokens: bool
    changes: tuple[str, ...]

    def describe(self) -> str:
        return f"update swarm settings: {', '.join(self.changes)}"


@dataclass(frozen=True)
class StoreUnlockKey:
    path: str

    def describe(self) -> str:
        return f"store the unlock key in {self.path}"


@dataclass(frozen=True)
class RemoveNode:
    node: str  # its label, or its hostname when unknown
    member: Member
    why: str
    engine_host: str | None  # where to tell it to leave; None: removed from the managers' side only

    def describe(self) -> str:
        return f"remove node {self.node} ({self.why})"


Action = InitSwarm | UnlockNode | JoinNode | UpdateNode | UpdateSwarm | StoreUnlockKey | RemoveNode


@dataclass(frozen=True)
class Refusal:
    reason: str  # CamelCase, for the Ready condition
    message: str


@dataclass
class Matching:
    """Which swarm node is which spec node, and which swarm nodes are no spec node at all."""

    members: dict[str, Member] = field(default_factory=dict)  # verified: by engine node ID or our label
    weak: dict[str, Member] = field(default_factory=dict)  # same hostname, engine silent: shown, not acted on
    departed: list[tuple[str, Member, str]] = field(default_factory=list)  # (name, node, why): ours, not wanted
    unknown: list[Member] = field(default_factory=list)


@dataclass
class ClusterPlan:
    actions: list[Action] = field(default_factory=list)
    refusal: Refusal | None = None  # set: nothing at all is to be done
    problems: dict[str, str] = field(default_factory=dict)  # node → what keeps it from converging (an error)
    waiting: dict[str, str] = field(default_factory=dict)  # node → why it is not converged (no action possible)
    warnings: list[str] = field(default_factory=list)
    matching: Matching = field(default_factory=Matching)

    @property
    def converged(self) -> bool:
        return self.refusal is None and not self.actions and not self.problems


# -- desired values ------------------------------------------------------------------------------


def desired_settings(settings: SwarmSettings) -> dict[str, Setting]:
    """The settings the spec manages, in Engine units; those left out are not managed."""
    out: dict[str, Setting] = {}
    if settings.task_history_limit is not None:
        out["taskHistoryLimit"] = settings.task_history_limit
    if settings.snapshot_interval is not None:
        out["snapshotInterval"] = settings.snapshot_interval
    if settings.dispatcher_heartbeat is not None:
        out["dispatcherHeartbeat"] = duration_to_ns(settings.dispatcher_heartbeat)
    if settings.node_cert_expiry is not None:
        out["nodeCertExpiry"] = duration_to_ns(settings.node_cert_expiry)
    if settings.autolock is not None:
        out["autolock"] = settings.autolock
    return out


def node_labels(node: ClusterNode) -> dict[str, str]:
    """The labels a spec node's swarm node carries: the user's and swarmkeeper's own."""
    labels = {**node.labels, NODE_NAME: node.name}
    if node.engine.host is not None:
        labels[NODE_ENGINE] = node.engine.host
    return labels


def _marker(spec: SwarmClusterSpec) -> str | None:
    return None if spec.rotate_join_tokens is None else str(spec.rotate_join_tokens)


# -- matching ------------------------------------------------------------------------------------


def _unvouched(local: LocalNode | None) -> bool:
    """The engine cannot say which swarm node it is (or whether it is one)."""
    if local is None:
        return True
    if local.state == "inactive":
        return False  # in no swarm at all
    return local.state != "active" or not local.node_id


def match_nodes(nodes: Sequence[ClusterNode], view: ClusterView) -> Matching:
    out = Matching()
    by_id = {m.id: m for m in view.members}
    claimed: set[str] = set()
    # 1. The engine says which node it is: the strongest evidence there is.
    for node in nodes:
        local = view.engines[node.name].local
        if local is not None and local.node_id in by_id and local.node_id not in claimed:
            out.members[node.name] = by_id[local.node_id]
            claimed.add(local.node_id)
    # 2. The engine cannot vouch (silent, locked, joining): the node labelled with its name (the
    #    live one, if it joined twice). An engine out of any swarm, or in another, makes them stale.
    for node in nodes:
        if node.name in out.members or not _unvouched(view.engines[node.name].local):
            continue
        labelled = [m for m in view.members if m.labels.get(NODE_NAME) == node.name and m.id not in claimed]
        if labelled:
            best = max(labelled, key=lambda m: (m.state == "ready", m.created_at))
            out.members[node.name] = best
            claimed.add(best.id)
    # 3. Same hostname, nothing to verify it by: shown, never changed or removed.
    for node in nodes:
        if node.name in out.members or not _unvouched(view.engines[node.name].local):
            continue
        same = [
            m for m in view.members if m.id not in claimed and NODE_NAME not in m.labels and m.hostname == node.name
        ]
        if len(same) == 1:
            out.weak[node.name] = same[0]
            claimed.add(same[0].id)
    names = {n.name for n in nodes}
    for m in view.members:
        if m.id in claimed:
            continue
        label = m.labels.get(NODE_NAME)
        if label is None:
            out.unknown.append(m)
        else:
            why = "left the spec" if label not in names else "stale entry: the node joined again"
            out.departed.append((label, m, why))
    return out


# -- planning ------------------------------------------------------------------------------------


def plan_cluster(spec: SwarmClusterSpec, view: ClusterView) -> ClusterPlan:
    if not spec.nodes:
        return ClusterPlan()
    unlocks = _unlocks(spec, view)
    if view.swarm is None:
        plan = _plan_bootstrap(spec, view)
        if unlocks:  # a locked manager may be the swarm: unlock first, then look again
            plan = ClusterPlan(actions=unlocks, problems=plan.problems)
        return plan
    plan = _plan_swarm(spec, view, view.swarm)
    plan.actions[:0] = unlocks
    return plan


def _unlocks(spec: SwarmClusterSpec, view: ClusterView) -> list[Action]:
    locked = [n for n in spec.nodes if (view.engines[n.name].local or _NOBODY).state == "locked"]
    if not locked or not view.unlock_key_available:
        return []
    return [UnlockNode(n.name) for n in locked]


_NOBODY = LocalNode(state="", node_id="", manager=False, cluster_id=None, version="", hostname="")


def _first_manager(spec: SwarmClusterSpec) -> ClusterNode:
    return next(n for n in spec.nodes if n.role == "manager")  # the model requires one


def _plan_bootstrap(spec: SwarmClusterSpec, view: ClusterView) -> ClusterPlan:
    """No manager of the spec answers: start a swarm, but only on engines that are all free."""
    plan = ClusterPlan()
    if view.swarm_error:
        plan.refusal = Refusal(
            "NoQuorum",
            f"the swarm's managers do not answer swarm calls ({view.swarm_error}); bring the other managers "
            "back, or as a last resort run `docker swarm init --force-new-cluster` on a surviving one",
        )
        return plan
    busy: list[str] = []
    for node in spec.nodes:
        engine = view.engines[node.name]
        if engine.local is None:
            busy.append(f"{node.name}'s engine does not answer ({engine.error})")
        elif engine.local.state != "inactive":
            busy.append(f"{node.name} is already in a swarm (state {engine.local.state})")
            if engine.local.state == "locked":
                plan.problems[node.name] = "locked: put the unlock key in spec.swarm.unlockKeyFile or unlock it by hand"
    if busy:
        plan.refusal = Refusal(
            "NoSwarm",
            "no manager in spec.nodes answers, and a new swarm is only started when every node's engine is "
            "free to join it: " + "; ".join(busy),
        )
        return plan
    first = _first_manager(spec)
    marker = _marker(spec)
    plan.actions.append(
        InitSwarm(
            node=first.name,
            advertise_addr=first.advertise_addr,
            listen_addr=first.listen_addr,
            settings=desired_settings(spec.swarm),
            labels={ROTATION: marker} if marker is not None else {},
            default_addr_pool=tuple(spec.swarm.default_addr_pool),
            subnet_size=spec.swarm.subnet_size,
            data_path_port=spec.swarm.data_path_port,
        )
    )
    # What follows once the swarm exists (planned again on fresh state before it is done).
    others = [n for n in spec.nodes if n is not first]
    for node in sorted(others, key=lambda n: n.role != "manager"):
        plan.actions.append(JoinNode(node.name, node.role, node.listen_addr, node.advertise_addr))
    for node in spec.nodes:
        plan.actions.append(
            UpdateNode(node.name, None, node.role, node.availability, node_labels(node), _new_node_changes(node))
        )
    if spec.swarm.autolock:
        plan.actions.append(StoreUnlockKey(str(spec.swarm.unlock_key_file)))
    _warn_even(plan, sum(1 for n in spec.nodes if n.role == "manager"))
    return plan


def _new_node_changes(node: ClusterNode) -> tuple[str, ...]:
    changes = ["labels"]
    if node.availability != "active":
        changes.append(f"availability {node.availability}")
    return tuple(changes)


@dataclass
class _NodeSteps:
    """The spec nodes' actions, kept apart so they can be carried out in a safe order."""

    joins: list[Action] = field(default_factory=list)
    promotions: list[Action] = field(default_factory=list)
    updates: list[Action] = field(default_factory=list)
    demotions: list[Action] = field(default_factory=list)

    def ordered(self) -> list[Action]:
        return [*self.joins, *self.promotions, *self.updates, *self.demotions]


def _plan_swarm(spec: SwarmClusterSpec, view: ClusterView, swarm: SwarmInfo) -> ClusterPlan:
    plan = ClusterPlan(matching=match_nodes(spec.nodes, view))
    plan.refusal = _quorum_lost(view)
    if plan.refusal is not None:
        return plan

    steps = _NodeSteps()
    for node in spec.nodes:
        member = plan.matching.members.get(node.name)
        if member is None:
            _plan_unmatched(plan, steps, node, view)
        else:
            _plan_member(plan, steps, node, member, view)

    removals = _removals(spec, plan)
    settings = _swarm_update(spec, swarm, plan)
    plan.actions = [*steps.ordered(), *removals]
    if settings is not None:
        plan.actions.append(settings)
    store_key = _store_unlock_key(spec, view, swarm)
    if store_key is not None:
        plan.actions.append(store_key)

    _check_quorum(plan, view)
    return plan


def _quorum_lost(view: ClusterView) -> Refusal | None:
    managers = [m for m in view.members if m.is_manager]
    reachable = [m for m in managers if m.reachability == "reachable"]
    if managers and len(reachable) < quorum(len(managers)):
        return Refusal(
            "QuorumLost",
            f"only {len(reachable)} of {len(managers)} managers are reachable (a majority, {quorum(len(managers))}, "
            "is needed): the swarm cannot change anything until managers come back",
        )
    return None


def _plan_unmatched(plan: ClusterPlan, steps: _NodeSteps, node: ClusterNode, view: ClusterView) -> None:
    """A spec node no swarm node is known to be: join it, or say why not."""
    engine = view.engines[node.name]
    local = engine.local
    if local is None:
        why = f"its engine does not answer ({engine.error})"
        weak = plan.matching.weak.get(node.name)
        plan.waiting[node.name] = why + (f"; a node with its hostname is {weak.state}" if weak else "")
    elif local.state == "inactive":
        steps.joins.append(JoinNode(node.name, node.role, node.listen_addr, node.advertise_addr))
    elif local.state == "pending":
        plan.waiting[node.name] = "joining the swarm"
    elif local.state == "locked" and not view.unlock_key_available:
        plan.problems[node.name] = "locked: put the unlock key in spec.swarm.unlockKeyFile or unlock it by hand"
    elif local.state == "error":
        plan.problems[node.name] = f"its engine reports a swarm error: {local.error or 'unknown'}"
    elif local.state == "active":
        plan.problems[node.name] = (
            f"belongs to another swarm (as node {local.node_id[:12]}); swarmkeeper never takes a node out "
            "of another swarm: run `docker swarm leave` on it"
        )


def _plan_member(plan: ClusterPlan, steps: _NodeSteps, node: ClusterNode, member: Member, view: ClusterView) -> None:
    """A spec node that is in the swarm: note its state, and bring its role, availability and labels in line."""
    _note_member_state(plan, node, member, view)
    update = _node_update(node, member)
    if update is None:
        return
    if update.role == "manager" and not member.is_manager:
        if member.state != "ready":
            plan.waiting[node.name] = f"to be promoted once it is ready (now {member.state})"
            return
        steps.promotions.append(update)
    elif update.role == "worker" and member.is_manager:
        steps.demotions.append(update)
    else:
        steps.updates.append(update)


def _note_member_state(plan: ClusterPlan, node: ClusterNode, member: Member, view: ClusterView) -> None:
    engine = view.engines[node.name]
    local = engine.local
    if local is None:
        plan.waiting[node.name] = f"its engine does not answer ({engine.error})"
    elif local.state == "locked" and not view.unlock_key_available:
        plan.problems[node.name] = "locked: put the unlock key in spec.swarm.unlockKeyFile or unlock it by hand"
    elif member.state != "ready":
        plan.waiting[node.name] = f"{member.state}" + (f" ({member.message})" if member.message else "")


def _removals(spec: SwarmClusterSpec, plan: ClusterPlan) -> list[Action]:
    """Swarm nodes to remove: ours that left the spec, and unknown ones when asked (else a warning)."""
    removals: list[Action] = []
    for name, member, why in plan.matching.departed:
        removals.append(RemoveNode(name, member, why, member.labels.get(NODE_ENGINE)))
    for member in plan.matching.unknown:
        name = member.hostname or member.id[:12]
        if spec.remove_unknown_nodes:
            removals.append(RemoveNode(name, member, "not in spec.nodes", None))
        else:
            plan.warnings.append(
                f"node {name} ({member.id[:12]}, {member.role}) is in the swarm but not in spec.nodes; "
                "removeUnknownNodes: true removes it (and rotateJoinTokens keeps it from joining again)"
            )
    return removals


def _store_unlock_key(spec: SwarmClusterSpec, view: ClusterView, swarm: SwarmInfo) -> StoreUnlockKey | None:
    # The key file follows the swarm: once autolock is on (now, or after the settings update), it
    # must hold the current key.
    autolock = spec.swarm.autolock if spec.swarm.autolock is not None else bool(swarm.settings.get("autolock"))
    if autolock and spec.swarm.unlock_key_file and view.unlock_key_stored is not True:
        return StoreUnlockKey(spec.swarm.unlock_key_file)
    return None


def _node_update(node: ClusterNode, member: Member) -> UpdateNode | None:
    labels = node_labels(node)
    changes: list[str] = []
    if node.role != member.role:
        changes.append(f"role {member.role} → {node.role}")
    if node.availability != member.availability:
        changes.append(f"availability {member.availability} → {node.availability}")
    if dict(member.labels) != labels:
        changes.append("labels")
    if not changes:
        return None
    return UpdateNode(node.name, member, node.role, node.availability, labels, tuple(changes))


def _swarm_update(spec: SwarmClusterSpec, swarm: SwarmInfo, plan: ClusterPlan) -> UpdateSwarm | None:
    wanted = desired_settings(spec.swarm)
    changes = [name for name, value in wanted.items() if swarm.settings.get(name) != value]
    labels = dict(swarm.labels)
    marker = _marker(spec)
    rotate = marker is not None and swarm.labels.get(ROTATION) != marker
    if rotate:
        assert marker is not None
        labels[ROTATION] = marker
        changes.append("rotate join tokens")
    # Fixed when the swarm was created: say so rather than pretend to apply them.
    fixed = spec.swarm
    if fixed.default_addr_pool and tuple(fixed.default_addr_pool) != swarm.default_addr_pool:
        plan.warnings.append("defaultAddrPool differs from the swarm's; it is fixed when a swarm is created")
    if fixed.subnet_size is not None and fixed.subnet_size != swarm.subnet_size:
        plan.warnings.append("subnetSize differs from the swarm's; it is fixed when a swarm is created")
    if fixed.data_path_port is not None and fixed.data_path_port != swarm.data_path_port:
        plan.warnings.append("dataPathPort differs from the swarm's; it is fixed when a swarm is created")
    if not changes:
        return None
    return UpdateSwarm(wanted, labels, rotate, tuple(changes))


def _check_quorum(plan: ClusterPlan, view: ClusterView) -> None:
    """Walk the actions in order; refuse the plan if any step would leave the managers without a majority."""
    managers = {m.id for m in view.members if m.is_manager}
    reachable = {m.id for m in view.members if m.reachability == "reachable"}
    for i, action in enumerate(plan.actions):
        if isinstance(action, JoinNode) and action.role == "manager":
            managers.add(f"join:{i}")
            reachable.add(f"join:{i}")
        elif isinstance(action, UpdateNode) and action.member is not None:
            if action.role == "manager" and not action.member.is_manager:
                managers.add(action.member.id)
                reachable.add(action.member.id)
            elif action.role == "worker" and action.member.is_manager:
                _take_away(plan, action.node, action.member, managers, reachable, "demoting")
        elif isinstance(action, RemoveNode) and action.member.is_manager:
            _take_away(plan, action.node, action.member, managers, reachable, "removing")
        if plan.refusal is not None:
            plan.actions = []
            return
    _warn_even(plan, len(managers))


def _take_away(
    plan: ClusterPlan, name: str, member: Member, managers: set[str], reachable: set[str], verb: str
) -> None:
    managers.discard(member.id)
    reachable.discard(member.id)
    if not managers:
        plan.refusal = Refusal("WouldLoseQuorum", f"refused: {verb} {name} would leave the swarm without a manager")
    elif len(reachable) < quorum(len(managers)):
        plan.refusal = Refusal(
            "WouldLoseQuorum",
            f"refused: {verb} {name} would leave {len(reachable)} reachable of {len(managers)} managers, short "
            f"of the majority ({quorum(len(managers))}) the swarm needs to keep working; nothing was changed",
        )


def _warn_even(plan: ClusterPlan, managers: int) -> None:
    if managers and managers % 2 == 0:
        plan.warnings.append(
            f"{managers} managers: an even number tolerates no more failures than {managers - 1} "
            f"(both lose quorum after {(managers - 1) // 2 + 1} failures); use an odd number"
        )
