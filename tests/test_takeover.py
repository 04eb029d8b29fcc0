"""Takeover after a crash, and one actor among many: real engine, real ``swarmkeeper`` processes.

What is proven:

* ``watch``: controller A holds the lease and has applied the specs; B, for the same source and
  folder, stands by (logs it, not ready, no pass). A is killed with SIGKILL, so it cannot release
  the lease, and the specs are edited at that moment. B takes the lease over and applies the edit
  within 25 s of the kill: the lease expires ttl (15 s) after A's last renewal, which was at most
  ttl/3 before the kill, and B looks every ttl/3, so 10 to 20 s, then one pass. B never acts on a
  fresh lease (the engine's update time of the service is after the lease's expiry), logs whose
  lease it took over, and no object is duplicated.
* ``sync``: the same with two Git controllers following one repository, and a commit pushed at the
  moment of the kill.
* Ten ``watch`` processes started at once for one source and folder, each talking to the engine
  through its own recording proxy, which holds its first look at the lease until all ten have
  looked: all find it free and race to create it. Over the next ~20 s, with the specs applied and
  edited once, at most one answers /readyz at every look and exactly one ever does; exactly one
  makes mutating engine calls other than the lease's own (counted on the wire), the other nine
  none; the lease object stays the same one, and a clean stop of all ten removes it.

The takeover times are printed (``pytest -s``) and quoted in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import docker
import docker.errors
import pytest

from cli_helpers import write_spec
from controller_helpers import Controller, controller
from engine_proxy import EngineProxy, Request
from git_helpers import GitRepo, sync_process
from helpers import wait_for
from swarmkeeper.swarm.lease import HOLDER, RENEWED, TTL
from test_faults import objects_of, problems

LEASE_TTL = 15.0  # the controllers' default
BOUND = 25.0  # ttl, plus the standby's next look (ttl/3 at worst) and one pass, plus a margin
CROWD = 10
WINDOW = 20.0  # how long the crowd is watched once the specs are applied
LEASE_PREFIX = "swarmkeeper-lease."


def app_spec(ns: str, image: str, replicas: int, setting: str = "a") -> str:
    """A network, a secret, a config and a service that uses all three."""
    head = "apiVersion: swarmkeeper.io/v1alpha1"
    return "---\n".join(
        [
            f"{head}\nkind: SwarmNetwork\nmetadata: {{name: net, namespace: {ns}}}\n",
            f"{head}\nkind: SwarmSecret\nmetadata: {{name: key, namespace: {ns}}}\nspec: {{stringData: value}}\n",
            f"{head}\nkind: SwarmConfig\nmetadata: {{name: settings, namespace: {ns}}}\n"
            f"spec: {{stringData: 'level={setting}'}}\n",
            f"{head}\nkind: SwarmService\nmetadata: {{name: web, namespace: {ns}}}\n"
            f"spec:\n  image: {image}\n  command: [sleep, '3600']\n  replicas: {replicas}\n"
            "  endpointMode: dnsrr\n  stopGracePeriod: 1s\n"
            "  networks: [{name: net}]\n  secrets: [{source: key}]\n  configs: [{source: settings}]\n",
        ]
    )


# -- the swarm's side ------------------------------------------------------------------------------------


def service_with(api: docker.APIClient, name: str, replicas: int) -> dict[str, Any] | None:
    """The service, once it asks for ``replicas`` tasks."""
    try:
        service = cast(dict[str, Any], api.inspect_service(name))
    except docker.errors.NotFound:
        return None
    return service if service["Spec"]["Mode"]["Replicated"]["Replicas"] == replicas else None


def lease_configs(api: docker.APIClient, source: str) -> list[dict[str, Any]]:
    name = LEASE_PREFIX + source
    return [cast(dict[str, Any], c) for c in api.configs(filters={"name": name}) if c["Spec"]["Name"] == name]


@contextlib.contextmanager
def removing_lease(api: docker.APIClient, source: str) -> Iterator[None]:
    """A test that fails with its holder killed would leave the lease behind (the namespace
    clean-up does not know its name)."""
    try:
        yield
    finally:
        for lease in lease_configs(api, source):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_config(lease["ID"])


def assert_no_duplicates(api: docker.APIClient, ns: str, source: str) -> None:
    objects = objects_of(api, [ns])
    assert not problems(objects, source), problems(objects, source)
    assert sorted(o.type for o in objects if o.type != "config") == ["network", "secret", "service"], objects


# -- takeover after SIGKILL ------------------------------------------------------------------------------


def random_phase() -> None:
    """Wait a random part of the renewal period. Before the standby starts: the time from the lease's
    expiry to the standby's next look is set by how its cycle and the holder's line up. Before the
    kill: the time from the kill to the expiry. Otherwise each trial would measure the same case."""
    time.sleep(random.uniform(0, LEASE_TTL / 3))


def assert_stands_by(standby: Controller) -> None:
    wait_for(lambda: "holds the lease" in standby.logs(), timeout=60, message="the second controller did not stand by")
    assert not standby.ready(), standby.logs()
    assert standby.metric("swarmkeeper_reconcile_total") == 0, standby.logs()  # not a single pass


def take_over(
    api: docker.APIClient,
    ns: str,
    source: str,
    holder: Controller,
    standby: Controller,
    change: Callable[[], object],
    what: str,
) -> None:
    """Kill the holder with SIGKILL, make ``change`` (web: 1 → 2 replicas) at once, and time it until
    the swarm shows it, applied by the standby."""
    assert_stands_by(standby)
    random_phase()
    killed = time.monotonic()
    killed_at = time.time()
    assert holder.stop(signal.SIGKILL) == -signal.SIGKILL
    change()
    # Read after the kill: this is the dead holder's last renewal (the standby cannot take over for
    # another ~10 s).
    (lease,) = lease_configs(api, source)
    labels = lease["Spec"]["Labels"]
    identity, expires = labels[HOLDER], float(labels[RENEWED]) + float(labels[TTL])
    assert identity.split(":")[1] == str(holder.proc.pid), f"the lease was not the killed holder's: {identity}"

    service = wait_for(
        lambda: service_with(api, f"{ns}_web", 2),
        timeout=BOUND + 30,
        interval=0.1,
        message=f"{what}: the standby never applied the change:\n" + standby.logs()[-3000:],
    )
    took = time.monotonic() - killed
    taken = re.search(
        rf"^(\S+) .*taking over the expired lease {re.escape(LEASE_PREFIX + source)} from {re.escape(identity)}",
        standby.logs(),
        re.MULTILINE,
    )
    assert taken, f"{what}: the standby did not say whose lease it took over:\n" + standby.logs()[-3000:]
    # Wall clocks on one machine: the lease's label, the standby's log, the engine's update time.
    updated = datetime.fromisoformat(service["UpdatedAt"]).timestamp()
    report = (
        f"{what}: takeover {took:.1f} s after SIGKILL (lease expired after {expires - killed_at:.1f} s, "
        f"taken after {datetime.fromisoformat(taken.group(1)).timestamp() - killed_at:.1f} s, "
        f"service updated after {updated - killed_at:.1f} s)"
    )
    print(report)
    assert took <= BOUND, f"{report}; more than {BOUND:.0f} s"
    assert updated > expires, f"{report}: the standby acted before the dead holder's lease expired"
    wait_for(standby.ready, timeout=10, message="the new holder is not ready")
    assert_no_duplicates(api, ns, source)


@pytest.mark.timeout(240)
def test_watch_holder_killed_the_standby_takes_over(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path, tmp_path: Path
) -> None:
    path = write_spec(specs_dir, "app.yaml", app_spec(namespace, local_image, 1))
    with removing_lease(docker_api, namespace):
        with controller(specs_dir, namespace, log=tmp_path / "a.log") as first:
            wait_for(lambda: service_with(docker_api, f"{namespace}_web", 1), timeout=60, message="never applied")
            random_phase()
            with controller(specs_dir, namespace, log=tmp_path / "b.log", wait_ready=False) as second:
                take_over(
                    docker_api,
                    namespace,
                    namespace,
                    first,
                    second,
                    lambda: path.write_text(app_spec(namespace, local_image, 2)),
                    "watch",
                )
                assert second.stop() == 0
        assert not lease_configs(docker_api, namespace)  # the new holder's clean stop released it


@pytest.mark.timeout(240)
def test_sync_holder_killed_the_standby_takes_over(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    source = f"{namespace}-git"
    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/app.yaml", app_spec(namespace, local_image, 1))
    repo.commit("one replica")

    def args(who: str) -> list[str | Path]:
        # Each process with a cache and a status file of its own, as on two machines.
        return [
            *("--repo", repo.url, "--path", "specs", "--name", source, "--interval", "2s"),
            *("--cache-dir", tmp_path / f"cache-{who}", "--status-file", tmp_path / f"status-{who}.yaml"),
        ]

    def push() -> None:
        repo.write("specs/app.yaml", app_spec(namespace, local_image, 2))
        repo.commit("two replicas")

    with removing_lease(docker_api, source):
        with sync_process(*args("a"), log=tmp_path / "a.log") as first:
            wait_for(lambda: service_with(docker_api, f"{namespace}_web", 1), timeout=60, message="never applied")
            random_phase()
            with sync_process(*args("b"), log=tmp_path / "b.log", wait_ready=False) as second:
                take_over(docker_api, namespace, source, first, second, push, "sync")
                assert second.stop() == 0
        assert not lease_configs(docker_api, source)


# -- ten at once -----------------------------------------------------------------------------------------


def is_lease_lookup(request: Request) -> bool:
    return request.method == "GET" and LEASE_PREFIX in unquote(request.target)


class FirstLookHeld:
    """A proxy hook that holds a process's first look at the lease until every process has made
    its own, so that all find no lease and race to create it. Started together, they would still
    reach that point seconds apart (the interpreters start on two cores), and the first would simply
    find the lease free."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self.barrier = barrier
        self.held = False  # one lease thread per process: one look in flight at a time

    def __call__(self, request: Request) -> bool | None:
        if not self.held and is_lease_lookup(request):
            self.held = True
            with contextlib.suppress(threading.BrokenBarrierError):  # one never came: the asserts say so
                self.barrier.wait()
        return None


def split_calls(proxy: EngineProxy, lease_id: str) -> tuple[list[Request], list[Request]]:
    """A process's mutating calls: (the lease's own, all others).

    The proxy sees no bodies, and each mutating call arrives on a fresh connection, so the lease's
    calls are told apart by what they are: the updates and the removal of its config (by ID), and
    the one create of a process that found no lease. The lease keeper is a single thread (look up,
    create if absent, wait ttl/3, look up again) and a controller acts only once it holds the lease,
    so that create is the process's first config create, sent before its second look-up.
    """
    requests = proxy.requests
    lookups = [i for i, r in enumerate(requests) if is_lease_lookup(r)]
    assert lookups, "no lease look-up seen: the process does not talk through its proxy"
    second = lookups[1] if len(lookups) > 1 else len(requests)
    lease = {i for i, r in enumerate(requests) if r.mutating and r.path.split("/")[:3] == ["", "configs", lease_id]}
    creates = [i for i, r in enumerate(requests) if str(r) == "POST /configs/create"]
    if creates and lookups[0] < creates[0] < second:
        lease.add(creates[0])
    others = [r for i, r in enumerate(requests) if r.mutating and i not in lease]
    return [requests[i] for i in sorted(lease)], others


def watch_readiness(crowd: Sequence[Controller], seconds: float) -> set[int]:
    """For ``seconds``, ask every /readyz about twice a second; never more than one may be ready.
    Returns the indexes of those that were."""
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready = {i for i, c in enumerate(crowd) if c.ready()}
        assert len(ready) <= 1, f"ready at once: {sorted(ready)}"
        seen |= ready
        time.sleep(0.5)
    return seen


def stop_all(group: Sequence[Controller]) -> list[int]:
    """SIGTERM to all of ``group`` at once, each only once (a second one could land while the
    interpreter shuts down, when Python's handler is gone); their exit codes."""
    for c in group:
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    codes = []
    for c in group:
        try:
            codes.append(c.proc.wait(30))
        except subprocess.TimeoutExpired:
            codes.append(c.stop(signal.SIGKILL))
    return codes


@pytest.mark.timeout(360)
def test_ten_controllers_started_at_once_only_one_acts(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path, tmp_path: Path
) -> None:
    path = write_spec(specs_dir, "app.yaml", app_spec(namespace, local_image, 1))
    name = f"{namespace}_web"
    # Controllers stop (ExitStack: in reverse) before the proxies they talk through, even on failure.
    with removing_lease(docker_api, namespace), contextlib.ExitStack() as stack:
        barrier = threading.Barrier(CROWD, timeout=120)
        proxies = [stack.enter_context(EngineProxy(on_request=FirstLookHeld(barrier))) for _ in range(CROWD)]
        crowd = [
            stack.enter_context(
                controller(specs_dir, namespace, "--host", p.url, log=tmp_path / f"watch-{i}.log", wait_ready=False)
            )
            for i, p in enumerate(proxies)
        ]
        wait_for(lambda: any(c.ready() for c in crowd), timeout=120, message="no controller became ready")
        (lease,) = lease_configs(docker_api, namespace)
        wait_for(lambda: service_with(docker_api, name, 1), timeout=60, message="the specs were never applied")
        wait_for(
            lambda: all("holding the lease" in c.logs() or "holds the lease" in c.logs() for c in crowd),
            timeout=120,
            message="not every controller looked at the lease",
        )

        ready = watch_readiness(crowd, WINDOW / 2)
        path.write_text(app_spec(namespace, local_image, 2, setting="b"))
        wait_for(lambda: service_with(docker_api, name, 2), timeout=30, message="the edit was never applied")
        ready |= watch_readiness(crowd, WINDOW / 2)

        # One lease object all along: its ID names every renewal.
        assert [c["ID"] for c in lease_configs(docker_api, namespace)] == [lease["ID"]]
        split = [split_calls(p, lease["ID"]) for p in proxies]
        calls = [others for _, others in split]
        raced = sum(any(str(r) == "POST /configs/create" for r in own) for own, _ in split)
        logs = [c.logs() for c in crowd]
        context = f"{raced} of {CROWD} tried to create the lease\n" + "\n".join(
            f"controller {i}: {len(c)} calls {sorted({str(r) for r in c})}" for i, c in enumerate(calls)
        )
        print(context)
        assert raced >= 2, context  # a race there was (all ten, as a rule)
        assert len(ready) == 1, f"ready: {sorted(ready)}\n{context}"
        (holder,) = ready
        assert [i for i, c in enumerate(calls) if c] == [holder], context
        # The edited config's new version was counted as the holder's, not taken for the lease's.
        assert any(str(r) == "POST /configs/create" for r in calls[holder]), context
        assert ["holding the lease" in log for log in logs].count(True) == 1, context
        assert_no_duplicates(docker_api, namespace, namespace)

        # The standbys first: stopping the holder first would hand the lease to one of them.
        codes = stop_all([c for i, c in enumerate(crowd) if i != holder]) + stop_all([crowd[holder]])
        assert codes == [0] * CROWD, codes
    assert not lease_configs(docker_api, namespace)
