"""What swarmkeeper manages in a swarm right now, read from labels alone (``swarmkeeper get``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..api import Key, ObjectStatus
from ..swarm import labels as L
from ..swarm.observe import SwarmState, value_version
from .adopt import adopted_networks
from .status import service_status

KIND_ALIASES: dict[str, str] = {}
for _kind, _aliases in {
    "SwarmService": ("swarmservice", "swarmservices", "service", "services", "svc", "ssvc"),
    "SwarmNetwork": ("swarmnetwork", "swarmnetworks", "network", "networks", "net", "snet"),
    "SwarmSecret": ("swarmsecret", "swarmsecrets", "secret", "secrets", "ssec"),
    "SwarmConfig": ("swarmconfig", "swarmconfigs", "config", "configs", "scfg"),
}.items():
    for _alias in (*_aliases, _kind.lower()):
        KIND_ALIASES[_alias] = _kind


@dataclass
class LiveObject:
    key: Key
    swarm_name: str
    swarm_id: str
    created: str | None
    status: ObjectStatus
    details: dict[str, str]

    @property
    def kind(self) -> str:
        return self.key.kind

    @property
    def namespace(self) -> str | None:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name


def inventory(state: SwarmState) -> list[LiveObject]:
    out: list[LiveObject] = []
    for key, svc in state.managed_services.items():
        spec = svc["Spec"]
        mode = next(iter(spec.get("Mode") or {"Replicated": {}}))
        ports = ",".join(
            f"{p.get('PublishedPort', '')}:{p['TargetPort']}/{p.get('Protocol', 'tcp')}"
            for p in (spec.get("EndpointSpec") or {}).get("Ports") or []
        )
        out.append(
            LiveObject(
                key,
                spec["Name"],
                svc["ID"],
                svc.get("CreatedAt"),
                service_status(key, state),
                {"mode": mode.lower(), "ports": ports, "revision": (spec.get("Labels") or {}).get(L.REVISION, "")},
            )
        )
    # Networks taken over by reference (swarm cannot relabel them) are listed with the managed ones.
    for key, net in [*state.managed_networks.items(), *adopted_networks(state).items()]:
        status = ObjectStatus(swarm_name=net["Name"], swarm_id=net["Id"])
        encrypted = "encrypted" in (net.get("Options") or {})
        out.append(
            LiveObject(
                key,
                net["Name"],
                net["Id"],
                net.get("Created"),
                status,
                {
                    "driver": net.get("Driver", ""),
                    "encrypted": "yes" if encrypted else "no",
                    "revision": (net.get("Labels") or {}).get(L.REVISION, ""),
                },
            )
        )
    for key, versions in state.managed_values.items():
        current = versions[-1]
        status = ObjectStatus(swarm_name=current["Spec"]["Name"], swarm_id=current["ID"])
        out.append(
            LiveObject(
                key,
                current["Spec"]["Name"],
                current["ID"],
                current.get("CreatedAt"),
                status,
                {
                    "version": str(value_version(current)),
                    "versions": str(len(versions)),
                    "revision": (current["Spec"].get("Labels") or {}).get(L.REVISION, ""),
                },
            )
        )
    order = {"SwarmNetwork": 0, "SwarmSecret": 1, "SwarmConfig": 2, "SwarmService": 3}
    return sorted(out, key=lambda o: (order[o.kind], o.namespace or "", o.name))
