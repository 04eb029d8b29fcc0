"""Tell whether a secret's value changed without ever storing the value or a plain digest of it.

Swarm never hands a secret's value back, so change detection needs something stored beside it.
A plain SHA-256 would let anyone who can list secrets test guesses at wire speed; instead each
version carries a salted scrypt hash (memory-hard, random salt per version). Results are cached in
memory only, keyed by the salt and the value's in-process digest, so a steady-state pass does not
pay the key-derivation cost again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

# 2^13 * 8 * 128 bytes = 8 MiB and ~20 ms per derivation: costly for a guessing attack on every
# stored fingerprint, cheap enough for a pass that checks each secret once per process.
_LOG_N, _R, _P, _LEN = 13, 8, 1, 32
_PREFIX = "scrypt"
_cache: dict[tuple[int, bytes, bytes], bytes] = {}
_lock = threading.Lock()


def _derive(value: bytes, salt: bytes, log_n: int = _LOG_N) -> bytes:
    key = (log_n, salt, hashlib.sha256(value).digest())
    with _lock:
        hit = _cache.get(key)
    if hit is None:
        hit = hashlib.scrypt(value, salt=salt, n=2**log_n, r=_R, p=_P, dklen=_LEN, maxmem=64 * 1024 * 1024)
        with _lock:
            _cache[key] = hit
    return hit


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(value: bytes) -> str:
    """A label-safe fingerprint: ``scrypt$<log2 N>$<salt>$<hash>``, different on every call."""
    salt = os.urandom(16)
    return f"{_PREFIX}${_LOG_N}${_b64(salt)}${_b64(_derive(value, salt))}"


def matches(value: bytes, stored: str | None) -> bool:
    """Whether ``value`` is the value ``stored`` was made from (constant-time compare)."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    log_n, salt, digest = parsed
    return hmac.compare_digest(_derive(value, salt, log_n), digest)


def _parse(stored: str | None) -> tuple[int, bytes, bytes] | None:
    """(log2 N, salt, hash) of a stored fingerprint; None for anything that is not one of ours."""
    try:
        prefix, log_n, salt, digest = (stored or "").split("$")
        if prefix != _PREFIX or not 10 <= int(log_n) <= 20:
            return None
        return int(log_n), _unb64(salt), _unb64(digest)
    except ValueError:
        return None


def check_ahead(pairs: Iterable[tuple[bytes, str | None]]) -> None:
    """Derive what ``matches`` will need for these (value, stored) pairs, on every core at once.

    A one-shot command checks every secret once: twenty of them cost 0.4 s one after the other.
    hashlib.scrypt releases the GIL, so threads run them side by side; ``matches`` then hits the cache.
    """
    # Anything not ours to check: matches() says False without deriving anything.
    work = [(value, parsed[1], parsed[0]) for value, stored in pairs if (parsed := _parse(stored)) is not None]
    if len(work) < 2:
        return
    with ThreadPoolExecutor(max_workers=min(len(work), os.cpu_count() or 1)) as pool:
        list(pool.map(lambda job: _derive(*job), work))
