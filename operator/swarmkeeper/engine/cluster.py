"""Bring a swarm in line with its ``SwarmCluster``: observe, plan, carry out one action, repeat.

The I/O side of ``cluster_plan``. It talks to every node's own engine (join and leave happen
there) and to one manager (everything else), carries out one planned action at a time and
observes again before the next, and waits for each membership change to settle first: swarm
refuses concurrent raft membership changes, and a quorum decision made on stale state is how
clusters get lost. What to do, and whether it is safe, is decided by the planner alone.

The unlock key is a secret: it is fetched only to be compared with or written to the key file
(mode 0600), and never logged, returned or put in status.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..api import Key
from ..api.cluster import EngineEndpoint, SwarmCluster, SwarmClusterSpec, SwarmClusterStatus
from ..loading import Manifest
from ..swarm import nodes
from ..swarm.connect import EngineClient, connect
from ..swarm.errors import EngineError, call
from .cluster_plan import (
    Action,
    ClusterPlan,
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
)
from .cluster_status import cluster_status
from .status import manifest_spec_hash
from .unlock_key import read_key, same_key, write_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timeouts:
    settle: float = 90.0  # a join, promotion or demotion showing in the swarm (re-promotion: ~30 s)
    drain: float = 60.0  # a leaving node's tasks stopping before it leaves
    poll: float = 0.3


def has_nodes(manifest: Manifest) -> bool:
    """A SwarmCluster that describes its swarm (and not only how to reach it)."""
    return isinstance(manifest.resource, SwarmCluster) and bool(manifest.resource.spec.nodes)


def _base_dir(manifest: Manifest) -> Path:
    return manifest.origin.file.parent if manifest.origin is not None else Path.cwd()


# -- connections ---------------------------------------------------------------------------------


class NodeEngines:
    """Connections to the nodes' own engines for one pass; an engine that failed is not retried in it."""

    def __init__(self, spec: SwarmClusterSpec, base_dir: Path) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self._clients: dict[str, EngineClient] = {}
        self._failed: dict[str, str] = {}

    def client(self, name: str) -> EngineClient:
        node = next(n for n in self.spec.nodes if n.name == name)
        return self._connect(name, node.engine)

    def for_host(self, host: str) -> EngineClient:
        """A node no longer in the spec, by the engine address recorded when it joined."""
        own = self.spec.engine
        engine = EngineEndpoint(
            host=host,
            tls=own.tls if host.startswith("tcp://") else None,
            ssh=own.ssh if host.startswith("ssh://") else None,
            timeout=own.timeout,
        )
        return self._connect(f"host:{host}", engine)

    def _connect(self, key: str, endpoint: EngineEndpoint) -> EngineClient:
        if key in self._failed:
            raise EngineError(self._failed[key])
        client = self._clients.get(key)
        if client is None:
            try:
                client = call(lambda: connect(endpoint, base_dir=self.base_dir))
            except EngineError as exc:
                self._failed[key] = str(exc)
                raise
            self._clients[key] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


@contextmanager
def node_engines(spec: SwarmClusterSpec, base_dir: Path) -> Iterator[NodeEngines]:
    engines = NodeEngines(spec, base_dir)
    try:
        yield engines
    finally:
        engines.close()


def connect_cluster(cluster: SwarmCluster, base_dir: Path | None) -> EngineClient:
    """The engine a cluster's objects are applied through.

    ``spec.engine.host`` when set; otherwise, for a cluster with nodes, the first manager in
    spec.nodes that answers as a manager (so the objects follow the swarm when a manager dies), or
    else the first one that answers at all (a swarm still to be initialised there).
    """
    spec = cluster.spec
    if spec.engine.host is not None or not spec.nodes:
        return connect(spec.engine, base_dir=base_dir)
    fallback: EngineClient | None = None
    problems: list[str] = []
    for node in (n for n in spec.nodes if n.role == "manager"):
        try:
            client = call(lambda: connect(node.engine, base_dir=base_dir))  # noqa: B023 (called at once)
            local = nodes.local_node(client)
        except EngineError as exc:
            problems.append(f"{node.name}: {exc}")
            continue
        if local.manager:
            if fallback is not None:
                fallback.close()
            return client
        if fallback is None:
            fallback = client
        else:
            client.close()
    if fallback is not None:
        return fallback
    raise EngineError(f"no manager of cluster {cluster.metadata.name} answers: {'; '.join(problems)}")


# -- observing -----------------------------------------------------------------------------------


def _key_path(spec: SwarmClusterSpec, base_dir: Path) -> Path | None:
    return base_dir / spec.swarm.unlock_key_file if spec.swarm.unlock_key_file else None


_OS_ERROR = re.compile(r"\w+Error\(\d+, '([^']+)'\)")


def _why_silent(exc: EngineError) -> str:
    """The gist of a connection failure ("Connection refused"), not the whole chain of wrappers."""
    found = _OS_ERROR.findall(str(exc))
    return found[-1] if found else str(exc)


def observe_cluster(spec: SwarmClusterSpec, engines: NodeEngines, key_path: Path | None) -> ClusterView:
    """Each node's own account of itself, then the swarm as the first answering manager sees it."""
    views: dict[str, EngineView] = {}
    for node in spec.nodes:
        try:
            views[node.name] = EngineView(nodes.local_node(engines.client(node.name)))
        except EngineError as exc:
            views[node.name] = EngineView(None, _why_silent(exc))
    key_available = key_path is not None and read_key(key_path) is not None
    swarm_error: str | None = None
    for node in sorted(spec.nodes, key=lambda n: n.role != "manager"):
        local = views[node.name].local
        if local is None or not local.manager or local.state != "active":
            continue
        client = engines.client(node.name)
        try:
            swarm = nodes.swarm_info(client)
            members = nodes.members(client)
            stored: bool | None = None
            if key_path is not None and swarm.settings.get("autolock"):
                stored = same_key(read_key(key_path), nodes.unlock_key(client))
        except EngineError as exc:
            swarm_error = swarm_error or str(exc)
            continue
        return ClusterView(views, swarm, members, node.name, None, key_available, stored)
    return ClusterView(views, swarm_error=swarm_error, unlock_key_available=key_available)


# -- carrying out --------------------------------------------------------------------------------


def _until(what: str, check: Callable[[], bool], timeout: float, poll: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except EngineError:
            pass  # membership changes come with leader elections: a call may fail in between
        if time.monotonic() >= deadline:
            raise EngineError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(poll)


@dataclass
class _Pass:
    """What carrying out an action needs: connections, the latest view, and where warnings go."""

    engines: NodeEngines
    view: ClusterView
    key_path: Path | None
    timeouts: Timeouts
    warnings: list[str] = field(default_factory=list)

    def manager(self) -> EngineClient:
        if self.view.manager is None:
            raise EngineError("no manager answers")
        return self.engines.client(self.view.manager)

    def until(self, what: str, check: Callable[[], bool], timeout: float | None = None) -> None:
        _until(what, check, self.timeouts.settle if timeout is None else timeout, self.timeouts.poll)


def _carry_out(action: Action, p: _Pass) -> None:
    match action:
        case InitSwarm():
            client = p.engines.client(action.node)
            nodes.init(
                client,
                advertise_addr=action.advertise_addr,
                listen_addr=action.listen_addr,
                settings=action.settings,
                labels=action.labels,
                default_addr_pool=action.default_addr_pool,
                subnet_size=action.subnet_size,
                data_path_port=action.data_path_port,
            )
            p.until(f"{action.node} leading the new swarm", lambda: nodes.local_node(client).manager)
        case UnlockNode():
            key = read_key(p.key_path) if p.key_path is not None else None
            if key is None:
                raise EngineError("the unlock key file is missing or empty")
            client = p.engines.client(action.node)
            nodes.unlock(client, key)
            p.until(f"{action.node} unlocked", lambda: nodes.local_node(client).state == "active")
        case JoinNode():
            _join(action, p)
        case UpdateNode():
            assert action.member is not None, "planned for a node that has not joined yet"
            manager, member = p.manager(), action.member
            nodes.update_member(
                manager, member, role=action.role, availability=action.availability, labels=action.labels
            )
            if (action.role == "manager") != member.is_manager:
                p.until(
                    f"{action.node} becoming a {action.role}", lambda: _role_settled(manager, member.id, action.role)
                )
        case UpdateSwarm():
            assert p.view.swarm is not None
            nodes.update_swarm(
                p.manager(),
                p.view.swarm,
                settings=action.settings,
                labels=action.labels,
                rotate_join_tokens=action.rotate_join_tokens,
            )
        case StoreUnlockKey():
            assert p.key_path is not None
            write_key(p.key_path, nodes.unlock_key(p.manager()))
        case RemoveNode():
            _remove(action, p)


def _role_settled(manager: EngineClient, node_id: str, role: str) -> bool:
    member = nodes.member(manager, node_id)
    if member is None:
        return False
    if role == "manager":
        return member.reachability == "reachable"
    return not member.is_manager


def _join(action: JoinNode, p: _Pass) -> None:
    manager = p.manager()
    tokens = nodes.join_tokens(manager)
    remotes = [m.manager_addr for m in p.view.members if m.reachability == "reachable" and m.manager_addr]
    client = p.engines.client(action.node)
    nodes.join(
        client,
        remote_addrs=remotes,
        token=tokens.manager if action.role == "manager" else tokens.worker,
        listen_addr=action.listen_addr,
        advertise_addr=action.advertise_addr,
    )

    def joined() -> bool:
        local = nodes.local_node(client)
        member = nodes.member(manager, local.node_id) if local.state == "active" and local.node_id else None
        if member is None or member.state != "ready":
            return False
        return action.role == "worker" or member.reachability == "reachable"

    p.until(f"{action.node} joining as {action.role}", joined)


def _remove(action: RemoveNode, p: _Pass) -> None:
    """Demote, drain, tell the node to leave, then remove it from the managers' list."""
    manager, member, name = p.manager(), action.member, action.node
    if member.is_manager or member.role != "worker" or member.availability != "drain":
        nodes.update_member(manager, member, role="worker", availability="drain", labels=member.labels)
        if member.is_manager:
            p.until(f"{name} demoted", lambda: _role_settled(manager, member.id, "worker"))
    if member.state == "ready":
        try:
            p.until(
                f"{name}'s tasks moving to other nodes",
                lambda: nodes.running_tasks(manager, member.id) == 0,
                p.timeouts.drain,
            )
        except EngineError as exc:
            p.warnings.append(f"{name}: {exc}; removing it anyway")
        if _leave(action, p):

            def down() -> bool:
                current = nodes.member(manager, member.id)
                return current is None or current.state == "down"

            with contextlib.suppress(EngineError):  # if it does not show as down, it is removed with force below
                p.until(f"{name} shown as down", down)
    current = nodes.member(manager, member.id)
    if current is not None:
        nodes.remove_member(manager, member.id, force=current.state != "down")


def _leave(action: RemoveNode, p: _Pass) -> bool:
    name, host = action.node, action.engine_host
    if host is None:
        p.warnings.append(
            f"{name}: no engine address known, so it was removed from the managers' side only; its engine still "
            "believes it is in the swarm until `docker swarm leave --force` is run on it"
        )
        return False
    try:
        client = p.engines.for_host(host)
        local = nodes.local_node(client)
        if local.node_id != action.member.id:
            p.warnings.append(f"{name}: the engine at {host} is no longer this node; it was not told to leave")
            return False
        p.until(f"{name}'s engine seeing its demotion", lambda: not nodes.local_node(client).manager)
        nodes.leave(client)
    except EngineError as exc:
        p.warnings.append(f"{name}: could not tell its engine to leave ({exc}); run `docker swarm leave` on it")
        return False
    return True


# -- one pass ------------------------------------------------------------------------------------


@dataclass
class ClusterOutcome:
    key: Key
    name: str
    planned: list[str]  # what the first plan of the pass held (all a dry run does)
    done: list[str]
    errors: list[str]
    warnings: list[str]
    plan: ClusterPlan  # what is left after the pass
    status: SwarmClusterStatus
    swarm_ready: bool  # a manager answers: the cluster's objects can be applied

    @property
    def ok(self) -> bool:
        return not self.errors and self.plan.refusal is None and not self.plan.problems


def reconcile_cluster(manifest: Manifest, *, dry_run: bool = False, timeouts: Timeouts = Timeouts()) -> ClusterOutcome:
    cluster = manifest.resource
    assert isinstance(cluster, SwarmCluster)
    spec, name = cluster.spec, cluster.metadata.name
    base = _base_dir(manifest)
    key_path = _key_path(spec, base)
    done: list[str] = []
    errors: list[str] = []
    with node_engines(spec, base) as engines:
        view = observe_cluster(spec, engines, key_path)
        plan = plan_cluster(spec, view)
        planned = [a.describe() for a in plan.actions]
        p = _Pass(engines, view, key_path, timeouts)
        attempts: Counter[str] = Counter()
        # Each action changes what the next one should be; a bound keeps a misbehaving engine from
        # holding the pass forever.
        for _ in range(0 if dry_run else 4 * len(spec.nodes) + 8):
            if plan.refusal is not None or not plan.actions:
                break
            action = plan.actions[0]
            what = action.describe()
            attempts[what] += 1
            if attempts[what] > 2:
                errors.append(f"{what}: carried out, but the swarm does not show it")
                break
            log.info("cluster %s: %s", name, what)
            try:
                _carry_out(action, p)
            except EngineError as exc:
                errors.append(f"{what}: {exc}")
            else:
                done.append(what)
            p.view = view = observe_cluster(spec, engines, key_path)
            plan = plan_cluster(spec, view)
            if errors:
                break
    warnings = [*p.warnings, *plan.warnings]
    for message in warnings:
        log.warning("cluster %s: %s", name, message)
    for message in errors:
        log.error("cluster %s: %s", name, message)
    if plan.refusal is not None:
        log.error("cluster %s: %s", name, plan.refusal.message)
    for node, problem in plan.problems.items():
        log.error("cluster %s: %s: %s", name, node, problem)
    status = cluster_status(
        spec,
        view,
        plan,
        done=done,
        errors=errors,
        now=datetime.now(UTC).replace(microsecond=0),
        generation=cluster.metadata.generation,
        spec_hash=manifest_spec_hash(manifest),
    )
    return ClusterOutcome(
        manifest.key, name, planned, done, errors, warnings, plan, status, swarm_ready=view.swarm is not None
    )


def reconcile_clusters(
    manifests: Sequence[Manifest], *, dry_run: bool = False, timeouts: Timeouts = Timeouts()
) -> list[ClusterOutcome]:
    """Every SwarmCluster with nodes among ``manifests``, one after the other."""
    return [reconcile_cluster(m, dry_run=dry_run, timeouts=timeouts) for m in manifests if has_nodes(m)]
