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
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

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
    too_deep = _indentation_bomb(text)
    if too_deep is not None:
        return [], [SpecError(f"nested deeper than {MAX_DEPTH} levels", file=file, line=too_deep, column=1)]
    yaml = _new_yaml()
    stream = yaml.compose_all(text)
    index = 0
    while True:
        try:
            node = next(stream)
        except StopIteration:
            break
        except YAMLError as exc:
            errors.append(_yaml_error(exc, text, file))
            break
        except RecursionError:
            errors.append(SpecError(f"nested deeper than {MAX_DEPTH} levels", file=file))
            break
        if node is not None and not _is_null(node):
            try:
                documents.append(_Converter(yaml.constructor).document(node, index))
            except _Rejected as exc:
                errors.append(SpecError(exc.message, file=file, line=exc.line, column=exc.column))
        index += 1
    return documents, errors


def _new_yaml() -> Any:
    # Parsing and composing run in C (ruamel.yaml.clib): the pure-Python round-trip parser is
    # ~20x slower, and comments are not needed to read specs (status write-back keeps them by
    # splicing lines instead). A fresh instance per text: the composer keeps state after an error.
    yaml = YAML(typ="safe", pure=False)
    # Reused anchors are valid YAML, and the warning would print source lines to stderr.
    if hasattr(yaml.composer, "warn_double_anchors"):
        yaml.composer.warn_double_anchors = False
    return yaml


def _is_null(node: Any) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _indentation_bomb(text: str) -> int | None:
    """1-based line of a flow nesting deeper than the limit, checked before the parser recurses.

    The C composer recurses once per level; a 100,000-deep ``[[[[...`` must be refused before it
    gets there. Brackets inside quotes count too: a false alarm needs a string with 64 unclosed
    brackets, which no spec has.
    """
    depth, line = 0, 1
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n":
            line += 1
    return None


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
    """Composed YAML nodes → plain data, recording positions and enforcing the limits.

    Aliases are the same node object reached twice, so every expansion counts: a few lines of
    anchors that would expand to millions of nodes are rejected before the copy is built.
    """

    def __init__(self, constructor: Any) -> None:
        self.constructor = constructor
        self.nodes = 0
        self.positions: dict[FieldPath, Position] = {}

    def document(self, node: Node, index: int) -> Document:
        root = _first_key_position(node)
        if root is not None:
            self.positions[()] = root
        data = self.convert(node, (), 0)
        return Document(index=index, data=data, line=root[0] if root else None, positions=self.positions)

    def convert(self, node: Node, path: FieldPath, depth: int) -> object:
        self.nodes += 1
        position = _position(node)
        if self.nodes > MAX_NODES:
            raise _Rejected(f"too many nodes (YAML alias expansion?): the limit is {MAX_NODES}", position)
        if isinstance(node, MappingNode | SequenceNode) and depth >= MAX_DEPTH:
            raise _Rejected(f"nested deeper than {MAX_DEPTH} levels", position)
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            items: list[object] = []
            for i, item in enumerate(node.value):
                self.positions.setdefault((*path, i), _position(item))
                items.append(self.convert(item, (*path, i), depth + 1))
            return items
        return self.scalar(node, position)

    def mapping(self, node: MappingNode, path: FieldPath, depth: int) -> dict[str, object]:
        mapping: dict[str, object] = {}
        merged: dict[str, object] = {}
        for key_node, value_node in node.value:
            own = _position(key_node)
            if key_node.tag == "tag:yaml.org,2002:merge":
                # `<<: *base` (or a list of them): the mapping's own keys win over merged ones.
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    value = self.convert(source, path, depth)
                    if not isinstance(value, dict):
                        raise _Rejected("a merge key (<<) must refer to a mapping", own)
                    for k, v in value.items():
                        merged.setdefault(k, v)
                continue
            key = self.scalar(key_node, own) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                raise _Rejected("a mapping key must be a string here; quote it", own)
            if key in mapping:
                raise _Rejected(f'duplicate key "{key}"', own)
            child = (*path, key)
            self.positions.setdefault(child, own)
            mapping[key] = self.convert(value_node, child, depth + 1)
        for k, v in merged.items():
            mapping.setdefault(k, v)
        return mapping

    def scalar(self, node: Node, position: Position) -> object:
        tag = str(node.tag or "")
        if not tag.startswith("tag:yaml.org,2002:"):
            raise _Rejected(f"unsupported YAML tag {node.tag}", position)
        if tag in ("tag:yaml.org,2002:set", "tag:yaml.org,2002:omap", "tag:yaml.org,2002:pairs"):
            raise _Rejected(f"YAML {tag.rsplit(':', 1)[1]} values are not supported", position)
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, TypeError, OverflowError):
            # The constructors' messages quote the value, which may be a secret: say what, not which.
            raise _Rejected(
                "a value cannot be read as the type YAML gives it (an impossible date, or a scalar that "
                "does not match its !!tag); quote it",
                position,
            ) from None
        if isinstance(value, bool | int | float | str | bytes | date) or value is None:
            return value
        raise _Rejected(f"unsupported YAML value ({type(value).__name__})", position)


def _position(node: Node) -> Position:
    return int(node.start_mark.line) + 1, int(node.start_mark.column) + 1


def _first_key_position(node: Node) -> Position | None:
    if isinstance(node, MappingNode) and node.value:
        return _position(node.value[0][0])
    if isinstance(node, MappingNode | SequenceNode):
        return _position(node)
    return None
