"""Prometheus metrics and the health endpoints, served on one address.

Names follow controller-runtime's (``*_reconcile_total``, ``*_reconcile_errors_total``,
``*_reconcile_time_seconds``) with a ``swarmkeeper_`` prefix, so existing dashboards adapt easily.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        self.spec_errors = Gauge(
            "swarmkeeper_spec_errors",
            "Invalid spec errors in the last load.",
            ["controller"],
            registry=self.registry,
        )

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
