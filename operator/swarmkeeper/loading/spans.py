"""Where each YAML document of a file starts and ends, found from its lines alone.

Two things need documents without parsing a whole file: status write-back splices one document's
``status:`` block into the raw text, and the loader re-reads only the documents of a file that
changed. Both must count documents exactly as the parser does, so the rules live here, once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Document markers count only at column 0, followed by a blank or the end of the line; YAML forbids
# them inside any scalar there, so a line-based split finds the same documents as the parser.
_DOC_START = re.compile(r"---(?:[ \t]|\r?\n?\Z)")
_DOC_END = re.compile(r"\.\.\.(?:[ \t][^\r\n]*)?\r?\n?\Z")


@dataclass(frozen=True)
class Span:
    start: int  # first line: the document's '---' line, or 0 for a first document without one
    end: int  # first line after its body: its '...' line, the next '---' line, or the line count


def document_spans(lines: Sequence[str]) -> list[Span]:
    """Every document, counted the way ruamel's load_all counts them (empty ones included)."""
    spans: list[Span] = []
    start, explicit, content, end = 0, False, False, None
    for number, line in enumerate(lines):
        if _DOC_START.match(line):
            if explicit or content:
                spans.append(Span(start, number if end is None else end))
            start, explicit, content, end = number, True, False, None
        elif _DOC_END.match(line):
            end = number if end is None else end
        elif not content:
            # Only a first document without '---' needs content to count; comments and
            # directives before the first '---' do not make one.
            stripped = line.strip()
            content = bool(stripped) and not stripped.startswith("#") and not line.startswith("%")
    if explicit or content:
        spans.append(Span(start, len(lines) if end is None else end))
    return spans


def split_lines(text: str) -> list[str]:
    """Lines with their endings kept ("\\r\\n" stays whole), split at "\\n" only."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines
