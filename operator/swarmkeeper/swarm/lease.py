"""A lease held in the swarm itself, so only one controller acts on a swarm (per source) at a time.

The lease is a swarm config object named ``swarmkeeper-lease.<source>`` whose labels say who holds
it and when it was last renewed. Creating it is atomic (the name is unique in the swarm); taking
over an expired one and renewing are compare-and-swap updates on the object's version index, so two
controllers can never both believe they hold it. The holder renews every ``ttl/3``; a holder that
dies simply stops renewing, and after ``ttl`` seconds another controller may take the lease over.
A clean shutdown removes the object at once.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from .connect import EngineClient
from .errors import EngineError, call

log = logging.getLogger(__name__)

HOLDER = "io.swarmkeeper.lease.holder"
RENEWED = "io.swarmkeeper.lease.renewed"
TTL = "io.swarmkeeper.lease.ttl"
PREFIX = "swarmkeeper-lease."  # the config's name: PREFIX + source


def is_lease(name: str) -> bool:
    """Whether a swarm config of this name is a controller's lease (bookkeeping, not a spec'd object)."""
    return name.startswith(PREFIX)


@dataclass(frozen=True)
class LeaseInfo:
    holder: str
    age: float  # seconds since the last renewal
    ttl: float

    @property
    def expired(self) -> bool:
        return self.age > self.ttl


class Lease:
    def __init__(self, client: EngineClient, source: str, ttl: float = 15.0) -> None:
        self.client = client
        self.name = f"{PREFIX}{source}"
        self.ttl = ttl
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False

    def _labels(self) -> dict[str, str]:
        return {HOLDER: self.identity, RENEWED: f"{time.time():.3f}", TTL: str(self.ttl)}

    def _find(self) -> dict[str, object] | None:
        configs = call(lambda: self.client.configs(filters={"name": self.name}))
        return next((c for c in configs if c["Spec"]["Name"] == self.name), None)

    @staticmethod
    def info_of(obj: dict[str, object]) -> LeaseInfo:
        labels = obj["Spec"].get("Labels") or {}  # type: ignore[attr-defined]
        try:
            renewed, ttl = float(labels.get(RENEWED, "0")), float(labels.get(TTL, "15"))
        except ValueError:
            renewed, ttl = 0.0, 15.0
        return LeaseInfo(labels.get(HOLDER, "?"), time.time() - renewed, ttl)

    def current(self) -> LeaseInfo | None:
        obj = self._find()
        return None if obj is None else self.info_of(obj)

    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired; renew it if we hold it. True when held."""
        obj = self._find()
        if obj is None:
            try:
                data = base64.b64encode(b"lease").decode()
                body = {"Name": self.name, "Labels": self._labels(), "Data": data}
                self.client.post_json("/configs/create", body=body)
                self.held = True
            except EngineError as exc:
                if not exc.conflict:
                    raise
                self.held = False  # someone else created it first
            return self.held
        info = self.info_of(obj)
        if info.holder != self.identity and not info.expired:
            self.held = False
            return False
        if info.holder != self.identity:
            log.warning(
                "taking over the expired lease %s from %s (%.0fs without renewal)", self.name, info.holder, info.age
            )
        self.held = self._swap(obj)
        return self.held

    def _swap(self, obj: dict[str, object]) -> bool:
        spec = dict(obj["Spec"])  # type: ignore[call-overload]
        spec["Labels"] = self._labels()
        version = obj["Version"]["Index"]  # type: ignore[index]
        try:
            self.client.post_json("/configs/{0}/update", str(obj["ID"]), body=spec, params={"version": version})
            return True
        except EngineError as exc:
            # Lost the race: someone renewed or took it between our read and our write.
            if "out of sequence" in str(exc) or exc.conflict or exc.not_found:
                return False
            raise

    def release(self) -> None:
        if not self.held:
            return
        try:
            obj = self._find()
            if obj is not None and self.info_of(obj).holder == self.identity:
                call(lambda: self.client.remove_config(obj["ID"]))
        except EngineError as exc:
            log.warning("could not release the lease %s: %s (it expires in %.0fs)", self.name, exc, self.ttl)
        self.held = False
