"""The swarm's unlock key in the file the spec names: written privately, compared in constant time.

With autolock on, a restarted manager stays locked until given this key, so whoever holds the
file can open the raft data (secrets included) of a stolen manager disk. The file is created with
mode 0600 from its first byte and replaced atomically; the key is handled as ``SecretStr`` and
this module never logs it or puts it in a message.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from pydantic import SecretStr

from ..loading.writes import write_atomic


def read_key(path: Path) -> SecretStr | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return SecretStr(text) if text else None


def write_key(path: Path, key: SecretStr) -> None:
    """Atomically, readable by the owner only, from the first byte on (never a wider mode in between)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, key.get_secret_value().encode() + b"\n", mode=0o600)


def same_key(stored: SecretStr | None, current: SecretStr) -> bool:
    if stored is None:
        return False
    return hmac.compare_digest(stored.get_secret_value().encode(), current.get_secret_value().encode())
