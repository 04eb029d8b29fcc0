"""``spec.envFile`` of a SwarmService: KEY=VALUE files beside the spec, merged in order.

The format is the common ground of docker's ``--env-file`` and compose's ``env_file``: blank lines
and ``#`` comments are ignored, ``export`` before a name is allowed, and one pair of matching
quotes around a value is removed. Nothing is interpolated or unescaped, so a value is what it says.
Env files hold secrets too: errors give the line number, never the line.
"""

from __future__ import annotations

import re

from ..api import SwarmService
from .errors import SpecError, shorten
from .files import FileProblem, MiB, inside_root, read_bounded
from .manifest import Manifest

MAX_ENV_FILE_BYTES = 1 * MiB
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def parse_env_file(text: str) -> tuple[dict[str, str], list[int]]:
    """The variables of an env file, and the 1-based numbers of the lines that are not KEY=VALUE."""
    variables: dict[str, str] = {}
    malformed: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line.removeprefix("export ").lstrip()
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not _NAME.fullmatch(name):
            malformed.append(number)
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[name] = value
    return variables, malformed


def load_env_files(manifest: Manifest) -> tuple[dict[str, str], list[SpecError]]:
    """The variables of every ``spec.envFile`` of a SwarmService manifest, later files winning."""
    resource = manifest.resource
    if not isinstance(resource, SwarmService) or not resource.spec.env_file:
        return {}, []
    merged: dict[str, str] = {}
    errors: list[SpecError] = []
    for i, name in enumerate(resource.spec.env_file):
        field = ("spec", "envFile", i)
        if manifest.origin is None:
            errors.append(manifest.error(field, "an env file needs a spec file to be relative to"))
            continue
        path = manifest.origin.file.parent / name
        try:
            raw = read_bounded(inside_root(path, manifest.origin.root), MAX_ENV_FILE_BYTES)
        except FileProblem as exc:
            errors.append(manifest.error(field, f"{shorten(str(path), 256)}: {exc}"))
            continue
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            errors.append(manifest.error(field, "not valid UTF-8 text", file=path, line=line))
            continue
        variables, malformed = parse_env_file(text)
        errors.extend(manifest.error(field, "not a KEY=VALUE line", file=path, line=number) for number in malformed)
        merged.update(variables)
    return merged, errors
