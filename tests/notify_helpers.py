"""Notification receivers on loopback for the SwarmAlert tests: a JSON webhook that records what it
gets and when, a port nobody listens on, and one that takes connections but never answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from controller_helpers import free_port
from helpers import wait_for


@dataclass(frozen=True)
class Received:
    at: float  # time.time() when it arrived (compared with the controller's log timestamps)
    path: str
    body: dict[str, Any]

    @property
    def message(self) -> str:
        # json:// sends {"message": ...}; Slack-style incoming webhooks (Mattermost's mmost://) {"text": ...}.
        return str(self.body.get("message") or self.body.get("text") or "")

    @property
    def text(self) -> str:
        return json.dumps(self.body)


class Receiver:
    """What Apprise's json:// sends: POST <path> with {"version", "title", "message", "type", ...}."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with outer.lock:
                    outer.received.append(Received(time.time(), self.path, json.loads(raw or b"{}")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def with_text(self, *needles: str, path: str = "/") -> list[Received]:
        """Messages posted under ``path`` (one target's) that hold every needle."""
        return [r for r in self.messages() if r.path.startswith(path) and all(n in r.message for n in needles)]

    def wait_for(self, *needles: str, path: str = "/", timeout: float = 60) -> Received:
        found = wait_for(
            lambda: self.with_text(*needles, path=path), timeout=timeout, interval=0.02, message=f"no {needles}"
        )
        return found[0]


@contextmanager
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog does) and never answers a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    return free_port()


def alert_spec(name: str, url_files: list[str], *, events: list[str] | None = None, objects: str = "") -> str:
    """A SwarmAlert with one target per URL file (paths relative to the spec)."""
    targets = "\n".join(f"    - urlFile: {f}" for f in url_files)
    events_line = f"  events: [{', '.join(events)}]\n" if events else ""
    return (
        "apiVersion: swarmkeeper.io/v1alpha1\n"
        "kind: SwarmAlert\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f"  targets:\n{targets}\n"
        f"{events_line}{objects}"
    )


def write_url(folder: Path, name: str, url: str) -> str:
    (folder / name).write_text(url + "\n")
    (folder / name).chmod(0o600)
    return name
