"""Pure translation of spec models into Engine API payloads (ServiceSpec, NetworkCreate, …).

No I/O: every function takes models and already-resolved names and returns plain dicts, so the
whole translation is unit tested without an engine. Secret and config IDs are not known until
apply time (a new version may be created in the same run), so payloads name them and
``bind_ids`` fills in the IDs just before the call.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api import (
    DNSConfig,
    FileReference,
    Healthcheck,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    RollbackConfig,
    SwarmNetwork,
    SwarmService,
    UpdateConfig,
)
from ..api.units import cpus_to_nano, duration_to_ns, size_to_bytes
from . import labels as L
from .errors import EngineError
from .images import normalize_image

Payload = dict[str, Any]


@dataclass(frozen=True)
class References:
    """Spec names → swarm names of what a service uses, resolved by the engine."""

    networks: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    configs: Mapping[str, str] = field(default_factory=dict)


def spec_hash(payload: Mapping[str, Any]) -> str:
    """A short, stable hash of a payload (never of a secret value: payloads hold none)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _ns(value: str | None) -> int | None:
    return None if value is None else duration_to_ns(value)


def _drop_none(mapping: Mapping[str, Any]) -> Payload:
    return {k: v for k, v in mapping.items() if v is not None}


def build_network_spec(net: SwarmNetwork, *, source: str = L.DEFAULT_SOURCE) -> Payload:
    """Arguments of ``POST /networks/create`` for a swarm-scoped network."""
    spec = net.spec
    options = dict(spec.options)
    if spec.encrypted:
        options["encrypted"] = ""
    ipam: Payload | None = None
    if spec.ipam is not None:
        ipam = {
            "Driver": spec.ipam.driver,
            "Config": [
                _drop_none({"Subnet": p.subnet, "Gateway": p.gateway, "IPRange": p.ip_range}) for p in spec.ipam.config
            ],
            "Options": dict(spec.ipam.options),
        }
    payload: Payload = {
        "Name": L.swarm_name(net.metadata.name, net.metadata.namespace, spec.swarm_name),
        "Driver": spec.driver,
        "Scope": "swarm",
        "Attachable": spec.attachable,
        "Internal": spec.internal,
        "Options": options,
        "Labels": {**spec.labels, **L.ownership(net.kind, net.metadata.name, net.metadata.namespace, source)},
        "CheckDuplicate": True,
    }
    if ipam is not None:
        payload["IPAM"] = ipam
    # Networks are immutable: a hash of the whole payload decides when one must be recreated.
    payload["Labels"][L.SPEC_HASH] = spec_hash(payload)
    return payload


def value_hash(user_labels: Mapping[str, str], template_driver: str | None = None) -> str:
    """What, besides the value, makes a version of a secret or config (its labels, its templating)."""
    if template_driver is None:  # the hash of the labels alone, as versions made before templating have
        return spec_hash(dict(user_labels))
    return spec_hash({"labels": dict(user_labels), "templating": template_driver})


def build_value_spec(
    kind: str,
    name: str,
    namespace: str | None,
    version: int,
    value: bytes,
    user_labels: Mapping[str, str],
    fingerprint: str | None = None,
    *,
    source: str = L.DEFAULT_SOURCE,
    template_driver: str | None = None,
    own_name: str | None = None,
) -> Payload:
    """Body of ``POST /secrets/create`` or ``/configs/create`` for one version of a value.

    The fingerprint label (see engine.fingerprint) may be added later, right before creation:
    deriving it is deliberately slow, and a plan that is only shown never needs it.
    """
    labels = {**user_labels, **L.ownership(kind, name, namespace, source)}
    labels[L.VERSION] = str(version)
    labels[L.SPEC_HASH] = value_hash(user_labels, template_driver)
    if fingerprint is not None:
        labels[L.FINGERPRINT] = fingerprint
    payload: Payload = {
        "Name": L.versioned_name(L.swarm_name(name, namespace, own_name), version),
        "Labels": labels,
        "Data": base64.b64encode(value).decode("ascii"),
    }
    if template_driver is not None:
        payload["Templating"] = {"Name": template_driver}
    return payload


def _file_refs(refs: list[FileReference], names: Mapping[str, str], kind: str) -> list[Payload]:
    out = []
    for ref in refs:
        target = ref.target or ref.source
        out.append(
            {
                "File": {"Name": target, "UID": ref.uid, "GID": ref.gid, "Mode": ref.mode},
                f"{kind}ID": None,
                f"{kind}Name": names[ref.source],
            }
        )
    return out


def _healthcheck(hc: Healthcheck) -> Payload:
    return _drop_none(
        {
            "Test": list(hc.test) or None,
            "Interval": _ns(hc.interval),
            "Timeout": _ns(hc.timeout),
            "Retries": hc.retries,
            "StartPeriod": _ns(hc.start_period),
        }
    )


def _dns(d: DNSConfig) -> Payload:
    fields = {"Nameservers": d.nameservers, "Search": d.search, "Options": d.options}
    return {k: list(v) for k, v in fields.items() if v}


def _mount(m: Mount) -> Payload:
    out: Payload = {"Type": m.type, "Target": m.target, "ReadOnly": m.read_only}
    if m.source is not None:
        out["Source"] = m.source
    if m.bind_propagation is not None:
        out["BindOptions"] = {"Propagation": m.bind_propagation}
    if m.volume is not None:
        out["VolumeOptions"] = _drop_none(
            {
                "NoCopy": m.volume.no_copy,
                "Labels": dict(m.volume.labels),
                "DriverConfig": {"Name": m.volume.driver, "Options": dict(m.volume.driver_options)}
                if m.volume.driver
                else None,
            }
        )
    if m.tmpfs_size is not None:
        out["TmpfsOptions"] = {"SizeBytes": size_to_bytes(m.tmpfs_size)}
    return out


def _resources(r: Resources) -> Payload:
    out: Payload = {}
    if r.limits is not None:
        out["Limits"] = _drop_none(
            {
                "NanoCPUs": None if r.limits.cpus is None else cpus_to_nano(r.limits.cpus),
                "MemoryBytes": None if r.limits.memory is None else size_to_bytes(r.limits.memory),
                "Pids": r.limits.pids,
            }
        )
    if r.reservations is not None:
        out["Reservations"] = _drop_none(
            {
                "NanoCPUs": None if r.reservations.cpus is None else cpus_to_nano(r.reservations.cpus),
                "MemoryBytes": None if r.reservations.memory is None else size_to_bytes(r.reservations.memory),
                "GenericResources": [
                    {"DiscreteResourceSpec": {"Kind": g.kind, "Value": g.value}}
                    for g in r.reservations.generic_resources
                ]
                or None,
            }
        )
    return out


def _restart(r: RestartPolicy) -> Payload:
    return _drop_none(
        {"Condition": r.condition, "Delay": _ns(r.delay), "MaxAttempts": r.max_attempts, "Window": _ns(r.window)}
    )


def _placement(p: Placement) -> Payload:
    return _drop_none(
        {
            "Constraints": list(p.constraints),
            "Preferences": [{"Spread": {"SpreadDescriptor": s.spread}} for s in p.preferences],
            "MaxReplicas": p.max_replicas_per_node,
        }
    )


def _with_platforms(placement: Payload, platforms: Sequence[tuple[str, str]] | None) -> Payload:
    if platforms:
        placement["Platforms"] = [{"Architecture": arch, "OS": os} for arch, os in platforms]
    return placement


def _update(u: UpdateConfig | RollbackConfig) -> Payload:
    return _drop_none(
        {
            "Parallelism": u.parallelism,
            "Delay": _ns(u.delay),
            "FailureAction": u.failure_action,
            "Monitor": _ns(u.monitor),
            "MaxFailureRatio": u.max_failure_ratio,
            "Order": u.order,
        }
    )


def _mode(svc: SwarmService) -> Payload:
    spec = svc.spec
    replicas = 1 if spec.replicas is None else spec.replicas
    match spec.mode:
        case "replicated":
            return {"Replicated": {"Replicas": replicas}}
        case "global":
            return {"Global": {}}
        case "replicated-job":
            return {
                "ReplicatedJob": _drop_none({"MaxConcurrent": spec.max_concurrent or 1, "TotalCompletions": replicas})
            }
        case "global-job":
            return {"GlobalJob": {}}


def build_service_spec(
    svc: SwarmService,
    refs: References,
    *,
    file_env: Mapping[str, str] | None = None,
    source: str = L.DEFAULT_SOURCE,
    image: str | None = None,
    platforms: Sequence[tuple[str, str]] | None = None,
) -> Payload:
    """The complete ServiceSpec for ``POST /services/create`` and ``/services/{id}/update``.

    Always complete: an update replaces the whole spec, so a field left out would be reset.
    ``image``: the reference to run, when it is pinned to a digest (engine/images.py), and
    ``platforms`` the (architecture, os) its registry lists, which the docker CLI puts into
    ``Placement.Platforms`` when it pins, so tasks go only to nodes that can run the image.
    """
    spec, meta = svc.spec, svc.metadata
    env = {**(file_env or {}), **spec.env}
    stack = {L.STACK_NAMESPACE: meta.namespace} if meta.namespace else {}
    container: Payload = _drop_none(
        {
            "Image": image or normalize_image(spec.image),
            "Labels": {**spec.container_labels, **stack},
            "Command": spec.command,
            "Args": spec.args,
            "Hostname": spec.hostname,
            # Sorted, as docker stack deploy sends them (env files and env in one list).
            "Env": sorted(f"{k}={v}" for k, v in env.items()),
            "Dir": spec.workdir,
            "User": spec.user,
            "Mounts": [_mount(m) for m in spec.mounts],
            "StopSignal": spec.stop_signal,
            "StopGracePeriod": _ns(spec.stop_grace_period),
            "Healthcheck": None if spec.healthcheck is None else _healthcheck(spec.healthcheck),
            "ReadOnly": spec.read_only,
            "Init": spec.init,
            "Isolation": spec.isolation,
            "Secrets": _file_refs(spec.secrets, refs.secrets, "Secret"),
            "Configs": _file_refs(spec.configs, refs.configs, "Config"),
            "CapabilityAdd": list(spec.cap_add) or None,
            "CapabilityDrop": list(spec.cap_drop) or None,
            "DNSConfig": None if spec.dns is None else _dns(spec.dns),
            # The docker CLI's convertExtraHosts: "HOST:IP" becomes the engine's "IP HOST".
            "Hosts": [" ".join(reversed(h.split(":", 1))) for h in spec.extra_hosts] or None,
            "Sysctls": dict(spec.sysctls) or None,
            "Ulimits": [{"Name": k, "Soft": u.soft, "Hard": u.hard} for k, u in sorted(spec.ulimits.items())] or None,
            "TTY": spec.tty or None,
            "OpenStdin": spec.stdin_open or None,
        }
    )
    container["Privileges"] = {"CredentialSpec": None, "SELinuxContext": None}  # as docker stack deploy
    # Like docker stack deploy: every service answers to its short name on each of its networks
    # (the last alias, where the CLI puts it).
    short = L.short_name(meta.name, meta.namespace, spec.swarm_name)
    networks = [
        {"Target": refs.networks[n.name], "Aliases": [*(a for a in n.aliases if a != short), short]}
        if meta.namespace
        else {"Target": refs.networks[n.name], "Aliases": list(n.aliases)}
        for n in spec.networks
    ]
    task: Payload = _drop_none(
        {
            "ContainerSpec": container,
            # Empty rather than absent, as docker stack deploy sends them: the engine stores the
            # task template as sent, and a task template that differs restarts tasks on adoption.
            "Resources": {} if spec.resources is None else _resources(spec.resources),
            "RestartPolicy": None if spec.restart_policy is None else _restart(spec.restart_policy),
            "Placement": _with_platforms({} if spec.placement is None else _placement(spec.placement), platforms),
            "Networks": networks,
            "LogDriver": None
            if spec.log_driver is None
            else {"Name": spec.log_driver.name, "Options": dict(spec.log_driver.options)},
        }
    )
    labels = {**spec.labels, **L.ownership(svc.kind, meta.name, meta.namespace, source)}
    if meta.namespace:
        labels[L.STACK_IMAGE] = spec.image
    payload: Payload = {
        "Name": L.swarm_name(meta.name, meta.namespace, spec.swarm_name),
        "Labels": labels,
        "TaskTemplate": task,
        "Mode": _mode(svc),
        "EndpointSpec": {
            "Mode": spec.endpoint_mode,
            "Ports": [
                _drop_none(
                    {
                        "Protocol": p.protocol,
                        "TargetPort": p.target,
                        "PublishedPort": p.published,
                        "PublishMode": p.mode,
                    }
                )
                for p in spec.ports
            ],
        },
    }
    if not spec.mode.endswith("job"):
        # Jobs have no rolling updates: the engine rejects these fields for them. Left out when
        # the spec has none, as docker stack deploy leaves them out: the engine's defaults apply.
        if spec.update_config is not None:
            payload["UpdateConfig"] = _update(spec.update_config)
        if spec.rollback_config is not None:
            payload["RollbackConfig"] = _update(spec.rollback_config)
    return payload


def bind_ids(payload: Payload, secret_ids: Mapping[str, str], config_ids: Mapping[str, str]) -> Payload:
    """Fill in SecretID/ConfigID by name, right before the payload is sent."""
    container = payload["TaskTemplate"]["ContainerSpec"]
    bound = dict(payload)
    bound["TaskTemplate"] = dict(payload["TaskTemplate"])
    bound["TaskTemplate"]["ContainerSpec"] = dict(container)
    for kind, ids in (("Secret", secret_ids), ("Config", config_ids)):
        if kind + "s" in container:
            bound["TaskTemplate"]["ContainerSpec"][kind + "s"] = [
                {**ref, f"{kind}ID": _id_of(ids, kind, ref[f"{kind}Name"])} for ref in container[kind + "s"]
            ]
    return bound


def _id_of(ids: Mapping[str, str], kind: str, name: str) -> str:
    if name not in ids:  # an external one that does not exist: what the engine would answer
        raise EngineError(f"{kind.lower()} not found: {name}", status=404)
    return ids[name]
