"""Read the actual swarm in a constant number of list calls, whatever the number of objects.

One list call per object type (services with their task counts, tasks, networks, secrets,
configs), never one call per object: a pass over 200 services costs what a pass over 2 does.

Tasks are read as the services need them: the current ones (desired running) every pass, the
history (ended tasks, kept by swarm up to its task-history limit per slot) only for services that
are not converged, where the failing task's error and a rolled-back template are to be found. So a
pass reads, decodes and holds what runs now, not every task that ever ran: a long-lived controller's
memory follows the services, not the kills and updates behind them.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..api import Key
from . import labels as L
from .connect import EngineClient
from .errors import EngineError, call
from .lease import is_lease

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

    def sources(self) -> dict[Key, str]:
        """The source that applied each managed object (its label; unlabelled: the default)."""
        labels = {k: s["Spec"].get("Labels") for k, s in self.managed_services.items()}
        labels |= {k: n.get("Labels") for k, n in self.managed_networks.items()}
        labels |= {k: vs[-1]["Spec"].get("Labels") for k, vs in self.managed_values.items()}
        return {k: (found or {}).get(L.SOURCE, L.DEFAULT_SOURCE) for k, found in labels.items()}

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
        out += [
            ("config", c["Spec"]["Name"])
            for c in self.configs
            if not L.is_managed(c["Spec"].get("Labels")) and not is_lease(c["Spec"]["Name"])  # controllers' own
        ]
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
    """The whole swarm as the engine reports it now: five list calls, and a sixth for the task
    history of services that are not converged.

    Sent together: the engine builds each answer while the others are decoded, which takes a
    third off a pass over hundreds of services. (Five separate lists are no snapshot either way.)
    """
    lists = [
        _POOL.submit(call, fetch)
        for fetch in (
            lambda: client.services(status=True),
            lambda: client.tasks(filters={"desired-state": "running"}),
            client.networks,
            client.secrets,
            client.configs,
        )
    ]
    services, current, networks, secrets, configs = (future.result() for future in lists)
    tasks = with_history(client, services, current)
    return SwarmState(services=services, tasks=tasks, networks=networks, secrets=secrets, configs=configs)


def with_history(client: EngineClient, services: list[Obj], current: list[Obj]) -> list[Obj]:
    """``current`` tasks, with the whole history of the services that are not converged."""
    by_service: dict[str, list[Obj]] = defaultdict(list)
    for task in current:
        by_service[task["ServiceID"]].append(task)
    unsettled = {svc["ID"] for svc in services if not settled(svc, by_service.get(svc["ID"], []))}
    if not unsettled:
        return current
    if len(unsettled) * 2 > len(services):
        return call(client.tasks)
    try:
        history: list[Obj] = call(lambda: client.tasks(filters={"service": sorted(unsettled)}))
    except EngineError as exc:
        if not exc.not_found:
            raise
        return call(client.tasks)  # one of them was removed since the services were listed
    return [*(t for t in current if t["ServiceID"] not in unsettled), *history]


def settled(service: Obj, current: list[Obj]) -> bool:
    """Whether the service runs what its spec says and nothing is under way: its ended tasks are
    then of no interest. Jobs are never settled here (their tasks end by design)."""
    spec = service["Spec"]
    mode = spec.get("Mode") or {}
    counts = service.get("ServiceStatus")
    if "ReplicatedJob" in mode or "GlobalJob" in mode or not counts:
        return False
    if (service.get("UpdateStatus") or {}).get("State") not in (None, "completed"):
        return False
    template = spec.get("TaskTemplate") or {}
    return counts.get("RunningTasks") == counts.get("DesiredTasks") == len(current) and all(
        (t.get("Status") or {}).get("State") == "running" and same_template(t, template) for t in current
    )


def same_template(task: Obj, template: Obj) -> bool:
    """Whether the task runs the service's current task template, as swarm's orchestrator decides
    a task is up to date. Tasks omit the default runtime that the service's template spells out;
    ForceUpdate is compared: `--force` is meant to replace every task."""
    spec = {k: v for k, v in (task.get("Spec") or {}).items() if k != "Runtime"}
    want = {k: v for k, v in template.items() if k != "Runtime"}
    return spec == want


# Threads kept for the life of the process: a controller observes on every pass.
_POOL = ThreadPoolExecutor(max_workers=5, thread_name_prefix="observe")
