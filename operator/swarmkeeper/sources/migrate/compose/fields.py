"""What every part of a compose translation needs: typed reading of values, errors with their
place in the file, and the file-level lookups (names, namespace, top-level objects, paths).

A value of the wrong type is recorded as an error (file, line, field) and raises ``Invalid``,
which ``guard`` stops, so one run reports every error in the file.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from decimal import Decimal
from pathlib import Path
from typing import Any

from ....api import API_VERSION
from ....api.units import duration_to_ns
from ....loading import SpecError
from ....loading.fieldpath import FieldPath, Position, format_path
from ....swarm import labels as L
from ..export import spec_name
from .interpolation import InterpolationError, Interpolator
from .reading import Data

_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


class Invalid(Exception):
    """A value that cannot be translated; already recorded as an error."""


class Fields:
    """Typed readers over the interpolated file, and what the whole translation shares."""

    def __init__(
        self,
        file: Path,
        positions: dict[FieldPath, tuple[Path, Position]],
        namespace: str | None,
        specs_dir: Path,
        compose_dir: Path,
        variables: Mapping[str, str],
    ) -> None:
        self.file = file  # the first compose file; the others override it
        self.positions = positions  # where each field was written: file, line and column
        self.namespace = namespace
        self.specs_dir = specs_dir
        self.compose_dir = compose_dir
        self.variables = variables
        self.interpolate = Interpolator(variables)
        self.errors: list[SpecError] = []
        self.notes: list[str] = []
        self.top: dict[str, dict[str, Any]] = {}
        self.used_networks: dict[str, str] = {}  # compose key → spec name, in order of first use
        self.service_names: dict[str, str] = {}
        self.referenced: list[Path] = []  # the files the specs name (values, env files), absolute

    def error(self, path: FieldPath, message: str) -> Invalid:
        file, line, column = self.file, None, None
        for end in range(len(path), -1, -1):
            if path[:end] in self.positions:
                file, (line, column) = self.positions[path[:end]]
                break
        self.errors.append(SpecError(message, file=file, line=line, column=column, field=format_path(path)))
        return Invalid(message)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Go on after an invalid value (already recorded), so one run reports every error."""
        with suppress(Invalid):
            yield

    def expand(self, value: Data, path: FieldPath) -> Data:
        """Interpolate every string below ``value`` (keys stay as written, as compose does)."""
        if isinstance(value, str):
            try:
                return self.interpolate(value)
            except InterpolationError as exc:
                self.error(path, str(exc))
                return value
        if isinstance(value, dict):
            return {k: self.expand(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def mapping(self, value: Data, path: FieldPath) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, "must be a mapping")
        return value

    def text(self, value: Data, path: FieldPath) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise self.error(path, "must be a string")

    def integer(self, value: Data, path: FieldPath, *, minimum: int = 0) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, "must be a whole number")
        if value < minimum:
            raise self.error(path, f"must be at least {minimum}")
        return value

    def number(self, value: Data, path: FieldPath) -> float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(path, "must be a number")
        return float(value)

    def boolean(self, value: Data, path: FieldPath) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "y", "on", "false", "no", "n", "off"):
            return value.lower() in ("true", "yes", "y", "on")
        raise self.error(path, "must be true or false")

    def duration(self, value: Data, path: FieldPath) -> str:
        text = self.text(value, path)
        try:
            duration_to_ns(text)
        except ValueError as exc:
            raise self.error(path, str(exc)) from None
        return text

    def size(self, value: Data, path: FieldPath) -> str | int:
        """A compose size (binary units: ``512m``, ``1g``, ``2GiB``) as a spec size (``512Mi``)."""
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        match = _SIZE.match(self.text(value, path).strip())
        if match is None:
            raise self.error(path, "must be a size like 512m, 1g or 1024")
        number, unit = match.group(1), (match.group(2) or "").upper()
        if not unit:
            return int(Decimal(number))
        return f"{number}{unit}i"

    def strings(self, value: Data, path: FieldPath) -> list[str]:
        """A string or a list of strings."""
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.error(path, "must be a string or a list of strings")
        return [self.text(v, (*path, i)) for i, v in enumerate(value)]

    def command(self, value: Data, path: FieldPath) -> list[str]:
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise self.error(path, f"cannot be split into words: {exc}") from None
        return self.strings(value, path)

    def pairs(self, value: Data, path: FieldPath, *, allow_none: bool = False) -> dict[str, str | None]:
        """A mapping, or a list of ``KEY=VALUE`` strings (``KEY`` alone: no value)."""
        out: dict[str, str | None] = {}
        if isinstance(value, dict):
            for k, v in value.items():
                out[k] = None if v is None and allow_none else ("" if v is None else self.text(v, (*path, k)))
            return out
        if isinstance(value, list):
            for i, item in enumerate(value):
                key, eq, rest = self.text(item, (*path, i)).partition("=")
                out[key] = rest if eq else (None if allow_none else "")
            return out
        if value is None:
            return out
        raise self.error(path, "must be a mapping or a list of KEY=VALUE strings")

    # -- the file ----------------------------------------------------------------------------------
    def external_name(self, section: str, key: str) -> str | None:
        """The swarm name of a top-level object marked ``external``; None when it is not external."""
        cfg = self.top[section].get(key) or {}
        external = cfg.get("external")
        if external is None:
            return None
        if isinstance(external, dict):  # the old `external: {name: x}`
            name = external.get("name") or cfg.get("name") or key
        elif self.boolean(external, (section, key, "external")):
            name = cfg.get("name") or key
        else:
            return None
        return self.text(name, (section, key, "name"))

    def reference(self, name: str) -> str:
        """A path the compose file names, relative to where the specs are written."""
        full = os.path.normpath(name if os.path.isabs(name) else self.compose_dir / name)
        self.referenced.append(Path(full))
        return Path(os.path.relpath(full, self.specs_dir)).as_posix()

    def swarm_name(self, key: str) -> str:
        return L.swarm_name(key, self.namespace)

    def own_name(self, section: str, key: str) -> str | None:
        """The swarm name docker stack deploy gives ``section.key`` where a spec's own naming
        (``<namespace>_<spec name>``) would differ: a ``name:`` of its own, or a key that is not a
        DNS label. Written as the spec's swarmName, so importing and adopting keep the same object."""
        cfg = self.top.get(section, {}).get(key) or {}
        if section != "services" and cfg.get("name") and not cfg.get("external"):
            return self.text(cfg["name"], (section, key, "name"))
        return self.swarm_name(key) if spec_name(key) != key else None

    def real_name(self, section: str, key: str) -> str:
        """The object's name in the swarm, as docker stack deploy names it (and sorts by it)."""
        external = self.external_name(section, key) if section in self.top else None  # services: never
        return external or self.own_name(section, key) or self.swarm_name(key)

    def with_own_name(self, section: str, key: str, spec: dict[str, Any]) -> dict[str, Any]:
        own = self.own_name(section, key)
        return {"swarmName": own, **spec} if own else spec

    def document(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if self.namespace:
            meta["namespace"] = self.namespace
        return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}

    def named(self, section: str, key: str, comments: list[str]) -> str:
        name = spec_name(key)
        if not name:
            raise self.error((section, key), "cannot be turned into a name of letters, digits and dashes")
        if name != key:
            comments.append(
                f"{section}.{key}: the spec is named {name} (names are DNS labels: a-z, 0-9 and -); "
                f"swarmName keeps the swarm name {self.real_name(section, key)}"
            )
        return name
