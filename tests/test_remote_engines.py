"""SwarmCluster engines reached over TCP with TLS and over SSH, on real engines and a real sshd.

Three bare engines (``skrem1..3``) serve ``tcp://10.231.0.i:2376`` with ``--tlsverify``; an sshd
in ``skrem2``'s namespace logs root in (by key, host key checked) to that node's engine. Every
swarmkeeper process runs in the bridge's namespace, the only place those addresses exist. One
SwarmCluster whose nodes are all reached over TLS forms a three-manager swarm from the bare
engines; objects are then applied through a cluster whose ``engine`` is TLS or ssh, and watch
follows edits and the remote engine's own events. A fourth engine (``skremq1``, a swarm of its own
on a separate bridge) is the controllers' default engine: it holds their lease and is otherwise
quiet, so only the remote event streams can wake them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import docker
import pytest
from ruamel.yaml import YAML

from cli_helpers import CliResult, write_spec
from engines import DaemonTLS, EngineCluster, EngineNode, running_swarm, started_engines
from helpers import wait_for
from remote_fixtures import Pki, SSHServer, Watch, make_pki, sk_on_bridge, ssh_keypair, sshd, watch_on_bridge

pytestmark = pytest.mark.docker

PREFIX = "skrem"  # the swarm's engines: skrem1..3
QUIET_PREFIX = "skremq"  # the controllers' default engine, on a bridge of its own
CONTROLLER_ADDRESS = "10.231.0.100"  # swarmkeeper's address on the bridge
ADDRESSES = [f"10.231.0.{i}" for i in (1, 2, 3)]


@dataclass
class Remote:
    engines: EngineCluster
    quiet: EngineNode
    pki: Pki
    other: Pki  # a second CA, with its own client certificate: trusted by nobody here
    ssh: SSHServer
    identity: Path
    bootstrap: CliResult
    cluster_specs: Path

    def sk(self, *args: str | Path, env: dict[str, str] | None = None) -> CliResult:
        return sk_on_bridge(self.engines, *args, env=env)

    def watch(self, specs: Path, source: str) -> AbstractContextManager[Watch]:
        # --interval 5m: within a test, only file changes and engine events make a pass.
        return watch_on_bridge(self.engines, specs, source, "--interval", "5m", "-H", self.quiet.socket)


def tls_block(pki: Pki, specs: Path, *, ca: Path | None = None, client: Pki | None = None) -> str:
    """An ``engine.tls`` flow mapping, its files relative to the specs folder."""
    client = client or pki

    def rel(path: Path) -> str:
        return os.path.relpath(path, specs)

    return f"{{caFile: {rel(ca or pki.ca)}, certFile: {rel(client.client_cert)}, keyFile: {rel(client.client_key)}}}"


def cluster_spec(name: str, host: str, transport: str) -> str:
    return f"""\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmCluster
metadata: {{name: {name}}}
spec:
  engine:
    host: {host}
    timeout: 20s
    {transport}
"""


def service_spec(cluster: str, namespace: str, replicas: int) -> str:
    return f"""\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: app, namespace: {namespace}}}
spec:
  cluster: {cluster}
  image: local/busybox:1
  resolveImage: never
  command: ["sleep", "3600"]
  replicas: {replicas}
  stopGracePeriod: 1s
  restartPolicy: {{delay: 1s}}
"""


def three_node_cluster(pki: Pki, specs: Path) -> str:
    nodes = "".join(
        f"""\
    - name: {PREFIX}{i}
      engine: {{host: "tcp://{address}:2376", timeout: 20s, tls: {tls_block(pki, specs)}}}
      advertiseAddr: {address}
      listenAddr: "{address}:2377"
      role: manager
"""
        for i, address in enumerate(ADDRESSES, start=1)
    )
    return f"""\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmCluster
metadata: {{name: tri}}
spec:
  nodes:
{nodes}  swarm:
    dispatcherHeartbeat: 1s
    defaultAddrPool: [10.231.128.0/17]
    subnetSize: 24
"""


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    folder = tmp_path_factory.mktemp("remote")
    pki = make_pki(folder / "pki", "lab", ADDRESSES)
    other = make_pki(folder / "pki", "other", ADDRESSES)
    tls = DaemonTLS(pki.ca, pki.server_cert, pki.server_key)

    def bridged(cluster: EngineCluster) -> None:
        cluster.join_bridge(CONTROLLER_ADDRESS)  # swarmkeeper runs on the bridge to reach tcp://

    with (
        started_engines(EngineCluster(3, prefix=PREFIX, tls=tls), bridged) as engines,
        running_swarm(1, prefix=QUIET_PREFIX) as quiet,
    ):
        identity = folder / "id_ed25519"
        with sshd(engines.nodes[1], folder / "sshd", [ssh_keypair(identity, "swarmkeeper")]) as server:
            specs = folder / "cluster"
            write_spec(specs, "cluster.yaml", three_node_cluster(pki, specs))
            bootstrap = sk_on_bridge(engines, "apply", specs, "--source", "tri", "-v")
            yield Remote(engines, quiet.nodes[0], pki, other, server, identity, bootstrap, specs)


@pytest.fixture
def swarm(remote: Remote) -> Remote:
    """The remote fixture once its three-node swarm is formed (the bootstrap test checks how)."""
    assert remote.bootstrap.code == 0, remote.bootstrap.output
    remote.engines.wait_healthy(timeout=60)
    return remote


def file_statuses(path: Path) -> list[dict[str, Any]]:
    return [
        cast(dict[str, Any], (doc or {}).get("status") or {}) for doc in YAML(typ="safe").load_all(path.read_text())
    ]


def replicas(api: docker.APIClient, name: str) -> int | None:
    found = api.services(filters={"name": name})
    match = [s for s in found if s["Spec"]["Name"] == name]
    return int(match[0]["Spec"]["Mode"]["Replicated"]["Replicas"]) if match else None


def scale_out_of_band(api: docker.APIClient, name: str, count: int) -> None:
    """What ``docker service scale`` does, behind swarmkeeper's back."""
    spec = api.inspect_service(name)
    api.update_service(
        spec["ID"], spec["Version"]["Index"], task_template=spec["Spec"]["TaskTemplate"], name=name,
        labels=spec["Spec"].get("Labels"), mode={"Replicated": {"Replicas": count}},
    )  # fmt: skip


def one_line_error(result: CliResult) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def assert_no_key_material(text: str, *keys: Path) -> None:
    assert "PRIVATE KEY" not in text
    for key in keys:
        for line in key.read_text().splitlines():
            if len(line) > 20 and not line.startswith("-----"):
                assert line not in text, f"a line of {key.name} was shown"


# --- a swarm formed over TLS -----------------------------------------------------------------------


def test_a_three_node_swarm_whose_nodes_are_reached_over_tls_bootstraps_healthy(remote: Remote) -> None:
    result = remote.bootstrap
    assert result.code == 0, result.output
    for line in (
        f"SwarmCluster/tri: initialise the swarm on {PREFIX}1",
        f"SwarmCluster/tri: join {PREFIX}2 as manager",
        f"SwarmCluster/tri: join {PREFIX}3 as manager",
    ):
        assert line in result.stdout, result.output
    seen = remote.engines.wait_healthy(timeout=60)  # three ready managers, one leader
    assert {n["Status"]["Addr"] for n in seen.values()} == set(ADDRESSES)

    # The status, read over the same TLS connections, agrees; and there is nothing left to do.
    nodes = remote.sk("nodes", "-f", remote.cluster_specs, "-o", "json")
    assert nodes.code == 0, nodes.output
    status = json.loads(nodes.stdout)
    assert status["managers"] == "3/3" and status["leader"] == f"{PREFIX}1"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    again = remote.sk("apply", remote.cluster_specs, "--source", "tri")
    assert again.code == 0 and "no changes" in again.stdout, again.output


# --- objects over TLS and over ssh ------------------------------------------------------------------


def transport(remote: Remote, kind: str, specs: Path) -> tuple[str, str, EngineNode]:
    """(host, the engine's tls/ssh line, the node that host is) for ``kind``."""
    if kind == "tls":
        node = remote.engines.nodes[0]
        return node.tcp_host, f"tls: {tls_block(remote.pki, specs)}", node
    known_hosts = specs.parent / "known_hosts"
    known_hosts.write_text(remote.ssh.known_hosts())
    identity = os.path.relpath(remote.identity, specs)
    block = f"ssh: {{identityFile: {identity}, knownHostsFile: ../known_hosts}}"
    return remote.ssh.url, block, remote.ssh.node


@pytest.mark.parametrize("kind", ["tls", "ssh"])
def test_apply_get_and_watch_through_a_remote_engine(swarm: Remote, kind: str, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    host, block, node = transport(swarm, kind, specs)
    cluster, namespace = f"far{kind}", f"via{kind}"
    name = f"{namespace}_app"
    write_spec(specs, "cluster.yaml", cluster_spec(cluster, host, block))
    app = write_spec(specs, "app.yaml", service_spec(cluster, namespace, 2))
    source = f"{kind}{uuid.uuid4().hex[:6]}"

    applied = swarm.sk("apply", specs, "--source", source, "--wait", "--timeout", "60s")
    assert applied.code == 0, applied.output
    assert re.search(rf"\+ create\s+SwarmService/{namespace}/app", applied.stdout), applied.output
    assert replicas(node.api(), name) == 2

    # get asks the cluster's engine, reached as its spec says.
    listed = swarm.sk("get", "services", "--cluster", cluster, "-f", specs, "-n", namespace, "-o", "json")
    assert listed.code == 0, listed.output
    (item,) = json.loads(listed.stdout)
    assert item["metadata"] == {"name": "app", "namespace": namespace} and item["status"]["ready"] == "2/2"
    if kind == "tls":  # the default engine takes TLS from the environment, as the docker CLI does
        certs = tmp_path / "docker-certs"
        certs.mkdir()
        for source_file, target in ((swarm.pki.ca, "ca.pem"), (swarm.pki.client_cert, "cert.pem")):
            shutil.copy(source_file, certs / target)
        shutil.copy(swarm.pki.client_key, certs / "key.pem")
        env = {"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
        by_env = swarm.sk("get", "services", "-n", namespace, "-o", "json", env=env)
        assert by_env.code == 0 and json.loads(by_env.stdout)[0]["status"]["ready"] == "2/2", by_env.output

    with swarm.watch(specs, source) as watch:
        wait_for(
            lambda: file_statuses(app)[0].get("ready") == "2/2" or not watch.alive(),
            timeout=60,
            message="watch never wrote 2/2",
        )
        assert watch.alive(), watch.logs()[-3000:]

        # An edit is followed ...
        app.write_text(service_spec(cluster, namespace, 3))
        wait_for(lambda: file_statuses(app)[0].get("ready") == "3/3", timeout=60, message="the edit was not applied")
        assert replicas(node.api(), name) == 3

        # ... and so is the remote engine: a change made there (through another node's socket) is an
        # event on the stream watch holds over TLS or ssh, which wakes a pass (reason engine:<cluster>;
        # the default engine's events say "engine", and the resync is 5 minutes away).
        mark = len(watch.logs())
        scaled = time.monotonic()
        scale_out_of_band(swarm.engines.nodes[2].api(), name, 1)
        wait_for(lambda: replicas(node.api(), name) == 3, timeout=20, message="the drift was not put back")
        took = time.monotonic() - scaled
        wait_for(lambda: "drift corrected" in watch.logs()[mark:], timeout=10, message="no drift logged")

        def woken_by_cluster() -> bool:
            reasons = re.findall(r"pass \(([^)]*)\)", watch.logs()[mark:])
            return any(f"engine:{cluster}" in r.split(",") for r in reasons)

        wait_for(woken_by_cluster, timeout=10, message=f"no pass was woken by an event of {cluster}")
        print(f"\n[remote] {kind}: scaled out of band, put back after {took:.1f}s")
    logs = watch.logs()
    assert watch.proc.returncode == 0, logs[-3000:]
    assert "unavailable" not in logs, logs[-3000:]


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["wrong CA", "wrong client certificate", "unknown ssh host key"])
def test_an_engine_that_refuses_is_named_in_one_line_and_nothing_changes(
    swarm: Remote, case: str, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    node = swarm.engines.nodes[0]
    if case == "wrong CA":
        host, block = node.tcp_host, f"tls: {tls_block(swarm.pki, specs, ca=swarm.other.ca)}"
        why = "TLS: the engine's certificate was not accepted"
    elif case == "wrong client certificate":
        host, block = node.tcp_host, f"tls: {tls_block(swarm.pki, specs, client=swarm.other)}"
        why = "TLS: the engine refused this client"
    else:
        node = swarm.ssh.node
        (tmp_path / "known_hosts").write_text("")  # the host is not known: refused, never added
        identity = os.path.relpath(swarm.identity, specs)
        host, block = swarm.ssh.url, f"ssh: {{identityFile: {identity}, knownHostsFile: ../known_hosts}}"
        why = "ssh: No ED25519 host key is known for 10.231.0.2"
    write_spec(specs, "cluster.yaml", cluster_spec("guarded", host, block))
    write_spec(specs, "app.yaml", service_spec("guarded", "refused", 1))

    commands: list[list[str | Path]] = [
        ["apply", specs, "--source", "refused"],
        ["get", "--cluster", "guarded", "-f", specs],
    ]
    for command in commands:
        result = swarm.sk(*command)
        assert result.code == 1, result.output
        line = one_line_error(result)
        assert line.startswith(f"error: cluster guarded: cannot reach the Docker engine at {host}: {why}"), line
        assert_no_key_material(result.output, swarm.pki.client_key, swarm.other.client_key, swarm.identity)
    assert replicas(node.api(), "refused_app") is None
    if case == "unknown ssh host key":
        assert (tmp_path / "known_hosts").read_text() == ""  # refused, not learnt


def test_watch_keeps_the_reachable_cluster_converged_and_reports_the_refusing_one(
    swarm: Remote, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    good, bad = swarm.engines.nodes[0], swarm.engines.nodes[2]
    write_spec(specs, "good.yaml", cluster_spec("good", good.tcp_host, f"tls: {tls_block(swarm.pki, specs)}"))
    bad_tls = tls_block(swarm.pki, specs, client=swarm.other)
    write_spec(specs, "bad.yaml", cluster_spec("bad", bad.tcp_host, f"tls: {bad_tls}"))
    good_app = write_spec(specs, "good-app.yaml", service_spec("good", "goodapp", 1))
    write_spec(specs, "bad-app.yaml", service_spec("bad", "badapp", 1))

    report = f"cluster bad unavailable: cannot reach the Docker engine at {bad.tcp_host}: TLS: the engine refused"
    with swarm.watch(specs, f"two{uuid.uuid4().hex[:6]}") as watch:
        wait_for(
            lambda: file_statuses(good_app)[0].get("ready") == "1/1" or not watch.alive(),
            timeout=60,
            message="the reachable cluster was not applied",
        )
        assert watch.alive(), watch.logs()[-3000:]
        wait_for(lambda: report in " ".join(watch.logs().split()), timeout=20, message="the refusal was not reported")

        # The reachable cluster keeps being served: edits, and drift its events announce.
        good_app.write_text(service_spec("good", "goodapp", 2))
        wait_for(lambda: file_statuses(good_app)[0].get("ready") == "2/2", timeout=60, message="edit not applied")
        scale_out_of_band(bad.api(), "goodapp_app", 1)
        wait_for(lambda: replicas(good.api(), "goodapp_app") == 2, timeout=40, message="drift not put back")
        assert watch.alive()
    logs = " ".join(watch.logs().split())
    assert logs.count(report) == 1, "the lasting refusal was logged more than once"
    retries = "WARNING swarmkeeper.controller.engine_events: cluster bad events unavailable"
    assert logs.count(retries) == 1, "the event stream's retries were logged more than once"
    assert replicas(bad.api(), "badapp_app") is None  # nothing reached the refusing engine
    assert_no_key_material(watch.logs(), swarm.pki.client_key, swarm.other.client_key)
