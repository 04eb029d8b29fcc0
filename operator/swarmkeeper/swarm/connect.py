"""Open a connection to one engine, counting the calls made on it.

Every call is counted by method and path: the engine's promise that a converged pass makes no
mutating call is checked on these counters (tests, benchmarks, metrics), not assumed.

Where docker's own methods re-assemble a payload, the rest of this package calls the raw endpoints
through ``get_json``, ``post_json`` and ``delete_json``: the only code that reaches into docker's
private request helpers is in this module.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker import APIClient, auth
from docker.tls import TLSConfig

from ..api import EngineEndpoint
from ..api.units import duration_to_ns
from .errors import EngineError, engine_errors

MUTATING = frozenset({"POST", "PUT", "DELETE"})


@dataclass(frozen=True)
class Answer:
    """What a registry said, and when (``time.monotonic``): a value, or its error in words."""

    at: float
    value: Any = None
    error: str | None = None


class EngineClient(APIClient):  # type: ignore[misc]
    """docker's low-level client, with a count of calls per (method, path)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before the base class asks the engine for its API version (the first counted call).
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        # A registry's last answer per image reference (its digest and platforms) and per repository
        # (its tags), so a registry is asked at most once per interval whatever the number of passes.
        self.image_digests: dict[str, Answer] = {}
        self.image_tags: dict[str, Answer] = {}
        self.own_logins = False  # registry logins of the engine's own (a SwarmCluster's registryAuthFile)
        super().__init__(*args, **kwargs)

    def use_registry_logins(self, config: Path) -> None:
        """Registry logins from a docker client config file instead of the local one (docker-py
        reads them into ``_auth_configs`` when it starts). Errors name the file, never its content."""
        try:
            text = config.read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a JSON docker config"
            raise EngineError(f"registry logins {config}: {problem}") from None
        if not isinstance(data, dict):
            raise EngineError(f"registry logins {config}: not a JSON docker config")
        self.set_registry_logins(data)
        self.own_logins = True

    def registry_login(self, registry: str) -> tuple[str, str] | None:
        """(user, password) this client holds for ``registry`` (docker config or set logins), if any."""
        found = auth.resolve_authconfig(self._auth_configs, registry)
        if not found or not found.get("username") or not found.get("password"):
            return None
        return str(found["username"]), str(found["password"])

    def set_registry_logins(self, config: Mapping[str, Any] | None) -> None:
        """Registry logins from a parsed docker client config (``{"auths": {...}}``); None: the local
        docker config's again."""
        self._auth_configs = auth.load_config() if config is None else auth.load_config(config_dict=dict(config))

    def _count(self, method: str, url: str) -> None:
        path = url.split("://", 1)[-1]
        path = path[path.find("/") :] if "/" in path else path
        # /v1.41/services/abc/update → /services/{id}/update: counts group by endpoint.
        parts = path.split("?")[0].split("/")[2:]
        if (
            len(parts) >= 2
            and parts[1] != "create"
            and parts[0] in {"services", "networks", "secrets", "configs", "tasks", "nodes"}
        ):
            parts[1] = "{id}"
        with self._lock:
            self.calls[(method, "/" + "/".join(parts))] += 1

    def _get(self, url: str, **kwargs: Any) -> Any:
        self._count("GET", url)
        return super()._get(url, **kwargs)

    def _post(self, url: str, **kwargs: Any) -> Any:
        self._count("POST", url)
        return super()._post(url, **kwargs)

    def _put(self, url: str, **kwargs: Any) -> Any:
        self._count("PUT", url)
        return super()._put(url, **kwargs)

    def _delete(self, url: str, **kwargs: Any) -> Any:
        self._count("DELETE", url)
        return super()._delete(url, **kwargs)

    def get_json(self, path: str, *args: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET an API path; returns the parsed JSON answer.

        ``path`` is a format string whose ``{0}``, ``{1}``… are filled with ``args``, URL-quoted
        (``get_json("/configs/{0}", config_id)``); the API version prefix is added here. Any failure
        raises ``EngineError``, like every other call in this package.
        """
        with engine_errors():
            return self._json(self._get(self._url(path, *args), params=_params(params)))

    def post_json(
        self,
        path: str,
        *args: str,
        body: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """POST ``body`` as JSON (its top-level None values left out, as docker does); returns the
        parsed JSON answer, or None when the engine answers with an empty body (``…/update``)."""
        with engine_errors():
            response = self._post_json(
                self._url(path, *args), data=dict(body), params=_params(params), headers=dict(headers or {})
            )
            return self._json(response)

    def delete_json(self, path: str, *args: str, params: Mapping[str, Any] | None = None) -> Any:
        """DELETE an API path; returns the parsed JSON answer, None for an empty one.

        (Not ``delete``: that is the HTTP session's own method, which the request helpers use.)
        """
        with engine_errors():
            return self._json(self._delete(self._url(path, *args), params=_params(params)))

    def _json(self, response: Any) -> Any:
        self._raise_for_status(response)
        return response.json() if response.content else None

    def mutating_calls(self) -> int:
        with self._lock:
            return sum(n for (method, _), n in self.calls.items() if method in MUTATING)

    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())


def _params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if params is None else dict(params)


def connect(endpoint: EngineEndpoint | None = None, *, base_dir: Path | None = None) -> EngineClient:
    """A client for ``endpoint``, or for DOCKER_HOST / the local socket when it is None.

    TLS file paths are relative to ``base_dir`` (the folder of the SwarmCluster's spec file).
    """
    endpoint = endpoint or EngineEndpoint()
    timeout = max(1, duration_to_ns(endpoint.timeout) // 1_000_000_000)
    if endpoint.host is None:
        kwargs: dict[str, Any] = docker.utils.kwargs_from_env()
    else:
        kwargs = {"base_url": endpoint.host}
        if endpoint.tls is not None:

            def rel(p: str | None) -> str | None:
                return None if p is None else str((base_dir or Path.cwd()) / p)

            cert, key = rel(endpoint.tls.cert_file), rel(endpoint.tls.key_file)
            kwargs["tls"] = TLSConfig(
                client_cert=(cert, key) if cert and key else None,
                ca_cert=rel(endpoint.tls.ca_file),
                verify=rel(endpoint.tls.ca_file)
                if endpoint.tls.verify and endpoint.tls.ca_file
                else endpoint.tls.verify,
            )
    # Asking for the API version is the first call: an engine that is away fails here, and must
    # fail as an EngineError like any later call, so callers back off instead of crashing.
    with engine_errors():
        # One pooled connection per concurrent apply step (engine.apply runs up to 32 at once).
        client = EngineClient(version="auto", timeout=timeout, max_pool_size=32, **kwargs)
    if endpoint.registry_auth_file is not None:
        client.use_registry_logins((base_dir or Path.cwd()) / endpoint.registry_auth_file)
    return client
