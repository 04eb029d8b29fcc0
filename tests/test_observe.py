"""What a pass reads of the swarm's tasks: what runs now for a converged service, the whole history
of one that is not (its failing task's error is there), so a long-lived controller reads and holds
what runs, not every task that ever ran."""

from __future__ import annotations

from pathlib import Path

import docker

from cli_helpers import sk, write_spec
from helpers import service_containers, wait_for
from swarmkeeper.engine.progress import service_progress
from swarmkeeper.swarm.connect import EngineClient
from swarmkeeper.swarm.observe import SwarmState, observe, with_history

SPEC = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  image: '{image}'
  command: {command}
  replicas: 2
  restartPolicy: {{condition: any, delay: 100ms}}
"""


def _state() -> SwarmState:
    return observe(EngineClient(version="auto"))


def _service(api: docker.APIClient, namespace: str, name: str) -> dict[str, object]:
    found: list[dict[str, object]] = api.services(filters={"name": f"{namespace}_{name}"})
    assert len(found) == 1, found
    return found[0]


def test_a_converged_service_is_read_without_its_history(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    write_spec(
        specs_dir, "web.yaml", SPEC.format(name="web", ns=namespace, image=local_image, command='["sleep", "3600"]')
    )
    assert sk("apply", specs_dir, "--wait", "--timeout", "90s").code == 0
    svc = _service(docker_api, namespace, "web")
    # Leave history behind: kill each container once and let swarm replace it.
    for container in service_containers(docker_api, f"{namespace}_web"):
        docker_api.kill(container["Id"])
    wait_for(
        lambda: (
            len(docker_api.tasks(filters={"service": svc["ID"]})) >= 4
            and service_progress(
                _service(docker_api, namespace, "web"), docker_api.tasks(filters={"service": svc["ID"]})
            ).converged
        ),
        timeout=60,
        message="the killed tasks were not replaced",
    )
    history = docker_api.tasks(filters={"service": svc["ID"]})

    def read_current_only() -> SwarmState | None:
        state = _state()
        return state if len(state.tasks_by_service.get(str(svc["ID"]), [])) == 2 else None

    state = wait_for(
        read_current_only,
        timeout=30,
        message="a converged service was read with its ended tasks",
    )
    assert len(history) >= 4
    tasks = state.tasks_by_service[str(svc["ID"])]
    assert {t["DesiredState"] for t in tasks} == {"running"}
    (now,) = (s for s in state.services if s["ID"] == svc["ID"])
    assert service_progress(now, tasks).converged


def test_a_failing_service_is_read_with_its_failed_tasks(local_image: str, namespace: str, specs_dir: Path) -> None:
    write_spec(
        specs_dir, "bad.yaml", SPEC.format(name="bad", ns=namespace, image=local_image, command='["/no/such/binary"]')
    )
    assert sk("apply", specs_dir).code == 0

    def failing() -> str | None:
        state = _state()
        for svc in state.services:
            if svc["Spec"]["Name"] == f"{namespace}_bad":
                error = service_progress(svc, state.tasks_by_service.get(svc["ID"], [])).task_error
                return str(error["error"]) if error else None
        return None

    error = wait_for(failing, timeout=60, message="the failing task's error was not read")
    assert "no such file" in error.lower() or "not found" in error.lower() or "exec" in error.lower(), error


def test_a_service_removed_since_it_was_listed_reads_every_task() -> None:
    """The history is asked for by service; one removed in between makes the engine answer 404."""
    client = EngineClient(version="auto")
    gone = {"ID": "no-such-service-id", "Spec": {"Mode": {"Replicated": {"Replicas": 1}}}, "ServiceStatus": {}}
    everything = client.tasks()
    read = with_history(client, [gone], [])
    assert {t["ID"] for t in everything} <= {t["ID"] for t in read}
