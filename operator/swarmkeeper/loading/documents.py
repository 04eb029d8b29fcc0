"""YAML text → plain documents plus the position of every key, read defensively.

Specs come from folders and Git repositories that others write to, so reading one must not be a
way to exhaust memory or time (alias bombs, deep nesting, a million documents) or to leak a secret:
ruamel's messages quote the offending source line, and its duplicate-key message quotes both
values. Errors here are rebuilt from the problem text and position only.

Positions are lines as editors and ``grep -n`` count them: the C parser also breaks lines at
U+0085, U+2028 and U+2029 (YAML 1.1), which would shift every line number after one of them.
"""

from __future__ import annotations

import re
from bisect import bisect_right
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
from .spans import Span, document_spans, split_lines

# Per file, documents and expanded aliases included: far above any real spec file, far below what
# an alias bomb expands to, and small enough that a file at the limit is read in about a second.
MAX_NODES = 100_000
MAX_DEPTH = 64

_STANDARD_TAG = "tag:yaml.org,2002:"
_MAP, _SEQ = _STANDARD_TAG + "map", _STANDARD_TAG + "seq"
# YAML 1.1 collection types with no meaning in a spec (and, for sets, no JSON equivalent).
_UNSUPPORTED_COLLECTIONS = {_STANDARD_TAG + name: name for name in ("set", "omap", "pairs")}
# Line breaks for the C parser, but not for editors, `grep -n` or Git.
_ODD_BREAK = re.compile("[\x85\u2028\u2029]")
_PHYSICAL_BREAK = re.compile(r"\r\n|\r|\n")

_DUPLICATE_KEY = re.compile(r'found duplicate key "(.*?)" with value')


@dataclass(frozen=True)
class Document:
    index: int  # 0-based, counting empty documents too
    data: object  # plain dicts, lists and scalars: what pydantic validates
    line: int | None  # 1-based line of the first key (of the value itself when it is not a mapping)
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
    too_deep = too_deeply_nested(text)
    if too_deep is not None:
        return [], [SpecError(f"nested deeper than {MAX_DEPTH} levels", file=file, line=too_deep, column=1)]
    split = _split(text)
    if split is None:
        whole = _read_whole(text, file)
        return whole.documents, whole.errors
    texts, spans = split
    before = _parts.get(file, {})
    now: dict[str, _Read] = {}
    # Mostly read before: a save that changed a few documents of a watched file. Reading a document
    # on its own costs about twice its share of a whole-file read, so a new file is read whole.
    if texts and 2 * sum(text in before for text in texts) >= len(texts):
        documents = _from_parts(texts, spans, before, now)
        if documents is not None:
            _keep(file, now)
            return documents, []
    whole = _read_whole(text, file)
    if not whole.errors and len(whole.nodes) == len(spans):
        _keep(file, _parts_of(whole, texts, spans))
    return whole.documents, whole.errors


# What only a whole-file read gets right: directives and '...' apply across document boundaries,
# and odd line breaks and BOMs shift what the parser counts against what a line split counts.
_SPLIT_UNSAFE = re.compile(r"^(?:%|\.\.\.)|[\x85\u2028\u2029\ufeff]|\r(?!\n)", re.MULTILINE)


@dataclass(frozen=True)
class _Read:
    documents: list[Document]
    errors: list[SpecError]
    nodes: list[int]  # per document the parser saw (empty ones included), counted against MAX_NODES
    # Lines between the top of the text read and where the documents' positions count from: a part
    # kept from a whole-file read keeps that read's positions (moved only when used: a first read
    # of ten thousand specs would otherwise move every position of every document once for nothing).
    line_offset: int = 0


# Per file, each document's text → how it reads on its own, at line 1 of its own text: a watched
# file of a hundred objects changes one document at a time, and only that one is read again. Only
# the file's latest version is kept, so memory follows the specs, not their history.
_parts: dict[Path, dict[str, _Read]] = {}
_MAX_FILES = 10_000


def _split(text: str) -> tuple[list[str], list[Span]] | None:
    """Each document's text and lines; None where only a whole-file read is right."""
    if _SPLIT_UNSAFE.search(text) is not None:
        return None
    lines = split_lines(text)
    spans = document_spans(lines)
    return ["".join(lines[span.start : span.end]) for span in spans], spans


def _read_by_document(text: str) -> list[Document] | None:
    """Every document of ``text`` read on its own, nothing kept; None where only a whole-file read
    gives the right result: errors, directives, '...', odd line breaks. (What tests compare.)"""
    split = _split(text)
    return None if split is None else _from_parts(*split, {}, {})


def _from_parts(
    texts: list[str], spans: list[Span], before: dict[str, _Read], now: dict[str, _Read]
) -> list[Document] | None:
    """The whole-file read's result, exactly, from the documents' own reads (those in ``before``
    reused, every one put in ``now``); None on any doubt."""
    documents: list[Document] = []
    nodes = 0
    for index, (text, span) in enumerate(zip(texts, spans, strict=True)):
        part = before.get(text)
        if part is None:
            # Errors are never reported from here (the whole file is read again for them): no file name.
            part = _read_whole(text, Path())
        if part.errors or len(part.nodes) != 1:
            return None
        now[text] = part
        nodes += part.nodes[0]
        if nodes > MAX_NODES:
            return None
        documents += (_moved(document, index, span.start - part.line_offset) for document in part.documents)
    return documents


def _parts_of(whole: _Read, texts: list[str], spans: list[Span]) -> dict[str, _Read]:
    """Each document of a whole-file read, as its own read would have given it."""
    by_index = {document.index: document for document in whole.documents}
    parts = {}
    for index, (text, span) in enumerate(zip(texts, spans, strict=True)):
        document = by_index.get(index)
        parts[text] = _Read([] if document is None else [document], [], [whole.nodes[index]], span.start)
    return parts


def _keep(file: Path, parts: dict[str, _Read]) -> None:
    if file not in _parts and len(_parts) >= _MAX_FILES:
        _parts.clear()
    _parts[file] = parts


def _moved(document: Document, index: int, lines_down: int) -> Document:
    """A document placed ``lines_down`` lines further down its file, as document ``index``."""
    if index == document.index and lines_down == 0:
        return document
    return Document(
        index=index,
        data=document.data,
        line=None if document.line is None else document.line + lines_down,
        positions={path: (line + lines_down, column) for path, (line, column) in document.positions.items()},
    )


def _read_whole(text: str, file: Path) -> _Read:
    documents: list[Document] = []
    errors: list[SpecError] = []
    nodes: list[int] = []
    yaml = fast_yaml()
    lines = _Lines(text)
    converter = _Converter(yaml.constructor, lines)  # one per file: the node budget covers every document
    stream = yaml.compose_all(text)
    index = 0
    while True:
        try:
            node = next(stream)
        except StopIteration:
            break
        except YAMLError as exc:
            errors.append(_yaml_error(exc, lines, file))
            break
        except RecursionError:
            errors.append(SpecError(f"nested deeper than {MAX_DEPTH} levels", file=file))
            break
        before = converter.nodes
        try:
            # Empty documents count too: a million of them cost time though they hold nothing.
            converter.count(node)
            if node is not None and not _is_null(node):
                documents.append(converter.document(node, index))
        except _Rejected as exc:
            errors.append(SpecError(exc.message, file=file, line=exc.line, column=exc.column))
            if exc.fatal:
                break
        nodes.append(converter.nodes - before)
        index += 1
    return _Read(documents, errors, nodes)


def fast_yaml() -> Any:
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


def too_deeply_nested(text: str) -> int | None:
    """1-based line of a flow nesting deeper than the limit, checked before the parser recurses.

    The C composer recurses once per level; a 100,000-deep ``[[[[...`` must be refused before it
    gets there. Brackets inside quotes count too: a false alarm needs a string with 64 unclosed
    brackets, which no spec has.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None  # the common case, decided without a character loop in Python
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


def _yaml_error(exc: YAMLError, lines: _Lines, file: Path) -> SpecError:
    if isinstance(exc, ReaderError):
        line, column = lines.at(exc.position)
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
            line, column = lines.of(mark)
            message += f" ({context} at line {line}, column {column})"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return SpecError(message, file=file)
    line, column = lines.of(mark)
    return SpecError(message, file=file, line=line, column=column)


def _first_line(text: object) -> str:
    return str(text).strip().split("\n", 1)[0] if text else ""


class _Lines:
    """1-based (line, column) of a parser mark, counting CRLF, CR and LF as line breaks only."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: list[int] | None = None  # index of each line's first character, built on demand
        self.odd = _ODD_BREAK.search(text) is not None

    def of(self, mark: Any) -> Position:  # the C parser's Mark: line, column, index (0-based)
        if not self.odd:  # the parser counted the same breaks: its own numbers are right
            return int(mark.line) + 1, int(mark.column) + 1
        return self.at(int(mark.index))

    def at(self, index: int) -> Position:
        """The position of the character at ``index`` of the text."""
        if self._starts is None:
            self._starts = [0, *(m.end() for m in _PHYSICAL_BREAK.finditer(self.text))]
        line = bisect_right(self._starts, index)
        return line, index - self._starts[line - 1] + 1


class _Rejected(Exception):
    def __init__(self, message: str, position: Position | None, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.line: int | None = position[0] if position else None
        self.column: int | None = position[1] if position else None
        self.fatal = fatal  # the rest of the file is not read either


class _Converter:
    """Composed YAML nodes → plain data, recording positions and enforcing the limits.

    Aliases are the same node object reached twice, so every expansion counts: a few lines of
    anchors that would expand to millions of nodes are rejected before the copy is built.
    """

    def __init__(self, constructor: Any, lines: _Lines) -> None:
        self.constructor = constructor
        self.lines = lines
        self.nodes = 0
        self.positions: dict[FieldPath, Position] = {}

    def count(self, node: Node | None) -> None:
        """One more node of the file's budget; past it, the file is not read any further."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            position = self.position(node) if node is not None else None
            message = f"too many nodes (YAML alias expansion?): the limit is {MAX_NODES} per file"
            raise _Rejected(message, position, fatal=True)

    def document(self, node: Node, index: int) -> Document:
        self.positions = {}
        root = self.first_key_position(node)
        self.positions[()] = root
        data = self.convert(node, (), 0)
        return Document(index=index, data=data, line=root[0], positions=self.positions)

    def convert(self, node: Node, path: FieldPath, depth: int) -> object:
        self.count(node)
        position = self.position(node)
        if isinstance(node, MappingNode | SequenceNode):
            self.check_collection(node, position)
            if depth >= MAX_DEPTH:
                raise _Rejected(f"nested deeper than {MAX_DEPTH} levels", position)
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            items: list[object] = []
            for i, item in enumerate(node.value):
                self.positions.setdefault((*path, i), self.position(item))
                items.append(self.convert(item, (*path, i), depth + 1))
            return items
        return self.scalar(node, position)

    @staticmethod
    def check_collection(node: MappingNode | SequenceNode, position: Position) -> None:
        # Tags on collections would otherwise be dropped in silence: `!include [a.yaml]` would read
        # as a plain list, `!!set {a, b}` as a mapping of nulls.
        tag = str(node.tag or "")
        if tag in _UNSUPPORTED_COLLECTIONS:
            raise _Rejected(f"YAML {_UNSUPPORTED_COLLECTIONS[tag]} values are not supported", position)
        if tag not in (_MAP, _SEQ):
            raise _Rejected(f"unsupported YAML tag {node.tag}", position)

    def mapping(self, node: MappingNode, path: FieldPath, depth: int) -> dict[str, object]:
        mapping: dict[str, object] = {}
        merged: dict[str, object] = {}
        for key_node, value_node in node.value:
            own = self.position(key_node)
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
        if not tag.startswith(_STANDARD_TAG):
            raise _Rejected(f"unsupported YAML tag {node.tag}", position)
        if tag in _UNSUPPORTED_COLLECTIONS:
            raise _Rejected(f"YAML {_UNSUPPORTED_COLLECTIONS[tag]} values are not supported", position)
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

    def position(self, node: Node) -> Position:
        return self.lines.of(node.start_mark)

    def first_key_position(self, node: Node) -> Position:
        if isinstance(node, MappingNode) and node.value:
            return self.position(node.value[0][0])
        return self.position(node)
