"""Adoption: taking over swarm objects made outside swarmkeeper (a ``docker stack deploy``) in place.

Ownership lives in labels, so adopting is relabelling, done without restarting a task:

* a **service** whose spec already equals the desired one gets its live spec back with only the
  service labels changed (service labels are not part of the task template, so swarm starts no
  task); one that differs is updated to the desired spec, which restarts its tasks, and is
  reported as "adopt + update";
* a **secret or config** keeps its object as version 0. Swarm returns no secret values, but it
  compares them: a label update that carries the spec's value is refused unless the value is the
  one it holds. Refused, the object is relabelled without a fingerprint, so the pass creates a new
  version from the spec's value and rolls the services onto it (their tasks restart);
* a **network** cannot be relabelled (swarm networks are immutable). One whose shape matches the
  spec is used by reference; it stays adopted while a managed service of its namespace is
  attached to it. A differing one is recreated if nothing uses it, else refused.

Everything here but ``take_over_value`` is pure. Nothing here ever touches a managed object.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

from ..api import Key
from ..swarm import labels as L
from ..swarm import mutate
from ..swarm.build import Payload
from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError
from ..swarm.normalize import normalize_network
from ..swarm.observe import Obj, SwarmState
from .fingerprint import fingerprint

ValueKind = mutate.ValueKind
_VXLAN = "com.docker.network.driver.overlay.vxlanid"  # chosen by swarm, not part of a network's shape


def foreign_service(state: SwarmState, swarm_name: str) -> Obj | None:
    return next(
        (s for s in state.services if s["Spec"]["Name"] == swarm_name and not L.is_managed(s["Spec"].get("Labels"))),
        None,
    )


def foreign_network(state: SwarmState, swarm_name: str) -> Obj | None:
    return next(
        (
            n
            for n in state.networks
            if n["Name"] == swarm_name and n.get("Scope") == "swarm" and not L.is_managed(n.get("Labels"))
        ),
        None,
    )


def foreign_value(state: SwarmState, kind: ValueKind, swarm_name: str) -> Obj | None:
    objs = state.secrets if kind == "secret" else state.configs
    return next(
        (o for o in objs if o["Spec"]["Name"] == swarm_name and not L.is_managed(o["Spec"].get("Labels"))),
        None,
    )


def adopted_networks(state: SwarmState) -> dict[Key, Obj]:
    """Foreign networks taken over by reference: ``<ns>_<name>``, attached to a managed service of ``ns``.

    Swarm cannot relabel a network, so its adoption is recorded by its users: a managed service
    can only be attached to a foreign network of its own namespace after an adoption (otherwise
    the name conflict keeps the service from being applied at all).
    """
    by_id = {n["Id"]: n for n in state.networks if n.get("Scope") == "swarm" and not L.is_managed(n.get("Labels"))}
    out: dict[Key, Obj] = {}
    for (_, namespace, _), svc in state.managed_services.items():
        if not namespace:
            continue
        spec = svc["Spec"]
        for attachment in (spec.get("TaskTemplate") or {}).get("Networks") or spec.get("Networks") or []:
            net = by_id.get(attachment.get("Target", ""))
            if net is not None and net["Name"].startswith(namespace + "_"):
                out[Key("SwarmNetwork", namespace, net["Name"][len(namespace) + 1 :])] = net
    return out


def network_shape(net: Mapping[str, Any]) -> dict[str, Any]:
    """What decides whether a network is the one a spec asks for; labels are ownership, not shape."""
    shape = normalize_network(net)
    shape.pop("Labels", None)
    # An option without a value (`encrypted`) is still there: normalizing would drop it as empty.
    options = {k: v for k, v in (net.get("Options") or {}).items() if not k.startswith(_VXLAN)}
    if options:
        shape["Options"] = options
    return shape


def relabelled_service(live: Mapping[str, Any], labels: Mapping[str, str]) -> Payload:
    """The live spec, untouched but for the service labels: swarm restarts no task for this update."""
    payload = copy.deepcopy(dict(live))
    payload["Labels"] = dict(labels)
    return payload


def value_takeover(
    kind: str,
    name: str,
    namespace: str | None,
    user_labels: Mapping[str, str],
    value: bytes | None,
    source: str,
    template_driver: str | None = None,
    own_name: str | None = None,
) -> Payload:
    """Label update that makes a foreign secret/config version 0 of the spec. It carries the spec's
    value, for swarm to check; without one (values not read) the object gets no fingerprint, and
    the next pass that has the value makes a new version from it."""
    from ..swarm.build import value_hash

    labels = {**user_labels, **L.ownership(kind, name, namespace, source)}
    labels[L.VERSION] = "0"
    labels[L.SPEC_HASH] = value_hash(user_labels, template_driver)
    payload: Payload = {"Name": L.swarm_name(name, namespace, own_name), "Labels": labels}
    if value is not None:
        payload["Data"] = base64.b64encode(value).decode("ascii")
    return payload


VALUE_DIFFERS = "holds a different value than the spec: a new version is created and services move to it"


def take_over_value(client: EngineClient, kind: ValueKind, object_id: str, payload: Payload) -> list[str]:
    """Relabel a foreign secret/config as version 0; returns warnings (the value differed)."""
    try:
        if "Data" in payload:
            # Derived only now (it is slow on purpose); kept only if swarm confirms the value.
            value = base64.b64decode(payload["Data"])
            payload = {**payload, "Labels": {**payload["Labels"], L.FINGERPRINT: fingerprint(value)}}
        mutate.update_value_labels(client, kind, object_id, payload)
        return []
    except EngineError as exc:
        # Swarm refuses a label update whose data differs from what it holds ("only updates to
        # Labels are allowed"): that is the answer to "is it the same value?".
        if exc.status != 400 or "Data" not in payload:
            raise
    labels = {k: v for k, v in payload["Labels"].items() if k != L.FINGERPRINT}
    mutate.update_value_labels(client, kind, object_id, {"Name": payload["Name"], "Labels": labels})
    return [VALUE_DIFFERS]
