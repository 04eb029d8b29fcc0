"""Watch mode: file save → service update started (p50/p95), the cost of an idle pass, and the
controller's memory and CPU at rest, for N services.

    .venv/bin/python bench/watch_bench.py --saves 30 50 200
    .venv/bin/python bench/watch_bench.py --status none 50 200   # without status write-back

A save edits one line of the one file that holds the service, in place, as an editor would; status
is written back into the spec files (watch's default) unless --status says otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
import requests

sys.path.insert(0, str(Path(__file__).parent))
from latency_common import free_port
from workload import write_specs

ROOT = Path(__file__).resolve().parent.parent
SK = str(ROOT / ".venv" / "bin" / "swarmkeeper")
api = docker.APIClient(version="auto", timeout=120)


def metrics(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = out.get(m.group(1) + (m.group(2) or ""), 0) + float(m.group(3))
    return out


def pick(ms: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in ms.items():
        if key.split("{")[0] == name and all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


def wait_converged(ns: str, n: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        svcs = api.services(filters={"label": f"com.docker.stack.namespace={ns}"}, status=True)
        if len(svcs) == n and all(
            s["ServiceStatus"]["RunningTasks"] == s["ServiceStatus"]["DesiredTasks"] for s in svcs
        ):
            return
        time.sleep(0.5)
    raise TimeoutError("not converged")


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process."""
    rss = (
        next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        / 1024
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def save(specs: Path, release: str) -> None:
    """Change svc0's RELEASE in the file that holds it, leaving every other line (status too) alone."""
    for path in sorted(specs.glob("workload*.yaml")):
        text = path.read_text()
        at = text.find("{name: svc0,")
        if at < 0:
            continue
        head, tail = text[:at], text[at:]
        path.write_text(head + re.sub(r'RELEASE: "[^"]*"', f'RELEASE: "{release}"', tail, count=1))
        return
    raise LookupError("svc0 is in no workload file")


def run(n: int, saves: int, tmp: Path, status: str) -> None:
    ns = f"bw{n}"
    specs = write_specs(tmp / f"w{n}", n, ns)
    port = free_port()
    log = open(tmp / f"watch{n}.log", "wb")  # noqa: SIM115 (kept open for the controller's lifetime)
    proc = subprocess.Popen(
        [
            SK,
            "watch",
            str(specs),
            "--source",
            ns,
            "--status",
            status,
            "--interval",
            "1s",
            "--metrics-addr",
            f"127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        wait_converged(ns, n)
        time.sleep(3)
        # idle: passes every second, nothing to do
        m0, (_rss0, cpu0), t0 = metrics(port), proc_stats(proc.pid), time.monotonic()
        time.sleep(20)
        m1, (rss1, cpu1), t1 = metrics(port), proc_stats(proc.pid), time.monotonic()
        passes = pick(m1, "swarmkeeper_reconcile_total") - pick(m0, "swarmkeeper_reconcile_total")
        seconds = pick(m1, "swarmkeeper_reconcile_time_seconds_sum") - pick(
            m0, "swarmkeeper_reconcile_time_seconds_sum"
        )
        gets = pick(m1, "swarmkeeper_engine_requests_total", method="GET") - pick(
            m0, "swarmkeeper_engine_requests_total", method="GET"
        )
        mut = sum(
            pick(m1, "swarmkeeper_engine_requests_total", method=x)
            - pick(m0, "swarmkeeper_engine_requests_total", method=x)
            for x in ("POST", "PUT", "DELETE")
        )
        print(
            f"N={n} (status {status}): idle pass {seconds / passes * 1000:.0f} ms, "
            f"{gets / passes:.1f} GET + {mut / passes:.1f} mutating calls per pass "
            f"({passes:.0f} passes); RSS {rss1:.0f} MiB; idle CPU "
            f"{(cpu1 - cpu0) / (t1 - t0) * 100:.1f}% of a core"
        )
        if not saves:
            return
        # save → update started: the engine's own "service update" event time
        events = api.events(decode=True, filters={"type": "service", "event": "update"})
        updates: list[int] = []
        got = threading.Event()

        def follow() -> None:
            for ev in events:
                if ev.get("Actor", {}).get("Attributes", {}).get("name") == f"{ns}_svc0":
                    updates.append(int(ev["timeNano"]))
                    got.set()

        threading.Thread(target=follow, daemon=True).start()
        latencies = []
        for i in range(saves):
            got.clear()
            before = time.time_ns()
            save(specs, str(i + 2))
            if not got.wait(30):
                raise TimeoutError("no update event")
            latencies.append((updates[-1] - before) / 1e6)
            time.sleep(1.2)  # let the controller go idle between saves
        events.close()
        qs = statistics.quantiles(latencies, n=20)
        print(
            f"N={n} (status {status}): save → update started over {saves} saves: "
            f"p50 {statistics.median(latencies):.0f} ms, p95 {qs[18]:.0f} ms, max {max(latencies):.0f} ms"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        subprocess.run([SK, "delete", str(specs)], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=30)
    parser.add_argument("--status", choices=["inline", "file", "none"], default="inline")
    parser.add_argument("counts", type=int, nargs="*", default=[50, 200])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="skwatch-"))
    for n in args.counts:
        run(n, args.saves, tmp, args.status)


if __name__ == "__main__":
    main()
