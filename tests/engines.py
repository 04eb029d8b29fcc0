"""Extra, fully separate Docker engines for tests: one ``dockerd`` per network namespace.

Why: some tests must restart or kill an engine, or need a real swarm of several nodes. Doing that
to the machine's main dockerd would break every other test that uses it, and one machine has only
one main engine. So each extra engine (a *node*) runs in its own network namespace ``<prefix><i>``
with the address ``10.231.0.<i>/24`` on a veth whose peer sits on a bridge inside one more private
namespace ``<prefix>br``. Nothing is added to the root namespace, so the main engine, the host's
routes and its iptables rules are never touched.

Per node everything the daemon writes is separate: ``--data-root``, ``--exec-root`` (its own
containerd lives there), ``--pidfile``, the API socket, ``--cgroup-parent`` and the containerd
namespaces. State lives under ``/run/swarmkeeper-engines`` and ``/var/lib/swarmkeeper-engines`` and
is removed by :meth:`EngineCluster.down`, which also cleans up what a crashed earlier run with the
same prefix left behind.

Needs: root, dockerd 20.10 at ``/usr/sbin/dockerd``, iproute2, util-linux ``unshare``, a static
busybox (the ``local/busybox:1`` image is built from it and imported into every node) and the
legacy iptables backend (``./dev setup`` provides all of that).

Known limits of this kernel, which hold for these nodes too: there is no IPVS, so service VIPs and
the ingress routing mesh do not answer (use endpoint mode ``dnsrr``); there is no ESP, so encrypted
overlays carry no traffic between nodes (test those on one node).

Remote access: with ``tls=DaemonTLS(...)`` every daemon also serves ``tcp://<address>:2376`` with
``--tlsverify``. Node addresses exist only on the bridge, so a client of that port (or of anything
else served in a node's namespace) runs in the bridge's namespace: ``join_bridge`` gives it an
address, ``on_bridge`` prefixes a command.

Use the fixtures ``single_engine`` and ``three_managers``, or the classes directly::

    with EngineCluster(3) as cluster:   # up() ... down()
        cluster.init_swarm()
        api = cluster.nodes[0].api()
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import pytest
import requests.exceptions

RUN_ROOT = Path("/run/swarmkeeper-engines")
LIB_ROOT = Path("/var/lib/swarmkeeper-engines")
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
SHIM_SOCKET_DIR = Path("/run/containerd/s")  # shared by every containerd on the machine

DOCKERD = "/usr/sbin/dockerd"
# The daemons get a fixed, minimal environment: Debian's containerd/runc (not whatever comes first
# in the caller's PATH), no proxy variables, and no registry pull attempt for images that exist
# locally (the executor would otherwise try to pull every task's image first).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PREFER_OFFLINE = "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"
DAEMON_ENV = {"PATH": SYSTEM_PATH, "HOME": "/root", PREFER_OFFLINE: "1"}

NODE_NET = "10.231.0"  # node i is 10.231.0.i/24; only exists inside the namespaces created here
NODE_PREFIX_LEN = 24
ADDR_POOL = "10.231.128.0/17"  # swarm-scope networks (ingress, overlays) are carved from here
ADDR_POOL_MASK = 24
SWARM_PORT = 2377
TLS_PORT = 2376  # a node's dockerd also listens on tcp://<its address>:2376 when given DaemonTLS

IMAGE_REPOSITORY = "local/busybox"
IMAGE_TAG = "1"
LOCAL_IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0  # SIGTERM: dockerd stops its containers first (each up to its stop grace period)
SWARM_TIMEOUT = 90.0
# Swarm's default dispatcher heartbeat is 5 s, which lets a dead node look alive for ~12 s; 1 s
# brings that down to a few seconds (the cost, more heartbeat traffic, does not matter here).
DEFAULT_HEARTBEAT = 1.0

# Only these programs are ever signalled because their command line names a node's paths; anything
# inside a node's network namespace or cgroup is the node's own and is signalled regardless.
_DAEMON_PROGRAMS = frozenset(
    {
        "dockerd",
        "containerd",
        "containerd-shim",
        "containerd-shim-runc-v2",
        "docker-proxy",
        "runc",
        "ip",
        "unshare",
        "sh",
    }
)


class EngineError(RuntimeError):
    """An extra engine could not be started, joined or cleaned up.

    The message is meant to be self-contained: where a daemon was involved it ends with the tail
    of that daemon's log, because the log is deleted with the node.
    """


# ---------------------------------------------------------------------------
# processes, namespaces, cgroups
# ---------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a reaped-later zombie is already dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _protected_pids() -> set[int]:
    """This process and its ancestors: never signalled, whatever a sweep finds."""
    pids = {0, 1}
    pid = os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _netns_pids(netns: Path) -> set[int]:
    """Processes inside the named network namespace (what ``ip netns pids`` reports)."""
    try:
        target = os.stat(netns)
    except OSError:
        return set()
    found: set[int] = set()
    for pid in _all_pids():
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.add(pid)
    return found


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """``(mount point, fs type, options)`` of /sys/fs/cgroup and every hierarchy below it."""
    mounts: list[tuple[str, str, str]] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and (parts[1] == str(CGROUP_ROOT) or parts[1].startswith(f"{CGROUP_ROOT}/")):
            mounts.append((parts[1], parts[2], parts[3]))
    return mounts


def _cgroup_dirs(cgroup_name: str) -> list[Path]:
    """The node's ``--cgroup-parent`` directory in every cgroup hierarchy where it exists."""
    dirs = []
    for mount_point, fs_type, _ in _cgroup_mounts():
        if fs_type in ("cgroup", "cgroup2"):
            path = Path(mount_point) / cgroup_name
            if path.is_dir():
                dirs.append(path)
    return dirs


def _cgroup_pids(cgroup_name: str) -> set[int]:
    """Processes in the node's cgroups: its containers, which live in network namespaces of their own."""
    found: set[int] = set()
    for base in _cgroup_dirs(cgroup_name):
        for dirpath, _, filenames in os.walk(base):
            if "cgroup.procs" in filenames:
                with contextlib.suppress(OSError, ValueError):
                    found.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
    return found


def _cmdline_pids(name: str) -> set[int]:
    """Daemon processes whose command line names this node's paths (also after its netns is gone)."""
    pattern = re.compile(rf"(?:{re.escape(str(RUN_ROOT))}|{re.escape(str(LIB_ROOT))})/{re.escape(name)}(?:[./\s]|$)")
    found = set()
    for pid in _all_pids():
        args = _cmdline(pid)
        if args and os.path.basename(args[0]) in _DAEMON_PROGRAMS and pattern.search(" ".join(args)):
            found.add(pid)
    return found


def _remove_cgroups(cgroup_name: str, timeout: float = 10.0) -> list[str]:
    """Remove the node's cgroup directories (deepest first); returns those that would not go."""
    deadline = time.monotonic() + timeout
    while True:
        left: list[str] = []
        for base in _cgroup_dirs(cgroup_name):
            for dirpath, _, _ in sorted(os.walk(base), key=lambda entry: -len(entry[0])):
                try:
                    os.rmdir(dirpath)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    # EBUSY right after a kill: the processes have not left the cgroup yet.
                    left.append(f"{dirpath}: {exc.strerror}")
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def _run(args: list[str], what: str) -> None:
    """Run a setup command; a failure becomes an :class:`EngineError` with the command's stderr."""
    result = subprocess.run(args, capture_output=True, text=True, check=False, env=DAEMON_ENV)
    if result.returncode != 0:
        raise EngineError(f"{what} failed: {shlex.join(args)}: {result.stderr.strip() or result.returncode}")


def _delete_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        _run(["ip", "netns", "del", name], f"removing network namespace {name}")


def _tool(name: str) -> str:
    path = shutil.which(name, path=SYSTEM_PATH)
    if path is None:
        raise EngineError(f"{name} not found in {SYSTEM_PATH}")
    return path


def _check_host() -> None:
    """Fail early, with a hint, when this machine cannot run the extra engines at all."""
    if os.geteuid() != 0:
        raise EngineError("extra Docker engines need root (network namespaces, mounts, cgroups)")
    if not os.access(DOCKERD, os.X_OK):
        raise EngineError(f"{DOCKERD} is missing; run `./dev setup`")
    for tool in ("ip", "unshare", "busybox"):
        _tool(tool)
    # Overlay DNS and VIPs were seen failing with iptables-nft on this kind of machine.
    iptables = os.path.realpath(shutil.which("iptables", path=SYSTEM_PATH) or "iptables")
    if "nft" in os.path.basename(iptables):
        raise EngineError("iptables uses the nft backend; the engines need legacy (run `./dev setup`)")


# ---------------------------------------------------------------------------
# image
# ---------------------------------------------------------------------------


@cache
def busybox_rootfs() -> bytes:
    """A tar of a minimal root file system around the host's static busybox.

    Built the way ``./dev setup`` builds ``local/busybox:1``: applets are *relative* symlinks to
    ``busybox`` (an absolute link would point at the host's file once extracted elsewhere), and
    the usual absolute paths (/usr/bin, /sbin) lead into /bin. Built here rather than exported
    from the main engine so the harness does not depend on that engine being up.
    """
    busybox = Path(_tool("busybox")).resolve()
    listing = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    applets = sorted({a for a in listing.stdout.split() if a and "/" not in a and a != "busybox"})
    mtime = int(busybox.stat().st_mtime)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int = 0o755, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, mtime, link
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for directory in ("bin", "dev", "etc", "proc", "sys", "usr", "var", "var/run"):
            add(directory, tarfile.DIRTYPE)
        add("root", tarfile.DIRTYPE, 0o700)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for applet in applets:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("sbin", tarfile.SYMTYPE, 0o777, link="bin")
        add("usr/bin", tarfile.SYMTYPE, 0o777, link="../bin")
        add("usr/sbin", tarfile.SYMTYPE, 0o777, link="../bin")
        add(
            "etc/passwd",
            tarfile.REGTYPE,
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n")
    return buffer.getvalue()


# ---------------------------------------------------------------------------
# one engine
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonTLS:
    """PEM files for a node's TCP listener, as ``dockerd --tlsverify`` takes them: the server's
    certificate and key, and the CA a client's certificate must be signed by."""

    ca: Path
    cert: Path
    key: Path


@dataclass(eq=False)
class EngineNode:
    """One extra dockerd in its own network namespace ``name``, reachable at ``address``.

    ``api()`` returns a client for its socket; ``start``/``stop``/``restart`` act on this daemon
    only. The node's network namespace must exist (:meth:`EngineCluster.up` creates it).
    """

    index: int
    name: str
    address: str
    socket: str
    # Registries the daemon may reach over plain HTTP (its daemon.json's insecure-registries), and
    # whether tasks pull their images (by default they use the local image as it is).
    insecure_registries: tuple[str, ...] = ()
    pulls: bool = False
    # With TLS files the daemon also serves tcp://0.0.0.0:2376 inside its namespace, so only what
    # is on the private bridge reaches it (see tcp_host).
    tls: DaemonTLS | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _client: docker.APIClient | None = field(default=None, init=False, repr=False)

    # -- paths -------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return Path(self.socket.removeprefix("unix://"))

    @property
    def exec_root(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def data_root(self) -> Path:
        return LIB_ROOT / self.name

    @property
    def pidfile(self) -> Path:
        return RUN_ROOT / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return RUN_ROOT / f"{self.name}.log"

    @property
    def config_file(self) -> Path:
        return RUN_ROOT / f"{self.name}.json"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def cgroup_name(self) -> str:
        return f"swarmkeeper-engines-{self.name}"

    @property
    def tcp_host(self) -> str:
        """``tcp://<address>:2376``: the TLS listener (only with ``tls``; reachable from the bridge)."""
        return f"tcp://{self.address}:{TLS_PORT}"

    # -- API ---------------------------------------------------------------

    def api(self) -> docker.APIClient:
        """A low-level client for this engine (API version negotiated).

        The client is kept until the daemon is stopped, so calling ``api()`` in a polling loop does
        not pile up connections; after a restart, ask for it again.
        """
        if self._client is None:
            if not self.running:
                raise EngineError(f"engine {self.name} is not running")
            self._client = docker.APIClient(base_url=self.socket, version="auto", timeout=60)
        return self._client

    def swarm_state(self) -> str:
        """``LocalNodeState`` of this engine ("inactive", "pending", "active", ...)."""
        return cast(str, (self.api().info().get("Swarm") or {}).get("LocalNodeState", ""))

    @property
    def running(self) -> bool:
        """True while this node's dockerd process is alive (not necessarily answering yet)."""
        return self._dockerd_pid() is not None

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of this daemon's log (stdout and stderr of dockerd)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Start (or start again) this node's dockerd; returns once it answers on its socket.

        Leftovers of an earlier crash of this node (containerd, shims, containers) are killed first
        so the new daemon starts from its on-disk state alone, as after a reboot.
        """
        if self.running:
            self._wait_answering(START_TIMEOUT)
            return
        if not self.netns_path.exists():
            raise EngineError(f"network namespace {self.name} is missing; EngineCluster.up() creates it")
        self._kill_leftovers()
        self._remove_shim_sockets()
        # A stale pidfile naming a live, unrelated process would make dockerd refuse to start.
        self.pidfile.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        # An explicit (empty) config file: a host /etc/docker/daemon.json must not leak into tests.
        config = {"insecure-registries": list(self.insecure_registries)} if self.insecure_registries else {}
        self.config_file.write_text(json.dumps(config) + "\n")
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting dockerd of {self.name}\n".encode())
            log.flush()
            # start_new_session: the daemon must not get the terminal's or pytest's signals. The
            # chain ip -> unshare -> sh -> dockerd only execs, so the Popen pid is dockerd's pid.
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in DAEMON_ENV.items() if not (self.pulls and k == PREFER_OFFLINE)},
                start_new_session=True,
            )
        self._wait_answering(START_TIMEOUT)

    def stop(self, kill: bool = False) -> None:
        """Stop this node's dockerd and everything it started.

        ``kill=False`` sends SIGTERM and waits for the daemon to stop its containers and exit (it
        gets SIGKILL after 60 s). ``kill=True`` simulates a crash: SIGKILL, after which the
        node's containerd, shims and containers, which would otherwise keep running, are killed
        too. Either way the node's on-disk state stays, so :meth:`start` brings it back.
        """
        self._close_client()
        pid = self._dockerd_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
            if not self._wait_exit(pid, 10.0 if kill else STOP_TIMEOUT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1.0)  # reap, so no zombie is left behind
            self._process = None
        self._kill_leftovers()
        self._remove_shim_sockets()
        self.pidfile.unlink(missing_ok=True)

    def restart(self) -> None:
        """Graceful stop, then start: what ``systemctl restart docker`` does to an engine."""
        self.stop()
        self.start()

    # -- internals ---------------------------------------------------------

    def _command(self) -> list[str]:
        # `ip netns exec` unshares the mount namespace and mounts a fresh /sys, which hides the
        # cgroup hierarchies ("Devices cgroup isn't mounted"), so mount them again first, with the
        # host's options. `unshare --uts` gives the node its own hostname, so swarm can tell nodes
        # apart by hostname (placement, `{{.Node.Hostname}}` templates).
        mounts = []
        for mount_point, fs_type, options in _cgroup_mounts():
            target = shlex.quote(mount_point)
            mounts.append(f"mkdir -p {target} && mount -t {fs_type} -o {shlex.quote(options)} {fs_type} {target}")
        dockerd = [
            DOCKERD,
            f"--config-file={self.config_file}",
            f"--host={self.socket}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--cgroup-parent=/{self.cgroup_name}",
            f"--containerd-namespace=swarmkeeper-{self.name}",
            f"--containerd-plugins-namespace=swarmkeeper-{self.name}-plugins",
        ]
        if self.tls is not None:
            dockerd += [
                f"--host=tcp://0.0.0.0:{TLS_PORT}",
                "--tlsverify",
                f"--tlscacert={self.tls.ca}",
                f"--tlscert={self.tls.cert}",
                f"--tlskey={self.tls.key}",
            ]
        script = " && ".join([*mounts, f"hostname {shlex.quote(self.name)}", f"exec {shlex.join(dockerd)}"])
        return [_tool("ip"), "netns", "exec", self.name, _tool("unshare"), "--uts", "--", "/bin/sh", "-c", script]

    def _dockerd_pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid if self._process.poll() is None else None
        # Not started by this object (e.g. a crashed earlier run): trust the pidfile only if it
        # names a live dockerd that serves this node's socket.
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        args = _cmdline(pid)
        if pid_alive(pid) and args and os.path.basename(args[0]) == "dockerd" and f"--host={self.socket}" in args:
            return pid
        return None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == pid:
                if self._process.poll() is not None:
                    return True
            elif not pid_alive(pid):
                return True
            time.sleep(0.1)
        return False

    def _wait_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while True:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise EngineError(f"dockerd of {self.name} exited with status {code}:\n{self.log_tail()}")
            try:
                client = docker.APIClient(base_url=self.socket, version="auto", timeout=10)
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                last_error = str(exc)
            else:
                # The probe's short timeout does not suit real calls (joining a swarm takes longer):
                # api() makes the client that is kept.
                client.close()
                self._close_client()
                return
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"dockerd of {self.name} did not answer on {self.socket} within {timeout:.0f}s "
                    f"({last_error}):\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _close_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def _remove_shim_sockets(self) -> None:
        """Delete the sockets of this node's killed containerd shims.

        containerd puts every shim's socket in the machine-wide ``/run/containerd/s`` (its name is
        a hash of containerd's address, namespace and container), and a shim that dies by SIGKILL
        leaves it behind. Each task's state directory records its shim's address, so only this
        node's sockets are removed, and only once its processes are known to be gone.
        """
        tasks = self.exec_root / "containerd" / "daemon" / "io.containerd.runtime.v2.task"
        for address_file in tasks.glob("*/*/address"):
            with contextlib.suppress(OSError):
                path = Path(address_file.read_text().strip().removeprefix("unix://"))
                if path.parent == SHIM_SOCKET_DIR:
                    path.unlink(missing_ok=True)

    def _kill_leftovers(self, timeout: float = 15.0) -> None:
        """SIGKILL everything of this node that is still around, until nothing is left.

        Repeated, because a dockerd that is dying may still restart containerd in between.
        """
        deadline = time.monotonic() + timeout
        while pids := self.processes():
            if time.monotonic() >= deadline:
                raise EngineError(f"processes of {self.name} survive SIGKILL: {pids}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def processes(self) -> list[int]:
        """PIDs of every live process of this node: dockerd, containerd, shims, containers.

        Three nets, because each misses something: the node's network namespace holds dockerd,
        containerd, the shims and docker-proxy; containers have namespaces of their own but sit in
        the node's cgroup; and the command line still finds the daemons once the namespace is gone.
        """
        pids = _netns_pids(self.netns_path) | _cgroup_pids(self.cgroup_name) | _cmdline_pids(self.name)
        return sorted(pid for pid in pids - _protected_pids() if pid_alive(pid))


# ---------------------------------------------------------------------------
# a group of engines
# ---------------------------------------------------------------------------


def _node_for(
    prefix: str, index: int, insecure: tuple[str, ...] = (), pulls: bool = False, tls: DaemonTLS | None = None
) -> EngineNode:
    name = f"{prefix}{index}"
    return EngineNode(
        index=index,
        name=name,
        address=f"{NODE_NET}.{index}",
        socket=f"unix://{RUN_ROOT}/{name}.sock",
        insecure_registries=insecure,
        pulls=pulls,
        tls=tls,
    )


class EngineCluster:
    """``count`` extra engines on a private bridge; optionally one swarm across them.

    ``prefix`` names everything that belongs to the group: network namespaces ``<prefix>1..N`` and
    ``<prefix>br``, state under ``<RUN_ROOT>/<prefix><i>``... Two groups with different prefixes
    can run side by side (their addresses repeat, but each group has its own bridge); one prefix
    must be used by one group at a time, because :meth:`up` first removes whatever carries it.
    """

    def __init__(
        self,
        count: int,
        *,
        prefix: str = "skn",
        insecure_registries: tuple[str, ...] = (),
        pulls: bool = False,
        tls: DaemonTLS | None = None,
    ) -> None:
        if not 1 <= count <= 99:
            raise ValueError(f"count must be 1..99, not {count}")
        # Letters only: a digit at the end would make "<prefix><i>" ambiguous; at most 8 so that
        # "<prefix>p<i>" still fits the 15 characters of an interface name.
        if not re.fullmatch(r"[a-z]{2,8}", prefix):
            raise ValueError(f"prefix must be 2-8 lowercase letters, not {prefix!r}")
        self.prefix = prefix
        self.bridge_netns = f"{prefix}br"
        self.nodes: list[EngineNode] = [
            _node_for(prefix, i, insecure_registries, pulls, tls) for i in range(1, count + 1)
        ]
        self.managers = 0  # set by init_swarm

    def __enter__(self) -> EngineCluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # -- lifecycle ---------------------------------------------------------

    def up(self) -> None:
        """Create the namespaces and the bridge, start every dockerd, import ``local/busybox:1``.

        No swarm yet (see :meth:`init_swarm`). Leftovers of an earlier run with this prefix are
        removed first. On failure the half-built group stays for inspection; call :meth:`down`.
        """
        _check_host()
        self.down()
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        LIB_ROOT.mkdir(parents=True, exist_ok=True)
        self._create_network()
        # The daemons take a second or two each to come up; start them side by side.
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            results = [(node, pool.submit(node.start)) for node in self.nodes]
        errors = [str(future.exception()) for _, future in results if future.exception() is not None]
        if errors:
            raise EngineError("\n\n".join(errors))
        rootfs = busybox_rootfs()
        for node in self.nodes:
            try:
                node.api().import_image_from_data(
                    rootfs, repository=IMAGE_REPOSITORY, tag=IMAGE_TAG, changes=["ENV PATH=/bin", 'CMD ["sh"]']
                )
                node.api().inspect_image(LOCAL_IMAGE)
            except docker.errors.DockerException as exc:
                raise EngineError(f"importing {LOCAL_IMAGE} into {node.name} failed: {exc}\n{node.log_tail()}") from exc

    def init_swarm(self, managers: int | None = None, *, heartbeat_period: float = DEFAULT_HEARTBEAT) -> None:
        """Form one swarm: init on node 1, join the others, wait until all are Ready with one Leader.

        Nodes ``1..managers`` are managers (default: all), the rest workers. Node 1 advertises
        its bridge address and carves swarm networks out of ``10.231.128.0/17``; the dispatcher
        heartbeat is ``heartbeat_period`` seconds, so a dead node is noticed quickly.
        """
        managers = len(self.nodes) if managers is None else managers
        if not 1 <= managers <= len(self.nodes):
            raise ValueError(f"managers must be 1..{len(self.nodes)}, not {managers}")
        first = self.nodes[0]
        remote = f"{first.address}:{SWARM_PORT}"
        try:
            api = first.api()
            spec = api.create_swarm_spec(dispatcher_heartbeat_period=int(heartbeat_period * 1e9))
            api.init_swarm(
                advertise_addr=first.address,
                listen_addr=remote,
                default_addr_pool=[ADDR_POOL],
                subnet_size=ADDR_POOL_MASK,
                swarm_spec=spec,
            )
            tokens = api.inspect_swarm()["JoinTokens"]
            # One at a time: each manager that joins changes the raft membership, and concurrent
            # membership changes are refused.
            for node in self.nodes[1:]:
                node.api().join_swarm(
                    remote_addrs=[remote],
                    join_token=tokens["Manager" if node.index <= managers else "Worker"],
                    listen_addr=f"{node.address}:{SWARM_PORT}",
                    advertise_addr=node.address,
                )
        except docker.errors.DockerException as exc:
            raise EngineError(f"forming the swarm failed: {exc}\n\n{self.log_tails()}") from exc
        self.managers = managers
        self.wait_healthy()

    def down(self) -> None:
        """Stop every daemon and remove namespaces, cgroups and state of this prefix.

        Idempotent. Also finds what an earlier run with the same prefix left (from a crash of the
        test process, say): namespaces, state directories, cgroups and daemons are found by name.
        Daemons are killed, not stopped gracefully: their state is deleted right after, so a
        graceful shutdown (which waits for every container's stop grace period) buys nothing.
        """
        nodes = {node.name: node for node in self.nodes}
        for name in self._leftover_names() - nodes.keys():
            nodes[name] = _node_for(self.prefix, int(name.removeprefix(self.prefix)))
        problems: list[str] = []
        for node in nodes.values():
            try:
                node.stop(kill=True)
            except EngineError as exc:
                problems.append(str(exc))
        for netns in [*sorted(nodes), self.bridge_netns]:
            try:
                _delete_netns(netns)
            except EngineError as exc:
                problems.append(str(exc))
        for node in nodes.values():
            problems.extend(_remove_cgroups(node.cgroup_name))
            for path in (node.exec_root, node.data_root):
                shutil.rmtree(path, onerror=_collect_rmtree_error(problems))
            for path in (node.socket_path, node.pidfile, node.log_path, node.config_file):
                path.unlink(missing_ok=True)
        for root in (RUN_ROOT, LIB_ROOT):
            with contextlib.suppress(FileNotFoundError, OSError):
                root.rmdir()  # only when empty: another prefix may be in use
        self.managers = 0
        if problems:
            raise EngineError("cleanup of engines incomplete:\n" + "\n".join(problems))

    # -- swarm helpers -----------------------------------------------------

    def manager_api(self) -> docker.APIClient:
        """Client of the first running manager (node 1 unless it is stopped)."""
        for node in self.nodes[: self.managers or len(self.nodes)]:
            if node.running:
                return node.api()
        raise EngineError("no manager is running")

    def swarm_nodes(self, via: EngineNode | None = None) -> dict[str, dict[str, Any]]:
        """Swarm's view of its nodes (``docker node inspect`` objects) keyed by hostname.

        Asked of ``via`` or of the first running manager; the hostname of a node is its name.
        """
        api = via.api() if via is not None else self.manager_api()
        return {cast(str, n["Description"]["Hostname"]): cast(dict[str, Any], n) for n in api.nodes()}

    def wait_healthy(self, timeout: float = SWARM_TIMEOUT) -> dict[str, dict[str, Any]]:
        """Wait until every node is Ready, managers Reachable, and exactly one is Leader."""
        expected = {node.name for node in self.nodes}
        managers = {node.name for node in self.nodes[: self.managers or len(self.nodes)]}
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                seen = self.swarm_nodes()
            except (docker.errors.DockerException, requests.exceptions.RequestException, EngineError) as exc:
                last = str(exc)
            else:
                last = describe_swarm(seen)
                if _healthy(seen, expected, managers):
                    return seen
            if time.monotonic() >= deadline:
                raise EngineError(f"swarm not healthy after {timeout:.0f}s: {last}\n\n{self.log_tails()}")
            time.sleep(0.3)

    def serve_on_bridge(self, address: str, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Run ``command`` (a registry, say) in the bridge's namespace, which gets ``address`` too,
        so every node reaches it and nothing outside does. The caller stops it before :meth:`down`."""
        self.join_bridge(address)
        with log.open("ab") as out:
            return subprocess.Popen(
                self.on_bridge(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def join_bridge(self, address: str) -> None:
        """Give the bridge's namespace ``address`` too (idempotent): what runs there (:meth:`on_bridge`)
        reaches every node's address, and nothing outside the namespaces does."""
        result = subprocess.run(
            ["ip", "-n", self.bridge_netns, "-o", "addr", "show", "dev", "br0"],
            capture_output=True,
            text=True,
            check=False,
            env=DAEMON_ENV,
        )
        if f" {address}/" not in result.stdout:
            _run(
                ["ip", "-n", self.bridge_netns, "addr", "add", f"{address}/{NODE_PREFIX_LEN}", "dev", "br0"],
                f"{address} on the bridge",
            )

    def on_bridge(self, command: list[str]) -> list[str]:
        """``command`` as run in the bridge's namespace (give it an address first: :meth:`join_bridge`)."""
        return [_tool("ip"), "netns", "exec", self.bridge_netns, *command]

    def log_tails(self, lines: int = 15) -> str:
        """The end of every node's daemon log, for failure messages."""
        return "\n\n".join(f"--- {node.name} ({node.log_path}):\n{node.log_tail(lines)}" for node in self.nodes)

    # -- internals ---------------------------------------------------------

    def _create_network(self) -> None:
        """Namespaces and a bridge; nothing in the root namespace, no default route anywhere."""
        br = self.bridge_netns
        _run(["ip", "netns", "add", br], "creating the bridge namespace")
        _run(["ip", "-n", br, "link", "set", "lo", "up"], "bridge namespace loopback")
        _run(["ip", "-n", br, "link", "add", "br0", "type", "bridge"], "creating the bridge")
        _run(["ip", "-n", br, "link", "set", "br0", "up"], "bridge up")
        for node in self.nodes:
            ns, peer = node.name, f"{self.prefix}p{node.index}"
            _run(["ip", "netns", "add", ns], f"creating namespace {ns}")
            _run(["ip", "-n", ns, "link", "set", "lo", "up"], f"{ns} loopback")
            _run(
                ["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", br], f"{ns} veth"
            )
            _run(["ip", "-n", br, "link", "set", peer, "master", "br0", "up"], f"{ns} veth on the bridge")
            _run(["ip", "-n", ns, "addr", "add", f"{node.address}/{NODE_PREFIX_LEN}", "dev", "eth0"], f"{ns} address")
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"], f"{ns} eth0 up")

    def _leftover_names(self) -> set[str]:
        pattern = re.compile(rf"{re.escape(self.prefix)}[0-9]+")
        candidates: set[str] = set()
        for directory in (NETNS_DIR, RUN_ROOT, LIB_ROOT):
            with contextlib.suppress(OSError):
                candidates.update(entry.split(".")[0] for entry in os.listdir(directory))
        for mount_point, _, _ in _cgroup_mounts():
            with contextlib.suppress(OSError):
                candidates.update(
                    entry.removeprefix("swarmkeeper-engines-")
                    for entry in os.listdir(mount_point)
                    if entry.startswith("swarmkeeper-engines-")
                )
        return {name for name in candidates if pattern.fullmatch(name)}


def _collect_rmtree_error(problems: list[str]) -> Callable[[Any, str, Any], None]:
    def onerror(_func: Any, path: str, exc_info: Any) -> None:
        exc = exc_info[1]
        if not (isinstance(exc, OSError) and exc.errno == errno.ENOENT):
            problems.append(f"{path}: {exc}")

    return onerror


def _healthy(seen: dict[str, dict[str, Any]], expected: set[str], managers: set[str]) -> bool:
    if set(seen) != expected:
        return False
    leaders = 0
    for name, node in seen.items():
        if node["Status"].get("State") != "ready":
            return False
        status = node.get("ManagerStatus") or {}
        if (name in managers) != bool(status):
            return False
        if status:
            if status.get("Reachability") != "reachable":
                return False
            leaders += bool(status.get("Leader"))
    return leaders == 1


def describe_swarm(seen: dict[str, dict[str, Any]]) -> str:
    """``name:State/Reachability[*]`` per node (``*`` marks the leader), for messages."""
    parts = []
    for name, node in sorted(seen.items()):
        status = node.get("ManagerStatus") or {}
        role = f"/{status.get('Reachability')}{'*' if status.get('Leader') else ''}" if status else "/worker"
        parts.append(f"{name}:{node['Status'].get('State')}{role}")
    return " ".join(parts) or "(no nodes)"


# ---------------------------------------------------------------------------
# fixtures (import them in conftest.py)
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def started_engines(
    cluster: EngineCluster, prepare: Callable[[EngineCluster], None] | None = None
) -> Iterator[EngineCluster]:
    """``cluster``'s engines started (in no swarm) and ``prepare``d; the test fails with the daemons'
    logs if they cannot start. Stopped and removed afterwards."""
    problem = ""
    try:
        cluster.up()
        if prepare is not None:
            prepare(cluster)
    except Exception as exc:  # whatever kept them from starting
        problem = str(exc) if isinstance(exc, EngineError) else f"{exc!r}\n\n{cluster.log_tails()}"
    if problem:
        cluster.down()
        pytest.fail(f"extra Docker engines did not start: {problem}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.down()


@contextlib.contextmanager
def running_swarm(count: int, *, prefix: str, managers: int | None = None) -> Iterator[EngineCluster]:
    """An initialised swarm of ``count`` extra engines, removed afterwards.

    Anything that keeps it from starting fails the test (never skips it), with the daemon logs in
    the message: a missing engine is a broken test machine, not an optional feature.
    """
    cluster = EngineCluster(count, prefix=prefix)
    problem = ""
    try:
        cluster.up()
        cluster.init_swarm(managers)
    except Exception as exc:  # any failure to start, whatever raised it
        problem = str(exc) if isinstance(exc, EngineError) else f"{exc!r}\n\n{cluster.log_tails()}"
    if problem:  # failed outside the except block: no chained traceback in the report
        try:
            cluster.down()
        except EngineError as exc:
            problem += f"\n\n{exc}"
        pytest.fail(f"extra Docker engines did not start: {problem}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def single_engine() -> Iterator[EngineNode]:
    """One extra engine (namespace ``ske1``), a single-node swarm; free to restart or kill."""
    with running_swarm(1, prefix="ske") as cluster:
        yield cluster.nodes[0]


@pytest.fixture(scope="module")
def three_managers() -> Iterator[EngineCluster]:
    """Three extra engines (``skn1..skn3``) forming one swarm of three managers.

    Module scope: forming the swarm takes several seconds. A test that stops a node should start
    it again (and ``wait_healthy()``) unless it is the module's last user.
    """
    with running_swarm(3, prefix="skn") as cluster:
        yield cluster
