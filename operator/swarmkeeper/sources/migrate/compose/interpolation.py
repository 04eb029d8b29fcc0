"""Compose variable interpolation: ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?message}``, ``${VAR?message}``, ``${VAR:+other}``, ``${VAR+other}`` and ``$$``.

The syntax is the compose specification's (a default may itself hold ``${...}``). Pure: the
variables come in as a mapping, so the caller decides what wins (compose: the shell over ``.env``).
Errors name the variable and the text the file wrote, never a variable's value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A ``$`` expression that is malformed, or a required variable that is missing."""


class Interpolator:
    """Substitutes variables from ``variables``; remembers which were unset and which gave a value."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = variables
        self.unset: set[str] = set()
        self.substituted: set[str] = set()  # names whose (non-empty) value is now in the text

    def __call__(self, text: str) -> str:
        out, end = self._scan(text, 0, braced=False)
        assert end == len(text)
        return out

    def _scan(self, text: str, pos: int, *, braced: bool) -> tuple[str, int]:
        """Substituted text from ``pos`` to the end, or (``braced``) to the ``}`` closing a default."""
        parts: list[str] = []
        while pos < len(text):
            ch = text[pos]
            if braced and ch == "}":
                return "".join(parts), pos
            if ch != "$":
                parts.append(ch)
                pos += 1
                continue
            nxt = text[pos + 1] if pos + 1 < len(text) else ""
            if nxt == "$":
                parts.append("$")
                pos += 2
            elif nxt == "{":
                value, pos = self._braced(text, pos + 2)
                parts.append(value)
            else:
                match = _NAME.match(text, pos + 1)
                if match is None:
                    raise InterpolationError(
                        "invalid interpolation: '$' must be followed by a variable name or '{' "
                        "(write '$$' for a literal '$')"
                    )
                parts.append(self._lookup(match.group(0)) or "")
                pos = match.end()
        if braced:
            raise InterpolationError("invalid interpolation: '${' without a closing '}'")
        return "".join(parts), pos

    def _braced(self, text: str, pos: int) -> tuple[str, int]:
        """``NAME}`` or ``NAME<op>word}`` starting at ``pos``; returns the value and the position after ``}``."""
        match = _NAME.match(text, pos)
        if match is None:
            raise InterpolationError("invalid interpolation: '${' must be followed by a variable name")
        name, pos = match.group(0), match.end()
        if text.startswith("}", pos):
            return self._lookup(name) or "", pos + 1
        op = next((o for o in _OPERATORS if text.startswith(o, pos)), None)
        if op is None:
            raise InterpolationError(
                f"invalid interpolation of {name}: expected '}}' or one of {', '.join(_OPERATORS)}"
            )
        # The word is interpolated only when it is used, as a shell does: a default that names an
        # unset variable of its own is not an error while the variable before it is set.
        start = pos + len(op)
        value = self._lookup(name, record=False)
        set_, non_empty = value is not None, bool(value)
        used = {
            ":-": not non_empty,
            "-": not set_,
            ":?": not non_empty,
            "?": not set_,
            ":+": non_empty,
            "+": set_,
        }[op]
        if used:
            word, end = self._scan(text, start, braced=True)
        else:
            end = self._skip(text, start)
            word = ""
        if op in (":?", "?"):
            if used:
                reason = word or ("is empty or unset" if op == ":?" else "is unset")
                raise InterpolationError(f"required variable {name} is missing a value: {reason}")
            return self._substitute(name, value), end + 1
        if op in (":-", "-"):
            return (word if used else self._substitute(name, value)), end + 1
        return (word if used else ""), end + 1

    def _skip(self, text: str, pos: int) -> int:
        """The position of the ``}`` that closes a word not used, nested ``${...}`` included."""
        depth = 0
        while pos < len(text):
            if text.startswith("$$", pos):
                pos += 2
                continue
            if text.startswith("${", pos):
                depth += 1
                pos += 2
                continue
            if text[pos] == "}":
                if depth == 0:
                    return pos
                depth -= 1
            pos += 1
        raise InterpolationError("invalid interpolation: '${' without a closing '}'")

    def _lookup(self, name: str, *, record: bool = True) -> str | None:
        value = self.variables.get(name)
        if record:
            if value is None:
                self.unset.add(name)
            else:
                self._substitute(name, value)
        return value

    def _substitute(self, name: str, value: str | None) -> str:
        if value:
            self.substituted.add(name)
        return value or ""
