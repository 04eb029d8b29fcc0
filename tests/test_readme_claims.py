"""Claims README.md makes, each proven against real processes: the local engine, an engine of this
module's own (started outside swarm mode, so the only Docker events on it are the tests' own), a
real Kubernetes API server, and a Git server over TLS. Each test quotes the sentence it proves."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import pytest
from ruamel.yaml import YAML

from cli_helpers import sk, write_spec
from controller_helpers import controller, wait_until_idle
from engines import EngineCluster, EngineError, EngineNode
from helpers import cleanup_namespace, exec_in_service, service_tasks, wait_for
from kube_fixtures import Kube, operator

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]

SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"
PREFIX = "skrm"  # this module's engine: skrm1 in its own network namespace


def status_of(path: Path, document: int = 0) -> dict[str, Any]:
    docs = list(YAML(typ="safe").load_all(path.read_text()))
    return cast(dict[str, Any], docs[document].get("status") or {})


def engine_time(value: str) -> dt.datetime:
    """An engine timestamp (nanoseconds, ``Z``) as a datetime (microseconds)."""
    head, _, frac = value.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def run_swarmkeeper(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 90) -> tuple[int, str]:
    """``swarmkeeper ARGS`` as a process; (exit code, stdout and stderr together)."""
    proc = subprocess.run(
        [str(SWARMKEEPER), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def private_engine() -> Iterator[EngineNode]:
    """One engine of this module's own, not in swarm mode when it starts."""
    cluster = EngineCluster(1, prefix=PREFIX)
    problem = ""
    try:
        cluster.up()
    except EngineError as exc:
        problem = str(exc)
    if problem:
        with contextlib.suppress(EngineError):
            cluster.down()
        pytest.fail(f"the extra Docker engine did not start: {problem}", pytrace=False)
    try:
        yield cluster.nodes[0]
    finally:
        cluster.down()


@pytest.fixture
def quiet_engine(private_engine: EngineNode) -> EngineNode:
    """The private engine in swarm mode (made so here unless the --init-swarm test ran first)."""
    if private_engine.swarm_state() != "active":
        private_engine.api().init_swarm(advertise_addr=private_engine.address)
    return private_engine


def fresh_namespace() -> str:
    return f"t{os.urandom(4).hex()}"


# ---------------------------------------------------------------------------------------------
# placement
# ---------------------------------------------------------------------------------------------


def test_max_replicas_per_node_reaches_swarm_and_leaves_a_task_pending(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    """README, "Spec reference": "Every field, generated from the models: docs/spec-reference.md"
    (which lists ``spec.placement.maxReplicasPerNode``), and "How it works": status holds "the
    failing task's error". On this one-node swarm two replicas at most one per node leave one task
    pending, for swarm's own reason, and the status says so."""
    write_spec(
        specs_dir,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: capped, namespace: {namespace}}}
        spec:
          image: {local_image}
          command: [sleep, "1d"]
          replicas: 2
          stopGracePeriod: 1s
          placement: {{maxReplicasPerNode: 1}}
        """,
    )
    assert len(docker_api.nodes()) == 1, "this claim is checked on a one-node swarm"
    res = sk("apply", specs_dir)
    assert res.code == 0, res.output
    name = f"{namespace}_capped"
    assert docker_api.inspect_service(name)["Spec"]["TaskTemplate"]["Placement"]["MaxReplicas"] == 1

    def one_running_one_pending() -> bool:
        tasks = service_tasks(docker_api, name)
        states = sorted(t["Status"]["State"] for t in tasks)
        errors = [t["Status"].get("Err", "") for t in tasks if t["Status"]["State"] == "pending"]
        return states == ["pending", "running"] and errors == ["no suitable node (max replicas per node limit exceed)"]

    wait_for(one_running_one_pending, timeout=60, message="not one task running and one pending")
    time.sleep(1)  # and it stays that way: swarm does not place the second one anyway
    assert one_running_one_pending()

    res = sk("get", "services", "-n", namespace, "-o", "json")
    assert res.code == 0, res.output
    (status,) = [item["status"] for item in json.loads(res.stdout) if item["metadata"]["name"] == "capped"]
    assert status["ready"] == "1/2"
    assert "max replicas per node" in status["taskError"]["error"]


# ---------------------------------------------------------------------------------------------
# watch on an engine that is not in swarm mode
# ---------------------------------------------------------------------------------------------


def test_watch_names_docker_swarm_init_or_initialises_with_the_flag(
    private_engine: EngineNode, local_image: str, tmp_path: Path
) -> None:
    """README, "Watch mode": "On an engine that is not in swarm mode, `watch` says so and names the
    command to run (`docker swarm init`), or initialises a single-node swarm with `--init-swarm`."
    """
    if private_engine.swarm_state() == "active":  # a test before this one made it a swarm
        private_engine.api().leave_swarm(force=True)
    specs = tmp_path / "specs"
    spec = write_spec(
        specs,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: init}}
        spec:
          image: {local_image}
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """,
    )
    host = ("--host", private_engine.socket)

    code, output = run_swarmkeeper("watch", specs, *host, "--once")
    assert code != 0, output
    assert "not in swarm mode" in output and "`docker swarm init`" in output and "--init-swarm" in output, output
    assert "Traceback" not in output, output
    assert private_engine.swarm_state() == "inactive"  # nothing was done to the engine

    code, output = run_swarmkeeper("watch", specs, *host, "--once", "--init-swarm")
    assert code == 0, output
    assert "initialised a single-node swarm" in output, output
    api = private_engine.api()
    info = api.info()["Swarm"]
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"] and info["Nodes"] == 1
    # ...and the pass that followed applied the specs to the new swarm.
    assert api.inspect_service("init_web")["Spec"]["Labels"]["io.swarmkeeper.source"] == "default"
    assert status_of(spec)["swarmName"] == "init_web"


# ---------------------------------------------------------------------------------------------
# editor saves
# ---------------------------------------------------------------------------------------------


def file_passes(log: str) -> list[str]:
    """The passes in ``log`` that a spec file change started (``pass (engine,file) took 9 ms``)."""
    return re.findall(r"pass \(([a-z,]*\bfile\b[a-z,]*)\) took", log)


def test_editor_swap_files_are_ignored_and_atomic_saves_followed(
    quiet_engine: EngineNode, local_image: str, tmp_path: Path
) -> None:
    """README, "Watch mode": "file changes (watchfiles; editor swap/temp files ignored, atomic-rename
    saves handled)". On an engine whose only events are this test's, vim's side files cause no pass
    and no error; a save by rename is applied, and so is the next one."""
    ns = fresh_namespace()
    specs = tmp_path / "specs"
    path = write_spec(
        specs,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {ns}}}
        spec:
          image: {local_image}
          command: [sleep, "1d"]
          env: {{RELEASE: "1"}}
          stopGracePeriod: 1s
        """,
    )
    api = quiet_engine.api()
    name = f"{ns}_web"

    def release() -> str:
        env = api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or []
        return next((e.split("=", 1)[1] for e in env if e.startswith("RELEASE=")), "")

    def atomic_save(text: str) -> None:
        temp = specs / f".app.yaml.{os.urandom(3).hex()}"  # where editors write before the rename
        temp.write_text(text)
        os.replace(temp, path)

    try:
        with controller(specs, ns, "--host", quiet_engine.socket) as ctl:
            wait_for(lambda: status_of(path).get("ready") == "1/1", timeout=60, message="never 1/1")
            wait_until_idle(ctl)
            log_size = len(ctl.logs())

            # What vim does around a save: probe file 4913, swap file, backup file.
            (specs / "4913").write_text("")
            (specs / "4913").unlink()
            (specs / ".app.yaml.swp").write_bytes(b"b0VIM 9.0\x00\x00\x00garbage: [\x00")
            (specs / "app.yaml~").write_text("kind: SwarmService\nspec: {replicas: lots\n")
            (specs / ".app.yaml.swx").write_bytes(b"\x00\x01")
            time.sleep(2)
            # Passes still run meanwhile (the lease renewal is an engine event), but none for a file.
            since = ctl.logs()[log_size:]
            assert not file_passes(since) and "spec files changed" not in since, since
            assert "ERROR" not in since and "WARNING" not in since and "invalid spec" not in since, since
            assert ctl.metric("swarmkeeper_reconcile_errors_total") == 0
            assert not any(c["status"] == "False" for c in status_of(path)["conditions"] if c["type"] == "Ready")

            atomic_save(path.read_text().replace('RELEASE: "1"', 'RELEASE: "2"'))
            wait_for(lambda: release() == "2", timeout=10, interval=0.1, message="rename save not applied")
            # The file change itself started a pass (logged once that pass ends).
            wait_for(lambda: file_passes(ctl.logs()[log_size:]), timeout=10, message="no pass for the rename")
            wait_for(lambda: status_of(path).get("ready") == "1/1", timeout=30, message="status not written back")
            atomic_save(path.read_text().replace('RELEASE: "2"', 'RELEASE: "3"'))
            wait_for(lambda: release() == "3", timeout=10, interval=0.1, message="second rename save not applied")
            assert ctl.metric("swarmkeeper_reconcile_errors_total") == 0
    finally:
        cleanup_namespace(api, ns)


# ---------------------------------------------------------------------------------------------
# secret fingerprints
# ---------------------------------------------------------------------------------------------


def plain_digests(value: bytes) -> list[str]:
    """Every common unsalted digest of ``value``, in the encodings a label or status would use."""
    out = []
    for algorithm in ("md5", "sha1", "sha256", "sha512"):
        raw = hashlib.new(algorithm, value).digest()
        out += [
            raw.hex(),
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
        ]
    return out


def test_secret_fingerprints_are_salted_never_a_plain_digest(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    """README, "How it works": "Change detection stores a salted scrypt hash (a fresh random salt
    per version), never the value or a plain digest of it." Two secrets holding the same value get
    different fingerprints; no unsalted digest of the value is in the swarm, the status or any
    output; and the fingerprint still tells an unchanged value (no new version) from a changed one."""
    value = f"fingerprint-{os.urandom(8).hex()}"
    (specs_dir / "value.txt").write_text(value)
    spec = write_spec(
        specs_dir,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: one, namespace: {namespace}}}
        spec: {{file: value.txt}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: two, namespace: {namespace}}}
        spec: {{file: value.txt}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: holder, namespace: {namespace}}}
        spec:
          image: {local_image}
          command: [sleep, "1d"]
          stopGracePeriod: 1s
          secrets: [{{source: one}}, {{source: two}}]
        """,
    )
    outputs = []
    for args in (
        ("apply", specs_dir, "--source", namespace, "--wait", "--timeout", "60s", "-vv"),
        ("diff", specs_dir, "--source", namespace),
        ("get", "all", "-n", namespace, "-o", "yaml"),
        ("get", "secrets", "-n", namespace, "-o", "json"),
        ("get", "secrets", "-n", namespace, "-o", "wide"),
    ):
        res = sk(*args)
        assert res.code == 0, res.output
        outputs.append(res.output)
    code, output = run_swarmkeeper("watch", specs_dir, "--once", "--source", namespace, "-vv")
    assert code == 0, output
    outputs.append(output)
    assert status_of(spec, 2)["ready"] == "1/1"  # status was written inline

    secrets = {
        s["Spec"]["Name"]: s for s in docker_api.secrets(filters={"label": f"com.docker.stack.namespace={namespace}"})
    }
    assert set(secrets) == {f"{namespace}_one-v1", f"{namespace}_two-v1"}
    prints = [s["Spec"]["Labels"]["io.swarmkeeper.fingerprint"] for s in secrets.values()]
    assert all(p.startswith("scrypt$") for p in prints) and prints[0] != prints[1]

    swarm_side = json.dumps([*secrets.values(), *(docker_api.inspect_service(f"{namespace}_holder"),)])
    everything = "\n".join([swarm_side, spec.read_text(), *outputs])
    assert value not in everything
    found = [d for d in plain_digests(value.encode()) if d in everything]
    assert not found, "a plain digest of the secret value is stored or shown"

    # Unchanged value: no new version. Changed value: a new one, with a fresh salt.
    assert sk("apply", specs_dir, "--source", namespace).code == 0
    assert len(docker_api.secrets(filters={"name": f"{namespace}_one"})) == 1
    (specs_dir / "value.txt").write_text(value + "-2")
    assert sk("apply", specs_dir, "--source", namespace).code == 0
    names = sorted(s["Spec"]["Name"] for s in docker_api.secrets(filters={"name": f"{namespace}_one"}))
    assert names[-1] == f"{namespace}_one-v2", names


# ---------------------------------------------------------------------------------------------
# dependsOn and concurrent plan levels
# ---------------------------------------------------------------------------------------------


def test_depends_on_orders_creation_and_independent_steps_run_side_by_side(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    """README, "How it works": "applies an ordered plan: ... `dependsOn` respected; ... independent
    steps concurrently", and the minimal service's "dependsOn: [api]  # created/updated only once api
    is converged". Chains a ← b ← c and d ← e, with a slow to converge (its healthcheck passes after
    about 3 s): each dependent is created after what it names runs; d is not held back by a, and e,
    which shares b's level but comes after it in the file, is created while b still waits for a."""
    documents = []
    for name, after in (("a", None), ("b", "a"), ("c", "b"), ("d", None), ("e", "d")):
        spec: dict[str, Any] = {"image": local_image, "command": ["sleep", "1d"], "stopGracePeriod": "1s"}
        if after:
            spec["dependsOn"] = [after]
        if name == "a":
            spec["command"] = ["sh", "-c", "sleep 3 && touch /tmp/ready && exec sleep 1d"]
            spec["healthcheck"] = {"test": ["CMD", "test", "-e", "/tmp/ready"], "interval": "500ms", "retries": 30}
        metadata = {"name": name, "namespace": namespace}
        documents.append(
            {"apiVersion": "swarmkeeper.io/v1alpha1", "kind": "SwarmService", "metadata": metadata, "spec": spec}
        )
    (specs_dir / "app.yaml").write_text("---\n".join(json.dumps(d) + "\n" for d in documents))
    res = sk("apply", specs_dir, "--source", namespace, "--wait", "--timeout", "90s")
    assert res.code == 0, res.output

    created, running = {}, {}
    for name in "abcde":
        service = docker_api.inspect_service(f"{namespace}_{name}")
        created[name] = engine_time(service["CreatedAt"])
        (task,) = service_tasks(docker_api, f"{namespace}_{name}")
        assert task["Status"]["State"] == "running", (name, task["Status"])
        running[name] = engine_time(task["Status"]["Timestamp"])
    order = {name: (created[name].isoformat(), running[name].isoformat()) for name in "abcde"}
    for dependent, dependency in (("b", "a"), ("c", "b"), ("e", "d")):
        assert created[dependent] >= running[dependency], f"{dependent} created before {dependency} ran: {order}"
    assert running["a"] - created["a"] >= dt.timedelta(seconds=2.5), order  # a was slow to converge
    assert created["d"] < running["a"], f"d waited for a: {order}"
    assert created["e"] < running["a"] <= created["b"], f"e waited for b's dependency: {order}"


# ---------------------------------------------------------------------------------------------
# rolling update progress in status
# ---------------------------------------------------------------------------------------------


def test_status_update_shows_updating_then_completed(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    """README, "Five minutes", step 3: "`status.update` shows `updating`, then `completed`"; and
    "How it works": status holds "`update` (swarm's UpdateStatus)". A rolling update slowed down by
    a delay between tasks is followed in the spec file's status block as it goes."""
    path = write_spec(
        specs_dir,
        "web.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          image: {local_image}
          command: [sleep, "1d"]
          replicas: 2
          env: {{RELEASE: "1"}}
          stopGracePeriod: 1s
          updateConfig: {{parallelism: 1, delay: 1s, monitor: 500ms, order: start-first}}
        """,
    )
    with controller(specs_dir, namespace):
        wait_for(lambda: status_of(path).get("ready") == "2/2", timeout=60, message="never 2/2")
        assert "update" not in status_of(path)  # nothing was ever updated
        path.write_text(path.read_text().replace('RELEASE: "1"', 'RELEASE: "2"'))
        seen: list[str] = []

        def completed() -> bool:
            update = status_of(path).get("update") or {}
            state = update.get("state")
            if state and (not seen or seen[-1] != state):
                seen.append(state)
            return state == "completed"

        wait_for(completed, timeout=60, interval=0.05, message="update never completed")
        assert seen == ["updating", "completed"], seen
        update = status_of(path)["update"]
        assert update["startedAt"] and update["completedAt"] and update["completedAt"] > update["startedAt"]
        live = docker_api.inspect_service(f"{namespace}_web")["UpdateStatus"]
        assert live["State"] == "completed"
        wait_for(lambda: status_of(path).get("ready") == "2/2", timeout=30, message="not 2/2 after the update")


# ---------------------------------------------------------------------------------------------
# unmanaged fields
# ---------------------------------------------------------------------------------------------


def test_unmanaged_image_env_resources_and_placement_are_not_reverted(
    quiet_engine: EngineNode, local_image: str, tmp_path: Path
) -> None:
    """README, "Watch mode": "To hand a field to someone else ... annotate the object:
    `metadata.annotations: {swarmkeeper.io/unmanaged-fields: "replicas"}` (also `image`, `env`,
    `resources`, `placement`)." One `docker service update` changes all four and a managed field:
    only the managed one is put back, and the pass that puts it back keeps the other four."""
    ns = fresh_namespace()
    specs = tmp_path / "specs"
    write_spec(
        specs,
        "web.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata:
          name: web
          namespace: {ns}
          annotations: {{swarmkeeper.io/unmanaged-fields: "image, env, resources, placement"}}
        spec:
          image: {local_image}
          command: [sleep, "1d"]
          env: {{RELEASE: "1"}}
          resources: {{limits: {{memory: 128Mi}}}}
          containerLabels: {{tier: web}}
          stopGracePeriod: 1s
        """,
    )
    api = quiet_engine.api()
    name = f"{ns}_web"
    moved_image = f"local/busybox:{ns}"
    api.tag(local_image, "local/busybox", ns)

    def container_spec() -> dict[str, Any]:
        return cast(dict[str, Any], api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"])

    try:
        with controller(specs, ns, "--host", quiet_engine.socket, "--interval", "300ms") as ctl:
            wait_for(lambda: running_tasks(api, name) == 1, timeout=60, message="never running")
            wait_until_idle(ctl)
            update = subprocess.run(
                [
                    *("docker", "-H", quiet_engine.socket, "service", "update", "--detach", "--no-resolve-image"),
                    *("--image", moved_image, "--env-add", "HACK=1", "--limit-memory", "64M"),
                    *("--constraint-add", "node.role==manager", "--container-label-add", "tier=hacked", name),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert update.returncode == 0, update.stderr
            wait_for(
                lambda: (container_spec().get("Labels") or {}).get("tier") == "web",
                timeout=15,
                message="the managed field was not put back",
            )
            time.sleep(1.5)  # several more passes at a 300 ms interval
            spec = api.inspect_service(name)["Spec"]
            assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == moved_image
            assert sorted(spec["TaskTemplate"]["ContainerSpec"]["Env"]) == ["HACK=1", "RELEASE=1"]
            assert spec["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] == 64 * 1024 * 1024
            assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==manager"]
            assert spec["TaskTemplate"]["ContainerSpec"]["Labels"]["tier"] == "web"
            assert ctl.metric("swarmkeeper_drift_corrections_total") == 1
            (corrected,) = [line for line in ctl.logs().splitlines() if "drift corrected" in line]
            assert f"{name} was changed outside swarmkeeper (TaskTemplate.ContainerSpec.Labels.tier)" in corrected
    finally:
        cleanup_namespace(api, ns)
        with contextlib.suppress(docker.errors.APIError):
            api.remove_image(moved_image)


def running_tasks(api: docker.APIClient, service: str) -> int:
    tasks = service_tasks(api, service)
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


# ---------------------------------------------------------------------------------------------
# Git over https
# ---------------------------------------------------------------------------------------------


def make_ca(folder: Path, name: str) -> tuple[Path, Any, Any]:
    """A self-signed test CA: (its certificate file, certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def make_server_cert(folder: Path, ca_cert: Any, ca_key: Any) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by the CA: (certificate file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "git.test")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextlib.contextmanager
def tls_in_front_of(backend_port: int, cert: Path, key: Path) -> Iterator[int]:
    """A TLS server on loopback passing each connection's bytes on to a plain one; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = cast(int, listener.getsockname()[1])

    def relay(raw: socket.socket) -> None:
        try:
            client = context.wrap_socket(raw, server_side=True)  # a client refusing our certificate ends here
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with client, socket.create_connection(("127.0.0.1", backend_port)) as backend:

            def answers() -> None:  # the backend answers one request per connection, then closes
                with contextlib.suppress(OSError):
                    while data := backend.recv(65536):
                        client.sendall(data)
                with contextlib.suppress(OSError):
                    client.close()

            thread = threading.Thread(target=answers, daemon=True)
            thread.start()
            with contextlib.suppress(OSError, ValueError):
                while data := client.recv(65536):
                    backend.sendall(data)
            thread.join(60)

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:  # the listener was closed
                return
            threading.Thread(target=relay, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield port
    finally:
        listener.close()


def test_sync_over_https_with_a_private_ca_and_a_token(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    """README, "Git mode": `sync` follows a repository at "`https://` (token from `--token-file` /
    `--token-env`)". Served over TLS by a certificate of a private CA, trusted the way OpenSSL
    clients are told (``SSL_CERT_FILE``), the commit is applied; a client trusting another CA
    refuses the server, says why, and changes nothing; the token is shown nowhere."""
    from git_helpers import GitRepo, smart_http

    certs = tmp_path / "certs"
    certs.mkdir()
    ca_file, ca_cert, ca_key = make_ca(certs, "test-ca")
    other_ca, _, _ = make_ca(certs, "other-ca")
    cert, key = make_server_cert(certs, ca_cert, ca_key)
    token = f"tok-{os.urandom(8).hex()}"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")

    repo = GitRepo(tmp_path / "repos" / "specs")
    repo.write(
        "specs/web.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          image: {local_image}
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """,
    )
    sha = repo.commit("first")
    with smart_http(repo.root, token=token) as base, tls_in_front_of(int(base.rsplit(":", 1)[1]), cert, key) as port:
        url = f"https://127.0.0.1:{port}/origin.git"
        args = ["sync", "--once", "--repo", url, "--path", "specs", "--name", f"{namespace}-git"]
        args += ["--token-file", str(token_file), "--cache-dir", str(tmp_path / "cache")]

        code, output = run_swarmkeeper(*args, env={"SSL_CERT_FILE": str(other_ca)})
        assert code != 0, output
        assert f"cannot fetch {url}" in output and "certificate verify failed" in output, output
        assert "Traceback" not in output and token not in output, output
        assert not docker_api.services(filters={"name": f"{namespace}_web"})

        code, output = run_swarmkeeper(*args, env={"SSL_CERT_FILE": str(ca_file)})
        assert code == 0, output
        assert token not in output
        labels = docker_api.inspect_service(f"{namespace}_web")["Spec"]["Labels"]
        assert labels["io.swarmkeeper.revision"] == sha


# ---------------------------------------------------------------------------------------------
# Kubernetes: a SwarmConfig backed by a ConfigMap
# ---------------------------------------------------------------------------------------------


def test_configmap_backed_swarm_config_reaches_the_swarm_and_the_service(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    """README, "Kubernetes operator": "Values come from `spec.secretRef: {name, key}` — a Secret
    (SwarmSecret) or ConfigMap (SwarmConfig) in the same namespace. Changing it rotates the swarm
    secret (a new version, services moved to it)". The ConfigMap's value becomes the swarm config's
    data and the file the task reads; changing the ConfigMap makes version 2 and moves the service."""
    ns = kube_namespace
    first, second = "listen = 8080\nmode = blue\n", "listen = 8080\nmode = green\n"

    def configmap(text: str) -> str:
        return json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-settings"}, "data": {"app.conf": text}}
        )

    kube.apply(configmap(first), ns)
    kube.apply(
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmConfig
        metadata: {{name: settings}}
        spec:
          secretRef: {{name: app-settings, key: app.conf}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app}}
        spec:
          image: {local_image}
          command: [sleep, "1d"]
          stopGracePeriod: 1s
          updateConfig: {{monitor: 500ms}}
          configs: [{{source: settings, target: /etc/app/app.conf}}]
        """,
        ns,
    )
    service = f"{ns}_app"

    def config_in_task() -> str | None:
        try:
            return exec_in_service(docker_api, service, ["cat", "/etc/app/app.conf"]) + "\n"
        except (AssertionError, docker.errors.APIError):
            return None  # no task running yet, or one being replaced

    def swarm_config(version: int) -> str | None:
        found = docker_api.configs(filters={"name": f"{ns}_settings-v{version}"})
        return base64.b64decode(found[0]["Spec"]["Data"]).decode() if found else None

    def referenced() -> list[str]:
        spec = docker_api.inspect_service(service)["Spec"]["TaskTemplate"]["ContainerSpec"]
        return [c["ConfigName"] for c in spec.get("Configs") or []]

    with operator(kube, ns, tmp_path / "operator.log"):
        wait_for(lambda: config_in_task() == first, timeout=90, message="the task never read the ConfigMap's value")
        assert swarm_config(1) == first
        assert referenced() == [f"{ns}_settings-v1"]
        labels = docker_api.configs(filters={"name": f"{ns}_settings-v1"})[0]["Spec"]["Labels"]
        assert labels["io.swarmkeeper.source"] == f"k8s.{ns}"

        kube.apply(configmap(second), ns)
        wait_for(lambda: referenced() == [f"{ns}_settings-v2"], timeout=60, message="service not moved to v2")
        assert swarm_config(2) == second
        wait_for(lambda: config_in_task() == second, timeout=60, message="the task never read the new value")
        wait_for(
            lambda: (kube.get("scfg/settings", ns).get("status") or {}).get("currentVersion") == 2,
            timeout=60,
            message="status never showed version 2",
        )
