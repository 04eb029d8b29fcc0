"""SOPS-encrypted files with age keys, decrypted in memory: secrets can live in Git encrypted.

A SOPS file keeps its structure in the clear and encrypts each value as
``ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`` with one random data key; the data key is encrypted
once per recipient (here: age, an armored age file in ``sops.age[].enc``), and ``sops.mac``
holds the SHA-512 of every value, encrypted with the data key, so a file whose values were
changed, swapped or dropped by someone without the key is refused.

The format is chosen by the file name, as ``sops`` itself does: ``.yaml``/``.yml`` and ``.json``
decrypt to the document without its ``sops`` block; any other name is a "binary" file (JSON
holding one ``data`` value) and decrypts to exactly the bytes that were encrypted.

This module must never write plaintext anywhere, log it or put it in an exception message:
errors name the file and the problem, values never.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

Format = Literal["yaml", "json", "binary"]

# What sops writes first into the hash when only encrypted values are authenticated
# (``mac_only_encrypted``), so such a MAC never equals one over all values.
_MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69")
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
_ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
DEFAULT_KEY_FILE = Path("~/.config/sops/age/keys.txt")  # where sops itself looks last


class SopsError(Exception):
    """Why a file cannot be decrypted; never contains a value from the file."""


def format_of(name: str) -> Format:
    lower = name.lower()
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if lower.endswith(".json"):
        return "json"
    return "binary"


# -- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgeKeys:
    """age identities (``AGE-SECRET-KEY-1…``), and where they came from (for messages)."""

    identities: tuple[Any, ...]
    origin: str

    @classmethod
    def parse(cls, text: str, origin: str) -> AgeKeys:
        from pyrage import x25519  # type: ignore[import-untyped]

        identities = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.upper().startswith("AGE-SECRET-KEY-1"):
                raise SopsError(f"{origin}: line {number} is not an age secret key (AGE-SECRET-KEY-1…)")
            try:
                identities.append(x25519.Identity.from_str(line))
            except Exception:  # pyrage raises its own IdentityError; the key itself is never shown
                raise SopsError(f"{origin}: line {number} is not a valid age secret key") from None
        if not identities:
            raise SopsError(f"{origin}: no age secret key (AGE-SECRET-KEY-1…) in it")
        return cls(tuple(identities), origin)

    @classmethod
    def load(cls, key_file: Path | None = None, environ: Mapping[str, str] | None = None) -> AgeKeys | None:
        """Keys from ``key_file``, else ``$SOPS_AGE_KEY``, else ``$SOPS_AGE_KEY_FILE``, else sops'
        default file when it exists; None when there are none (encrypted files then fail to load)."""
        env = os.environ if environ is None else environ
        if key_file is not None:
            return cls.parse(_read_key_file(key_file), str(key_file))
        if env.get("SOPS_AGE_KEY"):
            return cls.parse(env["SOPS_AGE_KEY"], "$SOPS_AGE_KEY")
        if env.get("SOPS_AGE_KEY_FILE"):
            return cls.parse(_read_key_file(Path(env["SOPS_AGE_KEY_FILE"])), env["SOPS_AGE_KEY_FILE"])
        default = DEFAULT_KEY_FILE.expanduser()
        if default.is_file():
            return cls.parse(_read_key_file(default), str(default))
        return None


def _read_key_file(path: Path) -> str:
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise SopsError(f"{path}: cannot read the age key file: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise SopsError(f"{path}: the age key file is not text") from None


# -- detection -------------------------------------------------------------------------------


def parse_document(data: bytes, fmt: Format) -> Any:
    """The file as data (YAML/JSON; binary files are JSON once encrypted), or None if unparsable."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        if fmt == "yaml":
            docs = list(YAML(typ="safe", pure=True).load_all(text))
            return docs[0] if len(docs) == 1 else None
        return json.loads(text)
    except (YAMLError, ValueError):
        return None


def is_encrypted(document: Any) -> bool:
    """A mapping with a ``sops`` block that carries a MAC: what ``sops encrypt`` produces."""
    return isinstance(document, dict) and isinstance(document.get("sops"), dict) and "mac" in document["sops"]


# -- decryption ------------------------------------------------------------------------------


def decrypt(document: Mapping[str, Any], fmt: Format, keys: AgeKeys | None, name: str) -> bytes:
    """The plaintext of an encrypted ``document`` (as from ``parse_document``), MAC verified."""
    meta = document["sops"]
    if not isinstance(meta, dict):
        raise SopsError(f"{name}: the sops block is not a mapping")
    groups = meta.get("key_groups") or []
    if len(groups) > 1 or (meta.get("shamir_threshold") and int(meta["shamir_threshold"]) > 1):
        # Several groups split the data key (Shamir): one group's key alone decrypts nothing.
        raise SopsError(f"{name}: files with several key groups (Shamir) are not supported; use one key group")
    data_key = _data_key(meta, keys, name)
    rules = _Rules.of(meta)
    tree = {k: v for k, v in document.items() if k != "sops"}
    walk = _Walk(data_key, rules, bool(meta.get("mac_only_encrypted")), name)
    if walk.mac_only_encrypted:
        walk.digest.update(_MAC_ONLY_ENCRYPTED_INIT)
    plain = walk.map(tree, [])
    lastmodified = _rfc3339(meta.get("lastmodified"), name)
    mac = meta.get("mac")
    if not isinstance(mac, str) or not mac:
        raise SopsError(f"{name}: the file has no MAC (sops.mac); refusing to trust it")
    try:
        expected = _decrypt_value(mac, data_key, lastmodified)
    except SopsError:
        raise SopsError(f"{name}: the MAC cannot be decrypted; the file was changed without its key") from None
    if not isinstance(expected, bytes) or not hmac.compare_digest(
        expected.decode("ascii", "replace").upper(), walk.digest.hexdigest().upper()
    ):
        raise SopsError(f"{name}: MAC mismatch: the file was changed after it was encrypted")
    return _emit(plain, fmt, name)


def _data_key(meta: Mapping[str, Any], keys: AgeKeys | None, name: str) -> bytes:
    import pyrage

    entries = list(_age_entries(meta))
    if not entries:
        raise SopsError(f"{name}: encrypted for no age recipient (only age keys are supported)")
    recipients = ", ".join(sorted({str(e.get("recipient", "?")) for e in entries}))
    if keys is None:
        raise SopsError(
            f"{name}: is SOPS-encrypted (for {recipients}) but no age key was given "
            "(--age-key-file, $SOPS_AGE_KEY or $SOPS_AGE_KEY_FILE)"
        )
    for entry in entries:
        enc = entry.get("enc")
        if not isinstance(enc, str):
            continue
        try:
            key = pyrage.decrypt(_dearmor(enc), list(keys.identities))
        except Exception:  # pyrage.DecryptError: not for these identities (or damaged)
            continue
        if len(key) == 32:
            return bytes(key)
    raise SopsError(f"{name}: none of the age keys from {keys.origin} can decrypt it (recipients: {recipients})")


def _age_entries(meta: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for entry in meta.get("age") or []:
        if isinstance(entry, dict):
            yield entry
    for group in meta.get("key_groups") or []:
        if isinstance(group, dict):
            for entry in group.get("age") or []:
                if isinstance(entry, dict):
                    yield entry


def _dearmor(text: str) -> bytes:
    body = text.strip()
    if not body.startswith(_ARMOR_BEGIN):
        return body.encode("ascii", "replace")  # binary age data stored as is
    if _ARMOR_END not in body:
        raise SopsError("truncated age armor")
    inner = body[len(_ARMOR_BEGIN) : body.index(_ARMOR_END)]
    try:
        return base64.b64decode("".join(inner.split()), validate=True)
    except binascii.Error:
        raise SopsError("damaged age armor") from None


@dataclass(frozen=True)
class _Rules:
    """Which values sops encrypted: all of them unless the file's metadata narrows it."""

    unencrypted_suffix: str | None
    encrypted_suffix: str | None
    unencrypted_regex: re.Pattern[str] | None
    encrypted_regex: re.Pattern[str] | None
    by_shape: bool  # comment-driven rules: comments are not kept here, so trust the value's form

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> _Rules:
        def regex(key: str) -> re.Pattern[str] | None:
            value = meta.get(key)
            return re.compile(value) if isinstance(value, str) and value else None

        return cls(
            meta.get("unencrypted_suffix") or None,
            meta.get("encrypted_suffix") or None,
            regex("unencrypted_regex"),
            regex("encrypted_regex"),
            bool(meta.get("unencrypted_comment_regex") or meta.get("encrypted_comment_regex")),
        )

    def encrypted(self, path: list[str], value: Any) -> bool:
        if self.by_shape:
            return isinstance(value, str) and (value == "" or bool(_ENC.match(value)))
        encrypted = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(self.unencrypted_regex.search(p) for p in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(self.encrypted_regex.search(p) for p in path)
        return encrypted


@dataclass
class _Walk:
    """One decryption pass over a tree: the data key, the rules, and the MAC being computed."""

    key: bytes
    rules: _Rules
    mac_only_encrypted: bool
    name: str
    digest: Any = field(default_factory=hashlib.sha512)

    def map(self, tree: Mapping[Any, Any], path: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            if not isinstance(k, str):
                raise SopsError(f"{self.name}: only string keys are supported")
            out[k] = self.value(v, [*path, k])
        return out

    def value(self, value: Any, path: list[str]) -> Any:
        if isinstance(value, dict):
            return self.map(value, path)
        if isinstance(value, list):
            return [self.value(v, path) for v in value]  # items share their list's path, as in sops
        if value is None:
            return None  # sops neither encrypts nor authenticates nulls
        where = ":".join(path)
        encrypted = self.rules.encrypted(path, value)
        if encrypted:
            if not isinstance(value, str):
                raise SopsError(f"{self.name}: {where}: expected an encrypted value; the file was changed")
            try:
                value = _decrypt_value(value, self.key, where + ":")
            except SopsError as exc:
                raise SopsError(f"{self.name}: {where}: {exc}") from None
        # Every value is authenticated, or only the encrypted ones with mac_only_encrypted.
        if encrypted or not self.mac_only_encrypted:
            self.digest.update(_mac_bytes(value))
        return value


def _decrypt_value(text: str, key: bytes, aad: str) -> Any:
    if text == "":
        return b""  # sops leaves empty values unencrypted
    m = _ENC.match(text)
    if m is None:
        raise SopsError("not an encrypted value (ENC[AES256_GCM,…])")
    return _typed(_plaintext(m, key, aad), m.group(4))


def _plaintext(m: re.Match[str], key: bytes, aad: str) -> bytes:
    """The plaintext of an ``ENC[…]`` value, its data, IV and tag checked."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        data, iv, tag = (base64.b64decode(part, validate=True) for part in m.group(1, 2, 3))
    except binascii.Error:
        raise SopsError("damaged encrypted value (bad base64)") from None
    if not 8 <= len(iv) <= 128:
        raise SopsError("damaged encrypted value (bad IV)")
    try:
        return AESGCM(key).decrypt(iv, data + tag, aad.encode("utf-8"))
    except InvalidTag:
        raise SopsError("cannot be decrypted: wrong key, or the value was changed or moved") from None


def _typed(plain: bytes, kind: str) -> Any:
    """A decrypted value as the type sops recorded for it."""
    try:
        match kind:
            case "str" | "bytes":
                return plain
            case "int":
                return int(plain)
            case "float":
                return float(plain)
            case "bool":
                return plain.decode().strip().lower() in ("true", "1", "t")
            case "time":
                return _Time(plain.decode())
            case "comment":
                return _Comment(plain)
    except ValueError:
        raise SopsError(f"the decrypted value is not a valid {kind}") from None
    raise SopsError(f"unknown value type {kind!r}")


class _Time(str):
    """A timestamp value: authenticated and emitted as the text sops encrypted."""


class _Comment(bytes):
    """An encrypted comment: not authenticated, and dropped from the output."""


def _mac_bytes(value: Any) -> bytes:
    """Go's ``sops.ToBytes`` of a value, the form the MAC is computed over."""
    if isinstance(value, _Comment):
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f") if value == value and abs(value) != float("inf") else repr(value)
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text.encode()
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z").encode()
    return str(value).encode("utf-8", "surrogateescape")


def _rfc3339(value: Any, name: str) -> str:
    """``lastmodified`` as Go's ``time.Format(time.RFC3339)`` writes it: the MAC's associated data."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SopsError(f"{name}: sops.lastmodified is not a timestamp") from None
    else:
        raise SopsError(f"{name}: sops.lastmodified is missing")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset() or timedelta(0)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if offset == timedelta(0):
        return base + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{base}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _emit(plain: dict[str, Any], fmt: Format, name: str) -> bytes:
    if fmt == "binary":
        data = plain.get("data")
        if not isinstance(data, bytes):
            raise SopsError(f"{name}: no binary data in the file (expected a SOPS file with a data value)")
        return data
    clean = _plain_data(plain)
    if fmt == "json":
        return (json.dumps(clean, indent=4, ensure_ascii=False) + "\n").encode("utf-8")
    import io

    yaml = YAML(typ="rt", pure=True)  # keeps the file's key order (the safe dumper sorts keys)
    yaml.default_flow_style = False
    yaml.indent(mapping=4, sequence=6, offset=4)  # as sops writes YAML
    buf = io.StringIO()
    yaml.dump(clean, buf)
    return buf.getvalue().encode("utf-8")


def _plain_data(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_data(v) for k, v in value.items() if not isinstance(v, _Comment)}
    if isinstance(value, list):
        return [_plain_data(v) for v in value if not isinstance(v, _Comment)]
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value
