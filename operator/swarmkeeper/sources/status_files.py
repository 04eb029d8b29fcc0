"""Writing each object's observed ``status:`` back next to the spec it came from.

Spec files belong to their users: they carry comments, a chosen key order and quoting, and they
usually live in Git, where every reformatted line is noise in a diff. ``status:`` is the only part
swarmkeeper owns, so the inline writer splices the rendered block into the raw text line by line
and leaves every other byte of the file as it was; it never re-dumps a document. Where spec files
must not change at all (a read-only checkout, a repository that rejects bot commits), the folder
writer keeps the same information in a ``.status/`` tree beside the specs instead.

Both writers are built for a controller that writes status after every pass:

* nothing is written when the status is unchanged, so an idle controller never touches a file
  (and never wakes the file watcher that feeds it);
* a file is replaced atomically (temporary file, fsync, rename), so a reader, or a crash, never
  sees half a file;
* a file that changed since it was read is left alone: the user's edit wins, the next pass
  writes status again;
* ``is_own_write`` lets the watcher tell its own writes from a user's edits;
* one bad file or document is skipped (and logged, without its content: it may hold secrets),
  never raised, so it cannot stop status from reaching the others.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode

from ..loading import writes
from ..loading.documents import MAX_DEPTH, MAX_NODES, fast_yaml, too_deeply_nested
from ..loading.spans import Span, document_spans, split_lines
from ..loading.writes import fsync_dir

log = logging.getLogger(__name__)

STATUS_DIR = ".status"
STATUS_SUFFIX = ".status.yaml"

_BOM = b"\xef\xbb\xbf"

# Line breaks that ruamel counts but splitting at "\n" does not: with any of these in a file, the
# parser's line numbers and ours would disagree, so such a file is not spliced.
_ODD_BREAK = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STATUS_KEY = re.compile(r"""(?:status|'status'|"status")[ \t]*:""")

# What ruamel raises for bad input: syntax errors, and Python constructors failing on an
# impossible date or a scalar that does not match its explicit !!tag.
_PARSE_ERRORS = (YAMLError, ValueError, TypeError, OverflowError, RecursionError)


@dataclass(frozen=True)
class StatusEntry:
    file: Path  # the spec file
    document: int  # 0-based index of the document in the file, as ruamel's load_all counts them
    kind: str
    name: str
    namespace: str | None
    status: dict[str, Any] | None  # JSON-ready; None removes the block


class StatusWriter(Protocol):
    def write(self, entries: Sequence[StatusEntry]) -> list[Path]:
        """Write the given statuses; return the files actually rewritten."""
        ...

    def read(
        self, entry_file: Path, document: int, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        """The status last written for this object, or None."""
        ...

    def is_own_write(self, path: Path) -> bool:
        """True while ``path`` holds exactly the bytes this writer last wrote to it."""
        ...


def read_status(file: Path, document: int) -> dict[str, Any] | None:
    """The ``status:`` mapping of one document as plain data; None if absent or unreadable."""
    parsed = _read_document(file, document)
    return None if parsed is None else parsed.status


def make_writer(mode: Literal["inline", "file", "none"], root: Path) -> StatusWriter:
    """The writer for a status mode; ``root`` is the specs root (used by mode ``file``)."""
    if mode == "inline":
        return InlineStatusWriter()
    if mode == "file":
        return FolderStatusWriter(root)
    if mode == "none":
        return NullStatusWriter()
    raise ValueError(f"unknown status mode {mode!r}")


class InlineStatusWriter:
    """Mode ``inline``: the ``status:`` block inside the spec document itself."""

    def __init__(self) -> None:
        self._own = _OwnWrites()

    def write(self, entries: Sequence[StatusEntry]) -> list[Path]:
        # Grouped by real path: a symlinked spec is edited in its target, never replaced by a copy.
        groups: dict[Path, tuple[Path, dict[int, StatusEntry]]] = {}
        for entry in entries:
            groups.setdefault(_real(entry.file), (entry.file, {}))[1][entry.document] = entry
        written: list[Path] = []
        for real, (given, changes) in groups.items():
            try:
                if self._write_file(real, changes):
                    written.append(given)
            except (OSError, *_PARSE_ERRORS) as exc:  # a file that is not UTF-8 text, for one
                log.warning("status not written to %s: %s", given, type(exc).__name__)
        return written

    def read(
        self, entry_file: Path, document: int, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        parsed = _read_document(entry_file, document)
        if parsed is None or not _is_object(parsed.data, kind, name):
            return None
        return parsed.status

    def is_own_write(self, path: Path) -> bool:
        return self._own.matches(path)

    def _write_file(self, path: Path, changes: Mapping[int, StatusEntry]) -> bool:
        original = path.read_bytes()
        new = _splice_file(original, changes, path)
        if new is None or new == original or not _replace(path, new, expected=original):
            return False
        self._own.remember(path, new)
        return True


class FolderStatusWriter:
    """Mode ``file``: ``<root>/.status/<spec path>.status.yaml``, one document per object."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self._own = _OwnWrites()

    def status_path(self, spec_file: Path) -> Path | None:
        """Where the statuses of ``spec_file`` go; None for a file outside the root."""
        try:
            relative = Path(os.path.abspath(spec_file)).relative_to(self.root)
        except ValueError:
            return None
        return self.root / STATUS_DIR / relative.parent / (relative.name + STATUS_SUFFIX)

    def write(self, entries: Sequence[StatusEntry]) -> list[Path]:
        groups: dict[Path, list[StatusEntry]] = {}
        for entry in entries:
            target = self.status_path(entry.file)
            if target is None:
                log.warning("status not written for %s: outside the specs root", entry.file)
                continue
            groups.setdefault(target, []).append(entry)
        written: list[Path] = []
        for target, group in groups.items():
            try:
                if self._write_file(target, group):
                    written.append(target)
            except (OSError, *_PARSE_ERRORS) as exc:
                log.warning("status not written to %s: %s", target, type(exc).__name__)
        return written

    def read(
        self, entry_file: Path, document: int, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        target = self.status_path(entry_file)
        if target is None:
            return None
        try:
            current = _current(target)
        except OSError:
            return None
        return _parse_objects(current).get((kind, namespace, name))

    def is_own_write(self, path: Path) -> bool:
        return self._own.matches(path)

    def _write_file(self, target: Path, entries: Iterable[StatusEntry]) -> bool:
        current = _current(target)
        # Merged into what is there: a caller may pass only the objects whose status it has.
        objects = _parse_objects(current)
        for entry in entries:
            key = (entry.kind, entry.namespace, entry.name)
            if entry.status is None:
                objects.pop(key, None)
            else:
                objects[key] = entry.status
        if not objects:
            if current is None or _current(target) != current:
                return False
            target.unlink()
            self._own.forget(target)
            return True
        new = _render_objects(objects)
        if new == current:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _replace(target, new, expected=current):
            return False
        self._own.remember(target, new)
        return True


class NullStatusWriter:
    """Mode ``none``: status is not persisted anywhere; no file is ever written."""

    def write(self, entries: Sequence[StatusEntry]) -> list[Path]:
        return []

    def read(
        self, entry_file: Path, document: int, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        return None

    def is_own_write(self, path: Path) -> bool:
        return False


# --- inline: documents, spans and splicing -------------------------------------------------------


class _Unusable(Exception):
    """Why a document cannot take a status block (a reason for the log, never file content)."""


@dataclass(frozen=True)
class _Located:
    parsed: _Parsed
    indent: int  # column of its top-level keys
    block: tuple[int, int] | None  # lines [first, end) of the status block, if there is one
    insert_at: int  # where a new block goes: after the last line of content


def _splice_file(raw: bytes, changes: Mapping[int, StatusEntry], file: Path) -> bytes | None:
    """The file with the given documents' status blocks replaced; None when nothing changes."""
    bom = raw.startswith(_BOM)
    text = raw[len(_BOM) :].decode("utf-8") if bom else raw.decode("utf-8")
    if _ODD_BREAK.search(text):
        log.warning("status not written to %s: it uses line breaks other than \\n and \\r\\n", file)
        return None
    view, spans, _ = _view(text)
    lines = list(view)
    eol = "\r\n" if next((line for line in lines if line.endswith("\n")), "").endswith("\r\n") else "\n"
    changed = False
    # Bottom-up, so that splicing one document leaves the line numbers of those above it valid.
    for index in sorted(changes, reverse=True):
        if not 0 <= index < len(spans):
            log.warning("status not written to %s: it has no document %d", file, index + 1)
            continue
        try:
            spliced = _splice_document(lines, spans[index], changes[index], eol, file)
        except (_Unusable, *_PARSE_ERRORS) as exc:
            reason = exc if isinstance(exc, _Unusable) else f"{type(exc).__name__} reading or rendering it"
            log.warning("status not written to document %d of %s: %s", index + 1, file, reason)
            continue
        if spliced is not None:
            lines, changed = spliced, True
    if not changed:
        return None
    new = "".join(lines).encode("utf-8")
    return _BOM + new if bom else new


def _splice_document(lines: list[str], span: Span, entry: StatusEntry, eol: str, file: Path) -> list[str] | None:
    """``lines`` with this document's status block replaced, or None when it is already right."""
    old = _locate(lines, span, file)
    if not _is_object(old.parsed.data, entry.kind, entry.name):
        raise _Unusable(f"it no longer holds {entry.kind} {entry.name}")
    first, end = old.block if old.block is not None else (old.insert_at, old.insert_at)
    if old.block is None and entry.status is None:
        return None
    wanted = None if entry.status is None else _plain(entry.status)
    if wanted is not None and _same(old.parsed.status, wanted):
        return None  # the same data, however it is formatted: not worth touching the file
    block = [] if entry.status is None else _render_block(entry.status, old.indent, eol)
    spliced = lines[:first] + block + lines[end:]
    _fix_line_ends(spliced, final_newline=not lines or lines[-1].endswith("\n"), eol=eol)
    # Proof before writing: the document still parses, and only its status changed.
    new = _locate(spliced, Span(span.start, span.end + len(block) - (end - first)), file)
    if not _same(_without_status(new.parsed.data), _without_status(old.parsed.data)) or not _same(
        _plain(new.parsed.data.get("status")), wanted
    ):
        raise _Unusable("the spliced document would not read back the same")
    return spliced


def _locate(lines: Sequence[str], span: Span, file: Path) -> _Located:
    """Parse one document of ``file`` and find its top-level keys, the status block and its end."""
    parsed = _parse_in(file, "".join(lines[span.start : span.end]))
    if not parsed.places:
        raise _Unusable("it has no keys of its own")
    indent = min(column for _, _, column in parsed.places)
    starts = sorted(span.start + line for _, line, _ in parsed.places)
    insert_at = _trim(lines, starts[-1], span.end, indent)
    status_line = next((line for key, line, _ in parsed.places if key == "status"), None)
    if status_line is None:
        return _Located(parsed, indent, None, insert_at)
    first = span.start + status_line
    text = lines[first]
    if text[:indent].strip() or not _STATUS_KEY.match(text, indent):
        raise _Unusable("its status key is not where the parser says")  # guard against misaligned lines
    following = next((line for line in starts if line > first), span.end)
    return _Located(parsed, indent, (first, _trim(lines, first, following, indent)), insert_at)


@dataclass(frozen=True)
class _Parsed:
    data: dict[Any, Any]  # shared by every caller through the cache: read, never changed
    places: tuple[tuple[str | None, int, int], ...]  # own top-level keys: (name, line, column), 0-based

    @functools.cached_property
    def status(self) -> dict[str, Any] | None:
        return _status_of(self.data)


# Parsed documents per file, by text: a controller publishes status after every pass, and nearly
# every document is the same text as last time. A file keeps only the documents of its last read,
# plus the ones just written into it: every status change is a new text, and keeping them all (as a
# cache of the last 4096 texts did) made memory follow the history of statuses, not the specs.
_documents: dict[Path, tuple[tuple[str, ...], dict[str, _Parsed]]] = {}
_documents_lock = threading.Lock()
_MAX_FILES = 10_000


def _parse_in(file: Path, text: str, current: tuple[str, ...] | None = None) -> _Parsed:
    """:func:`_parse` of a document of ``file``, cached; ``current``, the file's documents as just
    read, drops what the file no longer holds."""
    with _documents_lock:
        seen, kept = _documents.get(file, ((), {}))
        if current is not None and current != seen:
            now = set(current)
            kept = {t: parsed for t, parsed in kept.items() if t in now}
            _documents[file] = (current, kept)
        hit = kept.get(text)
    if hit is None:
        hit = _parse(text)
        with _documents_lock:
            if file not in _documents and len(_documents) >= _MAX_FILES:
                _documents.clear()
            _documents.setdefault(file, ((), {}))[1][text] = hit
    return hit


def _parse(text: str) -> _Parsed:
    """One document's data and where its own keys are.

    Parsed by the C parser (comments are not needed: the splice is line-based), which, with the
    cache of :func:`_parse_in`, is what makes a pass over hundreds of documents cheap.
    """
    if too_deeply_nested(text) is not None:
        raise _Unusable(f"it is nested deeper than {MAX_DEPTH} levels")
    yaml = fast_yaml()
    node = yaml.compose(text)
    if not isinstance(node, MappingNode) or node.flow_style:
        raise _Unusable("it is not a block mapping")
    # Read before constructing the data: the constructor folds `<<:` merges into the node in place.
    # Keys merged in with `<<:` have no line of their own and are left out.
    places = tuple(
        (key.value if isinstance(key, ScalarNode) else None, key.start_mark.line, key.start_mark.column)
        for key, _ in node.value
        if key.tag != _MERGE_TAG
    )
    data = yaml.constructor.construct_document(node)
    if not isinstance(data, dict):
        raise _Unusable("it is not a mapping")
    return _Parsed(data, places)


def _trim(lines: Sequence[str], first: int, end: int, indent: int) -> int:
    """Move ``end`` back over trailing blank lines and comments at the top-level keys' column.

    Such comments introduce what follows (the next key, or the next document), and blank lines
    separate; both stay where they are when the block before them is replaced or removed.
    """
    while end > first + 1:
        line = lines[end - 1]
        stripped = line.strip()
        is_outer_comment = stripped.startswith("#") and len(line) - len(line.lstrip()) <= indent
        if stripped and not is_outer_comment:
            break
        end -= 1
    return end


def _fix_line_ends(lines: list[str], final_newline: bool, eol: str) -> None:
    """Every line but the last ends in a newline; the last one does as the file's last did."""
    for number, line in enumerate(lines[:-1]):
        if not line.endswith("\n"):
            lines[number] = line + eol
    if lines and not final_newline:
        lines[-1] = lines[-1].removesuffix("\n").removesuffix("\r")
    elif lines and not lines[-1].endswith("\n"):
        lines[-1] += eol


def _render_block(status: Mapping[str, Any], indent: int, eol: str) -> list[str]:
    text = _dump([{"status": dict(status)}], explicit_start=False)
    return [" " * indent + line + eol for line in text.removesuffix("\n").split("\n")]


def _read_document(file: Path, document: int) -> _Parsed | None:
    """One document, read; None if missing, unreadable or not a block mapping."""
    try:
        text = file.read_bytes().decode("utf-8").removeprefix("\ufeff")
        _, spans, texts = _view(text)
        if not 0 <= document < len(spans):
            return None
        return _parse_in(file, texts[document], texts)
    except (OSError, UnicodeDecodeError, _Unusable, *_PARSE_ERRORS):
        return None


@functools.lru_cache(maxsize=16)  # whole files: a few, as a pass goes through them one by one
def _view(text: str) -> tuple[tuple[str, ...], tuple[Span, ...], tuple[str, ...]]:
    """A file's lines, documents and their texts; cached, as every object of a file asks for its own
    status."""
    lines = split_lines(text)
    spans = tuple(document_spans(lines))
    return tuple(lines), spans, tuple("".join(lines[span.start : span.end]) for span in spans)


def _is_object(data: Any, kind: str, name: str) -> bool:
    """Whether a document is (still) the object named: a guard against documents moved since loading.

    Only kind and name are compared; the namespace may come from a default rather than the file.
    """
    metadata = data.get("metadata")
    found_name = metadata.get("name") if isinstance(metadata, Mapping) else None
    found_kind = data.get("kind")
    return not (isinstance(found_kind, str) and found_kind != kind) and not (
        isinstance(found_name, str) and found_name != name
    )


def _status_of(data: Any) -> dict[str, Any] | None:
    try:
        status = _plain(data.get("status"))
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def _without_status(data: Any) -> dict[Any, Any]:
    return {key: value for key, value in _plain(data).items() if key != "status"}


# --- folder mode ---------------------------------------------------------------------------------

_ObjectKey = tuple[str, str | None, str]  # kind, namespace, name


def _parse_objects(raw: bytes | None) -> dict[_ObjectKey, dict[str, Any]]:
    """The statuses in a ``.status`` file; an unreadable one counts as empty (it is ours to redo)."""
    return {} if raw is None else dict(_parse_objects_of(raw))  # a copy: callers add to it


@functools.lru_cache(maxsize=256)
def _parse_objects_of(raw: bytes) -> dict[_ObjectKey, dict[str, Any]]:
    # Cached by content: every object of a spec file reads the same .status file in each pass.
    objects: dict[_ObjectKey, dict[str, Any]] = {}
    try:
        text = raw.decode("utf-8")
        if too_deeply_nested(text) is not None:
            return objects
        documents = list(fast_yaml().load_all(text))
    except (UnicodeDecodeError, *_PARSE_ERRORS):
        return objects
    for doc in documents:
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            continue
        kind, meta, status = doc.get("kind"), doc["metadata"], doc.get("status")
        name, namespace = meta.get("name"), meta.get("namespace")
        valid_namespace = namespace is None or isinstance(namespace, str)
        if isinstance(kind, str) and isinstance(name, str) and isinstance(status, dict) and valid_namespace:
            objects[(kind, namespace, name)] = status
    return objects


def _render_objects(objects: Mapping[_ObjectKey, dict[str, Any]]) -> bytes:
    # Sorted, so the file does not change with the order objects happened to be reported in.
    def order(key: _ObjectKey) -> tuple[str, bool, str, str]:
        kind, namespace, name = key
        return kind, namespace is not None, namespace or "", name

    documents: list[dict[str, Any]] = []
    for kind, namespace, name in sorted(objects, key=order):
        metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
        documents.append({"kind": kind, "metadata": metadata, "status": objects[(kind, namespace, name)]})
    return _dump(documents, explicit_start=True).encode("utf-8")


# --- shared: YAML, data, files -------------------------------------------------------------------


def _dump(documents: list[dict[str, Any]], explicit_start: bool) -> str:
    def dump(allow_unicode: bool) -> str:
        yaml = YAML(typ="rt", pure=True)  # rt keeps keys in the order given
        yaml.default_flow_style = False
        yaml.indent(mapping=2, sequence=4, offset=2)
        yaml.width = 4096  # never fold a long message: folding turns a one-word change into many lines
        yaml.allow_unicode = allow_unicode
        yaml.explicit_start = explicit_start
        out = io.StringIO()
        yaml.dump_all(documents, out)
        return out.getvalue()

    text = dump(allow_unicode=True)
    # ruamel writes U+2028 and friends raw even though it reads them as line breaks; escaping
    # every non-ASCII character is the only way it offers to avoid that, so only then.
    return dump(allow_unicode=False) if _ODD_BREAK.search(text) else text


class _TooLarge(ValueError):
    pass


def _plain(value: Any) -> Any:
    """ruamel's round-trip types as ordinary Python: dict, list, str, int, float, bool, None.

    Refuses more than MAX_NODES nodes: a handful of aliases can stand for billions of them.
    """
    count = 0

    def convert(node: Any) -> Any:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise _TooLarge("too many nodes")
        if isinstance(node, Mapping):
            return {
                (convert(key) if isinstance(key, str | int | float) else key): convert(item)
                for key, item in node.items()
            }
        if isinstance(node, list | tuple):
            return [convert(item) for item in node]
        for plain in (bool, int, float, str):  # bool first: it is an int too
            if isinstance(node, plain):
                return plain(node)
        return node

    return convert(value)


def _same(a: Any, b: Any) -> bool:
    """Equal as data, strictly: in YAML ``true`` is not ``1``, and ``1`` is not ``1.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _real(path: Path) -> Path:
    # Unlike Path.resolve, never raises (not even for a symlink loop).
    return Path(os.path.realpath(path))


def _current(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _replace(target: Path, data: bytes, expected: bytes | None) -> bool:
    """Atomically put ``data`` at ``target``, unless it no longer holds ``expected`` (None: absent)."""
    temp = writes.write_temp(target, data)
    try:
        # Checked as late as possible: an edit made since the file was read wins over status.
        if _current(target) != expected:
            log.info("status not written to %s: it changed on disk meanwhile", target)
            return False
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)  # a no-op after os.replace; removes the copy otherwise
    fsync_dir(target.parent)
    return True


class _OwnWrites:
    """Digests of what was last written per file, for telling own writes from others' edits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the writer and a file watcher may run on different threads
        self._digests: dict[Path, bytes] = {}

    def remember(self, path: Path, data: bytes) -> None:
        with self._lock:
            self._digests[_real(path)] = hashlib.sha256(data).digest()

    def forget(self, path: Path) -> None:
        with self._lock:
            self._digests.pop(_real(path), None)

    def matches(self, path: Path) -> bool:
        with self._lock:
            digest = self._digests.get(_real(path))
        if digest is None:
            return False
        try:
            return hashlib.sha256(path.read_bytes()).digest() == digest
        except OSError:
            return False
