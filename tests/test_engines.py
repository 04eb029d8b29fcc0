"""The extra-engine harness (tests/engines.py): separate engines survive restarts and form a real swarm.

These tests pin down what other tests build on: an engine of their own can be restarted without
losing swarm mode or its services, three engines form a three-manager swarm whose overlay carries
traffic between nodes, and when a node dies the others notice and reschedule its tasks. Timings
are printed (run with ``-s``) because they decide how long failover tests have to wait.
"""

from __future__ import annotations

import re
import time
from typing import cast

import docker
import docker.types
import pytest

from engines import LOCAL_IMAGE, NETNS_DIR, RUN_ROOT, EngineCluster, EngineNode, describe_swarm, pid_alive
from helpers import exec_in_service, running_count, service_tasks, wait_for

pytestmark = pytest.mark.docker

SECOND = 1_000_000_000  # swarm durations are in nanoseconds


def _create_service(
    api: docker.APIClient,
    name: str,
    command: list[str],
    *,
    replicas: int = 1,
    network: str | None = None,
    hostname: str | None = None,
) -> str:
    """A replicated service through the low-level API (which never asks a registry about the image).

    A 1 s stop grace period: ``sleep`` and ``nc`` as PID 1 ignore SIGTERM, and a graceful daemon
    stop waits that long for every container. A 1 s restart delay instead of the default 5 s keeps
    rescheduling after a node failure quick.
    """
    task = docker.types.TaskTemplate(
        container_spec=docker.types.ContainerSpec(
            LOCAL_IMAGE, command, hostname=hostname, stop_grace_period=1 * SECOND
        ),
        restart_policy=docker.types.RestartPolicy(condition="any", delay=1 * SECOND),
        networks=[network] if network else None,
    )
    service = api.create_service(
        task,
        name=name,
        mode=docker.types.ServiceMode("replicated", replicas=replicas),
        endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
    )
    return cast(str, service["ID"])


def _running_nodes(api: docker.APIClient, service: str) -> list[str]:
    """Node IDs of the service's tasks that run and are meant to."""
    return [
        cast(str, t["NodeID"]) for t in service_tasks(api, service) if t.get("Status", {}).get("State") == "running"
    ]


# ---------------------------------------------------------------------------
# one engine
# ---------------------------------------------------------------------------


def test_single_engine_runs_a_swarm_service(single_engine: EngineNode) -> None:
    api = single_engine.api()
    swarm = api.info()["Swarm"]
    assert swarm["LocalNodeState"] == "active"
    assert swarm["ControlAvailable"] is True
    assert swarm["NodeAddr"] == single_engine.address
    assert api.inspect_image(LOCAL_IMAGE)["Config"]["Env"] == ["PATH=/bin"]

    _create_service(api, "sleeper", ["sleep", "3600"])
    wait_for(lambda: running_count(api, "sleeper") == 1, timeout=60, message="sleeper not running")
    # The node's hostname is its own (unshare --uts), not the machine's.
    assert exec_in_service(api, "sleeper", ["hostname"]) != "" and api.info()["Name"] == single_engine.name


def test_single_engine_restart_keeps_swarm_and_services(single_engine: EngineNode) -> None:
    api = single_engine.api()
    _create_service(api, "sleeper", ["sleep", "3600"])
    wait_for(lambda: running_count(api, "sleeper") == 1, timeout=60, message="sleeper not running")
    before = {t["ID"] for t in service_tasks(api, "sleeper")}

    started = time.monotonic()
    single_engine.restart()
    answered = time.monotonic() - started
    assert single_engine.running
    api = single_engine.api()  # the old client belonged to the stopped daemon
    wait_for(lambda: single_engine.swarm_state() == "active", timeout=60, message="swarm mode not active again")
    active = time.monotonic() - started
    wait_for(lambda: running_count(api, "sleeper") == 1, timeout=90, message="sleeper not running again")
    back = time.monotonic() - started
    after = {t["ID"] for t in service_tasks(api, "sleeper")}
    print(
        f"\n[engines] restart: answering after {answered:.1f}s, swarm active after {active:.1f}s, "
        f"service 1/1 again after {back:.1f}s ({'same task' if after == before else 'new task'})"
    )


# ---------------------------------------------------------------------------
# three managers
# ---------------------------------------------------------------------------


def test_three_managers_agree_on_one_leader(three_managers: EngineCluster) -> None:
    for node in three_managers.nodes:
        seen = three_managers.swarm_nodes(via=node)
        assert sorted(seen) == ["skn1", "skn2", "skn3"], describe_swarm(seen)
        assert all(n["Spec"]["Role"] == "manager" for n in seen.values()), describe_swarm(seen)
        assert sum(bool(n["ManagerStatus"].get("Leader")) for n in seen.values()) == 1, describe_swarm(seen)
        assert {n["Status"]["Addr"] for n in seen.values()} == {"10.231.0.1", "10.231.0.2", "10.231.0.3"}
    spec = three_managers.nodes[0].api().inspect_swarm()["Spec"]
    assert spec["Dispatcher"]["HeartbeatPeriod"] == 1 * SECOND


def _task_addresses(api: docker.APIClient, service: str) -> list[str]:
    """IPv4 addresses that ``tasks.<service>`` resolves to, asked from inside one task."""
    output = exec_in_service(api, service, ["nslookup", f"tasks.{service}"], check=False)
    # Lines "Address: 10.231.x.y"; the resolver's own line ends in ":53" and does not match.
    return sorted(set(re.findall(r"^Address:?\s+(\d+\.\d+\.\d+\.\d+)\s*$", output, flags=re.MULTILINE)))


def test_overlay_spans_nodes_and_a_killed_node_is_replaced(three_managers: EngineCluster) -> None:
    cluster = three_managers
    api = cluster.nodes[0].api()
    network = api.create_network("web_net", driver="overlay", attachable=True)
    started = time.monotonic()
    _create_service(
        api,
        "web",
        ["nc", "-ll", "-p", "8080", "-e", "hostname"],
        replicas=3,
        network=cast(str, network["Id"]),
        hostname="web-{{.Node.Hostname}}",
    )
    wait_for(lambda: running_count(api, "web") == 3, timeout=120, message="web not 3/3")
    print(f"\n[engines] 3 replicas on a new overlay running after {time.monotonic() - started:.1f}s")

    ids = {name: cast(str, node["ID"]) for name, node in cluster.swarm_nodes().items()}
    assert sorted(_running_nodes(api, "web")) == sorted(ids.values()), "the scheduler did not spread the replicas"

    # Cross-node overlay traffic: DNS round-robin (no IPVS here, so no VIP) from a task on node 1.
    def three_addresses() -> list[str]:
        found = _task_addresses(api, "web")
        return found if len(found) == 3 else []

    addresses = wait_for(three_addresses, timeout=60, message="tasks.web did not resolve to three addresses")

    def hostnames() -> set[str] | None:
        answers = {
            exec_in_service(api, "web", ["sh", "-c", f"nc -w 3 {ip} 8080 </dev/null"], check=False) for ip in addresses
        }
        return answers if answers == {"web-skn1", "web-skn2", "web-skn3"} else None

    wait_for(hostnames, timeout=60, interval=1.0, message="not every task answered across the overlay")

    # Crash node 3: its dockerd, containerd, shims and containers all die at once.
    killed = time.monotonic()
    cluster.nodes[2].stop(kill=True)
    assert not cluster.nodes[2].running
    assert cluster.nodes[2].processes() == [], "containers or shims of skn3 survived"

    def down_for_others() -> bool:
        return all(cluster.swarm_nodes(via=node)["skn3"]["Status"]["State"] == "down" for node in cluster.nodes[:2])

    wait_for(down_for_others, timeout=60, interval=0.1, message="skn3 not reported down")
    down_after = time.monotonic() - killed

    def rescheduled() -> bool:
        nodes = _running_nodes(api, "web")
        return len(nodes) == 3 and ids["skn3"] not in nodes

    wait_for(rescheduled, timeout=90, interval=0.2, message="web not back to 3 tasks on skn1/skn2")
    recovered_after = time.monotonic() - killed
    print(f"[engines] kill -9 skn3: Down after {down_after:.1f}s, 3 tasks on skn1/skn2 after {recovered_after:.1f}s")

    # The crashed node comes back from its on-disk state and rejoins as a reachable manager.
    restarted = time.monotonic()
    cluster.nodes[2].start()
    seen = cluster.wait_healthy(timeout=90)
    print(
        f"[engines] skn3 started again: swarm healthy after {time.monotonic() - restarted:.1f}s "
        f"({describe_swarm(seen)})"
    )


def test_down_removes_leftovers_of_a_crashed_run() -> None:
    """A run that died without ``down()`` leaves daemons and namespaces; the next ``down()`` finds them."""
    crashed = EngineCluster(1, prefix="skt")
    try:
        crashed.up()
        node = crashed.nodes[0]
        pid = int(node.pidfile.read_text())
        # A fresh object knows nothing of the first one's processes, like a new test process.
        EngineCluster(1, prefix="skt").down()
        assert not (NETNS_DIR / "skt1").exists() and not (NETNS_DIR / "sktbr").exists()
        assert not [p for p in RUN_ROOT.glob("skt*")], "state of the crashed run is left"
        wait_for(lambda: not pid_alive(pid), timeout=10, message="dockerd of the crashed run still alive")
    finally:
        crashed.down()
