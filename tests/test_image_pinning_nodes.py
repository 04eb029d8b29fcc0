"""Every node of a three-node swarm (one manager, two workers) pulls the pinned image from a real
registry.

The registries (Debian's docker-registry) run in the namespace of the nodes' bridge, at addresses
only the nodes reach; unlike the other test engines, the nodes pull their tasks' images.
swarmkeeper applies through node 1 and pins the tag to its digest; the image exists on node 1
only, so tasks running on nodes 2 and 3 prove those nodes pulled it, by the digest the service
names.

* ``10.231.0.250:5000``: plain HTTP, listed as insecure in the nodes' daemon.json;
* ``10.231.0.251:5443``: TLS with a CA of the test's own (installed in ``/etc/docker/certs.d``,
  which the nodes' dockerds share with the host: each node runs in a network namespace, not a
  mount namespace of its own) and htpasswd logins. Not insecure: the nodes verify its certificate.
  No node holds a login for it; the workers pull with the one swarmkeeper sends, as
  ``--with-registry-auth`` does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from cli_helpers import sk, write_spec
from engines import LOCAL_IMAGE, EngineCluster, EngineError
from helpers import wait_for

REGISTRY = "10.231.0.250:5000"  # on the bridge of the nodes below, and nowhere else
TLS_REGISTRY = "10.231.0.251:5443"  # the same bridge; TLS and a login, not insecure
CERTS_D = Path("/etc/docker/certs.d") / TLS_REGISTRY
REGISTRY_BIN = "/usr/bin/docker-registry"


@dataclass(frozen=True)
class Login:
    user: str
    password: str = field(repr=False)

    def docker_config(self, folder: Path) -> dict[str, str]:
        """``DOCKER_CONFIG`` naming a config.json with this login, as ``docker login`` writes it."""
        folder.mkdir(parents=True, exist_ok=True)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {TLS_REGISTRY: {"auth": token}}}))
        return {"DOCKER_CONFIG": str(folder)}

    def leaks_into(self, text: str) -> bool:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return self.password in text or token in text


def _serve(cluster: EngineCluster, address: str, config: str, folder: Path) -> subprocess.Popen[bytes]:
    assert os.access(REGISTRY_BIN, os.X_OK), f"{REGISTRY_BIN} is missing: ./dev setup installs docker-registry"
    (folder / "registry.yml").write_text(textwrap.dedent(config))
    return cluster.serve_on_bridge(
        address.split(":")[0], [REGISTRY_BIN, "serve", str(folder / "registry.yml")], folder / "registry.log"
    )


def _stop(registry: subprocess.Popen[bytes] | None) -> None:
    if registry is not None and registry.poll() is None:
        registry.send_signal(signal.SIGTERM)
        registry.wait(timeout=15)


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"openssl {args[0]}: {result.stderr.strip()}"


def _certificates(folder: Path, ip: str) -> None:
    """ca.crt, and server.crt/server.key for ``ip``, signed by it (as ``./dev`` makes the test CA)."""
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", folder / "ca.key")
    _openssl(
        "req", "-x509", "-new", "-key", folder / "ca.key", "-days", "2", "-subj", "/CN=swarmkeeper-nodes-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", folder / "ca.crt",
    )  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", folder / "server.key")
    _openssl("req", "-new", "-key", folder / "server.key", "-subj", f"/CN={ip}", "-out", folder / "server.csr")
    (folder / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{ip}\n"
    )
    _openssl(
        "x509", "-req", "-in", folder / "server.csr", "-CA", folder / "ca.crt", "-CAkey", folder / "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", folder / "server.ext", "-out", folder / "server.crt",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pulling_swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineCluster]:
    cluster = EngineCluster(3, prefix="skr", insecure_registries=(REGISTRY,), pulls=True)
    registry: subprocess.Popen[bytes] | None = None
    folder = tmp_path_factory.mktemp("bridge-registry")
    try:
        cluster.up()
        cluster.init_swarm(managers=1)
        registry = _serve(
            cluster,
            REGISTRY,
            f"""
            version: 0.1
            storage: {{filesystem: {{rootdirectory: {folder / "data"}}}}}
            http: {{addr: {REGISTRY}}}
            """,
            folder,
        )
        yield cluster
    except EngineError as exc:
        pytest.fail(f"the three-node swarm did not start: {exc}", pytrace=False)
    finally:
        _stop(registry)
        cluster.down()


@pytest.fixture(scope="module")
def tls_login(pulling_swarm: EngineCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Login]:
    """The TLS registry on the bridge, its CA where the nodes' dockerds read it, and its login."""
    assert shutil.which("htpasswd"), "htpasswd is missing: ./dev setup installs apache2-utils"
    folder = tmp_path_factory.mktemp("bridge-registry-tls")
    login = Login("sk-nodes", secrets.token_hex(16))
    _certificates(folder, TLS_REGISTRY.split(":")[0])
    subprocess.run(
        ["htpasswd", "-B", "-i", "-c", str(folder / "htpasswd"), login.user],
        input=login.password,
        capture_output=True,
        text=True,
        check=True,
    )
    registry: subprocess.Popen[bytes] | None = None
    try:
        CERTS_D.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "ca.crt", CERTS_D / "ca.crt")
        registry = _serve(
            pulling_swarm,
            TLS_REGISTRY,
            f"""
            version: 0.1
            storage: {{filesystem: {{rootdirectory: {folder / "data"}}}}}
            http:
              addr: {TLS_REGISTRY}
              tls: {{certificate: {folder / "server.crt"}, key: {folder / "server.key"}}}
            auth: {{htpasswd: {{realm: swarmkeeper-nodes, path: {folder / "htpasswd"}}}}}
            """,
            folder,
        )
        yield login
    finally:
        _stop(registry)
        shutil.rmtree(CERTS_D, ignore_errors=True)


def test_every_node_pulls_the_pinned_image(pulling_swarm: EngineCluster, tmp_path: Path) -> None:
    first = pulling_swarm.nodes[0]
    api = first.api()
    repository = f"{REGISTRY}/sk/app"
    api.tag(LOCAL_IMAGE, repository, "1")

    def pushed() -> str | None:
        digest = None
        for event in api.push(repository, tag="1", stream=True, decode=True):
            if "error" in event:
                return None  # the registry may still be starting
            digest = (event.get("aux") or {}).get("Digest") or digest
        return digest

    digest = wait_for(pushed, timeout=30, message=f"push to {REGISTRY}")
    for node in pulling_swarm.nodes[1:]:
        assert not node.api().images(name=repository), f"{node.name} must not have the image yet"
    specs = tmp_path / "specs"
    write_spec(
        specs,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app, namespace: pull}}
        spec:
          image: {repository}:1
          mode: global
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """,
    )
    res = sk("apply", specs, "--host", first.socket)
    assert res.code == 0, res.output
    service = api.inspect_service("pull_app")
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{repository}:1@{digest}"

    def running_on_every_node() -> bool:
        tasks = api.tasks(filters={"service": "pull_app", "desired-state": "running"})
        return len({t["NodeID"] for t in tasks if t["Status"]["State"] == "running"}) == 3

    wait_for(running_on_every_node, timeout=120, message="pull_app running on all three nodes")
    for node in pulling_swarm.nodes:
        digests = node.api().inspect_image(f"{repository}@{digest}")["RepoDigests"]
        assert f"{repository}@{digest}" in digests, node.name


def _tasks(api: docker.APIClient, service: str) -> list[dict[str, Any]]:
    return [t for t in api.tasks(filters={"service": service}) if isinstance(t, dict)]


def test_a_private_tls_registry_is_pulled_on_every_node_with_the_login_swarmkeeper_sends(
    pulling_swarm: EngineCluster, tls_login: Login, tmp_path: Path
) -> None:
    first, workers = pulling_swarm.nodes[0], pulling_swarm.nodes[1:]
    api = first.api()
    repository = f"{TLS_REGISTRY}/sk/private"
    # docker login on node 1 only, through a client of its own (the login stays in that client):
    # the engine checks it against the registry over TLS, verified with the CA in certs.d.
    pusher = docker.APIClient(base_url=first.socket, version="auto", timeout=60)
    try:

        def logged_in() -> bool | None:
            with contextlib.suppress(docker.errors.APIError):
                return bool(pusher.login(tls_login.user, tls_login.password, registry=TLS_REGISTRY, reauth=True))
            return None  # the registry may still be starting

        wait_for(logged_in, timeout=30, message=f"docker login {TLS_REGISTRY} from {first.name}")
        pusher.tag(LOCAL_IMAGE, repository, "1")
        digest = ""
        for event in pusher.push(repository, tag="1", stream=True, decode=True):
            assert "error" not in event, event
            digest = (event.get("aux") or {}).get("Digest") or digest
        assert digest.startswith("sha256:")
    finally:
        pusher.close()
    for node in workers:
        assert not node.api().images(name=repository), f"{node.name} must not have the image yet"
    specs = tmp_path / "specs"
    write_spec(
        specs,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app, namespace: private}}
        spec:
          image: {repository}:1
          replicas: 3
          placement: {{maxReplicasPerNode: 1}}
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """,
    )

    def live() -> str:
        return str(api.inspect_service("private_app")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])

    worker_ids = {n["ID"] for n in api.nodes() if n["Spec"]["Role"] == "worker"}
    assert len(worker_ids) == 2

    # No login for swarmkeeper: the registry refuses to say the digest (the tag runs as written, with
    # a warning naming the refusal), and the workers, which have no login either, cannot pull it.
    nowhere = {"DOCKER_CONFIG": str(tmp_path / "no-login")}
    res = sk("apply", specs, "--host", first.socket, env=nowhere)
    assert res.code == 0, res.output
    assert live() == f"{repository}:1"
    assert f"image {repository}:1 could not be pinned to a registry digest" in res.output, res.output
    assert "no basic auth credentials" in res.output, res.output

    def refused_on_the_workers() -> bool:
        failed = {
            t["NodeID"]
            for t in _tasks(api, "private_app")
            if t["Status"]["State"] in ("rejected", "failed") and "No such image" in (t["Status"].get("Err") or "")
        }
        return worker_ids <= failed

    wait_for(refused_on_the_workers, timeout=90, message="private_app refused on both workers")
    for node in workers:  # why: the pull was refused for want of a login
        log = node.log_path.read_text(errors="replace").splitlines()
        refused = [line for line in log if "pulling image failed" in line and "no basic auth credentials" in line]
        assert refused, node.log_tail()
        assert not node.api().images(name=repository)

    # The login in swarmkeeper's docker config: pinned, and sent with the update, so every node pulls.
    login = tls_login.docker_config(tmp_path / "login")
    res = sk("apply", specs, "--host", first.socket, "-vv", env=login)
    assert res.code == 0, res.output
    assert live() == f"{repository}:1@{digest}"

    def running_on_every_node() -> bool:
        tasks = api.tasks(filters={"service": "private_app", "desired-state": "running"})
        return len({t["NodeID"] for t in tasks if t["Status"]["State"] == "running"}) == 3

    wait_for(running_on_every_node, timeout=120, message="private_app running on all three nodes")
    for node in workers:
        digests = node.api().inspect_image(f"{repository}@{digest}")["RepoDigests"]
        assert f"{repository}@{digest}" in digests, node.name
    shown = sk("get", "services", "-n", "private", "-o", "yaml", "--host", first.socket, env=login)
    assert shown.code == 0, shown.output
    for text in (res.output, shown.output, json.dumps(api.inspect_service("private_app"))):
        assert not tls_login.leaks_into(text), "the registry password leaks"
