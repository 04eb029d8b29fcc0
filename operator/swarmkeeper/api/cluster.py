"""``SwarmCluster``: which engine a set of objects is applied to, and the swarm itself.

``spec.engine`` says where objects (networks, services, …) are applied. ``spec.nodes`` and
``spec.swarm`` describe the swarm: which engines are its nodes, in which role, with which labels
and availability, and the swarm-wide settings. A cluster without ``spec.nodes`` is a connection
only: swarmkeeper then never touches membership.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import API_VERSION, Model, Name, ObjectMeta, ObjectStatus, StrMap
from .units import Duration


class EngineTLS(Model):
    """TLS for a tcp:// engine (dockerd --tlsverify). Files are relative to the spec file."""

    ca_file: str | None = Field(default=None, description="CA bundle that signed the engine's certificate.")
    cert_file: str | None = Field(default=None, description="Client certificate (PEM).")
    key_file: str | None = Field(default=None, description="Client key (PEM).")
    verify: bool = Field(
        default=True,
        description="Verify the engine's certificate (and that it names the host) against caFile, or the "
        "system's CAs without one.",
    )


class EngineSSH(Model):
    """How to log in to an ssh:// engine. ssh's own configuration and agent apply too; swarmkeeper never
    prompts and always checks the host key: an unknown or changed key is refused, never added."""

    identity_file: str | None = Field(
        default=None,
        description="Private key to log in with (like ssh -i; mode 0600), relative to the spec file. The "
        "ssh agent and ~/.ssh keys when omitted.",
    )
    known_hosts_file: str | None = Field(
        default=None,
        description="known_hosts file holding the engine host's key, relative to the spec file. "
        "~/.ssh/known_hosts when omitted.",
    )


class EngineEndpoint(Model):
    host: str | None = Field(
        default=None,
        description="unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host[:port] (that host runs "
        "`docker system dial-stdio`); DOCKER_HOST or the local socket when omitted.",
        pattern=r"^(unix|tcp|ssh|npipe)://",
    )
    tls: EngineTLS | None = Field(default=None, description="For a tcp:// host.")
    ssh: EngineSSH | None = Field(default=None, description="For an ssh:// host.")
    timeout: Duration = "60s"
    registry_auth_file: str | None = Field(
        default=None,
        description="Registry logins for this engine's images: a docker client config (config.json with "
        "auths, as docker login writes it), relative to the spec file. Used to pin images to digests and "
        "sent with creates and updates, so every node can pull. The local docker config when omitted.",
    )

    @model_validator(mode="after")
    def _transport_settings(self) -> EngineEndpoint:
        scheme = (self.host or "").split("://", 1)[0]
        if self.tls is not None and scheme != "tcp":
            raise ValueError("tls applies to a tcp:// host only")
        if self.ssh is not None and scheme != "ssh":
            raise ValueError("ssh applies to an ssh:// host only")
        return self


NodeRole = Literal["manager", "worker"]
NodeAvailability = Literal["active", "pause", "drain"]


class ClusterNode(Model):
    """One engine that is a node of the swarm."""

    name: Name = Field(
        description="The node's name in this spec (and in status). swarmkeeper labels the swarm node "
        "io.swarmkeeper.node=<name>, so constraints can use node.labels.io.swarmkeeper.node."
    )
    engine: EngineEndpoint = Field(
        default_factory=EngineEndpoint, description="How swarmkeeper reaches this node's own Docker engine."
    )
    advertise_addr: str | None = Field(
        default=None,
        description="Address (or interface) other nodes reach this one at, as in `docker swarm init "
        "--advertise-addr`. Used when the node initialises or joins the swarm.",
    )
    listen_addr: str = Field(
        default="0.0.0.0:2377", description="Where the node listens for swarm traffic (init/join only)."
    )
    role: NodeRole = "worker"
    availability: NodeAvailability = Field(
        default="active", description="drain moves the node's tasks to other nodes; pause keeps them, adds none."
    )
    labels: StrMap = Field(default_factory=dict, description="Node labels, for placement constraints.")


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        raise ValueError("not a network in CIDR form, like 10.20.0.0/16") from None
    return value


class SwarmSettings(Model):
    """Swarm-wide settings. Each one left out is left as the swarm has it."""

    task_history_limit: int | None = Field(default=None, ge=0, description="Old tasks kept per slot.")
    snapshot_interval: int | None = Field(default=None, ge=1, description="Raft log entries between snapshots.")
    dispatcher_heartbeat: Duration | None = Field(
        default=None, description="How often nodes report in; a node is marked down after a few missed ones."
    )
    node_cert_expiry: Duration | None = Field(
        default=None, description="Validity of the node certificates swarm issues (rotated automatically)."
    )
    autolock: bool | None = Field(
        default=None,
        description="Encrypt the managers' raft keys at rest: a restarted manager stays locked until given "
        "the unlock key. Needs unlockKeyFile.",
    )
    unlock_key_file: str | None = Field(
        default=None,
        description="Where swarmkeeper stores the unlock key (mode 0600; relative to the spec file). It is "
        "also used to unlock a restarted manager.",
    )
    default_addr_pool: list[Annotated[str, Field(description="CIDR")]] = Field(
        default_factory=list, description="Address pools for swarm networks (set when the swarm is created)."
    )
    subnet_size: int | None = Field(
        default=None, ge=8, le=30, description="Prefix length of each network from the pools (at creation)."
    )
    data_path_port: int | None = Field(
        default=None, ge=1024, le=49151, description="UDP port of overlay (VXLAN) traffic (at creation)."
    )

    @field_validator("default_addr_pool")
    @classmethod
    def _pools(cls, value: list[str]) -> list[str]:
        for pool in value:
            _check_cidr(pool)
        return value

    @model_validator(mode="after")
    def _autolock_key(self) -> SwarmSettings:
        if self.autolock and not self.unlock_key_file:
            raise ValueError("autolock needs unlockKeyFile: without the key a restarted manager cannot be unlocked")
        return self


RotationMarker = Annotated[str | int, Field(json_schema_extra={"x-kubernetes-int-or-string": True})]


class SwarmClusterSpec(Model):
    engine: EngineEndpoint = Field(default_factory=EngineEndpoint)
    nodes: list[ClusterNode] = Field(
        default_factory=list,
        description="The swarm's nodes. The first manager initialises the swarm if there is none; the others "
        "join it. Only these nodes are trusted: any other node is reported (see removeUnknownNodes).",
    )
    swarm: SwarmSettings = Field(default_factory=SwarmSettings)
    rotate_join_tokens: RotationMarker | None = Field(
        default=None,
        description="Change this value (a counter or a timestamp) to rotate both join tokens once.",
    )
    remove_unknown_nodes: bool = Field(
        default=False, description="Remove nodes found in the swarm that are not in spec.nodes."
    )

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, nodes: list[ClusterNode]) -> list[ClusterNode]:
        if not nodes:
            return nodes
        seen: dict[str, int] = {}
        hosts: dict[str | None, int] = {}
        for i, node in enumerate(nodes):
            if node.name in seen:
                raise ValueError(f'node name "{node.name}" appears twice (nodes[{seen[node.name]}] and nodes[{i}])')
            seen[node.name] = i
            host = node.engine.host
            if host in hosts:
                which = "the default engine" if host is None else "the same engine host"
                raise ValueError(f"nodes[{hosts[host]}] and nodes[{i}] use {which}: each node needs its own engine")
            hosts[host] = i
        if not any(n.role == "manager" for n in nodes):
            raise ValueError("at least one node must have role manager (the first one initialises the swarm)")
        return nodes


class NodeStatus(Model):
    name: str = Field(description="The name in spec.nodes; for an unknown node, its hostname.")
    id: str | None = None
    hostname: str | None = None
    address: str | None = None
    role: str | None = None
    availability: str | None = None
    state: str = Field(description="ready, down, unknown, disconnected; or not-joined, locked, unreachable.")
    leader: bool = False
    reachability: str | None = Field(default=None, description="Managers: reachable or unreachable.")
    engine_version: str | None = None
    labels: StrMap = Field(default_factory=dict, description="The node's labels (swarmkeeper's own left out).")
    message: str | None = None


class SwarmClusterStatus(ObjectStatus):
    swarm_cluster_id: str | None = None
    engine_version: str | None = None
    leader: str | None = None
    managers: str | None = Field(default=None, description="Reachable/total managers, e.g. 3/3.")
    nodes: list[NodeStatus] = Field(default_factory=list)
    unknown_nodes: list[NodeStatus] = Field(
        default_factory=list, description="Nodes in the swarm that are not in spec.nodes."
    )


class SwarmCluster(Model):
    api_version: Literal["swarmkeeper.io/v1alpha1"] = API_VERSION
    kind: Literal["SwarmCluster"] = "SwarmCluster"
    metadata: ObjectMeta
    spec: SwarmClusterSpec = Field(default_factory=SwarmClusterSpec)
    status: SwarmClusterStatus | None = None
