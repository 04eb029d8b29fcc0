"""Whether the engine is in swarm mode, and making it so (a single-node swarm) on request."""

from __future__ import annotations

from .connect import EngineClient
from .errors import EngineError, call


def swarm_state(client: EngineClient) -> tuple[str, bool]:
    """(LocalNodeState, is a manager) as the engine reports them."""
    info = call(lambda: client.info())
    swarm = info.get("Swarm") or {}
    return str(swarm.get("LocalNodeState", "inactive")), bool(swarm.get("ControlAvailable"))


def init_single_node(client: EngineClient, advertise_addr: str | None = None) -> str:
    """``docker swarm init``; returns the new node's ID."""
    try:
        return str(call(lambda: client.init_swarm(advertise_addr=advertise_addr)))
    except EngineError as exc:
        if "advertise" in str(exc):
            raise EngineError(f"{exc} — pass --advertise-addr with one of this machine's addresses") from None
        raise
