"""Image references as the docker CLI sends them to the engine.

``docker service create redis`` and ``docker stack deploy`` send a reference that names no tag
and no digest as ``redis:latest``; the engine stores what it is sent. A spec that says
``image: redis`` must build the same service, or adopting a stack would roll every such service
and a plan would show a change where there is none.
"""

from __future__ import annotations

from collections.abc import Iterable


def normalize_image(reference: str) -> str:
    """``reference`` with ``:latest`` added when it has neither a tag nor a digest."""
    if "@" in reference:
        return reference
    last = reference.rsplit("/", 1)[-1]  # a registry's :port is before the last slash
    return reference if ":" in last else f"{reference}:latest"


def digest_of(reference: str) -> str | None:
    """``name:tag@sha256:...`` → ``sha256:...``; None for a reference not pinned to a digest."""
    return reference.partition("@")[2] or None


def repository_of(reference: str) -> str:
    """``host:5000/shop/web:1.4@sha256:...`` → ``host:5000/shop/web``."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def pick_tag(tags: Iterable[str], version_range: str) -> str | None:
    """The highest tag that is a version inside ``version_range`` (a PEP 440 specifier set);
    pre-releases only when the range names one, as the specifier set decides."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    versions: dict[Version, str] = {}
    for tag in tags:
        try:
            version = Version(tag)
        except InvalidVersion:
            continue  # latest, main, sha-1234: not versions
        if version not in versions or len(tag) < len(versions[version]):
            versions[version] = tag  # 1.4 and v1.4 name one version: take the plainer tag
    inside = list(SpecifierSet(version_range).filter(versions))
    return versions[max(inside)] if inside else None
