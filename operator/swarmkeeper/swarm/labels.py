"""Names and labels that tie swarm objects to specs.

Ownership is carried by labels on the swarm objects themselves, not kept in a local database, so
any front door (folder, Git, Kubernetes) and any restarted controller sees the same truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..api.key import Key

PREFIX: Final = "io.swarmkeeper."
MANAGED_BY: Final = PREFIX + "managed-by"
MANAGED_BY_VALUE: Final = "swarmkeeper"
KIND: Final = PREFIX + "kind"
NAME: Final = PREFIX + "name"
NAMESPACE: Final = PREFIX + "namespace"
SOURCE: Final = PREFIX + "source"
SPEC_HASH: Final = PREFIX + "spec-hash"
VERSION: Final = PREFIX + "version"
FINGERPRINT: Final = PREFIX + "fingerprint"
REVISION: Final = PREFIX + "revision"
# What docker stack deploy sets, so `docker stack ls/ps/services` list swarmkeeper's objects.
STACK_NAMESPACE: Final = "com.docker.stack.namespace"
STACK_IMAGE: Final = "com.docker.stack.image"

DEFAULT_SOURCE: Final = "default"

# Labels that record facts about the last change rather than desired state: never compared.
BOOKKEEPING: Final = frozenset({SPEC_HASH, FINGERPRINT, REVISION})


def swarm_name(name: str, namespace: str | None, own: str | None = None) -> str:
    """The swarm object's name: ``own`` (a spec's swarmName) or ``<namespace>_<name>``, as docker
    stack deploy names them."""
    if own:
        return own
    return f"{namespace}_{name}" if namespace else name


def short_name(name: str, namespace: str | None, own: str | None = None) -> str:
    """The name a stack's service answers to on its networks: its name within the stack."""
    if own:
        return own.removeprefix(f"{namespace}_") if namespace else own
    return name


def versioned_name(base: str, version: int) -> str:
    """Secrets and configs are immutable: each value gets its own swarm object."""
    return f"{base}-v{version}"


def ownership(kind: str, name: str, namespace: str | None, source: str) -> dict[str, str]:
    labels = {MANAGED_BY: MANAGED_BY_VALUE, KIND: kind, NAME: name, SOURCE: source}
    if namespace:
        labels[NAMESPACE] = namespace
        labels[STACK_NAMESPACE] = namespace
    return labels


def is_managed(labels: Mapping[str, str] | None) -> bool:
    return bool(labels) and labels.get(MANAGED_BY) == MANAGED_BY_VALUE  # type: ignore[union-attr]


def identity(labels: Mapping[str, str]) -> Key | None:
    """(kind, namespace, name) of a managed swarm object, or None for a foreign one."""
    if not is_managed(labels) or KIND not in labels or NAME not in labels:
        return None
    return Key(labels[KIND], labels.get(NAMESPACE) or None, labels[NAME])
