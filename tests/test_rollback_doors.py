"""A failed update rolled back by swarm stays rolled back, whichever front door applied it.

``test_traffic.py`` proves it for ``apply --wait``. Here the same failing release goes through
``watch`` (a spec file) and the operator (a custom resource): swarm rolls the service back to the
previous spec, the controller reports ``rollback_completed`` in the object's status, and it does
not send the failed spec again — a controller that re-applied it at every pass would turn one
failed release into a crash loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import docker

from controller_helpers import controller
from helpers import wait_for
from kube_fixtures import Kube, operator
from test_traffic import CRASH, NETWORK_SPEC, ROLLBACK, web_spec, write_workload

STABLE = 6.0  # seconds the rolled-back spec must stay (twice the update's monitor period)


def live(api: docker.APIClient, name: str) -> tuple[str | None, list[str], list[str]]:
    """(update state, env, command) of the service as swarm runs it."""
    service = api.inspect_service(name)
    spec = service["Spec"]["TaskTemplate"]["ContainerSpec"]
    return (service.get("UpdateStatus") or {}).get("State"), spec.get("Env") or [], spec.get("Command") or []


def prove_rolled_back(api: docker.APIClient, name: str, status_state: Callable[[], str | None]) -> None:
    """Swarm rolled ``name`` back to release 1, the status says so, and it stays that way."""
    wait_for(lambda: live(api, name)[0] == "rollback_completed", timeout=120, message=f"{name} rolled back")
    state, env, command = live(api, name)
    assert "RELEASE=1" in env and CRASH not in " ".join(command), (state, env, command)
    wait_for(lambda: status_state() == "rollback_completed", timeout=30, message="status says rollback_completed")
    deadline = time.monotonic() + STABLE
    while time.monotonic() < deadline:
        state, env, _ = live(api, name)
        assert state == "rollback_completed" and "RELEASE=1" in env, f"the failed release was sent again: {state} {env}"
        time.sleep(0.3)


def test_watch_keeps_a_rolled_back_service_rolled_back(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    name = f"{namespace}_web"
    spec = specs_dir / "web.yaml"
    write_workload(specs_dir, namespace, local_image, release="1", update=ROLLBACK, replicas=2, client=False)
    with controller(specs_dir, namespace) as ctl:
        wait_for(lambda: "ready: 2/2" in spec.read_text(), timeout=90, message="release 1 ready")
        text = web_spec(namespace, local_image, release="2", update=ROLLBACK, command=CRASH, replicas=2)
        # The status block goes: the controller writes it again on its next pass.
        spec.write_text(text)

        def status_state() -> str | None:
            return "rollback_completed" if "state: rollback_completed" in spec.read_text() else None

        prove_rolled_back(docker_api, name, status_state)
        assert "Traceback" not in ctl.logs()


def test_operator_keeps_a_rolled_back_service_rolled_back(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    name = f"{ns}_web"
    with operator(kube, ns, tmp_path / "operator.log") as op:
        kube.apply(NETWORK_SPEC.format(ns=ns), ns)
        kube.apply(web_spec(ns, local_image, release="1", update=ROLLBACK, replicas=2), ns)

        def ready() -> bool:
            status = cast(dict[str, Any], kube.get("ssvc/web", ns).get("status") or {})
            return status.get("ready") == "2/2"

        wait_for(ready, timeout=90, message="release 1 ready")
        kube.apply(web_spec(ns, local_image, release="2", update=ROLLBACK, command=CRASH, replicas=2), ns)

        def status_state() -> str | None:
            status = cast(dict[str, Any], kube.get("ssvc/web", ns).get("status") or {})
            return cast(str | None, (status.get("update") or {}).get("state"))

        prove_rolled_back(docker_api, name, status_state)
        assert "Traceback" not in op.logs()
