"""Adoption planning (pure): what ``--adopt`` takes over, how, and what it refuses."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from swarmkeeper.api import Key, SwarmNetwork, SwarmService
from swarmkeeper.engine.desired import resolve_desired
from swarmkeeper.engine.plan import Plan, make_plan
from swarmkeeper.loading import Manifest, load_text
from swarmkeeper.swarm import labels as L
from swarmkeeper.swarm.build import References, bind_ids, build_network_spec, build_service_spec
from swarmkeeper.swarm.observe import SwarmState

SPECS = """
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmNetwork
metadata: {name: back, namespace: shop}
spec: {attachable: true}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {name: token, namespace: shop}
spec: {stringData: s3cret}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {name: web, namespace: shop}
spec:
  image: local/busybox:1
  args: [sleep, "3600"]
  replicas: 2
  networks: [{name: back}]
  secrets: [{source: token}]
"""


def manifests(text: str = SPECS) -> list[Manifest]:
    result = load_text(textwrap.dedent(text), Path("specs/app.yaml"))
    assert result.ok, result.errors
    return result.manifests


def stack(replicas: int = 2, encrypted: bool = False) -> SwarmState:
    """What `docker stack deploy` leaves: the same objects with only the stack label."""
    stack_label = {L.STACK_NAMESPACE: "shop"}
    resources = [m.resource for m in manifests()]
    svc = next(r for r in resources if isinstance(r, SwarmService))
    payload = build_service_spec(svc, References(networks={"back": "shop_back"}, secrets={"token": "shop_token"}))
    payload = bind_ids(payload, {"shop_token": "sec1"}, {})
    payload["Labels"] = {**stack_label, L.STACK_IMAGE: "local/busybox:1"}
    payload["Mode"]["Replicated"]["Replicas"] = replicas
    payload["TaskTemplate"]["Networks"][0]["Target"] = "net1"
    payload["TaskTemplate"]["ContainerSpec"]["Privileges"] = {"CredentialSpec": None, "SELinuxContext": None}
    net = next(r for r in resources if isinstance(r, SwarmNetwork))
    network: dict[str, Any] = {**build_network_spec(net), "Id": "net1", "Scope": "swarm", "Labels": stack_label}
    if encrypted:
        network["Options"] = {"encrypted": ""}
    return SwarmState(
        services=[{"ID": "svc1", "Version": {"Index": 9}, "Spec": payload}],
        tasks=[],
        networks=[network],
        secrets=[{"ID": "sec1", "Version": {"Index": 3}, "Spec": {"Name": "shop_token", "Labels": stack_label}}],
        configs=[],
    )


def plan(state: SwarmState, adopt: bool = True, text: str = SPECS) -> Plan:
    ms = manifests(text)
    return make_plan(resolve_desired(ms, state, adopt=adopt), state, adopt=adopt)


def test_without_adopt_foreign_objects_are_refused() -> None:
    p = plan(stack(), adopt=False)
    assert {e.key for e in p.errors} >= {("SwarmService", "shop", "web"), ("SwarmNetwork", "shop", "back")}
    assert [s.action for s in p.steps] == ["create"]  # only shop_token-v1: its name is free


def test_a_matching_stack_is_taken_over_by_labels_alone() -> None:
    state = stack()
    p = plan(state)
    steps = {(s.type, s.reason, s.action) for s in p.steps}
    assert steps == {("network", "adopt", "update"), ("secret", "adopt", "update"), ("service", "adopt", "update")}
    service = next(s for s in p.steps if s.type == "service")
    live = state.services[0]["Spec"]
    assert service.payload is not None
    # The live spec goes back untouched, fields the spec leaves to the engine included; only labels differ.
    assert {k: v for k, v in service.payload.items() if k != "Labels"} == {
        k: v for k, v in live.items() if k != "Labels"
    }
    assert service.payload["Labels"][L.MANAGED_BY] == "swarmkeeper"
    assert service.payload["Labels"][L.STACK_NAMESPACE] == "shop"
    assert all(c.path.startswith("Labels.") for c in service.changes)
    assert not service.with_registry_auth  # credentials would change the task's pull options
    # The secret keeps its object (version 0); the takeover carries the value for swarm to compare.
    secret = next(s for s in p.steps if s.type == "secret")
    assert secret.swarm_name == "shop_token" and secret.object_id == "sec1"
    assert secret.payload is not None
    assert secret.payload["Labels"][L.VERSION] == "0" and "Data" in secret.payload
    # The network cannot be relabelled: the step records the takeover and calls nothing.
    network = next(s for s in p.steps if s.type == "network")
    assert network.payload is None
    assert not p.unmanaged


def test_a_differing_service_is_adopted_and_updated() -> None:
    p = plan(stack(replicas=5))
    service = next(s for s in p.steps if s.type == "service")
    assert service.reason == "adopt + update"
    assert "Mode.Replicated.Replicas" in [c.path for c in service.changes]
    assert service.payload is not None
    assert service.payload["Mode"] == {"Replicated": {"Replicas": 2}}


def test_a_differing_network_in_use_is_refused_and_its_services_left_alone() -> None:
    p = plan(stack(encrypted=True))
    messages = {e.key: e.message for e in p.errors}
    assert "made outside swarmkeeper and differs" in messages[Key("SwarmNetwork", "shop", "back")]
    assert ("SwarmService", "shop", "web") in messages
    assert not [s for s in p.steps if s.type == "service"]


def test_after_adoption_the_network_stays_adopted_without_the_flag() -> None:
    state = stack()
    # The pass after --adopt: the service carries ownership labels, the network cannot.
    ms = manifests()
    desired = resolve_desired(ms, state, adopt=True)
    svc = state.services[0]
    svc["Spec"]["Labels"] = desired.services[Key("SwarmService", "shop", "web")].payload["Labels"]
    state = SwarmState(state.services, [], state.networks, state.secrets, [])
    p = plan(state, adopt=False)
    assert not [e for e in p.errors if e.key == ("SwarmNetwork", "shop", "back")]
    assert not [s for s in p.steps if s.type == "network"]
    assert ("network", "shop_back") not in p.unmanaged
