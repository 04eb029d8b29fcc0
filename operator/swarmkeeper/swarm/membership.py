"""Whether the engine is in swarm mode, and making it so (a single-node swarm) on request."""

from __future__ import annotations

from typing import Final

from .connect import EngineClient
from .errors import EngineError, NotAManager, call

__all__ = ["NotAManager", "init_single_node", "require_manager", "swarm_state"]

NOT_IN_SWARM: Final = (
    "this Docker Engine is not in swarm mode. Run `docker swarm init` (or start again with "
    "--init-swarm to make it a single-node swarm)"
)
WORKER: Final = "this engine is a swarm worker; point swarmkeeper at a manager (--host or DOCKER_HOST)"
LOCKED: Final = "this swarm manager is locked (autolock, after a restart); unlock it with `docker swarm unlock`"


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


def require_manager(client: EngineClient, *, init: bool = False, advertise_addr: str | None = None) -> str | None:
    """Check that the engine is a usable swarm manager; returns None when it is.

    An engine not in swarm mode raises ``NotAManager`` — or, with ``init``, is made a single-node
    swarm (advertising ``advertise_addr``), and the new node's ID is returned. A worker or a locked
    manager raises ``NotAManager``. An engine that does not answer raises a plain ``EngineError``
    (``unreachable``), so a caller can tell "wait for it" from "it will never do".
    """
    state, manager = swarm_state(client)
    if state == "active":
        if not manager:
            raise NotAManager(WORKER, state)
        return None
    if state == "locked":
        raise NotAManager(LOCKED, state)
    if not init:
        raise NotAManager(NOT_IN_SWARM, state)
    return init_single_node(client, advertise_addr)
