"""Push notifications of a distribution registry (its ``notifications: endpoints:``) as wake-ups.

A tag pushed again reaches the services that follow it (resolveImage: always) at once, instead of
at the next ``--image-interval``: the loop then asks the registries again in that pass. Like a Git
webhook, a notification only says *when* to look: digests always come from the registry itself,
so a forged one could at most cause an extra look, and only with the token. The registry sends the
token as ``Authorization: Bearer <token>`` (configured in its endpoint's ``headers``); anything
else gets 401, logged with the client's address, never with the token.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from ..sources.webhook import TextHandler
from .triggers import Wakeup

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # an envelope of a few events
REASON = "registry"  # the wake-up's reason: the pass asks registries again, whatever their last answer's age


def pushed_tags(body: bytes) -> list[str]:
    """``host/repository:tag`` of each manifest push in a notification envelope."""
    try:
        data: Any = json.loads(body or b"{}")
    except ValueError:
        raise ValueError("the body is not JSON") from None
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        raise ValueError("the body has no events")
    out = []
    for e in events:
        if not isinstance(e, dict) or e.get("action") != "push":
            continue
        target, request = e.get("target") or {}, e.get("request") or {}
        if isinstance(target, dict) and target.get("tag") and isinstance(request, dict):
            out.append(f"{request.get('host', '')}/{target.get('repository', '')}:{target['tag']}")
    return out


class RegistryHook:
    """``POST /registry`` with the bearer token; ``GET /healthz``."""

    def __init__(self, address: str, token: bytes, wakeup: Wakeup) -> None:
        host, _, port = address.rpartition(":")

        class Handler(TextHandler):
            def do_GET(self) -> None:
                self._send(200 if self.path.split("?")[0] == "/healthz" else 404, "ok")

            def do_POST(self) -> None:
                if self.path.split("?")[0].rstrip("/") != "/registry":
                    self._send(404, "not found")
                    return
                given = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip().encode()
                body = self.body(MAX_BODY)
                if body is None:
                    return
                if not hmac.compare_digest(given, token):
                    log.warning("registry notification from %s rejected: no valid bearer token", self.client_address[0])
                    self._send(401, "unauthorized")
                    return
                try:
                    tags = pushed_tags(body)
                except ValueError as exc:
                    self._send(400, str(exc))
                    return
                if tags:
                    log.info("registry notification: %s pushed; asking the registries again", ", ".join(tags))
                    wakeup.poke(REASON)
                self._send(200, "ok")

        self.server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="registry-hook", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
