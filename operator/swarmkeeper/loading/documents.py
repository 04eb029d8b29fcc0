"""YAML text → plain documents plus the position of every key, read defensively.

Specs come from folders and Git repositories that others write to, so reading one must not be a
way to exhaust memory (alias bombs, deep nesting) or to leak a secret: ruamel's messages quote the
offending source line, and its duplicate-key message quotes both values. Errors here are rebuilt
from the problem text and position only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import TaggedScalar
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from .errors import SpecError
from .fieldpath import FieldPath, Position

MAX_NODES = 100_000  # far above any real spec file, far below what an alias bomb expands to
MAX_DEPTH = 64

_DUPLICATE_KEY = re.compile(r'found duplicate key "(.*?)" with value')


@dataclass(frozen=True)
class Document:
    index: int  # 0-based, counting empty documents too
    data: object  # plain dicts, lists and scalars: what pydantic validates
    line: int | None  # 1-based line of the first key; None for a document that is a bare scalar
    positions: dict[FieldPath, Position] = field(default_factory=dict)


def decode(raw: bytes, file: Path) -> str | SpecError:
    """UTF-8 text of a spec file, or an error naming the file and the line of the first bad byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return SpecError("the file is not valid UTF-8 text", file=file, line=line)
    return text.removeprefix("\ufeff")


def read_documents(text: str, file: Path) -> tuple[list[Document], list[SpecError]]:
    """Every non-empty document of ``text``; reading stops at the first YAML syntax error."""
    documents: list[Document] = []
    errors: list[SpecError] = []
    stream = _new_yaml().load_all(text)
    index = 0
    while True:
        try:
            loaded = next(stream)
        except StopIteration:
            break
        except YAMLError as exc:
            errors.append(_yaml_error(exc, text, file))
            break
        except (ValueError, TypeError, OverflowError):
            # ruamel builds dates and explicitly tagged scalars (!!int) with Python constructors
            # whose messages quote the value, and it gives no position for them.
            errors.append(
                SpecError(
                    f"document {index + 1}: a value cannot be read as the type YAML gives it "
                    "(an impossible date, or a scalar that does not match its !!tag); quote it",
                    file=file,
                )
            )
            break
        if loaded is not None:
            try:
                documents.append(_Converter().document(loaded, index))
            except _Rejected as exc:
                errors.append(SpecError(exc.message, file=file, line=exc.line, column=exc.column))
        index += 1
    return documents, errors


def _new_yaml() -> Any:
    # A fresh instance per text: ruamel's composer keeps its depth counter after an error.
    yaml = YAML(typ="rt", pure=True)
    # ruamel counts scalars as a level too; containers are checked exactly while converting.
    yaml.max_depth = MAX_DEPTH + 1
    # Reused anchors are valid YAML, and the warning would print source lines to stderr.
    yaml.composer.warn_double_anchors = False
    return yaml


def _yaml_error(exc: YAMLError, text: str, file: Path) -> SpecError:
    if isinstance(exc, ReaderError):
        line, column = _line_column(text, exc.position)
        return SpecError(f"unacceptable character #x{exc.character:04x}: {exc.reason}", file, line, column)
    if not isinstance(exc, MarkedYAMLError):
        return SpecError(f"invalid YAML ({type(exc).__name__})", file=file)
    if isinstance(exc, DuplicateKeyError):
        match = _DUPLICATE_KEY.match(str(exc.problem or ""))
        message = f'duplicate key "{match.group(1)}"' if match else "duplicate key"
    elif isinstance(exc, MaxDepthExceededError):
        message = f"nested deeper than {MAX_DEPTH} levels"
    else:
        message = _first_line(exc.problem) or _first_line(exc.context) or "invalid YAML"
        context, mark = _first_line(exc.context), exc.context_mark
        if exc.problem and context and mark is not None:
            message += f" ({context} at line {mark.line + 1}, column {mark.column + 1})"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return SpecError(message, file=file)
    return SpecError(message, file=file, line=mark.line + 1, column=mark.column + 1)


def _first_line(text: object) -> str:
    return str(text).strip().split("\n", 1)[0] if text else ""


def _line_column(text: str, index: int) -> Position:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


class _Rejected(Exception):
    def __init__(self, message: str, position: Position | None) -> None:
        super().__init__(message)
        self.message = message
        self.line: int | None = position[0] if position else None
        self.column: int | None = position[1] if position else None


class _Converter:
    """ruamel's round-trip objects → plain data, recording positions and enforcing the limits.

    Aliases are followed, so every expanded node counts: a few lines of anchors that would expand
    to millions of nodes are rejected before the copy is built.
    """

    def __init__(self) -> None:
        self.nodes = 0
        self.positions: dict[FieldPath, Position] = {}

    def document(self, loaded: object, index: int) -> Document:
        root = _own_position(loaded)
        if root is not None:
            self.positions[()] = root
        data = self.convert(loaded, (), 0, root)
        return Document(index=index, data=data, line=root[0] if root else None, positions=self.positions)

    def convert(self, value: object, path: FieldPath, depth: int, position: Position | None) -> object:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Rejected(f"too many nodes (YAML alias expansion?): the limit is {MAX_NODES}", position)
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            raise _Rejected(f"nested deeper than {MAX_DEPTH} levels", position)
        if isinstance(value, dict):
            mapping: dict[str, object] = {}
            for key, item in value.items():
                own = _child_position(value, "key", key)
                if not isinstance(key, str):
                    raise _Rejected("a mapping key must be a string here; quote it", own or position)
                child = (*path, str(key))
                if own is not None:
                    self.positions.setdefault(child, own)
                mapping[str(key)] = self.convert(item, child, depth + 1, own or position)
            return mapping
        if isinstance(value, list):
            items: list[object] = []
            for i, item in enumerate(value):
                own = _child_position(value, "item", i)
                if own is not None:
                    self.positions.setdefault((*path, i), own)
                items.append(self.convert(item, (*path, i), depth + 1, own or position))
            return items
        return _scalar(value, position)


def _scalar(value: object, position: Position | None) -> object:
    # ruamel's scalar subclasses carry formatting; validation and the engine want plain types.
    if isinstance(value, ScalarBoolean | bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if value is None or isinstance(value, bytes | date):
        return value
    if isinstance(value, TaggedScalar):
        raise _Rejected(f"unsupported YAML tag {value.tag}", position)
    if isinstance(value, set):
        raise _Rejected("YAML sets (!!set) are not supported", position)
    raise _Rejected(f"unsupported YAML value ({type(value).__name__})", position)


def _own_position(node: object) -> Position | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    if isinstance(node, dict) and node:
        first = _child_position(node, "key", next(iter(node)))
        if first is not None:
            return first
    return int(lc.line) + 1, int(lc.col) + 1


def _child_position(node: object, which: str, at: object) -> Position | None:
    lc = getattr(node, "lc", None)
    try:
        line, column = getattr(lc, which)(at)
    except (AttributeError, KeyError, IndexError, TypeError):
        return None  # keys brought in by a merge (<<) have no position of their own
    return int(line) + 1, int(column) + 1
