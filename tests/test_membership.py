"""``require_manager``: one check that an engine is a usable swarm manager (no engine needed)."""

from __future__ import annotations

from typing import Any, cast

import docker.errors
import pytest
import requests

from swarmkeeper.swarm.connect import EngineClient
from swarmkeeper.swarm.errors import EngineError
from swarmkeeper.swarm.membership import LOCKED, NOT_IN_SWARM, WORKER, NotAManager, require_manager


class FakeEngine:
    """Answers ``info`` with a given swarm state and records ``init_swarm`` calls."""

    def __init__(self, state: str | None, manager: bool = False, fail: Exception | None = None) -> None:
        self.swarm: dict[str, Any] = {} if state is None else {"LocalNodeState": state, "ControlAvailable": manager}
        self.fail = fail
        self.inits: list[str | None] = []

    def info(self) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        return {"Swarm": self.swarm}

    def init_swarm(self, advertise_addr: str | None = None) -> str:
        self.inits.append(advertise_addr)
        self.swarm = {"LocalNodeState": "active", "ControlAvailable": True}
        return "n0d3id0123456789"


def client(engine: FakeEngine) -> EngineClient:
    return cast(EngineClient, engine)


def test_a_manager_passes() -> None:
    engine = FakeEngine("active", manager=True)
    assert require_manager(client(engine)) is None
    assert require_manager(client(engine), init=True) is None
    assert engine.inits == []


@pytest.mark.parametrize("state", ["inactive", None, "pending", "error"])
def test_not_in_swarm_mode(state: str | None) -> None:
    engine = FakeEngine(state)
    with pytest.raises(NotAManager) as caught:
        require_manager(client(engine))
    assert str(caught.value) == NOT_IN_SWARM
    assert isinstance(caught.value, EngineError) and not caught.value.unreachable
    assert engine.inits == []


def test_init_makes_a_single_node_swarm() -> None:
    engine = FakeEngine("inactive")
    assert require_manager(client(engine), init=True, advertise_addr="10.0.0.5") == "n0d3id0123456789"
    assert engine.inits == ["10.0.0.5"]


def test_a_worker_is_refused_even_with_init() -> None:
    engine = FakeEngine("active", manager=False)
    for init in (False, True):
        with pytest.raises(NotAManager) as caught:
            require_manager(client(engine), init=init)
        assert str(caught.value) == WORKER
        assert caught.value.state == "active"
    assert engine.inits == []


def test_a_locked_manager_is_not_initialised() -> None:
    engine = FakeEngine("locked")
    with pytest.raises(NotAManager) as caught:
        require_manager(client(engine), init=True)
    assert str(caught.value) == LOCKED
    assert engine.inits == []


def test_an_engine_away_is_unreachable_not_refused() -> None:
    engine = FakeEngine(None, fail=requests.exceptions.ConnectionError("connection refused"))
    with pytest.raises(EngineError) as caught:
        require_manager(client(engine), init=True)
    assert not isinstance(caught.value, NotAManager)
    assert caught.value.unreachable
    assert engine.inits == []


def test_the_messages_are_the_ones_users_see() -> None:
    assert NOT_IN_SWARM == (
        "this Docker Engine is not in swarm mode. Run `docker swarm init` (or start again with "
        "--init-swarm to make it a single-node swarm)"
    )
    assert WORKER == "this engine is a swarm worker; point swarmkeeper at a manager (--host or DOCKER_HOST)"


def test_an_init_refused_says_which_flag_helps() -> None:
    class NeedsAddress(FakeEngine):
        def init_swarm(self, advertise_addr: str | None = None) -> str:
            raise docker.errors.APIError("could not choose an IP address to advertise")

    with pytest.raises(EngineError, match="--advertise-addr"):
        require_manager(client(NeedsAddress("inactive")), init=True)
