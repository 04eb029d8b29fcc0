"""``swarmkeeper watch`` against the real engine: files drive the swarm, the swarm's state lands
back in the files, drift is put back, and nothing churns while nothing changes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import docker
from ruamel.yaml import YAML

from cli_helpers import sk, write_spec
from controller_helpers import controller, wait_until_idle
from helpers import wait_for

SPEC = """\
# The web tier. Comments, quoting and order must survive status write-back.
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata:
  name: web   # trailing comment
  namespace: {ns}

spec:
  image: '{image}'
  command: ["sleep", "3600"]
  replicas: {replicas}
  env: {{RELEASE: "1"}}
  stopGracePeriod: 1s
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmNetwork
metadata: {{name: spare, namespace: {ns}}}
"""


def status_of(path: Path, document: int = 0) -> dict[str, Any]:
    docs = list(YAML(typ="safe").load_all(path.read_text()))
    return cast(dict[str, Any], docs[document].get("status") or {})


def outside_status(text: str) -> str:
    """The text with every top-level status: block cut out."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("status:"):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or line.strip() == ""):
            if line.strip() == "" and not line.startswith(" "):
                skipping = False
                out.append(line)
            continue
        skipping = False
        out.append(line)
    return "".join(out)


def test_save_changes_swarm_and_status_comes_back(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    path = write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=2))
    original = path.read_text()
    with controller(specs_dir, namespace) as ctl:
        wait_for(lambda: status_of(path).get("ready") == "2/2", timeout=60, message="status never reached 2/2")
        # everything outside status: is byte for byte what the user wrote
        assert outside_status(path.read_text()) == outside_status(original)
        assert path.read_text().startswith(original.split("---")[0].rstrip("\n"))

        text = path.read_text().replace("replicas: 2", "replicas: 3")
        path.write_text(text)
        name = f"{namespace}_web"
        wait_for(
            lambda: docker_api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"] == 3,
            timeout=10,
            interval=0.05,
            message="the save did not reach the swarm",
        )
        wait_for(lambda: status_of(path).get("ready") == "3/3", timeout=60, message="status did not follow")
        net_status = status_of(path, 1)
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in net_status["conditions"])
        assert ctl.metric("swarmkeeper_reconcile_total") > 0


def test_task_death_shows_in_the_file_within_a_second(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    path = write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=3))
    with controller(specs_dir, namespace):
        wait_for(lambda: status_of(path).get("ready") == "3/3", timeout=60, message="never 3/3")
        victim = docker_api.containers(filters={"label": f"com.docker.swarm.service.name={namespace}_web"})[0]
        killed = time.monotonic()
        docker_api.kill(victim["Id"])
        wait_for(lambda: status_of(path).get("ready") == "2/3", timeout=5, interval=0.02, message="2/3 never shown")
        assert time.monotonic() - killed <= 1.0
        wait_for(lambda: status_of(path).get("ready") == "3/3", timeout=60, message="never back to 3/3")


def test_idle_controller_writes_nothing_and_mutates_nothing(local_image: str, namespace: str, specs_dir: Path) -> None:
    path = write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=1))
    with controller(specs_dir, namespace, "--interval", "200ms") as ctl:
        wait_for(lambda: status_of(path).get("ready") == "1/1", timeout=60, message="never 1/1")
        wait_until_idle(ctl)
        mtime = path.stat().st_mtime_ns
        passes = ctl.metric("swarmkeeper_reconcile_total")
        posts = ctl.metric("swarmkeeper_engine_requests_total", method="POST")
        time.sleep(3)
        assert ctl.metric("swarmkeeper_reconcile_total") - passes >= 5  # it kept passing...
        assert ctl.metric("swarmkeeper_engine_requests_total", method="POST") == posts  # ...changing nothing
        assert path.stat().st_mtime_ns == mtime  # ...and writing nothing


def test_drift_is_put_back_and_reported(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    path = write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=2))
    name = f"{namespace}_web"
    docker_cli = ["docker"]
    with controller(specs_dir, namespace, "--interval", "1s") as ctl:
        wait_for(lambda: status_of(path).get("ready") == "2/2", timeout=60, message="never 2/2")
        subprocess.run(
            [*docker_cli, "service", "update", "--detach", "--env-add", "HACK=1", name], check=True, capture_output=True
        )
        wait_for(
            lambda: (
                not any(
                    "HACK=1" in e
                    for e in docker_api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
                )
            ),
            timeout=15,
            message="env drift not put back",
        )
        subprocess.run([*docker_cli, "service", "scale", "--detach", f"{name}=5"], check=True, capture_output=True)
        wait_for(
            lambda: docker_api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"] == 2,
            timeout=15,
            message="scale drift not put back",
        )
        docker_api.remove_network(f"{namespace}_spare")
        wait_for(
            lambda: bool(docker_api.networks(names=[f"{namespace}_spare"])),
            timeout=15,
            message="removed network not recreated",
        )
        wait_for(
            lambda: any(c.get("reason") == "DriftCorrected" for c in status_of(path).get("conditions", [])),
            timeout=10,
            message="no DriftCorrected condition in the file",
        )
        assert ctl.metric("swarmkeeper_drift_corrections_total") >= 2
        assert "drift corrected" in ctl.logs()


def test_unmanaged_field_is_not_reverted(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    text = SPEC.format(ns=namespace, image=local_image, replicas=1).replace(
        "  name: web   # trailing comment",
        "  name: web   # trailing comment\n  annotations:\n    swarmkeeper.io/unmanaged-fields: replicas",
    )
    path = write_spec(specs_dir, "web.yaml", text)
    name = f"{namespace}_web"
    with controller(specs_dir, namespace, "--interval", "300ms") as ctl:
        wait_for(lambda: status_of(path).get("ready") == "1/1", timeout=60, message="never 1/1")
        subprocess.run(["docker", "service", "scale", "--detach", f"{name}=2"], check=True, capture_output=True)
        wait_for(lambda: status_of(path).get("ready") == "2/2", timeout=30, message="autoscaled count not shown")
        time.sleep(1.5)
        assert docker_api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
        assert ctl.metric("swarmkeeper_drift_corrections_total") == 0


def test_invalid_edit_keeps_last_good_state(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    path = write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=2))
    name = f"{namespace}_web"
    with controller(specs_dir, namespace) as ctl:
        wait_for(lambda: status_of(path).get("ready") == "2/2", timeout=60, message="never 2/2")
        version = docker_api.inspect_service(name)["Version"]["Index"]
        path.write_text(path.read_text().replace("replicas: 2", "replicas: lots"))

        def invalid_reported() -> bool:
            ready: dict[str, Any] = next((c for c in status_of(path).get("conditions", []) if c["type"] == "Ready"), {})
            return ready.get("reason") == "InvalidSpec" and "web.yaml:" in ready.get("message", "")

        wait_for(invalid_reported, timeout=10, message="invalid spec not reported in the file")
        assert "spec.replicas" in ctl.logs()
        assert docker_api.inspect_service(name)["Version"]["Index"] == version  # nothing changed
        path.write_text(path.read_text().replace("replicas: lots", "replicas: 1"))
        wait_for(lambda: status_of(path).get("ready") == "1/1", timeout=60, message="fixed file did not resume")


def test_second_controller_stands_by_until_the_first_stops(
    local_image: str, namespace: str, specs_dir: Path, tmp_path: Path
) -> None:
    write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=1))
    with controller(specs_dir, namespace) as first:
        res = sk("watch", specs_dir, "--once", "--source", namespace)
        assert res.code == 1 and "holds the lease" in res.output
        with controller(specs_dir, namespace, wait_ready=False, log=tmp_path / "second.log") as second:
            wait_for(lambda: "holds the lease" in second.logs(), timeout=20, message="second did not stand by")
            assert not second.ready()
            assert first.stop() == 0  # a clean stop releases the lease at once...
            wait_for(second.ready, timeout=20, message="second never took over")  # ...and the other takes over


def test_sigterm_mid_pass_leaves_valid_files(local_image: str, namespace: str, specs_dir: Path) -> None:
    paths = [
        write_spec(
            specs_dir,
            f"web{i}.yaml",
            SPEC.format(ns=namespace, image=local_image, replicas=1)
            .replace("name: web", f"name: web{i}")
            .replace("name: spare", f"name: spare{i}"),
        )
        for i in range(3)
    ]
    originals = {p: outside_status(p.read_text()) for p in paths}
    for trial in range(5):
        with controller(specs_dir, namespace, wait_ready=trial == 0) as ctl:
            time.sleep(0.3 * trial)
            for p in paths:
                p.touch()
            # 0 once the handler is installed; a signal during interpreter start-up ends the process
            # before it has opened anything, which is just as safe for the files.
            assert ctl.stop(signal.SIGTERM) in (0, -signal.SIGTERM), ctl.logs()
        for p in paths:
            list(YAML(typ="safe").load_all(p.read_text()))  # still valid YAML
            assert outside_status(p.read_text()) == originals[p]
        assert not list(specs_dir.glob(".*.swarmkeeper.tmp"))


ONE = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  image: '{image}'
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
"""


def test_a_save_in_place_whose_writer_stalls_deletes_nothing(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    """An editor's save in place truncates, then writes. On a loaded machine the writer can stall in
    between; a pass that reads the empty file then must not prune what it held."""
    web = write_spec(specs_dir, "web.yaml", ONE.format(name="web", ns=namespace, image=local_image))
    write_spec(specs_dir, "db.yaml", ONE.format(name="db", ns=namespace, image=local_image))
    with controller(specs_dir, namespace, "--prune", "--force") as ctl:
        wait_for(lambda: status_of(web).get("ready") == "1/1", timeout=60, message="web never 1/1")
        before = docker_api.inspect_service(f"{namespace}_web")["ID"]
        text = web.read_text()
        with web.open("w") as out:  # truncated: the watcher sees an empty file ...
            out.flush()
            time.sleep(0.4)  # ... for longer than a quick save takes
            out.write(text)
        time.sleep(3)
        assert docker_api.inspect_service(f"{namespace}_web")["ID"] == before
        assert "pruned" not in ctl.logs()
        # A file emptied for good still deletes what it held, a second later.
        web.write_text("")
        wait_for(
            lambda: not docker_api.services(filters={"name": f"{namespace}_web"}), timeout=30, message="not pruned"
        )
