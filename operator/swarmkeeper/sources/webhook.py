"""Push webhooks from GitHub, Gitea/Forgejo and GitLab: verified, then turned into "fetch now".

A webhook only says *when* to look: the commit is always fetched from the repository itself, so
a forged or replayed payload can at most cause an extra fetch, and only with a valid signature.
Verification is by the provider's own scheme against the shared secret:

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
* Gitea/Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature``: ``<hex HMAC-SHA256 of the body>``;
* GitLab: ``X-Gitlab-Token: <the secret itself>``.

A request failing verification gets 401 and changes nothing; it is logged with the client's
address and the reason, never with the secret or a signature. ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY = 5 * 1024 * 1024  # GitHub caps payloads at 25 MB, but a push event for specs is small


@dataclass(frozen=True)
class Push:
    """What a verified push event says: which provider, which ref, which commit (informational)."""

    provider: str
    ref: str | None
    after: str | None


@dataclass(frozen=True)
class Route:
    """One source listening for pushes: its secret, the ref it tracks, what to do on a push."""

    name: str
    secret: bytes
    ref: str  # "main", "refs/heads/main", "v1" (tag) — matched like the fetch matches it
    on_push: Callable[[Push], None]

    def tracks(self, ref: str | None) -> bool:
        if ref is None:
            return True  # an event without a ref (a manual "test" delivery): fetching is harmless
        if self.ref.startswith("refs/"):
            return ref == self.ref
        return ref in (f"refs/heads/{self.ref}", f"refs/tags/{self.ref}")


class Unverified(Exception):
    """Why a request is not trusted (names headers, never their values)."""


def verify(headers: Mapping[str, str], body: bytes, secret: bytes) -> str:
    """The provider whose signature on ``body`` is valid for ``secret``; raises ``Unverified``."""
    lower = {k.lower(): v for k, v in headers.items()}
    if "x-hub-signature-256" in lower:
        value = lower["x-hub-signature-256"].strip()
        if not value.startswith("sha256="):
            raise Unverified("X-Hub-Signature-256 is not of the form sha256=<hex>")
        _check_hmac(value.removeprefix("sha256="), body, secret, "X-Hub-Signature-256")
        return "gitea" if "x-gitea-event" in lower else "github"
    for header, provider in (("x-gitea-signature", "gitea"), ("x-forgejo-signature", "forgejo")):
        if header in lower:
            _check_hmac(lower[header].strip(), body, secret, header.title())
            return provider
    if "x-gitlab-token" in lower:
        if not hmac.compare_digest(lower["x-gitlab-token"].encode(), secret):
            raise Unverified("X-Gitlab-Token does not match")
        return "gitlab"
    raise Unverified("no signature (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)")


def _check_hmac(given: str, body: bytes, secret: bytes, header: str) -> None:
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise Unverified(f"{header} does not match the body")


def event_kind(headers: Mapping[str, str]) -> str | None:
    """``push``, ``ping``, ``tag_push``… as the provider names the event, or None."""
    lower = {k.lower(): v for k, v in headers.items()}
    for header in ("x-github-event", "x-gitea-event", "x-forgejo-event", "x-gogs-event"):
        if header in lower:
            return lower[header].strip().lower()
    if "x-gitlab-event" in lower:  # "Push Hook", "Tag Push Hook"
        return lower["x-gitlab-event"].strip().lower().removesuffix(" hook").replace(" ", "_")
    return None


def parse_push(provider: str, body: bytes) -> Push:
    try:
        data: Any = json.loads(body or b"{}")
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body is not a JSON object")
    ref = data.get("ref")
    after = data.get("after") or data.get("checkout_sha")
    return Push(provider, ref if isinstance(ref, str) else None, after if isinstance(after, str) else None)


class TextHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with short plain-text answers, bounded bodies and no access log: what each webhook
    receiver logs is what it decided, never a header's value."""

    protocol_version = "HTTP/1.1"

    def body(self, limit: int) -> bytes | None:
        """The request's body; None (413 already sent) when it is larger than ``limit``."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > limit:
            self._send(413, "body too large", close=True)
            return None
        return self.rfile.read(length)

    def _send(self, code: int, text: str, close: bool = False) -> None:
        payload = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


class WebhookServer:
    """``POST /`` (every route whose secret verifies) or ``POST /hooks/<name>``; ``GET /healthz``."""

    def __init__(self, address: str, routes: Sequence[Route], healthy: Callable[[], bool] | None = None) -> None:
        host, _, port = address.rpartition(":")
        self.routes = list(routes)
        by_name = {r.name: r for r in self.routes}

        class Handler(TextHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    ok = healthy() if healthy is not None else True
                    self._send(200 if ok else 503, "ok" if ok else "unhealthy")
                else:
                    self._send(404, "not found")

            def do_POST(self) -> None:
                path = self.path.split("?")[0].rstrip("/") or "/"
                if path == "/":
                    candidates = list(by_name.values())
                elif path.startswith("/hooks/") and path.removeprefix("/hooks/") in by_name:
                    candidates = [by_name[path.removeprefix("/hooks/")]]
                else:
                    self._send(404, "no such hook")
                    return
                body = self.body(MAX_BODY)
                if body is None:
                    return
                headers = {k: v for k, v in self.headers.items()}
                # Outcomes are logged by handle(), with what matters and nothing secret.
                self._send(*handle(candidates, headers, body, self.client_address[0]))

        self.server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhooks", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def handle(routes: Sequence[Route], headers: Mapping[str, str], body: bytes, client: str) -> tuple[int, str]:
    """(HTTP status, short text) for one delivery; pokes every route it verifies for and concerns."""
    verified: list[tuple[Route, str]] = []
    reason = "no hook configured"
    for route in routes:
        try:
            verified.append((route, verify(headers, body, route.secret)))
        except Unverified as exc:
            reason = str(exc)
    if not verified:
        log.warning("webhook from %s rejected: %s", client, reason)
        return 401, "signature verification failed"
    kind = event_kind(headers)
    if kind == "ping":
        return 200, "pong"
    try:
        push = parse_push(verified[0][1], body)
    except ValueError as exc:
        log.warning("webhook from %s: %s", client, exc)
        return 400, str(exc)
    if kind not in (None, "push", "tag_push"):
        return 202, f"ignored: {kind} event"
    poked = []
    for route, provider in verified:
        if route.tracks(push.ref):
            poked.append(route.name)
            route.on_push(Push(provider, push.ref, push.after))
    if not poked:
        log.info("webhook (%s) for %s: not a tracked ref; ignored", verified[0][1], push.ref)
        return 202, f"ignored: {push.ref} is not tracked"
    log.info(
        "webhook (%s) push to %s%s: fetching %s",
        verified[0][1],
        push.ref,
        f" at {push.after[:12]}" if push.after else "",
        ", ".join(poked),
    )
    return 202, "fetching"
