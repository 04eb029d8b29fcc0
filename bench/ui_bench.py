"""The dashboard's cost: a `watch --ui-addr` over N services, its idle CPU with no page open and with
P pages open, and how long a status change takes to reach every open page (p50/p95).

    .venv/bin/python bench/ui_bench.py --services 200 --pages 5 --kills 20

A page here is what a browser tab costs the controller: it loads /, /app.js, /app.css and
/api/state, then keeps /api/events open and takes every state pushed to it (the browser's own
rendering costs the controller nothing). A status change is a task killed with `docker kill`; it
has reached a page when that page receives a state in which the service is below its replicas or
shows the failed task.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import requests

sys.path.insert(0, str(Path(__file__).parent))
from latency_common import Summary, free_port, table
from watch_bench import proc_stats, wait_converged
from workload import write_specs

ROOT = Path(__file__).resolve().parent.parent
SK = str(ROOT / ".venv" / "bin" / "swarmkeeper")
api = docker.APIClient(version="auto", timeout=120)


class Page:
    """One open page: the assets once, then every state from /api/events with its arrival time."""

    def __init__(self, url: str) -> None:
        for path in ("/", "/app.js", "/app.css", "/api/state"):
            requests.get(url + path, timeout=10).raise_for_status()
        self.response = requests.get(f"{url}/api/events", stream=True, timeout=(5, 60))
        self.response.raise_for_status()
        self.states: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.received = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        # Whatever has arrived (read1), split into events here: a state of hundreds of services is
        # read as fast as a browser reads it, not a byte at a time, and nothing waits for more.
        buffer = b""
        try:
            while chunk := self.response.raw.read1(1 << 16):
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    at = time.time()
                    lines = event.decode().splitlines()
                    if "event: state" in lines:
                        data = next(line[6:] for line in lines if line.startswith("data: "))
                        self.received += 1
                        self.states.put((at, json.loads(data)))
        except (requests.RequestException, AttributeError, ValueError, StopIteration):
            pass  # closed

    def drain(self) -> None:
        while not self.states.empty():
            self.states.get_nowait()

    def until_degraded(self, namespace: str, name: str, after: float, timeout: float) -> tuple[float, float]:
        """Arrival time of the first state that shows ``name`` short of a task, and the end of the
        pass that state comes from."""
        deadline = time.monotonic() + timeout
        while True:
            at, state = self.states.get(timeout=max(0.01, deadline - time.monotonic()))
            for o in state["objects"]:
                if o["namespace"] == namespace and o["name"] == name and o["kind"] == "SwarmService":
                    failed = any(t["state"] == "failed" for t in o["tasks"])
                    if (o["ready"] or "").split("/")[0] != (o["ready"] or "").split("/")[-1] or failed:
                        started = datetime.fromisoformat(state["last_pass"]["at"].replace("Z", "+00:00"))
                        return at, started.timestamp() + state["last_pass"]["duration_ms"] / 1000
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: no page saw the kill")

    def close(self) -> None:
        self.response.close()


def cpu_share(pid: int, seconds: float) -> float:
    """The process's CPU over ``seconds``, in % of one core."""
    _, before = proc_stats(pid)
    time.sleep(seconds)
    _, after = proc_stats(pid)
    return (after - before) / seconds * 100


def kill_one(namespace: str, name: str) -> float:
    (task,) = api.tasks(filters={"service": f"{namespace}_{name}", "desired-state": "running"})
    container = task["Status"]["ContainerStatus"]["ContainerID"]
    at = time.time()
    api.kill(container)
    return at


def run(n: int, pages: int, kills: int, idle: float, tmp: Path) -> None:
    namespace = f"bui{n}"
    specs = write_specs(tmp / "specs", n, namespace)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp / "watch.log").open("wb") as log:
        proc = subprocess.Popen(
            [SK, "watch", str(specs), "--source", namespace, "--ui-addr", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    opened: list[Page] = []
    try:
        wait_converged(namespace, n)
        time.sleep(10)  # the passes after convergence (statuses written back) are over
        rss, _ = proc_stats(proc.pid)
        alone = cpu_share(proc.pid, idle)
        opened = [Page(url) for _ in range(pages)]
        time.sleep(3)
        with_pages = cpu_share(proc.pid, idle)
        latencies: list[float] = []
        passes: list[float] = []  # kill → end of the pass that saw it
        pushes: list[float] = []  # end of that pass → the page has it
        for i in range(kills):
            name = f"svc{(i * 7) % n}"
            for page in opened:
                page.drain()
            killed = kill_one(namespace, name)
            for page in opened:
                arrived, pass_end = page.until_degraded(namespace, name, killed, 30)
                latencies.append((arrived - killed) * 1000)
                passes.append((pass_end - killed) * 1000)
                pushes.append((arrived - pass_end) * 1000)
            wait_converged(namespace, n)
            time.sleep(2)
        summary = Summary.of(latencies)
        assert summary is not None
        print(
            table(
                ["figure", "value"],
                [
                    ["services", str(n)],
                    ["controller RSS", f"{rss:.0f} MiB"],
                    [f"idle CPU, no page ({idle:.0f} s)", f"{alone:.2f} % of a core"],
                    [f"idle CPU, {pages} pages open ({idle:.0f} s)", f"{with_pages:.2f} % of a core"],
                    ["rise", f"{with_pages - alone:+.2f} % of a core"],
                    [f"task killed → every page ({kills} kills, {pages} pages each) p50", f"{summary.p50:.0f} ms"],
                    ["... p95", f"{summary.p95:.0f} ms"],
                    ["... max", f"{summary.max:.0f} ms"],
                    ["of which kill → end of the pass that saw it, p50", f"{statistics.median(passes):.0f} ms"],
                    ["of which end of that pass → page, p50", f"{statistics.median(pushes):.0f} ms"],
                    ["states pushed per page", f"{statistics.mean(p.received for p in opened):.0f}"],
                ],
            )
        )
    finally:
        for page in opened:
            page.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        subprocess.run([SK, "delete", str(specs)], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of each idle measurement")
    args = parser.parse_args()
    run(args.services, args.pages, args.kills, args.idle, Path(tempfile.mkdtemp(prefix="skui-")))


if __name__ == "__main__":
    main()
