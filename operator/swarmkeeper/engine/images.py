"""Which image each service runs: its tag pinned to a registry digest, as ``docker stack deploy``
pins it (``--resolve-image always``, the default), so every node runs the same image and a tag
pushed again rolls the service out.

A registry is asked through the engine at most once per image per ``RESOLVE_INTERVAL`` (the
answer, or the failure, is kept on the engine's client). When the registry cannot say (it is
away, the tag is missing, the login is refused), a service already pinned for that tag keeps its
digest, so nothing rolls, and the problem is reported on the service; one never pinned runs the
tag as written, with a warning, as the docker CLI does for an image no registry knows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..api import Key, SwarmService
from ..api.service import version_range
from ..loading import Manifest
from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError
from ..swarm.images import normalize_image, pick_tag, repository_of
from ..swarm.observe import Obj
from ..swarm.registry import list_tags, resolve_digest

log = logging.getLogger(__name__)

RESOLVE_INTERVAL = 60.0  # seconds an answer of a registry is used before asking again

_warned: set[str] = set()  # images said to be unpinned, once per process


@dataclass(frozen=True)
class Pin:
    image: str  # the reference the service runs: name:tag@sha256:... when pinned
    digest: str | None = None
    problem: str | None = None  # the registry's error, while the last good digest is kept


def pin_images(
    client: EngineClient,
    manifests: Sequence[Manifest],
    live: Mapping[Key, Obj],
    *,
    interval: float = RESOLVE_INTERVAL,
) -> dict[Key, Pin]:
    """The image of every service manifest; ``live`` holds the services as they run."""
    out: dict[Key, Pin] = {}
    for m in manifests:
        if isinstance(m.resource, SwarmService):
            running = live.get(m.key)
            image = ((running or {}).get("Spec", {}).get("TaskTemplate", {}).get("ContainerSpec", {})).get("Image")
            out[m.key] = _pin(client, m.resource, image if isinstance(image, str) else None, interval)
    return out


def _pin(client: EngineClient, svc: SwarmService, running: str | None, interval: float) -> Pin:
    wanted = normalize_image(svc.spec.image)
    policy = svc.spec.image_policy
    if policy is not None:
        wanted = wanted.split("@", 1)[0]  # the last pin written back: the policy decides anew
    if policy is not None and policy.semver is not None:
        picked, problem = _pick(client, wanted, policy.semver, running, interval)
        if problem is not None:
            return picked if picked is not None else Pin(wanted, problem=problem)
        wanted = picked.image if picked is not None else wanted
    pinned_before = running if running and running.split("@", 1)[0] == wanted and "@" in running else None
    if "@" in wanted or svc.spec.resolve_image == "never":
        return Pin(wanted, digest=_digest_of(wanted))
    if svc.spec.resolve_image == "changed" and pinned_before is not None:
        return Pin(pinned_before, digest=_digest_of(pinned_before))
    digest, error = _ask(client, wanted, interval)
    if digest is not None:
        return Pin(f"{wanted}@{digest}", digest=digest)
    if pinned_before is not None:
        return Pin(pinned_before, digest=_digest_of(pinned_before), problem=error)
    if wanted not in _warned:
        _warned.add(wanted)
        log.warning(
            "image %s could not be pinned to a registry digest (%s): each node uses its own %s, which may "
            "differ between nodes",
            wanted,
            error,
            wanted,
        )
    return Pin(wanted)


def _pick(
    client: EngineClient, image: str, semver: str, running: str | None, interval: float
) -> tuple[Pin | None, str | None]:
    """The repository's highest tag in the range (as a Pin of ``name:tag``), or what runs now and
    why the registry could not say (the running image is kept then, as for a digest)."""
    repository = repository_of(image)
    tags, error = _tags(client, repository, interval)
    tag = pick_tag(tags, version_range(semver)) if tags is not None else None
    if tag is not None:
        return Pin(f"{repository}:{tag}"), None
    problem = error or f"no tag of {repository} is in the range {semver}"
    if running is not None and repository_of(running) == repository:
        return Pin(running, digest=_digest_of(running), problem=problem), problem
    return None, problem


def _tags(client: EngineClient, repository: str, interval: float) -> tuple[list[str] | None, str | None]:
    now = time.monotonic()
    cached = client.image_tags.get(repository)
    if cached is not None and now - cached[0] < interval:
        return cached[1], cached[2]
    try:
        tags, error = list_tags(client, repository), None
    except EngineError as exc:
        tags, error = None, str(exc)
    client.image_tags[repository] = (now, tags, error)
    return tags, error


def _ask(client: EngineClient, image: str, interval: float) -> tuple[str | None, str | None]:
    now = time.monotonic()
    cached = client.image_digests.get(image)
    if cached is not None and now - cached[0] < interval:
        return cached[1], cached[2]
    try:
        digest, error = resolve_digest(client, image), None
    except EngineError as exc:
        digest, error = None, str(exc)
    client.image_digests[image] = (now, digest, error)
    return digest, error


def follows_tags(manifests: Sequence[Manifest]) -> bool:
    """Whether some service is pinned to whatever digest its tag has now (resolveImage: always),
    so a long-running controller must ask the registry again from time to time."""
    return any(
        isinstance(m.resource, SwarmService)
        and (
            m.resource.spec.image_policy is not None
            or (m.resource.spec.resolve_image == "always" and "@" not in m.resource.spec.image)
        )
        for m in manifests
    )


def _digest_of(image: str) -> str | None:
    return image.split("@", 1)[1] if "@" in image else None
