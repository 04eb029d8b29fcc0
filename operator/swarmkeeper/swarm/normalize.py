"""Bring desired payloads and inspected specs to one comparable shape.

The engine fills in defaults, omits zero values, swaps network names for IDs and adds
bookkeeping of its own; compared raw, every pass would read as drift. Both sides go through the
same ``normalize_*`` function, so a default written out in the spec and the same default left to
the engine compare equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import labels as L
from .images import normalize_image

Path = tuple[str, ...]

# Values the engine writes when the request left them out (Engine API 1.41+).
_ENGINE_DEFAULTS: dict[Path, Any] = {
    ("TaskTemplate", "ContainerSpec", "Isolation"): "default",
    ("TaskTemplate", "Runtime"): "container",
    ("EndpointSpec", "Mode"): "vip",
    ("TaskTemplate", "RestartPolicy", "Condition"): "any",
    ("UpdateConfig", "Parallelism"): 1,
    ("UpdateConfig", "FailureAction"): "pause",
    ("UpdateConfig", "Order"): "stop-first",
    ("RollbackConfig", "Parallelism"): 1,
    ("RollbackConfig", "FailureAction"): "pause",
    ("RollbackConfig", "Order"): "stop-first",
    ("TaskTemplate", "ContainerSpec", "Healthcheck", "Retries"): 0,
}

# Bumped by `docker service update --force`; carried over on update, never reverted.
_NOT_COMPARED: frozenset[Path] = frozenset({("TaskTemplate", "ForceUpdate")})

# Zero here is a decision, not an absence.
_ZERO_MEANS_SOMETHING: frozenset[Path] = frozenset(
    {
        ("Mode", "Replicated", "Replicas"),
        ("Mode", "ReplicatedJob", "TotalCompletions"),
        ("UpdateConfig", "Parallelism"),
        ("RollbackConfig", "Parallelism"),
    }
)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == [] or value is False or value == 0


def _prune(value: Any, path: Path) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            sub = (*path, key)
            if sub in _NOT_COMPARED:
                continue
            item = _prune(item, sub)
            if _ENGINE_DEFAULTS.get(sub, _MISSING) == item and not isinstance(item, bool):
                continue
            if _empty(item) and not (sub in _ZERO_MEANS_SOMETHING and item == 0 and item is not False):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        # List items keep their place (an empty item still counts), only their insides are pruned.
        return [_prune(item, path) for item in value]
    return value


_MISSING = object()


def _without_bookkeeping(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (labels or {}).items() if k not in L.BOOKKEEPING}


def normalize_service(spec: Mapping[str, Any], network_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ServiceSpec (desired payload or ``Spec`` of an inspected service) in comparable form.

    ``network_names`` maps network IDs to names: the engine stores attachments by ID.
    """
    # Shallow copies of exactly what is rewritten below; _prune builds the rest anew, so the
    # caller's payload is never changed (a deep copy per service per pass was the pass's top cost).
    out: dict[str, Any] = dict(spec)
    task = dict(out.get("TaskTemplate") or {})
    out["TaskTemplate"] = task
    # Engine API < 1.44 may still report attachments at the top level (deprecated there).
    if out.get("Networks") and not task.get("Networks"):
        task["Networks"] = out["Networks"]
    out.pop("Networks", None)
    names = network_names or {}
    task["Networks"] = [
        # Aliases are a set to the engine; order in the spec is not meaningful.
        {**net, "Target": names.get(net["Target"], net["Target"]), "Aliases": sorted(net.get("Aliases") or [])}
        for net in task.get("Networks") or []
    ]
    container = dict(task.get("ContainerSpec") or {})
    task["ContainerSpec"] = container
    # The environment is a set of distinct names (the spec merges them); docker stack deploy sorts
    # it, env files put theirs first: order is not a difference.
    if container.get("Env"):
        container["Env"] = sorted(container["Env"])
    # "redis" and "redis:latest" are one image (a service made before references were normalised).
    if isinstance(container.get("Image"), str):
        container["Image"] = normalize_image(container["Image"])
    for kind in ("Secret", "Config"):
        if container.get(kind + "s"):
            container[kind + "s"] = [
                {k: v for k, v in ref.items() if k != kind + "ID"} for ref in container[kind + "s"]
            ]
    out["Labels"] = _without_bookkeeping(out.get("Labels"))
    return dict(_prune(out, ()))


def normalize_network(net: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a network that decide whether it must be recreated (networks are immutable)."""
    options = {
        k: v
        for k, v in (net.get("Options") or {}).items()
        if not k.startswith("com.docker.network.driver.overlay.vxlanid")
    }
    return dict(
        _prune(
            {
                "Name": net.get("Name"),
                "Driver": net.get("Driver"),
                "Attachable": net.get("Attachable"),
                "Internal": net.get("Internal"),
                "Options": options,
                "Labels": _without_bookkeeping(net.get("Labels")),
            },
            (),
        )
    )
