"""What is told and how often, without an engine: events derived from consecutive pass outcomes
(engine/events.py), which alert gets which, the message, the rate limit, SwarmAlert specs in files
and in Kubernetes, and a lane whose target never answers (a real socket on loopback)."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli_helpers import write_spec
from notify_helpers import alert_spec, silent_listener, write_url
from swarmkeeper.api import ConditionStatus, Key, ObjectStatus, ServiceStatus, SwarmAlertSpec, TaskError, UpdateProgress
from swarmkeeper.api.cluster import NodeStatus, SwarmClusterStatus
from swarmkeeper.controller.notify import Batch, Lane, Limits, TokenBucket, render, schema_of
from swarmkeeper.engine.apply import ApplyReport, StepResult
from swarmkeeper.engine.conditions import condition
from swarmkeeper.engine.desired import Desired, DesiredService
from swarmkeeper.engine.events import Event, Memory, derive, selected, severity
from swarmkeeper.engine.plan import Action, Plan, Reason, Step
from swarmkeeper.engine.reconcile import Outcome
from swarmkeeper.engine.run import PassOutcome, TargetOutcome
from swarmkeeper.loading import Manifest, SpecError, load_paths, load_text
from swarmkeeper.sources.kubernetes import VALUE_UNAVAILABLE, load_namespace
from swarmkeeper.swarm.observe import SwarmState

WEB = Key("SwarmService", "shop", "web")
SERVICE_TEXT = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {name: web, namespace: shop}
spec: {image: "local/busybox:1"}
"""


def service_manifest() -> Manifest:
    return load_text(SERVICE_TEXT, Path("web.yaml")).manifests[0]


def service(
    ready: ConditionStatus = "True",
    degraded: ConditionStatus = "False",
    update: str | None = None,
    error: str | None = None,
) -> ServiceStatus:
    return ServiceStatus(
        conditions=[
            condition("Ready", ready, "Converged" if ready == "True" else "Converging", "1 tasks running"),
            condition("Degraded", degraded, "TaskFailed" if degraded == "True" else "Healthy", error or ""),
        ],
        update=UpdateProgress(state=update, message="rolled back") if update else None,
        task_error=TaskError(task="t1", state="failed", error=error) if error else None,
    )


def outcome(
    statuses: dict[Key, ObjectStatus] | None = None,
    *,
    changes: Sequence[tuple[Action, Reason]] = (),  # (action, reason) on WEB
    spec_hash: str = "h1",
    errors: Sequence[SpecError] = (),
    away: str | None = None,
    error: str | None = None,  # every change failed with it
) -> PassOutcome:
    desired = Desired()
    desired.services[WEB] = DesiredService(service_manifest(), "shop_web", {}, spec_hash, True)
    report = ApplyReport(
        [
            StepResult(Step(i, action, "service", WEB, "shop_web", reason), ok=error is None, error=error)
            for i, (action, reason) in enumerate(changes)
        ]
    )
    state = SwarmState([], [], [], [], [])
    target = TargetOutcome(None, outcome=Outcome(Plan(), report, state, desired, statuses=statuses or {}))
    if away is not None:
        target = TargetOutcome(None, error=away)
    return PassOutcome(targets=[target], spec_errors=list(errors))


def run(memory: Memory, *outcomes: PassOutcome) -> tuple[list[list[Event]], Memory]:
    seen = []
    for o in outcomes:
        events, memory = derive(memory, o)
        seen.append(events)
    return seen, memory


def types(events: Sequence[Event]) -> list[str]:
    return [e.type for e in events]


def test_a_failing_rollout_is_told_once_and_its_end_once() -> None:
    failing = service(ready="False", degraded="True", error="exec: no such file")
    seen, _ = run(
        Memory(),
        outcome({WEB: service()}, changes=[("create", "missing")]),  # created
        outcome({WEB: service()}, changes=[("update", "changed")], spec_hash="h2"),  # the bad spec
        outcome({WEB: failing}, changes=[("update", "changed")], spec_hash="h2"),  # swarm rolled it back
        outcome({WEB: failing}, changes=[("update", "changed")], spec_hash="h2"),  # ... and again
        outcome({WEB: service(ready="False", degraded="True", update="rollback_completed")}, spec_hash="h2"),
        outcome({WEB: service()}, changes=[("update", "changed")], spec_hash="h3"),  # fixed
        outcome({WEB: service()}, spec_hash="h3"),
    )
    assert [types(e) for e in seen] == [
        ["Applied"],
        ["Applied"],
        ["Degraded", "RolledBack"],
        [],
        [],
        ["Applied", "Recovered"],
        [],
    ]
    rolled = seen[2][1]
    assert rolled.key == WEB and "exec: no such file" in rolled.message
    assert "created shop_web" in seen[0][0].message


def test_drift_is_told_each_time_and_an_invalid_spec_while_it_stands_once() -> None:
    error = SpecError(
        "Input should be a valid integer",
        file=Path("web.yaml"),
        line=7,
        kind="SwarmService",
        name="web",
        field="spec.replicas",
    )
    seen, _ = run(
        Memory(),
        outcome({WEB: service()}, changes=[("update", "drift")], errors=[error]),
        outcome({WEB: service()}, changes=[("update", "drift")], errors=[error]),
        outcome({WEB: service()}),
        outcome({WEB: service()}, errors=[error]),
    )
    assert [types(e) for e in seen] == [["InvalidSpec", "DriftCorrected"], ["DriftCorrected"], [], ["InvalidSpec"]]
    invalid = seen[0][0]
    assert str(invalid).startswith("InvalidSpec SwarmService/web: web.yaml:7: SwarmService/web: spec.replicas:")


def test_states_stand_while_the_engine_is_away() -> None:
    failing = service(ready="False", degraded="True", error="boom")
    seen, memory = run(
        Memory(),
        outcome({WEB: failing}),
        outcome(away="Cannot connect to the Docker daemon"),
        outcome(away="Cannot connect to the Docker daemon"),
        outcome({WEB: failing}),
        outcome({WEB: service()}),
    )
    assert [types(e) for e in seen] == [["Degraded"], ["Failed"], [], [], ["Recovered"]]
    assert seen[1][0].key is None and "engine unavailable" in seen[1][0].message
    assert not memory.degraded and not memory.failing


def test_a_lasting_failure_and_a_node_down_are_told_once() -> None:
    cluster = Key("SwarmCluster", None, "prod")

    def nodes(state: str) -> dict[Key, ObjectStatus]:
        node = NodeStatus(name="m2", state=state, message="heartbeat failure" if state == "down" else None)
        return {WEB: service(), cluster: SwarmClusterStatus(nodes=[NodeStatus(name="m1", state="ready"), node])}

    refused = "rpc error: image not allowed"
    seen, _ = run(
        Memory(),
        outcome(nodes("ready"), changes=[("update", "changed")], error=refused),
        outcome(nodes("down"), changes=[("update", "changed")], error=refused),
        outcome(nodes("down"), changes=[("update", "changed")], error=refused),
        outcome(nodes("ready"), changes=[("update", "changed")]),
        outcome(nodes("ready"), changes=[("update", "changed")], error=refused, spec_hash="h2"),
    )
    assert [types(e) for e in seen] == [["Failed"], ["NodeDown"], [], ["Applied", "Recovered"], ["Failed"]]
    assert str(seen[0][0]) == f"Failed SwarmService/shop/web: update shop_web failed: {refused}"
    assert str(seen[1][0]) == "NodeDown SwarmCluster/prod: node m2 is down: heartbeat failure"
    assert seen[3][1].message == "node m2 is ready again"


def test_image_updates_and_selection() -> None:
    o = outcome({WEB: service()})
    events = [
        Event("ImageUpdated", WEB, "now web:1@sha256:b (was web:1@sha256:a)"),
        Event("Failed", Key("SwarmNetwork", "db", "backend"), "create failed"),
        Event("Failed", None, "engine unavailable"),
    ]
    assert derive(Memory(), o)[1].digests == {}
    everything = SwarmAlertSpec.model_validate({"targets": [{"urlFile": "x"}]})
    assert selected(everything, events) == events
    failures = SwarmAlertSpec.model_validate({"targets": [{"urlFile": "x"}], "events": ["Failed"]})
    assert types(selected(failures, events)) == ["Failed", "Failed"]
    shop = SwarmAlertSpec.model_validate({"targets": [{"urlFile": "x"}], "objects": [{"namespace": "sh*"}]})
    assert selected(shop, events) == events[:1]  # not the db network, nor what is about no object
    networks = SwarmAlertSpec.model_validate(
        {"targets": [{"urlFile": "x"}], "objects": [{"kind": "*Network", "name": "back?nd"}]}
    )
    assert selected(networks, events) == events[1:2]
    assert severity(events[:1]) == "info" and severity(events) == "failure"


def test_message_rendering_and_names() -> None:
    one = Batch((Event("RolledBack", WEB, "update rollback_completed"),), "default", "0123456789abcdef0123")
    title, body, kind = render([one])
    assert title == "swarmkeeper: RolledBack SwarmService/shop/web"
    assert body.splitlines()[0] == "RolledBack SwarmService/shop/web: update rollback_completed"
    assert "source default, revision 0123456789ab" in body and kind == "failure"
    many = [Batch(tuple(Event("Applied", Key("SwarmNetwork", None, f"n{i}"), "created") for i in range(30)), "s")] * 2
    title, body, kind = render(many)
    assert title == "swarmkeeper: 60 events (Applied)" and "... and 10 more" in body and kind == "success"
    assert schema_of(SecretStr("slack://T000/B000/XXXX")) == "slack"
    assert schema_of(SecretStr("no schema at all")) == "?"


def test_token_bucket() -> None:
    bucket = TokenBucket(capacity=3, per_second=0.5)
    assert [bucket.wait(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait(100.0) == pytest.approx(2.0)
    assert bucket.wait(102.0) == 0.0  # one refilled in 2 s
    assert bucket.wait(110.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # never above capacity


def test_alert_urls_from_files_are_secrets(specs_dir: Path) -> None:
    token = "tok-" + "x" * 20
    write_url(specs_dir, "ok.url", f"json://127.0.0.1:9/{token}")
    (specs_dir / "two.url").write_text(f"json://a/{token} json://b/{token}\n")
    write_spec(specs_dir, "alert.yaml", alert_spec("ops", ["ok.url", "missing.url", "two.url", "../outside.url"]))
    result = load_paths([specs_dir])
    [manifest] = result.manifests
    assert manifest.urls[0] is not None and manifest.urls[0].get_secret_value().endswith(token)
    assert manifest.urls[1:] == (None, None, None)
    messages = [str(e) for e in result.errors]
    assert len(messages) == 3
    assert "alert.yaml:7:" in messages[0] and "spec.targets[1].urlFile" in messages[0] and "no such file" in messages[0]
    assert "spec.targets[2].urlFile" in messages[1] and "one URL on one line" in messages[1]
    assert "escapes the specs root" in messages[2]
    assert not any(token in m for m in messages)
    assert token not in repr(manifest)


def test_alert_validation_errors() -> None:
    text = alert_spec("ops", ["a.url"]).replace(
        "  targets:\n    - urlFile: a.url", "  targets:\n    - {urlFile: a.url, secretRef: {name: s, key: k}}"
    )
    text += "  events: [Exploded]\n"
    errors = [str(e) for e in load_text(text, Path("alert.yaml"), resolve_values=False).errors]
    assert any("spec.targets[0]" in e and "exactly one of urlFile or secretRef" in e for e in errors), errors
    assert any("spec.events[0]" in e for e in errors), errors


def test_kubernetes_alert_urls_come_from_secrets() -> None:
    token = "kube-token-123"
    body = {
        "apiVersion": "swarmkeeper.io/v1alpha1",
        "kind": "SwarmAlert",
        "metadata": {"name": "ops", "namespace": "shop", "uid": "u1", "generation": 1},
        "spec": {"targets": [{"secretRef": {"name": "hooks", "key": "ops"}}]},
    }

    def read(kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        assert (kind, namespace) == ("Secret", "shop")
        return {"ops": f"json://127.0.0.1:9/{token}\n".encode()} if name == "hooks" else None

    specs = load_namespace([body], read)
    [manifest] = specs.manifests
    assert manifest.urls[0] is not None and manifest.urls[0].get_secret_value() == f"json://127.0.0.1:9/{token}"
    body["spec"] = {"targets": [{"secretRef": {"name": "gone", "key": "ops"}}]}
    specs = load_namespace([body], read)
    problem = specs.problems[Key("SwarmAlert", "shop", "ops")]
    assert problem.reason == VALUE_UNAVAILABLE and 'Secret "gone" not found' in problem.message
    body["spec"] = {"targets": [{"urlFile": "ops.url"}]}
    assert "use secretRef" in load_namespace([body], read).problems[Key("SwarmAlert", "shop", "ops")].message


def test_a_target_that_never_answers_holds_only_its_own_queue() -> None:
    counts: dict[str, int] = {}

    def count(result: str, n: int) -> None:
        counts[result] = counts.get(result, 0) + n

    limits = Limits(queue=5, retries=(), read_timeout=1.0, connect_timeout=1.0)
    with silent_listener() as port:
        lane = Lane("SwarmAlert ops target 0 (json)", SecretStr(f"json://127.0.0.1:{port}/x"), count, limits)
        batch = Batch((Event("Applied", WEB, "updated shop_web"),), "test")
        started = time.monotonic()
        for _ in range(20):
            lane.submit(batch)
        assert time.monotonic() - started < 0.1  # submitting never waits for the target
        time.sleep(0.3)
        lane.close(timeout=0.1)
    # One message (or a few) in flight with the target, at most 5 waiting, the rest dropped.
    assert counts.get("dropped", 0) >= 20 - 5 - 2, counts


def test_a_lane_delivers_to_a_listening_socket() -> None:
    """The real Apprise json:// sender against a raw socket: the request arrives with the event."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(10)
        port = server.getsockname()[1]
        sent: dict[str, int] = {}
        lane = Lane("t", SecretStr(f"json://127.0.0.1:{port}/hook"), lambda r, n: sent.update({r: n}), Limits())
        lane.submit(Batch((Event("Failed", WEB, "create shop_web failed: boom"),), "test"))
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while b"boom" not in data:
                data += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        lane.close(timeout=5)
    assert data.startswith(b"POST /hook HTTP/1.1")
    assert b"Failed SwarmService/shop/web: create shop_web failed: boom" in data
    assert sent == {"sent": 1}
