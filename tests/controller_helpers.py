"""Run ``swarmkeeper watch`` as a real process, as users do, and read what it exposes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from helpers import wait_for

SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Controller:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.proc, self.log, self.port = proc, log, port

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels``."""
        text = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
            if not m:
                continue
            have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def ready(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@contextmanager
def controller(
    specs: Path, source: str, *args: str, log: Path | None = None, wait_ready: bool = True
) -> Iterator[Controller]:
    """``swarmkeeper watch SPECS --source SOURCE ARGS`` with metrics on a free port; stopped (SIGTERM) after."""
    port = free_port()
    log = log or specs.parent / f"watch-{port}.log"
    cmd = [
        str(SWARMKEEPER),
        "watch",
        str(specs),
        "--source",
        source,
        "--metrics-addr",
        f"127.0.0.1:{port}",
        "-vv",
        *args,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"}
        )
    ctl = Controller(proc, log, port)
    try:
        if wait_ready:
            wait_for(lambda: ctl.ready() or proc.poll() is not None, timeout=60, message="controller not ready")
            assert proc.poll() is None, ctl.logs()
        yield ctl
    finally:
        ctl.stop()


def wait_until_idle(ctl: Controller, quiet: float = 1.5, timeout: float = 60) -> None:
    """Until the controller has run passes for ``quiet`` seconds without a mutating engine call."""
    deadline = time.monotonic() + timeout
    last = ctl.metric("swarmkeeper_engine_requests_total", method="POST") + ctl.metric(
        "swarmkeeper_engine_requests_total", method="DELETE"
    )
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = ctl.metric("swarmkeeper_engine_requests_total", method="POST") + ctl.metric(
            "swarmkeeper_engine_requests_total", method="DELETE"
        )
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError("controller never went idle:\n" + ctl.logs()[-3000:])
