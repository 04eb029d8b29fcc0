"""Desired state: manifests turned into the exact payloads the engine should end up with.

Pure apart from reading the observed state: which version of each secret or config is current
depends on what the swarm already holds (a value that did not change keeps its version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api import FileReference, Key, NetworkAttachment, SwarmConfig, SwarmNetwork, SwarmSecret, SwarmService
from ..loading import Manifest
from ..swarm import labels as L
from ..swarm.build import (
    Payload,
    References,
    build_network_spec,
    build_service_spec,
    build_value_spec,
    spec_hash,
    value_hash,
)
from ..swarm.observe import SwarmState, value_version
from .adopt import foreign_service, foreign_value
from .fingerprint import check_ahead, matches
from .images import Pin

ValueKind = Literal["secret", "config"]


@dataclass
class DesiredNetwork:
    manifest: Manifest
    swarm_name: str
    payload: Payload


@dataclass
class DesiredValue:
    manifest: Manifest
    kind: ValueKind
    swarm_name: str  # the version services should use
    version: int
    payload: Payload | None  # set when that version does not exist yet
    keep_versions: int


@dataclass
class DesiredService:
    manifest: Manifest
    swarm_name: str
    payload: Payload
    spec_hash: str
    with_registry_auth: bool
    pin: Pin | None = None  # the image's digest, when pinned (images.py)
    depends_on: list[Key] = field(default_factory=list)
    networks: list[Key] = field(default_factory=list)
    values: list[Key] = field(default_factory=list)


@dataclass
class Desired:
    networks: dict[Key, DesiredNetwork] = field(default_factory=dict)
    values: dict[Key, DesiredValue] = field(default_factory=dict)
    services: dict[Key, DesiredService] = field(default_factory=dict)

    def all_keys(self) -> set[Key]:
        return set(self.networks) | set(self.values) | set(self.services)


def _value(m: Manifest, state: SwarmState, source: str, revision: str | None, adopt: bool) -> DesiredValue:
    res = m.resource
    assert isinstance(res, SwarmSecret | SwarmConfig)
    kind: ValueKind = "secret" if isinstance(res, SwarmSecret) else "config"
    base = L.swarm_name(res.metadata.name, res.metadata.namespace, res.spec.swarm_name)
    versions = state.managed_values.get(m.key, [])
    latest = versions[-1] if versions else None
    if adopt and latest is None and foreign_value(state, kind, base) is not None:
        # Taken over as version 0 (see adopt.py); services keep referring to it by its name.
        return DesiredValue(m, kind, base, 0, None, res.spec.keep_versions)
    labels_hash = value_hash(res.spec.labels, res.spec.template_driver)
    if latest is not None:
        stored = latest["Spec"].get("Labels") or {}
        same_labels = stored.get(L.SPEC_HASH) == labels_hash
        # Without a resolved value (validate/diff without reading files) the current version stands.
        same_value = m.value is None or matches(m.value.get_secret_value(), stored.get(L.FINGERPRINT))
        if same_labels and same_value:
            version = value_version(latest)
            return DesiredValue(m, kind, latest["Spec"]["Name"], version, None, res.spec.keep_versions)
    version = (value_version(latest) if latest is not None else 0) + 1
    payload = None
    if m.value is not None:
        raw = m.value.get_secret_value()
        payload = build_value_spec(
            res.kind,
            res.metadata.name,
            res.metadata.namespace,
            version,
            raw,
            res.spec.labels,
            source=source,
            template_driver=res.spec.template_driver,
            own_name=res.spec.swarm_name,
        )
        if revision:
            payload["Labels"][L.REVISION] = revision
    return DesiredValue(m, kind, L.versioned_name(base, version), version, payload, res.spec.keep_versions)


_FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "replicas": ("Mode", "Replicated", "Replicas"),
    "image": ("TaskTemplate", "ContainerSpec", "Image"),
    "env": ("TaskTemplate", "ContainerSpec", "Env"),
    "resources": ("TaskTemplate", "Resources"),
    "placement": ("TaskTemplate", "Placement"),
}


def keep_live_values(payload: Payload, live: Payload, fields: Sequence[str]) -> None:
    """Hand fields to someone else: the service's live value is what we "want" for them."""
    for name in fields:
        if name == "replicas" and "Replicated" not in payload["Mode"]:
            continue  # only replicated services have a replica count to hand over
        *parents, leaf = _FIELD_PATHS[name]
        src: Any = live
        dst: Any = payload
        for part in parents:
            src = src.get(part) if isinstance(src, dict) else None
            dst = dst.setdefault(part, {})
        if isinstance(src, dict) and leaf in src:
            dst[leaf] = src[leaf]
        else:
            dst.pop(leaf, None)


def _network_name(desired: Desired, namespace: str | None, attachment: NetworkAttachment) -> str:
    """The swarm name of a network a service attaches to: its SwarmNetwork's (a swarmName of its
    own, say), or the name itself for an external one."""
    if attachment.external:
        return attachment.name
    network = desired.networks.get(Key("SwarmNetwork", namespace, attachment.name))
    return network.swarm_name if network is not None else L.swarm_name(attachment.name, namespace)


def _value_name(desired: Desired, kind: str, namespace: str | None, ref: FileReference) -> str:
    """The swarm name a service's secret or config reference resolves to."""
    return ref.source if ref.external else desired.values[Key(kind, namespace, ref.source)].swarm_name


def resolve_desired(
    manifests: Sequence[Manifest],
    state: SwarmState,
    *,
    source: str = L.DEFAULT_SOURCE,
    revision: str | None = None,
    adopt: bool = False,
    pins: Mapping[Key, Pin] | None = None,
) -> Desired:
    """``revision`` (a Git commit, say) is labelled on every object; being bookkeeping, it is not
    compared, so it only lands on the objects a pass actually changes. ``adopt``: objects made
    outside swarmkeeper under the same names are what the specs refer to (adopt.py)."""
    desired = Desired()
    check_ahead(
        (m.value.get_secret_value(), (versions[-1]["Spec"].get("Labels") or {}).get(L.FINGERPRINT))
        for m in manifests
        if isinstance(m.resource, SwarmSecret | SwarmConfig) and m.value is not None
        for versions in [state.managed_values.get(m.key)]
        if versions
    )
    for m in manifests:
        res = m.resource
        if isinstance(res, SwarmNetwork):
            payload = build_network_spec(res, source=source)
            if revision:
                payload["Labels"][L.REVISION] = revision
            desired.networks[m.key] = DesiredNetwork(m, payload["Name"], payload)
        elif isinstance(res, SwarmSecret | SwarmConfig):
            desired.values[m.key] = _value(m, state, source, revision, adopt)
    for m in manifests:
        res = m.resource
        if not isinstance(res, SwarmService):
            continue
        ns = res.metadata.namespace
        spec = res.spec
        refs = References(
            networks={n.name: _network_name(desired, ns, n) for n in spec.networks},
            secrets={s.source: _value_name(desired, "SwarmSecret", ns, s) for s in spec.secrets},
            configs={c.source: _value_name(desired, "SwarmConfig", ns, c) for c in spec.configs},
        )
        pin = (pins or {}).get(m.key)
        payload = build_service_spec(
            res,
            refs,
            file_env=m.file_env,
            source=source,
            image=pin.image if pin else None,
            platforms=pin.platforms if pin else None,
        )
        digest = spec_hash(payload)
        payload["Labels"][L.SPEC_HASH] = digest
        if revision:
            payload["Labels"][L.REVISION] = revision
        actual = state.managed_services.get(m.key) or (foreign_service(state, payload["Name"]) if adopt else None)
        if actual is not None:
            keep_live_values(payload, actual["Spec"], res.unmanaged_fields())
        desired.services[m.key] = DesiredService(
            manifest=m,
            swarm_name=payload["Name"],
            payload=payload,
            spec_hash=digest,
            with_registry_auth=spec.with_registry_auth,
            pin=pin,
            depends_on=[Key("SwarmService", ns, d) for d in spec.depends_on],
            networks=[Key("SwarmNetwork", ns, n.name) for n in spec.networks if not n.external],
            values=[Key("SwarmSecret", ns, s.source) for s in spec.secrets if not s.external]
            + [Key("SwarmConfig", ns, c.source) for c in spec.configs if not c.external],
        )
    return desired
