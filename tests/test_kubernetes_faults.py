"""The operator against a failing Kubernetes control plane: kube-apiserver killed and started again
(etcd and the state dir kept, as in a control-plane restart), or frozen, while ``swarmkeeper
operator`` runs.

What runs in the swarm must not notice: nothing is removed or recreated while the API server is
away, and the operator process stays up. Without the API server it cannot renew its Lease, so it
stops acting once the renewal deadline has passed (another replica might hold the Lease by then);
when the API server is back it takes the Lease again, its watches reconnect, and it catches up:
drift made meanwhile is put back, edits and new objects are applied, and status is written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
import requests

from helpers import running_count, wait_for
from kube_fixtures import Kube, apiserver_stopped, operator, wait_quiet
from test_kubernetes import service_spec, stack, swarm_objects, wait_ready

pytestmark = pytest.mark.timeout(480)

SECRET = "k8s-fault-value-31b7e2"
# Seconds the API server stays away: past the Lease's 10 s renewal deadline, and past the 54 s for
# which kopf retries a failed request (settings.networking.error_backoffs) before giving it up.
OUTAGE = 65.0


def service_versions(api: docker.APIClient, namespace: str) -> dict[str, int]:
    """Swarm service name → its version index: any update to a service raises it."""
    return {
        s["Spec"]["Name"]: s["Version"]["Index"]
        for s in api.services()
        if s["Spec"]["Name"].startswith(f"{namespace}_")
    }


def replicas(api: docker.APIClient, service: str) -> int:
    return int(service_spec(api, service)["Mode"]["Replicated"]["Replicas"])


def test_operator_survives_an_apiserver_restart(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    web, api = f"{ns}_web", f"{ns}_api"
    kube.apply(stack(ns, local_image, secret=SECRET, web_replicas=1))
    timings: dict[str, float] = {}  # seconds from the kill, the restart or the edit (printed with -s)
    with operator(kube, ns, tmp_path / "operator.log") as op:
        wait_ready(kube, ns, "web", "1/1")
        wait_ready(kube, ns, "api", "1/1")
        wait_quiet(op)
        before = swarm_objects(docker_api, ns)
        versions = service_versions(docker_api, ns)
        writes = op.engine_writes()

        with apiserver_stopped(kube):
            down = time.monotonic()
            # Until the Lease's renewal deadline passes the operator may still act; after it, it must not.
            wait_for(lambda: not op.leading(), timeout=45, message="the operator went on acting without its Lease")
            timings["stopped acting"] = time.monotonic() - down
            assert op.proc.poll() is None, op.logs()[-4000:]
            assert requests.get(f"http://127.0.0.1:{op.port}/healthz", timeout=5).status_code == 200
            assert not op.ready(), "not ready while the API server is away"
            assert op.engine_writes() == writes, "nothing needed changing, so nothing may be written"
            assert service_versions(docker_api, ns) == versions
            assert running_count(docker_api, web) == 1 and running_count(docker_api, api) == 1

            # A hand-made change while the operator may not act: it stays until the operator may again.
            subprocess.run(["docker", "service", "scale", "--detach", f"{web}=3"], check=True, capture_output=True)
            while time.monotonic() - down < OUTAGE:
                assert op.proc.poll() is None, "the operator exited:\n" + op.logs()[-4000:]
                time.sleep(0.5)
            assert replicas(docker_api, web) == 3 and op.engine_writes() == writes, "acted without the Lease"
            assert swarm_objects(docker_api, ns) == before, "nothing is removed or recreated while away"
            timings["outage"] = time.monotonic() - down
            restart = time.monotonic()
        timings["API server ready, CRDs served"] = time.monotonic() - restart

        wait_for(
            lambda: op.leading() or op.proc.poll() is not None, timeout=60, message="the Lease was not taken again"
        )
        assert op.proc.poll() is None, "the operator exited:\n" + op.logs()[-4000:]
        timings["acting again"] = time.monotonic() - restart
        wait_for(lambda: replicas(docker_api, web) == 1, timeout=60, message="the drift was never put back")
        timings["drift put back"] = time.monotonic() - restart
        wait_for(
            lambda: (kube.condition("ssvc/web", ns, "Synced") or {}).get("reason") == "DriftCorrected",
            timeout=60,
            message="the correction is not in the status",
        )

        # The watches are back: an edit and a new object are applied, and their status is written.
        edited = time.monotonic()
        kube.kubectl("scale", "ssvc/web", "--replicas=2", "-n", ns)
        kube.apply(f"""
            apiVersion: swarmkeeper.io/v1alpha1
            kind: SwarmService
            metadata: {{name: late, namespace: {ns}}}
            spec: {{image: {local_image}, command: [sleep, "3600"], stopGracePeriod: 1s}}
        """)
        wait_for(lambda: running_count(docker_api, web) == 2, timeout=90, message="the edit was not applied")
        wait_ready(kube, ns, "web", "2/2")
        wait_ready(kube, ns, "late", "1/1")
        timings["edit and new object applied, status written"] = time.monotonic() - edited
        wait_quiet(op)
        for resource in ("snet/backend", "ssec/db-password", "ssvc/api", "ssvc/web", "ssvc/late"):
            ready = kube.condition(resource, ns) or {}
            assert ready.get("status") == "True", f"{resource}: {ready}"
        after = swarm_objects(docker_api, ns)
        kept = {kind: {n: i for n, i in names.items() if n != f"{ns}_late"} for kind, names in after.items()}
        assert kept == before, "nothing duplicated, recreated or left over"
        assert set(after["service"]) == {web, api, f"{ns}_late"}
        assert op.proc.poll() is None
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


@contextmanager
def apiserver_frozen(kube: Kube) -> Iterator[None]:
    """kube-apiserver stopped (SIGSTOP) for the body: connections are accepted and never answered,
    as behind a partition that drops packets. Thawed after, and ready again before this returns."""
    pid = int((kube.kubeconfig.parent / "kube-apiserver.pid").read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        wait_for(
            lambda: kube.kubectl("get", "--raw", "/readyz", check=False).stdout == "ok",
            timeout=60,
            message="kube-apiserver not ready after SIGCONT",
        )


def test_a_frozen_apiserver_stops_the_operator_acting_in_time(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    """Requests that hang must not keep the operator acting past its renewal deadline."""
    ns = kube_namespace
    web = f"{ns}_web"
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {ns}}}
        spec: {{image: {local_image}, command: [sleep, "3600"], stopGracePeriod: 1s}}
    """)
    timings: dict[str, float] = {}
    with operator(kube, ns, tmp_path / "operator.log") as op:
        wait_ready(kube, ns, "web", "1/1")
        wait_quiet(op)
        before = swarm_objects(docker_api, ns)
        with apiserver_frozen(kube):
            frozen = time.monotonic()
            # Renewal deadline 10 s; after the Lease's 15 s another replica may take it and act.
            wait_for(lambda: not op.leading(), timeout=15, message="still acting while its renewals hang")
            timings["stopped acting"] = time.monotonic() - frozen
            subprocess.run(["docker", "service", "scale", "--detach", f"{web}=2"], check=True, capture_output=True)
            time.sleep(5)
            assert replicas(docker_api, web) == 2, "acted without the Lease"
            assert op.proc.poll() is None, op.logs()[-4000:]
            thaw = time.monotonic()
        wait_for(
            lambda: op.leading() or op.proc.poll() is not None, timeout=90, message="the Lease was not taken again"
        )
        assert op.proc.poll() is None, "the operator exited:\n" + op.logs()[-4000:]
        timings["acting again"] = time.monotonic() - thaw
        wait_for(lambda: replicas(docker_api, web) == 1, timeout=60, message="the drift was never put back")
        kube.kubectl("scale", "ssvc/web", "--replicas=3", "-n", ns)
        wait_ready(kube, ns, "web", "3/3")
        timings["edit applied after thaw"] = time.monotonic() - thaw
        assert swarm_objects(docker_api, ns) == before
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
