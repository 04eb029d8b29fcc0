"""Export (pure): what runs → specs that build the same payloads, and say what they cannot carry."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from swarmkeeper.api import RESOURCE_ADAPTER, SwarmNetwork, SwarmService
from swarmkeeper.engine.diff import diff
from swarmkeeper.sources.migrate.export import Exported, export_state, spec_name
from swarmkeeper.swarm import labels as L
from swarmkeeper.swarm.build import References, bind_ids, build_network_spec, build_service_spec
from swarmkeeper.swarm.normalize import normalize_service
from swarmkeeper.swarm.observe import SwarmState

RICH: dict[str, Any] = {
    "image": "nginx:1.27@sha256:" + "a" * 64,
    "command": ["/entry.sh"],
    "args": ["-g", "daemon off;"],
    "env": {"B": "2", "A": "x=y"},
    "labels": {"team": "shop"},
    "containerLabels": {"tier": "front"},
    "replicas": 3,
    "networks": [{"name": "back", "aliases": ["www"]}, {"name": "proxy", "external": True}],
    "secrets": [{"source": "token", "target": "token.txt", "uid": "33", "mode": "0400"}],
    "configs": [{"source": "conf", "target": "/etc/app.conf"}],
    "ports": [{"target": 80, "published": 8080}, {"target": 53, "protocol": "udp", "mode": "host", "published": 53}],
    "placement": {"constraints": ["node.role==worker"], "preferences": [{"spread": "node.labels.zone"}]},
    "resources": {"limits": {"cpus": 0.5, "memory": "256Mi", "pids": 100}, "reservations": {"cpus": "250m"}},
    "restartPolicy": {"condition": "on-failure", "delay": "5s", "maxAttempts": 3, "window": "1m"},
    "updateConfig": {"parallelism": 2, "delay": "10s", "order": "start-first", "failureAction": "rollback"},
    "rollbackConfig": {"parallelism": 0, "monitor": "30s"},
    "healthcheck": {"test": ["CMD", "true"], "interval": "5s", "timeout": "2s", "retries": 3, "startPeriod": "1s"},
    "mounts": [
        {"type": "volume", "source": "shop_data", "target": "/data", "volume": {"labels": {"a": "b"}, "noCopy": True}},
        {"type": "bind", "source": "/srv", "target": "/srv", "readOnly": True},
        {"type": "tmpfs", "target": "/tmp", "tmpfsSize": "64Mi"},
    ],
    "user": "101",
    "workdir": "/app",
    "hostname": "web-{{.Task.Slot}}",
    "stopGracePeriod": "1m30s",
    "stopSignal": "SIGQUIT",
    "init": True,
    "readOnly": True,
    "capAdd": ["CAP_NET_ADMIN"],
    "capDrop": ["CAP_NET_RAW"],
    "logDriver": {"name": "json-file", "options": {"max-size": "1m"}},
}


def model(kind: str, name: str, spec: dict[str, Any], namespace: str | None = "shop") -> Any:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return RESOURCE_ADAPTER.validate_python({"kind": kind, "metadata": meta, "spec": spec})


def live_service(svc: SwarmService, refs: References, source: str = "default") -> dict[str, Any]:
    """A service as swarm lists it after swarmkeeper created it: attachments by ID, secret IDs bound."""
    payload = build_service_spec(svc, refs, source=source)
    payload = bind_ids(
        payload, {n: f"id-{n}" for n in refs.secrets.values()}, {n: f"id-{n}" for n in refs.configs.values()}
    )
    for net in payload["TaskTemplate"]["Networks"]:
        net["Target"] = f"id-{net['Target']}"
    return {"ID": f"id-{payload['Name']}", "Spec": payload}


def value(name: str, kind: str, labels: dict[str, str], data: bytes | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"Name": name, "Labels": labels}
    if data is not None:
        spec["Data"] = base64.b64encode(data).decode()
    return {"ID": f"id-{name}", "Version": {"Index": 1}, "Spec": spec}


def state(
    services: list[dict[str, Any]], networks: list[dict[str, Any]], secrets: list[Any], configs: list[Any]
) -> SwarmState:
    return SwarmState(services=services, tasks=[], networks=networks, secrets=secrets, configs=configs)


def by_key(exported: list[Exported]) -> dict[str, Exported]:
    return {f"{e.kind}/{e.name}": e for e in exported}


def owned(kind: str, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**L.ownership(kind, name, "shop", "default"), **(extra or {})}


def swarm_of_rich_service() -> SwarmState:
    svc = model("SwarmService", "web", RICH)
    refs = References(
        networks={"back": "shop_back", "proxy": "proxy"},
        secrets={"token": "shop_token-v2"},
        configs={"conf": "shop_conf-v1"},
    )
    net = model("SwarmNetwork", "back", {"attachable": True})
    back = {**build_network_spec(net), "Id": "id-shop_back", "Scope": "swarm"}
    proxy = {"Name": "proxy", "Id": "id-proxy", "Scope": "swarm", "Driver": "overlay", "Labels": {}}
    secrets = [
        value("shop_token-v1", "secret", owned("SwarmSecret", "token", {L.VERSION: "1"})),
        value("shop_token-v2", "secret", owned("SwarmSecret", "token", {L.VERSION: "2", "owner": "ops"})),
    ]
    configs = [value("shop_conf-v1", "config", owned("SwarmConfig", "conf", {L.VERSION: "1"}), b"listen 80;\n")]
    return state([live_service(svc, refs)], [back, proxy], secrets, configs)


def test_exported_service_builds_the_payload_that_runs() -> None:
    swarm = swarm_of_rich_service()
    exported = by_key(export_state(swarm, "shop"))
    doc = exported["SwarmService/web"].document
    rebuilt = model("SwarmService", doc["metadata"]["name"], doc["spec"])
    refs = References(
        networks={"back": "shop_back", "proxy": "proxy"},
        secrets={"token": "shop_token-v2"},
        configs={"conf": "shop_conf-v1"},
    )
    live = swarm.services[0]["Spec"]
    assert (
        diff(normalize_service(live, swarm.network_names), normalize_service(build_service_spec(rebuilt, refs))) == []
    )
    assert exported["SwarmService/web"].comments == []  # nothing the model cannot say
    # The proxy network belongs to no namespace: referenced as external, not exported into shop.
    assert doc["spec"]["networks"] == [{"name": "back", "aliases": ["www"]}, {"name": "proxy", "external": True}]
    assert "SwarmNetwork/proxy" not in exported


def test_secrets_by_reference_configs_by_value() -> None:
    exported = by_key(export_state(swarm_of_rich_service(), "shop"))
    secret = exported["SwarmSecret/token"]
    # The current version, its user labels, and a file to fill: swarm gives no value back.
    assert secret.document["spec"] == {"file": "token.txt", "labels": {"owner": "ops"}}
    assert any("token.txt" in c and "cannot be read back" in c for c in secret.comments)
    assert exported["SwarmConfig/conf"].document["spec"] == {"stringData": "listen 80;\n"}


def test_a_managed_network_gets_back_the_ipam_it_was_made_with() -> None:
    for spec in ({"attachable": True}, {"ipam": {"config": [{"subnet": "10.9.0.0/24"}]}, "encrypted": True}):
        net = model("SwarmNetwork", "back", spec)
        payload = build_network_spec(net, source="git")
        # What swarm reports: the subnet it chose (or was asked for), a vxlan id of its own.
        live = {
            **payload,
            "Id": "n1",
            "Scope": "swarm",
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]},
            "Options": {**payload["Options"], "com.docker.network.driver.overlay.vxlanid_list": "4097"},
        }
        doc = by_key(export_state(state([], [live], [], [])))["SwarmNetwork/back"].document
        again = RESOURCE_ADAPTER.validate_python(doc)
        assert isinstance(again, SwarmNetwork)
        assert build_network_spec(again, source="git")["Labels"][L.SPEC_HASH] == payload["Labels"][L.SPEC_HASH]


def test_objects_of_a_stack_are_named_by_the_stack() -> None:
    stack = {L.STACK_NAMESPACE: "shop"}
    svc = {
        "ID": "s1",
        "Spec": {
            "Name": "shop_my_web",
            "Labels": {**stack, L.STACK_IMAGE: "nginx"},
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "nginx",
                    "Labels": stack,
                    "Secrets": [
                        {
                            "File": {"Name": "pw", "UID": "0", "GID": "0", "Mode": 292},
                            "SecretID": "x1",
                            "SecretName": "shop_pw",
                        }
                    ],
                    "TTY": True,
                    "Isolation": "default",
                },
                "Networks": [{"Target": "n1", "Aliases": ["my_web"]}],
                "Runtime": "container",
            },
            "Mode": {"Replicated": {"Replicas": 1}},
        },
    }
    net = {"Name": "shop_default", "Id": "n1", "Scope": "swarm", "Driver": "overlay", "Labels": stack}
    ingress = {"Name": "ingress", "Id": "i", "Scope": "swarm", "Ingress": True, "Driver": "overlay"}
    lease = value("swarmkeeper-lease.default", "config", {}, b"x")
    exported = by_key(
        export_state(state([svc], [net, ingress], [value("shop_pw", "secret", stack) | {"ID": "x1"}], [lease]))
    )
    assert sorted(exported) == ["SwarmNetwork/default", "SwarmSecret/pw", "SwarmService/my-web"]
    web = exported["SwarmService/my-web"]
    assert web.namespace == "shop"
    assert web.document["spec"]["secrets"] == [{"source": "pw"}]
    # Its swarm name kept as swarmName; the alias docker stack deploy gave it is the one built from it.
    assert web.document["spec"]["swarmName"] == "shop_my_web"
    assert web.document["spec"]["networks"] == [{"name": "default"}]
    notes = "\n".join(web.comments)
    assert "--adopt" in notes  # made outside swarmkeeper
    assert "shop_my_web is not a name a spec can produce" in notes
    assert "Isolation" not in notes
    assert web.document["spec"]["tty"] is True


def test_a_secret_of_another_namespace_is_used_as_it_is() -> None:
    svc = model("SwarmService", "api", {"image": "x", "secrets": [{"source": "shared"}]})
    live = live_service(svc, References(secrets={"shared": "shared_token"}))
    exported = export_state(state([live], [], [value("shared_token", "secret", {})], []), "shop")
    # As docker stack deploy's external: true: the service keeps using the very same secret.
    assert sorted(by_key(exported)) == ["SwarmService/api"]
    assert by_key(exported)["SwarmService/api"].document["spec"]["secrets"] == [
        {"source": "shared_token", "external": True, "target": "shared"}
    ]


@pytest.mark.parametrize(
    ("text", "name"), [("web", "web"), ("My_App.web", "my-app-web"), ("__x__", "x"), ("a" * 70, "a" * 63)]
)
def test_spec_names(text: str, name: str) -> None:
    assert spec_name(text) == name


def test_fields_without_a_spec_field_are_named_whatever_their_value() -> None:
    # Lists and mappings too (groups, a privileges mapping): each is named in a comment, none stops the export.
    container = {
        "Image": "nginx",
        "Hosts": ["10.0.0.1 db db.local"],
        "DNSConfig": {"Nameservers": ["10.0.0.2"]},
        "Groups": ["wheel"],
        "Privileges": {"NoNewPrivileges": True},
        "Isolation": "default",
    }
    svc = {"ID": "s1", "Spec": {"Name": "web", "Labels": {}, "TaskTemplate": {"ContainerSpec": container}}}
    web = by_key(export_state(state([svc], [], [], [])))["SwarmService/web"]
    notes = "\n".join(web.comments)
    assert "ContainerSpec.Groups is not exported" in notes and "ContainerSpec.Privileges is not exported" in notes
    assert "Isolation" not in notes
    # Extra hosts and DNS have spec fields: exported, an alias becoming a HOST:IP of its own.
    assert web.document["spec"]["extraHosts"] == ["db:10.0.0.1", "db.local:10.0.0.1"]
    assert web.document["spec"]["dns"] == {"nameservers": ["10.0.0.2"]}
