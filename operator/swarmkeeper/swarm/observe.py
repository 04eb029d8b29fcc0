"""Read the actual swarm in a constant number of list calls, whatever the number of objects.

One list call per object type (services with their task counts, tasks, networks, secrets,
configs), never one call per object: a pass over 200 services costs what a pass over 2 does.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..api import Key
from . import labels as L
from .connect import EngineClient
from .errors import call

Obj = dict[str, Any]


@dataclass
class SwarmState:
    services: list[Obj]
    tasks: list[Obj]
    networks: list[Obj]
    secrets: list[Obj]
    configs: list[Obj]
    # Indexes over the lists above, built once.
    managed_services: dict[Key, Obj] = field(default_factory=dict)
    managed_networks: dict[Key, Obj] = field(default_factory=dict)
    managed_values: dict[Key, list[Obj]] = field(default_factory=dict)  # versions, oldest first
    tasks_by_service: dict[str, list[Obj]] = field(default_factory=dict)
    network_names: dict[str, str] = field(default_factory=dict)  # id → name

    def managed_keys(self) -> set[Key]:
        return {*self.managed_services, *self.managed_networks, *self.managed_values}

    def __post_init__(self) -> None:
        for svc in self.services:
            key = L.identity(svc["Spec"].get("Labels") or {})
            if key is not None:
                self.managed_services[key] = svc
        for net in self.networks:
            self.network_names[net["Id"]] = net["Name"]
            key = L.identity(net.get("Labels") or {})
            if key is not None:
                self.managed_networks[key] = net
        versions: dict[Key, list[Obj]] = defaultdict(list)
        for obj in [*self.secrets, *self.configs]:
            key = L.identity(obj["Spec"].get("Labels") or {})
            if key is not None:
                versions[key].append(obj)
        for key, objs in versions.items():
            self.managed_values[key] = sorted(objs, key=value_version)
        by_service: dict[str, list[Obj]] = defaultdict(list)
        for task in self.tasks:
            by_service[task["ServiceID"]].append(task)
        self.tasks_by_service = dict(by_service)

    def foreign(self) -> list[tuple[str, str]]:
        """(type, name) of every swarm object swarmkeeper does not manage."""
        out = [("service", s["Spec"]["Name"]) for s in self.services if not L.is_managed(s["Spec"].get("Labels"))]
        out += [
            ("network", n["Name"])
            for n in self.networks
            if n.get("Scope") == "swarm" and not L.is_managed(n.get("Labels")) and n["Name"] != "ingress"
        ]
        out += [("secret", s["Spec"]["Name"]) for s in self.secrets if not L.is_managed(s["Spec"].get("Labels"))]
        out += [("config", c["Spec"]["Name"]) for c in self.configs if not L.is_managed(c["Spec"].get("Labels"))]
        return out

    def names_in_use(self) -> dict[str, set[str]]:
        """Swarm names taken, per type, managed or not (to refuse clobbering a foreign object)."""
        return {
            "service": {s["Spec"]["Name"] for s in self.services},
            "network": {n["Name"] for n in self.networks},
            "secret": {s["Spec"]["Name"] for s in self.secrets},
            "config": {c["Spec"]["Name"] for c in self.configs},
        }

    def secrets_in_use(self) -> set[str]:
        return self._refs_in_use("Secret")

    def configs_in_use(self) -> set[str]:
        return self._refs_in_use("Config")

    def _refs_in_use(self, kind: str) -> set[str]:
        ids: set[str] = set()
        for svc in self.services:
            container = svc["Spec"].get("TaskTemplate", {}).get("ContainerSpec", {})
            ids.update(ref[kind + "ID"] for ref in container.get(kind + "s") or [])
        # Tasks still shutting down keep an old version busy after the service moved on.
        for task in self.tasks:
            if task.get("Status", {}).get("State") in _LIVE_TASK_STATES:
                container = task.get("Spec", {}).get("ContainerSpec", {})
                ids.update(ref[kind + "ID"] for ref in container.get(kind + "s") or [])
        return ids


_LIVE_TASK_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"})


def value_version(obj: Obj) -> int:
    try:
        return int(obj["Spec"].get("Labels", {}).get(L.VERSION, "0"))
    except ValueError:
        return 0


def observe(client: EngineClient) -> SwarmState:
    """The whole swarm as the engine reports it now: five list calls.

    Sent together: the engine builds each answer while the others are decoded, which takes a
    third off a pass over hundreds of services. (Five separate lists are no snapshot either way.)
    """
    lists = [
        _POOL.submit(call, fetch)
        for fetch in (
            lambda: client.services(status=True),
            client.tasks,
            client.networks,
            client.secrets,
            client.configs,
        )
    ]
    services, tasks, networks, secrets, configs = (future.result() for future in lists)
    return SwarmState(services=services, tasks=tasks, networks=networks, secrets=secrets, configs=configs)


# Threads kept for the life of the process: a controller observes on every pass.
_POOL = ThreadPoolExecutor(max_workers=5, thread_name_prefix="observe")
