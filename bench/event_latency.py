"""Two latencies of the long-running front doors, as distributions over many trials:

1. CR apply → service update started, for ``swarmkeeper operator``: N SwarmService CRs, one of
   them changed per trial (its env var, with ``kubectl apply``, timed from just before kubectl
   starts) until the engine's own ``service update`` event (its ``timeNano``).
2. Task failure → status shows it, and → status shows it recovered, for ``swarmkeeper watch``
   (the ``status:`` block of the spec file on disk, read every 10 ms) and for the operator (the
   CR's ``.status``, followed with a Kubernetes watch). The failure is ``docker kill`` of the
   task's container: SIGKILL from outside, the process gone without a word, as in an OOM kill or a
   crash (an exec'd ``kill 1`` would not do: PID 1 ignores signals it has no handler for).
   "Shows it" is ``status.ready`` leaving ``1/1``; "recovered" is ``1/1`` again, which includes
   swarm's restart delay (5 s by default). Swarm's own times (the die event, the failed task's
   and the new task's timestamps) are reported beside ours, so our share can be told apart.

Everything runs against the real engine; the API server (etcd + kube-apiserver) comes from
``.ci/kube-up.sh`` with its own state directory and ports, and is stopped at the end if this run
started it. Every swarm object and namespace the run creates is removed at the end.

    .venv/bin/python bench/event_latency.py --services 50 --cr-trials 30 --failure-trials 20 --json /tmp/latency.json
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests

sys.path.insert(0, str(Path(__file__).parent))
from latency_common import (
    SK,
    EngineEventLog,
    KubeCluster,
    StatusWatch,
    Summary,
    cleanup_namespace,
    engine_time_ns,
    free_port,
    metric,
    ms,
    poll_file,
    running_container,
    settle,
    table,
    wait_until,
)

IMAGE = "local/busybox:1"
UP = "1/1"
READY_LINE = re.compile(r"^\s+ready:\s*['\"]?([^'\"\s]+)", re.MULTILINE)
TRIAL_TIMEOUT = 60.0


def service_doc(name: str, namespace: str, release: int) -> str:
    return textwrap.dedent(f"""\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          image: {IMAGE}
          command: [sleep, "3600"]
          replicas: 1
          env: {{RELEASE: "{release}"}}
          stopGracePeriod: 1s
        """)


def ms_between(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


@dataclass
class Kill:
    """One failure trial, every time in ms after the kill call started (None: never seen)."""

    service: str
    die: float | None = None  # the engine's container die event
    task_failed: float | None = None  # swarm's timestamp of the task turning failed
    status_down: float | None = None  # the status stopped saying 1/1
    task_running: float | None = None  # swarm's timestamp of the replacement task running
    status_up: float | None = None  # the status said 1/1 again


@dataclass
class Results:
    services: int
    apply_to_update: list[float] = field(default_factory=list)
    kubectl: list[float] = field(default_factory=list)
    apply_missed: int = 0
    kills: dict[str, list[Kill]] = field(default_factory=dict)
    load: dict[str, Load] = field(default_factory=dict)


@dataclass
class Load:
    """How busy a controller was during its trials: every pass, whatever woke it."""

    passes: float = 0.0
    pass_seconds: float = 0.0
    seconds: float = 0.0
    trials: int = 0
    unsettled: int = 0  # trials started while passes were still going on (see ``settle``)

    def measure(self, port: int) -> Callable[[], None]:
        """Start counting; the returned function stops."""
        (passes, busy), start = pass_counters(port), time.monotonic()

        def done() -> None:
            try:
                end_passes, end_busy = pass_counters(port)
            except requests.RequestException:  # the controller is gone (a failed run): no figure
                return
            self.passes += end_passes - passes
            self.pass_seconds += end_busy - busy
            self.seconds += time.monotonic() - start

        return done

    def settle(self, port: int) -> None:
        self.trials += 1
        if not settle(port):
            self.unsettled += 1

    def describe(self) -> str:
        rate = self.passes / self.seconds if self.seconds else 0.0
        mean = self.pass_seconds / self.passes * 1000 if self.passes else 0.0
        return (
            f"{self.passes:.0f} passes in {self.seconds:.0f} s ({rate:.1f}/s, {mean:.0f} ms each on average); "
            f"{self.unsettled} of {self.trials} trials started while passes were still running"
        )


def pass_counters(port: int) -> tuple[float, float]:
    return metric(port, "swarmkeeper_reconcile_total"), metric(port, "swarmkeeper_reconcile_time_seconds_sum")


# --- the trials ---------------------------------------------------------------------------------


def swarm_times(api: docker.APIClient, service: str, container: str, start_ns: int, kill: Kill) -> None:
    """Swarm's own bookkeeping: when the killed task turned failed, when its replacement ran."""
    tasks = api.tasks(filters={"service": service})
    for task in tasks:
        status = task["Status"]
        if (status.get("ContainerStatus") or {}).get("ContainerID") == container and status["State"] == "failed":
            kill.task_failed = ms_between(start_ns, engine_time_ns(status["Timestamp"]))
    running = [
        engine_time_ns(t["Status"]["Timestamp"])
        for t in tasks
        if t["Status"]["State"] == "running"
        and (t["Status"].get("ContainerStatus") or {}).get("ContainerID") != container
    ]
    if running:
        kill.task_running = ms_between(start_ns, max(running))


# ``probe(test, after_ns)``: when (ns) the victim's status first passed ``test`` after ``after_ns``.
Probe = Callable[[Callable[[str | None], bool], int], int | None]


def is_down(ready: str | None) -> bool:
    return ready is not None and ready != UP


def is_up(ready: str | None) -> bool:
    return ready == UP


def cr_probe(watch: StatusWatch, name: str) -> Probe:
    """The CR's status, as the Kubernetes watch delivers it."""

    def probe(test: Callable[[str | None], bool], after: int) -> int | None:
        return watch.first(name, after, test, TRIAL_TIMEOUT)

    return probe


def file_probe(file: Path, every: float) -> Probe:
    """The spec file's status block, read every ``every`` seconds from now on."""

    def probe(test: Callable[[str | None], bool], _after: int) -> int | None:
        return poll_file(file, READY_LINE, test, every, TRIAL_TIMEOUT)

    return probe


def kill_trial(api: docker.APIClient, events: EngineEventLog, swarm_name: str, probe: Probe) -> Kill:
    """Kill the task's container, then follow the status until it shows the failure and the recovery."""
    kill = Kill(swarm_name)
    container = running_container(api, swarm_name)
    if container is None:
        raise RuntimeError(f"{swarm_name} has no single running container")
    start = time.time_ns()
    api.kill(container)
    down = probe(is_down, start)
    die = events.first("container", "die", swarm_name, start, 10)
    kill.die = ms_between(start, die.time_ns) if die else None
    kill.status_down = ms_between(start, down) if down else None
    up = probe(is_up, down or start)
    kill.status_up = ms_between(start, up) if up else None
    swarm_times(api, swarm_name, container, start, kill)
    return kill


def operator_phase(
    args: argparse.Namespace, api: docker.APIClient, events: EngineEventLog, work: Path, results: Results
) -> None:
    n = args.services
    ns = f"lo{uuid.uuid4().hex[:8]}"
    kube = KubeCluster(Path(args.kube_state), args.kube_port, args.etcd_port)
    with ExitStack() as cleanup:
        print(f"operator: starting the API server ({args.kube_state})", flush=True)
        cleanup.callback(kube.down)  # only if this run started it
        kube.up()
        kube.kubectl("create", "namespace", ns)
        cleanup.callback(cleanup_namespace, api, ns)  # last: the operator is stopped by then
        cleanup.callback(kube.release, ns)
        kube.kubectl("apply", "-f", "-", input="---\n".join(service_doc(f"svc{i}", ns, 1) for i in range(n)))
        port = free_port()
        log = (work / "operator.log").open("wb")
        cleanup.callback(log.close)
        proc = subprocess.Popen(
            [SK, "operator", "-n", ns, "--metrics-addr", f"127.0.0.1:{port}", *args.controller_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=kube.env(),
        )
        cleanup.callback(stop, proc)
        watch = StatusWatch(kube.kubeconfig, ns)
        watch.start()
        cleanup.callback(watch.stop)
        print(f"operator: {n} SwarmService CRs in namespace {ns}; waiting for {UP} everywhere", flush=True)
        wait_until(lambda: leading(port) or proc.poll() is not None, 120, "operator not leading")
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited {proc.returncode}; see {work / 'operator.log'}")
        wait_until(lambda: all(watch.ready(f"svc{i}") == UP for i in range(n)), 900, "services not all 1/1", 0.5)
        settle(port)
        load = results.load.setdefault("operator", Load())
        cleanup.callback(load.measure(port))

        print(f"operator: {args.cr_trials} CR applies", flush=True)
        for i in range(args.cr_trials):
            name = f"svc{i % n}"
            argv, text = kubectl_change(args.kubectl_verb, name, ns, i + 2)
            start = time.time_ns()
            kube.kubectl(*argv, input=text)
            done = time.time_ns()
            update = events.first("service", "update", f"{ns}_{name}", start, TRIAL_TIMEOUT)
            results.kubectl.append(ms_between(start, done))
            if update is None:
                results.apply_missed += 1
                continue
            results.apply_to_update.append(ms_between(start, update.time_ns))
            # The rolling update stops the old task and starts the new one; each is an engine event
            # and a pass: the next trial starts once they are over.
            events.first("container", "start", f"{ns}_{name}", update.time_ns, TRIAL_TIMEOUT)
            load.settle(port)

        print(f"operator: {args.failure_trials} task kills", flush=True)
        kills = results.kills.setdefault("operator", [])
        for i in range(args.failure_trials):
            name = f"svc{n - 1 - i % n}"  # from the end: not one whose update is still settling
            wait_until(lambda: watch.ready(name) == UP, TRIAL_TIMEOUT, f"{name} not {UP}")  # noqa: B023
            kills.append(kill_trial(api, events, f"{ns}_{name}", cr_probe(watch, name)))
            load.settle(port)
        print(f"operator log: {work / 'operator.log'}", flush=True)


def kubectl_change(verb: str, name: str, ns: str, release: int) -> tuple[list[str], str | None]:
    """kubectl's arguments and input for one change of ``name``'s env var."""
    if verb == "patch":
        patch = json.dumps({"spec": {"env": {"RELEASE": str(release)}}})
        return ["patch", "ssvc", name, "-n", ns, "--type=merge", "-p", patch], None
    return ["apply", "-f", "-"], service_doc(name, ns, release)


def watch_phase(
    args: argparse.Namespace, api: docker.APIClient, events: EngineEventLog, work: Path, results: Results
) -> None:
    n = args.services
    ns = f"lw{uuid.uuid4().hex[:8]}"
    specs = work / "specs"
    specs.mkdir()
    for i in range(n):  # one file per service: a trial reads only its victim's file
        (specs / f"svc{i}.yaml").write_text(service_doc(f"svc{i}", ns, 1))
    port = free_port()
    with ExitStack() as cleanup:
        cleanup.callback(cleanup_namespace, api, ns)
        log = (work / "watch.log").open("wb")
        cleanup.callback(log.close)
        proc = subprocess.Popen(
            [
                *(SK, "watch", str(specs), "--source", f"bench-{ns}", "--status", "inline"),
                *("--metrics-addr", f"127.0.0.1:{port}", *args.controller_args),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        cleanup.callback(stop, proc)
        print(f"watch: {n} services in namespace {ns}; waiting for {UP} everywhere", flush=True)

        files = sorted(specs.glob("svc*.yaml"))
        wait_until(lambda: proc.poll() is not None or all(ready(f) == UP for f in files), 900, "not all 1/1", 0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"watch exited {proc.returncode}; see {work / 'watch.log'}")
        settle(port)
        load = results.load.setdefault("watch", Load())
        cleanup.callback(load.measure(port))

        print(f"watch: {args.failure_trials} task kills", flush=True)
        kills = results.kills.setdefault("watch", [])
        every = args.poll_ms / 1000
        for i in range(args.failure_trials):
            file = specs / f"svc{n - 1 - i % n}.yaml"
            wait_until(lambda: ready(file) == UP, TRIAL_TIMEOUT, f"{file.name} not {UP}")  # noqa: B023
            kills.append(kill_trial(api, events, f"{ns}_{file.stem}", file_probe(file, every)))
            load.settle(port)
        print(f"watch log: {work / 'watch.log'}", flush=True)


def ready(file: Path) -> str | None:
    m = READY_LINE.search(file.read_text())
    return m.group(1) if m else None


def leading(port: int) -> bool:
    try:
        return metric(port, "swarmkeeper_leader") == 1
    except requests.RequestException:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the report ---------------------------------------------------------------------------------


def report(results: Results, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"services": results.services}
    if results.kubectl:
        upd, kc = Summary.of(results.apply_to_update), Summary.of(results.kubectl)
        print(
            f"\nCR {args.kubectl_verb} → service update started (operator, N={results.services}, "
            f"{len(results.kubectl)} changes, {results.apply_missed} without an update event within "
            f"{TRIAL_TIMEOUT:.0f} s)\n"
        )
        rows = []
        if upd:
            rows.append([f"kubectl {args.kubectl_verb} started → engine's `service update` event", *upd.cells()])
        if kc:
            rows.append([f"`kubectl {args.kubectl_verb}` itself", *kc.cells()])
        print(table(["", "p50", "p95", "max"], rows))
        out["cr_apply"] = {
            "verb": args.kubectl_verb,
            "to_update_ms": results.apply_to_update,
            "kubectl_ms": results.kubectl,
            "missed": results.apply_missed,
            "to_update": upd.as_dict() if upd else None,
            "kubectl": kc.as_dict() if kc else None,
        }
    if results.kills:
        print(f"\nTask killed (`docker kill`) → status, N={results.services}; ms after the kill call\n")
        rows = []
        out["kills"] = {}
        for mode, kills in results.kills.items():
            columns: dict[str, Summary | None] = {}
            for what in ("die", "task_failed", "status_down", "task_running", "status_up"):
                columns[what] = Summary.of([v for k in kills if (v := getattr(k, what)) is not None])
            ours_down = Summary.of(
                [
                    k.status_down - k.task_failed
                    for k in kills
                    if k.status_down is not None and k.task_failed is not None
                ]
            )
            ours_up = Summary.of(
                [k.status_up - k.task_running for k in kills if k.status_up is not None and k.task_running is not None]
            )
            missed = sum(1 for k in kills if k.status_down is None or k.status_up is None)

            def p50(s: Summary | None) -> str:
                return ms(s.p50) if s else "-"

            def dist(s: Summary | None) -> str:
                return " / ".join(s.cells()) if s else "-"

            rows.append(
                [
                    f"{mode} ({len(kills)} kills, {missed} missed)",
                    p50(columns["task_failed"]),
                    f"**{dist(columns['status_down'])}**",
                    dist(ours_down),
                    p50(columns["task_running"]),
                    f"**{dist(columns['status_up'])}**",
                    dist(ours_up),
                ]
            )
            out["kills"][mode] = {
                "trials": [vars(k) for k in kills],
                **{what: s.as_dict() if s else None for what, s in columns.items()},
                "task_failed_to_status": ours_down.as_dict() if ours_down else None,
                "task_running_to_status": ours_up.as_dict() if ours_up else None,
                "missed": missed,
            }
        print(
            table(
                [
                    "front door",
                    "swarm: task failed p50",
                    "status shows it p50 / p95 / max",
                    "of which after swarm's failed (p50 / p95 / max)",
                    "swarm: new task running p50",
                    f"status {UP} again p50 / p95 / max",
                    "of which after swarm's running",
                ],
                rows,
            )
        )
        die = Summary.of([k.die for ks in results.kills.values() for k in ks if k.die is not None])
        if die:
            print(f"\nkill call → the engine's container `die` event: p50 {ms(die.p50)}, max {ms(die.max)}")
    if results.load:
        print("\nBusy during the trials (passes woken by anything, other users' containers included):")
        for mode, load in results.load.items():
            print(f"  {mode}: {load.describe()}")
        out["load"] = {mode: vars(load) for mode, load in results.load.items()}
    return out


def interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=50, help="services (and CRs) in place during the trials")
    parser.add_argument("--cr-trials", type=int, default=30, help="CR changes (0: skip)")
    parser.add_argument("--failure-trials", type=int, default=20, help="task kills per front door (0: skip)")
    parser.add_argument("--only", choices=["operator", "watch"], help="run one front door only")
    parser.add_argument("--kubectl-verb", choices=["apply", "patch"], default="apply")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="how often watch mode's status file is read")
    parser.add_argument("--kube-state", default="/tmp/swarmkeeper-kube-bench")
    parser.add_argument("--kube-port", type=int, default=16543)
    parser.add_argument("--etcd-port", type=int, default=23890, help="and this + 10 for etcd's peer port")
    parser.add_argument(
        "--controller-arg", dest="controller_args", action="append", default=[], help="extra argument for both"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if not args.controller_args:
        args.controller_args = ["-v"]

    # A stopped run still removes what it created (SIGINT is ignored in a background job).
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    api = docker.APIClient(version="auto", timeout=120)
    work = Path(tempfile.mkdtemp(prefix="sklatency-"))
    events = EngineEventLog(api)
    events.start()
    results = Results(args.services)
    try:
        if args.only != "watch" and (args.cr_trials or args.failure_trials):
            operator_phase(args, api, events, work, results)
        if args.only != "operator" and args.failure_trials:
            watch_phase(args, api, events, work, results)
    finally:
        events.stop()
        out = report(results, args)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
            print(f"\nfigures: {args.json}")


if __name__ == "__main__":
    main()
