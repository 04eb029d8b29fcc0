"""Translation of specs into Engine API payloads and the normalisation that compares them (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from swarmkeeper.api import RESOURCE_ADAPTER, SwarmNetwork, SwarmService
from swarmkeeper.api.units import cpus_to_nano, duration_to_ns, ns_to_duration, size_to_bytes
from swarmkeeper.swarm import labels as L
from swarmkeeper.swarm.build import References, bind_ids, build_network_spec, build_service_spec
from swarmkeeper.swarm.normalize import normalize_service


def service(spec: dict[str, Any], namespace: str | None = "shop", name: str = "web") -> SwarmService:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    res = RESOURCE_ADAPTER.validate_python({"kind": "SwarmService", "metadata": meta, "spec": spec})
    assert isinstance(res, SwarmService)
    return res


@pytest.mark.parametrize(
    ("text", "ns"),
    [("5s", 5_000_000_000), ("1m30s", 90_000_000_000), ("250ms", 250_000_000), ("1h", 3_600_000_000_000), ("0", 0)],
)
def test_durations(text: str, ns: int) -> None:
    assert duration_to_ns(text) == ns


def test_duration_round_trip_and_errors() -> None:
    assert ns_to_duration(90_000_000_000) == "1m30s"
    with pytest.raises(ValueError, match="invalid duration"):
        duration_to_ns("5 seconds")


def test_sizes_and_cpus() -> None:
    assert size_to_bytes("256Mi") == 256 * 1024 * 1024
    assert size_to_bytes("512m") == 512 * 1024 * 1024  # docker's lower-case unit is binary
    assert size_to_bytes("1G") == 1_000_000_000
    assert size_to_bytes(1024) == 1024
    assert cpus_to_nano(0.5) == 500_000_000
    assert cpus_to_nano("250m") == 250_000_000


def test_service_payload_like_stack_deploy() -> None:
    svc = service(
        {
            "image": "local/busybox:1",
            "replicas": 3,
            "env": {"A": "1"},
            "networks": [{"name": "backend", "aliases": ["api"]}],
            "secrets": [{"source": "token", "mode": "0400"}],
            "ports": [{"target": 80, "published": 8080, "mode": "host"}],
            "updateConfig": {"order": "start-first", "delay": "10s", "failureAction": "rollback"},
            "resources": {"limits": {"cpus": 0.5, "memory": "64Mi"}},
            "stopGracePeriod": "1m30s",
        }
    )
    refs = References(networks={"backend": "shop_backend"}, secrets={"token": "shop_token-v2"})
    payload = build_service_spec(svc, refs, file_env={"A": "0", "B": "2"})
    assert payload["Name"] == "shop_web"
    assert payload["Labels"][L.STACK_NAMESPACE] == "shop"
    assert payload["Labels"][L.MANAGED_BY] == "swarmkeeper"
    container = payload["TaskTemplate"]["ContainerSpec"]
    assert container["Env"] == ["A=1", "B=2"]  # spec.env wins over envFile
    assert container["Labels"][L.STACK_NAMESPACE] == "shop"
    assert container["StopGracePeriod"] == 90_000_000_000
    assert container["Secrets"] == [
        {
            "File": {"Name": "token", "UID": "0", "GID": "0", "Mode": 0o400},
            "SecretID": None,
            "SecretName": "shop_token-v2",
        }
    ]
    # Like docker stack deploy: the short name is an alias on every network.
    # The service's own name last, where docker stack deploy puts it.
    assert payload["TaskTemplate"]["Networks"] == [{"Target": "shop_backend", "Aliases": ["api", "web"]}]
    assert payload["Mode"] == {"Replicated": {"Replicas": 3}}
    assert payload["UpdateConfig"]["Order"] == "start-first"
    assert payload["UpdateConfig"]["FailureAction"] == "rollback"
    assert payload["UpdateConfig"]["Delay"] == 10_000_000_000
    assert payload["TaskTemplate"]["Resources"] == {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * 2**20}}
    assert payload["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "host"}
    ]
    bound = bind_ids(payload, {"shop_token-v2": "abc"}, {})
    assert bound["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] == "abc"
    assert payload["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] is None  # not mutated


def test_jobs_and_global_modes() -> None:
    assert build_service_spec(service({"image": "x", "mode": "global"}), References())["Mode"] == {"Global": {}}
    job = build_service_spec(
        service({"image": "x", "mode": "replicated-job", "replicas": 4, "maxConcurrent": 2}), References()
    )
    assert job["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 4}}
    assert "UpdateConfig" not in job


def test_normalize_ignores_engine_defaults_and_ids() -> None:
    svc = service({"image": "x", "networks": [{"name": "net"}], "secrets": [{"source": "s"}]})
    desired = build_service_spec(svc, References(networks={"net": "shop_net"}, secrets={"s": "shop_s-v1"}))
    inspected = bind_ids(desired, {"shop_s-v1": "sid"}, {})
    inspected["TaskTemplate"] = {
        **inspected["TaskTemplate"],
        "ForceUpdate": 3,
        "Runtime": "container",
        "Networks": [{"Target": "netid", "Aliases": ["web"]}],
    }
    inspected["TaskTemplate"]["ContainerSpec"] = {**inspected["TaskTemplate"]["ContainerSpec"], "Isolation": "default"}
    inspected["EndpointSpec"] = {"Mode": "vip"}
    inspected["Labels"] = {**inspected["Labels"], L.SPEC_HASH: "whatever"}
    assert normalize_service(inspected, {"netid": "shop_net"}) == normalize_service(desired)


def test_normalize_sees_a_hand_made_change() -> None:
    desired = build_service_spec(service({"image": "x", "env": {"A": "1"}}), References())
    changed = {**desired, "TaskTemplate": {**desired["TaskTemplate"]}}
    changed["TaskTemplate"]["ContainerSpec"] = {**desired["TaskTemplate"]["ContainerSpec"], "Env": ["A=1", "B=2"]}
    assert normalize_service(changed) != normalize_service(desired)
    scaled = {**desired, "Mode": {"Replicated": {"Replicas": 0}}}
    assert normalize_service(scaled) != normalize_service(desired)


def test_network_payload() -> None:
    res = RESOURCE_ADAPTER.validate_python(
        {
            "kind": "SwarmNetwork",
            "metadata": {"name": "backend", "namespace": "shop"},
            "spec": {"encrypted": True, "attachable": True, "ipam": {"config": [{"subnet": "10.9.0.0/24"}]}},
        }
    )
    assert isinstance(res, SwarmNetwork)
    payload = build_network_spec(res)
    assert payload["Name"] == "shop_backend"
    assert payload["Options"] == {"encrypted": ""}
    assert payload["IPAM"]["Config"] == [{"Subnet": "10.9.0.0/24"}]
    assert payload["Labels"][L.STACK_NAMESPACE] == "shop"
    assert L.SPEC_HASH in payload["Labels"]


def test_file_mode_accepts_octal_spellings() -> None:
    for mode in ("0400", 400, "0o400"):
        svc = service({"image": "x", "secrets": [{"source": "s", "mode": mode}]})
        assert svc.spec.secrets[0].mode == 0o400
    with pytest.raises(ValueError, match="octal"):
        service({"image": "x", "secrets": [{"source": "s", "mode": 292}]})
