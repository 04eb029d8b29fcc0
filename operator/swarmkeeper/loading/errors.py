"""Errors found in specs, each saying where it is: file, line, column, object and field.

Messages never quote values from the specs: a value may be a secret, and errors end up in logs,
terminals and Kubernetes events. What they do quote (a kind, a name, a key, a file name) is shown
with control and invisible characters escaped: a spec must not be able to send escape sequences to
the terminal of whoever reads the error, or hide a character that makes a name invalid.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpecError:
    message: str
    file: Path | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    kind: str | None = None
    name: str | None = None
    field: str | None = None  # camelCase path as written in YAML: "spec.secrets[0].mode"

    def __str__(self) -> str:
        """``specs/web.yaml:12:5: SwarmService/web: spec.secrets[0].mode: message``, minus unknown parts."""
        parts: list[str] = []
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            parts.append(where)
        if self.kind is not None or self.name is not None:
            parts.append("/".join(p for p in (self.kind, self.name) if p is not None))
        if self.field is not None:
            parts.append(self.field)
        parts.append(self.message)
        return printable(": ".join(parts))


class SpecLoadError(Exception):
    """Raised, with every error found, by callers that cannot go on with invalid specs."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "invalid specs")


def shorten(text: str, limit: int = 64) -> str:
    """Text from a spec as an error quotes it: a kind, key or name can be megabytes long."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str) -> str:
    """``text`` with control, format (zero-width, bidi), separator and other unprintable characters
    as Python-style escapes (``\\x1b``, ``\\u202e``); every other character as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(ord(c)) for c in text)


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def sorted_errors(errors: Iterable[SpecError]) -> list[SpecError]:
    """In reading order: by file, then line and column; errors without a file first."""
    return sorted(
        errors,
        key=lambda e: (e.file is not None, str(e.file or ""), e.line or 0, e.column or 0),
    )


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean "replicas"?)`` when a candidate is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
