"""JSON Schema of every kind, for editors and for validating specs outside Python.

Generated from the pydantic models (validation mode, camelCase aliases), so editors check a spec
exactly as ``swarmkeeper`` loads it. The combined schema (``schemas/swarmkeeper.json``) picks the
kind by the ``kind`` field; specs opt in with a ``yaml-language-server`` modeline.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from swarmkeeper.api import KINDS, RESOURCE_ADAPTER

Schema = dict[str, Any]

GENERATED = "Generated from operator/swarmkeeper/api by scripts/gen-schema; do not edit."
DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = Path("schemas")
COMBINED = SCHEMA_DIR / "swarmkeeper.json"

# FileReference.mode is an int in Python, read from octal text ("0444"; YAML reads 0444 as the
# number 444, which the validator also takes as octal). pydantic describes only the int and leaks
# Field(ge, le) as the unknown keywords "ge"/"le", so the documented form "0400" would fail in
# editors and in the apiserver. Describe what the validator accepts until api/ declares it itself
# (WithJsonSchema on FileMode); only the known-wrong form is replaced, so that fix makes this a no-op.
_FILE_MODE_INPUT: Schema = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 777},
        {"type": "string", "pattern": "^(0o)?0*[0-7]{1,3}$"},
    ],
    "default": "0444",
    "description": 'Permissions in octal, like "0444" (a YAML number like 444 is read as octal too).',
}


def _fix_inputs(schema: Schema) -> Schema:
    properties = schema.get("$defs", {}).get("FileReference", {}).get("properties", {})
    mode = properties.get("mode")
    if mode is not None and mode.get("type") == "integer" and "anyOf" not in mode:
        properties["mode"] = copy.deepcopy(_FILE_MODE_INPUT)
    return schema


def json_schema(kind: str) -> Schema:
    """The JSON Schema of one kind (``SwarmService``, ...), ``$defs`` included."""
    try:
        model = KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}") from None
    body = _fix_inputs(model.model_json_schema(by_alias=True, mode="validation"))
    return {"$schema": DIALECT, "$comment": GENERATED, **body}


def combined_schema() -> Schema:
    """Every kind in one schema: ``oneOf`` the kinds, discriminated by ``kind``."""
    body = _fix_inputs(RESOURCE_ADAPTER.json_schema(by_alias=True, mode="validation"))
    return {"$schema": DIALECT, "$comment": GENERATED, "title": "swarmkeeper spec", **body}


def schema_path(kind: str) -> Path:
    return SCHEMA_DIR / f"{kind.lower()}.json"


def dumps(schema: Schema) -> str:
    # ensure_ascii=False keeps the µ of the duration pattern readable; the files are UTF-8.
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def render_schemas() -> dict[Path, str]:
    files = {schema_path(kind): dumps(json_schema(kind)) for kind in KINDS}
    files[COMBINED] = dumps(combined_schema())
    return files
