"""The Markdown spec reference (docs/spec-reference.md), written from the models' JSON Schema.

Generated rather than written so that it can never disagree with what ``swarmkeeper`` accepts:
every field of every kind, by its YAML path, with type, default and the model's description.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from swarmkeeper.api import API_VERSION, KINDS

from .crd import SHORT_NAMES, crd_path, plural
from .jsonschema import COMBINED, json_schema, schema_path

REFERENCE = Path("docs/spec-reference.md")
MODELINE = f"# yaml-language-server: $schema=../../{COMBINED.as_posix()}"


class Row(NamedTuple):
    path: str
    type: str
    default: str
    description: str


class _Field(NamedTuple):
    schema: Mapping[str, Any]  # $ref and Optional resolved
    alternatives: list[Mapping[str, Any]]  # the non-null members of a union, else empty
    description: str
    default: str


def rows(kind: str) -> list[Row]:
    """One row per field of a kind, parents before children."""
    schema = json_schema(kind)
    return list(_walk(schema, schema.get("$defs", {}), ""))


def _walk(node: Mapping[str, Any], defs: Mapping[str, Any], prefix: str) -> Iterator[Row]:
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        field = _field(sub, defs, name in required)
        yield Row(path, _type(field, defs), field.default, field.description)
        target = field.schema
        if target.get("type") == "array":
            target = _resolve(target.get("items", {}), defs)
            path += "[]"
        if target.get("properties"):
            yield from _walk(target, defs, f"{path}.")


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Inline ``$ref``; the referring node's own keys (its description) win over the model's."""
    while "$ref" in node:
        target = defs[str(node["$ref"]).removeprefix("#/$defs/")]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _field(node: Mapping[str, Any], defs: Mapping[str, Any], required: bool) -> _Field:
    node = _resolve(node, defs)
    alternatives: list[Mapping[str, Any]] = []
    if "anyOf" in node:
        members = [_resolve(a, defs) for a in node["anyOf"] if a.get("type") != "null"]
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if len(members) == 1 and "anyOf" not in members[0]:
            node = {**members[0], **outer}  # Optional[X]: document X
        else:
            inner = members[0].get("anyOf", []) if len(members) == 1 else members
            alternatives = [_resolve(a, defs) for a in inner]
            node = outer
    if required:
        default = "required"
    elif node.get("default") is not None:
        default = f"`{json.dumps(node['default'], ensure_ascii=False)}`"
    elif "default" not in node and node.get("type") in ("array", "object"):
        default = "`[]`" if node.get("type") == "array" else "`{}`"  # a default_factory: empty
    else:
        default = ""
    return _Field(node, alternatives, str(node.get("description", "")), default)


def _type(field: _Field, defs: Mapping[str, Any]) -> str:
    if field.alternatives:
        return " or ".join(_scalar(a) for a in field.alternatives)
    node = field.schema
    kind = node.get("type")
    if kind == "array":
        items = _resolve(node.get("items", {}), defs)
        return "list of objects" if items.get("properties") else f"list of {_scalar(items)}"
    if kind == "object" and "properties" not in node and isinstance(node.get("additionalProperties"), dict):
        return f"map of string to {_scalar(node['additionalProperties'])}"
    return _scalar(node)


def _scalar(node: Mapping[str, Any]) -> str:
    if "const" in node:
        return _code(json.dumps(node["const"]).strip('"'))
    if "enum" in node:
        return "one of " + ", ".join(_code(str(v)) for v in node["enum"])
    kind = str(node.get("type", "any"))
    base = {"date-time": "date-time", "password": "secret string"}.get(node.get("format", ""), kind)
    parts: list[str] = []
    low, high = node.get("minimum", node.get("minLength")), node.get("maximum", node.get("maxLength"))
    unit = " chars" if "minLength" in node or "maxLength" in node else ""
    if low is not None and high is not None:
        parts.append(f"{low} to {high}{unit}")
    elif low is not None:
        parts.append(f"≥ {low}{unit}")
    elif high is not None:
        parts.append(f"≤ {high}{unit}")
    if "pattern" in node:
        parts.append(f"matching {_code(node['pattern'])}")
    return f"{base} ({', '.join(parts)})" if parts else base


def _code(text: str) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    """Markdown-escape a table cell outside code spans (``<name>`` would vanish as an HTML tag)."""
    out: list[str] = []
    for i, part in enumerate(text.replace("\n", " ").split("`")):
        if i % 2:
            out.append(f"`{part}`")
        else:
            out.append("".join(f"\\{c}" if c in "\\<>*_[]" else c for c in part))
    return "".join(out).replace("|", "\\|")


def _kind_section(kind: str) -> list[str]:
    lines = [
        f"## {kind}",
        "",
        f"`apiVersion: {API_VERSION}`, `kind: {kind}`. Kubernetes: `{plural(kind)}` "
        f"(`kubectl get {SHORT_NAMES[kind]}`), defined in `{crd_path(kind).as_posix()}`. "
        f"JSON Schema: `{schema_path(kind).as_posix()}`.",
        "",
        "| Field | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows(kind):
        cells = [_code(row.path), _cell(row.type), _cell(row.default), _cell(row.description)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def reference() -> str:
    lines = [
        "# Spec reference",
        "",
        "<!-- Generated from operator/swarmkeeper/api by scripts/gen-schema; do not edit. -->",
        "",
        "Every kind has the same schema in spec files, in Git and as a Kubernetes custom resource. "
        "Fields are camelCase; unknown fields are rejected. `status` is written by swarmkeeper and "
        "never read as desired state. A default of `{}` or `[]` means the field is empty when omitted.",
        "",
        "Kinds: " + ", ".join(f"[{kind}](#{kind.lower()})" for kind in KINDS) + ".",
        "",
        "## Editor support",
        "",
        f"`{COMBINED.as_posix()}` describes every kind (the `kind` field selects one); editors using "
        "yaml-language-server (VS Code's YAML extension, Neovim, Helix, ...) check and complete a spec "
        "that starts with this line, written here for a file in `specs/<sub>/`:",
        "",
        "```yaml",
        MODELINE,
        "```",
        "",
        "The path is relative to the spec file. `schemas/<kind>.json` hold one kind each.",
        "",
    ]
    for kind in KINDS:
        lines.extend(_kind_section(kind))
    return "\n".join(lines).rstrip("\n") + "\n"


def render_reference() -> dict[Path, str]:
    return {REFERENCE: reference()}
