"""Human units in specs (``1m30s``, ``256Mi``, ``0.5`` CPUs) and their Engine API values.

Specs keep the text the user wrote so it round-trips unchanged; the ``to_*`` functions give the
numbers the Engine API wants (nanoseconds, bytes, nano-CPUs). Parsing lives here, next to the
models, so a bad value is rejected at load time with the field that holds it.
"""

from __future__ import annotations

import re
from decimal import Decimal, DecimalException
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

# The Engine API takes nanoseconds, bytes and nano-CPUs as int64: anything larger cannot be applied.
_INT64_MAX = 2**63 - 1

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


def duration_to_ns(text: str) -> int:
    """``"1m30s"`` → 90_000_000_000. Accepts Go duration syntax, as the docker CLI does."""
    if text == "0":
        return 0
    pos, total = 0, Decimal(0)
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        try:
            total += Decimal(match.group(1)) * _NS_PER_UNIT[match.group(2)]
        except DecimalException:  # beyond Decimal's exponent range: a million digits
            total = Decimal(_INT64_MAX + 1)
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, like 5s, 1m30s or 250ms")
    if total > _INT64_MAX:
        raise ValueError("duration too long: the limit is about 292 years")
    return int(total)


def ns_to_duration(ns: int) -> str:
    """The shortest Go-style spelling of a nanosecond count (for display and export)."""
    if ns == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("h", "m", "s", "ms", "us", "ns"):
        size = _NS_PER_UNIT[unit]
        if ns >= size:
            parts.append(f"{ns // size}{unit}")
            ns %= size
    return "".join(parts)


def _check_duration(text: str) -> str:
    duration_to_ns(text)
    return text


def _coerce_seconds(value: object) -> object:
    # A bare number in YAML means seconds, as in compose files.
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return f"{value}s"
    return value


Duration = Annotated[
    str,
    BeforeValidator(_coerce_seconds),
    AfterValidator(_check_duration),
    Field(json_schema_extra={"pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$"}),
]

_BYTES = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]i?|[kmgtp]i?|[KMGTP]?B|[kmgtp]?b)?$")
_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "p": 1000**5,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
    "pi": 1024**5,
    "kb": 1024,
    "mb": 1024**2,
    "gb": 1024**3,
    "tb": 1024**4,
    "pb": 1024**5,
}


def size_to_bytes(value: str | int) -> int:
    """``"256Mi"`` → 268435456. Kubernetes suffixes (Ki, Mi, …, k, M, …) and docker's (b, k, m, g)."""
    if isinstance(value, int):
        return _bounded_size(value)
    match = _BYTES.match(value.strip())
    if not match:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit, like 256Mi, 1Gi or 512m")
    number, unit = match.group(1), (match.group(2) or "").lower()
    # docker's single-letter units are binary (``512m`` is 512 MiB), Kubernetes' are decimal
    # only when upper case (``1M``); lower-case single letters follow docker.
    raw_unit = match.group(2) or ""
    if len(raw_unit) == 1 and raw_unit.islower() and raw_unit != "b":
        unit = raw_unit + "i"
    try:
        size = int(Decimal(number) * _BYTE_UNITS[unit])
    except DecimalException:  # beyond Decimal's exponent range: a million digits
        size = _INT64_MAX + 1
    return _bounded_size(size)


def _bounded_size(size: int) -> int:
    if size > _INT64_MAX:
        raise ValueError("size too large: the limit is 8 EiB")
    return size


def _check_size(value: str | int) -> str | int:
    if isinstance(value, int) and value < 0:
        raise ValueError("a size cannot be negative")
    size_to_bytes(value)
    return value


ByteSize = Annotated[
    str | int,
    AfterValidator(_check_size),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


def cpus_to_nano(value: str | float) -> int:
    """``0.5`` or ``"500m"`` → 500_000_000 nano-CPUs (what ``--limit-cpu 0.5`` sends)."""
    try:
        millis = isinstance(value, str) and value.endswith("m")
        amount = Decimal(str(value)[:-1]) / 1000 if millis else Decimal(str(value))
    except DecimalException:
        raise ValueError(f"invalid CPU amount {value!r}: use a number like 0.5 or millicores like 500m") from None
    if not amount.is_finite():  # .inf, .nan, "NaN": no amount of CPU
        raise ValueError(f"invalid CPU amount {value!r}: use a number like 0.5 or millicores like 500m")
    if amount < 0:
        raise ValueError("a CPU amount cannot be negative")
    if amount > Decimal(_INT64_MAX) / 1_000_000_000:  # compared before scaling: 1e999999 would overflow
        raise ValueError("CPU amount too large")
    return int(amount * 1_000_000_000)


def _check_cpus(value: str | float) -> str | float:
    cpus_to_nano(value)
    return value


CPUs = Annotated[
    str | float,
    AfterValidator(_check_cpus),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]
