"""The status of a Git source as one YAML document: its revisions, conditions, errors and the
live status of every object, written atomically to a file outside the repository.

The document is stable while nothing changes (no "last seen" timestamps; a condition's
``lastTransitionTime`` moves only when its status does), so a quiet controller rewrites nothing
and a status branch gets a commit only when something happened. Secret values never get here:
object statuses carry names, versions and hashes only, and spec errors never quote values.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..api import Condition, Key, ObjectStatus
from ..engine.conditions import merge
from ..engine.status import merge_status
from ..loading import Manifest, SpecError


@dataclass
class Revisions:
    fetched: str | None = None  # where the ref points now
    attempted: str | None = None  # the newest revision a pass tried (valid or not)
    applied: str | None = None  # the revision the swarm was last made to match
    released: str | None = None  # the newest applied revision whose services converged
    failed: dict[str, str] = field(default_factory=dict)  # revision → why its release failed


def render(
    *,
    source: str,
    repository: str,
    ref: str,
    path: str,
    revisions: Revisions,
    conditions: Sequence[Condition],
    errors: Sequence[SpecError],
    manifests: Sequence[Manifest],
    statuses: Mapping[Key, ObjectStatus],
    previous: Mapping[str, Any] | None,
    suspended: bool = False,
) -> dict[str, Any]:
    """The status document; ``previous`` (the last one written) keeps transition times steady."""
    old = previous or {}
    doc: dict[str, Any] = {
        "source": source,
        "repository": repository,
        "ref": ref,
        "path": path or ".",
        "suspended": suspended,
    }
    for key, value in (
        ("lastFetchedRevision", revisions.fetched),
        ("lastAttemptedRevision", revisions.attempted),
        ("lastAppliedRevision", revisions.applied),
        ("lastReleasedRevision", revisions.released),
    ):
        if value:
            doc[key] = value
    if revisions.failed:
        doc["failedRevisions"] = [{"revision": r, "reason": why} for r, why in revisions.failed.items()]
    doc["conditions"] = _conditions(conditions, old.get("conditions"))
    if errors:
        doc["errors"] = [_error(e) for e in errors]
    doc["objects"] = _objects(manifests, statuses, old.get("objects"))
    return doc


def _conditions(conditions: Sequence[Condition], old: Any) -> list[dict[str, Any]]:
    return merge(old if isinstance(old, list) else None, conditions, carry_over=False)


def _error(e: SpecError) -> dict[str, Any]:
    where = str(e.file) if e.file is not None else None
    commit, _, file = where.partition(":") if where and ":" in where else (None, "", where)
    out: dict[str, Any] = {"message": str(e)}
    for key, value in (
        ("commit", commit),
        ("file", file),
        ("line", e.line),
        ("column", e.column),
        ("object", "/".join(p for p in (e.kind, e.name) if p) or None),
        ("field", e.field),
    ):
        if value:
            out[key] = value
    return out


def _objects(manifests: Sequence[Manifest], statuses: Mapping[Key, ObjectStatus], old: Any) -> list[dict[str, Any]]:
    before: dict[tuple[Any, Any, Any], Any] = {}
    for o in old or []:
        if isinstance(o, dict):
            before[(o.get("kind"), o.get("namespace"), o.get("name"))] = o.get("status")
    out = []
    for m in sorted(manifests, key=lambda m: (m.kind, m.namespace or "", m.name)):
        entry: dict[str, Any] = {"kind": m.kind, "name": m.name}
        if m.namespace:
            entry["namespace"] = m.namespace
        if m.origin is not None:
            entry["file"] = m.origin.file.as_posix()
        status = statuses.get(m.key)
        old_status = before.get((m.kind, m.namespace, m.name))
        if status is not None:
            entry["status"] = merge_status(old_status if isinstance(old_status, dict) else None, status)
        elif isinstance(old_status, dict):
            entry["status"] = old_status
        out.append(entry)
    return out


def dump(doc: Mapping[str, Any]) -> bytes:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096  # long messages and paths stay on one line
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buf = io.StringIO()
    buf.write("# Written by swarmkeeper sync; changes are overwritten.\n")
    yaml.dump(dict(doc), buf)
    return buf.getvalue().encode("utf-8")


def read(path: Path) -> dict[str, Any] | None:
    """The last status written to ``path``, or None (missing or unreadable: start afresh)."""
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError):
        return None
    return data if isinstance(data, dict) else None
