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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api import Key, SwarmService
from ..api.service import version_range
from ..loading import Manifest
from ..swarm.connect import Answer, EngineClient
from ..swarm.errors import EngineError
from ..swarm.images import digest_of, normalize_image, pick_tag, repository_of
from ..swarm.observe import Obj
from ..swarm.registry import list_tags, resolve_digest

log = logging.getLogger(__name__)

RESOLVE_INTERVAL = 60.0  # seconds an answer of a registry is used before asking again

_warned: set[str] = set()  # images said to be unpinned, once per process


Platform = tuple[str, str]  # (architecture, os), as the registry lists the image's platforms


@dataclass(frozen=True)
class Pin:
    image: str  # the reference the service runs: name:tag@sha256:... when pinned
    digest: str | None = None
    problem: str | None = None  # the registry's error, while the last good digest is kept
    # Placement.Platforms, as the docker CLI sets them from the registry's answer when it pins; None:
    # whatever the service has (a pin kept as it runs), or none at all (not pinned).
    platforms: tuple[Platform, ...] | None = None


def pin_images(
    client: EngineClient,
    manifests: Sequence[Manifest],
    live: Mapping[Key, Obj],
    *,
    interval: float = RESOLVE_INTERVAL,
) -> dict[Key, Pin]:
    """The image of every service manifest; ``live`` holds the services as they run."""
    resolver = _Resolver(client, interval)
    return {m.key: resolver.pin(m.resource, live.get(m.key)) for m in manifests if isinstance(m.resource, SwarmService)}


class _Resolver:
    """One pass's questions to registries: each image and repository asked at most once per pass,
    and not at all while the engine client holds an answer younger than ``interval``."""

    def __init__(self, client: EngineClient, interval: float) -> None:
        self.client = client
        self.interval = interval
        # This pass's answers, whatever the interval (0 included), by cache and key.
        self.asked: dict[tuple[int, str], Answer] = {}

    def pin(self, svc: SwarmService, running: Obj | None) -> Pin:
        task = (running or {}).get("Spec", {}).get("TaskTemplate", {})
        image = (task.get("ContainerSpec") or {}).get("Image")
        image = image if isinstance(image, str) else None
        wanted = normalize_image(svc.spec.image)
        policy = svc.spec.image_policy
        if policy is not None:
            wanted = wanted.split("@", 1)[0]  # the last pin written back: the policy decides anew
        if policy is not None and policy.semver is not None:
            picked, problem = self._pick(wanted, policy.semver, image)
            if problem is not None:
                return picked if picked is not None else Pin(wanted, problem=problem)
            wanted = picked.image if picked is not None else wanted
        kept = image if image and image.split("@", 1)[0] == wanted and "@" in image else None
        # A pin kept as it runs keeps the platforms it was pinned with.
        placement = task.get("Placement") or {}
        kept_platforms = tuple((p.get("Architecture", ""), p.get("OS", "")) for p in placement.get("Platforms") or [])
        if "@" in wanted or svc.spec.resolve_image == "never":
            return Pin(wanted, digest=digest_of(wanted))
        if svc.spec.resolve_image == "changed" and kept is not None:
            return Pin(kept, digest=digest_of(kept), platforms=kept_platforms)
        answer = self._cached(self.client.image_digests, wanted, lambda: resolve_digest(self.client, wanted))
        if answer.value is not None:
            digest, platforms = answer.value
            return Pin(f"{wanted}@{digest}", digest=digest, platforms=platforms)
        if kept is not None:
            return Pin(kept, digest=digest_of(kept), problem=answer.error, platforms=kept_platforms)
        if wanted not in _warned:
            _warned.add(wanted)
            log.warning(
                "image %s could not be pinned to a registry digest (%s): each node uses its own %s, which "
                "may differ between nodes",
                wanted,
                answer.error,
                wanted,
            )
        return Pin(wanted)

    def _pick(self, image: str, semver: str, running: str | None) -> tuple[Pin | None, str | None]:
        """The repository's highest tag in the range (as a Pin of ``name:tag``), or what runs now and
        why the registry could not say (the running image is kept then, as for a digest)."""
        repository = repository_of(image)
        answer = self._cached(self.client.image_tags, repository, lambda: list_tags(self.client, repository))
        tag = pick_tag(answer.value, version_range(semver)) if answer.value is not None else None
        if tag is not None:
            return Pin(f"{repository}:{tag}"), None
        problem = answer.error or f"no tag of {repository} is in the range {semver}"
        if running is not None and repository_of(running) == repository:
            return Pin(running, digest=digest_of(running), problem=problem), problem
        return None, problem

    def _cached(self, cache: dict[str, Answer], key: str, ask: Callable[[], Any]) -> Answer:
        now = time.monotonic()
        memo = (id(cache), key)
        if memo in self.asked:
            return self.asked[memo]
        answer = cache.get(key) or Answer(float("-inf"))
        if now - answer.at >= self.interval:
            try:
                answer = Answer(now, ask())
            except EngineError as exc:
                answer = Answer(now, error=str(exc))
            cache[key] = answer
        self.asked[memo] = answer
        return answer


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
