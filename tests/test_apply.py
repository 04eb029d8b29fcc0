"""Apply, update, scale and delete against the real engine, through the CLI users run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import docker

from cli_helpers import sk, write_spec
from helpers import running_count, wait_for
from swarmkeeper.engine.reconcile import reconcile
from swarmkeeper.loading import load_paths
from swarmkeeper.swarm.connect import connect

WEB = """
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata:
  name: web
  namespace: {ns}
spec:
  image: {image}
  command: ["sleep", "3600"]
  replicas: {replicas}
  env:
    RELEASE: "{release}"
  networks:
    - name: backend
  stopGracePeriod: 1s
  updateConfig:
    order: start-first
    parallelism: 1
"""
NET = """
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmNetwork
metadata:
  name: backend
  namespace: {ns}
spec:
  attachable: true
"""


def web(folder: Path, ns: str, image: str, replicas: int = 2, release: str = "1") -> None:
    write_spec(folder, "web.yaml", WEB.format(ns=ns, image=image, replicas=replicas, release=release))
    write_spec(folder, "net.yaml", NET.format(ns=ns))


def service_spec(api: docker.APIClient, name: str) -> dict[str, Any]:
    return cast(dict[str, Any], api.inspect_service(name)["Spec"])


def test_create_update_scale_delete(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    web(specs_dir, namespace, local_image)
    res = sk("apply", specs_dir, "--wait", "--timeout", "90s")
    assert res.code == 0, res.output
    name = f"{namespace}_web"
    spec = service_spec(docker_api, name)
    assert spec["Labels"]["com.docker.stack.namespace"] == namespace
    assert spec["TaskTemplate"]["Networks"][0]["Aliases"] == ["web"]
    assert running_count(docker_api, name) == 2
    # docker stack sees the objects as a stack
    assert docker_api.networks(names=[f"{namespace}_backend"])

    web(specs_dir, namespace, local_image, replicas=2, release="2")
    res = sk("apply", specs_dir, "--wait", "--timeout", "90s")
    assert res.code == 0, res.output
    assert "RELEASE=2" in service_spec(docker_api, name)["TaskTemplate"]["ContainerSpec"]["Env"]

    web(specs_dir, namespace, local_image, replicas=3, release="2")
    assert sk("apply", specs_dir, "--wait", "--timeout", "90s").code == 0
    assert running_count(docker_api, name) == 3

    got = sk("get", "services", "-n", namespace, "-o", "json")
    assert got.code == 0, got.output
    status = json.loads(got.stdout)
    doc = status[0] if isinstance(status, list) else status
    assert doc["status"]["ready"] == "3/3"

    res = sk("delete", specs_dir)
    assert res.code == 0, res.output
    wait_for(lambda: not docker_api.services(filters={"name": name}), message="service not removed")
    # the node's copy of an overlay network goes once the last task has detached
    wait_for(lambda: not docker_api.networks(names=[f"{namespace}_backend"]), message="network not removed")


def test_second_apply_makes_no_mutating_call(local_image: str, namespace: str, specs_dir: Path) -> None:
    web(specs_dir, namespace, local_image)
    manifests = load_paths([specs_dir]).manifests
    client = connect()
    first = reconcile(client, manifests)
    assert first.ok and first.changed
    for _ in range(3):
        client.calls.clear()
        again = reconcile(client, manifests)
        assert again.plan.empty, [s.describe() for s in again.plan.steps]
        assert client.mutating_calls() == 0, client.calls
        # one list call per object type, whatever the number of objects, and one more for the
        # task history while a service is still starting
        assert client.total_calls() <= 6 and client.calls[("GET", "/tasks")] <= 2, client.calls

    def five_calls() -> bool:
        client.calls.clear()
        reconcile(client, manifests)
        return client.total_calls() == 5

    wait_for(five_calls, timeout=60, message="a converged swarm was not read in five list calls")
    res = sk("diff", specs_dir)
    assert res.code == 0 and "no changes" in res.stdout


def test_diff_shows_field_changes_and_exit_codes(local_image: str, namespace: str, specs_dir: Path) -> None:
    web(specs_dir, namespace, local_image)
    res = sk("diff", specs_dir)
    assert res.code == 1 and "create" in res.stdout
    assert sk("apply", specs_dir).code == 0
    web(specs_dir, namespace, local_image, release="7")
    res = sk("diff", specs_dir)
    assert res.code == 1
    assert "RELEASE=7" in res.stdout and "update" in res.stdout
    res = sk("apply", specs_dir, "--dry-run")
    assert res.code == 0 and "RELEASE=7" in res.stdout
    assert sk("diff", specs_dir).code == 1  # dry run changed nothing


def test_killed_task_is_replaced_and_status_returns_to_n_of_n(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    web(specs_dir, namespace, local_image, replicas=3)
    assert sk("apply", specs_dir, "--wait", "--timeout", "90s").code == 0
    name = f"{namespace}_web"
    victim = docker_api.containers(filters={"label": f"com.docker.swarm.service.name={name}"})[0]
    docker_api.kill(victim["Id"])

    def ready() -> str:
        doc = json.loads(sk("get", "service", "web", "-n", namespace, "-o", "json").stdout)
        return str(doc["status"]["ready"])

    wait_for(lambda: ready() != "3/3", timeout=10, interval=0.05, message="the kill never showed in status")
    wait_for(lambda: ready() == "3/3", timeout=60, message="swarm did not replace the task")


def test_start_first_update_never_drops_below_n(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    web(specs_dir, namespace, local_image, replicas=2)
    assert sk("apply", specs_dir, "--wait", "--timeout", "90s").code == 0
    name = f"{namespace}_web"
    web(specs_dir, namespace, local_image, replicas=2, release="2")
    assert sk("apply", specs_dir).code == 0
    lowest = 99
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        lowest = min(lowest, running_count(docker_api, name))
        update = (docker_api.inspect_service(name).get("UpdateStatus") or {}).get("State")
        if update == "completed":
            break
        time.sleep(0.05)
    assert update == "completed"
    assert lowest >= 2


def test_wait_fails_on_rollback_with_the_task_error(local_image: str, namespace: str, specs_dir: Path) -> None:
    web(specs_dir, namespace, local_image, replicas=1)
    assert sk("apply", specs_dir, "--wait", "--timeout", "90s").code == 0
    bad = (
        WEB.format(ns=namespace, image=local_image, replicas=1, release="1")
        .replace('["sleep", "3600"]', '["/no/such/binary"]')
        .replace("parallelism: 1", "parallelism: 1\n    failureAction: rollback\n    monitor: 2s")
    )
    write_spec(specs_dir, "web.yaml", bad)
    res = sk("apply", specs_dir, "--wait", "--timeout", "120s")
    assert res.code == 1, res.output
    assert "rollback" in res.output
    assert "no such file" in res.output.lower() or "not found" in res.output.lower() or "exec" in res.output.lower()
