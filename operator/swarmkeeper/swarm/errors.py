"""Engine failures as swarmkeeper's own exception, so no layer above imports docker."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import docker.errors
import requests

from .ssh import SSHFailed

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
def engine_errors(engine: str | None = None) -> Iterator[None]:
    """docker's and requests' exceptions as EngineError. With ``engine`` (its URL), an engine that
    cannot be reached is named, with the gist of why in one line (see :func:`why_unreachable`)."""
    try:
        yield
    except docker.errors.APIError as exc:
        status = exc.response.status_code if exc.response is not None else None
        raise EngineError(str(exc.explanation or exc), status) from None
    # RequestException, not only ConnectionError: an engine that stops in the middle of an answer
    # (a dockerd restart) raises ChunkedEncodingError, one that hangs ReadTimeout; both are an engine
    # away for the moment, not a reason for a controller to exit.
    except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
        if engine is not None:
            raise EngineError(f"cannot reach the Docker engine at {engine}: {why_unreachable(exc)}") from None
        raise EngineError(f"cannot reach the Docker engine: {exc}") from None


def why_unreachable(exc: BaseException) -> str:
    """The cause that matters, out of the layers docker, requests and urllib3 wrap around it: what
    ssh said, which side of a TLS handshake refused the other, or the system's word ("Connection
    refused"). Certificates and keys are named by setting, never shown."""
    causes = list(_causes(exc))
    # Most telling first: a TLS alert also surfaces as "connection reset", an ssh failure as EOF.
    for reader in (_ssh_said, _tls_said, _wants_tls, _timed_out, _system_said):
        for cause in causes:
            said = reader(cause)
            if said:
                return said
    return str(causes[-1])


def _ssh_said(cause: BaseException) -> str | None:
    return f"ssh: {cause}" if isinstance(cause, SSHFailed) else None


def _tls_said(cause: BaseException) -> str | None:
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message or _ssl_text(cause)
        return f"TLS: the engine's certificate was not accepted ({detail}); check tls.caFile"
    if isinstance(cause, ssl.SSLError):
        text = _ssl_text(cause)
        if "alert" in text:
            # The engine ended the handshake: our certificate (or its absence) was not good enough.
            return f"TLS: the engine refused this client ({text}); check tls.certFile and tls.keyFile"
        return f"TLS: {text}"
    return None


def _wants_tls(cause: BaseException) -> str | None:
    response = getattr(cause, "response", None)
    if "HTTP request to an HTTPS server" in str(getattr(response, "text", "")):
        return "the engine expects TLS; set tls"
    return None


def _timed_out(cause: BaseException) -> str | None:
    return "timed out" if isinstance(cause, TimeoutError | requests.exceptions.Timeout) else None


def _system_said(cause: BaseException) -> str | None:
    return cause.strerror if isinstance(cause, OSError) and cause.strerror else None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, exceptions among its args, urllib3's reason."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo += [e for e in inner if isinstance(e, BaseException)]


def _ssl_text(exc: ssl.SSLError) -> str:
    """``[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)`` → ``tlsv1 alert unknown ca``."""
    text = str(exc.args[1] if len(exc.args) > 1 else exc)
    text = text.split("] ", 1)[-1]
    return text.split(" (_ssl.c:", 1)[0].strip() or (exc.reason or "handshake failed")


def call(fn: Callable[[], T]) -> T:
    with engine_errors():
        return fn()
