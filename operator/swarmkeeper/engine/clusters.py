"""Which engine each object goes to: its ``spec.cluster``, or the default engine.

A SwarmCluster with ``spec.nodes`` goes with its own objects: the swarm it describes is formed
(engine/cluster.py) on the way to applying them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ..api import SwarmCluster
from ..loading import Manifest
from ..swarm.connect import EngineClient, connect_default
from .cluster import connect_cluster


@dataclass(frozen=True)
class Target:
    """One engine and the objects to reconcile on it."""

    cluster: str | None  # None: the default engine (--host / DOCKER_HOST / local socket)
    manifests: list[Manifest]


def group_by_cluster(manifests: Sequence[Manifest], only: str | None = None) -> list[Target]:
    groups: dict[str | None, list[Manifest]] = defaultdict(list)
    for m in manifests:
        cluster: str | None
        if isinstance(m.resource, SwarmCluster):
            if not m.resource.spec.nodes:
                continue
            cluster = m.resource.metadata.name
        else:
            cluster = getattr(m.resource.spec, "cluster", None)
        if only is None or cluster == only:
            groups[cluster].append(m)
    if only is not None and only not in groups:
        groups[only] = []
    return [Target(name, ms) for name, ms in sorted(groups.items(), key=lambda kv: kv[0] or "")]


def connect_target(cluster: str | None, manifests: Sequence[Manifest], *, host: str | None = None) -> EngineClient:
    """A client for ``cluster`` as defined among ``manifests``; ``host`` overrides the default engine."""
    if cluster is None:
        return connect_default(host)
    for m in manifests:
        if isinstance(m.resource, SwarmCluster) and m.resource.metadata.name == cluster:
            base = m.origin.file.parent if m.origin is not None else None
            return connect_cluster(m.resource, base)
    raise LookupError(f"no SwarmCluster named {cluster!r}")
