"""Soak: `swarmkeeper watch` under a long run of edits, task kills, engine and controller restarts.

On an engine of its own (one dockerd in a network namespace, ``tests/engines.py``, prefix
``sksoak``; the machine's main engine is never touched), two controllers run with ``--prune``:

* ``main``: ``--services`` services (default 100) in namespace ``soak``. It is started once and
  never restarted, so its memory can be followed over the whole run: VmRSS is sampled every 10 s,
  and the median of the minute before minute 5 is compared with that of the last minute (for runs
  shorter than 30 minutes: at 1/6 of the run and over 1/10 of it). Every pass lists every task the
  swarm keeps, and the swarm keeps 5 old tasks per slot, so the list grows with each restart until
  that history is full, and the controller's memory with it. ``--warmup-restarts`` (default 5)
  engine restarts before minute 0 fill it, so what is compared is the controller's own growth.
* ``restarted``: ``--services // 5`` services in namespace ``soakr``, its own source and lease. This
  is the one that gets SIGTERM (and one time in four SIGKILL, which leaves its lease to expire) and
  is started again. Restarting the measured process would reset its RSS, and restarting only a
  standby would test nothing: a standby does no passes.

For ``--minutes`` (default 30), each kind of event comes at exponentially distributed intervals
from a seeded RNG (``--seed``), the first of each kind within the first 60 % of the run:

* spec edits, on a random service of either folder: the RELEASE env, replicas (0-3), the command;
* a service added (new, or one removed earlier) or removed (its file deleted);
* an invalid edit (a schema error, a YAML syntax error or a dangling network), fixed 5-45 s later;
* a task killed: one of its containers, through the engine;
* the engine restarted (SIGTERM; one time in three SIGKILL, as a crash), down for 3-20 s;
* the ``restarted`` controller stopped and, 0-5 s later, started again.

Edits rewrite the spec part of a file and keep the ``status:`` block the controller wrote, saved
in place or by rename at random, as editors do. Then editing stops and the run waits for
convergence and checks: every spec'd service exists once with its env, command and replicas and
that many running tasks; its file shows that status; no managed service, network or secret exists
without a spec and none is duplicated; objects never removed from the specs kept their swarm IDs
(nothing was deleted and re-created); the files still hold every edit; both controllers make no
mutating call for 20 s; no controller exited unasked (one that does is started again, as systemd
would, and the run goes on); the main controller lived through the whole run and its RSS grew by at
most 10 %; every SIGTERM ended in exit 0; no controller log has a traceback. Exit 1 if a check fails.

The controllers run a copy of ``operator/`` taken at the start (its diff against HEAD is kept beside
it), so edits to the tree during the run do not change the code under test. Specs, that copy and
every controller's log stay in the ``/tmp/sksoak-*`` folder printed first.

    sudo .venv/bin/python bench/soak.py                             # 30 minutes, 100 + 20 services
    sudo .venv/bin/python bench/soak.py --minutes 3 --services 20   # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from controller_helpers import Controller, free_port
from engines import EngineCluster, EngineError, EngineNode, pid_alive
from swarmkeeper.swarm import labels as L

ROOT = Path(__file__).resolve().parent.parent

SK = str(ROOT / ".venv" / "bin" / "swarmkeeper")
IMAGE = "local/busybox:1"
SAMPLE_EVERY = 10.0
RSS_LIMIT = 0.10  # growth allowed between the two marks
IDLE_SECONDS = 20.0
SETTLE_TIMEOUT = 900.0
MUTATING = ("POST", "PUT", "DELETE")
# Mean seconds between two events of a kind.
MEAN_INTERVAL = {
    "edit": 8.0,
    "add/remove": 60.0,
    "invalid edit": 120.0,
    "task kill": 20.0,
    "engine restart": 360.0,
    "controller restart": 120.0,
}
# What no controller log may hold: an exception that reached the top of a thread or the process.
CRASH_MARKERS = ("Traceback (most recent call last)", "Exception in thread", "Unhandled exception")


def log(start: float, text: str) -> None:
    print(f"[{time.monotonic() - start:7.1f}s] {text}", flush=True)


# --- specs --------------------------------------------------------------------------------------


@dataclass
class Svc:
    name: str
    net: int
    secret: int
    release: int = 1
    replicas: int = 1
    sleep: int = 86400


class Folder:
    """One controller's specs: a folder of one file per service, and the model the files should hold."""

    def __init__(self, root: Path, ns: str, count: int, rng: random.Random) -> None:
        self.root, self.ns, self.rng = root, ns, rng
        self.nets = self.secrets = max(1, count // 10)
        self.initial = count
        self.services: dict[str, Svc] = {}
        self.removed: list[str] = []  # names whose file was deleted, for adding them again
        self.replaced: set[str] = set()  # removed at some point: a new swarm ID is expected
        self.broken: set[str] = set()
        self.next_index = count
        root.mkdir(parents=True)
        docs = [
            f"kind: SwarmNetwork\nmetadata: {{name: net{i}, namespace: {ns}}}\nspec: {{}}\n" for i in range(self.nets)
        ]
        for i in range(self.secrets):
            (root / f"secret{i}.txt").write_text(f"soak-secret-{i}")
            docs.append(
                f"kind: SwarmSecret\nmetadata: {{name: secret{i}, namespace: {ns}}}\nspec: {{file: secret{i}.txt}}\n"
            )
        (root / "shared.yaml").write_text("".join(f"---\napiVersion: swarmkeeper.io/v1alpha1\n{d}" for d in docs))
        for i in range(count):
            self.save(self.new(f"svc{i}"))

    def new(self, name: str) -> Svc:
        index = int(name.removeprefix("svc"))
        svc = Svc(name, index % self.nets, index % self.secrets)
        self.services[name] = svc
        return svc

    def path(self, name: str) -> Path:
        return self.root / f"{name}.yaml"

    def render(self, s: Svc, broken: str | None = None) -> str:
        text = (
            "apiVersion: swarmkeeper.io/v1alpha1\n"
            "kind: SwarmService\n"
            f"metadata: {{name: {s.name}, namespace: {self.ns}}}\n"
            "spec:\n"
            f"  image: {IMAGE}\n"
            f'  command: ["sleep", "{s.sleep}"]\n'
            f"  replicas: {'lots' if broken == 'schema' else s.replicas}\n"
            f'  env: {{RELEASE: "{s.release}"}}\n'
            "  stopGracePeriod: 1s\n"
            f"  networks: [{{name: {'nowhere' if broken == 'reference' else f'net{s.net}'}}}]\n"
            f"  secrets: [{{source: secret{s.secret}}}]\n"
        )
        return text.replace("env: {", "env: [", 1) if broken == "syntax" else text

    @staticmethod
    def split(text: str) -> tuple[str, str]:
        """(spec part, status block) of a one-document file."""
        m = re.search(r"^status:", text, re.M)
        return (text[: m.start()], text[m.start() :]) if m else (text, "")

    def save(self, s: Svc, broken: str | None = None) -> None:
        """The spec part rewritten, the status block kept; in place or by rename, as editors do."""
        path = self.path(s.name)
        try:
            _, status = self.split(path.read_text())
        except FileNotFoundError:
            status = ""
        text = self.render(s, broken) + status
        if self.rng.random() < 0.5:
            path.write_text(text)
        else:
            temp = path.with_name(f".{path.name}.save")  # hidden: the watcher ignores it
            temp.write_text(text)
            os.replace(temp, path)

    def keys(self) -> set[tuple[str, str, str]]:
        return (
            {("SwarmService", self.ns, n) for n in self.services}
            | {("SwarmNetwork", self.ns, f"net{i}") for i in range(self.nets)}
            | {("SwarmSecret", self.ns, f"secret{i}") for i in range(self.secrets)}
        )

    def file_problems(self) -> list[str]:
        """Files whose spec part is not what the last edit wrote (an edit lost), or a status that
        does not show every replica running."""
        problems = []
        for s in self.services.values():
            spec, status = self.split(self.path(s.name).read_text())
            if spec != self.render(s):
                problems.append(f"{self.ns}/{s.name}: the file does not hold the last edit")
            m = re.search(r"^\s+ready:\s*['\"]?(\d+)/(\d+)", status, re.M)
            if m is None or (int(m.group(1)), int(m.group(2))) != (s.replicas, s.replicas):
                shown = m.group(0).strip() if m else "no ready"
                problems.append(f"{self.ns}/{s.name}: status shows {shown!r}, expected {s.replicas}/{s.replicas}")
        return problems


# --- controllers --------------------------------------------------------------------------------


@dataclass
class Lifetime:
    ctl: Controller
    started: float
    rss: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, MiB)
    threads: list[tuple[float, float]] = field(default_factory=list)  # a leak per reconnect would show here
    fds: list[tuple[float, float]] = field(default_factory=list)  # ... or here
    passes: list[tuple[float, float, float, float]] = field(default_factory=list)  # (t, passes, secs, cpu s)


class Watch:
    """`swarmkeeper watch --prune` over one folder; every start is a new process with its own log."""

    def __init__(self, label: str, folder: Folder, host: str, logs: Path, code: Path) -> None:
        self.label, self.folder, self.logs = label, folder, logs
        self.env = {**os.environ, "DOCKER_HOST": host, "PYTHONPATH": str(code)}
        self.lifetimes: list[Lifetime] = []
        self.sigterm_codes: list[int] = []

    @property
    def current(self) -> Lifetime:
        return self.lifetimes[-1]

    def start(self) -> None:
        port = free_port()
        path = self.logs / f"{self.label}-{len(self.lifetimes) + 1}.log"
        cmd = [SK, "watch", str(self.folder.root), "--source", self.folder.ns, "--prune"]
        cmd += ["--metrics-addr", f"127.0.0.1:{port}", "-v"]
        with path.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.lifetimes.append(Lifetime(Controller(proc, path, port), time.monotonic()))

    def stop(self, sig: int) -> int:
        code = self.current.ctl.stop(sig, timeout=60)
        if sig == signal.SIGTERM:
            self.sigterm_codes.append(code)
        return code

    def alive(self) -> bool:
        return bool(self.lifetimes) and self.current.ctl.proc.poll() is None

    def mutating_calls(self) -> float:
        return sum(self.current.ctl.metric("swarmkeeper_engine_requests_total", method=m) for m in MUTATING)

    def crashes(self) -> list[str]:
        found = []
        for life in self.lifetimes:
            text = life.ctl.logs()
            found += [f"{life.ctl.log.name}: {marker}" for marker in CRASH_MARKERS if marker in text]
        return found


def snapshot(target: Path) -> Path:
    """A copy of the package for the controllers (first on their PYTHONPATH): the tree may change
    while the run lasts, and every restarted controller must run the code the run started with."""
    shutil.copytree(ROOT / "operator" / "swarmkeeper", target / "swarmkeeper", ignore=shutil.ignore_patterns("*.pyc"))
    probe = [sys.executable, "-c", "import swarmkeeper; print(swarmkeeper.__file__)"]
    found = subprocess.run(
        probe, env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True, check=False
    )
    if not found.stdout.startswith(str(target)):
        raise RuntimeError(f"the copy of the package is not the one imported: {found.stdout}{found.stderr}")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False).stdout

    head, changed = (
        git("rev-parse", "--short", "HEAD").strip(),
        len(git("status", "--porcelain", "operator").split("\n")) - 1,
    )
    (target / "operator.diff").write_text(git("diff", "HEAD", "--", "operator"))  # what HEAD does not hold
    print(f"controllers run a copy of operator/ at {head} with {changed} changed file(s)", flush=True)
    return target


def proc_sample(pid: int) -> tuple[float, float, int, int]:
    """(VmRSS MiB, CPU seconds, threads, open files) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu, threads, len(os.listdir(f"/proc/{pid}/fd"))


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY seconds: RSS of each live controller, passes and CPU of the main one, and
    how many tasks the swarm lists (what every pass reads: it grows with the task history)."""

    def __init__(self, watches: list[Watch], socket: str) -> None:
        super().__init__(daemon=True)
        self.watches, self.socket = watches, socket
        self.done = threading.Event()
        self.tasks: list[tuple[float, float]] = []  # (monotonic, tasks listed)

    def run(self) -> None:
        while not self.done.wait(SAMPLE_EVERY):
            for watch in self.watches:
                if watch.alive():
                    self.sample(watch.current)
            self.count_tasks()

    def count_tasks(self) -> None:
        try:  # a client of its own: docker-py clients are not thread-safe
            with docker.APIClient(base_url=self.socket, version="auto", timeout=10) as api:
                self.tasks.append((time.monotonic(), float(len(api.tasks()))))
        except (docker.errors.DockerException, requests.RequestException):
            pass  # the engine is away

    @staticmethod
    def sample(life: Lifetime) -> None:
        now = time.monotonic()
        try:
            rss, cpu, threads, fds = proc_sample(life.ctl.proc.pid)
        except (OSError, AttributeError):
            return  # it just exited
        life.rss.append((now, rss))
        life.threads.append((now, threads))
        life.fds.append((now, fds))
        try:
            passes = life.ctl.metric("swarmkeeper_reconcile_total")
            seconds = life.ctl.metric("swarmkeeper_reconcile_time_seconds_sum")
        except requests.RequestException:
            return
        life.passes.append((now, passes, seconds, cpu))


def forget_dead_containerd(node: EngineNode) -> None:
    """After a crash dockerd waits for the containerd its pidfile names while that process exists.
    Where PID 1 is slow to reap orphans (this machine), the killed containerd lingers as a zombie and
    dockerd gives up after 15 s; a pidfile naming a dead or zombie process is removed first."""
    pidfile = node.exec_root / "containerd" / "containerd.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if not pid_alive(pid):
        pidfile.unlink(missing_ok=True)


# --- the engine's view ----------------------------------------------------------------------------


def managed(objects: list[dict[str, Any]]) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
    """(kind, namespace, name) and object, for objects with swarmkeeper's labels; networks keep
    their labels at the top, the other kinds in Spec."""
    out = []
    for obj in objects:
        key = L.identity(obj.get("Spec", obj).get("Labels") or {})
        if key is not None:
            out.append(((key.kind, key.namespace or "", key.name), obj))
    return out


def listed(api: docker.APIClient, *, status: bool = False) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
    """Every managed service, network, secret and config (the lease config carries no such label)."""
    kinds = [api.services(status=status), api.networks(), api.secrets(), api.configs()]
    return [item for objects in kinds for item in managed(objects)]


def service_problems(folder: Folder, svc: dict[str, Any]) -> list[str]:
    name = svc["Spec"]["Labels"][L.NAME]
    want = folder.services[name]
    spec = svc["Spec"]["TaskTemplate"]["ContainerSpec"]
    got_replicas = svc["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas")
    running = (svc.get("ServiceStatus") or {}).get("RunningTasks")
    problems = []
    if f"RELEASE={want.release}" not in (spec.get("Env") or []):
        problems.append(f"env {spec.get('Env')} (want RELEASE={want.release})")
    if spec.get("Command") != ["sleep", str(want.sleep)]:
        problems.append(f"command {spec.get('Command')} (want sleep {want.sleep})")
    if got_replicas != want.replicas:
        problems.append(f"replicas {got_replicas} (want {want.replicas})")
    if running != want.replicas:
        problems.append(f"{running} running tasks (want {want.replicas})")
    return [f"{folder.ns}/{name}: {p}" for p in problems]


def engine_problems(api: docker.APIClient, folders: list[Folder]) -> list[str]:
    """What differs between the engine and the specs: missing, wrong, duplicated or orphaned."""
    by_ns = {f.ns: f for f in folders}
    wanted = set().union(*(f.keys() for f in folders))
    found: Counter[tuple[str, str, str]] = Counter()
    problems = []
    everything = listed(api, status=True)
    for key, _ in everything:
        found[key] += 1
        if key not in wanted:
            problems.append(f"orphan: {key[0]} {key[1]}/{key[2]}")
    for key, n in found.items():
        if n > 1:  # secrets too: their values never change, so one version each
            problems.append(f"duplicate: {key[0]} {key[1]}/{key[2]} x{n}")
    problems += [f"missing: {k[0]} {k[1]}/{k[2]}" for k in sorted(wanted - found.keys())]
    for key, svc in everything:
        if key in wanted and key[0] == "SwarmService":
            problems += service_problems(by_ns[key[1]], svc)
    return problems


def swarm_ids(api: docker.APIClient) -> dict[tuple[str, str, str], str]:
    return {key: obj.get("ID") or obj["Id"] for key, obj in listed(api)}


# --- the run ------------------------------------------------------------------------------------


@dataclass
class FollowUp:
    at: float
    what: str
    action: Callable[[], None]


class Soak:
    def __init__(self, args: argparse.Namespace, node: EngineNode, work: Path) -> None:
        self.rng = random.Random(args.seed)
        self.node = node
        self.start = time.monotonic()
        self.duration = args.minutes * 60.0
        self.main = Folder(work / "main", "soak", args.services, self.rng)
        self.other = Folder(work / "restarted", "soakr", max(2, args.services // 5), self.rng)
        self.folders = [self.main, self.other]
        code = snapshot(work / "code")
        self.watch_main = Watch("main", self.main, node.socket, work / "logs", code)
        self.watch_other = Watch("restarted", self.other, node.socket, work / "logs", code)
        self.sampler = Sampler([self.watch_main, self.watch_other], node.socket)
        self.counts: Counter[str] = Counter()
        self.followups: list[FollowUp] = []
        self.engine_up = True
        self.starting = False  # the restarted controller's start is pending
        self.last_event, self.last_what = 0.0, ""
        self.problems: list[str] = []
        self.exits: list[str] = []  # controllers that exited without being told to

    def note(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        self.last_event, self.last_what = time.monotonic(), f"{kind} {text}".strip()
        log(self.start, f"{kind}: {text}")

    def later(self, delay: float, what: str, action: Callable[[], None]) -> None:
        self.followups.append(FollowUp(time.monotonic() + delay, what, action))

    def pick(self) -> tuple[Folder, Svc] | None:
        choices = [(f, s) for f in self.folders for s in f.services.values() if s.name not in f.broken]
        return self.rng.choice(choices) if choices else None

    # -- events ------------------------------------------------------------------------------------

    def edit(self) -> None:
        picked = self.pick()
        if picked is None:
            return
        folder, s = picked
        what = self.rng.choice(["env", "replicas", "command"])
        if what == "env":
            s.release += 1
        elif what == "replicas":
            s.replicas = self.rng.choice([r for r in (0, 1, 1, 2, 2, 3) if r != s.replicas])
        else:
            s.sleep = self.rng.randint(80000, 90000)
        folder.save(s)
        self.note(f"edit {what}", f"{folder.ns}/{s.name} release={s.release} replicas={s.replicas} sleep={s.sleep}")

    def add_remove(self) -> None:
        folder = self.rng.choice(self.folders)
        # Drift back towards the initial count, so the workload keeps its size.
        if self.rng.random() < min(0.9, max(0.1, 0.5 + (folder.initial - len(folder.services)) * 0.1)):
            if folder.removed and self.rng.random() < 0.5:
                name = folder.removed.pop(self.rng.randrange(len(folder.removed)))
            else:
                name, folder.next_index = f"svc{folder.next_index}", folder.next_index + 1
            folder.save(folder.new(name))
            self.note("add service", f"{folder.ns}/{name}")
            return
        names = [n for n in folder.services if n not in folder.broken]
        if not names:
            return
        name = self.rng.choice(names)
        folder.path(name).unlink()
        del folder.services[name]
        folder.removed.append(name)
        folder.replaced.add(name)
        self.note("remove service", f"{folder.ns}/{name}")

    def invalid(self) -> None:
        picked = self.pick()
        if picked is None:
            return
        folder, s = picked
        how = self.rng.choice(["schema", "syntax", "reference"])
        folder.broken.add(s.name)
        folder.save(s, broken=how)
        self.note("invalid edit", f"{folder.ns}/{s.name} ({how})")

        def fix() -> None:
            folder.save(s)
            folder.broken.discard(s.name)
            self.note("invalid edit fixed", f"{folder.ns}/{s.name}")

        self.later(self.rng.uniform(5, 45), "fix", fix)

    def task_kill(self) -> None:
        if not self.engine_up:
            self.counts["task kill skipped (engine down)"] += 1
            return
        try:
            api = self.node.api()
            containers = api.containers(filters={"label": "com.docker.swarm.service.name"})
            if not containers:
                return
            victim = self.rng.choice(containers)
            api.kill(victim["Id"])
        except (docker.errors.DockerException, requests.RequestException) as exc:
            self.counts["task kill failed"] += 1
            log(self.start, f"task kill failed: {exc}")
            return
        self.note("task kill", victim["Labels"].get("com.docker.swarm.service.name", "?"))

    def engine_restart(self) -> None:
        if not self.engine_up:
            return
        crash = self.rng.random() < 1 / 3
        self.note("engine crash (SIGKILL)" if crash else "engine restart", "stopping")
        self.node.stop(kill=crash)
        self.engine_up = False

        def start() -> None:
            for attempt in range(3):
                if crash:
                    forget_dead_containerd(self.node)
                try:
                    self.node.start()
                    break
                except EngineError as exc:
                    self.problems.append(f"engine start {attempt + 1} failed: {str(exc)[-300:]}")
                    log(self.start, f"engine start failed: {str(exc)[-300:]}")
            else:
                raise EngineError("the engine did not start again (3 attempts)")
            self.engine_up = True
            self.note("engine started", "")

        self.later(self.rng.uniform(3, 20), "engine start", start)

    def controller_restart(self) -> None:
        if not self.watch_other.alive():
            return  # its start is still pending
        sig = signal.SIGKILL if self.rng.random() < 0.25 else signal.SIGTERM
        code = self.watch_other.stop(sig)
        self.note(f"controller {sig.name}", f"exit {code}")
        self.starting = True

        def start() -> None:
            self.watch_other.start()
            self.starting = False

        self.later(self.rng.uniform(0, 5), "controller start", start)

    def supervise(self) -> None:
        """A controller that exited by itself is a failure; it is started again, as systemd would,
        so the run goes on."""
        for w in (self.watch_main, self.watch_other):
            if w.alive() or (w is self.watch_other and self.starting):
                continue
            life = w.current.ctl
            tail = " | ".join(life.logs().splitlines()[-3:])
            self.exits.append(f"{life.log.name} exited {life.proc.returncode}: {tail}")
            log(self.start, f"controller {w.label} exited by itself; starting it again")
            w.start()

    # -- the schedule ------------------------------------------------------------------------------

    def run_events(self) -> None:
        actions: dict[str, Callable[[], None]] = {
            "edit": self.edit,
            "add/remove": self.add_remove,
            "invalid edit": self.invalid,
            "task kill": self.task_kill,
            "engine restart": self.engine_restart,
            "controller restart": self.controller_restart,
        }
        t0 = self.start
        end = t0 + self.duration
        due = {kind: t0 + self.rng.uniform(0, 0.6 * self.duration) for kind in actions}
        while True:
            follow = min(self.followups, key=lambda f: f.at, default=None)
            kind = min(due, key=lambda k: due[k])
            at = min(due[kind], follow.at if follow else math.inf)
            if at >= end:
                break
            time.sleep(max(0.0, at - time.monotonic()))
            self.supervise()
            if follow is not None and follow.at <= due[kind]:
                self.followups.remove(follow)
                follow.action()
            else:
                actions[kind]()
                due[kind] = time.monotonic() + self.rng.expovariate(1 / MEAN_INTERVAL[kind])
        time.sleep(max(0.0, end - time.monotonic()))
        log(self.start, f"editing stopped; {len(self.followups)} follow-up(s) now")
        for f in sorted(self.followups, key=lambda f: f.at):
            f.action()
        self.followups.clear()

    # -- waiting and checking ----------------------------------------------------------------------

    def current_problems(self) -> list[str]:
        try:
            problems = engine_problems(self.node.api(), self.folders)
        except (docker.errors.DockerException, requests.RequestException, EngineError) as exc:
            return [f"engine: {exc}"]
        if not problems:
            problems = [p for f in self.folders for p in f.file_problems()]
        for w in (self.watch_main, self.watch_other):
            if not w.current.ctl.ready():
                problems.append(f"controller {w.label} not ready")
        return problems

    def warm_up(self, restarts: int) -> bool:
        """Engine restarts before minute 0, each followed by convergence: every restart gives each task
        slot one more task in the swarm's history (5 kept by default), and every pass lists them
        all, so the controller's memory follows that count until the history is full. Filled first,
        the RSS compared later measures the controller, not the swarm's growing task list."""
        for number in range(restarts):
            self.node.restart()
            self.last_event = time.monotonic()
            took = self.converge(SETTLE_TIMEOUT)
            if took is None:
                return False
            tasks = len(self.node.api().tasks())
            log(self.start, f"warm-up restart {number + 1}/{restarts}: converged in {took:.1f} s, {tasks} tasks")
        return True

    def converge(self, timeout: float) -> float | None:
        """Seconds from ``last_event`` until engine, files and controllers agree with the specs."""
        deadline = time.monotonic() + timeout
        problems: list[str] = []
        while time.monotonic() < deadline:
            self.supervise()
            problems = self.current_problems()
            if not problems:
                return time.monotonic() - self.last_event
            time.sleep(2)
        self.problems += [f"not converged after {timeout:.0f} s: {len(problems)} problem(s)", *problems[:20]]
        return None

    def idle_calls(self) -> float:
        before = [w.mutating_calls() for w in (self.watch_main, self.watch_other)]
        time.sleep(IDLE_SECONDS)
        after = [w.mutating_calls() for w in (self.watch_main, self.watch_other)]
        return sum(after) - sum(before)

    def id_problems(self, initial: dict[tuple[str, str, str], str]) -> list[str]:
        final = swarm_ids(self.node.api())
        replaced = {("SwarmService", f.ns, n) for f in self.folders for n in f.replaced}
        return [
            f"re-created: {k[0]} {k[1]}/{k[2]}"
            for k, old in initial.items()
            if k not in replaced and k in final and final[k] != old
        ]


# --- figures ------------------------------------------------------------------------------------


def window_median(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    values = [v for t, v in samples if start <= t <= end]
    return statistics.median(values) if values else None


@dataclass
class Figures:
    rss_at_mark: float | None
    rss_at_end: float | None
    rss_max: float
    passes_per_s: float | None
    pass_ms: float | None
    cpu_share: float | None
    tasks_at_mark: float | None
    tasks_at_end: float | None
    threads: tuple[float | None, float | None]
    fds: tuple[float | None, float | None]

    @property
    def growth(self) -> float | None:
        if self.rss_at_mark is None or self.rss_at_end is None:
            return None
        return self.rss_at_end / self.rss_at_mark - 1


def figures(life: Lifetime, tasks: list[tuple[float, float]], start: float, duration: float) -> Figures:
    """RSS in the window before the mark (minute 5 of 30) and before the end; passes between them."""
    mark, end = start + min(300.0, duration / 6), start + duration
    window = min(60.0, duration / 10)
    span = [p for p in life.passes if mark - SAMPLE_EVERY <= p[0] <= end + SAMPLE_EVERY]
    rate = ms = cpu = None
    if len(span) >= 2:
        (t0, n0, s0, c0), (t1, n1, s1, c1) = span[0], span[-1]
        rate = (n1 - n0) / (t1 - t0)
        ms = (s1 - s0) / (n1 - n0) * 1000 if n1 > n0 else None
        cpu = (c1 - c0) / (t1 - t0)
    return Figures(
        window_median(life.rss, mark - window, mark),
        window_median(life.rss, end - window, end),
        max((v for _, v in life.rss), default=0.0),
        rate,
        ms,
        cpu,
        window_median(tasks, mark - window, mark),
        window_median(tasks, end - window, end),
        (window_median(life.threads, mark - window, mark), window_median(life.threads, end - window, end)),
        (window_median(life.fds, mark - window, mark), window_median(life.fds, end - window, end)),
    )


def pct(value: float | None) -> float | None:
    return None if value is None else value * 100


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def write_samples(soak: Soak, path: Path) -> None:
    """Every sample, for a plot: series (a controller's RSS in MiB, or the swarm's task count),
    process number, seconds since minute 0, value."""
    rows = ["series,process,seconds,value"]
    for w in (soak.watch_main, soak.watch_other):
        for number, life in enumerate(w.lifetimes, 1):
            rows += [f"{w.label},{number},{t - soak.start:.1f},{rss:.1f}" for t, rss in life.rss]
            rows += [f"{w.label}-threads,{number},{t - soak.start:.1f},{n:.0f}" for t, n in life.threads]
            rows += [f"{w.label}-files,{number},{t - soak.start:.1f},{n:.0f}" for t, n in life.fds]
    rows += [f"tasks,0,{t - soak.start:.1f},{n:.0f}" for t, n in soak.sampler.tasks]
    path.write_text("\n".join(rows) + "\n")


def report(soak: Soak, fig: Figures, convergence: float | None, checks: list[tuple[str, bool, str]]) -> None:
    minutes = soak.duration / 60
    mark = min(5.0, minutes / 6)
    print("\n| event | count |\n|---|---:|")
    for kind, n in sorted(soak.counts.items()):
        print(f"| {kind} | {n} |")
    print("\n| check | result | detail |\n|---|---|---|")
    for name, ok, detail in checks:
        print(f"| {name} | {'pass' if ok else 'FAIL'} | {detail} |")
    other = [max((v for _, v in life.rss), default=0.0) for life in soak.watch_other.lifetimes]
    print("\n| figure | value |\n|---|---:|")
    print(f"| main controller RSS at minute {mark:.3g} | {fmt(fig.rss_at_mark, '.1f', ' MiB')} |")
    print(f"| main controller RSS at minute {minutes:g} | {fmt(fig.rss_at_end, '.1f', ' MiB')} |")
    print(f"| RSS growth | {fmt(pct(fig.growth), '+.1f', ' %')} |")
    print(f"| main controller RSS max | {fig.rss_max:.1f} MiB |")
    tasks = f"{fmt(fig.tasks_at_mark, '.0f')} / {fmt(fig.tasks_at_end, '.0f')}"
    print(f"| tasks the swarm lists, minute {mark:.3g} / {minutes:g} | {tasks} |")
    threads = " / ".join(fmt(v, ".0f") for v in fig.threads)
    print(f"| main controller threads, minute {mark:.3g} / {minutes:g} | {threads} |")
    fds = " / ".join(fmt(v, ".0f") for v in fig.fds)
    print(f"| main controller open files, minute {mark:.3g} / {minutes:g} | {fds} |")
    print(f"| restarted controller RSS max per lifetime | {', '.join(f'{v:.0f}' for v in other)} MiB |")
    print(f"| main controller passes/s (minute {mark:.3g}-{minutes:g}) | {fmt(fig.passes_per_s, '.2f')} |")
    print(f"| main controller mean pass | {fmt(fig.pass_ms, '.0f', ' ms')} |")
    print(f"| main controller CPU (shared 2-core machine) | {fmt(pct(fig.cpu_share), '.1f', ' % of a core')} |")
    print(f"| convergence after the last event ({soak.last_what}) | {fmt(convergence, '.1f', ' s')} |")
    for p in soak.problems:
        print(f"  problem: {p}")


def final_checks(
    soak: Soak, initial: dict[tuple[str, str, str], str]
) -> tuple[float | None, list[tuple[str, bool, str]]]:
    checks: list[tuple[str, bool, str]] = []
    convergence = soak.converge(SETTLE_TIMEOUT)
    checks.append(
        (
            "converged: services, tasks, files' status; no orphan or duplicate",
            convergence is not None,
            fmt(convergence, ".1f", " s after the last event"),
        )
    )
    if convergence is not None:
        calls = soak.idle_calls()
        checks.append((f"idle: mutating calls in {IDLE_SECONDS:.0f} s", calls == 0, f"{calls:.0f}"))
        replaced = soak.id_problems(initial)
        checks.append(
            ("swarm IDs kept (nothing deleted and re-created)", not replaced, "; ".join(replaced[:5]) or "all kept")
        )
    checks.append(("no controller exited by itself", not soak.exits, "; ".join(soak.exits[:3]) or "none"))
    lives = len(soak.watch_main.lifetimes)
    checks.append(("main controller ran throughout", lives == 1 and soak.watch_main.alive(), f"{lives} process(es)"))
    return convergence, checks


def closing_checks(soak: Soak, fig: Figures) -> list[tuple[str, bool, str]]:
    checks: list[tuple[str, bool, str]] = []
    growth = fig.growth
    checks.append(
        (
            f"main controller RSS growth <= {RSS_LIMIT:.0%}",
            growth is not None and growth <= RSS_LIMIT,
            fmt(pct(growth), "+.1f", " %"),
        )
    )
    for w in (soak.watch_main, soak.watch_other):
        code = w.stop(signal.SIGTERM)
        log(soak.start, f"{w.label} stopped with exit {code}")
    codes = soak.watch_main.sigterm_codes + soak.watch_other.sigterm_codes
    bad = [c for c in codes if c != 0]
    checks.append(("every SIGTERM: exit 0", not bad, f"{len(codes)} stops, exit codes {sorted(set(codes))}"))
    crashes = soak.watch_main.crashes() + soak.watch_other.crashes()
    checks.append(
        (
            "no traceback in any controller log",
            not crashes,
            "; ".join(crashes[:5]) or f"{len(soak.watch_main.lifetimes) + len(soak.watch_other.lifetimes)} logs",
        )
    )
    return checks


def run(args: argparse.Namespace, node: EngineNode, work: Path) -> int:
    soak = Soak(args, node, work)
    watches = [soak.watch_main, soak.watch_other]
    try:
        for w in watches:
            w.start()
        soak.sampler.start()
        soak.last_event = time.monotonic()
        first = soak.converge(SETTLE_TIMEOUT)
        if first is None:
            report(soak, figures(soak.watch_main.current, soak.sampler.tasks, soak.start, soak.duration), None, [])
            return 1
        log(soak.start, f"initial specs converged in {first:.1f} s")
        if not soak.warm_up(args.warmup_restarts):
            report(soak, figures(soak.watch_main.current, soak.sampler.tasks, soak.start, soak.duration), None, [])
            return 1
        log(soak.start, f"events for {args.minutes:g} min from now")
        initial = swarm_ids(node.api())
        soak.start = time.monotonic()  # minute 0 of the run
        soak.run_events()
        convergence, checks = final_checks(soak, initial)
        fig = figures(soak.watch_main.lifetimes[0], soak.sampler.tasks, soak.start, soak.duration)
        checks += closing_checks(soak, fig)
        report(soak, fig, convergence, checks)
        write_samples(soak, work / "rss.csv")
        print(f"RSS samples in {work / 'rss.csv'}")
        return 0 if all(ok for _, ok, _ in checks) else 1
    finally:
        soak.sampler.done.set()
        for w in watches:
            if w.alive():
                w.current.ctl.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long events come (default 30)")
    parser.add_argument("--services", type=int, default=100, help="services of the main controller (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the event schedule (default 1)")
    parser.add_argument(
        "--warmup-restarts", type=int, default=5, help="engine restarts before minute 0, to fill the task history"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: the engine runs in a network namespace of its own", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sksoak-"))
    (work / "logs").mkdir()
    print(f"specs and controller logs in {work}; seed {args.seed}", flush=True)
    cluster = EngineCluster(1, prefix="sksoak")
    try:
        cluster.up()
        cluster.init_swarm()
        return run(args, cluster.nodes[0], work)
    finally:
        # The engine's own log goes with its state: kept beside the controllers' for a post-mortem.
        with contextlib.suppress(OSError):
            shutil.copy(cluster.nodes[0].log_path, work / "logs" / "dockerd.log")
        cluster.down()


if __name__ == "__main__":
    sys.exit(main())
