"""Crashes and races never lose or duplicate what swarmkeeper manages.

``swarmkeeper apply`` is killed with SIGKILL at random points of a 50-service apply — before a write
reaches the engine, or after the engine carried it out but before the answer came back — then run
again to convergence. Whatever the point, the swarm never holds two objects for one spec, never
holds an object without its ownership labels or without a spec, keeps exactly the expected secret
versions, and the next apply has nothing to do. Two controllers started at the same instant for the
same source: exactly one of them acts.

Kill points are chosen by counting the apply's own writes on the wire (``engine_proxy``), so they
spread over the whole apply whatever the machine's speed. The seed is printed on failure; set
SWARMKEEPER_FAULT_SEED to replay a run.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from controller_helpers import controller, wait_until_idle
from engine_proxy import EngineProxy, Request
from helpers import cleanup_namespace, wait_for

SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"
SERVICES = 50
NETWORKS = 2
SECRETS = 3
KILLS = 20  # trials that really killed the apply mid-way
MAX_TRIALS = 30
MANAGED_BY = "io.swarmkeeper.managed-by"
STACK = "com.docker.stack.namespace"


# -- the specs -------------------------------------------------------------------------------------------


@dataclass
class World:
    """What the specs say now, and what the swarm must hold once converged."""

    namespace: str
    image: str
    release: int = 0
    rotation: int = 0  # secret values are f"value-{rotation}"
    scaled: int = 0  # services with i % 10 == scaled run one task
    versions: dict[str, int] = field(default_factory=dict)  # secret → expected current version

    def write(self, folder: Path) -> None:
        for old in folder.glob("*.yaml"):
            old.unlink()
        head = "apiVersion: swarmkeeper.io/v1alpha1"
        docs = [
            f"{head}\nkind: SwarmNetwork\nmetadata: {{name: net{n}, namespace: {self.namespace}}}\n"
            for n in range(NETWORKS)
        ]
        (folder / "networks.yaml").write_text("---\n".join(docs))
        docs = [
            f"{head}\nkind: SwarmSecret\nmetadata: {{name: key{s}, namespace: {self.namespace}}}\n"
            f"spec:\n  stringData: value-{self.rotation}-{s}\n  keepVersions: 0\n"
            for s in range(SECRETS)
        ]
        (folder / "secrets.yaml").write_text("---\n".join(docs))
        docs = [
            f"{head}\nkind: SwarmService\nmetadata: {{name: svc{i:02d}, namespace: {self.namespace}}}\n"
            f"spec:\n  image: {self.image}\n  command: [sleep, '3600']\n"
            f"  replicas: {1 if i % 10 == self.scaled else 0}\n  endpointMode: dnsrr\n  stopGracePeriod: 1s\n"
            f"  updateConfig: {{monitor: 1s}}\n  env: {{RELEASE: '{self.release}'}}\n"
            f"  networks: [{{name: net{i % NETWORKS}}}]\n  secrets: [{{source: key{i % SECRETS}}}]\n"
            for i in range(SERVICES)
        ]
        (folder / "services.yaml").write_text("---\n".join(docs))

    def expected(self) -> dict[str, set[str]]:
        """Swarm names per object type."""
        ns = self.namespace
        return {
            "service": {f"{ns}_svc{i:02d}" for i in range(SERVICES)},
            "network": {f"{ns}_net{n}" for n in range(NETWORKS)},
            "secret": {f"{ns}_key{s}-v{self.versions.get(f'key{s}', 1)}" for s in range(SECRETS)},
            "config": set(),
        }


# Each change, and the number of writes the apply makes for it (the range kill points are drawn from).
def change(world: World, trial: int, namespaces: list[str]) -> tuple[str, int]:
    if trial == 0:
        return "create", SERVICES + NETWORKS + SECRETS
    what = ("update", "rotate", "scale", "move")[(trial - 1) % 4]
    if what == "update":
        world.release += 1
        return what, SERVICES
    if what == "rotate":
        world.rotation += 1
        world.versions = {f"key{s}": world.versions.get(f"key{s}", 1) + 1 for s in range(SECRETS)}
        return what, SECRETS + SERVICES + SECRETS
    if what == "scale":
        world.scaled = (world.scaled + 1) % 10
        return what, 2 * SERVICES // 10
    # A fresh namespace: the old one's objects are pruned, the new one's created, in one apply.
    world.namespace = f"{namespaces[0]}m{trial}"
    namespaces.append(world.namespace)
    world.versions = {}
    return what, 2 * (SERVICES + NETWORKS + SECRETS)


# -- killing at a chosen write ---------------------------------------------------------------------------


def is_write(request: Request) -> bool:
    return request.mutating


class KillSwitch:
    """Kills the armed process at its n-th write (of those ``counts``): before forwarding it, or once
    the engine has answered it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.at = 0
        self.after = False
        self.counts: Callable[[Request], bool] = is_write
        self.writes = 0
        self.fired: str | None = None
        self.target: Request | None = None

    def arm(self, pid: int, at: int, after: bool, counts: Callable[[Request], bool] = is_write) -> None:
        with self.lock:
            self.pid, self.at, self.after, self.counts = pid, at, after, counts
            self.writes, self.fired, self.target = 0, None, None

    def disarm(self) -> None:
        with self.lock:
            self.pid = None

    def fire(self, why: str) -> None:
        # Under the lock: a disarm (the process already exited) can never race a kill of a reused pid.
        with self.lock:
            if self.pid is None or self.fired is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.fired = why

    def on_request(self, request: Request) -> bool | None:
        with self.lock:
            if self.pid is None or not self.counts(request):
                return None
            self.writes += 1
            hit = self.writes == self.at
            if hit and self.after:
                self.target = request
        if hit and not self.after:
            self.fire(f"before write {self.at} ({request}) reached the engine")
            return False  # the engine never sees it
        return None

    def on_response(self, request: Request) -> None:
        if request is self.target:
            self.fire(f"after the engine carried out write {self.at} ({request}), before the answer arrived")


# -- looking at the swarm --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwarmObject:
    type: str
    id: str
    name: str
    labels: dict[str, str]


def objects_of(api: docker.APIClient, namespaces: list[str]) -> list[SwarmObject]:
    """Every service, network, secret and config of the namespaces, by name prefix or stack label."""
    raw: list[tuple[str, dict[str, Any]]] = [
        *(("service", s) for s in api.services()),
        *(("network", n) for n in api.networks()),
        *(("secret", s) for s in api.secrets()),
        *(("config", c) for c in api.configs()),
    ]
    out = []
    for type_, obj in raw:
        spec = obj.get("Spec") or {}
        name = spec.get("Name") or obj.get("Name") or ""
        labels = spec.get("Labels") or obj.get("Labels") or {}
        if any(name.startswith(f"{ns}_") or labels.get(STACK) == ns for ns in namespaces):
            out.append(SwarmObject(type_, obj.get("ID") or obj.get("Id") or "", name, labels))
    return out


def problems(objects: list[SwarmObject], source: str) -> list[str]:
    """Duplicates, and objects without the ownership labels: never allowed, not even mid-apply."""
    found = []
    for (type_, name), n in Counter((o.type, o.name) for o in objects).items():
        if n > 1:
            found.append(f"{n} {type_}s named {name}")
    identities = Counter(
        (
            o.type,
            o.labels.get("io.swarmkeeper.kind"),
            o.labels.get("io.swarmkeeper.namespace"),
            o.labels.get("io.swarmkeeper.name"),
            o.labels.get("io.swarmkeeper.version"),
        )
        for o in objects
    )
    found += [f"{n} objects for one spec: {key}" for key, n in identities.items() if n > 1]
    for o in objects:
        if o.labels.get(MANAGED_BY) != "swarmkeeper" or o.labels.get("io.swarmkeeper.source") != source:
            found.append(f"{o.type} {o.name} lacks the ownership labels: {o.labels}")
    return found


def swarmkeeper(*args: str | Path, docker_host: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return subprocess.Popen(
        [str(SWARMKEEPER), *(str(a) for a in args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


# -- the tests -------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_apply_killed_at_random_points_never_loses_or_duplicates(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    seed = int(os.environ.get("SWARMKEEPER_FAULT_SEED") or time.time_ns() % 2**32)
    rng = random.Random(seed)
    source = namespace
    namespaces = [namespace]
    world = World(namespace, local_image)
    kill = KillSwitch()
    kills: list[str] = []
    flags = ("--prune", "--force", "--source", source)
    started = time.monotonic()
    try:
        with EngineProxy(on_request=kill.on_request, on_response=kill.on_response) as proxy:
            for trial in range(MAX_TRIALS):
                if len(kills) >= KILLS:
                    break
                what, writes = change(world, trial, namespaces)
                world.write(specs_dir)
                context = f"seed {seed}, trial {trial} ({what})"

                # the apply, killed at a random write (or, now and then, at a random moment)
                proc = swarmkeeper("apply", specs_dir, *flags, "--timeout", "60s", docker_host=proxy.url)
                at, after = rng.randint(1, writes), rng.random() < 0.5
                kill.arm(proc.pid, at, after)
                if rng.random() < 0.15:
                    time.sleep(rng.uniform(0.05, 2.0))
                    kill.fire("at a random moment")
                code, output = finish(proc)
                kill.disarm()
                # A kill that came after the process had finished (it was a zombie) is no kill.
                if code == -signal.SIGKILL:
                    assert kill.fired, f"{context}: killed by someone else:\n{output}"
                    kills.append(f"{what}: killed {kill.fired}")
                else:
                    assert code == 0, f"{context}: exited {code}:\n{output}"

                # whatever was left half done: no duplicate, nothing without its labels
                found = problems(objects_of(docker_api, namespaces), source)
                assert not found, f"{context}, killed {kill.fired}: " + "; ".join(found)

                # run again: it converges, and the next run has nothing to do
                code, output = finish(swarmkeeper("apply", specs_dir, *flags, "--wait", "--timeout", "120s"))
                assert code == 0, f"{context}, killed {kill.fired}: the restarted apply exited {code}:\n{output}"
                code, output = finish(swarmkeeper("apply", specs_dir, *flags))
                assert code == 0 and "no changes" in output, f"{context}: not converged:\n{output}"

                objects = objects_of(docker_api, namespaces)
                found = problems(objects, source)
                assert not found, f"{context}, killed {kill.fired}: " + "; ".join(found)
                have = {t: {o.name for o in objects if o.type == t} for t in ("service", "network", "secret", "config")}
                assert have == world.expected(), f"{context}, killed {kill.fired}: orphans or missing objects"
        assert len(kills) >= KILLS, f"seed {seed}: only {len(kills)} of {MAX_TRIALS} trials killed the apply mid-way"
    finally:
        for ns in namespaces:
            cleanup_namespace(docker_api, ns)
    print(f"seed {seed}: {len(kills)} kills in {time.monotonic() - started:.0f}s", *kills, sep="\n  ")


STEP_LINE = re.compile(r"\b(create|update|recreate|delete) Swarm\w+/")


def small_specs(ns: str, image: str) -> str:
    """A network, a secret and three services (no tasks) that use both."""
    head = "apiVersion: swarmkeeper.io/v1alpha1"
    docs = [
        f"{head}\nkind: SwarmNetwork\nmetadata: {{name: net, namespace: {ns}}}\n",
        f"{head}\nkind: SwarmSecret\nmetadata: {{name: key, namespace: {ns}}}\nspec: {{stringData: value}}\n",
        *(
            f"{head}\nkind: SwarmService\nmetadata: {{name: svc{i}, namespace: {ns}}}\n"
            f"spec:\n  image: {image}\n  command: [sleep, '3600']\n  replicas: 0\n"
            "  networks: [{name: net}]\n  secrets: [{source: key}]\n"
            for i in range(3)
        ),
    ]
    return "---\n".join(docs)


@pytest.mark.timeout(300)
def test_two_controllers_started_together_only_one_acts(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    for round_ in range(3):
        ns = f"{namespace}r{round_}"
        specs = tmp_path / f"round{round_}"
        specs.mkdir()
        (specs / "app.yaml").write_text(small_specs(ns, local_image))
        try:
            with contextlib.ExitStack() as stack:
                both = [
                    stack.enter_context(controller(specs, ns, log=tmp_path / f"r{round_}-{who}.log", wait_ready=False))
                    for who in ("a", "b")
                ]
                acting = wait_for(
                    lambda both=both: [c for c in both if c.ready()],  # type: ignore[misc]
                    timeout=60,
                    message="neither controller became ready",
                )
                wait_until_idle(acting[0])
                time.sleep(2)  # room for the other to try (it retries every ttl/3 = 5 s)
                logs = [c.logs() for c in both]
                context = f"round {round_}:\n" + "\n----\n".join(logs)
                assert [c.ready() for c in both].count(True) == 1, context
                assert ["holding the lease" in log for log in logs].count(True) == 1, context
                assert [bool(STEP_LINE.search(log)) for log in logs].count(True) == 1, context
                assert any("holds the lease" in log for log in logs), context
                objects = objects_of(docker_api, [ns])
                assert not problems(objects, ns), problems(objects, ns)
                assert Counter(o.type for o in objects) == {"service": 3, "network": 1, "secret": 1}, objects
        finally:
            cleanup_namespace(docker_api, ns)


@pytest.mark.timeout(300)
def test_apply_killed_after_removing_a_network_still_detaching_converges(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    """The node keeps listing a removed overlay network until its last task has detached; a run that
    died right after removing it leaves the next one a network that answers "not found"."""
    flags = ("--prune", "--force", "--source", namespace)
    (specs_dir / "app.yaml").write_text(small_specs(namespace, local_image).replace("replicas: 0", "replicas: 1"))
    code, output = finish(swarmkeeper("apply", specs_dir, *flags, "--wait", "--timeout", "120s"))
    assert code == 0, output
    (specs_dir / "app.yaml").write_text(
        f"apiVersion: swarmkeeper.io/v1alpha1\nkind: SwarmNetwork\nmetadata: {{name: other, namespace: {namespace}}}\n"
    )
    kill = KillSwitch()
    with EngineProxy(on_request=kill.on_request, on_response=kill.on_response) as proxy:
        proc = swarmkeeper("apply", specs_dir, *flags, docker_host=proxy.url)
        kill.arm(proc.pid, 1, after=True, counts=lambda r: r.method == "DELETE" and r.path.startswith("/networks/"))
        code, output = finish(proc)
        kill.disarm()
    assert code == -signal.SIGKILL and kill.fired, output
    code, output = finish(swarmkeeper("apply", specs_dir, *flags))
    assert code == 0, output
    wait_for(
        lambda: "no changes" in finish(swarmkeeper("apply", specs_dir, *flags))[1],
        timeout=60,
        interval=1,
        message="never converged",
    )
    objects = objects_of(docker_api, [namespace])
    assert not problems(objects, namespace)
    assert {o.name for o in objects} == {f"{namespace}_other"}
