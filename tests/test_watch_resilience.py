"""The watch controller survives its engine going away: a dockerd restart (its own engine, in a
network namespace, so the machine's main engine is untouched) is ridden out with backoff, and the
swarm converges to the specs — including edits made while the engine was down — once it returns."""

from __future__ import annotations

import time
from pathlib import Path

from cli_helpers import write_spec
from controller_helpers import controller
from engines import EngineNode
from helpers import wait_for
from test_watch import SPEC, status_of


def running(node: EngineNode, name: str) -> int:
    try:
        tasks = node.api().tasks(filters={"service": name, "desired-state": "running"})
    except Exception:  # the engine is expected to be away for part of the test
        return -1
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


def test_dockerd_restart_is_survived_and_edits_made_meanwhile_converge(
    single_engine: EngineNode, specs_dir: Path
) -> None:
    ns = "resil"
    path = write_spec(specs_dir, "web.yaml", SPEC.format(ns=ns, image="local/busybox:1", replicas=1))
    name = f"{ns}_web"
    with controller(specs_dir, ns, "--host", single_engine.socket, "--interval", "2s") as ctl:
        wait_for(lambda: status_of(path).get("ready") == "1/1", timeout=90, message="never 1/1")

        single_engine.stop()
        time.sleep(2)  # passes fail meanwhile: the controller must back off, not die
        path.write_text(path.read_text().replace("replicas: 1", "replicas: 2"))
        time.sleep(2)
        assert ctl.proc.poll() is None, ctl.logs()[-3000:]
        single_engine.start()

        wait_for(lambda: running(single_engine, name) == 2, timeout=120, message="did not converge after restart")
        wait_for(lambda: status_of(path).get("ready") == "2/2", timeout=60, message="status did not follow")
        assert ctl.proc.poll() is None
        logs = ctl.logs()
        assert "engine unavailable" in logs or "retrying" in logs
