"""Asking a registry, through the engine, which digest a tag points at.

The engine's distribution endpoint reaches the registry with the credentials docker's client
config holds for it (``docker login``), as ``docker service create`` and ``docker stack deploy``
do to pin an image; a private registry works the same way. Errors carry the registry's words,
never a credential.
"""

from __future__ import annotations

from .connect import EngineClient
from .errors import EngineError, call


def resolve_digest(client: EngineClient, image: str) -> str:
    """The digest (``sha256:...``) that ``image`` names in its registry; EngineError otherwise."""
    result = call(lambda: client.inspect_distribution(image))
    digest = (result.get("Descriptor") or {}).get("digest")  # an OCI descriptor: lower-case keys
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise EngineError(f"resolve image {image}: the registry gave no digest")
    return digest
