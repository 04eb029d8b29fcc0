"""``SwarmCluster``: which engine a set of objects is applied to.

Only the connection lives here today; node membership and swarm settings will be added as
``spec.nodes`` and ``spec.swarm`` beside ``spec.engine`` without changing it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import API_VERSION, Model, ObjectMeta, ObjectStatus
from .units import Duration


class EngineTLS(Model):
    ca_file: str | None = Field(default=None, description="CA bundle that signed the engine's certificate.")
    cert_file: str | None = Field(default=None, description="Client certificate (PEM).")
    key_file: str | None = Field(default=None, description="Client key (PEM).")
    verify: bool = Field(default=True, description="Verify the engine's certificate against caFile.")


class EngineEndpoint(Model):
    host: str | None = Field(
        default=None,
        description="unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host; DOCKER_HOST or the "
        "local socket when omitted.",
        pattern=r"^(unix|tcp|ssh|npipe)://",
    )
    tls: EngineTLS | None = None
    timeout: Duration = "60s"


class SwarmClusterSpec(Model):
    engine: EngineEndpoint = Field(default_factory=EngineEndpoint)


class SwarmClusterStatus(ObjectStatus):
    swarm_cluster_id: str | None = None
    engine_version: str | None = None
    nodes: int | None = None


class SwarmCluster(Model):
    api_version: Literal["swarmkeeper.io/v1alpha1"] = API_VERSION
    kind: Literal["SwarmCluster"] = "SwarmCluster"
    metadata: ObjectMeta
    spec: SwarmClusterSpec = Field(default_factory=SwarmClusterSpec)
    status: SwarmClusterStatus | None = None
