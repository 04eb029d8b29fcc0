"""swarmkeeper vs `docker stack deploy` on the same engine and the same workload.

For N services (with N/10 networks and N/10 secrets): cold create until every task runs, a no-op
re-apply (wall time and Engine API calls, counted by a proxy on the engine socket), one service
changed until its update completed, and removal of everything; also each command's ``--help``
(process start and imports only). Prints a table with ratios and the CPU time of the commands.

Create and delete run each tool alone on an engine holding nothing else; no-op and change run
with both deployed. Each is measured ROUNDS times (default 2), alternating which tool goes first;
the table shows the median, the raw file every run. PHASES picks phases (default
``help,create,noop,change,delete``; create and delete always run together).

swarmkeeper runs as an installed package does, from bytecode compiled once (into a cache under the
bench's temporary folder, after a warm-up run of each command that is not measured). BYTECODE=0
runs it with PYTHONDONTWRITEBYTECODE=1 instead, as a source checkout without ``__pycache__``
(every run compiles swarmkeeper's own modules again).

SWARMKEEPER names another swarmkeeper executable to measure (another build, to compare).

    ROUNDS=3 .venv/bin/python bench/stack_compare.py 10 50 200
    PHASES=help,noop ROUNDS=15 .venv/bin/python bench/stack_compare.py 50
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import docker

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from workload import write_compose, write_specs

from engine_proxy import EngineProxy

ROOT = Path(__file__).resolve().parent.parent
SK = os.environ.get("SWARMKEEPER", str(ROOT / ".venv" / "bin" / "swarmkeeper"))
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
SK_NS, STACK_NS = "bsk", "bst"
tools_ns = {"sk": SK_NS, "stack": STACK_NS}
STACK_FIRST = int(os.environ.get("STACK_FIRST", "1"))  # which tool starts the first phase
PHASES = ("help", "create", "noop", "change", "delete")
BYTECODE = os.environ.get("BYTECODE", "1") != "0"
api = docker.APIClient(version="auto", timeout=120)
ENV: dict[str, str] = {}  # set by main(): how swarmkeeper's Python runs


def python_env(tmp: Path) -> dict[str, str]:
    """The environment of every measured command (the docker CLI ignores these variables)."""
    env = dict(os.environ)
    if BYTECODE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def selected_phases() -> set[str]:
    chosen = {p.strip() for p in os.environ.get("PHASES", ",".join(PHASES)).split(",") if p.strip()}
    unknown = chosen - set(PHASES)
    if unknown:
        sys.exit(f"unknown phases: {', '.join(sorted(unknown))}; use {', '.join(PHASES)}")
    if chosen & {"create", "delete"}:  # a delete needs the create before it, and leaves the engine empty
        chosen |= {"create", "delete"}
    return chosen


def counts(proxy: EngineProxy) -> dict[str, int]:
    """Calls seen: total, mutating, and list calls (a GET on a collection such as /services)."""
    seen = proxy.requests
    return {
        "total": len(seen),
        "mutating": sum(r.mutating for r in seen),
        "list": sum(r.method == "GET" and r.path.count("/") == 1 for r in seen),
    }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], proxy: EngineProxy) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one command run to its end."""
    env = {**ENV, "DOCKER_HOST": proxy.url}
    cpu, t = children_cpu(), time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.monotonic() - t, children_cpu() - cpu


def services(ns: str) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], api.services(filters={"label": f"com.docker.stack.namespace={ns}"}, status=True))


def wait(pred: Callable[[], bool], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("workload did not settle")
        time.sleep(0.25)


def all_running(ns: str, n: int) -> Callable[[], bool]:
    def check() -> bool:
        svcs = services(ns)
        return len(svcs) == n and all(
            s["ServiceStatus"]["RunningTasks"] == s["ServiceStatus"]["DesiredTasks"] for s in svcs
        )

    return check


def update_done(ns: str, name: str) -> Callable[[], bool]:
    def check() -> bool:
        svc = api.inspect_service(f"{ns}_{name}")
        state = (svc.get("UpdateStatus") or {}).get("State")
        return state == "completed"

    return check


def gone(ns: str) -> Callable[[], bool]:
    def check() -> bool:
        label = {"label": f"com.docker.stack.namespace={ns}"}
        return (
            not services(ns)
            and not api.networks(filters=label)
            and not api.secrets(filters=label)
            and not [
                t
                for t in api.tasks()
                if t["Spec"].get("ContainerSpec", {}).get("Labels", {}).get("com.docker.stack.namespace") == ns
                and t["Status"]["State"] == "running"
            ]
        )

    return check


# A tool's commands and checks: deploy, remove, all tasks running, everything gone.
Tool = tuple[list[str], list[str], Callable[[], bool], Callable[[], bool]]


def order(r: int) -> list[str]:
    """Which tool goes first in round ``r``: they take turns."""
    return ["stack", "sk"] if (r + STACK_FIRST) % 2 else ["sk", "stack"]


class Samples:
    """Every measured run, by phase and tool ("create/sk"), with the calls the proxy counted."""

    def __init__(self, proxy: EngineProxy) -> None:
        self.proxy = proxy
        self.runs: dict[str, list[dict[str, float]]] = {}

    def measure(self, key: str, cmd: list[str], settle: Callable[[], bool], pause: float = 2) -> None:
        self.proxy.reset()
        t = time.monotonic()
        cmd_time, cpu = run(cmd, self.proxy)
        calls = counts(self.proxy)
        wait(settle)
        sample = {
            "wall": time.monotonic() - t,
            "command": cmd_time,
            "cpu": cpu,
            **{f"calls_{k}": v for k, v in calls.items()},
        }
        self.runs.setdefault(key, []).append(sample)
        time.sleep(pause)

    def medians(self) -> dict[str, dict[str, float]]:
        """The median of each (tool, phase) over its runs; calls are the same in every run, the first's kept."""
        out: dict[str, dict[str, float]] = {}
        for key, runs in self.runs.items():
            walls = [x["wall"] for x in runs]
            medians = {k: statistics.median(x[k] for x in runs) for k in ("command", "cpu")}
            out[key] = {**runs[0], **medians, "wall": statistics.median(walls), "runs": walls}  # type: ignore[dict-item]
        return out


def bench(n: int, tmp: Path, proxy: EngineProxy, rounds: int, phases: set[str]) -> dict[str, dict[str, float]]:
    specs = write_specs(tmp / f"specs{n}", n, SK_NS)
    compose = write_compose(tmp / f"compose{n}", n)
    sk_apply = [SK, "apply", str(specs)]
    sk_delete = [SK, "delete", str(specs)]
    stack = [DOCKER, "stack", "deploy", "-c", str(compose), "--resolve-image", "never", "--prune", STACK_NS]
    stack_rm = [DOCKER, "stack", "rm", STACK_NS]
    samples = Samples(proxy)
    if BYTECODE:  # compile what each swarmkeeper command imports, once, outside the measurements
        warm_up(specs, proxy)
    tools: dict[str, Tool] = {
        "sk": (sk_apply, sk_delete, all_running(SK_NS, n), gone(SK_NS)),
        "stack": (stack, stack_rm, all_running(STACK_NS, n), gone(STACK_NS)),
    }
    if "help" in phases:
        measure_help(samples, rounds)
    if "create" in phases:
        measure_create(samples, rounds, tools)
    if phases & {"noop", "change"}:
        measure_side_by_side(samples, rounds, phases, tools, n, specs, compose)
    return samples.medians()


def warm_up(specs: Path, proxy: EngineProxy) -> None:
    for cmd in (
        [SK, "--help"],
        [SK, "apply", "--dry-run", str(specs)],
        [SK, "delete", "svc", "absent", "-n", SK_NS],
    ):
        run(cmd, proxy)


def measure_help(samples: Samples, rounds: int) -> None:
    """Start-up alone: no engine call, nothing loaded."""
    helps = {"sk": [SK, "--help"], "stack": [DOCKER, "stack", "deploy", "--help"]}
    for r in range(rounds):
        for tool in order(r):
            samples.measure(f"help/{tool}", helps[tool], lambda: True, pause=0.2)


def measure_create(samples: Samples, rounds: int, tools: dict[str, Tool]) -> None:
    """Create and delete: each tool alone on an engine holding nothing else, in alternating order
    (the first create on an engine is slower than the next, whichever tool makes it)."""
    for r in range(rounds):
        for tool in order(r):
            up, down, running, removed = tools[tool]
            samples.measure(f"create/{tool}", up, running)
            samples.measure(f"delete/{tool}", down, removed)


def measure_side_by_side(
    samples: Samples, rounds: int, phases: set[str], tools: dict[str, Tool], n: int, specs: Path, compose: Path
) -> None:
    """No-op and change: both deployed side by side, alternating which goes first."""
    for tool in ("sk", "stack"):
        run(tools[tool][0], samples.proxy)
    wait(lambda: all_running(SK_NS, n)() and all_running(STACK_NS, n)())
    for r in range(rounds):
        if "noop" in phases:
            for tool in order(r):
                samples.measure(f"noop/{tool}", tools[tool][0], lambda: True)
        if "change" in phases:
            release = str(r + 2)
            write_specs(specs, n, SK_NS, release=release, changed=0)
            write_compose(compose.parent, n, release=release, changed=0)
            for tool in order(r):
                samples.measure(f"change/{tool}", tools[tool][0], update_done(tools_ns[tool], "svc0"))
    for tool in ("sk", "stack"):
        run(tools[tool][1], samples.proxy)
    wait(lambda: gone(SK_NS)() and gone(STACK_NS)())


def main() -> None:
    rounds = int(os.environ.get("ROUNDS", "2"))
    phases = selected_phases()
    counts = [int(a) for a in sys.argv[1:]] or [10, 50, 200]
    tmp = Path(tempfile.mkdtemp(prefix="skbench-"))
    ENV.update(python_env(tmp))
    proxy = EngineProxy(tmp / "engine.sock").start()
    results = {}
    try:
        for n in counts:
            results[n] = bench(n, tmp, proxy, rounds, phases)
            r = results[n]
            print(f"\nN={n} ({'bytecode cached' if BYTECODE else 'compiled every run'}, {rounds} rounds)")
            print(
                f"{'phase':<8} {'swarmkeeper s':>14} {'stack s':>9} {'ratio':>6} {'sk calls (mut/list)':>20} "
                f"{'stack calls (mut/list)':>23} {'sk cpu s':>9} {'stack cpu s':>12}"
            )
            for phase in PHASES:
                if f"{phase}/sk" not in r:
                    continue
                a, b = r[f"{phase}/sk"], r[f"{phase}/stack"]
                print(
                    f"{phase:<8} {a['wall']:>14.3f} {b['wall']:>9.3f} {a['wall'] / b['wall']:>6.2f} "
                    f"{a['calls_total']:>8.0f} ({a['calls_mutating']:.0f}/{a['calls_list']:.0f}) "
                    f"{b['calls_total']:>11.0f} ({b['calls_mutating']:.0f}/{b['calls_list']:.0f}) "
                    f"{a['cpu']:>9.3f} {b['cpu']:>12.3f}"
                )
            sys.stdout.flush()
    finally:
        proxy.stop()
        (Path(os.environ.get("BENCH_OUT", tmp)) / "stack_compare.json").write_text(json.dumps(results, indent=1))
        shutil.rmtree(tmp / "specs10", ignore_errors=True)
        shutil.rmtree(tmp / "pycache", ignore_errors=True)
    print(f"\nraw results: {Path(os.environ.get('BENCH_OUT', tmp)) / 'stack_compare.json'}")


if __name__ == "__main__":
    main()
