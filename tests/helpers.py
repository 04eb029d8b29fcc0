"""Plain helper functions for tests that talk to the real Docker Engine.

Import them in tests with ``from helpers import wait_for, running_count, ...``
(pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import docker
import docker.errors

T = TypeVar("T")

STACK_NAMESPACE_LABEL = "com.docker.stack.namespace"
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
SERVICE_ID_LABEL = "com.docker.swarm.service.id"


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.2,
    message: str = "condition was not met",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value (never None).

    Raises ``AssertionError`` with ``message`` (and the last value seen) after ``timeout`` seconds.
    Exceptions raised by ``predicate`` propagate immediately.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (waited {timeout:.1f}s; last value: {value!r})")
        time.sleep(interval)


def service_tasks(
    api: docker.APIClient,
    service_name: str,
    desired_state: str | None = "running",
) -> list[dict[str, Any]]:
    """Tasks of a service (by name or ID), optionally only those with the given desired state.

    Returns ``[]`` when the service does not exist (yet or any more).
    """
    try:
        service = api.inspect_service(service_name)
    except docker.errors.NotFound:
        return []
    service_id = cast(str, service["ID"])
    # The engine also resolves ID prefixes; insist on an exact name or ID.
    if service_name not in (service_id, service["Spec"]["Name"]):
        return []
    filters: dict[str, str] = {"service": service_id}
    if desired_state is not None:
        filters["desired-state"] = desired_state
    try:
        tasks = api.tasks(filters=filters)
    except docker.errors.NotFound:
        return []
    return [cast(dict[str, Any], t) for t in tasks if t.get("ServiceID") == service_id]


def running_count(api: docker.APIClient, service_name: str) -> int:
    """Number of tasks that are running and meant to be running."""
    return sum(
        1
        for t in service_tasks(api, service_name, desired_state="running")
        if t.get("Status", {}).get("State") == "running" and t.get("DesiredState") == "running"
    )


def service_containers(api: docker.APIClient, service_name: str) -> list[dict[str, Any]]:
    """Running containers (``docker ps`` entries) of a service on this node."""
    containers = api.containers(filters={"label": f"{SERVICE_NAME_LABEL}={service_name}", "status": "running"})
    return [cast(dict[str, Any], c) for c in containers]


def exec_in_service(api: docker.APIClient, service_name: str, cmd: list[str], check: bool = True) -> str:
    """Run ``cmd`` in one running container of the service and return its output.

    stdout and stderr are combined and decoded; surrounding whitespace is stripped.
    With ``check`` (default), a non-zero exit code raises ``AssertionError``.
    """
    containers = service_containers(api, service_name)
    if not containers:
        raise AssertionError(f"service {service_name!r} has no running container on this node")
    container_id = cast(str, containers[0]["Id"])
    exec_id = cast(str, api.exec_create(container_id, cmd)["Id"])
    raw = api.exec_start(exec_id)
    output = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    if check:
        exit_code = api.exec_inspect(exec_id).get("ExitCode")
        if exit_code != 0:
            raise AssertionError(
                f"{cmd!r} in {service_name!r} ({container_id[:12]}) exited {exit_code}: {output.strip()}"
            )
    return output.strip()


# ---------------------------------------------------------------------------
# namespace cleanup (used by the ``namespace`` fixture)
# ---------------------------------------------------------------------------


def _spec_owned(obj: dict[str, Any], namespace: str) -> bool:
    spec = obj.get("Spec") or {}
    name = spec.get("Name") or obj.get("Name") or ""
    labels = spec.get("Labels") or obj.get("Labels") or {}
    return str(name).startswith(f"{namespace}_") or labels.get(STACK_NAMESPACE_LABEL) == namespace


def _ignore_not_found(action: Callable[[], object]) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        action()


def _remove_with_retry(
    items: Iterable[tuple[str, Callable[[], object]]], what: str, timeout: float = 15.0
) -> list[str]:
    """Remove each item, retrying "in use" errors until ``timeout``; returns names that remain."""
    pending = list(items)
    deadline = time.monotonic() + timeout
    while pending:
        failed: list[tuple[str, Callable[[], object]]] = []
        errors: list[str] = []
        for name, remove in pending:
            try:
                remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                failed.append((name, remove))
                errors.append(f"{name}: {exc.explanation or exc}")
        pending = failed
        if not pending:
            break
        if time.monotonic() >= deadline:
            warnings.warn(f"could not remove {what}: {'; '.join(errors)}", stacklevel=3)
            break
        time.sleep(0.5)
    return [name for name, _ in pending]


def cleanup_namespace(api: docker.APIClient, namespace: str, task_timeout: float = 30.0) -> None:
    """Remove every service, then network, secret and config belonging to ``namespace``.

    An object belongs to the namespace when its name starts with ``f"{namespace}_"`` or its
    ``com.docker.stack.namespace`` label equals ``namespace``. Services go first; their tasks
    are waited for (up to ``task_timeout`` seconds) so networks, secrets and configs are free.
    """
    services = [s for s in api.services() if _spec_owned(s, namespace)]
    service_ids = [cast(str, s["ID"]) for s in services]
    for service_id in service_ids:
        _ignore_not_found(partial(api.remove_service, service_id))

    # Kill the containers right away: the engine would otherwise wait for each task's stop grace
    # period (10 s by default; `sleep` as PID 1 ignores SIGTERM).
    for service_id in service_ids:
        for container in api.containers(all=True, filters={"label": f"{SERVICE_ID_LABEL}={service_id}"}):
            with contextlib.suppress(docker.errors.APIError):  # already stopped or gone
                api.kill(container["Id"])

    def tasks_gone() -> bool:
        # Filtering tasks by a removed service answers 404, so filter on our side.
        wanted = set(service_ids)
        if any(t.get("ServiceID") in wanted for t in api.tasks()):
            return False
        return not any(
            api.containers(all=True, filters={"label": f"{SERVICE_ID_LABEL}={service_id}"})
            for service_id in service_ids
        )

    if service_ids:
        try:
            wait_for(tasks_gone, timeout=task_timeout, interval=0.3, message="tasks still present")
        except AssertionError as exc:
            warnings.warn(f"namespace {namespace}: {exc}", stacklevel=2)

    networks = [n for n in api.networks() if _spec_owned(n, namespace)]
    _remove_with_retry(
        ((cast(str, n["Name"]), partial(api.remove_network, n["Id"])) for n in networks),
        f"networks of {namespace}",
    )
    secrets = [s for s in api.secrets() if _spec_owned(s, namespace)]
    _remove_with_retry(
        ((cast(str, s["Spec"]["Name"]), partial(api.remove_secret, s["ID"])) for s in secrets),
        f"secrets of {namespace}",
    )
    configs = [c for c in api.configs() if _spec_owned(c, namespace)]
    _remove_with_retry(
        ((cast(str, c["Spec"]["Name"]), partial(api.remove_config, c["ID"])) for c in configs),
        f"configs of {namespace}",
    )


DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io 20.10, matching the daemon: the reference client


def stack_deploy(
    compose: Path | Sequence[Path],
    namespace: str,
    env: Mapping[str, str] | None = None,
    *,
    resolve_image: str = "never",
) -> None:
    """``docker stack deploy -c FILE...`` as users run it: several files are merged by the CLI, the
    first one's folder being where relative paths start; local images are not resolved against a
    registry unless ``resolve_image`` says so. ``env``: the variables the files read (only those:
    none of the caller's ``CORPUS_*`` leak in)."""
    assert Path(DOCKER_CLI).exists(), f"{DOCKER_CLI} is missing: the docker CLI is needed to deploy stacks"
    files = [compose] if isinstance(compose, Path) else list(compose)
    assert files, "no compose file to deploy"
    base = {k: v for k, v in os.environ.items() if not k.startswith("CORPUS_")}
    result = subprocess.run(
        [
            DOCKER_CLI,
            "stack",
            "deploy",
            *(arg for f in files for arg in ("-c", str(f))),
            "--resolve-image",
            resolve_image,
            namespace,
        ],
        cwd=files[0].parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**base, **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr
