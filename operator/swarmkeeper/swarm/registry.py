"""Asking a registry which digest a tag points at (through the engine), and which tags it has.

The engine's distribution endpoint reaches the registry with the credentials docker's client
config holds for it (``docker login``), as ``docker service create`` and ``docker stack deploy``
do to pin an image; a private registry works the same way. Tags are listed with the registry's own
API (``/v2/<name>/tags/list``), which the engine does not offer, with the same logins and the
registries' token flow. Errors carry the registry's words, never a credential.
"""

from __future__ import annotations

import re
from pathlib import Path

import requests
from docker import auth

from .connect import EngineClient
from .errors import EngineError, call


def resolve_digest(client: EngineClient, image: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The digest (``sha256:...``) that ``image`` names in its registry, and the platforms
    (architecture, os) it is built for; EngineError otherwise."""
    try:
        result = call(lambda: client.inspect_distribution(image))
    except EngineError as exc:
        # The engine passes on the registry's words, which need not name the image ("manifest
        # unknown"), and a status condition or log line must say which one.
        raise EngineError(f"resolve image {image}: {exc}", exc.status) from None
    digest = (result.get("Descriptor") or {}).get("digest")  # an OCI descriptor: lower-case keys
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise EngineError(f"resolve image {image}: the registry gave no digest")
    platforms = tuple(
        (str(p.get("architecture") or ""), str(p.get("os") or ""))
        for p in result.get("Platforms") or []
        if isinstance(p, dict)
    )
    return digest, platforms


_DOCKER_HUB = "registry-1.docker.io"
_MAX_PAGES = 50


def list_tags(client: EngineClient, repository: str) -> list[str]:
    """Every tag of ``repository`` (``host:5000/shop/web``), asked of its registry directly: the
    engine has no endpoint for it. Logins are the client's (``registry_login``); a registry on the
    loopback is also tried over plain HTTP, as dockerd treats 127.0.0.0/8 as insecure."""
    index, name = auth.resolve_repository_name(repository)
    host = _DOCKER_HUB if index == auth.INDEX_NAME else index
    if host == _DOCKER_HUB and "/" not in name:
        name = f"library/{name}"
    login = client.registry_login(index)
    tags: list[str] = []
    path: str | None = f"/v2/{name}/tags/list?n=1000"
    for _ in range(_MAX_PAGES):
        if path is None:
            break
        response = _get(host, path, login, name)
        body = response.json()
        tags += [t for t in body.get("tags") or [] if isinstance(t, str)]
        path = _next_page(response.headers.get("Link", ""))
    return tags


def _next_page(link: str) -> str | None:
    # <"/v2/x/tags/list?last=1.9&n=1000">; rel="next"
    if 'rel="next"' not in link:
        return None
    start, end = link.find("<"), link.find(">")
    return link[start + 1 : end] if 0 <= start < end else None


def _get(host: str, path: str, login: tuple[str, str] | None, name: str) -> requests.Response:
    loopback = host.split(":", 1)[0] in ("127.0.0.1", "localhost") or host.startswith("127.")
    ca = Path("/etc/docker/certs.d") / host / "ca.crt"
    verify: bool | str = str(ca) if ca.is_file() else True
    schemes = ("https", "http") if loopback else ("https",)
    last: Exception | None = None
    for scheme in schemes:
        try:
            return _authorized(f"{scheme}://{host}{path}", login, host, name, verify)
        except requests.exceptions.ConnectionError as exc:  # SSLError included: plain HTTP next
            last = exc
    raise EngineError(f"list the tags of {host}/{name}: the registry does not answer ({type(last).__name__})")


def _authorized(url: str, login: tuple[str, str] | None, host: str, name: str, verify: bool | str) -> requests.Response:
    response = requests.get(url, timeout=10, verify=verify)
    if response.status_code == 401:
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("bearer"):
            token = _token(challenge, login, host, name, verify)
            response = requests.get(url, timeout=10, verify=verify, headers={"Authorization": f"Bearer {token}"})
        elif login is not None:
            response = requests.get(url, timeout=10, verify=verify, auth=login)
    if response.status_code != 200:
        reason = "the login was refused" if response.status_code in (401, 403) else f"HTTP {response.status_code}"
        raise EngineError(f"list the tags of {host}/{name}: {reason}", status=response.status_code)
    return response


def _token(challenge: str, login: tuple[str, str] | None, host: str, name: str, verify: bool | str) -> str:
    """A bearer token by the registry's token flow (Docker Hub, GHCR, ...), for pulling ``name``."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = fields.pop("realm", "")
    fields.setdefault("scope", f"repository:{name}:pull")
    if not realm.startswith(("https://", "http://")):
        raise EngineError(f"list the tags of {host}/{name}: the registry asks for a token without a realm")
    response = requests.get(realm, params=fields, auth=login, timeout=10, verify=verify)
    if response.status_code != 200:
        raise EngineError(f"list the tags of {host}/{name}: the token service refused (HTTP {response.status_code})")
    body = response.json()
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str):
        raise EngineError(f"list the tags of {host}/{name}: the token service gave no token")
    return token
