"""The read-only dashboard: ``/`` the page, ``/api/state`` JSON, ``/api/events`` server-sent events.

The loop hands each published pass to ``Dashboard.publish``, which only keeps a reference and wakes
the dashboard's own thread: that thread builds the page's data (plus one ``GET /nodes`` on a
connection of its own, so the reconcile's call counts stay as they are) and wakes every open event
stream. Nothing here reconciles, writes to the swarm, or waits inside a pass.

Safe by default: loopback only unless a token is given (``check_address``). With a token every
path needs ``Authorization: Bearer <token>``, or the session cookie a browser gets by opening the
page once with ``?token=``; the cookie holds a digest of the token, not the token. The request log
is off (a query string may hold the token).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ...engine.run import Clients, PassOutcome
from ...loading import Manifest
from ...swarm.errors import EngineError
from ...swarm.nodes import members
from .state import MAX_PASSES, NodeView, eventful, merged, node_views, pass_summary, snapshot

log = logging.getLogger(__name__)

COOKIE = "swarmkeeper_ui"
KEEPALIVE = 15.0  # seconds between comments on an idle event stream (proxies drop silent ones)
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT``; no host means 127.0.0.1."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{address!r} is not HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{address!r}: port out of range")
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(address: str, has_token: bool) -> str | None:
    """Why the dashboard may not listen on ``address`` (None: it may)."""
    try:
        host, _ = split_address(address)
    except ValueError as exc:
        return str(exc)
    if not is_loopback(host) and not has_token:
        return f"{host} is not a loopback address: the dashboard needs a token file to listen there"
    return None


def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "assets" / name).read_bytes()


class Dashboard:
    def __init__(
        self,
        address: str,
        token: bytes,
        *,
        source: str,
        nodes: Callable[[], Sequence[NodeView]] | None = None,
        read_only: bool = False,
        describe: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.token = token
        self.session = hmac.new(token, b"swarmkeeper-ui-session", hashlib.sha256).hexdigest() if token else ""
        self.source = source
        self._nodes = nodes
        self._publishing = threading.Lock()
        self._scopes: dict[str | None, tuple[Sequence[Manifest], PassOutcome]] = {}
        self.read_only = read_only
        self._describe = describe
        self._last_nodes: list[NodeView] | None = None
        self._passes: deque[dict[str, Any]] = deque(maxlen=MAX_PASSES)
        self._pending: tuple[list[Manifest], PassOutcome, list[dict[str, Any]], dict[str, Any] | None] | None = None
        self._changed = threading.Condition()
        self._work = threading.Event()
        self.stopping = threading.Event()
        self.version = 0
        self._state = self._encode(
            {
                "version": 0,
                "source": source,
                "read_only": read_only,
                "origin": None,
                "objects": [],
                "unmanaged": [],
                "plan": [],
                "nodes": None,
                "passes": [],
                "spec_errors": [],
            }
        )
        host, port = split_address(address)
        self.server = _Server((host, port), _Handler)
        self.server.ui = self
        self.address = f"{host}:{self.server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self.server.serve_forever, name="ui-http", daemon=True),
            threading.Thread(target=self._build_loop, name="ui-state", daemon=True),
        ]

    # -- the loop's side ---------------------------------------------------------------------
    def publish(self, manifests: Sequence[Manifest], outcome: PassOutcome, scope: str | None = None) -> None:
        """Called after each pass; never waits. ``scope``: what the pass covered when passes cover
        parts (the operator's namespaces): the page shows the last pass of each, together."""
        summary = {**pass_summary(outcome), "scope": scope}
        # The source is described here, on the loop's thread, which is the one that changes it.
        origin = self._describe() if self._describe is not None else None
        with self._publishing:  # the operator's namespaces pass on threads of their own
            # A pass with nothing to say (the swarm as wanted) is counted, not listed: a busy
            # engine's events would otherwise push the passes that changed something off the list.
            if eventful(summary) or not self._passes:
                self._passes.appendleft(summary)
            else:
                self._passes[0] = {**self._passes[0], "quiet_after": self._passes[0].get("quiet_after", 0) + 1}
            self._scopes[scope] = (list(manifests), outcome)
            all_manifests, all_outcome = merged(self._scopes, scope) if len(self._scopes) > 1 else (manifests, outcome)
            self._pending = (list(all_manifests), all_outcome, list(self._passes), origin)
        self._work.set()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        self._work.set()
        with self._changed:
            self._changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # -- building the page's data ------------------------------------------------------------
    @staticmethod
    def _encode(data: dict[str, Any]) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode()

    def _build_loop(self) -> None:
        while not self.stopping.is_set():
            self._work.wait()
            self._work.clear()
            pending, self._pending = self._pending, None
            if pending is None or self.stopping.is_set():
                continue
            try:
                self._build(*pending)
            except Exception:  # the dashboard must never take the controller down
                log.exception("dashboard: cannot build the state")

    def _build(
        self,
        manifests: list[Manifest],
        outcome: PassOutcome,
        passes: list[dict[str, Any]],
        origin: dict[str, Any] | None,
    ) -> None:
        if self._nodes is not None:
            try:
                self._last_nodes = list(self._nodes())
            except EngineError as exc:
                log.debug("dashboard: cannot list nodes: %s", exc)
        data = snapshot(
            manifests,
            outcome,
            passes,
            self._last_nodes,
            source=self.source,
            version=self.version + 1,
            read_only=self.read_only,
            origin=origin,
        )
        encoded = self._encode(data)
        with self._changed:
            self.version += 1
            self._state = encoded
            self._changed.notify_all()

    def current(self) -> tuple[int, bytes]:
        with self._changed:
            return self.version, self._state

    def wait_newer(self, seen: int, timeout: float) -> tuple[int, bytes]:
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self.stopping.is_set(), timeout)
            return self.version, self._state

    # -- HTTP --------------------------------------------------------------------------------
    def allowed(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, set the cookie)."""
        if not self.token:
            return True, False
        bearer = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip().encode()
        if bearer and hmac.compare_digest(bearer, self.token):
            return True, False
        cookie = SimpleCookie(handler.headers.get("Cookie") or "")
        morsel = cookie.get(COOKIE)
        if morsel is not None and hmac.compare_digest(morsel.value.encode(), self.session.encode()):
            return True, False
        given = (query.get("token") or [""])[0].encode()
        if given and hmac.compare_digest(given, self.token):
            return True, True
        return False, False


def start_dashboard(
    address: str,
    token: bytes,
    *,
    source: str,
    host: str | None,
    read_only: bool = False,
    describe: Callable[[], dict[str, Any]] | None = None,
) -> Dashboard | None:
    """The dashboard on ``address``, serving; None (and said in the log) when the address cannot be had."""
    try:
        dashboard = Dashboard(
            address, token, source=source, nodes=engine_nodes(host), read_only=read_only, describe=describe
        )
    except OSError as exc:
        log.error("cannot serve the dashboard on %s: %s", address, exc)
        return None
    dashboard.start()
    log.info("dashboard on http://%s/", dashboard.address)
    return dashboard


def engine_nodes(host: str | None) -> Callable[[], list[NodeView]]:
    """The default engine's nodes, on a connection of the dashboard's own."""
    clients = Clients(host)

    def read() -> list[NodeView]:
        try:
            return node_views(members(clients.get(None)))
        except EngineError:
            clients.drop(None)
            raise

    return read


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    ui: Dashboard


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "swarmkeeper"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request line may hold ?token=

    def _start(self, code: int, content_type: str, length: int | None, extra: dict[str, str]) -> None:
        self.send_response(code)
        for name, value in {**HEADERS, **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self._start(code, content_type, len(body), extra or {})
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        allowed, set_cookie = self.server.ui.allowed(self, parse_qs(url.query))
        if not allowed:
            log.warning("dashboard: request from %s rejected: no valid token", self.client_address[0])
            self._send(401, b"unauthorized\n", "text/plain; charset=utf-8", {"WWW-Authenticate": "Bearer"})
            return
        extra: dict[str, str] = {}
        if set_cookie:
            extra["Set-Cookie"] = f"{COOKIE}={self.server.ui.session}; HttpOnly; SameSite=Strict; Path=/"
            # Drop the token from the address bar (and from history) at once.
            extra["Location"] = url.path
            self._send(303, b"", "text/plain; charset=utf-8", extra)
            return
        if url.path in ASSETS:
            name, content_type = ASSETS[url.path]
            self._send(200, _asset(name), content_type)
        elif url.path == "/api/state":
            self._send(200, self.server.ui.current()[1], "application/json")
        elif url.path == "/api/events":
            self._events()
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _events(self) -> None:
        self.close_connection = True
        self._start(200, "text/event-stream", None, {"Connection": "close"})
        seen, state = self.server.ui.current()
        try:
            self.wfile.write(b"retry: 1000\n\n")
            self._state(state)
            while not self.server.ui.stopping.is_set():
                version, state = self.server.ui.wait_newer(seen, KEEPALIVE)
                if version != seen:
                    seen = version
                    self._state(state)
                else:
                    self.wfile.write(b": idle\n\n")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page went away

    def _state(self, state: bytes) -> None:
        self.wfile.write(b"event: state\ndata: " + state + b"\n\n")
        self.wfile.flush()
