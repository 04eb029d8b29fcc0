"""The spec model: the single source of truth for every kind, in files, Git and Kubernetes.

Imports nothing else of swarmkeeper's. ``schema/`` generates the CRDs and JSON Schema from here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from .alert import ALERT_EVENTS, AlertEvent, AlertTarget, ObjectSelector, SwarmAlert, SwarmAlertSpec
from .base import API_VERSION, Condition, ConditionStatus, Model, ObjectMeta, ObjectStatus
from .cluster import EngineEndpoint, EngineSSH, EngineTLS, SwarmCluster, SwarmClusterSpec, SwarmClusterStatus
from .key import Key
from .network import IPAM, IPAMPool, SwarmNetwork, SwarmNetworkSpec
from .service import (
    UNMANAGED_FIELDS,
    UNMANAGED_FIELDS_ANNOTATION,
    DNSConfig,
    FileReference,
    Healthcheck,
    Mount,
    NetworkAttachment,
    Placement,
    Port,
    ReplicaCounts,
    Resources,
    RestartPolicy,
    RollbackConfig,
    ServiceStatus,
    SwarmService,
    SwarmServiceSpec,
    TaskError,
    UpdateConfig,
    UpdateProgress,
)
from .values import SourceKeyRef, SwarmConfig, SwarmSecret, ValueSpec, ValueStatus

Resource = SwarmCluster | SwarmNetwork | SwarmSecret | SwarmConfig | SwarmService | SwarmAlert
AnyResource = Annotated[Resource, Field(discriminator="kind")]
RESOURCE_ADAPTER: TypeAdapter[Resource] = TypeAdapter(AnyResource)

KINDS: dict[str, type[Resource]] = {
    cls.model_fields["kind"].default: cls
    for cls in (SwarmCluster, SwarmNetwork, SwarmSecret, SwarmConfig, SwarmService, SwarmAlert)
}

__all__ = [
    "ALERT_EVENTS",
    "API_VERSION",
    "IPAM",
    "KINDS",
    "RESOURCE_ADAPTER",
    "UNMANAGED_FIELDS",
    "UNMANAGED_FIELDS_ANNOTATION",
    "AlertEvent",
    "AlertTarget",
    "AnyResource",
    "Condition",
    "ConditionStatus",
    "DNSConfig",
    "EngineEndpoint",
    "EngineSSH",
    "EngineTLS",
    "FileReference",
    "Healthcheck",
    "IPAMPool",
    "Key",
    "Model",
    "Mount",
    "NetworkAttachment",
    "ObjectMeta",
    "ObjectSelector",
    "ObjectStatus",
    "Placement",
    "Port",
    "ReplicaCounts",
    "Resource",
    "Resources",
    "RestartPolicy",
    "RollbackConfig",
    "ServiceStatus",
    "SourceKeyRef",
    "SwarmAlert",
    "SwarmAlertSpec",
    "SwarmCluster",
    "SwarmClusterSpec",
    "SwarmClusterStatus",
    "SwarmConfig",
    "SwarmNetwork",
    "SwarmNetworkSpec",
    "SwarmSecret",
    "SwarmService",
    "SwarmServiceSpec",
    "TaskError",
    "UpdateConfig",
    "UpdateProgress",
    "ValueSpec",
    "ValueStatus",
]
