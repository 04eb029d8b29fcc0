"""What the latency benchmarks share: percentiles, the engine's own event times, a controller's
metrics, and a real Kubernetes API server to run the operator against.

Benchmark code only, never imported by the product. It measures and cleans up; it must not change
anything it did not create (swarm objects are removed by their ``<namespace>_`` prefix only, and
an API server it found running is left running).
"""

from __future__ import annotations

import calendar
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
SK = str(ROOT / ".venv" / "bin" / "swarmkeeper")

sys.path.insert(0, str(ROOT / "tests"))
from helpers import cleanup_namespace  # noqa: E402  (tests/ is not a package)
from kube_fixtures import Kube, release_custom_resources  # noqa: E402

__all__ = ["cleanup_namespace"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary | None:
        if not values:
            return None
        if len(values) == 1:
            return cls(1, values[0], values[0], values[0])
        # "inclusive": p95 of 20 values lies between the 19th and 20th, never above the largest.
        p95 = statistics.quantiles(values, n=20, method="inclusive")[18]
        return cls(len(values), statistics.median(values), p95, max(values))

    def cells(self) -> list[str]:
        return [ms(self.p50), ms(self.p95), ms(self.max)]

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "p50_ms": round(self.p50, 1), "p95_ms": round(self.p95, 1), "max_ms": round(self.max, 1)}


def ms(value: float) -> str:
    return f"{value:,.0f} ms"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, ready to paste into docs/benchmarks.md."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- a controller's /metrics --------------------------------------------------------------------


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def settle(port: int, quiet: float = 1.5, limit: float = 6.0) -> bool:
    """Until no pass has finished for ``quiet`` seconds (True), or ``limit`` seconds have gone by (False).

    A trial should not start behind the passes that the previous one caused (a rolling update's
    container stops and starts, their follow-ups). On an engine that others use too, their
    containers' events keep the controller busy, so a quiet moment may never come: then the trial
    starts anyway, as a user's change would.
    """
    deadline = time.monotonic() + limit
    last, since = metric(port, "swarmkeeper_reconcile_total"), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = metric(port, "swarmkeeper_reconcile_total")
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)


# --- the engine's own clock ---------------------------------------------------------------------


@dataclass(frozen=True)
class EngineEvent:
    time_ns: int  # the engine's timeNano
    type: str
    action: str
    name: str  # service name, for container events the task's service


@dataclass
class EngineEventLog:
    """Service and container events, as the engine timestamps them, from a moment before the first
    trial on (``since``): nothing that happens between two reads of the stream is lost."""

    api: docker.APIClient
    events: list[EngineEvent] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stream: Any = None

    def start(self) -> None:
        self._stream = self.api.events(decode=True, since=time.time() - 1, filters={"type": ["service", "container"]})
        threading.Thread(target=self._follow, name="engine-event-log", daemon=True).start()

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def _follow(self) -> None:
        try:
            for ev in self._stream:
                attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                name = attrs.get("name") if ev.get("Type") == "service" else attrs.get("com.docker.swarm.service.name")
                if not name:
                    continue
                with self._cond:
                    self.events.append(EngineEvent(int(ev["timeNano"]), ev["Type"], ev.get("Action", ""), name))
                    self._cond.notify_all()
        except Exception:  # the stream is closed at the end of the run
            pass

    def first(self, type_: str, action: str, name: str, after_ns: int, timeout: float) -> EngineEvent | None:
        """The first such event at or after ``after_ns``, waited for up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if ev.time_ns >= after_ns and ev.type == type_ and ev.action == action and ev.name == name:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


def running_container(api: docker.APIClient, service: str) -> str | None:
    found = api.containers(filters={"label": f"com.docker.swarm.service.name={service}", "status": "running"})
    return found[0]["Id"] if len(found) == 1 else None


def engine_time_ns(stamp: str) -> int:
    """A task's Status.Timestamp (RFC 3339 in UTC, nanoseconds) as Unix nanoseconds."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9])


# --- Kubernetes ---------------------------------------------------------------------------------


@dataclass
class KubeCluster:
    """etcd + kube-apiserver from ``.ci/kube-up.sh``; stopped at the end only if started here."""

    state: Path
    kube_port: int
    etcd_port: int
    bin_dir: Path = Path()
    kubeconfig: Path = Path()
    started_here: bool = False

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "SWARMKEEPER_KUBE_BIN": str(self.bin_dir),
            "SWARMKEEPER_KUBE_PORT": str(self.kube_port),
            "SWARMKEEPER_ETCD_PORT": str(self.etcd_port),
        }

    def up(self) -> None:
        build = subprocess.run(
            ["bash", str(ROOT / ".ci" / "kube-build.sh")], capture_output=True, text=True, timeout=3600, check=True
        )
        self.bin_dir = Path(build.stdout.strip().splitlines()[-1])
        self.started_here = not _running(self.state / "kube-apiserver.pid", self.state)
        for attempt in (1, 2):
            proc = subprocess.run(
                ["bash", str(ROOT / ".ci" / "kube-up.sh"), str(self.state)],
                capture_output=True,
                text=True,
                timeout=300,
                env=self.env(),
            )
            last = (proc.stdout.strip().splitlines() or [""])[-1]
            match = re.fullmatch(r"export KUBECONFIG=(\S+)", last)
            if proc.returncode == 0 and match is not None:
                break
            if attempt == 2 or not self.started_here:
                raise RuntimeError(f"kube-up.sh failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            # A start that failed half-way (seen once under load: the apiserver gone before its
            # first log line) leaves a state directory behind; start again from nothing.
            self.down()
        assert match is not None
        self.kubeconfig = Path(match.group(1))
        self.kube.install_crds()

    def down(self) -> None:
        if self.started_here:
            subprocess.run(
                ["bash", str(ROOT / ".ci" / "kube-down.sh"), str(self.state)], capture_output=True, timeout=120
            )

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    @property
    def kube(self) -> Kube:
        """The same API server as the tests' client (``kubectl`` with this kubeconfig)."""
        return Kube(self.kubeconfig, self.bin_dir)

    def release(self, namespace: str) -> None:
        """Delete the namespace's custom resources with their finalizers removed (no operator runs any
        more), then the namespace (it stays Terminating: this API server has no namespace controller)."""
        release_custom_resources(self.kube, namespace)
        self.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _running(pidfile: Path, state: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
        return str(state) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return False


@dataclass
class StatusWatch:
    """Every change of the SwarmService CRs of one namespace, with the moment it arrived here, from
    a Kubernetes watch (not polling): ``ready`` as the operator last wrote it, per CR."""

    kubeconfig: Path
    namespace: str
    history: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        from kubernetes import client, config

        self._api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(self.kubeconfig)))
        threading.Thread(target=self._follow, name="status-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _list(self) -> str:
        listed = self._api.list_namespaced_custom_object("swarmkeeper.io", "v1alpha1", self.namespace, "swarmservices")
        now = time.time_ns()
        with self._cond:
            for item in listed["items"]:
                self._record(item, now)
        return str(listed["metadata"]["resourceVersion"])

    def _record(self, obj: dict[str, Any], at: int) -> None:
        ready = (obj.get("status") or {}).get("ready")
        seen = self.history.setdefault(obj["metadata"]["name"], [])
        if not seen or seen[-1][1] != ready:
            seen.append((at, ready))
            self._cond.notify_all()

    def _follow(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version = self._list()
        while not self._stop.is_set():
            try:
                for ev in watch.Watch().stream(
                    self._api.list_namespaced_custom_object,
                    "swarmkeeper.io",
                    "v1alpha1",
                    self.namespace,
                    "swarmservices",
                    resource_version=version,
                    timeout_seconds=300,
                ):
                    at = time.time_ns()
                    obj = ev["object"]
                    version = obj["metadata"]["resourceVersion"]
                    with self._cond:
                        self._record(obj, at)
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status != 410:  # an expired resourceVersion: list again; anything else is a bug
                    raise
                version = self._list()

    def ready(self, name: str) -> str | None:
        with self._cond:
            seen = self.history.get(name)
            return seen[-1][1] if seen else None

    def first(self, name: str, after_ns: int, test: Callable[[str | None], bool], timeout: float) -> int | None:
        """When ``ready`` of ``name`` first passed ``test`` in a change that arrived after ``after_ns``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, ready in self.history.get(name, []):
                    if at >= after_ns and test(ready):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


def poll_file(
    path: Path, pattern: re.Pattern[str], test: Callable[[str | None], bool], every: float, timeout: float
) -> int | None:
    """When the first group of ``pattern`` in ``path`` first passed ``test``, reading it every ``every`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = pattern.search(path.read_text())
        except OSError:  # between the temp file's rename and our open: read again
            m = None
        else:
            if test(m.group(1) if m else None):
                return time.time_ns()
        time.sleep(every)
    return None
