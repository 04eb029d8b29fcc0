"""The test environment itself: a swarm-mode engine, the local image and the shared fixtures."""

from __future__ import annotations

from typing import Any

import docker

from helpers import cleanup_namespace, exec_in_service, running_count, service_tasks, wait_for


def _sleeper(image: str) -> dict[str, Any]:
    return {
        "ContainerSpec": {"Image": image, "Command": ["sleep", "3600"]},
        "RestartPolicy": {"Condition": "any"},
    }


def test_engine_is_single_node_swarm_manager(docker_api: docker.APIClient) -> None:
    info = docker_api.info()
    assert info["Swarm"]["LocalNodeState"] == "active"
    assert info["Swarm"]["ControlAvailable"] is True
    nodes = docker_api.nodes()
    assert len(nodes) >= 1
    assert any(n["Status"]["State"] == "ready" for n in nodes)


def test_probe_service_runs_and_execs(docker_api: docker.APIClient, local_image: str, namespace: str) -> None:
    name = f"{namespace}_probe"
    docker_api.create_service(_sleeper(local_image), name=name)

    wait_for(
        lambda: running_count(docker_api, name) == 1,
        timeout=60,
        message=f"{name} did not reach 1 running task",
    )
    assert len(service_tasks(docker_api, name)) == 1
    assert exec_in_service(docker_api, name, ["echo", "hi"]) == "hi"


def test_namespace_cleanup_removes_everything(docker_api: docker.APIClient, local_image: str, namespace: str) -> None:
    ns = namespace
    labels = {"com.docker.stack.namespace": ns}
    net = docker_api.create_network(f"{ns}_net", driver="overlay", attachable=True)["Id"]
    secret = docker_api.create_secret(f"{ns}_secret", b"s3cret")["ID"]
    config = docker_api.create_config(f"{ns}cfg", b"cfg", labels=labels)["ID"]  # by label only
    service = docker_api.create_service(
        {**_sleeper(local_image), "Networks": [{"Target": net}]},
        name=f"{ns}svc",  # owned through the stack label only
        labels=labels,
    )["ID"]
    wait_for(lambda: running_count(docker_api, service) == 1, timeout=60, message="cleanup probe not running")

    cleanup_namespace(docker_api, ns)

    assert not [s for s in docker_api.services() if s["ID"] == service]
    assert not docker_api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={service}"})
    assert not [n for n in docker_api.networks() if n["Id"] == net]
    assert not [s for s in docker_api.secrets() if s["ID"] == secret]
    assert not [c for c in docker_api.configs() if c["ID"] == config]
