"""Open a connection to one engine, counting the calls made on it.

Every call is counted by method and path: the engine's promise that a converged pass makes no
mutating call is checked on these counters (tests, benchmarks, metrics), not assumed.

Where docker's own methods re-assemble a payload, the rest of this package calls the raw endpoints
through ``get_json``, ``post_json`` and ``delete_json``: the only code that reaches into docker's
private request helpers is in this module.

Engines are reached at unix://, tcp:// (with TLS: ``EngineEndpoint.tls``) and ssh:// (ssh.py). An
engine that cannot be reached fails here, as an EngineError naming its URL and saying why in one
line, so every caller reports the same thing.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker import APIClient, auth
from docker.constants import DEFAULT_MAX_POOL_SIZE, MINIMUM_DOCKER_API_VERSION
from docker.tls import TLSConfig

from ..api import EngineEndpoint
from ..api.cluster import EngineSSH, EngineTLS
from ..api.units import duration_to_ns
from .errors import EngineError, engine_errors
from .ssh import SSHAdapter, SSHTarget

MUTATING = frozenset({"POST", "PUT", "DELETE"})
LOCAL_SOCKET = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Answer:
    """What a registry said, and when (``time.monotonic``): a value, or its error in words."""

    at: float
    value: Any = None
    error: str | None = None


class EngineClient(APIClient):  # type: ignore[misc]
    """docker's low-level client, with a count of calls per (method, path)."""

    def __init__(self, *args: Any, ssh: SSHTarget | None = None, **kwargs: Any) -> None:
        # Set before the base class asks the engine for its API version (the first counted call).
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        # A registry's last answer per image reference (its digest and platforms) and per repository
        # (its tags), so a registry is asked at most once per interval whatever the number of passes.
        self.image_digests: dict[str, Answer] = {}
        self.image_tags: dict[str, Answer] = {}
        self.own_logins = False  # registry logins of the engine's own (a SwarmCluster's registryAuthFile)
        if ssh is None:
            super().__init__(*args, **kwargs)
            return
        # docker's own ssh transport needs paramiko and takes no ssh options. So the client starts as
        # a unix one (which connects to nothing until asked), its adapter is replaced by ours, and only
        # then is the engine asked for its API version.
        version = kwargs.pop("version", None)
        kwargs["base_url"] = LOCAL_SOCKET
        super().__init__(*args, version=MINIMUM_DOCKER_API_VERSION, **kwargs)
        self._custom_adapter = SSHAdapter(ssh, self.timeout, kwargs.get("max_pool_size", DEFAULT_MAX_POOL_SIZE))
        self.mount("http+docker://", self._custom_adapter)
        self._version = self._retrieve_server_version() if version in (None, "auto") else version

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the session's own verify: the
        # engine's CA (tls.caFile), or verify: false, must win over a bundle meant for other servers.
        if verify is None and self.verify is not True:
            settings["verify"] = self.verify
        return settings

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
    """A client for ``endpoint``, or for the default engine (:func:`connect_default`) when it is None.

    TLS, ssh and registry files are relative to ``base_dir`` (the folder of the SwarmCluster's spec
    file).
    """
    if endpoint is None or endpoint.host is None:
        return connect_default(None, endpoint, base_dir=base_dir)
    base = base_dir or Path.cwd()
    kwargs: dict[str, Any] = {"base_url": endpoint.host}
    ssh: SSHTarget | None = None
    if endpoint.tls is not None:
        kwargs["tls"] = _tls_config(endpoint.tls, base, endpoint.host)
    if endpoint.host.startswith("ssh://"):
        ssh = _ssh_target(endpoint.host, endpoint.ssh, base, _timeout(endpoint))
    return _open(endpoint, kwargs, ssh, base)


def connect_default(
    host: str | None = None, endpoint: EngineEndpoint | None = None, *, base_dir: Path | None = None
) -> EngineClient:
    """The default engine: ``host`` (--host), else DOCKER_HOST, else the local socket; with TLS from
    DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the docker CLI takes them. ``endpoint``: its timeout
    and registry logins (relative to ``base_dir``)."""
    endpoint = endpoint or EngineEndpoint()
    environment = dict(os.environ)
    if host:
        environment["DOCKER_HOST"] = host
    url = environment.get("DOCKER_HOST") or LOCAL_SOCKET
    with engine_errors(url):  # DOCKER_CERT_PATH without its files
        kwargs: dict[str, Any] = docker.utils.kwargs_from_env(environment=environment)
    base = base_dir or Path.cwd()
    ssh = _ssh_target(url, None, base, _timeout(endpoint)) if url.startswith("ssh://") else None
    return _open(endpoint, kwargs, ssh, base)


def _timeout(endpoint: EngineEndpoint) -> int:
    return max(1, duration_to_ns(endpoint.timeout) // 1_000_000_000)


def _open(endpoint: EngineEndpoint, kwargs: dict[str, Any], ssh: SSHTarget | None, base: Path) -> EngineClient:
    url = str(kwargs.get("base_url") or LOCAL_SOCKET)
    # Asking for the API version is the first call: an engine that is away (or refuses this client)
    # fails here, and must fail as an EngineError like any later call, so callers back off instead
    # of crashing.
    with engine_errors(url):
        # One pooled connection per concurrent apply step (engine.apply runs up to 32 at once).
        client = EngineClient(version="auto", timeout=_timeout(endpoint), max_pool_size=32, ssh=ssh, **kwargs)
    if endpoint.registry_auth_file is not None:
        client.use_registry_logins(base / endpoint.registry_auth_file)
    return client


def _tls_config(tls: EngineTLS, base: Path, url: str) -> TLSConfig:
    """docker's TLS settings; a file that is not there is named now, not as a handshake failure."""
    paths: dict[str, str | None] = {}
    for name, value in (("caFile", tls.ca_file), ("certFile", tls.cert_file), ("keyFile", tls.key_file)):
        paths[name] = None if value is None else str(base / value)
        if paths[name] is not None and not Path(str(paths[name])).is_file():
            raise EngineError(f"cannot reach the Docker engine at {url}: tls.{name} {paths[name]}: no such file")
    cert, key = paths["certFile"], paths["keyFile"]
    if (cert is None) != (key is None):
        raise EngineError(f"cannot reach the Docker engine at {url}: tls.certFile and tls.keyFile go together")
    ca = paths["caFile"]
    return TLSConfig(
        client_cert=(cert, key) if cert and key else None,
        ca_cert=ca,
        verify=ca if tls.verify and ca else tls.verify,
    )


def _ssh_target(url: str, ssh: EngineSSH | None, base: Path, timeout: int) -> SSHTarget:
    files: dict[str, str | None] = {"identityFile": None, "knownHostsFile": None}
    if ssh is not None:
        for name, value in (("identityFile", ssh.identity_file), ("knownHostsFile", ssh.known_hosts_file)):
            files[name] = None if value is None else str(base / value)
            if files[name] is not None and not Path(str(files[name])).is_file():
                raise EngineError(f"cannot reach the Docker engine at {url}: ssh.{name} {files[name]}: no such file")
    target = SSHTarget(url, files["identityFile"], files["knownHostsFile"], connect_timeout=timeout)
    try:
        target.command()
    except ValueError as exc:
        raise EngineError(f"cannot reach the Docker engine at {url}: {exc}") from None
    return target
