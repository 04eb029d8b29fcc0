"""Log formatters that keep each record on one line: JSON objects for log collectors, plain text
for files and pipes."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Everything str.splitlines() breaks on, and the other C0/C1 controls (an ESC would reach a
# terminal that later shows the file): written as escapes so that one record stays one line.
_ESCAPES = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x09},
    0x0A: "\\n",
    0x0D: "\\r",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters escaped (``\\n``, ``\\r``, ``\\x1b``, ...)."""
    return text.translate(_ESCAPES)


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class LineFormatter(logging.Formatter):
    """``2026-12-04T18:40:00.123Z INFO swarmkeeper.engine.apply: message key=value``: UTC time,
    level, logger, message, then any ``fields`` (as ``JsonFormatter`` adds them) and the
    traceback, all on one line; line breaks inside are written ``\\n``."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            text += "".join(f" {key}={_field(value)}" for key, value in extra.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return f"{_timestamp(record)} {record.levelname} {record.name}: {one_line(text)}"


def _field(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if not text or any(c.isspace() or c in '"=' for c in text) else text
