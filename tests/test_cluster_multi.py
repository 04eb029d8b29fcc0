"""One controller keeps several swarms: two SwarmClusters, each formed from a bare engine, each
with its own objects, served by a single ``swarmkeeper watch``.

One of them is autolocked: the unlock key lands in the file the spec names (mode 0600) and
nowhere else — not in logs, status or spec files — and a manager that restarts locked is
unlocked with it.
"""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from ruamel.yaml import YAML

from cli_helpers import write_spec
from controller_helpers import controller
from engines import EngineCluster, started_engines
from helpers import running_count, wait_for

pytestmark = pytest.mark.docker

PREFIX = "skcm"  # this module's engines: skcm1 and skcm2, two separate single-node swarms

CLUSTER = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmCluster
metadata: {{name: {name}}}
spec:
  nodes:
    - name: {node}
      engine: {{host: "unix:///run/swarmkeeper-engines/{node}.sock", timeout: 10s}}
      advertiseAddr: {address}
      listenAddr: "{address}:2377"
      role: manager
  swarm:
    dispatcherHeartbeat: 1s
    defaultAddrPool: [10.231.128.0/17]
{extra}---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: app, namespace: {name}}}
spec:
  cluster: {name}
  image: local/busybox:1
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
  restartPolicy: {{delay: 1s}}
"""


@pytest.fixture(scope="module")
def bare_engines() -> Iterator[EngineCluster]:
    """Two engines that are in no swarm: swarmkeeper forms one on each."""
    with started_engines(EngineCluster(2, prefix=PREFIX)) as engines:
        yield engines


def statuses(path: Path) -> list[dict[str, Any]]:
    return [cast(dict[str, Any], doc.get("status") or {}) for doc in YAML(typ="safe").load_all(path.read_text())]


def ready(path: Path) -> bool:
    cluster, service = statuses(path)
    conds = {c["type"]: c["status"] for c in cluster.get("conditions", [])}
    return conds.get("Ready") == "True" and service.get("ready") == "1/1"


def test_one_controller_forms_and_keeps_two_swarms(bare_engines: EngineCluster, tmp_path: Path) -> None:
    east, west = bare_engines.nodes
    specs = tmp_path / "specs"
    keys = tmp_path / "keys"  # outside the specs: a key has no business in a Git repository
    extra = "    autolock: true\n    unlockKeyFile: ../keys/east.key\n"
    east_file = write_spec(
        specs, "east.yaml", CLUSTER.format(name="east", node=east.name, address=east.address, extra=extra)
    )
    west_file = write_spec(
        specs, "west.yaml", CLUSTER.format(name="west", node=west.name, address=west.address, extra="")
    )

    with controller(specs, f"multi{uuid.uuid4().hex[:6]}", "--interval", "1s") as ctl:
        wait_for(
            lambda: ready(east_file) and ready(west_file),
            timeout=90,
            message="the two clusters never got Ready (see the status in their files)",
        )
        for node in (east, west):
            info = node.api().info()["Swarm"]
            assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is True
        assert east.api().inspect_swarm()["ID"] != west.api().inspect_swarm()["ID"]  # two swarms, not one
        assert running_count(east.api(), "east_app") == 1 and running_count(west.api(), "west_app") == 1
        assert east.api().services(filters={"name": "west_app"}) == []  # each object on its own cluster

        # Autolock: the key is where the spec says, private, and the same the swarm holds.
        key_file = keys / "east.key"
        wait_for(key_file.exists, timeout=30, message="the unlock key was not stored")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert key == east.api().get_unlock_key()["UnlockKey"] and key.startswith("SWMKEY-")
        assert west.api().inspect_swarm()["Spec"]["EncryptionConfig"]["AutoLockManagers"] is False

        # A restarted autolocked manager comes back locked; the controller unlocks it with the key.
        east.restart()
        wait_for(
            lambda: east.api().info()["Swarm"]["LocalNodeState"] == "active",
            timeout=60,
            message="the restarted manager was not unlocked",
        )
        wait_for(lambda: ready(east_file), timeout=90, message="east did not get Ready again after the restart")
        assert "unlock skcm1" in ctl.logs()

        # The key itself appears nowhere but in its file.
        squeezed = "".join(ctl.logs().split())
        assert key not in squeezed and key.removeprefix("SWMKEY-1-") not in squeezed
        for path in (east_file, west_file):
            assert key not in path.read_text()
