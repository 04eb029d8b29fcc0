"""A controller with nothing new to say says nothing: an invalid spec and a service waiting for a
dependency are reported once, and an idle pass rewrites no file."""

from __future__ import annotations

import time
from pathlib import Path

from cli_helpers import write_spec
from controller_helpers import controller
from helpers import wait_for
from test_watch import SPEC, status_of

INVALID = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: broken, namespace: {ns}}}
spec:
  image: '{image}'
  replicas: lots
"""

WAITING = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: db, namespace: {ns}}}
spec:
  image: local/no-such-image:never
  replicas: 1
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: app, namespace: {ns}}}
spec:
  image: '{image}'
  command: ["sleep", "3600"]
  dependsOn: [db]
"""


def _snapshot(folder: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*.yaml"))}


def test_idle_watch_with_an_invalid_spec_leaves_every_file_untouched(
    local_image: str, namespace: str, specs_dir: Path
) -> None:
    good = write_spec(specs_dir, "web.yaml", SPEC.format(ns=namespace, image=local_image, replicas=1))
    with controller(specs_dir, namespace, "--interval", "200ms") as ctl:
        wait_for(lambda: status_of(good).get("ready") == "1/1", timeout=60, message="never 1/1")
        bad = write_spec(specs_dir, "broken.yaml", INVALID.format(ns=namespace, image=local_image))
        wait_for(
            lambda: any(c.get("reason") == "InvalidSpec" for c in status_of(bad).get("conditions", [])),
            timeout=30,
            message="the invalid spec got no InvalidSpec condition",
        )
        time.sleep(1.0)  # let the pass that wrote it finish
        before = _snapshot(specs_dir)
        passes = ctl.metric("swarmkeeper_reconcile_total")
        wait_for(
            lambda: ctl.metric("swarmkeeper_reconcile_total") - passes >= 10 or None,
            timeout=30,
            message="fewer than ten passes",
        )
        assert _snapshot(specs_dir) == before  # bytes and mtimes, every file
        logs = ctl.logs()
    said = [line for line in logs.splitlines() if " ERROR " in line and "replicas: Input should be" in line]
    assert len(said) == 1, logs[-3000:]


def test_a_service_waiting_for_its_dependency_is_logged_once_and_says_so(
    local_image: str, namespace: str, specs_dir: Path
) -> None:
    path = write_spec(specs_dir, "stack.yaml", WAITING.format(ns=namespace, image=local_image))

    def app_ready() -> dict[str, str] | None:
        conditions = status_of(path, 1).get("conditions", [])
        return next((c for c in conditions if c.get("type") == "Ready"), None)

    with controller(specs_dir, namespace, "--interval", "200ms") as ctl:
        ready = wait_for(
            lambda: ((c := app_ready()) is not None and c.get("reason") == "DependencyNotReady" and c) or None,
            timeout=60,
            message="app never showed DependencyNotReady",
        )
        assert f"{namespace}_db" in ready["message"]
        passes = ctl.metric("swarmkeeper_reconcile_total")
        wait_for(
            lambda: ctl.metric("swarmkeeper_reconcile_total") - passes >= 5 or None,
            timeout=60,
            message="fewer than five more passes",
        )
        logs = ctl.logs()
    waits = [
        line for line in logs.splitlines() if " INFO " in line and f"SwarmService/{namespace}/app: waits for" in line
    ]
    assert len(waits) == 1, logs[-3000:]
