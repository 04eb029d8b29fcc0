"""Prometheus metrics and the health endpoints, served on one address.

Names follow controller-runtime's (``*_reconcile_total``, ``*_reconcile_errors_total``,
``*_reconcile_time_seconds``) with a ``swarmkeeper_`` prefix, so existing dashboards adapt easily.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from ..engine.run import PassOutcome

MANAGED_KINDS = ("SwarmService", "SwarmNetwork", "SwarmSecret", "SwarmConfig")


class Metrics:
    def __init__(self, controller: str) -> None:
        self.registry = CollectorRegistry()
        self.controller = controller
        self.reconcile_total = Counter(
            "swarmkeeper_reconcile_total",
            "Reconcile passes by result.",
            ["controller", "result"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "swarmkeeper_reconcile_errors_total",
            "Reconcile passes that ended in an error.",
            ["controller"],
            registry=self.registry,
        )
        self.reconcile_time = Histogram(
            "swarmkeeper_reconcile_time_seconds",
            "Duration of reconcile passes.",
            ["controller"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.drift_corrections = Counter(
            "swarmkeeper_drift_corrections_total",
            "Objects changed by hand and put back.",
            ["controller", "kind"],
            registry=self.registry,
        )
        self.managed_objects = Gauge(
            "swarmkeeper_managed_objects",
            "Objects under management.",
            ["controller", "kind"],
            registry=self.registry,
        )
        self.engine_calls = Counter(
            "swarmkeeper_engine_requests_total",
            "Docker Engine API requests.",
            ["controller", "method"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "swarmkeeper_notifications_total",
            "Messages to SwarmAlert targets: sent, failed (after retries) or dropped (a target's queue full).",
            ["controller", "result"],
            registry=self.registry,
        )
        self.spec_errors = Gauge(
            "swarmkeeper_spec_errors",
            "Invalid spec errors in the last load.",
            ["controller"],
            registry=self.registry,
        )

    def record_pass(
        self, outcome: PassOutcome, calls: Mapping[tuple[str, str], int], managed: Mapping[str, int] | None = None
    ) -> None:
        """Everything a pass adds to the metrics, for every front door alike. ``managed``: objects
        per kind under this controller (default: what the pass found managed on its engines)."""
        name = self.controller
        self.reconcile_time.labels(name).observe(outcome.duration)
        self.reconcile_total.labels(name, "success" if outcome.ok else "error").inc()
        if not outcome.ok:
            self.reconcile_errors.labels(name).inc()
        self.spec_errors.labels(name).set(len(outcome.spec_errors))
        for change in outcome.drift:
            self.drift_corrections.labels(name, change.key.kind).inc()
        if outcome.engine_ok:
            counts = managed if managed is not None else outcome.managed_counts()
            for kind in MANAGED_KINDS:
                self.managed_objects.labels(name, kind).set(counts.get(kind, 0))
        per_method: Tally[str] = Tally()
        for (method, _), n in calls.items():
            per_method[method] += n
        for method, n in per_method.items():
            self.engine_calls.labels(name, method).inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """``/metrics``, ``/healthz`` (the loop is alive) and ``/readyz`` (it holds the lease and has
    completed a pass against a reachable engine)."""

    def __init__(self, address: str, metrics: Metrics, healthy: Callable[[], bool], ready: Callable[[], bool]) -> None:
        host, _, port = address.rpartition(":")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    ok = healthy()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n")
                elif self.path.startswith("/readyz"):
                    ok = ready()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the controller's own log

        self.server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)
        del outer

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
