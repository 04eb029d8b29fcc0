"""Secrets and configs reach only the tasks of the services that name them, on every node of a
real three-node swarm.

Two services, each with a SwarmSecret and a SwarmConfig of its own, are applied through node 1 with
``maxReplicasPerNode: 1``: ``alpha`` runs one task on each of the three nodes, ``beta`` one on each
of nodes 1 and 2 and none on node 3. Each task's container is then asked, through the engine of
the node it runs on, what it sees under ``/run/secrets`` and at the config targets: its own files
with the spec's contents, and nothing of the other service.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import docker
import pytest

from cli_helpers import sk, write_spec
from engines import EngineCluster, EngineNode, running_swarm
from helpers import SERVICE_NAME_LABEL, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]

PREFIX = "sksc"  # this module's engines: sksc1..3 in their own network namespaces
NS = "scope"


@pytest.fixture(scope="module")
def swarm() -> Iterator[EngineCluster]:
    with running_swarm(3, prefix=PREFIX) as cluster:
        yield cluster


def spec_text(values: dict[str, str], spare: str) -> str:
    """alpha: three replicas anywhere; beta: two, kept off ``spare``; at most one task per node."""
    documents = []
    for name, replicas, constraints in (("alpha", 3, []), ("beta", 2, [f"node.hostname != {spare}"])):
        documents.append(
            textwrap.dedent(
                f"""\
                apiVersion: swarmkeeper.io/v1alpha1
                kind: SwarmSecret
                metadata: {{name: {name}-secret, namespace: {NS}}}
                spec: {{stringData: "{values[f"{name}-secret"]}"}}
                ---
                apiVersion: swarmkeeper.io/v1alpha1
                kind: SwarmConfig
                metadata: {{name: {name}-config, namespace: {NS}}}
                spec: {{stringData: "{values[f"{name}-config"]}"}}
                ---
                apiVersion: swarmkeeper.io/v1alpha1
                kind: SwarmService
                metadata: {{name: {name}, namespace: {NS}}}
                spec:
                  image: local/busybox:1
                  command: [sleep, "1d"]
                  replicas: {replicas}
                  endpointMode: dnsrr
                  stopGracePeriod: 1s
                  placement: {{maxReplicasPerNode: 1, constraints: {json.dumps(constraints)}}}
                  secrets: [{{source: {name}-secret, mode: "0400"}}]
                  configs: [{{source: {name}-config, target: /etc/{name}.conf}}]
                """
            )
        )
    return "---\n".join(documents)


def exec_in(api: docker.APIClient, container: str, *cmd: str) -> tuple[int, str]:
    exec_id = cast(str, api.exec_create(container, list(cmd))["Id"])
    raw = api.exec_start(exec_id)
    output = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return int(api.exec_inspect(exec_id)["ExitCode"]), output


def containers_by_service(node: EngineNode) -> dict[str, list[dict[str, Any]]]:
    """Short service name → this node's containers of it (running or not)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in node.api().containers(all=True, filters={"label": f"com.docker.stack.namespace={NS}"}):
        out.setdefault(c["Labels"][SERVICE_NAME_LABEL].removeprefix(f"{NS}_"), []).append(c)
    return out


def test_each_task_sees_only_its_own_secret_and_config_on_every_node(swarm: EngineCluster, tmp_path: Path) -> None:
    first, spare = swarm.nodes[0], swarm.nodes[2]
    values = {
        f"{name}-{kind}": f"{name}-{kind}-{uuid.uuid4().hex[:12]}"
        for name in ("alpha", "beta")
        for kind in ("secret", "config")
    }
    specs = tmp_path / "specs"
    write_spec(specs, "app.yaml", spec_text(values, spare.name))
    res = sk("apply", specs, "--host", first.socket, "--wait", "--timeout", "90s")
    assert res.code == 0, res.output

    api = first.api()
    hostname = {n["ID"]: n["Description"]["Hostname"] for n in api.nodes()}

    def placed() -> dict[str, list[str]] | None:
        out: dict[str, list[str]] = {}
        for name in ("alpha", "beta"):
            tasks = api.tasks(filters={"service": f"{NS}_{name}", "desired-state": "running"})
            out[name] = sorted(hostname[t["NodeID"]] for t in tasks if t["Status"]["State"] == "running")
        return out if len(out["alpha"]) == 3 and len(out["beta"]) == 2 else None

    where = wait_for(placed, timeout=60, message="tasks not all running")
    # One task per node (maxReplicasPerNode reached swarm), and beta kept off the spare node.
    assert where["alpha"] == sorted(n.name for n in swarm.nodes)
    assert where["beta"] == sorted(n.name for n in swarm.nodes[:2])

    other = {"alpha": "beta", "beta": "alpha"}
    seen = 0
    for node in swarm.nodes:
        by_service = containers_by_service(node)
        # Asked of this node's own engine: it runs exactly the tasks the swarm placed on it.
        expected = sorted(name for name, hosts in where.items() if node.name in hosts)
        assert sorted(by_service) == expected, node.name
        for name, containers in by_service.items():
            assert len(containers) == 1 and containers[0]["State"] == "running", (node.name, name)
            container = containers[0]["Id"]
            where_ = f"{name} on {node.name}"
            code, listing = exec_in(node.api(), container, "ls", "-1", "/run/secrets")
            assert code == 0 and listing.split() == [f"{name}-secret"], where_
            code, text = exec_in(node.api(), container, "cat", f"/run/secrets/{name}-secret")
            assert code == 0 and text == values[f"{name}-secret"], f"{where_}: wrong secret content"
            code, mode = exec_in(node.api(), container, "stat", "-c", "%a", f"/run/secrets/{name}-secret")
            assert (code, mode.strip()) == (0, "400"), where_
            code, text = exec_in(node.api(), container, "cat", f"/etc/{name}.conf")
            assert code == 0 and text == values[f"{name}-config"], f"{where_}: wrong config content"
            code, _ = exec_in(node.api(), container, "test", "-e", f"/etc/{other[name]}.conf")
            assert code == 1, f"{where_} sees {other[name]}'s config"
            code, _ = exec_in(node.api(), container, "test", "-e", f"/run/secrets/{other[name]}-secret")
            assert code == 1, f"{where_} sees {other[name]}'s secret"
            # No file under the usual places holds the other service's values (its own are found,
            # so the search itself works).
            for kind in ("secret", "config"):
                for owner, found in ((name, 0), (other[name], 1)):
                    value = values[f"{owner}-{kind}"]
                    code, _ = exec_in(node.api(), container, "grep", "-rqsF", value, "/run", "/etc", "/tmp", "/root")
                    assert code == found, f"{where_}: {owner}'s {kind} found: {code == 0}"
            seen += 1
    assert seen == 5  # alpha on three nodes, beta on two: every task was looked into
    assert "beta" not in containers_by_service(spare)  # the spare node never started a beta task
