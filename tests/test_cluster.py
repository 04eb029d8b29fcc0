"""One SwarmCluster spec forms and keeps a real three-node swarm (three separate dockerd engines).

The course's cluster — init on node 1, join nodes 2 and 3, all managers — from bare engines, then
the overlay exercise across the nodes, node labels and placement, drain, demote/promote, a node
crash, quorum refusals, a node leaving the spec and a stranger joining. The tests share one
cluster and run in file order; each starts from the base spec, so each also runs alone.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import docker
import pytest
from ruamel.yaml import YAML

from cli_helpers import CliResult, sk, write_spec
from controller_helpers import controller
from engines import EngineCluster, EngineNode, started_engines
from helpers import exec_in_service, service_tasks, wait_for

pytestmark = pytest.mark.docker

PREFIX = "skcl"  # this module's engines: skcl1..3 in their own network namespaces
NAMES = [f"{PREFIX}{i}" for i in (1, 2, 3)]
SECOND = 1_000_000_000


def base_spec(nodes: list[EngineNode]) -> dict[str, Any]:
    return {
        "apiVersion": "swarmkeeper.io/v1alpha1",
        "kind": "SwarmCluster",
        "metadata": {"name": "lab"},
        "spec": {
            "nodes": [
                {
                    "name": n.name,
                    "engine": {"host": n.socket, "timeout": "10s"},
                    "advertiseAddr": n.address,
                    "listenAddr": f"{n.address}:2377",
                    "role": "manager",
                }
                for n in nodes
            ],
            "swarm": {
                "dispatcherHeartbeat": "1s",  # a dead node is noticed in seconds, not ~15
                "taskHistoryLimit": 2,
                "defaultAddrPool": ["10.231.128.0/17"],  # inside the private bridge's range
                "subnetSize": 24,
            },
            "rotateJoinTokens": 1,
        },
    }


class Lab:
    """The cluster spec in a specs folder, and the engines it describes."""

    def __init__(self, engines: EngineCluster, specs: Path) -> None:
        self.engines = engines
        self.specs = specs
        self.source = f"lab{uuid.uuid4().hex[:6]}"
        self.spec = base_spec(engines.nodes)
        self.preview: CliResult | None = None
        self.bootstrap: CliResult | None = None

    @property
    def path(self) -> Path:
        return self.specs / "cluster.yaml"

    def node(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], next(n for n in self.spec["spec"]["nodes"] if n["name"] == name))

    def write(self) -> None:
        buf = io.StringIO()
        YAML().dump(self.spec, buf)
        self.path.write_text(buf.getvalue())

    def apply(self, *args: str) -> CliResult:
        self.write()
        return sk("apply", self.specs, "--source", self.source, *args)

    def reset(self) -> None:
        """Back to the base spec (three ready managers), whatever the last test left."""
        self.spec = base_spec(self.engines.nodes)
        result = self.apply()
        assert result.code == 0, result.output

    def status(self) -> dict[str, Any]:
        """The cluster's status as swarmkeeper computes it (read-only)."""
        result = sk("nodes", "-f", self.path, "-o", "json")
        assert result.code == 0, result.output
        return cast(dict[str, Any], json.loads(result.stdout))

    def api(self, index: int = 0) -> docker.APIClient:
        return self.engines.nodes[index].api()

    def ids(self) -> dict[str, str]:
        return {name: cast(str, n["ID"]) for name, n in self.engines.swarm_nodes().items()}


def flat(text: str) -> str:
    """Log lines as one line: the console wraps long messages."""
    return " ".join(text.split())


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions", [])}


def file_status(path: Path) -> dict[str, Any]:
    doc = YAML(typ="safe").load(path.read_text())
    return cast(dict[str, Any], doc.get("status") or {})


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Three bare engines (no swarm), and the SwarmCluster spec applied to them once."""
    with started_engines(EngineCluster(3, prefix=PREFIX)) as engines:
        specs = tmp_path_factory.mktemp("lab") / "specs"
        specs.mkdir()
        lab = Lab(engines, specs)
        assert [n.swarm_state() for n in engines.nodes] == ["inactive"] * 3
        lab.write()
        lab.preview = sk("diff", specs, "--source", lab.source)
        lab.bootstrap = lab.apply("-v")
        yield lab


# --- bootstrap ----------------------------------------------------------------------------------------


def test_one_spec_bootstraps_leader_and_two_managers_from_bare_engines(lab: Lab) -> None:
    # The plan could be seen first, and seeing it changed nothing (apply found the engines bare).
    preview = lab.preview
    assert preview is not None and preview.code == 1, preview.output if preview else ""
    assert "SwarmCluster/lab: initialise the swarm on skcl1" in preview.stdout
    assert "SwarmCluster/lab: join skcl3 as manager" in preview.stdout

    result = lab.bootstrap
    assert result is not None and result.code == 0, result.output if result else ""
    for line in (
        "SwarmCluster/lab: initialise the swarm on skcl1",
        "SwarmCluster/lab: join skcl2 as manager",
        "SwarmCluster/lab: join skcl3 as manager",
    ):
        assert line in result.stdout
    seen = lab.engines.wait_healthy(timeout=60)
    assert sorted(seen) == NAMES
    assert seen["skcl1"]["ManagerStatus"]["Leader"] is True
    for name, node in seen.items():
        assert node["Spec"]["Role"] == "manager" and node["ManagerStatus"]["Reachability"] == "reachable"
        assert node["Status"]["Addr"] == lab.node(name)["advertiseAddr"]
        assert node["Spec"]["Labels"]["io.swarmkeeper.node"] == name
    swarm = lab.api().inspect_swarm()
    assert swarm["Spec"]["Dispatcher"]["HeartbeatPeriod"] == 1 * SECOND
    assert swarm["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 2
    assert swarm["DefaultAddrPool"] == ["10.231.128.0/17"]

    # A second pass over the same spec has nothing to do; the status says all is well.
    again = lab.apply()
    assert again.code == 0 and "no changes" in again.stdout, again.output
    status = lab.status()
    assert conditions(status)["Ready"]["status"] == "True"
    assert conditions(status)["QuorumHealthy"]["status"] == "True"
    assert conditions(status)["AllNodesReady"]["status"] == "True"
    assert status["leader"] == "skcl1" and status["managers"] == "3/3"
    assert [(n["name"], n["role"], n["state"]) for n in status["nodes"]] == [(n, "manager", "ready") for n in NAMES]
    assert all(n["engineVersion"] for n in status["nodes"])

    # `get nodes` answers from an engine alone, without specs.
    listed = sk("get", "nodes", "-H", lab.engines.nodes[1].socket, "-o", "json")
    assert listed.code == 0 and [n["name"] for n in json.loads(listed.stdout)["nodes"]] == NAMES


def test_settings_change_and_a_bumped_rotate_join_tokens_rotates_them_once_never_shown(lab: Lab) -> None:
    lab.reset()
    before = lab.api().inspect_swarm()["JoinTokens"]
    lab.spec["spec"]["rotateJoinTokens"] = 2
    lab.spec["spec"]["swarm"]["taskHistoryLimit"] = 3
    result = lab.apply("-vv")
    assert result.code == 0, result.output
    assert "update swarm settings: taskHistoryLimit, rotate join tokens" in result.stdout, result.output
    swarm = lab.api().inspect_swarm()
    assert swarm["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 3
    assert swarm["Spec"]["Dispatcher"]["HeartbeatPeriod"] == 1 * SECOND  # the rest of the spec is kept
    after = swarm["JoinTokens"]
    assert after["Worker"] != before["Worker"] and after["Manager"] != before["Manager"]
    squeezed = "".join(result.output.split())  # a wrapped line could split a token
    for token in (*before.values(), *after.values()):
        assert token not in squeezed
    assert "no changes" in lab.apply().stdout  # the marker is recorded in the swarm: no second rotation


# --- the overlay exercise -------------------------------------------------------------------------------

OVERLAY = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmNetwork
metadata: {{name: backend, namespace: ovl}}
spec: {{cluster: lab{encrypted}}}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: server, namespace: ovl}}
spec:
  cluster: lab
  image: local/busybox:1
  command: ["nc", "-ll", "-p", "7000", "-e", "hostname"]
  hostname: "server-{{{{.Node.Hostname}}}}"
  replicas: 3
  endpointMode: dnsrr
  stopGracePeriod: 1s
  restartPolicy: {{delay: 1s}}
  networks: [{{name: backend}}]
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: client, namespace: ovl}}
spec:
  cluster: lab
  image: local/busybox:1
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
  networks: [{{name: backend}}]
  placement: {{constraints: ["node.hostname == skcl1"]}}
"""


def task_addresses(api: docker.APIClient, service: str, name: str) -> list[str]:
    output = exec_in_service(api, service, ["nslookup", name], check=False)
    return sorted(set(re.findall(r"^Address:?\s+(\d+\.\d+\.\d+\.\d+)\s*$", output, flags=re.MULTILINE)))


def running_on(api: docker.APIClient, service: str) -> list[str]:
    return sorted(
        cast(str, t["NodeID"]) for t in service_tasks(api, service) if t.get("Status", {}).get("State") == "running"
    )


def test_overlay_services_spread_across_nodes_and_talk_across_them(lab: Lab) -> None:
    lab.reset()
    write_spec(lab.specs, "overlay.yaml", OVERLAY.format(encrypted=""))
    result = lab.apply("--wait", "--timeout", "120s")
    assert result.code == 0, result.output
    api, ids = lab.api(), lab.ids()
    assert running_on(api, "ovl_server") == sorted(ids.values()), "the three replicas are not on three nodes"

    def three() -> list[str] | None:
        found = task_addresses(api, "ovl_client", "tasks.server")
        return found if len(found) == 3 else None

    addresses = wait_for(three, timeout=60, message="tasks.server does not resolve to three addresses")

    def hostnames() -> set[str] | None:
        answers = {
            exec_in_service(api, "ovl_client", ["sh", "-c", f"nc -w 3 {ip} 7000 </dev/null"], check=False)
            for ip in addresses
        }
        return answers if answers == {f"server-{n}" for n in NAMES} else None

    wait_for(hostnames, timeout=60, interval=1.0, message="not every task answered across the overlay")


ENCRYPTED = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmNetwork
metadata: {name: secure, namespace: enc}
spec: {cluster: lab, encrypted: true}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {name: near, namespace: enc}
spec:
  cluster: lab
  image: local/busybox:1
  command: ["nc", "-ll", "-p", "7000", "-e", "hostname"]
  hostname: "{{.Node.Hostname}}"
  endpointMode: dnsrr
  stopGracePeriod: 1s
  networks: [{name: secure}]
  placement: {constraints: ["node.hostname == skcl1"]}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {name: far, namespace: enc}
spec:
  cluster: lab
  image: local/busybox:1
  command: ["nc", "-ll", "-p", "7000", "-e", "hostname"]
  hostname: "{{.Node.Hostname}}"
  endpointMode: dnsrr
  stopGracePeriod: 1s
  networks: [{name: secure}]
  placement: {constraints: ["node.hostname == skcl2"]}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {name: probe, namespace: enc}
spec:
  cluster: lab
  image: local/busybox:1
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
  networks: [{name: secure}]
  placement: {constraints: ["node.hostname == skcl1"]}
"""


def kernel_has_esp_gcm() -> bool:
    """Encrypted overlays are IPsec ESP with AES-GCM (``rfc4106(gcm(aes))``) between nodes."""
    return "gcm(aes)" in Path("/proc/crypto").read_text()


def test_encrypted_overlay_works_on_one_node_and_across_nodes_only_with_kernel_esp(lab: Lab) -> None:
    lab.reset()
    write_spec(lab.specs, "encrypted.yaml", ENCRYPTED)
    result = lab.apply("--wait", "--timeout", "120s")
    assert result.code == 0, result.output
    api = lab.api()
    assert "encrypted" in api.inspect_network("enc_secure")["Options"]

    def answer(target: str) -> str:
        return exec_in_service(api, "enc_probe", ["sh", "-c", f"nc -w 3 {target} 7000 </dev/null"], check=False)

    # Same node: the traffic never leaves skcl1, so there is nothing to encrypt, and it works.
    wait_for(lambda: answer("near") == "skcl1", timeout=60, interval=1.0, message="no answer on one node")
    # Across nodes: it takes ESP. Without it the engine cannot install the IPsec state, and the
    # traffic is dropped — never sent in the clear.
    wait_for(lambda: len(task_addresses(api, "enc_probe", "far")) == 1, timeout=60, message="far does not resolve")
    if kernel_has_esp_gcm():
        wait_for(lambda: answer("far") == "skcl2", timeout=60, interval=1.0, message="no answer across nodes")
    else:
        answers = {answer("far") for _ in range(3)}
        assert "skcl2" not in answers, "encrypted traffic crossed nodes on a kernel without ESP/AES-GCM"
        log = lab.engines.nodes[0].log_path.read_text(errors="replace")
        assert re.search(r"Failed Adding .*rfc4106\(gcm\(aes\)\).*function not implemented", log), (
            "the engine did not report why"
        )


# --- labels, placement, drain ----------------------------------------------------------------------------

EDGE = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {name: edge, namespace: place}
spec:
  cluster: lab
  image: local/busybox:1
  command: ["sleep", "3600"]
  replicas: 3
  stopGracePeriod: 1s
  placement: {constraints: ["node.labels.zone == edge"]}
"""


def test_a_constraint_on_a_node_label_lands_tasks_on_the_labelled_node_only(lab: Lab) -> None:
    lab.reset()
    lab.node("skcl2")["labels"] = {"zone": "edge"}
    assert lab.apply().code == 0
    labels = lab.engines.swarm_nodes()["skcl2"]["Spec"]["Labels"]
    assert labels["zone"] == "edge"
    write_spec(lab.specs, "edge.yaml", EDGE)
    result = lab.apply("--wait", "--timeout", "120s")
    assert result.code == 0, result.output
    assert running_on(lab.api(), "place_edge") == [lab.ids()["skcl2"]] * 3
    assert [n["labels"] for n in lab.status()["nodes"]] == [{}, {"zone": "edge"}, {}]
    (lab.specs / "edge.yaml").unlink()
    sk("delete", "service", "edge", "-n", "place", "-H", lab.engines.nodes[0].socket)


def test_drain_moves_tasks_off_the_node_and_active_lets_them_back(lab: Lab) -> None:
    lab.reset()
    write_spec(lab.specs, "overlay.yaml", OVERLAY.format(encrypted=""))
    assert lab.apply("--wait", "--timeout", "120s").code == 0
    api, skcl2 = lab.api(), lab.ids()["skcl2"]
    wait_for(lambda: skcl2 in running_on(api, "ovl_server"), timeout=60, message="no server task on skcl2")

    lab.node("skcl2")["availability"] = "drain"
    result = lab.apply()
    assert result.code == 0 and "availability active → drain" in result.stdout, result.output

    def moved() -> bool:
        nodes = running_on(api, "ovl_server")
        return len(nodes) == 3 and skcl2 not in nodes

    wait_for(moved, timeout=90, message="server tasks did not leave the drained node")
    assert lab.status()["nodes"][1]["availability"] == "drain"
    lab.reset()
    assert lab.engines.swarm_nodes()["skcl2"]["Spec"]["Availability"] == "active"


# --- managers and quorum -----------------------------------------------------------------------------------


def test_demote_and_promote_keep_quorum_and_even_counts_are_warned_about(lab: Lab) -> None:
    lab.reset()
    lab.node("skcl3")["role"] = "worker"
    result = lab.apply()
    assert result.code == 0 and "role manager → worker" in result.stdout, result.output
    assert "2 managers: an even number tolerates no more failures than 1" in flat(result.stderr)
    seen = lab.engines.swarm_nodes()
    assert seen["skcl3"]["Spec"]["Role"] == "worker" and not seen["skcl3"].get("ManagerStatus")
    status = lab.status()
    assert status["managers"] == "2/2" and conditions(status)["QuorumHealthy"]["status"] == "True"

    lab.node("skcl3")["role"] = "manager"
    result = lab.apply()
    assert result.code == 0 and "role worker → manager" in result.stdout, result.output
    seen = lab.engines.wait_healthy(timeout=60)
    assert seen["skcl3"]["ManagerStatus"]["Reachability"] == "reachable"
    assert lab.status()["managers"] == "3/3"


def test_a_killed_node_is_down_within_seconds_its_tasks_move_and_quorum_holds(lab: Lab) -> None:
    lab.reset()
    write_spec(lab.specs, "overlay.yaml", OVERLAY.format(encrypted=""))
    assert lab.apply("--wait", "--timeout", "120s").code == 0
    api, ids = lab.api(), lab.ids()
    wait_for(lambda: ids["skcl3"] in running_on(api, "ovl_server"), timeout=60, message="no server task on skcl3")
    victim = lab.engines.nodes[2]
    with controller(lab.specs, lab.source, "--interval", "1s") as ctl:
        wait_for(
            lambda: conditions(file_status(lab.path)).get("Ready", {}).get("status") == "True",
            timeout=60,
            message="the controller never reported the cluster Ready",
        )
        killed = time.monotonic()
        victim.stop(kill=True)

        def victim_down() -> bool:
            nodes = file_status(lab.path).get("nodes") or []
            return any(n["name"] == "skcl3" and n["state"] == "down" for n in nodes)

        wait_for(victim_down, timeout=10, interval=0.1, message="status did not show skcl3 down within 10 s")
        print(f"\n[cluster] skcl3 killed: Down in the status after {time.monotonic() - killed:.1f}s")
        status = file_status(lab.path)
        assert status["managers"] == "2/3"
        quorum = conditions(status)["QuorumHealthy"]
        assert quorum["status"] == "True", quorum
        assert conditions(status)["AllNodesReady"]["status"] == "False"

        def rescheduled() -> bool:
            nodes = running_on(api, "ovl_server")
            return len(nodes) == 3 and ids["skcl3"] not in nodes

        wait_for(rescheduled, timeout=90, message="server tasks did not come back on skcl1/skcl2")

        # With skcl3 down, demoting skcl2 would leave skcl1 alone of two managers: refused, as a whole.
        lab.node("skcl2")["role"] = "worker"
        lab.node("skcl1")["labels"] = {"refused": "too"}
        lab.write()

        def refused() -> dict[str, Any] | None:
            ready = conditions(file_status(lab.path)).get("Ready", {})
            return ready if ready.get("reason") == "WouldLoseQuorum" else None

        ready = wait_for(refused, timeout=30, message="the controller did not refuse the demotion")
        assert "demoting skcl2 would leave 1 reachable of 2 managers" in ready["message"], ready
        result = sk("apply", lab.specs, "--source", lab.source)
        assert result.code == 1 and "refused: demoting skcl2" in flat(result.stderr), result.output
        seen = lab.engines.swarm_nodes()
        assert seen["skcl2"]["Spec"]["Role"] == "manager" and "refused" not in seen["skcl1"]["Spec"]["Labels"]
        assert ctl.proc.poll() is None

    # The crashed node comes back from its own state: no action needed, the status recovers.
    lab.spec = base_spec(lab.engines.nodes)
    victim.start()
    lab.engines.wait_healthy(timeout=90)
    lab.reset()
    assert conditions(lab.status())["AllNodesReady"]["status"] == "True"


# --- membership ---------------------------------------------------------------------------------------------


def test_a_node_that_leaves_the_spec_is_drained_told_to_leave_and_removed(lab: Lab) -> None:
    lab.reset()
    lab.spec["spec"]["nodes"] = lab.spec["spec"]["nodes"][:2]
    result = lab.apply("-v")
    assert result.code == 0 and "SwarmCluster/lab: remove node skcl3 (left the spec)" in result.stdout, result.output
    assert sorted(lab.engines.swarm_nodes()) == ["skcl1", "skcl2"]
    assert lab.engines.nodes[2].swarm_state() == "inactive"  # it left, not just dropped by the managers

    # A node that joins by itself (someone had a token) is not trusted: reported, not used, not removed ...
    stranger = lab.engines.nodes[2]
    token = lab.api().inspect_swarm()["JoinTokens"]["Worker"]
    stranger.api().join_swarm(
        remote_addrs=["10.231.0.1:2377"],
        join_token=token,
        listen_addr=f"{stranger.address}:2377",
        advertise_addr=stranger.address,
    )
    wait_for(lambda: "skcl3" in lab.engines.swarm_nodes(), timeout=30, message="skcl3 did not join")
    result = lab.apply()
    assert result.code == 0 and "node skcl3" in flat(result.stderr) and "not in spec.nodes" in flat(result.stderr)
    status = lab.status()
    assert [n["name"] for n in status["unknownNodes"]] == ["skcl3"]
    assert [n["name"] for n in status["nodes"]] == ["skcl1", "skcl2"]
    # ... until asked for.
    lab.spec["spec"]["removeUnknownNodes"] = True
    result = lab.apply()
    assert result.code == 0 and "remove node skcl3 (not in spec.nodes)" in result.stdout, result.output
    assert sorted(lab.engines.swarm_nodes()) == ["skcl1", "skcl2"]
    assert lab.status()["unknownNodes"] == []
    stranger.api().leave_swarm(force=True)  # its engine was never ours to tell

    # Back in the spec, it joins again as a manager.
    lab.reset()
    assert sorted(lab.engines.wait_healthy(timeout=60)) == NAMES
