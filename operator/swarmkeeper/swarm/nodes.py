"""Swarm membership on the wire: what engines and managers say about nodes, and the calls that change it.

Reads turn the Engine API's JSON into small typed records (``LocalNode``, ``Member``, ``SwarmInfo``)
so that planning never sees raw payloads. Writes are single calls (init, join, leave, update,
remove, unlock); deciding when they are safe is the planner's job, not this module's.

Join tokens and the unlock key are secrets: they travel as ``SecretStr``, are never put in a
message, and are cut out of any error text the engine sends back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from . import labels as L
from .connect import EngineClient
from .errors import EngineError, call

# Labels swarmkeeper puts on the swarm's own objects (nodes, the swarm).
NODE_NAME: str = L.PREFIX + "node"  # the node's name in spec.nodes
NODE_ENGINE: str = L.PREFIX + "engine"  # how its engine was reached: to tell it to leave once it left the spec
ROTATION: str = L.PREFIX + "join-token-rotation"  # the rotateJoinTokens value last acted on

# Swarm settings by their spec name → where they live in the Engine API's swarm spec.
SETTING_PATHS: Mapping[str, tuple[str, str]] = {
    "taskHistoryLimit": ("Orchestration", "TaskHistoryRetentionLimit"),
    "snapshotInterval": ("Raft", "SnapshotInterval"),
    "dispatcherHeartbeat": ("Dispatcher", "HeartbeatPeriod"),
    "nodeCertExpiry": ("CAConfig", "NodeCertExpiry"),
    "autolock": ("EncryptionConfig", "AutoLockManagers"),
}
Setting = int | bool


@dataclass(frozen=True)
class LocalNode:
    """What one engine says about its own membership (``GET /info``)."""

    state: str  # LocalNodeState: inactive, pending, active, error, locked
    node_id: str
    manager: bool  # ControlAvailable: this engine runs a manager that answers swarm calls
    cluster_id: str | None  # only managers know it
    version: str
    hostname: str
    error: str = ""


@dataclass(frozen=True)
class Member:
    """The swarm's record of one node (``GET /nodes``)."""

    id: str
    version: int
    hostname: str
    role: str  # what the spec asks: manager or worker
    availability: str
    labels: Mapping[str, str]
    state: str  # ready, down, unknown, disconnected
    address: str
    message: str
    leader: bool
    reachability: str | None  # None unless it is a manager (member of the raft)
    manager_addr: str | None
    engine_version: str | None
    created_at: str

    @property
    def is_manager(self) -> bool:
        return self.reachability is not None


@dataclass(frozen=True)
class SwarmInfo:
    """The swarm's settings as its managers hold them (``GET /swarm``)."""

    id: str
    version: int
    labels: Mapping[str, str]
    settings: Mapping[str, Setting | None]  # by spec name, in Engine units (ns for durations)
    default_addr_pool: tuple[str, ...]
    subnet_size: int | None
    data_path_port: int | None
    raw_spec: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class JoinTokens:
    worker: SecretStr
    manager: SecretStr


def _redacted(exc: EngineError, *secrets: SecretStr) -> EngineError:
    message = str(exc)
    for secret in secrets:
        value = secret.get_secret_value()
        if value:
            message = message.replace(value, "<redacted>")
    return EngineError(message, exc.status)


# -- reads ---------------------------------------------------------------------------------------


def local_node(client: EngineClient) -> LocalNode:
    info = call(lambda: client.info())
    swarm = info.get("Swarm") or {}
    cluster = swarm.get("Cluster") or {}
    return LocalNode(
        state=str(swarm.get("LocalNodeState") or "inactive"),
        node_id=str(swarm.get("NodeID") or ""),
        manager=bool(swarm.get("ControlAvailable")),
        cluster_id=cluster.get("ID") or None,
        version=str(info.get("ServerVersion") or ""),
        hostname=str(info.get("Name") or ""),
        error=str(swarm.get("Error") or ""),
    )


def _member(raw: Mapping[str, Any]) -> Member:
    spec = raw.get("Spec") or {}
    status = raw.get("Status") or {}
    manager = raw.get("ManagerStatus") or {}
    description = raw.get("Description") or {}
    return Member(
        id=str(raw["ID"]),
        version=int(raw["Version"]["Index"]),
        hostname=str(description.get("Hostname") or ""),
        role=str(spec.get("Role") or "worker"),
        availability=str(spec.get("Availability") or "active"),
        labels=dict(spec.get("Labels") or {}),
        state=str(status.get("State") or "unknown"),
        address=str(status.get("Addr") or ""),
        message=str(status.get("Message") or ""),
        leader=bool(manager.get("Leader")),
        reachability=manager.get("Reachability") if manager else None,
        manager_addr=manager.get("Addr") if manager else None,
        engine_version=(description.get("Engine") or {}).get("EngineVersion"),
        created_at=str(raw.get("CreatedAt") or ""),
    )


def members(client: EngineClient) -> list[Member]:
    return [_member(raw) for raw in call(lambda: client.nodes())]


def member(client: EngineClient, node_id: str) -> Member | None:
    """One node as the swarm has it now; None once it is removed."""
    try:
        return _member(call(lambda: client.inspect_node(node_id)))
    except EngineError as exc:
        if exc.not_found:
            return None
        raise


def swarm_info(client: EngineClient) -> SwarmInfo:
    raw = call(lambda: client.inspect_swarm())
    spec = raw.get("Spec") or {}
    settings: dict[str, Setting | None] = {}
    for name, (section, key) in SETTING_PATHS.items():
        value = (spec.get(section) or {}).get(key)
        settings[name] = value if value is None or isinstance(value, bool) else int(value)
    return SwarmInfo(
        id=str(raw["ID"]),
        version=int(raw["Version"]["Index"]),
        labels=dict(spec.get("Labels") or {}),
        settings=settings,
        default_addr_pool=tuple(raw.get("DefaultAddrPool") or ()),
        subnet_size=raw.get("SubnetSize"),
        data_path_port=raw.get("DataPathPort"),
        raw_spec=spec,
    )


def join_tokens(client: EngineClient) -> JoinTokens:
    tokens = call(lambda: client.inspect_swarm())["JoinTokens"]
    return JoinTokens(worker=SecretStr(tokens["Worker"]), manager=SecretStr(tokens["Manager"]))


def unlock_key(client: EngineClient) -> SecretStr:
    return SecretStr(str(call(lambda: client.get_unlock_key())["UnlockKey"]))


def running_tasks(client: EngineClient, node_id: str) -> int:
    """Tasks on the node that run or are about to, and are meant to."""
    tasks = call(lambda: client.tasks(filters={"node": node_id, "desired-state": "running"}))
    live = {"assigned", "accepted", "preparing", "ready", "starting", "running"}
    return sum(1 for t in tasks if (t.get("Status") or {}).get("State") in live)


# -- writes --------------------------------------------------------------------------------------


def swarm_spec(settings: Mapping[str, Setting], labels: Mapping[str, str], base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (a swarm spec as read) with ``settings`` and ``labels`` put in; everything else kept."""
    spec: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for name, value in settings.items():
        section, key = SETTING_PATHS[name]
        spec.setdefault(section, {})[key] = value
    spec["Labels"] = dict(labels)
    return spec


def init(
    client: EngineClient,
    *,
    advertise_addr: str | None,
    listen_addr: str,
    settings: Mapping[str, Setting],
    labels: Mapping[str, str],
    default_addr_pool: Sequence[str] = (),
    subnet_size: int | None = None,
    data_path_port: int | None = None,
) -> str:
    """``docker swarm init``; returns the new node's ID."""
    body: dict[str, Any] = {
        "ListenAddr": listen_addr,
        "ForceNewCluster": False,
        "Spec": swarm_spec(settings, labels, {}),
    }
    if advertise_addr:
        body["AdvertiseAddr"] = advertise_addr
    if default_addr_pool:
        body["DefaultAddrPool"] = list(default_addr_pool)
        # The engine takes a missing size as 0, and its allocator then stops for good ("invalid
        # pools size: 0"): no task is ever scheduled. docker swarm init defaults it to 24.
        body["SubnetSize"] = subnet_size if subnet_size is not None else 24
    elif subnet_size is not None:
        body["SubnetSize"] = subnet_size
    if data_path_port is not None:
        body["DataPathPort"] = data_path_port
    return str(client.post_json("/swarm/init", body=body))


def join(
    client: EngineClient, *, remote_addrs: Sequence[str], token: SecretStr, listen_addr: str, advertise_addr: str | None
) -> None:
    """``docker swarm join`` on this engine."""
    try:
        call(
            lambda: client.join_swarm(
                remote_addrs=list(remote_addrs),
                join_token=token.get_secret_value(),
                listen_addr=listen_addr,
                advertise_addr=advertise_addr,
            )
        )
    except EngineError as exc:
        raise _redacted(exc, token) from None


def leave(client: EngineClient, *, force: bool = False) -> None:
    call(lambda: client.leave_swarm(force=force))


def update_member(
    client: EngineClient, member: Member, *, role: str, availability: str, labels: Mapping[str, str]
) -> None:
    """Set the node's role, availability and labels in one update (at the version it was read at)."""
    spec = {"Role": role, "Availability": availability, "Labels": dict(labels)}
    call(lambda: client.update_node(member.id, member.version, spec))


def remove_member(client: EngineClient, node_id: str, *, force: bool = False) -> None:
    call(lambda: client.remove_node(node_id, force=force))


def update_swarm(
    client: EngineClient,
    info: SwarmInfo,
    *,
    settings: Mapping[str, Setting],
    labels: Mapping[str, str],
    rotate_join_tokens: bool = False,
) -> None:
    spec = swarm_spec(settings, labels, info.raw_spec)
    call(
        lambda: client.update_swarm(
            info.version,
            swarm_spec=spec,
            rotate_worker_token=rotate_join_tokens,
            rotate_manager_token=rotate_join_tokens,
        )
    )


def unlock(client: EngineClient, key: SecretStr) -> None:
    """``docker swarm unlock`` on a manager that restarted locked."""
    try:
        call(lambda: client.unlock_swarm(key.get_secret_value()))
    except EngineError as exc:
        raise _redacted(exc, key) from None
