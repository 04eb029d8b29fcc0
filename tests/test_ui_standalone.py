"""``swarmkeeper ui``: the dashboard alone, read-only, against the real engine; the Git door's
revisions on the dashboard of ``sync --ui-addr``; every namespace on the operator's.

Without a path it shows what runs in the swarm from every source and what no source manages; with
a specs folder, the plan of those specs, never applied; it writes nothing, not even status.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import requests

from cli_helpers import sk, write_spec
from controller_helpers import SWARMKEEPER, free_port
from git_helpers import GitRepo, sync_process
from helpers import cleanup_namespace, running_count, wait_for
from kube_fixtures import Kube, operator, release_custom_resources
from swarmkeeper.api import Key
from swarmkeeper.api.cluster import NodeStatus, SwarmClusterStatus
from swarmkeeper.controller.ui.state import cluster_nodes
from test_git_sync import service_spec, sync_args

SPEC = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: web, namespace: {ns}}}
spec:
  image: {image}
  command: ["sleep", "3600"]
  replicas: {replicas}
  stopGracePeriod: 1s
"""


@contextmanager
def ui_process(tmp_path: Path, *args: str | Path) -> Iterator[str]:
    """``swarmkeeper ui ARGS`` on a free loopback port; its URL. Stopped (SIGTERM) after: exit 0."""
    port = free_port()
    log = tmp_path / f"ui-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SWARMKEEPER), "ui", *map(str, args), "--ui-addr", f"127.0.0.1:{port}", "-vv"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url) or proc.poll() is not None, timeout=60, message="ui never answered")
        assert proc.poll() is None, log.read_text()
        yield url
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def _answers(url: str) -> bool:
    try:
        return int(requests.get(f"{url}/api/state", timeout=2).json()["version"]) > 0
    except (requests.RequestException, ValueError):
        return False


def state(url: str) -> dict[str, Any]:
    data: dict[str, Any] = requests.get(f"{url}/api/state", timeout=5).json()
    return data


def find(data: dict[str, Any], namespace: str, name: str) -> dict[str, Any] | None:
    return next((o for o in data["objects"] if o["namespace"] == namespace and o["name"] == name), None)


def test_without_specs_it_shows_every_source_and_what_none_manages(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path, tmp_path: Path
) -> None:
    write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=2))
    assert sk("apply", specs_dir, "--source", f"{namespace}-team", "--wait", "--timeout", "90s").code == 0
    foreign = docker_api.create_service(
        docker.types.TaskTemplate(docker.types.ContainerSpec(local_image, ["sleep", "3600"])),
        name=f"{namespace}_by-hand",
        labels={"com.docker.stack.namespace": namespace},
    )
    try:
        with ui_process(tmp_path) as url:
            web = wait_for(lambda: find(state(url), namespace, "web"), timeout=30, message="web not shown")
            assert web["source"] == f"{namespace}-team" and not web["in_specs"]
            assert web["ready"] == "2/2" and len([t for t in web["tasks"] if t["state"] == "running"]) == 2
            data = state(url)
            assert data["read_only"] and data["plan"] == []
            assert {"type": "service", "name": f"{namespace}_by-hand", "cluster": None} in data["unmanaged"]
            # Read-only: scaled down behind its back, the service is shown at 1/2 and left there.
            spec = docker_api.inspect_service(f"{namespace}_web")
            docker_api.update_service(
                spec["ID"],
                spec["Version"]["Index"],
                task_template=spec["Spec"]["TaskTemplate"],
                name=spec["Spec"]["Name"],
                labels=spec["Spec"]["Labels"],
                mode=docker.types.ServiceMode("replicated", replicas=1),
            )
            wait_for(
                lambda: (find(state(url), namespace, "web") or {}).get("ready") == "1/1",
                timeout=30,
                message="the scale-down was not shown",
            )
            time.sleep(3)
            assert running_count(docker_api, f"{namespace}_web") == 1
            assert docker_api.inspect_service(f"{namespace}_web")["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
    finally:
        docker_api.remove_service(foreign["ID"])


def test_with_specs_it_shows_their_plan_and_applies_nothing(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path, tmp_path: Path
) -> None:
    path = write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=1))
    assert sk("apply", specs_dir, "--wait", "--timeout", "90s").code == 0
    write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=3))
    before = path.read_bytes()
    with ui_process(tmp_path, specs_dir) as url:
        plan = wait_for(lambda: state(url)["plan"], timeout=30, message="no plan shown")
        (step,) = [s for s in plan if s["namespace"] == namespace]
        assert step["action"] == "update" and step["name"] == "web" and step["reason"] == "changed"
        assert any("Replicas" in f for f in step["fields"]), step
        web = find(state(url), namespace, "web")
        assert web is not None and web["in_specs"] and web["file"] == f"{path}:1" and web["ready"] == "1/1"
        time.sleep(2)
    assert docker_api.inspect_service(f"{namespace}_web")["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
    assert path.read_bytes() == before  # no status written either


def test_sync_dashboard_shows_the_revisions_of_the_git_door(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/web.yaml", service_spec(namespace))
    first = repo.commit("web: one replica")
    port = free_port()
    args = sync_args(repo.origin, namespace, tmp_path, "--interval", "1s", "--ui-addr", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    with sync_process(*args, log=tmp_path / "sync.log"):
        origin = wait_for(
            lambda: (o := state(url)["origin"]) and o.get("applied") == first and o, timeout=60, message="not applied"
        )
        assert origin["kind"] == "git" and origin["tracked"] == first and origin["attempted"] == first
        assert origin["path"] == "specs"
        repo.write("specs/web.yaml", service_spec(namespace, replicas="lots"))
        bad = repo.commit("web: a typo")
        data = wait_for(
            lambda: (d := state(url))["origin"]["attempted"] == bad and d, timeout=60, message="bad commit not seen"
        )
        assert data["origin"]["applied"] == first
        assert any("specs/web.yaml" in e and "replicas" in e for e in data["spec_errors"]), data["spec_errors"]


def test_operator_dashboard_shows_every_namespace_it_serves(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    first, second = kube_namespace, f"{kube_namespace}-b"
    kube.kubectl("create", "namespace", second)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        for ns in (first, second):
            kube.apply(SPEC.format(ns=ns, image=local_image, replicas=1))
        with operator(kube, first, tmp_path / "operator.log", "-n", second, "--ui-addr", f"127.0.0.1:{port}"):

            def both() -> list[dict[str, Any]] | None:
                data = state(url)
                shown = [o for o in (find(data, ns, "web") for ns in (first, second)) if o and o["ready"] == "1/1"]
                return shown if len(shown) == 2 else None

            shown = wait_for(both, timeout=90, message="not both at 1/1")
            assert all(o["in_specs"] for o in shown)
            scopes = {p["scope"] for p in state(url)["passes"]}
            assert {first, second} <= scopes, scopes
    finally:
        release_custom_resources(kube, second)
        kube.kubectl("delete", "namespace", second, "--wait=false", check=False)
        cleanup_namespace(docker_api, second)


def test_cluster_nodes_come_from_each_swarm_cluster_status() -> None:
    """Nodes of engines reached over TLS or ssh are on the page as their SwarmCluster's status has them."""
    status = SwarmClusterStatus(
        leader="m1",
        nodes=[
            NodeStatus(name="m1", hostname="m1", role="manager", state="ready", leader=True, reachability="reachable"),
            NodeStatus(name="w1", state="unreachable", message="tls: bad certificate"),
        ],
        unknown_nodes=[NodeStatus(name="stray", role="worker", state="ready")],
    )
    (cluster,) = cluster_nodes({Key("SwarmCluster", None, "prod"): status, Key("SwarmService", "ns", "web"): status})
    assert cluster["name"] == "prod" and cluster["leader"] == "m1"
    by_name = {n["name"]: n for n in cluster["nodes"]}
    assert by_name["m1"]["leader"] and by_name["m1"]["reachability"] == "reachable"
    assert by_name["w1"]["state"] == "unreachable" and by_name["w1"]["message"] == "tls: bad certificate"
    assert by_name["stray"]["unknown"] and not by_name["m1"]["unknown"]


def test_a_suspended_sync_shows_the_plan_of_the_pending_revision(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/web.yaml", service_spec(namespace, replicas=2))
    pending = repo.commit("web: two replicas")
    port = free_port()
    args = sync_args(
        repo.origin, namespace, tmp_path, "--interval", "1s", "--suspend", "--ui-addr", f"127.0.0.1:{port}"
    )
    url = f"http://127.0.0.1:{port}"
    with sync_process(*args, log=tmp_path / "sync.log", wait_ready=False):

        def planned() -> dict[str, Any] | None:
            data = state(url) if _answers(url) else None
            return data if data and data["plan"] else None

        data = wait_for(planned, timeout=60, message="no plan shown")
        assert data["read_only"] and data["origin"]["suspended"] and data["origin"]["attempted"] == pending
        (step,) = [s for s in data["plan"] if s["namespace"] == namespace]
        assert step["action"] == "create" and step["name"] == "web" and step["reason"] == "missing"
        time.sleep(2)
        assert not docker_api.services(filters={"name": f"{namespace}_web"})  # suspended: nothing applied
