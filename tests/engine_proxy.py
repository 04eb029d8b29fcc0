"""A recording proxy in front of the Docker Engine's Unix socket.

Claims such as "invalid input makes no mutating call" must be checked on the wire, whatever process
or client library talks to the engine; point it at the proxy with
``DOCKER_HOST=unix:///tmp/.../proxy.sock`` and read back the method and path of every request.

Only the client's side of each connection is parsed: enough to record each request and to find
where its body ends on a keep-alive connection (Content-Length or chunked). Responses are relayed
byte for byte as they arrive, so chunked and streamed responses (events, logs) pass through
unchanged and without delay. After a connection upgrade (the hijack of ``docker exec`` and
``docker attach``) both directions are raw bytes.

Two hooks let fault tests act at exact points of a conversation: ``on_request`` runs before a
request is forwarded (returning False drops it: the connection is closed and the engine never sees
it), ``on_response`` when the first byte of its response arrives (the engine has acted; the client
has not heard). With
``refuse_mutating`` the proxy answers POST/PUT/DELETE itself with 403 and never forwards them, so a
test that expects no change cannot cause one on a shared engine even when the code under test
regresses.

It must not be used outside tests: it trusts its client, and it is as privileged as the socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

DOCKER_SOCKET = "/var/run/docker.sock"
MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
_VERSION_PREFIX = re.compile(r"^/v[0-9]+(\.[0-9]+)*(?=/)")
_MAX_HEAD = 1 << 20  # a request head larger than this is not HTTP from a Docker client


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the API version prefix and the query: /services/create
    target: str  # as sent: /v1.41/services/create?x=1
    connection: int  # sequence number of the client connection that carried it

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


RequestHook = Callable[[Request], "bool | None"]  # False: drop the request instead of forwarding it
ResponseHook = Callable[[Request], None]


class _Closed(Exception):
    """The client closed its side (or sent something that is not HTTP)."""


class EngineProxy:
    """Listens on ``socket_path`` (a fresh path in a private temporary folder by default)."""

    def __init__(
        self,
        socket_path: Path | None = None,
        upstream: str = DOCKER_SOCKET,
        *,
        refuse_mutating: bool = False,
        on_request: RequestHook | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        self._tmpdir: str | None = None
        if socket_path is None:
            # Unix socket paths are limited to ~107 bytes: pytest's tmp_path may be longer.
            self._tmpdir = tempfile.mkdtemp(prefix="skproxy.", dir="/tmp")
            os.chmod(self._tmpdir, 0o755)
            socket_path = Path(self._tmpdir) / "proxy.sock"
        self.socket_path = socket_path
        self.upstream = upstream
        self.refuse_mutating = refuse_mutating
        self.on_request = on_request
        self.on_response = on_response
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[socket.socket, socket.socket]] = {}
        self._next_connection = 0
        self._server: socket.socket | None = None
        self._accepter: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> EngineProxy:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o666)  # tests may run the client as another user
        server.listen(128)
        self._server = server
        self._accepter = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._accepter.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone does not on Linux.
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        if self._accepter is not None:
            self._accepter.join(timeout=5)
        with self._lock:
            live = list(self._connections.values())
        for pair in live:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self._tmpdir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)

    def __enter__(self) -> EngineProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what was seen ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def mutating(self) -> list[Request]:
        return [r for r in self.requests if r.mutating]

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- relaying --------------------------------------------------------------------------------
    def _accept(self) -> None:
        server = self._server
        assert server is not None
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # stopped
            with self._lock:
                number = self._next_connection
                self._next_connection += 1
            threading.Thread(target=self._serve, args=(client, number), name=f"proxy-{number}", daemon=True).start()

    def _serve(self, client: socket.socket, number: int) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.upstream)
        except OSError:
            client.close()
            upstream.close()
            return
        with self._lock:
            self._connections[number] = (client, upstream)
        conversation = _Conversation(self, client, upstream, number)
        pump = threading.Thread(target=conversation.relay_responses, name=f"proxy-{number}-r", daemon=True)
        pump.start()
        try:
            conversation.relay_requests()
        finally:
            # The client is done sending: let the engine finish its answers, then close both.
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)
            pump.join()
            client.close()
            upstream.close()
            with self._lock:
                self._connections.pop(number, None)

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)


class _Conversation:
    """One client connection and its upstream twin."""

    def __init__(self, proxy: EngineProxy, client: socket.socket, upstream: socket.socket, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.number = number
        self.buffer = b""
        self.awaiting: deque[Request] = deque()  # forwarded, first response byte not seen yet
        self.client_lock = threading.Lock()  # refusals and relayed responses both write to the client

    # client → engine
    def relay_requests(self) -> None:
        try:
            while True:
                head = self._read_head()
                request, headers = self._parse_head(head)
                upgrade = "upgrade" in headers.get("connection", "").lower() or "upgrade" in headers
                self.proxy._record(request)
                if self.proxy.on_request is not None and self.proxy.on_request(request) is False:
                    return
                body = self._read_body(headers)
                if self.proxy.refuse_mutating and request.mutating:
                    self._refuse(request)
                    continue
                self.awaiting.append(request)
                self.upstream.sendall(head + body)
                if upgrade:
                    self._raw(self.client, self.upstream, self.buffer)
                    return
        except (_Closed, OSError):
            return

    def _recv(self) -> bytes:
        data = self.client.recv(65536)
        if not data:
            raise _Closed
        return data

    def _read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD:
                raise _Closed
            self.buffer += self._recv()
        end = self.buffer.index(b"\r\n\r\n") + 4
        head, self.buffer = self.buffer[:end], self.buffer[end:]
        return head

    def _parse_head(self, head: bytes) -> tuple[Request, dict[str, str]]:
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _Closed
        method, target = parts[0].upper(), parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        path = _VERSION_PREFIX.sub("", target.split("?", 1)[0]) or "/"
        return Request(method, path, target, self.number), headers

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            raise _Closed from None
        while len(self.buffer) < length:
            self.buffer += self._recv()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD:
                raise _Closed
            self.buffer += self._recv()
        end = self.buffer.index(b"\r\n") + 2
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size_line = self._read_line()
            out += size_line
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Closed from None
            if size == 0:
                while True:  # optional trailers, then the empty line that ends the body
                    trailer = self._read_line()
                    out += trailer
                    if trailer == b"\r\n":
                        return bytes(out)
            while len(self.buffer) < size + 2:
                self.buffer += self._recv()
            out += self.buffer[: size + 2]
            self.buffer = self.buffer[size + 2 :]

    def _refuse(self, request: Request) -> None:
        body = json.dumps({"message": f"refused by the test proxy: {request} must not be called"}).encode()
        head = (
            f"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with self.client_lock:
            self.client.sendall(head + body)

    # engine → client
    def relay_responses(self) -> None:
        try:
            while True:
                data = self.upstream.recv(65536)
                if not data:
                    break
                # No pipelining from Docker clients: the first bytes after a request are its answer.
                if self.awaiting:
                    request = self.awaiting.popleft()
                    if self.proxy.on_response is not None:
                        self.proxy.on_response(request)
                with self.client_lock:
                    self.client.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.client.shutdown(socket.SHUT_WR)

    @staticmethod
    def _raw(src: socket.socket, dst: socket.socket, pending: bytes) -> None:
        if pending:
            dst.sendall(pending)
        while True:
            data = src.recv(65536)
            if not data:
                return
            dst.sendall(data)
