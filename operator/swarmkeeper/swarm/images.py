"""Image references as the docker CLI sends them to the engine.

``docker service create`` and ``docker stack deploy`` send
``FamiliarString(TagNameOnly(ParseNormalizedNamed(image)))`` (docker's client,
``imageWithTagString``): ``docker.io/library/redis`` becomes ``redis:latest``,
``index.docker.io/x/y`` ``x/y:latest``; a digest gets no tag. A reference that does not parse is
sent as written, and the engine refuses it. The engine stores what it is sent, so a spec must
build the same string, or adopting a stack would roll every such service and a plan would show a
change where there is none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# docker/distribution reference/regexp.go, as vendored by docker 20.10 (no IPv6 hosts).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?P<domain>{_DOMAIN})/(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?"
)
# go-digest accepts only these algorithms, with their encoded length, in lower-case hex.
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_MAX = 255
_HUB, _LEGACY_HUB, _OFFICIAL = "docker.io", "index.docker.io", "library"


def normalize_image(reference: str) -> str:
    """``reference`` as the docker CLI sends it: Docker Hub's ``docker.io/`` and ``library/``
    left out, ``:latest`` added when there is neither a tag nor a digest; unchanged when the CLI
    cannot parse it (``Redis``, ``redis@sha256:ab``)."""
    if re.fullmatch(r"[a-f0-9]{64}", reference):
        return reference  # an image ID, which the CLI refuses as a name
    first, slash, rest = reference.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost"):
        domain, remainder = first, rest
    else:
        domain, remainder = _HUB, reference
    if domain == _LEGACY_HUB:
        domain = _HUB
    if domain == _HUB and "/" not in remainder:
        remainder = f"{_OFFICIAL}/{remainder}"
    name_part = remainder.split(":", 1)[0]
    if name_part.lower() != name_part:
        return reference  # the CLI: "repository name must be lowercase"
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None or len(match["domain"]) + 1 + len(match["path"]) > _NAME_MAX:
        return reference
    path, tag, digest = match["path"], match["tag"], match["digest"]
    if digest is not None:
        algorithm, _, encoded = digest.partition(":")
        if _DIGEST_HEX.get(algorithm) != len(encoded) or not re.fullmatch(r"[a-f0-9]+", encoded):
            return reference
    if domain == _HUB:
        head, _, tail = path.partition("/")
        name = tail if head == _OFFICIAL and "/" not in tail else path
    else:
        name = f"{domain}/{path}"
    if tag is None and digest is None:
        tag = "latest"
    return name + (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest is not None else "")


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
