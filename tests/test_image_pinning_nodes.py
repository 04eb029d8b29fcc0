"""Every node of a three-node swarm pulls the pinned image from a real registry.

The registry (Debian's docker-registry) runs in the namespace of the nodes' bridge, at an address
only they reach; the nodes treat it as insecure (plain HTTP) and, unlike the other test engines,
pull their tasks' images. swarmkeeper applies through node 1 and pins the tag to its digest; the
image exists on node 1 only, so tasks running on nodes 2 and 3 prove those nodes pulled it, by
the digest the service names.
"""

from __future__ import annotations

import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import sk, write_spec
from engines import LOCAL_IMAGE, EngineCluster, EngineError
from helpers import wait_for

REGISTRY = "10.231.0.250:5000"  # on the bridge of the nodes below, and nowhere else


@pytest.fixture(scope="module")
def pulling_swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineCluster]:
    cluster = EngineCluster(3, prefix="skr", insecure_registries=(REGISTRY,), pulls=True)
    registry: subprocess.Popen[bytes] | None = None
    folder = tmp_path_factory.mktemp("bridge-registry")
    try:
        cluster.up()
        cluster.init_swarm()
        config = folder / "registry.yml"
        config.write_text(
            textwrap.dedent(
                f"""
                version: 0.1
                storage: {{filesystem: {{rootdirectory: {folder / "data"}}}}}
                http: {{addr: {REGISTRY}}}
                """
            )
        )
        registry = cluster.serve_on_bridge(
            REGISTRY.split(":")[0], ["/usr/bin/docker-registry", "serve", str(config)], folder / "registry.log"
        )
        yield cluster
    except EngineError as exc:
        pytest.fail(f"the three-node swarm did not start: {exc}", pytrace=False)
    finally:
        if registry is not None and registry.poll() is None:
            registry.send_signal(signal.SIGTERM)
            registry.wait(timeout=15)
        cluster.down()


def test_every_node_pulls_the_pinned_image(pulling_swarm: EngineCluster, tmp_path: Path) -> None:
    first = pulling_swarm.nodes[0]
    api = first.api()
    repository = f"{REGISTRY}/sk/app"
    api.tag(LOCAL_IMAGE, repository, "1")

    def pushed() -> str | None:
        digest = None
        for event in api.push(repository, tag="1", stream=True, decode=True):
            if "error" in event:
                return None  # the registry may still be starting
            digest = (event.get("aux") or {}).get("Digest") or digest
        return digest

    digest = wait_for(pushed, timeout=30, message=f"push to {REGISTRY}")
    for node in pulling_swarm.nodes[1:]:
        assert not node.api().images(name=repository), f"{node.name} must not have the image yet"
    specs = tmp_path / "specs"
    write_spec(
        specs,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app, namespace: pull}}
        spec:
          image: {repository}:1
          mode: global
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """,
    )
    res = sk("apply", specs, "--host", first.socket)
    assert res.code == 0, res.output
    service = api.inspect_service("pull_app")
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{repository}:1@{digest}"

    def running_on_every_node() -> bool:
        tasks = api.tasks(filters={"service": "pull_app", "desired-state": "running"})
        return len({t["NodeID"] for t in tasks if t["Status"]["State"] == "running"}) == 3

    wait_for(running_on_every_node, timeout=120, message="pull_app running on all three nodes")
    for node in pulling_swarm.nodes:
        digests = node.api().inspect_image(f"{repository}@{digest}")["RepoDigests"]
        assert f"{repository}@{digest}" in digests, node.name
