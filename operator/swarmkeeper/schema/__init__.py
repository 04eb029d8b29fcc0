"""Schemas generated from ``swarmkeeper.api``: CRDs, JSON Schema and the Markdown spec reference.

The models are the only source; nothing here is maintained by hand. Regenerate with
``scripts/gen-schema``; ``python -m swarmkeeper.schema --check`` reports drift.
"""

from __future__ import annotations

from .crd import crd
from .jsonschema import combined_schema, json_schema
from .reference import reference
from .render import drift, render_all, write_all
from .structural import UnsupportedSchema, structural

__all__ = [
    "UnsupportedSchema",
    "combined_schema",
    "crd",
    "drift",
    "json_schema",
    "reference",
    "render_all",
    "structural",
    "write_all",
]
