"""The Kubernetes front door end to end: a real API server, the real Docker Engine, the operator as
a process, and ``kubectl`` as users drive it.

Each test gets a fresh Kubernetes namespace named like its swarm namespace, so CR ``web`` is the
swarm service ``<namespace>_web`` and the ``namespace`` fixture removes whatever is left in the
swarm. The operator watches only that namespace and holds a Lease there: tests never meet.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from helpers import exec_in_service, running_count, wait_for
from kube_fixtures import Kube, operator, start_operator, wait_quiet

pytestmark = pytest.mark.timeout(420)

SECRET = "k8s-held-value-5c1d0e"
ROTATED = "k8s-rotated-value-9a7f3b"


def stack(namespace: str, image: str, secret: str = SECRET, web_replicas: int = 3) -> str:
    """A network, a Kubernetes Secret with a SwarmSecret naming it, and two services."""
    return f"""
    apiVersion: v1
    kind: Secret
    metadata: {{name: db-creds, namespace: {namespace}}}
    stringData: {{password: {secret}}}
    ---
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmNetwork
    metadata: {{name: backend, namespace: {namespace}}}
    spec: {{driver: overlay, attachable: true}}
    ---
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmSecret
    metadata: {{name: db-password, namespace: {namespace}}}
    spec:
      secretRef: {{name: db-creds, key: password}}
    ---
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmService
    metadata: {{name: api, namespace: {namespace}}}
    spec:
      image: {image}
      command: [sh, -c, "exec nc -ll -p 9000 -e hostname"]
      replicas: 1
      endpointMode: dnsrr
      networks: [{{name: backend}}]
      secrets: [{{source: db-password, mode: "0400"}}]
      stopGracePeriod: 1s
    ---
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmService
    metadata: {{name: web, namespace: {namespace}}}
    spec:
      image: {image}
      command: [sh, -c, "exec nc -ll -p 8080 -e echo hello v$RELEASE"]
      replicas: {web_replicas}
      env: {{RELEASE: "1"}}
      endpointMode: dnsrr
      networks: [{{name: backend}}]
      updateConfig: {{parallelism: 0, order: start-first}}
      stopGracePeriod: 1s
    """


def ready_column(kube: Kube, namespace: str) -> dict[str, str]:
    """NAME → READY, as ``kubectl get ssvc`` prints them."""
    lines = kube.kubectl("get", "ssvc", "-n", namespace).stdout.splitlines()
    header = lines[0].split()
    assert header[:2] == ["NAME", "READY"], lines[0]
    out = {}
    for line in lines[1:]:
        cells = line.split()
        out[cells[0]] = cells[1] if re.fullmatch(r"\d+/\d+", cells[1]) else ""
    return out


def wait_ready(kube: Kube, namespace: str, name: str, ready: str, timeout: float = 120) -> None:
    wait_for(
        lambda: ready_column(kube, namespace).get(name) == ready,
        timeout=timeout,
        message=f"kubectl get ssvc {name} never showed READY {ready}",
    )


def swarm_objects(api: docker.APIClient, namespace: str) -> dict[str, dict[str, str]]:
    """type → swarm name → ID of everything in the swarm named ``<namespace>_*``."""
    prefix = f"{namespace}_"
    return {
        "service": {s["Spec"]["Name"]: s["ID"] for s in api.services() if s["Spec"]["Name"].startswith(prefix)},
        "network": {n["Name"]: n["Id"] for n in api.networks() if n["Name"].startswith(prefix)},
        "secret": {s["Spec"]["Name"]: s["ID"] for s in api.secrets() if s["Spec"]["Name"].startswith(prefix)},
        "config": {c["Spec"]["Name"]: c["ID"] for c in api.configs() if c["Spec"]["Name"].startswith(prefix)},
    }


def service_spec(api: docker.APIClient, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = api.inspect_service(name)["Spec"]
    return spec


def secret_in_task(api: docker.APIClient, service: str) -> str | None:
    """The db-password file as a running task of ``service`` sees it; None while tasks come and go."""
    try:
        return exec_in_service(api, service, ["cat", "/run/secrets/db-password"])
    except (AssertionError, docker.errors.APIError):
        return None


def events(kube: Kube, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.get("events", namespace)["items"]
    return [e for e in items if name is None or e["involvedObject"]["name"] == name]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_crds_are_served_with_kubectl_conveniences(kube: Kube, kube_namespace: str) -> None:
    ns = kube_namespace
    assert "No resources found" in kube.kubectl("get", "swarm", "-n", ns).stderr
    explained = kube.kubectl("explain", "ssvc.spec").stdout
    assert "replicas" in explained and "Replaces the image's ENTRYPOINT" in explained
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {ns}}}
        spec: {{image: nginx, replicas: 3}}
    """)
    kube.kubectl("scale", "ssvc/web", "--replicas=5", "-n", ns)
    assert kube.get("ssvc/web", ns)["spec"]["replicas"] == 5
    scale = json.loads(
        kube.kubectl("get", "--raw", f"/apis/swarmkeeper.io/v1alpha1/namespaces/{ns}/swarmservices/web/scale").stdout
    )
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 5
    listing = kube.kubectl("get", "ssvc,snet,ssec,scfg,scl", "-n", ns).stdout
    assert listing.splitlines()[0].split()[:5] == ["NAME", "READY", "UPDATE", "IMAGE", "CONDITION"]
    # The schema is enforced by the API server itself.
    rejected = kube.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: bad, namespace: {ns}}}
spec: {{image: nginx, replicas: -1}}
""",
        check=False,
    )
    assert rejected.returncode != 0 and "spec.replicas" in rejected.stderr


def test_apply_converges_scales_edits_and_deletes(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    specs = write(tmp_path, "stack.yaml", stack(ns, local_image))
    kube.kubectl("apply", "-f", str(specs))
    with operator(kube, ns, tmp_path / "operator.log") as op:
        wait_ready(kube, ns, "web", "3/3")
        wait_ready(kube, ns, "api", "1/1")
        objects = swarm_objects(docker_api, ns)
        assert set(objects["service"]) == {f"{ns}_web", f"{ns}_api"}
        assert set(objects["network"]) == {f"{ns}_backend"}
        assert set(objects["secret"]) == {f"{ns}_db-password-v1"}
        labels = service_spec(docker_api, f"{ns}_web")["Labels"]
        assert labels["io.swarmkeeper.source"] == f"k8s.{ns}" and labels["com.docker.stack.namespace"] == ns
        assert secret_in_task(docker_api, f"{ns}_api") == SECRET
        web = kube.get("ssvc/web", ns)
        status = web["status"]
        assert status["observedGeneration"] == web["metadata"]["generation"]
        assert status["replicas"] == {"desired": 3, "running": 3} and status["swarmName"] == f"{ns}_web"
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
        assert "kopf" not in json.dumps(status) and "swarmkeeper.io/finalizer" in web["metadata"]["finalizers"]

        kube.kubectl("scale", "ssvc/web", "--replicas=5", "-n", ns)
        wait_for(lambda: running_count(docker_api, f"{ns}_web") == 5, timeout=90, message="not scaled to 5")
        assert service_spec(docker_api, f"{ns}_web")["Mode"]["Replicated"]["Replicas"] == 5
        wait_ready(kube, ns, "web", "5/5")

        kube.kubectl("patch", "ssvc", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"env":{"RELEASE":"2"}}}')
        wait_for(
            lambda: "RELEASE=2" in service_spec(docker_api, f"{ns}_web")["TaskTemplate"]["ContainerSpec"]["Env"],
            timeout=60,
            message="edit not applied",
        )
        wait_for(
            lambda: kube.get("ssvc/web", ns)["status"].get("observedGeneration") == 3,
            timeout=60,
            message="status never observed the edit",
        )
        applied = [e["message"] for e in events(kube, ns, "web") if e["reason"] == "Applied"]
        assert f"created {ns}_web" in applied
        assert any(m.startswith(f"updated {ns}_web") and "Env" in m for m in applied), applied

        kube.kubectl("delete", "-f", str(specs), "--timeout=90s", timeout=120)
        wait_for(lambda: not any(swarm_objects(docker_api, ns).values()), timeout=60, message="swarm objects remain")
        assert kube.kubectl("get", "swarm", "-n", ns).stdout == ""
        assert op.proc.poll() is None


def test_secret_rotation_moves_the_service_and_the_value_never_leaks(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    kube.apply(stack(ns, local_image))
    log = tmp_path / "operator.log"
    with operator(kube, ns, log, "-v"):  # -vvv: even kopf's own debug log must not show it
        wait_ready(kube, ns, "api", "1/1")
        assert secret_in_task(docker_api, f"{ns}_api") == SECRET
        kube.kubectl(
            "patch",
            "secret",
            "db-creds",
            "-n",
            ns,
            "--type=merge",
            "-p",
            json.dumps({"stringData": {"password": ROTATED}}),
        )

        def moved() -> bool:
            refs = service_spec(docker_api, f"{ns}_api")["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
            return [r["SecretName"] for r in refs] == [f"{ns}_db-password-v2"]

        wait_for(moved, timeout=60, message="api never moved to version 2")
        wait_for(lambda: secret_in_task(docker_api, f"{ns}_api") == ROTATED, timeout=90, message="value not delivered")
        wait_for(
            lambda: (kube.get("ssec/db-password", ns).get("status") or {}).get("currentVersion") == 2,
            timeout=60,
            message="status never showed version 2",
        )
        reasons = {(e["involvedObject"]["name"], e["reason"], e["message"]) for e in events(kube, ns)}
        assert ("db-password", "Applied", f"created {ns}_db-password-v2") in reasons
    visible = {
        "kubectl get swarm -o yaml": kube.kubectl("get", "swarm", "-n", ns, "-o", "yaml").stdout,
        "kubectl get events -o yaml": kube.kubectl("get", "events", "-n", ns, "-o", "yaml").stdout,
        "operator log": log.read_text(errors="replace"),
    }
    for where, text in visible.items():
        for value in (SECRET, ROTATED):
            assert value not in text, f"a secret value is visible in {where}"
    assert "db-creds" in visible["kubectl get swarm -o yaml"]  # the reference is, and that is all


def test_restart_resumes_without_duplicates(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    kube.apply(stack(ns, local_image))
    log = tmp_path / "operator.log"
    with operator(kube, ns, log):
        wait_ready(kube, ns, "web", "3/3")
        wait_ready(kube, ns, "api", "1/1")
    before = swarm_objects(docker_api, ns)
    kube.kubectl("scale", "ssvc/web", "--replicas=2", "-n", ns)  # while no operator runs
    with operator(kube, ns, log) as op:
        wait_for(lambda: running_count(docker_api, f"{ns}_web") == 2, timeout=90, message="missed change not applied")
        wait_ready(kube, ns, "web", "2/2")
        wait_quiet(op)
        assert swarm_objects(docker_api, ns) == before, "a restart must find, not recreate, what it applied"
        # Quiet passes write nothing to the engine, however they are triggered.
        writes = op.engine_writes()
        passes = op.metric("swarmkeeper_reconcile_total")
        kube.kubectl("annotate", "ssvc", "web", "-n", ns, "example.com/touched=yes")
        wait_for(lambda: op.metric("swarmkeeper_reconcile_total") > passes, timeout=30, message="no pass ran")
        assert op.engine_writes() == writes
    created = [e for e in events(kube, ns) if e["reason"] == "Applied" and e["message"].startswith("created")]
    assert len(created) == 4, [e["message"] for e in created]  # network, secret, two services: once each


def test_invalid_content_is_reported_and_not_applied(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    web = f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {ns}}}
        spec: {{image: {local_image}, command: [sleep, "600"], replicas: 2, stopGracePeriod: 1s}}
    """
    kube.apply(web)
    # The CRD lets any value through for CPUs (0.5 or "500m"); the models refuse this one.
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: bad, namespace: {ns}}}
        spec: {{image: {local_image}, resources: {{limits: {{cpus: lots}}}}}}
    """)
    with operator(kube, ns, tmp_path / "operator.log"):
        wait_ready(kube, ns, "web", "2/2")
        bad = wait_for(lambda: kube.condition("ssvc/bad", ns), timeout=60, message="no status on bad")
        assert (bad["status"], bad["reason"]) == ("False", "InvalidSpec")
        assert bad["message"].startswith("spec.resources.limits.cpus: ") and "lots" in bad["message"]
        assert f"{ns}_bad" not in swarm_objects(docker_api, ns)["service"]
        warnings = [e for e in events(kube, ns, "bad") if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["InvalidSpec"]

        # An edit the models refuse leaves the running service as it was, and says why.
        kube.kubectl("patch", "ssvc", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"mode":"global"}}')
        wait_for(
            lambda: (kube.condition("ssvc/web", ns) or {}).get("reason") == "InvalidSpec",
            timeout=60,
            message="web never reported InvalidSpec",
        )
        invalid = kube.condition("ssvc/web", ns)
        assert invalid is not None and invalid["message"] == "spec: replicas cannot be set with mode global"
        assert service_spec(docker_api, f"{ns}_web")["Mode"] == {"Replicated": {"Replicas": 2}}
        kube.kubectl("patch", "ssvc", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"mode":"replicated"}}')
        wait_for(
            lambda: (kube.condition("ssvc/web", ns) or {}).get("reason") == "Converged",
            timeout=60,
            message="web never recovered",
        )


def test_a_failure_is_a_condition_and_one_event(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, tmp_path: Path
) -> None:
    ns = kube_namespace
    hand_made = docker_api.create_network(f"{ns}_taken", driver="overlay")["Id"]
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmNetwork
        metadata: {{name: taken, namespace: {ns}}}
    """)
    with operator(kube, ns, tmp_path / "operator.log") as op:
        ready = wait_for(
            lambda: (c := kube.condition("snet/taken", ns)) and c["reason"] == "ApplyFailed" and c,
            timeout=60,
            message="no ApplyFailed condition",
        )
        assert ready["status"] == "False" and "not managed by swarmkeeper" in ready["message"]
        passes = op.metric("swarmkeeper_reconcile_total")
        kube.kubectl("annotate", "snet", "taken", "-n", ns, "example.com/poke=1")  # more passes, same failure
        kube.kubectl("annotate", "snet", "taken", "-n", ns, "example.com/poke=2", "--overwrite")
        wait_for(lambda: op.metric("swarmkeeper_reconcile_total") >= passes + 2, timeout=30, message="no passes")
        failures = [e for e in events(kube, ns, "taken") if e["reason"] == "ApplyFailed"]
        assert len(failures) == 1 and failures[0]["type"] == "Warning", failures
    assert not docker_api.inspect_network(hand_made)["Labels"], "a foreign object is never touched"


def test_drift_is_put_back_and_reported(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {ns}}}
        spec: {{image: {local_image}, command: [sleep, "600"], replicas: 2, stopGracePeriod: 1s}}
    """)
    with operator(kube, ns, tmp_path / "operator.log") as op:
        wait_ready(kube, ns, "web", "2/2")
        # A hand-made change, as an admin makes it.
        subprocess.run(["docker", "service", "scale", "--detach", f"{ns}_web=1"], check=True, capture_output=True)
        wait_for(
            lambda: (kube.condition("ssvc/web", ns, "Synced") or {}).get("reason") == "DriftCorrected",
            timeout=60,
            message="drift never corrected",
        )
        assert service_spec(docker_api, f"{ns}_web")["Mode"]["Replicated"]["Replicas"] == 2
        drift = [e for e in events(kube, ns, "web") if e["reason"] == "DriftCorrected"]
        assert drift and drift[0]["type"] == "Warning" and "Mode.Replicated.Replicas" in drift[0]["message"]
        assert op.metric("swarmkeeper_drift_corrections_total", kind="SwarmService") >= 1


def test_two_operators_started_at_once_only_one_acts(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {ns}}}
        spec: {{image: {local_image}, command: [sleep, "600"], replicas: 1, stopGracePeriod: 1s}}
    """)
    a = start_operator(kube, ns, tmp_path / "a.log")
    b = start_operator(kube, ns, tmp_path / "b.log")
    try:
        wait_for(lambda: a.ready() and b.ready(), timeout=90, message="operators not up")
        wait_for(lambda: a.leading() or b.leading(), timeout=60, message="no operator acts")
        wait_ready(kube, ns, "web", "1/1")
        time.sleep(6)  # beyond a Lease renewal: the standby has tried again meanwhile
        assert [a.leading(), b.leading()].count(True) == 1
        leader, standby = (a, b) if a.leading() else (b, a)
        assert leader.engine_writes() > 0 and standby.metric("swarmkeeper_engine_requests_total") == 0
        holder = kube.get("lease/swarmkeeper-operator", ns)["spec"]["holderIdentity"]
        assert f"as {holder}; acting" in leader.logs().replace("\n", " ")
        assert "standing by" in standby.logs()

        assert leader.stop() == 0  # a clean stop hands the Lease over at once
        wait_for(standby.leading, timeout=30, message="the standby never took over")
        kube.kubectl("scale", "ssvc/web", "--replicas=2", "-n", ns)
        wait_for(lambda: running_count(docker_api, f"{ns}_web") == 2, timeout=90, message="new leader idle")
        assert standby.engine_writes() > 0
    finally:
        for op in (a, b):
            op.stop()


def test_an_operator_that_loses_the_lease_stops_acting(kube: Kube, kube_namespace: str, tmp_path: Path) -> None:
    ns = kube_namespace
    with operator(kube, ns, tmp_path / "operator.log") as op:
        lease = kube.get("lease/swarmkeeper-operator", ns)
        lease["spec"]["holderIdentity"] = "someone-else"  # as if another replica had taken over
        kube.kubectl("replace", "-f", "-", input=json.dumps(lease))
        wait_for(lambda: op.proc.poll() is not None, timeout=30, message="the operator went on acting")
        assert op.proc.returncode == 1
        assert "lost the lease" in op.logs()


def test_objects_go_to_the_engine_their_swarm_cluster_names(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmCluster
        metadata: {{name: local, namespace: {ns}}}
        spec: {{engine: {{host: "unix:///var/run/docker.sock"}}}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {ns}}}
        spec: {{cluster: local, image: {local_image}, command: [sleep, "600"], stopGracePeriod: 1s}}
    """)
    with operator(kube, ns, tmp_path / "operator.log"):
        wait_ready(kube, ns, "web", "1/1")
        cluster = wait_for(lambda: kube.condition("scl/local", ns), timeout=30, message="no cluster status")
        assert (cluster["status"], cluster["reason"]) == ("True", "Connected")
        # The cluster stays until what runs on it is gone, whatever order the deletions come in.
        kube.kubectl("delete", "scl/local", "ssvc/web", "-n", ns, "--timeout=60s", timeout=90)
        assert not swarm_objects(docker_api, ns)["service"]


def test_orphan_annotation_keeps_the_swarm_objects(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, tmp_path: Path
) -> None:
    ns = kube_namespace
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmNetwork
        metadata:
          name: kept
          namespace: {ns}
          annotations: {{swarmkeeper.io/orphan: "true"}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmNetwork
        metadata: {{name: gone, namespace: {ns}}}
    """)
    with operator(kube, ns, tmp_path / "operator.log"):
        wait_for(
            lambda: set(swarm_objects(docker_api, ns)["network"]) == {f"{ns}_kept", f"{ns}_gone"},
            timeout=60,
            message="networks not created",
        )
        kube.kubectl("delete", "snet", "kept", "gone", "-n", ns, "--timeout=60s", timeout=90)
        wait_for(
            lambda: set(swarm_objects(docker_api, ns)["network"]) == {f"{ns}_kept"},
            timeout=30,
            message="the orphan must stay, the other must go",
        )
    assert kube.kubectl("get", "snet", "-n", ns).stdout == ""


def test_operator_needs_a_scope(kube: Kube) -> None:
    swarmkeeper = Path(sys.executable).parent / "swarmkeeper"
    proc = subprocess.run([str(swarmkeeper), "operator"], capture_output=True, text=True, env=kube.env(), timeout=60)
    assert proc.returncode == 2 and "--namespace" in proc.stderr
