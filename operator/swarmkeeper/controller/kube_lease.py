"""One acting operator at a time: a ``coordination.k8s.io`` Lease, taken and renewed by compare-and-swap.

The same rules as client-go's leader election, so the Lease reads the same in ``kubectl get lease``:

* everyone tries every ``retry_period`` (2 s for a 15 s ttl); every write carries the
  resourceVersion it read, so of two candidates writing at once exactly one succeeds (the other
  gets a conflict and stands by);
* a candidate takes a held Lease only after it has seen the record unchanged for a whole
  ``leaseDurationSeconds`` on its own monotonic clock: no trust in other machines' clocks;
* a holder that cannot renew gives up after ``renew_deadline`` (2/3 of the ttl), measured from
  its last successful renewal: well before anyone else may take over, so two never act at once;
  every request has a timeout, so a stalled API server cannot hold an attempt forever (the caller
  still has to stop acting at ``held_until`` while an attempt is under way);
* a clean stop clears the holder, so a standby takes over on its next attempt instead of waiting.

It knows nothing of what the holder does; the calls block: run ``attempt`` from a thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "coordination.k8s.io", "v1", "leases"


def _micro_time() -> str:
    # MicroTime: the API server insists on exactly six fractional digits.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Observed:
    holder: str
    renew_time: str | None
    resource_version: str


class KubeLease:
    def __init__(self, custom_api: Any, namespace: str, name: str, identity: str, ttl: float = 15.0) -> None:
        from kubernetes.client.exceptions import ApiException

        self.api = custom_api
        self.errors = ApiException
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.ttl = ttl
        self.retry_period = ttl * 2 / 15
        self.renew_deadline = ttl * 2 / 3
        # Without one, a request to an API server that accepts the connection but never answers
        # waits forever (the client sets no timeout): the Lease could never be renewed again.
        self.request_timeout = self.renew_deadline / 2
        self.held_until = 0.0  # monotonic: until when our last successful renewal lets us act
        self.api_ok = False  # the last attempt reached the API server
        self.holder: str | None = None  # as last read
        self._observed: Observed | None = None
        self._observed_at = 0.0

    @property
    def held(self) -> bool:
        return time.monotonic() < self.held_until

    def attempt(self) -> bool:
        """Acquire or renew; True while this process holds the Lease."""
        started = time.monotonic()  # the renewal counts from before the request: never too long
        try:
            result = self._attempt()
            self.api_ok = True
        except self.errors as exc:
            self.api_ok = False
            log.warning("lease %s/%s: API error %s %s", self.namespace, self.name, exc.status, exc.reason)
            return self.held
        except Exception as exc:  # unreachable API server (urllib3 errors and the like)
            self.api_ok = False
            log.warning("lease %s/%s: API server unreachable (%s)", self.namespace, self.name, type(exc).__name__)
            return self.held
        if result:
            self.held_until = started + self.renew_deadline
        else:
            self.held_until = 0.0
        return self.held  # a renewal that took longer than the deadline does not count

    def _attempt(self) -> bool:
        try:
            lease = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name, _request_timeout=self.request_timeout
            )
        except self.errors as exc:
            if exc.status != 404:
                raise
            return self._write(None, transitions=0)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self.holder = holder or None
        observed = Observed(holder, spec.get("renewTime"), lease["metadata"]["resourceVersion"])
        if observed != self._observed:
            self._observed, self._observed_at = observed, time.monotonic()
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            return self._write(lease, transitions=transitions, renew=True)
        duration = float(spec.get("leaseDurationSeconds") or self.ttl)
        if holder and time.monotonic() - self._observed_at < duration:
            return False
        return self._write(lease, transitions=transitions + 1)

    def _write(self, lease: dict[str, Any] | None, *, transitions: int, renew: bool = False) -> bool:
        now = _micro_time()
        spec: dict[str, Any] = dict((lease or {}).get("spec") or {})
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=max(1, round(self.ttl)),
            renewTime=now,
            leaseTransitions=transitions,
        )
        if not renew:
            spec["acquireTime"] = now
        try:
            if lease is None:
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": spec,
                }
                self.api.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, body, _request_timeout=self.request_timeout
                )
            else:
                body = {**lease, "spec": spec}  # metadata keeps the resourceVersion read: compare-and-swap
                self.api.replace_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.name, body, _request_timeout=self.request_timeout
                )
        except self.errors as exc:
            if exc.status == 409:  # someone else wrote first
                return False
            raise
        self.holder = self.identity
        return True

    def release(self) -> None:
        """Give the Lease up (only if still ours), so a standby need not wait for it to expire."""
        if not self.held:
            return
        self.held_until = 0.0
        try:
            lease = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name, _request_timeout=self.request_timeout
            )
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=_micro_time())
            self.api.replace_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                {**lease, "spec": spec},
                _request_timeout=self.request_timeout,
            )
            log.info("released the lease %s/%s", self.namespace, self.name)
        except Exception as exc:  # it expires on its own; releasing only saves the standby the wait
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
