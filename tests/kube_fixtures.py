"""A real Kubernetes API server for tests, and the operator run against it as a real process.

The API server (etcd + kube-apiserver, nothing else: no scheduler, no controller-manager) comes
from ``.ci/kube-build.sh`` and ``.ci/kube-up.sh``; ``./dev test`` starts it before pytest and sets
``SWARMKEEPER_KUBE_BIN`` and ``KUBECONFIG``. Run alone, the ``kube`` fixture builds and starts it
itself (a cold build takes a while) and stops it again at the end if it started it. When either
script fails, the tests fail; they never skip.

Without a controller-manager a deleted namespace never goes away: every test gets a fresh one
(named like its swarm namespace, so the ``namespace`` fixture cleans the swarm side), and leaves
its custom resources deleted and their finalizers removed.

Wire it in with ``pytest_plugins = ["kube_fixtures"]`` in conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from controller_helpers import Controller, free_port
from helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci"
SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"
DEFAULT_STATE = "/tmp/swarmkeeper-kube"
BUILD_TIMEOUT = 3600  # a cold build of kube-apiserver on 2 cores takes 15-25 minutes
KINDS = ("swarmservices", "swarmnetworks", "swarmsecrets", "swarmconfigs", "swarmclusters", "swarmalerts")


@dataclass(frozen=True)
class Kube:
    """The API server: its kubeconfig and the client tools built with it."""

    kubeconfig: Path
    bin_dir: Path

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def helm_path(self) -> Path:
        return self.bin_dir / "helm"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), **extra}

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS``; with ``check``, a non-zero exit fails the test with kubectl's output."""
        env = self.env(KUBECONFIG=str(kubeconfig or self.kubeconfig))
        proc = subprocess.run(
            [str(self.kubectl_path), *args], input=input, capture_output=True, text=True, timeout=timeout, env=env
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def helm(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = self.env(
            HELM_CACHE_HOME="/tmp/swarmkeeper-helm/cache",
            HELM_CONFIG_HOME="/tmp/swarmkeeper-helm/config",
            HELM_DATA_HOME="/tmp/swarmkeeper-helm/data",
        )
        proc = subprocess.run([str(self.helm_path), *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def apply(self, text: str, namespace: str | None = None) -> str:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=textwrap.dedent(text)).stdout

    def get(self, resource: str, namespace: str | None = None) -> Any:
        """``kubectl get RESOURCE -o json`` as data; None when it does not exist."""
        args = ["get", resource, "-o", "json"] + (["-n", namespace] if namespace else [])
        proc = self.kubectl(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise AssertionError(f"kubectl get {resource}: {proc.stderr}")
        return json.loads(proc.stdout)

    def condition(self, resource: str, namespace: str, type_: str = "Ready") -> dict[str, Any] | None:
        obj = self.get(resource, namespace) or {}
        return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)

    def install_crds(self) -> None:
        self.kubectl("apply", "-f", str(ROOT / "crds"))
        self.wait_crd_conditions([f"{kind}.swarmkeeper.io" for kind in KINDS])
        names = [f"crd/{kind}.swarmkeeper.io" for kind in KINDS]
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names, timeout=90)
        # The API server publishes a new CRD's OpenAPI schema (what `kubectl explain` and
        # client-side validation read) a few seconds after the CRD is Established.
        deadline = time.monotonic() + 60
        while self.kubectl("explain", "ssvc.spec", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError("the CRDs' OpenAPI schema was not published within 60 s")
            time.sleep(0.5)

    def wait_crd_conditions(self, names: list[str], timeout: float = 60) -> None:
        """Until every CRD in ``names`` has a ``.status.conditions`` list.

        A CRD just created has ``conditions: null`` until the API server's naming and establishing
        controllers first look at it (seconds later on a busy machine), and ``kubectl wait
        --for=condition=...`` exits 1 on a null list ("accessor error: <nil> is of the type <nil>")
        instead of waiting."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.kubectl("get", "crd", *names, "-o", "json", check=False)
            if proc.returncode == 0:
                data = json.loads(proc.stdout)
                items = data["items"] if data.get("kind") == "List" else [data]
                found = {item["metadata"]["name"]: item for item in items}
                missing = [
                    name
                    for name in names
                    if not isinstance(((found.get(name) or {}).get("status") or {}).get("conditions"), list)
                ]
                if not missing:
                    return
                seen = {name: (found.get(name) or {}).get("status") for name in missing}
                last = f"no .status.conditions list yet on {', '.join(missing)}; their status: {json.dumps(seen)}"
            else:
                last = f"kubectl get crd exited {proc.returncode}: {proc.stderr.strip()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"the API server did not set the CRDs' conditions within {timeout:.0f} s: {last}")
            time.sleep(0.2)


def _run_script(script: Path, *args: str, env: dict[str, str], timeout: float) -> str:
    """The script's last line of output; a failure fails the session with the script's own log."""
    try:
        proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script.name} did not finish within {timeout:.0f}s", pytrace=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-40:])
        pytest.fail(f"{script.name} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}", pytrace=False)
    return lines[-1]


def _apiserver_running(state: Path) -> bool:
    try:
        pid = int((state / "kube-apiserver.pid").read_text().strip())
        return str(state) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return False


@contextmanager
def apiserver_stopped(kube: Kube) -> Iterator[None]:
    """kube-apiserver killed (SIGKILL, as in a crash) for the body, etcd and the state dir left as they
    are; then started again by ``kube-up.sh`` with the same data, certificates, token and port, and
    ready with the CRDs served before this returns, whatever the body did: the session shares it."""
    state = kube.kubeconfig.parent
    assert _apiserver_running(state), f"no kube-apiserver of {state} runs"
    os.kill(int((state / "kube-apiserver.pid").read_text().strip()), signal.SIGKILL)
    try:
        wait_for(lambda: not _apiserver_running(state), timeout=30, message="kube-apiserver did not die")
        yield
    finally:
        env = {**os.environ, "SWARMKEEPER_KUBE_BIN": str(kube.bin_dir)}
        _run_script(CI / "kube-up.sh", str(state), env=env, timeout=300)
        kube.install_crds()


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The real API server, with swarmkeeper's CRDs installed."""
    env = dict(os.environ)
    bin_dir = env.get("SWARMKEEPER_KUBE_BIN") or _run_script(CI / "kube-build.sh", env=env, timeout=BUILD_TIMEOUT)
    env["SWARMKEEPER_KUBE_BIN"] = bin_dir
    state = Path(env.get("SWARMKEEPER_KUBE_STATE") or DEFAULT_STATE)
    started_here = not _apiserver_running(state)
    # Started here, on empty etcd data (as ./dev does): the CRDs are created anew, not found from
    # an earlier run.
    fresh = ["--fresh"] if started_here else []
    export = _run_script(CI / "kube-up.sh", *fresh, str(state), env=env, timeout=300)
    match = re.fullmatch(r"export KUBECONFIG=(\S+)", export)
    if match is None:
        pytest.fail(f"kube-up.sh printed no KUBECONFIG line (last line: {export!r})", pytrace=False)
    cluster = Kube(Path(match.group(1)), Path(bin_dir))
    try:
        cluster.install_crds()
        yield cluster
    finally:
        if started_here:
            subprocess.run(["bash", str(CI / "kube-down.sh"), str(state)], capture_output=True, timeout=120, env=env)


@pytest.fixture
def kube_namespace(kube: Kube, namespace: str) -> Iterator[str]:
    """A fresh Kubernetes namespace named like the test's swarm namespace (CR ``web`` → ``<ns>_web``)."""
    kube.kubectl("create", "namespace", namespace)
    try:
        yield namespace
    finally:
        release_custom_resources(kube, namespace)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def release_custom_resources(kube: Kube, namespace: str) -> None:
    """Delete every swarmkeeper CR of ``namespace``, finalizers removed (no operator runs any more)."""
    for kind in KINDS:
        listed = kube.get(kind, namespace) or {"items": []}
        names = [f"{kind}/{item['metadata']['name']}" for item in listed["items"]]
        if not names:
            continue
        # One call each for all of a kind (a benchmark leaves hundreds); one missing name does not
        # stop kubectl from handling the others.
        kube.kubectl("delete", *names, "-n", namespace, "--wait=false", check=False, timeout=120)
        finalizers = '{"metadata":{"finalizers":null}}'
        kube.kubectl("patch", *names, "-n", namespace, "--type=merge", "-p", finalizers, check=False, timeout=120)


# --- the operator as a process -----------------------------------------------------------------


class OperatorProcess(Controller):
    """A running ``swarmkeeper operator``: the controller process helpers, plus what only it has."""

    def leading(self) -> bool:
        try:
            return self.metric("swarmkeeper_leader") == 1
        except requests.RequestException:
            return False

    def engine_writes(self) -> float:
        return sum(self.metric("swarmkeeper_engine_requests_total", method=m) for m in ("POST", "PUT", "DELETE"))


def start_operator(
    kube: Kube, namespace: str, log: Path, *args: str, kubeconfig: Path | None = None, env: dict[str, str] | None = None
) -> OperatorProcess:
    """``swarmkeeper operator -n NAMESPACE ARGS`` with metrics on a free port (not waited for)."""
    port = free_port()
    cmd = [str(SWARMKEEPER), "operator", "-n", namespace, "--metrics-addr", f"127.0.0.1:{port}", "-vv", *args]
    full_env = kube.env(COLUMNS="250", **(env or {}))
    if kubeconfig is not None:
        full_env["KUBECONFIG"] = str(kubeconfig)
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)
    return OperatorProcess(proc, log, port)


@contextmanager
def operator(
    kube: Kube, namespace: str, log: Path, *args: str, wait_leading: bool = True, **kw: Any
) -> Iterator[OperatorProcess]:
    """The operator for one namespace, acting (it holds the Lease) before the body runs; stopped after."""
    op = start_operator(kube, namespace, log, *args, **kw)
    try:
        if wait_leading:
            wait_for(lambda: op.leading() or op.proc.poll() is not None, timeout=90, message="operator not leading")
            assert op.proc.poll() is None, op.logs()[-4000:]
        yield op
    finally:
        op.stop()


def wait_quiet(op: OperatorProcess, quiet: float = 3.0, timeout: float = 90) -> None:
    """Until the operator has made no engine write for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = op.engine_writes(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = op.engine_writes()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError("operator never went quiet:\n" + op.logs()[-3000:])
