"""Migrating in, against the real engine: a compose file imported and applied makes the services
``docker stack deploy`` makes; what runs exports to specs whose apply changes nothing; a running
stack is adopted in place, without a task restarting."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import docker

from cli_helpers import sk
from helpers import DOCKER_CLI, cleanup_namespace, exec_in_service, running_count, stack_deploy, wait_for
from swarmkeeper.engine.reconcile import Options, reconcile
from swarmkeeper.loading import load_paths
from swarmkeeper.swarm.connect import connect
from swarmkeeper.swarm.normalize import normalize_network, normalize_service

DATA = Path(__file__).parent / "data" / "compose"
STACK_LABEL = "com.docker.stack.namespace"
VALUES = ("web.env", "api-token.txt", "web.conf")


# -- helpers ---------------------------------------------------------------------------------------


def stack_layout(tmp: Path) -> tuple[Path, Path]:
    """``tmp/stack/compose.yaml`` (tests/data/compose/stack.yaml) and ``tmp/specs/`` with its values."""
    stack, specs = tmp / "stack", tmp / "specs"
    stack.mkdir(parents=True)
    specs.mkdir(parents=True)
    shutil.copy(DATA / "stack.yaml", stack / "compose.yaml")
    for value in VALUES:
        shutil.copy(DATA / value, specs / value)
    return stack / "compose.yaml", specs


def comparable(value: Any, namespace: str) -> Any:
    """Swarm names of one namespace made comparable with another's: ``ns_x`` and ``ns_x-v2`` → ``NS_x``."""
    text = json.dumps(value, sort_keys=True)
    text = re.sub(rf"\b{namespace}_([a-z0-9-]+?)(-v\d+)?\"", r'NS_\1"', text)
    return json.loads(text.replace(f'"{namespace}"', '"NS"'))


def without_ownership(labels: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (labels or {}).items() if not k.startswith("io.swarmkeeper.")}


def services_of(api: docker.APIClient, namespace: str) -> dict[str, Any]:
    """Short name → normalized ServiceSpec, minus swarmkeeper's ownership labels."""
    names = {n["Id"]: n["Name"] for n in api.networks()}
    out = {}
    for svc in api.services(filters={"label": f"{STACK_LABEL}={namespace}"}):
        spec = normalize_service(svc["Spec"], names)
        spec["Labels"] = without_ownership(spec.get("Labels"))
        out[svc["Spec"]["Name"].removeprefix(namespace + "_")] = comparable(spec, namespace)
    return out


def networks_of(api: docker.APIClient, namespace: str) -> dict[str, Any]:
    out = {}
    for net in api.networks(filters={"label": f"{STACK_LABEL}={namespace}"}):
        shape = normalize_network(net)
        shape["Labels"] = without_ownership(shape.get("Labels"))
        out[net["Name"].removeprefix(namespace + "_")] = comparable(shape, namespace)
    return out


def snapshot(api: docker.APIClient, namespace: str) -> tuple[set[str], set[str]]:
    """Every task (whatever its state) and every container of the namespace's services."""
    tasks: set[str] = set()
    for svc in api.services(filters={"label": f"{STACK_LABEL}={namespace}"}):
        tasks |= {t["ID"] for t in api.tasks(filters={"service": svc["ID"]})}
    containers = {c["Id"] for c in api.containers(all=True, filters={"label": f"{STACK_LABEL}={namespace}"})}
    return tasks, containers


def wait_running(api: docker.APIClient, namespace: str, expected: dict[str, int]) -> None:
    for name, count in expected.items():
        wait_for(
            lambda n=f"{namespace}_{name}", c=count: running_count(api, n) == c,  # type: ignore[misc]
            timeout=120,
            message=f"{namespace}_{name} running {count}",
        )


def assert_no_op(specs: Path, source: str) -> None:
    """Another pass over the specs plans nothing and makes no mutating call."""
    result = load_paths([specs])
    assert result.ok, [str(e) for e in result.errors]
    with connect() as client:
        client.calls.clear()
        outcome = reconcile(client, result.manifests, Options(source=source))
        assert outcome.plan.empty, [s.describe() for s in outcome.plan.steps]
        assert not outcome.plan.errors, outcome.plan.errors
        assert client.mutating_calls() == 0, client.calls


def remove_volumes(api: docker.APIClient, namespace: str) -> None:
    """Named volumes outlive the services that made them; the namespace fixture leaves them."""
    cleanup_namespace(api, namespace)
    for vol in api.volumes(filters={"label": f"{STACK_LABEL}={namespace}"}).get("Volumes") or []:
        api.remove_volume(vol["Name"], force=True)


EXPECTED = {"web": 2, "worker": 1}


# -- import ----------------------------------------------------------------------------------------


def test_import_and_apply_make_what_docker_stack_deploy_makes(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    compose, specs = stack_layout(tmp_path)
    docker_ns, our_ns = f"{namespace}d", namespace
    try:
        stack_deploy(compose, docker_ns)
        res = sk("import", "compose", compose, "-n", our_ns, "-o", specs)
        assert res.code == 0, res.output
        assert "token-CANARY" not in res.output + "".join(p.read_text() for p in specs.glob("*.yaml"))
        res = sk("apply", specs, "--source", our_ns, "--wait", "--timeout", "120s")
        assert res.code == 0, res.output

        theirs, ours = services_of(docker_api, docker_ns), services_of(docker_api, our_ns)
        assert sorted(ours) == sorted(theirs) == ["edge", "web", "worker"]
        for name in theirs:
            assert ours[name] == theirs[name], name
        # Networks too: the default network docker stack deploy makes is there, named alike.
        assert networks_of(docker_api, our_ns) == networks_of(docker_api, docker_ns)
        # Intended difference: swarmkeeper versions secrets and configs (ns_api-token-v1, not ns_api-token).
        live = docker_api.inspect_service(f"{our_ns}_web")["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert live["Secrets"][0]["SecretName"] == f"{our_ns}_api-token-v1"
        # The imported stack runs the same way.
        wait_running(docker_api, our_ns, EXPECTED)
        assert "FROM_FILE=yes" in exec_in_service(docker_api, f"{our_ns}_web", ["env"])

        # Export what swarmkeeper made, supply the secret's value: applying it is a no-op.
        exported = tmp_path / "exported"
        res = sk("export", "-n", our_ns, "-o", exported)
        assert res.code == 0, res.output
        assert "token-CANARY" not in res.output + "".join(p.read_text() for p in exported.glob("*.yaml"))
        shutil.copy(DATA / "api-token.txt", exported / "api-token.txt")
        assert_no_op(exported, our_ns)
    finally:
        remove_volumes(docker_api, docker_ns)
        remove_volumes(docker_api, our_ns)


# -- adoption --------------------------------------------------------------------------------------


def test_adopting_a_running_stack_restarts_no_task(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    compose, specs = stack_layout(tmp_path)
    try:
        stack_deploy(compose, namespace)
        wait_running(docker_api, namespace, EXPECTED)
        assert sk("import", "compose", compose, "-n", namespace, "-o", specs).code == 0

        # Without --adopt the stack's objects are foreign: refused, and nothing changes.
        refused = sk("diff", specs, "--source", namespace)
        assert refused.code == 1 and "not managed by swarmkeeper" in refused.stdout
        # --adopt shows what taking over changes: labels only.
        plan = sk("diff", specs, "--source", namespace, "--adopt")
        assert plan.code == 1, plan.output
        for name in ("web", "worker", "edge"):
            assert f"SwarmService/{namespace}/{name}  ({namespace}_{name}; adopt)" in plan.stdout
        assert "adopt + update" not in plan.stdout
        assert "no task restarts" in plan.stdout
        assert "+ Labels.io.swarmkeeper.managed-by: 'swarmkeeper'" in plan.stdout

        before = snapshot(docker_api, namespace)
        res = sk("apply", specs, "--source", namespace, "--adopt")
        assert res.code == 0, res.output
        assert "adopt + update" not in res.output
        time.sleep(3)  # a restart would show as new tasks within a second or two
        assert snapshot(docker_api, namespace) == before
        wait_running(docker_api, namespace, EXPECTED)

        # Now swarmkeeper's: the next pass changes nothing, and `get` lists every adopted object.
        assert_no_op(specs, namespace)
        got = sk("get", "-n", namespace, "-o", "json")
        assert got.code == 0, got.output
        listed = {(o["kind"], o["metadata"]["name"]) for o in json.loads(got.stdout)}
        assert listed == {
            ("SwarmService", "web"),
            ("SwarmService", "worker"),
            ("SwarmService", "edge"),
            ("SwarmNetwork", "back"),
            ("SwarmNetwork", "front"),
            ("SwarmNetwork", "default"),
            ("SwarmSecret", "api-token"),
            ("SwarmConfig", "web-conf"),
        }
        # The secret was taken over as version 0 (swarm confirmed the value), not replaced.
        secret = docker_api.inspect_secret(f"{namespace}_api-token")
        assert secret["Spec"]["Labels"]["io.swarmkeeper.version"] == "0"
        assert "io.swarmkeeper.fingerprint" in secret["Spec"]["Labels"]
    finally:
        remove_volumes(docker_api, namespace)


def test_export_of_a_running_stack_adopts_it_in_place(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    compose, _ = stack_layout(tmp_path)
    try:
        stack_deploy(compose, namespace)
        wait_running(docker_api, namespace, EXPECTED)
        exported = tmp_path / "exported"
        res = sk("export", "-n", namespace, "-o", exported)
        assert res.code == 0, res.output
        assert "apply with --adopt" in (exported / "service-web.yaml").read_text()
        # Swarm gives no secret back: the spec names a file the user fills.
        assert "file: api-token.txt" in (exported / "secret-api-token.yaml").read_text()
        shutil.copy(DATA / "api-token.txt", exported / "api-token.txt")

        before = snapshot(docker_api, namespace)
        res = sk("apply", exported, "--source", namespace, "--adopt")
        assert res.code == 0, res.output
        assert "adopt + update" not in res.output and "; adopt)" in res.output
        time.sleep(3)
        assert snapshot(docker_api, namespace) == before
        assert_no_op(exported, namespace)
    finally:
        remove_volumes(docker_api, namespace)


SMALL = """\
version: "3.8"
services:
  app:
    image: local/busybox:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    secrets: [token]
secrets:
  token:
    file: ../specs/token.txt
"""


def test_adopting_a_secret_with_another_value_rolls_to_a_new_version(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "specs").mkdir()
    compose = tmp_path / "stack" / "compose.yaml"
    compose.write_text(SMALL)
    (tmp_path / "specs" / "token.txt").write_text("old-CANARY")
    stack_deploy(compose, namespace)
    wait_running(docker_api, namespace, {"app": 1})
    assert sk("import", "compose", compose, "-n", namespace, "-o", tmp_path / "specs").code == 0
    (tmp_path / "specs" / "token.txt").write_text("new-CANARY")
    before, _ = snapshot(docker_api, namespace)

    res = sk("apply", tmp_path / "specs", "--source", namespace, "--adopt", "--wait", "--timeout", "90s")
    assert res.code == 0, res.output
    assert "holds a different value than the spec" in res.stderr
    assert "adopt + update" in res.stdout  # the service moves to the new version: its task restarts
    assert "CANARY" not in res.output
    secrets = {s["Spec"]["Name"]: s["Spec"]["Labels"] for s in docker_api.secrets(filters={"name": namespace})}
    assert secrets[f"{namespace}_token"]["io.swarmkeeper.version"] == "0"
    assert "io.swarmkeeper.fingerprint" not in secrets[f"{namespace}_token"]
    assert secrets[f"{namespace}_token-v1"]["io.swarmkeeper.version"] == "1"
    wait_for(
        lambda: exec_in_service(docker_api, f"{namespace}_app", ["cat", "/run/secrets/token"]) == "new-CANARY",
        timeout=90,
        message="the task runs with the new value",
    )
    assert snapshot(docker_api, namespace)[0] - before
    assert_no_op(tmp_path / "specs", namespace)


def test_adoption_refuses_what_swarm_cannot_change_in_place(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    compose, specs = stack_layout(tmp_path)
    try:
        stack_deploy(compose, namespace)
        assert sk("import", "compose", compose, "-n", namespace, "-o", specs).code == 0
        # The spec wants the network encrypted; the stack's network is in use and cannot change.
        net = specs / "network-back.yaml"
        net.write_text(net.read_text().replace("attachable: true", "attachable: true\n  encrypted: true"))
        res = sk("diff", specs, "--source", namespace, "--adopt")
        assert res.code == 1
        assert f"network '{namespace}_back' was made outside swarmkeeper and differs" in res.stdout
        assert f"SwarmService/{namespace}/web: not applied" in res.stdout
        assert f"SwarmService/{namespace}/edge  ({namespace}_edge; adopt)" in res.stdout
    finally:
        remove_volumes(docker_api, namespace)


def test_docker_cli_is_the_one_the_tests_expect() -> None:
    # The round trip compares with what this client's `docker stack deploy` makes.
    assert os.access(DOCKER_CLI, os.X_OK), f"{DOCKER_CLI} is missing"
    version = subprocess.run([DOCKER_CLI, "--version"], capture_output=True, text=True, check=True).stdout
    assert "20.10" in version, version
