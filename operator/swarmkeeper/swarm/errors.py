"""Engine failures as swarmkeeper's own exception, so no layer above imports docker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import docker.errors
import requests

T = TypeVar("T")


class EngineError(Exception):
    """A call to the engine failed. ``status`` is the HTTP status, None when unreachable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def out_of_sequence(self) -> bool:
        return "update out of sequence" in str(self)

    @property
    def unreachable(self) -> bool:
        return self.status is None


class NotAManager(EngineError):
    """The engine answers, but cannot host swarm objects: it is not in swarm mode, it is a worker,
    or it is a manager still locked. ``state`` is its LocalNodeState ("inactive", "active"…)."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state

    @property
    def unreachable(self) -> bool:
        return False


@contextmanager
def engine_errors() -> Iterator[None]:
    try:
        yield
    except docker.errors.APIError as exc:
        status = exc.response.status_code if exc.response is not None else None
        raise EngineError(str(exc.explanation or exc), status) from None
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise EngineError(f"cannot reach the Docker engine: {exc}") from None


def call(fn: Callable[[], T]) -> T:
    with engine_errors():
        return fn()
