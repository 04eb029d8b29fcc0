"""``SwarmNetwork``: an overlay (or other driver) network that services attach to."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import API_VERSION, ClusterRef, Model, ObjectMeta, ObjectStatus, StrMap


class IPAMPool(Model):
    subnet: str
    gateway: str | None = None
    ip_range: str | None = None


class IPAM(Model):
    driver: str = "default"
    config: list[IPAMPool] = Field(default_factory=list)
    options: StrMap = Field(default_factory=dict)


class SwarmNetworkSpec(ClusterRef):
    driver: str = "overlay"
    encrypted: bool = Field(default=False, description="IPsec (AES-GCM) between nodes; overlay only.")
    attachable: bool = Field(default=False, description="Standalone containers may join.")
    internal: bool = Field(default=False, description="No route to outside networks.")
    ipam: IPAM | None = None
    options: StrMap = Field(default_factory=dict, description="Driver options.")
    labels: StrMap = Field(default_factory=dict)


class SwarmNetwork(Model):
    api_version: Literal["swarmkeeper.io/v1alpha1"] = API_VERSION
    kind: Literal["SwarmNetwork"] = "SwarmNetwork"
    metadata: ObjectMeta
    spec: SwarmNetworkSpec = Field(default_factory=SwarmNetworkSpec)
    status: ObjectStatus | None = None
