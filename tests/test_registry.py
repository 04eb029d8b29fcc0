"""The test registries against the real engine: push, pull by a swarm task, TLS and basic auth.

These prove the setup (``./dev`` and ``registry_fixtures``) that later tests of digest pinning and
private registries build on.
"""

from __future__ import annotations

from typing import Any

import docker
import docker.errors
import docker.types
import pytest
import requests

from helpers import running_count, service_tasks, wait_for
from registry_fixtures import Registries, RegistryError, build_distinct_image, pull, push


def _repo_digests(api: docker.APIClient, image: str) -> list[str]:
    try:
        return [str(d) for d in api.inspect_image(image).get("RepoDigests") or []]
    except docker.errors.ImageNotFound:
        return []


def _task_summary(tasks: list[dict[str, Any]]) -> str:
    statuses = [t.get("Status") or {} for t in tasks]
    return "; ".join(f"{s.get('State')}: {s.get('Err') or s.get('Message')}" for s in statuses)


def test_swarm_service_runs_image_pulled_from_plain_registry(
    docker_api: docker.APIClient, registries: Registries, scratch_images: list[str], namespace: str
) -> None:
    # scratch_images before namespace: the service (which uses the image) goes first at teardown.
    repository = f"{registries.plain}/sk/busybox"
    image = build_distinct_image(docker_api)
    scratch_images.append(image)
    digest = push(docker_api, image, repository, "1")
    assert registries.manifest_digest(registries.plain, "sk/busybox", "1") == digest
    docker_api.remove_image(image, force=True)
    assert not _repo_digests(docker_api, f"{repository}:1")
    # The engine pulls it back: ./dev starts dockerd with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1,
    # which keeps swarm tasks from pulling at all (they only use local images), so the pull cannot
    # be left to the task.
    assert pull(docker_api, repository, "1") == digest

    name = f"{namespace}_pull"
    spec = docker.types.ContainerSpec(image=f"{repository}:1", command=["sleep", "1d"])
    docker_api.create_service(docker.types.TaskTemplate(container_spec=spec), name=name)
    try:
        wait_for(lambda: running_count(docker_api, name) == 1, timeout=90, message=f"{name} has no running task")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; tasks: {_task_summary(service_tasks(docker_api, name, None))}") from None
    # The task runs exactly what was pushed.
    container = docker_api.inspect_container(
        service_tasks(docker_api, name)[0]["Status"]["ContainerStatus"]["ContainerID"]
    )
    assert container["Image"] == image
    assert f"{repository}@{digest}" in _repo_digests(docker_api, container["Image"])


def test_inspect_distribution_reports_pushed_digest(
    docker_api: docker.APIClient, registries: Registries, scratch_images: list[str]
) -> None:
    repository = f"{registries.plain}/sk/busybox"
    first = build_distinct_image(docker_api)
    second = build_distinct_image(docker_api)
    scratch_images.extend([first, second])
    old = push(docker_api, first, repository, "1")
    new = push(docker_api, second, repository, "1")  # the same tag again: a new digest
    assert old != new
    descriptor = docker_api.inspect_distribution(f"{repository}:1")["Descriptor"]
    assert descriptor["digest"] == new
    assert registries.manifest_digest(registries.plain, "sk/busybox", "1") == new


def test_tls_registry_requires_auth(registries: Registries) -> None:
    response = registries.get(registries.tls, "/v2/", authenticated=False)
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate", "").startswith("Basic ")
    assert registries.get(registries.tls, "/v2/").status_code == 200
    # The certificate is the test CA's, for 127.0.0.1: without the CA, verification fails.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{registries.tls}/v2/", timeout=10)


def test_tls_registry_login_push_pull(
    docker_api: docker.APIClient,
    isolated_api: docker.APIClient,
    registries: Registries,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.tls}/sk/busybox"
    image = build_distinct_image(docker_api)
    scratch_images.append(image)
    isolated_api.login(registries.user, registries.password, registry=registries.tls)
    digest = push(isolated_api, image, repository, "1")  # with the credentials login stored
    assert registries.manifest_digest(registries.tls, "sk/busybox", "1") == digest

    docker_api.remove_image(f"{repository}:1")
    assert pull(docker_api, repository, "1", auth=registries.auth()) == digest
    assert f"{repository}@{digest}" in _repo_digests(docker_api, f"{repository}:1")


def test_tls_registry_rejects_wrong_password(
    docker_api: docker.APIClient,
    isolated_api: docker.APIClient,
    registries: Registries,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.tls}/sk/wrong"
    wrong = f"not-{registries.password}"
    image = build_distinct_image(docker_api)
    scratch_images.append(image)

    with pytest.raises(docker.errors.APIError) as login_error:
        isolated_api.login(registries.user, wrong, registry=registries.tls, reauth=True)
    with pytest.raises(RegistryError) as push_error:
        push(isolated_api, image, repository, "1", auth=registries.auth(wrong))
    # Something there to pull: a failed pull then says "unauthorized", not "not found".
    push(docker_api, image, repository, "1", auth=registries.auth())
    docker_api.remove_image(f"{repository}:1")
    with pytest.raises((RegistryError, docker.errors.APIError)) as pull_error:
        pull(isolated_api, repository, "1", auth=registries.auth(wrong))

    for error in (login_error, push_error, pull_error):
        text = str(error.value)
        assert wrong not in text and registries.password not in text, "the password leaks into the error"
        assert "unauthorized" in text.lower() or "authentication required" in text.lower(), text
