"""Spec files → manifests: found, parsed, validated, values resolved, then checked as a set.

Every file is read and every error collected, so one run shows the user everything to fix.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ..api import SwarmAlert, SwarmConfig, SwarmSecret, SwarmService
from .alerts import resolve_alert_urls
from .discovery import find_spec_files
from .documents import Document, decode, read_documents
from .envfiles import load_env_files
from .errors import SpecError, sorted_errors
from .files import FileProblem, MiB, format_size, read_bounded
from .manifest import LoadResult, Manifest
from .references import check_references
from .validation import validate_document
from .values import resolve_value

MAX_SPEC_FILE_BYTES = 4 * MiB
# Errors reported per file: enough to fix a file in one go; a hostile file of 100,000 invalid
# documents must not turn into 200,000 lines of output.
MAX_ERRORS_PER_FILE = 100


def load_paths(
    paths: Sequence[Path], *, resolve_values: bool = True, environ: Mapping[str, str] | None = None
) -> LoadResult:
    """Every spec under ``paths`` (files, or folders searched recursively), checked as one set.

    With ``resolve_values=False`` no value or env file is read and no variable looked up: for
    validating specs where their values are not available.
    """
    files, errors = find_spec_files(paths)
    manifests: list[Manifest] = []
    for file, root in files:
        try:
            raw = read_bounded(file, MAX_SPEC_FILE_BYTES)
        except FileProblem as exc:
            errors.append(SpecError(str(exc), file=file))
            continue
        result = load_text(raw, file, root=root, resolve_values=resolve_values, environ=environ)
        manifests.extend(result.manifests)
        errors.extend(result.errors)
    errors.extend(check_references(manifests))
    return LoadResult(manifests, sorted_errors(errors))


def load_text(
    text: str | bytes,
    file: Path,
    *,
    root: Path | None = None,
    resolve_values: bool = True,
    environ: Mapping[str, str] | None = None,
) -> LoadResult:
    """The specs in one file's content; ``file`` names it in errors and anchors relative paths.

    Only the objects themselves are checked: references between objects need the whole set, so
    callers combining several texts run ``check_references`` over all of them.
    """
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_SPEC_FILE_BYTES:
        return LoadResult([], [SpecError(f"is larger than {format_size(MAX_SPEC_FILE_BYTES)}", file=file)])
    if isinstance(text, bytes):
        decoded = decode(text, file)
        if isinstance(decoded, SpecError):
            return LoadResult([], [decoded])
        text = decoded
    documents, parse_errors = _read_documents_cached(text, file)
    errors = list(parse_errors)  # the cached list is shared by every read of the same text
    manifests: list[Manifest] = []
    for number, document in enumerate(documents):
        if len(errors) >= MAX_ERRORS_PER_FILE:
            left = len(documents) - number
            message = f"stopped after {len(errors)} errors; {left} more document(s) not checked"
            errors.append(SpecError(message, file=file, line=document.line))
            return LoadResult(manifests, sorted_errors(errors))
        manifest, problems = validate_document(document, file, file.parent if root is None else root)
        errors.extend(problems)
        if manifest is None:
            continue
        if resolve_values:
            manifest, problems = _resolve(manifest, os.environ if environ is None else environ)
            errors.extend(problems)
        # Kept even when its value failed, so references to it are not reported as dangling too.
        manifests.append(manifest)
    return LoadResult(manifests, sorted_errors(errors))


def _resolve(manifest: Manifest, environ: Mapping[str, str]) -> tuple[Manifest, list[SpecError]]:
    if isinstance(manifest.resource, SwarmSecret | SwarmConfig):
        value, errors = resolve_value(manifest, environ)
        return replace(manifest, value=value), errors
    if isinstance(manifest.resource, SwarmService):
        file_env, errors = load_env_files(manifest)
        return replace(manifest, file_env=file_env), errors
    if isinstance(manifest.resource, SwarmAlert):
        urls, errors = resolve_alert_urls(manifest)
        return replace(manifest, urls=urls), errors
    return manifest, []


# A controller re-reads every spec file on every pass, and most files did not change since the
# last one: parsing is the biggest part of a pass, so the parsed documents of each file are kept
# while its text stays the same. Documents are immutable (validation only reads them).
_parsed: dict[Path, tuple[str, tuple[list[Document], list[SpecError]]]] = {}
_parsed_lock = threading.Lock()


def _read_documents_cached(text: str, file: Path) -> tuple[list[Document], list[SpecError]]:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    with _parsed_lock:
        hit = _parsed.get(file)
    if hit is not None and hit[0] == digest:
        return hit[1]
    result = read_documents(text, file)
    with _parsed_lock:
        if len(_parsed) > 10_000:
            _parsed.clear()
        _parsed[file] = (digest, result)
    return result
