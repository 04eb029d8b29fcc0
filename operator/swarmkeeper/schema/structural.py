"""Turn pydantic's JSON Schema into a Kubernetes *structural* schema for a CRD.

The apiserver only accepts structural schemas: no ``$ref``, a ``type`` on every node, no types
inside ``anyOf``/``oneOf``/``allOf``, no ``additionalProperties: false``; and with strict field
validation (kubectl's default) it rejects keywords JSONSchemaProps does not know, such as
``const`` or ``writeOnly``. The conversion works from an allowlist and fails on anything else,
so a model change cannot quietly produce a CRD that ``kubectl apply`` would refuse.

Rules: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Schema = dict[str, Any]

# Keywords with the same meaning in JSON Schema 2020-12 and Kubernetes' JSONSchemaProps.
_COPIED = frozenset(
    {
        "description",
        "type",
        "format",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    }
)

# Dropped on purpose:
# - title: pydantic derives it from the field name; it only adds noise to `kubectl explain`;
# - default: the apiserver would write every default into stored objects, so a later change of a
#   default in the models would never reach existing resources; the models apply them instead;
# - discriminator, writeOnly, readOnly, examples, $schema, $comment, $id: OpenAPI/JSON Schema
#   annotations that JSONSchemaProps does not have (SecretStr carries writeOnly).
_DROPPED = frozenset(
    {"title", "default", "discriminator", "writeOnly", "readOnly", "examples", "$schema", "$comment", "$id"}
)

# Keyword order in the output: stable, and readable in YAML (constraints before sub-schemas).
_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "required",
    "items",
    "additionalProperties",
    "properties",
)

_STRING_CONSTRAINTS = ("pattern", "minLength", "maxLength")
_SCALARS = frozenset({"string", "integer", "number", "boolean"})
INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"


class UnsupportedSchema(ValueError):
    """A model uses something a structural schema cannot say; the message names the field."""


def structural(schema: Mapping[str, Any]) -> Schema:
    """The structural equivalent of a pydantic JSON Schema (its ``$defs`` inlined)."""
    return _Converter(schema.get("$defs", {})).node(schema, "")


class _Converter:
    def __init__(self, defs: Mapping[str, Any]) -> None:
        self._defs = defs
        # The keywords that are not copied as they are, each with its translation.
        self._keywords: dict[str, Callable[[Schema, str, Any, str], None]] = {
            "const": self._const,
            "exclusiveMinimum": self._exclusive,
            "exclusiveMaximum": self._exclusive,
            "uniqueItems": self._unique_items,
            "items": self._items,
            "properties": self._properties,
            "required": self._required,
            "additionalProperties": self._additional_properties,
            INT_OR_STRING: self._int_or_string,
        }

    def node(self, schema: Mapping[str, Any], path: str) -> Schema:
        schema = self._inline(schema, path)
        if "anyOf" in schema or "oneOf" in schema:
            return self._union(schema, path)
        out: Schema = {}
        for key, value in schema.items():
            if key in _DROPPED or key == "$defs":
                continue
            if key in _COPIED:
                out[key] = list(value) if isinstance(value, list) else value
            elif key in self._keywords:
                self._keywords[key](out, key, value, path)
            else:
                raise UnsupportedSchema(f"{path}: keyword {key!r} has no Kubernetes equivalent")
        _check_node(out, path)
        return _ordered(out)

    # -- one keyword each: (the node being built, keyword, its value, path) --------------------------
    def _const(self, out: Schema, key: str, value: Any, path: str) -> None:
        out["enum"] = [value]  # JSONSchemaProps has no const

    def _exclusive(self, out: Schema, key: str, value: Any, path: str) -> None:
        # JSON Schema 2020-12 gives the bound; OpenAPI v3.0 (Kubernetes) a flag on min/max.
        if isinstance(value, bool):
            out[key] = value
        else:
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True

    def _unique_items(self, out: Schema, key: str, value: Any, path: str) -> None:
        if value:  # forbidden by the apiserver: checking it is quadratic
            raise UnsupportedSchema(f"{path}: uniqueItems is not allowed in a CRD (use a list)")

    def _items(self, out: Schema, key: str, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise UnsupportedSchema(f"{path}: tuple-style items are not allowed in a CRD")
        out["items"] = self.node(value, f"{path}[]")

    def _properties(self, out: Schema, key: str, value: Any, path: str) -> None:
        out["properties"] = {name: self.node(sub, f"{path}.{name}") for name, sub in value.items()}

    def _required(self, out: Schema, key: str, value: Any, path: str) -> None:
        out["required"] = list(value)

    def _additional_properties(self, out: Schema, key: str, value: Any, path: str) -> None:
        if value is False:
            return  # forbidden in CRDs; unknown fields are pruned by the apiserver anyway
        if not isinstance(value, Mapping):
            raise UnsupportedSchema(f"{path}: additionalProperties must be a schema")
        out["additionalProperties"] = self.node(value, f"{path}.*")

    def _int_or_string(self, out: Schema, key: str, value: Any, path: str) -> None:
        out[key] = bool(value)

    def _inline(self, schema: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        """Replace ``$ref`` (and a one-element ``allOf``) by its target; the referrer's keys win,
        so a field's description replaces the model's docstring."""
        while True:
            if "$ref" in schema:
                ref = schema["$ref"]
                prefix = "#/$defs/"
                if not isinstance(ref, str) or not ref.startswith(prefix) or ref[len(prefix) :] not in self._defs:
                    raise UnsupportedSchema(f"{path}: cannot resolve $ref {ref!r}")
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**self._defs[ref[len(prefix) :]], **rest}
            elif "allOf" in schema and len(schema["allOf"]) == 1:
                rest = {k: v for k, v in schema.items() if k != "allOf"}
                schema = {**schema["allOf"][0], **rest}
            elif "allOf" in schema:
                raise UnsupportedSchema(f"{path}: allOf with several schemas")
            else:
                return schema

    def _union(self, schema: Mapping[str, Any], path: str) -> Schema:
        if "anyOf" in schema and "oneOf" in schema:
            raise UnsupportedSchema(f"{path}: anyOf and oneOf together")
        alternatives = [self._inline(a, path) for a in schema.get("anyOf", schema.get("oneOf", []))]
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf", INT_OR_STRING)}
        nullable = any(a.get("type") == "null" for a in alternatives)
        others = [a for a in alternatives if a.get("type") != "null"]
        if len(others) == 1:
            # pydantic's Optional[X]: X itself, nullable. The outer keys (description) win.
            out = self.node({**others[0], **rest}, path)
        else:
            out = self._scalar_union(_flatten(others), rest, path)
        if nullable:
            out["nullable"] = True
        return _ordered(out)

    def _scalar_union(self, alternatives: list[Mapping[str, Any]], rest: Mapping[str, Any], path: str) -> Schema:
        types = {a.get("type") for a in alternatives}
        if not types or not types <= _SCALARS:
            raise UnsupportedSchema(f"{path}: a union of {sorted(map(str, types))} cannot be structural")
        out: Schema = {k: v for k, v in rest.items() if k == "description"}
        if types == {"integer", "string"}:
            out[INT_OR_STRING] = True
            # A string's constraints apply to strings only, so they can sit on the node itself, as
            # in Kubernetes' own int-or-string Quantity schemas; integer bounds are left to the model.
            for alternative in alternatives:
                if alternative.get("type") == "string":
                    out.update({k: v for k, v in alternative.items() if k in _STRING_CONSTRAINTS})
            return _ordered(out)
        # Any other scalar union (str | float for CPUs: 0.5 or "500m") has no structural form: Kubernetes
        # knows only int-or-string, which would reject 0.5. Accept any value here rather than
        # reject what the model accepts; the model validates it when the object is loaded.
        out[PRESERVE_UNKNOWN] = True
        return _ordered(out)


def _flatten(alternatives: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``anyOf: [{anyOf: [A, B]}, C]`` → ``[A, B, C]`` (pydantic nests Optional around unions)."""
    flat: list[Mapping[str, Any]] = []
    for alternative in alternatives:
        inner = alternative.get("anyOf") or alternative.get("oneOf")
        flat.extend(_flatten(inner) if inner else [alternative])
    return flat


def _check_node(out: Schema, path: str) -> None:
    """What a translated node must be, whatever its keywords were."""
    if out.get("type") == "null":
        raise UnsupportedSchema(f"{path}: a field that can only be null")
    if out.get(INT_OR_STRING):
        out.pop("type", None)  # int-or-string nodes carry no type
    elif "type" not in out:
        raise UnsupportedSchema(f"{path}: no type (every node of a structural schema needs one)")
    if "properties" in out and "additionalProperties" in out:
        raise UnsupportedSchema(f"{path}: properties and additionalProperties together")


def _ordered(schema: Schema) -> Schema:
    unknown = set(schema) - set(_ORDER)
    if unknown:
        raise UnsupportedSchema(f"keywords without a place in the output: {sorted(unknown)}")
    return {key: schema[key] for key in _ORDER if key in schema}
