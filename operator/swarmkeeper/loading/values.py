"""The bytes of each SwarmSecret and SwarmConfig: from a file, an environment variable or inline.

Resolved while loading, so a missing file or variable, bad base64 or a value swarm would refuse
is reported against the spec's line before anything is applied. Messages name paths and
variables, never the value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from pydantic import SecretBytes

from ..api import SwarmConfig, SwarmSecret, ValueSpec
from .errors import SpecError, shorten
from .fieldpath import FieldPath
from .files import FileProblem, KiB, format_size, inside_root, read_bounded
from .manifest import Manifest

MAX_VALUE_BYTES = 500 * KiB  # swarm takes secrets and configs of 1 byte up to, not including, this


class _Unresolved(Exception):
    def __init__(self, path: FieldPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def resolve_value(manifest: Manifest, environ: Mapping[str, str]) -> tuple[SecretBytes | None, list[SpecError]]:
    """The value of a SwarmSecret or SwarmConfig manifest, or the error that prevents it."""
    resource = manifest.resource
    if not isinstance(resource, SwarmSecret | SwarmConfig):
        raise TypeError(f"{resource.kind} has no value")
    try:
        path, raw = _read(manifest, resource.spec, environ)
    except _Unresolved as exc:
        return None, [manifest.error(exc.path, exc.message)]
    if not raw:
        return None, [manifest.error(path, "the value is empty; swarm needs at least 1 byte")]
    if len(raw) >= MAX_VALUE_BYTES:
        return None, [manifest.error(path, f"the value must be smaller than {format_size(MAX_VALUE_BYTES)}")]
    return SecretBytes(raw), []


def _read(manifest: Manifest, spec: ValueSpec, environ: Mapping[str, str]) -> tuple[FieldPath, bytes]:
    if spec.file is not None:
        return ("spec", "file"), _read_file(manifest, spec.file)
    if spec.env is not None:
        value = environ.get(spec.env)
        if value is None:
            raise _Unresolved(("spec", "env"), f'environment variable "{shorten(spec.env)}" is not set')
        # os.environ decodes undecodable bytes as surrogates; this gives the original bytes back.
        return ("spec", "env"), value.encode("utf-8", "surrogateescape")
    if spec.string_data is not None:
        return ("spec", "stringData"), spec.string_data.get_secret_value().encode("utf-8")
    if spec.data is not None:
        # Long base64 is often wrapped over several lines in YAML; whitespace is never part of it.
        text = "".join(spec.data.get_secret_value().split())
        try:
            return ("spec", "data"), base64.b64decode(text, validate=True)
        except binascii.Error:
            raise _Unresolved(("spec", "data"), "not valid base64") from None
    # The model guarantees exactly one source; the last one is secretRef.
    raise _Unresolved(("spec", "secretRef"), "secretRef is only valid for objects applied through Kubernetes")


def _read_file(manifest: Manifest, name: str) -> bytes:
    origin = manifest.origin
    if origin is None:
        raise _Unresolved(("spec", "file"), "a file value needs a spec file to be relative to")
    path = origin.file.parent / name
    try:
        return read_bounded(inside_root(path, origin.root), MAX_VALUE_BYTES)
    except FileProblem as exc:
        raise _Unresolved(("spec", "file"), f"{shorten(str(path), 256)}: {exc}") from None
