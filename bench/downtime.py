"""Requests lost during a rolling update: swarmkeeper's start-first update against docker's defaults.

The probe of ``tests/test_traffic.py``, run against three ways of moving the same service (busybox
``httpd`` behind a ``wget`` healthcheck, ``endpointMode: dnsrr``, ``stopGracePeriod: 2s``) from
RELEASE=1 to RELEASE=2 while a client requests ``http://tasks.web:8080/`` every 20 ms, one fresh
``wget`` (fresh DNS lookup, no retry, 2 s timeout) per request:

1. ``sk start-first``: ``swarmkeeper apply --wait`` with
   ``updateConfig: {order: start-first, parallelism: 1, delay: 1s, monitor: 2s}``;
2. ``sk defaults``: ``swarmkeeper apply --wait`` with no ``updateConfig``, i.e. docker's defaults
   (stop-first, parallelism 1, delay 0, monitor 5s), what a compose file without
   ``deploy.update_config`` gets;
3. ``stack deploy``: ``docker stack deploy -c compose.yml --resolve-image never NS`` of the
   equivalent compose file (no ``update_config``), then the environment changed in the file and
   the same command run again.

Counted from the update's ``UpdateStatus.StartedAt`` to its ``CompletedAt`` plus 2 s, on the
engine's own log timestamps. Each case runs in its own namespace (``bdt<case><round>``), created
and removed by the bench; ROUNDS (default 1) repeats the three, in the same order. The arguments
are replica counts (default 3).

    .venv/bin/python bench/downtime.py          # 3 replicas
    ROUNDS=3 .venv/bin/python bench/downtime.py 3 1
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from helpers import cleanup_namespace, running_count, stack_deploy
from test_traffic import CLIENT, HEALTHCHECK, SERVE, START_FIRST, Probe, probe_update, write_workload

ROOT = Path(__file__).resolve().parent.parent
SK = str(ROOT / ".venv" / "bin" / "swarmkeeper")
IMAGE = "local/busybox:1"
api = docker.APIClient(version="auto", timeout=120)


@dataclass
class Case:
    key: str
    title: str
    deploy: Callable[[Path, str, str, int], None]  # (folder, namespace, release, replicas)


def sk_apply(update: Mapping[str, object] | None) -> Callable[[Path, str, str, int], None]:
    def deploy(folder: Path, ns: str, release: str, replicas: int) -> None:
        write_workload(folder, ns, IMAGE, release=release, update=update, replicas=replicas)
        cmd = [SK, "apply", str(folder), "--wait", "--timeout", "120s"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    return deploy


def compose(release: str, replicas: int) -> dict[str, object]:
    """The same two services as the swarmkeeper specs, with compose's defaults for the update."""
    health = {k: v for k, v in HEALTHCHECK.items() if k != "startPeriod"} | {"start_period": HEALTHCHECK["startPeriod"]}
    return {
        "version": "3.8",
        "services": {
            "web": {
                "image": IMAGE,
                "command": ["sh", "-c", SERVE.replace("$", "$$")],  # compose interpolates $VAR
                "environment": {"RELEASE": release},
                "networks": ["net"],
                "stop_grace_period": "2s",
                "healthcheck": health,
                "deploy": {"replicas": replicas, "endpoint_mode": "dnsrr"},
            },
            "client": {
                "image": IMAGE,
                "command": ["sh", "-c", CLIENT.replace("$", "$$")],
                "environment": {"RELEASE": "-"},
                "networks": ["net"],
                "stop_grace_period": "1s",
                "deploy": {"replicas": 1, "endpoint_mode": "dnsrr"},
            },
        },
        "networks": {"net": {}},
    }


def stack(folder: Path, ns: str, release: str, replicas: int) -> None:
    path = folder / "compose.yml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(compose(release, replicas), indent=2))  # JSON is YAML
    stack_deploy(path, ns)


CASES = [
    Case("start-first", "sk start-first", sk_apply(START_FIRST)),
    Case("defaults", "sk defaults", sk_apply(None)),
    Case("stack", "stack deploy", stack),
]


def update_config(ns: str) -> str:
    cfg = api.inspect_service(f"{ns}_web")["Spec"].get("UpdateConfig")
    if not cfg:
        return "none (engine default)"
    return f"{cfg.get('Order', 'stop-first')}/{cfg.get('Parallelism', 0)}"


@dataclass
class Result:
    probe: Probe
    config: str  # the web service's UpdateConfig as the engine holds it: order/parallelism
    floor: int  # fewest web tasks running (and meant to run) seen during the update


class Floor(threading.Thread):
    """Polls the number of running web tasks (with a healthcheck: healthy, so in DNS) every 100 ms."""

    def __init__(self, service: str) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.lowest = 1 << 30
        self.done = threading.Event()

    def run(self) -> None:
        with docker.APIClient(version="auto", timeout=60) as own:  # docker-py clients are not thread-safe
            while not self.done.wait(0.1):
                self.lowest = min(self.lowest, running_count(own, self.service))


def run_case(case: Case, index: int, rnd: int, replicas: int, tmp: Path) -> Result:
    ns = f"bdt{index}{rnd}"
    folder = tmp / ns
    cleanup_namespace(api, ns)  # leftovers of an interrupted run
    floor = Floor(f"{ns}_web")
    try:
        case.deploy(folder, ns, "1", replicas)
        wait_running(ns, replicas)

        def change() -> None:
            floor.start()
            case.deploy(folder, ns, "2", replicas)

        probe = probe_update(api, ns, change)
        return Result(probe, update_config(ns), floor.lowest)
    finally:
        floor.done.set()
        cleanup_namespace(api, ns)


def wait_running(ns: str, replicas: int) -> None:
    """``docker stack deploy`` returns before anything runs; wait for every web task (bounded)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tasks = api.tasks(filters={"service": f"{ns}_web", "desired-state": "running"})
        if sum(t["Status"]["State"] == "running" for t in tasks) >= replicas:
            return
        time.sleep(0.3)
    raise AssertionError(f"{ns}_web: {replicas} tasks not running after 120 s")


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else ("1.00" if value == base else "∞ (base 0)")


def report(replicas: int, results: dict[str, list[Result]]) -> None:
    rounds = len(results[CASES[0].key])
    print(f"\n{replicas} replicas, {rounds} round(s): requests and failures summed over the rounds")
    print(
        "| case | update config | update s | fewest tasks up | requests | during update | failed | failure rate "
        "| answered 1 / 2 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    totals: dict[str, tuple[float, float]] = {}
    for case in CASES:
        runs = results[case.key]
        seconds = sum(r.probe.seconds for r in runs) / len(runs)
        requests, failures = sum(r.probe.requests for r in runs), sum(r.probe.failures for r in runs)
        during = sum(r.probe.during for r in runs)
        old, new = sum(r.probe.answered["1"] for r in runs), sum(r.probe.answered["2"] for r in runs)
        rate = failures / requests if requests else 0.0
        totals[case.key] = (seconds, rate)
        configs = ", ".join(sorted({r.config for r in runs}))
        floor = min(r.floor for r in runs)
        print(
            f"| {case.title} | {configs} | {seconds:.1f} | {floor} | {requests} | {during} | {failures} "
            f"| {rate:.1%} | {old} / {new} |"
        )
    base_seconds, base_rate = totals["start-first"]
    print("\nagainst sk start-first: update time ratio; failure rate ratio")
    for case in CASES[1:]:
        seconds, rate = totals[case.key]
        print(f"  {case.title}: {ratio(seconds, base_seconds)}; {ratio(rate, base_rate)}")
    for case in CASES:
        for i, r in enumerate(results[case.key]):
            if r.probe.failed_lines:
                print(f"  {case.title}, round {i + 1}, first failures: {r.probe.failed_lines[:3]}")
    sys.stdout.flush()


def main() -> None:
    rounds = int(os.environ.get("ROUNDS", "1"))
    replica_counts = [int(a) for a in sys.argv[1:]] or [3]
    tmp = Path(tempfile.mkdtemp(prefix="skdowntime-"))
    for replicas in replica_counts:
        results: dict[str, list[Result]] = {c.key: [] for c in CASES}
        for rnd in range(rounds):
            for index, case in enumerate(CASES):
                result = run_case(case, index, rnd, replicas, tmp)
                results[case.key].append(result)
                print(
                    f"{replicas} replicas, round {rnd + 1}, {case.title} ({result.config}, fewest up {result.floor}): "
                    f"{result.probe.describe()}",
                    flush=True,
                )
        report(replicas, results)


if __name__ == "__main__":
    main()
