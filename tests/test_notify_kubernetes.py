"""SwarmAlert through the Kubernetes door: a custom resource whose target URL is a Secret's key; the
operator tells a JSON webhook on loopback what its namespace's passes did, and the URL stays out of
the CR's status, the Events and the operator's log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import docker
import pytest

from helpers import wait_for
from kube_fixtures import Kube, operator
from notify_helpers import receiver

pytestmark = pytest.mark.timeout(300)


def test_operator_tells_the_alert_target_in_its_secret(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    token = f"url-token-{uuid.uuid4().hex}"
    with receiver() as r, operator(kube, ns, tmp_path / "operator.log") as op:
        kube.apply(f"""
            apiVersion: v1
            kind: Secret
            metadata: {{name: hooks, namespace: {ns}}}
            stringData: {{ops: "json://127.0.0.1:{r.port}/ops/{token}"}}
            ---
            apiVersion: swarmkeeper.io/v1alpha1
            kind: SwarmAlert
            metadata: {{name: ops, namespace: {ns}}}
            spec:
              targets: [{{secretRef: {{name: hooks, key: ops}}}}]
              events: [Applied, InvalidSpec]
            ---
            apiVersion: swarmkeeper.io/v1alpha1
            kind: SwarmNetwork
            metadata: {{name: backend, namespace: {ns}}}
        """)
        created = r.wait_for("Applied", f"SwarmNetwork/{ns}/backend", f"source k8s.{ns}", timeout=90)
        assert created.path == f"/ops/{token}"
        assert docker_api.networks(names=[f"{ns}_backend"])

        def alert_ready() -> bool:
            status = (kube.get("swarmalert/ops", ns) or {}).get("status") or {}
            return any(c["type"] == "Ready" and c["reason"] == "Configured" for c in status.get("conditions", []))

        wait_for(alert_ready, timeout=60, message="the SwarmAlert has no Ready condition")
        # A service naming a secret that does not exist: refused, and told.
        kube.apply(f"""
            apiVersion: swarmkeeper.io/v1alpha1
            kind: SwarmService
            metadata: {{name: web, namespace: {ns}}}
            spec:
              image: {local_image}
              command: ["sleep", "3600"]
              secrets: [{{source: missing}}]
        """)
        invalid = r.wait_for("InvalidSpec", f"SwarmService/{ns}/web", timeout=60)
        assert 'no SwarmSecret "missing"' in invalid.message
        logs = op.logs()
    status = json.dumps(kube.get("swarmalert/ops", ns))
    events = kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    for where, text in {"status": status, "events": events, "log": logs}.items():
        assert token not in text, f"the target's URL is in the {where}"
    assert not [m for m in r.messages() if "SwarmService" in m.message and "Applied" in m.message]
