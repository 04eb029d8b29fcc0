"""Image references as the docker CLI sends them to the engine.

``docker service create redis`` and ``docker stack deploy`` send a reference that names no tag
and no digest as ``redis:latest``; the engine stores what it is sent. A spec that says
``image: redis`` must build the same service, or adopting a stack would roll every such service
and a plan would show a change where there is none.
"""

from __future__ import annotations


def normalize_image(reference: str) -> str:
    """``reference`` with ``:latest`` added when it has neither a tag nor a digest."""
    if "@" in reference:
        return reference
    last = reference.rsplit("/", 1)[-1]  # a registry's :port is before the last slash
    return reference if ":" in last else f"{reference}:latest"
