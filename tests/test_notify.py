"""SwarmAlert notifications from ``swarmkeeper watch`` on the real engine, received by a JSON webhook
on loopback (Apprise's ``json://``): a failed rollout reaches it within 2 s of the pass that saw it,
once; a spec error names file and line and never a value; a dead or silent target slows no pass;
and the target's URL (a token in it) and secret values appear in no message, log, status or metric.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from pathlib import Path

import docker
import pytest
import requests

from cli_helpers import sk, write_spec
from controller_helpers import controller
from helpers import wait_for
from notify_helpers import Received, Receiver, alert_spec, closed_port, receiver, silent_listener, write_url

pytestmark = pytest.mark.timeout(240)

WEB = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: web, namespace: {ns}}}
spec:
  image: {image}
  command: {command}
  replicas: {replicas}
  stopGracePeriod: 1s
  secrets: [{{source: token}}]
  updateConfig: {{parallelism: 1, failureAction: rollback, monitor: 2s}}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {{name: token, namespace: {ns}}}
spec: {{file: token.txt}}
"""
GOOD = '["sleep", "3600"]'
BAD = '["/no/such/binary"]'  # every task fails at once: swarm rolls the update back
# A spec error on the very line that holds a value.
INVALID = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {{name: bad, namespace: {ns}}}
spec:
  stringData: "{canary}-inline"
  keepVersions: lots
"""
PASS_TIME = re.compile(r"pass at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z$")


def pass_time(message: str) -> float:
    """When the pass a message is about ended, as its last line says."""
    m = PASS_TIME.search(message)
    assert m, message
    return datetime.fromisoformat(m.group(1) + "+00:00").timestamp()


def test_failed_rollout_reaches_the_webhook_within_2s_once_and_without_secrets(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    url_token = f"url-token-{uuid.uuid4().hex}"
    (specs_dir / "token.txt").write_text(canary)
    web = specs_dir / "web.yaml"
    web.write_text(WEB.format(ns=namespace, image=local_image, command=GOOD, replicas=1))
    with receiver() as r:
        write_url(specs_dir, "ops.url", f"json://127.0.0.1:{r.port}/ops/{url_token}")
        write_url(specs_dir, "db.url", f"json://127.0.0.1:{r.port}/db/{url_token}")
        # A Slack-style incoming webhook (Mattermost's, which Apprise posts to /hooks/<token>).
        write_url(specs_dir, "chat.url", f"mmost://127.0.0.1:{r.port}/{url_token}")
        write_spec(specs_dir, "alerts.yaml", alert_spec("ops", ["ops.url", "chat.url"]))
        # Only objects named db*: nothing of this test concerns it.
        db_only = alert_spec("db-only", ["db.url"], objects="  objects: [{name: 'db*'}]\n")
        write_spec(specs_dir, "db-alert.yaml", db_only)
        with controller(specs_dir, namespace, "--interval", "1s") as ctl:
            created = r.wait_for("Applied", f"SwarmService/{namespace}/web", "created", path="/ops/")
            assert created.body["type"] == "success"
            assert created.path == f"/ops/{url_token}"
            wait_for(lambda: "ready: 1/1" in web.read_text(), timeout=60, message="never 1/1")

            web.write_text(WEB.format(ns=namespace, image=local_image, command=BAD, replicas=1))
            rolled = r.wait_for("RolledBack", f"SwarmService/{namespace}/web", path="/ops/", timeout=90)
            # The message says when the pass that saw the rollback ended (and queued it).
            latency = rolled.at - pass_time(rolled.message)
            print(f"RolledBack received {latency * 1000:.0f} ms after the end of the pass that saw it")
            assert 0 <= latency < 2.0
            assert rolled.body["type"] == "failure"
            assert "no such file" in rolled.message  # the task's error
            assert rolled.body["title"].startswith("swarmkeeper:")
            chat = r.wait_for("RolledBack", f"SwarmService/{namespace}/web", path="/hooks/", timeout=10)
            chat_latency = chat.at - pass_time(chat.message)
            print(f"... and the Slack-style target {chat_latency * 1000:.0f} ms after")
            assert 0 <= chat_latency < 2.0 and chat.path == f"/hooks/{url_token}"
            assert "no such file" in chat.message and chat.body.get("username")

            # The failure lasts, pass after pass: it is told once.
            passes = ctl.metric("swarmkeeper_reconcile_total")
            wait_for(
                lambda: ctl.metric("swarmkeeper_reconcile_total") >= passes + 5,
                timeout=60,
                message="no more passes",
            )
            time.sleep(1)
            assert len(r.with_text("RolledBack", f"SwarmService/{namespace}/web", path="/ops/")) == 1
            assert len(r.with_text("Degraded", f"SwarmService/{namespace}/web", path="/ops/")) == 1
            assert len(r.with_text("Applied", "TaskTemplate.ContainerSpec.Command", path="/ops/")) == 1

            fixed = GOOD.replace("3600", "3601")  # a new spec: an update that converges
            web.write_text(WEB.format(ns=namespace, image=local_image, command=fixed, replicas=1))
            recovered = r.wait_for("Recovered", f"SwarmService/{namespace}/web", path="/ops/", timeout=90)
            assert recovered.body["type"] == "success"

            bad = write_spec(specs_dir, "bad.yaml", INVALID.format(ns=namespace, canary=canary))
            # An invalid document has no namespace yet: the error names kind and name.
            invalid = r.wait_for("InvalidSpec SwarmSecret/bad:", path="/ops/")
            assert f"{bad}:6:" in invalid.message and "spec.keepVersions" in invalid.message
            time.sleep(2)  # more passes, the same error: not told again
            assert len(r.with_text("InvalidSpec", path="/ops/")) == 1
            bad.unlink()

            metrics = requests.get(f"http://127.0.0.1:{ctl.port}/metrics", timeout=5).text
            assert ctl.metric("swarmkeeper_notifications_total", result="sent") == len(r.messages())
            logs = ctl.logs()
        assert not [m for m in r.messages() if m.path.startswith("/db/")]  # its objects were not concerned
        for where, text in {
            "messages": "\n".join(m.text for m in r.messages()),
            "logs": logs,
            "metrics": metrics,
            "spec files and status": "\n".join(p.read_text() for p in specs_dir.glob("*.yaml")),
        }.items():
            assert canary not in text, f"the secret value is in the {where}"
            assert url_token not in text, f"the target's URL is in the {where}"
    status = (specs_dir / "alerts.yaml").read_text()
    assert "reason: Configured" in status and "2 targets" in status


def scale_and_wait(
    path: Path, text: str, api: docker.APIClient, name: str, replicas: int, r: Receiver
) -> tuple[float, float, Received]:
    """Save ``text``; (when, seconds until the swarm has it, the live target's message about it)."""
    before = len(r.with_text("Mode.Replicated.Replicas"))
    path.write_text(text)
    saved = time.time()

    def in_swarm() -> bool:
        return bool(api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"] == replicas)

    wait_for(in_swarm, timeout=10, interval=0.02, message="the save did not reach the swarm")
    applied = time.time() - saved
    told = wait_for(
        lambda: r.with_text("Mode.Replicated.Replicas")[before:],
        timeout=10,
        interval=0.02,
        message="the live target was not told",
    )[0]
    return saved, applied, told


def test_dead_and_silent_targets_slow_no_pass(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    (specs_dir / "token.txt").write_text("value")
    web = specs_dir / "web.yaml"
    web.write_text(WEB.format(ns=namespace, image=local_image, command=GOOD, replicas=1))
    name = f"{namespace}_web"
    with receiver() as r, silent_listener() as silent:
        write_url(specs_dir, "dead.url", f"json://127.0.0.1:{closed_port()}/dead")
        write_url(specs_dir, "silent.url", f"json://127.0.0.1:{silent}/silent")
        write_url(specs_dir, "live.url", f"json://127.0.0.1:{r.port}/live")
        write_spec(specs_dir, "alerts.yaml", alert_spec("ops", ["dead.url", "silent.url", "live.url"]))
        with controller(specs_dir, namespace, "--interval", "30s") as ctl:
            r.wait_for("created")
            for replicas in (2, 3, 1):
                text = WEB.format(ns=namespace, image=local_image, command=GOOD, replicas=replicas)
                saved, applied, told = scale_and_wait(web, text, docker_api, name, replicas, r)
                print(f"replicas={replicas}: swarm {applied * 1000:.0f} ms, told {(told.at - saved) * 1000:.0f} ms")
                assert applied < 2.0  # a pass is not held up by the dead or silent targets...
                assert told.at - saved < 3.0  # ...nor is the live target
            # The refused target gives up after its retries (about 16 s), counted and logged once.
            wait_for(
                lambda: ctl.metric("swarmkeeper_notifications_total", result="failed") >= 1,
                timeout=40,
                message="no failed delivery counted",
            )
            passes = ctl.metric("swarmkeeper_reconcile_time_seconds_count")
            slow = passes - ctl.metric("swarmkeeper_reconcile_time_seconds_bucket", le="1.0")
            logs = ctl.logs()
        assert slow == 0, f"{slow} of {passes} passes took more than 1 s"
        assert "SwarmAlert ops target 0 (json): message not delivered" in logs
        assert logs.count("target 0 (json): message not delivered") == 1
        assert f"127.0.0.1:{silent}" not in logs and "/dead" not in logs


def test_alert_is_not_a_swarm_object(docker_api: docker.APIClient, namespace: str, specs_dir: Path) -> None:
    write_url(specs_dir, "ops.url", "json://127.0.0.1:9/never-sent")
    write_spec(specs_dir, "alert.yaml", alert_spec("ops", ["ops.url"]))
    write_spec(
        specs_dir,
        "net.yaml",
        f"""\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmNetwork
        metadata: {{name: one, namespace: {namespace}}}
        """,
    )
    diff = sk("diff", specs_dir, "--source", namespace)
    assert diff.code == 1 and "SwarmAlert" not in diff.output and f"{namespace}_one" in diff.output
    assert sk("apply", specs_dir, "--source", namespace).code == 0
    (specs_dir / "net.yaml").unlink()
    # Prune sees one managed object, the network; the alert neither counts nor is deleted.
    pruned = sk("apply", specs_dir, "--source", namespace, "--prune", "--force")
    assert pruned.code == 0, pruned.output
    assert "SwarmAlert" not in pruned.output
    assert not docker_api.networks(names=[f"{namespace}_one"])
    deleted = sk("delete", specs_dir / "alert.yaml")
    assert deleted.code == 0 and "not found" not in deleted.output, deleted.output
