"""Real image registries for tests: the ``registries`` fixture and push/pull/build helpers.

``./dev test`` starts two distribution registries (2.8, Debian's ``docker-registry``) on loopback
before pytest and describes them in ``SWARMKEEPER_REGISTRY_*`` variables:

* ``SWARMKEEPER_REGISTRY_PLAIN`` (``127.0.0.1:5000``): plain HTTP, no auth;
* ``SWARMKEEPER_REGISTRY_TLS`` (``127.0.0.1:5443``): TLS with the test CA in
  ``SWARMKEEPER_REGISTRY_CA`` and htpasswd basic auth for ``SWARMKEEPER_REGISTRY_USER``, whose
  password is in ``SWARMKEEPER_REGISTRY_PASSWORD_FILE``.

When they are missing or do not answer, the fixture fails the test with a hint; it never skips.

Note: dockerd treats every 127.0.0.0/8 registry as insecure, so it does not verify the TLS
registry's certificate (the CA in /etc/docker/certs.d is installed but not needed by it); basic
auth is enforced all the same. Clients of our own (``requests``) do verify against the CA.

Wire it in with ``pytest_plugins = ["registry_fixtures"]`` in conftest.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import pytest
import requests

BASE_IMAGE = "local/busybox:1"
HINT = "run the tests through `./dev test` (it starts both registries and sets SWARMKEEPER_REGISTRY_*)"
ENV_VARS = (
    "SWARMKEEPER_REGISTRY_PLAIN",
    "SWARMKEEPER_REGISTRY_TLS",
    "SWARMKEEPER_REGISTRY_CA",
    "SWARMKEEPER_REGISTRY_USER",
    "SWARMKEEPER_REGISTRY_PASSWORD_FILE",
)
# What a client accepts when it asks for a manifest: the registry answers with the digest of the
# manifest as pushed only when its media type is among them (else it may convert it to schema 1).
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


class RegistryError(Exception):
    """A push, pull or build reported an error in its progress stream."""


@dataclass(frozen=True)
class Registries:
    """The two test registries: ``host:port`` of each, and the TLS one's CA and credentials."""

    plain: str
    tls: str
    ca: Path
    user: str
    password: str = field(repr=False)  # kept out of assertion messages and logs

    def auth(self, password: str | None = None) -> dict[str, str]:
        """An ``auth_config`` for docker-py (``password`` overrides the right one)."""
        return {"username": self.user, "password": self.password if password is None else password}

    def get(self, host: str, path: str, authenticated: bool = True, timeout: float = 10) -> requests.Response:
        """``GET https?://host/path`` straight to a registry (TLS verified against the test CA)."""
        if host == self.tls:
            auth = (self.user, self.password) if authenticated else None
            return requests.get(f"https://{host}{path}", verify=str(self.ca), auth=auth, timeout=timeout)
        return requests.get(f"http://{host}{path}", timeout=timeout)

    def manifest_digest(self, host: str, repository: str, reference: str) -> str | None:
        """The digest the registry reports for ``repository:reference`` (None when it has none)."""
        path = f"/v2/{repository}/manifests/{reference}"
        if host == self.tls:
            response = requests.head(
                f"https://{host}{path}",
                headers={"Accept": MANIFEST_TYPES},
                verify=str(self.ca),
                auth=(self.user, self.password),
                timeout=10,
            )
        else:
            response = requests.head(f"http://{host}{path}", headers={"Accept": MANIFEST_TYPES}, timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.headers.get("Docker-Content-Digest")


def _registries_from_env() -> Registries | str:
    """The registries described by the environment, or what is wrong with them."""
    missing = [name for name in ENV_VARS if not os.environ.get(name)]
    if missing:
        return f"{', '.join(missing)} not set"
    password_file = Path(os.environ["SWARMKEEPER_REGISTRY_PASSWORD_FILE"])
    ca = Path(os.environ["SWARMKEEPER_REGISTRY_CA"])
    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        return f"cannot read the registry password file: {exc}"
    if not ca.is_file():
        return f"the registry CA {ca} is missing"
    return Registries(
        plain=os.environ["SWARMKEEPER_REGISTRY_PLAIN"],
        tls=os.environ["SWARMKEEPER_REGISTRY_TLS"],
        ca=ca,
        user=os.environ["SWARMKEEPER_REGISTRY_USER"],
        password=password,
    )


@pytest.fixture(scope="session")
def registries() -> Registries:
    """Both test registries, checked to answer (``GET /v2/`` is 200, the TLS one with auth)."""
    found = _registries_from_env()
    if isinstance(found, str):
        pytest.fail(f"no test registries: {found}; {HINT}", pytrace=False)
    problem = ""
    for host in (found.plain, found.tls):
        try:
            status = found.get(host, "/v2/").status_code
        except requests.RequestException as exc:
            problem = f"registry {host} does not answer ({exc}); {HINT}"
            break
        if status != 200:
            problem = f"registry {host} answers GET /v2/ with {status}, not 200; {HINT}"
            break
    if problem:  # failed outside the except block: no chained traceback in the report
        pytest.fail(problem, pytrace=False)
    return found


@pytest.fixture
def isolated_api(docker_api: docker.APIClient) -> Iterator[docker.APIClient]:
    """A client of its own for the test: ``login`` stores credentials in the client, so logging in
    on the shared ``docker_api`` would let later tests push and pull with them unawares."""
    base_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    api = docker.APIClient(base_url=base_url, version="auto", timeout=60)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def scratch_images(docker_api: docker.APIClient) -> Iterator[list[str]]:
    """A list to put image IDs (from ``build_distinct_image``) in; they are removed afterwards."""
    images: list[str] = []
    try:
        yield images
    finally:
        for image in images:
            with contextlib.suppress(docker.errors.APIError):  # gone already, or in use by a leftover
                docker_api.remove_image(image, force=True)


def _raise_on_error(event: dict[str, Any], what: str) -> None:
    if "error" in event or "errorDetail" in event:
        detail = event.get("errorDetail") or {}
        message = detail.get("message") or event.get("error") or event
        raise RegistryError(f"{what}: {message}")


def _events(stream: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for event in stream:
        if isinstance(event, dict):
            yield cast(dict[str, Any], event)


def build_distinct_image(api: docker.APIClient, base: str = BASE_IMAGE) -> str:
    """A new image on ``base`` (only a unique label added: no layer, so cheap) and return its ID.

    Every call yields a different image ID and so a different manifest digest once pushed: what a
    test needs to "push a tag again". Untagged: tag it through ``push``; remove it when done
    (``scratch_images``)."""
    dockerfile = f"FROM {base}\nLABEL io.swarmkeeper.test.marker={uuid.uuid4().hex}\n".encode()
    image_id = ""
    stream = api.build(fileobj=io.BytesIO(dockerfile), rm=True, forcerm=True, pull=False, decode=True)
    for event in _events(stream):
        _raise_on_error(event, f"building an image on {base}")
        aux = event.get("aux") or {}
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
    if not image_id:
        raise RegistryError(f"building an image on {base} reported no image ID")
    return image_id


def push(
    api: docker.APIClient,
    source_image: str,
    repository: str,
    tag: str,
    auth: dict[str, str] | None = None,
) -> str:
    """Tag ``source_image`` as ``repository:tag``, push it, and return the manifest digest.

    ``repository`` includes the registry (``127.0.0.1:5000/sk/busybox``). ``auth`` is sent as is;
    without it, docker-py uses what ``api.login`` stored. The digest (``sha256:...``) is the one
    the push reports for the manifest it put (the registry's ``Docker-Content-Digest``). An error in
    the push raises ``RegistryError``."""
    if not api.tag(source_image, repository, tag, force=True):
        raise RegistryError(f"could not tag {source_image} as {repository}:{tag}")
    digest = ""
    stream = api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth)
    for event in _events(stream):
        _raise_on_error(event, f"pushing {repository}:{tag}")
        aux = event.get("aux") or {}
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
    if not digest.startswith("sha256:"):
        raise RegistryError(f"pushing {repository}:{tag} reported no digest")
    return digest


def pull(api: docker.APIClient, repository: str, tag: str, auth: dict[str, str] | None = None) -> str:
    """Pull ``repository:tag`` and return the manifest digest the pull reports.

    An error in the pull's stream raises ``RegistryError``; one the engine reports before the stream
    starts raises ``docker.errors.APIError``."""
    digest = ""
    stream = api.pull(repository, tag=tag, stream=True, decode=True, auth_config=auth)
    for event in _events(stream):
        _raise_on_error(event, f"pulling {repository}:{tag}")
        status = str(event.get("status") or "")
        if status.startswith("Digest: "):
            digest = status.removeprefix("Digest: ").strip()
    if not digest.startswith("sha256:"):
        raise RegistryError(f"pulling {repository}:{tag} reported no digest")
    return digest
