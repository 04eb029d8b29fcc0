"""One YAML document → a validated object, with pydantic's errors pointed at lines and fields.

pydantic reports a ``loc`` made of aliases, list indexes and the names of union members and tags;
the user wrote YAML keys. Walking ``loc`` through the very data that was validated keeps the
segments that exist in the document and drops the rest, so the field path is what the user wrote
and its position is known.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..api import API_VERSION, KINDS, Resource
from .documents import Document
from .errors import SpecError, did_you_mean, shorten
from .fieldpath import FieldPath, format_path, locate
from .manifest import Manifest, Origin

_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")
# Every number the Engine API takes is a Go int64 or uint64: larger ones are refused there (after
# other objects of the same apply were already changed) or, worse, accepted as absurd counts.
_INT64 = range(-(2**63), 2**63)


def validate_document(doc: Document, file: Path, root: Path) -> tuple[Manifest | None, list[SpecError]]:
    """The document as a Manifest (without resolved values), or the errors that prevent it."""
    data = doc.data
    if not isinstance(data, dict):
        found = "a list" if isinstance(data, list) else "a single value"
        message = f"document {doc.index + 1} is {found}, not a mapping with apiVersion, kind, metadata, spec"
        return None, [SpecError(message, file=file, line=doc.line)]

    kind = data.get("kind")
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None

    def error(path: FieldPath, message: str) -> SpecError:
        line, column = locate(doc.positions, path) or (doc.line, None)
        return SpecError(
            message,
            file=file,
            line=line,
            column=column,
            kind=shorten(kind) if isinstance(kind, str) else None,
            name=shorten(name) if isinstance(name, str) else None,
            field=format_path(path),
        )

    errors: list[SpecError] = []
    api_version = data.get("apiVersion")
    if api_version != API_VERSION:
        message = f'must be "{API_VERSION}" (found: {_found(api_version)})'
        errors.append(error(("apiVersion",), message))
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(KINDS)
        if isinstance(kind, str):
            message = f'unknown kind "{shorten(kind)}"' + (did_you_mean(kind, KINDS) or f" (known kinds: {known})")
        else:
            message = f"must be one of {known} (found: {_found(kind)})"
        errors.append(error(("kind",), message))
    if model is None or errors:
        return None, errors

    # status is written by swarmkeeper: never desired state, and never a reason to reject a file.
    desired = {key: value for key, value in data.items() if key != "status"}
    try:
        resource: Resource = model.model_validate(desired)
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_input=False, include_context=False)
        for detail in details:
            path, message = _describe(detail, desired, model)
            errors.append(error(path, message))
        return None, errors
    too_large = _out_of_range(resource.model_dump(by_alias=True, exclude_none=True), ())
    if too_large:
        return None, [error(path, "out of range: numbers must fit in 64 bits") for path in too_large]
    origin = Origin(file=file, line=doc.line or 1, root=root, document=doc.index)
    return Manifest(resource, origin, positions=doc.positions), []


def _out_of_range(value: object, path: FieldPath) -> list[FieldPath]:
    """Paths of the integers beyond int64 in a validated object, quoted ones ("99999999999999999999") too."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _out_of_range(item, (*path, str(key)))]
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _out_of_range(item, (*path, i))]
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        return [path]
    return []


def _found(value: object) -> str:
    if value is None:
        return "missing"
    return f'"{shorten(value)}"' if isinstance(value, str) else "not text"


def _describe(detail: ErrorDetails, data: object, model: type[BaseModel]) -> tuple[FieldPath, str]:
    """The YAML path and the message of one pydantic error; never the offending value."""
    path = _yaml_path(data, detail["loc"], keep_missing=detail["type"] == "missing")
    message = detail["msg"]
    for prefix in _MESSAGE_PREFIXES:
        message = message.removeprefix(prefix)
    if detail["type"] == "extra_forbidden" and path and isinstance(path[-1], str):
        parent = _model_at(model, path[:-1])
        known = [info.alias or field for field, info in parent.model_fields.items()] if parent else []
        message = f'unknown field "{shorten(path[-1])}"' + did_you_mean(path[-1], known)
    return path, message


def _yaml_path(data: object, loc: Sequence[int | str], *, keep_missing: bool) -> FieldPath:
    path: list[str | int] = []
    node = data
    for i, segment in enumerate(loc):
        found, child = _child(node, segment)
        if found:
            node = child
        elif keep_missing and i == len(loc) - 1:
            pass  # the missing field itself: part of the path, though not of the document
        else:
            continue  # a union member or tag that pydantic names, not a key the user wrote
        path.append(segment)
    return tuple(path)


def _child(node: object, segment: int | str) -> tuple[bool, object]:
    """Whether ``segment`` is a key or an index present in ``node``, and what it holds."""
    if isinstance(node, dict) and isinstance(segment, str) and segment in node:
        return True, node[segment]
    if isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
        return True, node[segment]
    return False, None


def _model_at(model: type[BaseModel], path: FieldPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (for did-you-mean hints)."""
    annotation: object = model
    for segment in path:
        step = _step(annotation, segment)
        if step is None:
            return None
        annotation = step
    return _as_model(annotation)


def _step(annotation: object, segment: str | int) -> object | None:
    model = _as_model(annotation)
    if model is not None:
        for field, info in model.model_fields.items():
            if segment in (info.alias, field):
                annotation_: object = info.annotation
                return annotation_
        return None
    for member in _members(annotation):
        origin, args = get_origin(member), get_args(member)
        if origin is list and isinstance(segment, int):
            item: object = args[0]
            return item
        if origin is dict and isinstance(segment, str):
            value: object = args[1]
            return value
    return None


def _as_model(annotation: object) -> type[BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _members(annotation: object) -> list[object]:
    """``Annotated[X | None, ...]`` → ``[X, None]``: the types a value may have."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]
