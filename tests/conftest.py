"""Fixtures shared by every test that talks to the real Docker Engine.

The engine must be running and in swarm mode (``./dev setup`` takes care of both). When it is
not, the fixtures fail the test with a hint; they never skip.

Writing engine tests:

* use the ``local_image`` (busybox, built locally; no registry is reachable) and create services
  through the low-level API, which never resolves images against a registry;
* name every swarm object ``f"{namespace}_..."`` or label it ``com.docker.stack.namespace``;
* the kernel may lack IPVS: VIP load balancing and the ingress routing mesh then do not work, so
  use endpoint mode ``dnsrr`` and host-mode published ports when a test needs networking;
* ``sleep`` as PID 1 ignores SIGTERM; teardown kills containers, so that costs no time there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests.exceptions

from engines import single_engine, three_managers  # noqa: F401 (fixtures: extra engines in network namespaces)
from helpers import cleanup_namespace

# The real Kubernetes API server (``kube``) and per-test namespaces in it (``kube_namespace``).
pytest_plugins = ["kube_fixtures", "registry_fixtures"]

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
LOCAL_IMAGE = "local/busybox:1"
SETUP_HINT = "run `./dev setup` (it starts dockerd, initialises the swarm and builds local/busybox:1)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the engine with ``docker`` (select with ``-m docker``)."""
    for item in items:
        if "docker_api" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_api() -> Iterator[docker.APIClient]:
    """Low-level client for the local engine; fails unless it answers and is in swarm mode."""
    base_url = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    problem = ""
    try:
        api = docker.APIClient(base_url=base_url, version="auto", timeout=60)
        info = api.info()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        problem = f"Docker Engine at {base_url} does not answer ({exc}); {SETUP_HINT}"
    if problem:  # failed outside the except block: no chained traceback in the report
        pytest.fail(problem, pytrace=False)
    state = (info.get("Swarm") or {}).get("LocalNodeState")
    if state != "active":
        pytest.fail(
            f"Docker Engine at {base_url} is not in swarm mode (LocalNodeState={state!r}); {SETUP_HINT}",
            pytrace=False,
        )
    if not (info.get("Swarm") or {}).get("ControlAvailable"):
        pytest.fail(f"Docker Engine at {base_url} is not a swarm manager; {SETUP_HINT}", pytrace=False)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def local_image(docker_api: docker.APIClient) -> str:
    """Name of the locally built busybox image (never pulled: no registry is assumed)."""
    try:
        docker_api.inspect_image(LOCAL_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {LOCAL_IMAGE} is missing; {SETUP_HINT}", pytrace=False)
    return LOCAL_IMAGE


@pytest.fixture
def namespace(docker_api: docker.APIClient) -> Iterator[str]:
    """A fresh short namespace (``t`` + 8 hex chars); everything in it is removed afterwards.

    Name swarm objects ``f"{namespace}_..."`` or label them ``com.docker.stack.namespace=<namespace>``.
    """
    ns = f"t{uuid.uuid4().hex[:8]}"
    try:
        yield ns
    finally:
        cleanup_namespace(docker_api, ns)


@pytest.fixture
def specs_dir(tmp_path: Path) -> Path:
    """An empty ``specs`` folder in the test's temporary directory."""
    path = tmp_path / "specs"
    path.mkdir()
    return path
