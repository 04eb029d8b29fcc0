"""A counting proxy in front of the Docker Engine socket: every request's method and path is
recorded, so two tools can be compared on the calls they make, not only on time.

It forwards bytes unchanged in both directions; only the client's request heads are parsed (to
count them and to find where each request body ends on a keep-alive connection).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections import Counter
from pathlib import Path

_MUTATING = {"POST", "PUT", "DELETE"}
_ID = re.compile(r"/(services|networks|secrets|configs|tasks|nodes|containers)/[^/?]+")


class CountingProxy:
    def __init__(self, listen: Path, upstream: str = "/var/run/docker.sock") -> None:
        self.listen, self.upstream = listen, upstream
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if listen.exists():
            listen.unlink()
        self._server.bind(str(listen))
        os.chmod(listen, 0o666)
        self._server.listen(64)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.listen}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            total = sum(self.calls.values())
            mutating = sum(n for (m, _), n in self.calls.items() if m in _MUTATING)
            lists = sum(n for (m, p), n in self.calls.items() if m == "GET" and p.count("/") <= 2)
        return {"total": total, "mutating": mutating, "reads": total - mutating, "list": lists}

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                self._count(method, path)
                upstream.sendall(head + b"\r\n\r\n")
                buf = rest
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    buf = self._forward_chunked(client, upstream, buf)
                else:
                    length = int(headers.get("content-length", "0") or 0)
                    while len(buf) < length:
                        chunk = client.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    upstream.sendall(buf[:length])
                    buf = buf[length:]
        except (OSError, ValueError):
            pass
        finally:
            client.close()
            upstream.close()

    def _forward_chunked(self, client: socket.socket, upstream: socket.socket, buf: bytes) -> bytes:
        while True:
            while b"\r\n" not in buf:
                buf += client.recv(65536)
            size_line, _, rest = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            need = size + 2
            while len(rest) < need:
                rest += client.recv(65536)
            upstream.sendall(size_line + b"\r\n" + rest[:need])
            buf = rest[need:]
            if size == 0:
                return buf

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _count(self, method: str, path: str) -> None:
        path = re.sub(r"^/v[0-9.]+", "", path.split("?")[0])
        path = _ID.sub(lambda m: f"/{m.group(1)}/{{id}}", path)
        with self._lock:
            self.calls[(method, path)] += 1
