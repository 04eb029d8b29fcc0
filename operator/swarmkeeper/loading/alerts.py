"""The target URLs of each SwarmAlert, read from the files its targets name.

A URL carries the target's token, so it is handled like a secret's value: read at load time (a
missing file is reported against the spec's line before anything runs), kept as ``SecretStr``,
and never quoted in an error.
"""

from __future__ import annotations

from pydantic import SecretStr

from ..api import SwarmAlert
from .errors import SpecError, shorten
from .files import FileProblem, KiB, inside_root, read_bounded
from .manifest import Manifest

MAX_URL_BYTES = 4 * KiB


def parse_url(raw: bytes) -> tuple[SecretStr | None, str | None]:
    """The URL in a target's file (surrounding whitespace dropped), or why it is not one."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    if not text:
        return None, "is empty"
    if any(c.isspace() for c in text):
        return None, "must hold one URL on one line"
    if "://" not in text:
        return None, "does not hold a URL (schema://...)"
    return SecretStr(text), None


def resolve_alert_urls(manifest: Manifest) -> tuple[tuple[SecretStr | None, ...], list[SpecError]]:
    """Each target's URL, by index; errors name the target's field and file, never the content."""
    resource = manifest.resource
    if not isinstance(resource, SwarmAlert):
        raise TypeError(f"{resource.kind} has no targets")
    urls: list[SecretStr | None] = []
    errors: list[SpecError] = []
    for i, target in enumerate(resource.spec.targets):
        field = ("spec", "targets", i, "urlFile" if target.url_file is not None else "secretRef")
        if target.url_file is None:
            urls.append(None)
            errors.append(manifest.error(field, "secretRef is only valid for objects applied through Kubernetes"))
            continue
        origin = manifest.origin
        if origin is None:
            urls.append(None)
            errors.append(manifest.error(field, "a urlFile needs a spec file to be relative to"))
            continue
        path = origin.file.parent / target.url_file
        try:
            raw = read_bounded(inside_root(path, origin.root), MAX_URL_BYTES)
        except FileProblem as exc:
            urls.append(None)
            errors.append(manifest.error(field, f"{shorten(str(path), 256)}: {exc}"))
            continue
        url, problem = parse_url(raw)
        urls.append(url)
        if problem is not None:
            errors.append(manifest.error(field, f"{shorten(str(path), 256)}: {problem}"))
    return tuple(urls), errors
