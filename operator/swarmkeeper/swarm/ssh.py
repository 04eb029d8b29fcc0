"""Engines at ``ssh://[user@]host[:port]``: HTTP over ``ssh … docker system dial-stdio``.

Each connection runs the system's ``ssh`` (as ``docker -H ssh://`` does), so ssh's own
configuration, agent and jump hosts keep working, with options of ours that always win: never a
prompt (``BatchMode``), host keys always checked (``StrictHostKeyChecking=yes``: an unknown or
changed key is refused, never added), and the spec's identity and known_hosts files when given.

docker-py's own ssh transport needs paramiko and takes no ssh options; this one hands urllib3 one
end of a socket pair whose other end is ssh's stdin and stdout, so timeouts, streams and their
cancelling behave as on a unix socket. When ssh fails (refused host key, denied login, no
``docker`` on the far side), what it said on stderr becomes the error: :class:`SSHFailed`.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool
from docker.transport.basehttpadapter import BaseHTTPAdapter

SSH = "ssh"
DIAL = ["docker", "system", "dial-stdio"]
EXIT_WAIT = 5.0  # after its output ended, how long ssh gets to exit with its verdict
STDERR_LIMIT = 4000  # what is kept of ssh's complaints: a few lines, never a flood


class SSHFailed(ConnectionError):
    """ssh exited with an error; the message is what it printed (never key material: ssh does not
    print keys, only their types and fingerprints)."""


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to log in: ``url`` is ``ssh://[user@]host[:port]``."""

    url: str
    identity_file: str | None = None
    known_hosts_file: str | None = None
    connect_timeout: int = 30

    def command(self) -> list[str]:
        parts = urlsplit(self.url)
        if not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("not an ssh://[user@]host[:port] address")
        args = [
            SSH,
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
            # A peer that vanished ends the session (and so a followed event stream) within a minute.
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
        ]
        if self.known_hosts_file is not None:
            args += ["-o", f"UserKnownHostsFile={_quoted(self.known_hosts_file)}"]
        if self.identity_file is not None:
            args += ["-o", "IdentitiesOnly=yes", "-i", self.identity_file]
        if parts.username:
            args += ["-l", parts.username]
        if parts.port:
            args += ["-p", str(parts.port)]
        return [*args, "--", parts.hostname, *DIAL]


def _quoted(path: str) -> str:
    # ssh splits UserKnownHostsFile on spaces (it takes several files); quotes keep one path whole.
    return f'"{path}"' if " " in path else path


class SSHSocket(socket.socket):
    """Our end of the pair; ssh has the other. Turns ssh's failure into :class:`SSHFailed`."""

    proc: subprocess.Popen[bytes] | None = None
    stderr: IO[bytes] | None = None

    @classmethod
    def start(cls, command: Sequence[str], timeout: float | None) -> SSHSocket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sock = cls(fileno=ours.detach())
        # A file, not a pipe: a background ssh (ControlPersist) may hold stderr open forever.
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the connection; close() closes it)
        try:
            sock.proc = subprocess.Popen(
                list(command),
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=stderr,
                start_new_session=True,  # the terminal's Ctrl-C is for swarmkeeper, which closes ssh itself
            )
        except OSError as exc:
            stderr.close()
            sock.close()
            raise SSHFailed(f"cannot run {command[0]}: {exc.strerror or exc}") from None
        finally:
            theirs.close()
        sock.stderr = stderr
        sock.settimeout(timeout)
        return sock

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        try:
            n = super().recv_into(buffer, nbytes, flags)
        except ConnectionError:
            self._raise_if_ssh_failed()
            raise
        if n == 0:
            self._raise_if_ssh_failed()
        return n

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        try:
            data = super().recv(bufsize, flags)
        except ConnectionError:
            self._raise_if_ssh_failed()
            raise
        if not data:
            self._raise_if_ssh_failed()
        return data

    def sendall(self, data: Any, flags: int = 0) -> None:
        try:
            super().sendall(data, flags)
        except ConnectionError:
            self._raise_if_ssh_failed()
            raise

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except ConnectionError:
            self._raise_if_ssh_failed()
            raise

    def _raise_if_ssh_failed(self) -> None:
        """The stream ended: if ssh did not end well, say why in its words."""
        proc = self.proc
        if proc is None:
            return
        try:
            code = proc.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            return
        if code == 0:
            return
        said = ""
        if self.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                self.stderr.seek(0)
                said = self.stderr.read(STDERR_LIMIT).decode(errors="replace")
        lines = [line.strip().removeprefix("ssh: ").rstrip(".") for line in said.splitlines() if line.strip()]
        raise SSHFailed("; ".join(lines) or f"ssh exited with status {code}")

    def close(self) -> None:
        super().close()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1.0)
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


class SSHConnection(urllib3.connection.HTTPConnection):
    def __init__(self, command: Sequence[str], timeout: Any) -> None:
        super().__init__("localhost", timeout=timeout)
        self.ssh_command = list(command)

    def connect(self) -> None:
        # urllib3 sets the timeout of each request before connecting (None, or its default marker: none).
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        self.sock = SSHSocket.start(self.ssh_command, timeout)


class SSHConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, command: Sequence[str], timeout: float | None, maxsize: int) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=maxsize)
        self.ssh_command = list(command)

    def _new_conn(self) -> SSHConnection:
        return SSHConnection(self.ssh_command, self.timeout.connect_timeout)


class SSHAdapter(BaseHTTPAdapter):  # type: ignore[misc]
    """requests adapter: every URL goes to the one engine behind ``target``."""

    def __init__(self, target: SSHTarget, timeout: float | None, max_pool_size: int) -> None:
        self.command = target.command()
        self.timeout = timeout
        self.max_pool_size = max_pool_size
        self.pool: SSHConnectionPool | None = None
        super().__init__()

    def get_connection(self, url: str, proxies: Any = None) -> SSHConnectionPool:
        if self.pool is None:
            self.pool = SSHConnectionPool(self.command, self.timeout, self.max_pool_size)
        return self.pool

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        # The host part of the URL means nothing here (as on a unix socket), nor do proxies.
        return str(request.path_url)

    def close(self) -> None:
        super().close()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
