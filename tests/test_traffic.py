"""Traffic through rolling updates, measured on the real engine: what the README promises.

Proven here, with a client that sends real HTTP requests all along:

* a ``start-first`` rolling update of a health-checked service (3 replicas, ``parallelism: 1``)
  answers every request: at least 200 requests while swarm's update runs, none failed, and both
  the old and the new release answered (so the update really happened under the traffic);
* the same probe does see failures when the update stops every task at once (``stop-first``,
  ``parallelism: 0``): it is not blind, so its zero above means something;
* an update that fails is rolled back: ``swarmkeeper apply --wait`` exits 1 naming the rollback,
  the live container spec is the previous one, and ``swarmkeeper get`` reports
  ``rollback_completed``.

How the probe works, and why it is honest. The kernel has no IPVS, so there is no VIP: ``web``
uses ``endpointMode: dnsrr`` and the client asks ``tasks.web`` (the service's short name is an
alias on the network, as with ``docker stack deploy``), which the engine's DNS answers with every
task's address, shuffled. Each request is a new ``wget`` process, so every request resolves again
(busybox caches nothing) and nothing is retried; ``timeout 2`` bounds it (this busybox's wget has
no ``-T``). The client prints one line per request, ``OK <release>`` or ``FAIL <error>``, and the
lines are read back with the engine's own log timestamps, then counted from the update's
``UpdateStatus.StartedAt`` to its ``CompletedAt`` plus a short tail. ``bench/downtime.py`` runs the
same probe against other update settings and ``docker stack deploy``.

Why start-first answers everything: swarm adds a task to DNS only once its healthcheck passes, and
removes a task from DNS before it stops it; ``httpd`` as PID 1 ignores SIGTERM, so an old task
keeps answering a request resolved just before its removal until its ``stopGracePeriod`` ends.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import docker

from cli_helpers import sk, write_spec
from helpers import service_containers, wait_for

# The served page is the RELEASE of the task that answered.
SERVE = 'mkdir -p /www && echo "$RELEASE" > /www/index.html && exec httpd -f -p 8080 -h /www'
CRASH = "exit 1"
# One request per line; a fresh process per request, so a fresh DNS lookup, and no retry. A request
# sent to a task that is gone hangs until the timeout, whatever its length: 2 s only keeps a machine
# busy with other tests from turning a slow answer into a failure.
CLIENT = (
    "while :; do"
    " if out=$(timeout 2 wget -q -O- http://tasks.web:8080/ 2>&1); then echo OK $out; else echo FAIL $out; fi;"
    " sleep 0.02;"
    " done"
)
HEALTHCHECK: dict[str, object] = {
    "test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"],
    "interval": "1s",
    "timeout": "1s",
    "retries": 2,
    "startPeriod": "1s",
}
START_FIRST: dict[str, object] = {"order": "start-first", "parallelism": 1, "delay": "1s", "monitor": "2s"}
ALL_AT_ONCE: dict[str, object] = {"order": "stop-first", "parallelism": 0, "delay": "1s", "monitor": "2s"}
ROLLBACK: dict[str, object] = {**START_FIRST, "monitor": "3s", "failureAction": "rollback"}

TAIL = 2.0  # seconds of traffic still counted after the update completed
UPDATE_TIMEOUT = 120.0
FINAL_STATES = {"completed", "paused", "rollback_completed", "rollback_paused"}

NETWORK_SPEC = """
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmNetwork
metadata: {{name: net, namespace: {ns}}}
spec: {{}}
"""
SERVICE_SPEC = """
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  image: {image}
  command: {command}
  replicas: {replicas}
  env: {{RELEASE: "{release}"}}
  endpointMode: dnsrr
  networks: [{{name: net}}]
  stopGracePeriod: {grace}
"""


def web_spec(
    ns: str,
    image: str,
    *,
    release: str,
    update: Mapping[str, object] | None,
    command: str = SERVE,
    replicas: int = 3,
) -> str:
    """The ``web`` service; ``update=None`` leaves updateConfig out (docker's defaults)."""
    text = SERVICE_SPEC.format(
        name="web",
        ns=ns,
        image=image,
        command=json.dumps(["sh", "-c", command]),
        replicas=replicas,
        release=release,
        grace="2s",
    )
    text += f"  healthcheck: {json.dumps(HEALTHCHECK)}\n"
    if update is not None:
        text += f"  updateConfig: {json.dumps(update)}\n"
    return text


def write_workload(
    folder: Path,
    ns: str,
    image: str,
    *,
    release: str,
    update: Mapping[str, object] | None,
    command: str = SERVE,
    replicas: int = 3,
    client: bool = True,
) -> None:
    """Spec files for the network, ``web`` and (with ``client``) the probing client."""
    write_spec(folder, "net.yaml", NETWORK_SPEC.format(ns=ns))
    write_spec(
        folder,
        "web.yaml",
        web_spec(ns, image, release=release, update=update, command=command, replicas=replicas),
    )
    if client:
        client_spec = SERVICE_SPEC.format(
            name="client",
            ns=ns,
            image=image,
            command=json.dumps(["sh", "-c", CLIENT]),
            replicas=1,
            release="-",
            grace="1s",
        )
        write_spec(folder, "client.yaml", client_spec)


def parse_time(stamp: str) -> float:
    """Seconds since the epoch of an engine timestamp (RFC 3339 with nanoseconds)."""
    stamp = stamp.rstrip("Z")
    whole, _, fraction = stamp.partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction or '0')[:6]:0<6}+00:00").timestamp()


@dataclass
class Probe:
    """What the client saw from the update's start to its completion plus ``TAIL``."""

    seconds: float  # the update itself: StartedAt → CompletedAt
    state: str  # UpdateStatus.State at the end
    during: int = 0  # requests finished while the update ran
    requests: int = 0  # requests finished in the whole span (update and tail)
    failures: int = 0
    answered: Counter[str] = field(default_factory=Counter)  # release → requests it answered
    failed_lines: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.requests} requests ({self.during} during a {self.seconds:.1f}s update, state {self.state}), "
            f"{self.failures} failed, answered by release {dict(self.answered)}; "
            f"first failures: {self.failed_lines[:5]}"
        )


def client_container(api: docker.APIClient, ns: str) -> str:
    containers = service_containers(api, f"{ns}_client")
    assert len(containers) == 1, f"expected one client container, found {len(containers)}"
    return cast(str, containers[0]["Id"])


def client_lines(api: docker.APIClient, container: str) -> list[tuple[float, str]]:
    """(engine timestamp, line) of every request the client made; stderr (shell noise) left out."""
    raw = cast(bytes, api.logs(container, stdout=True, stderr=False, timestamps=True))
    lines = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        if text.startswith(("OK", "FAIL")):
            lines.append((parse_time(stamp), text))
    return lines


def wait_for_traffic(api: docker.APIClient, ns: str, answered: int = 20) -> str:
    """Wait until the client has ``answered`` successful requests; returns its container ID."""
    container = wait_for(lambda: service_containers(api, f"{ns}_client"), timeout=60, message="no client container")
    cid = cast(str, container[0]["Id"])
    wait_for(
        lambda: sum(text.startswith("OK") for _, text in client_lines(api, cid)) >= answered,
        timeout=60,
        interval=0.5,
        message="the client never got answers from web",
    )
    return cid


def finished_update(api: docker.APIClient, service: str, since: float) -> dict[str, Any]:
    """Wait for the service's update started after ``since`` to end; returns its UpdateStatus."""

    def final() -> dict[str, Any] | None:
        status = cast(dict[str, Any], api.inspect_service(service).get("UpdateStatus") or {})
        started = status.get("StartedAt")
        if status.get("State") in FINAL_STATES and started and parse_time(started) >= since:
            return status
        return None

    return wait_for(final, timeout=UPDATE_TIMEOUT, interval=0.2, message=f"{service}: no update ended")


def probe_update(api: docker.APIClient, ns: str, change: Callable[[], None]) -> Probe:
    """Run ``change`` (it starts an update of ``<ns>_web``) under the client's traffic and count."""
    container = wait_for_traffic(api, ns)
    since = time.time() - 1.0  # the engine runs on this clock; one second of slack
    change()
    status = finished_update(api, f"{ns}_web", since)
    started, completed = parse_time(status["StartedAt"]), parse_time(status["CompletedAt"])
    # Keep the client running a little past completion: old tasks may still be stopping.
    time.sleep(max(0.0, completed + TAIL + 0.5 - time.time()))
    assert client_container(api, ns) == container, "the client was restarted: its requests are lost"
    probe = Probe(seconds=completed - started, state=str(status["State"]))
    for stamp, text in client_lines(api, container):
        if not started <= stamp <= completed + TAIL:
            continue
        probe.requests += 1
        probe.during += stamp <= completed
        if text.startswith("OK"):
            probe.answered[text[2:].strip()] += 1
        else:
            probe.failures += 1
            probe.failed_lines.append(f"+{stamp - started:.2f}s {text}")
    return probe


def apply_ok(specs: Path) -> None:
    res = sk("apply", specs, "--wait", "--timeout", "120s")
    assert res.code == 0, res.output


def start_and_update(api: docker.APIClient, ns: str, image: str, specs: Path, update: Mapping[str, object]) -> Probe:
    """Deploy release 1 with ``update``, then move to release 2 under traffic and probe it."""
    write_workload(specs, ns, image, release="1", update=update)
    apply_ok(specs)

    def to_release_2() -> None:
        write_workload(specs, ns, image, release="2", update=update)
        apply_ok(specs)

    return probe_update(api, ns, to_release_2)


def test_start_first_update_with_healthcheck_drops_no_request(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    probe = start_and_update(docker_api, namespace, local_image, specs_dir, START_FIRST)
    print(probe.describe())  # the figures, with -s or -rP
    assert probe.state == "completed", probe.describe()
    assert probe.during >= 200, probe.describe()
    assert probe.failures == 0, probe.describe()
    assert probe.answered["1"] > 0 and probe.answered["2"] > 0, probe.describe()
    assert set(probe.answered) == {"1", "2"}, probe.describe()


def test_probe_sees_the_outage_of_an_all_at_once_stop_first_update(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    probe = start_and_update(docker_api, namespace, local_image, specs_dir, ALL_AT_ONCE)
    print(probe.describe())
    assert probe.state == "completed", probe.describe()
    assert probe.failures > 0, probe.describe()
    assert probe.answered["2"] > 0, probe.describe()  # the outage ended: the new release answers


def test_failed_update_is_rolled_back_to_the_previous_spec(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    name = f"{namespace}_web"
    write_workload(specs_dir, namespace, local_image, release="1", update=ROLLBACK, client=False)
    apply_ok(specs_dir)
    before = docker_api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert "RELEASE=1" in before["Env"]

    # Release 2 exits at once: its first task fails, and swarm rolls the service back.
    write_workload(specs_dir, namespace, local_image, release="2", update=ROLLBACK, command=CRASH, client=False)
    res = sk("apply", specs_dir, "--wait", "--timeout", "120s")
    assert res.code == 1, res.output
    assert "rollback_completed" in res.output, res.output

    def live() -> tuple[str | None, dict[str, Any]]:
        service = docker_api.inspect_service(name)
        state = (service.get("UpdateStatus") or {}).get("State")
        return state, cast(dict[str, Any], service["Spec"]["TaskTemplate"]["ContainerSpec"])

    def summary(state: str | None, spec: Mapping[str, Any]) -> str:
        return f"update state {state}, env {spec.get('Env')}, command {spec.get('Command')}"

    state, after = live()
    assert (state, after) == ("rollback_completed", before), (
        f"right after `apply --wait` reported the rollback, the service runs {summary(state, after)}, "
        f"not the previous spec ({summary('rollback_completed', before)})"
    )
    doc = json.loads(sk("get", "service", "web", "-n", namespace, "-o", "json").stdout)
    assert doc["status"]["update"]["state"] == "rollback_completed", doc["status"]
    # ... and stays there: nothing sends the failed spec again (bounded: twice the monitor period).
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        state, after = live()
        assert (state, after) == ("rollback_completed", before), f"after the rollback: {summary(state, after)}"
        time.sleep(0.2)
