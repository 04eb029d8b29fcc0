"""The Kubernetes front door's pure parts: CR bodies → manifests, values from secretRef, status patches.

No API server and no engine: Secrets are read through a plain function standing in for the API
(the same contract as ``KubeApi.read_value``). The end-to-end behaviour is in test_kubernetes.py.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from swarmkeeper.api import Key
from swarmkeeper.engine.conditions import INVALID_SPEC
from swarmkeeper.sources.kubernetes import (
    DEPENDENCY_INVALID,
    VALUE_UNAVAILABLE,
    CustomResource,
    Problem,
    ValueReadError,
    desired_document,
    load_namespace,
    merge_patch,
    problem_status,
    referenced_values,
    source_name,
    to_manifest,
)

SECRET_VALUE = b"s3cr3t-value-never-shown"


def body(kind: str, name: str, spec: dict[str, Any], namespace: str = "shop", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "swarmkeeper.io/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{kind}-{name}",
            "generation": 3,
            "resourceVersion": "77",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "finalizers": ["swarmkeeper.io/finalizer"],
            **meta,
        },
        "spec": spec,
    }


def reader(values: Mapping[tuple[str, str], Mapping[str, bytes]]) -> Any:
    def read(kind: str, namespace: str, name: str) -> Mapping[str, bytes] | None:
        assert namespace == "shop", "values are read from the CR's own namespace only"
        return values.get((kind, name))

    return read


def test_metadata_is_cut_to_what_a_spec_file_has() -> None:
    annotations = {
        "kubectl.kubernetes.io/last-applied-configuration": '{"spec": {"stringData": "x"}}',
        "operator.swarmkeeper.io/last-handled-configuration": "{}",
        "swarmkeeper.io/unmanaged-fields": "replicas",
    }
    doc = desired_document(
        body("SwarmService", "web", {"image": "nginx"}, labels={"tier": "web"}, annotations=annotations)
    )
    assert doc["metadata"] == {
        "name": "web",
        "namespace": "shop",
        "labels": {"tier": "web"},
        "annotations": {"swarmkeeper.io/unmanaged-fields": "replicas"},
        "generation": 3,
    }
    manifest, errors = to_manifest(body("SwarmService", "web", {"image": "nginx", "replicas": 2}))
    assert not errors and manifest is not None
    assert manifest.key == ("SwarmService", "shop", "web")  # the CR's namespace: swarm name shop_web
    assert manifest.origin is None and manifest.resource.metadata.generation == 3


def test_model_errors_name_the_field_without_a_file() -> None:
    manifest, errors = to_manifest(body("SwarmService", "web", {"image": "nginx", "mode": "global", "replicas": 3}))
    assert manifest is None
    assert [str(e) for e in errors] == ["SwarmService/web: spec: replicas cannot be set with mode global"]
    _, errors = to_manifest(body("SwarmService", "web", {"image": "nginx", "ports": [{"target": 99999}]}))
    assert [e.field for e in errors] == ["spec.ports[0].target"]
    # A Kubernetes name the models refuse (dots are fine in Kubernetes, not in swarm service names).
    _, errors = to_manifest(body("SwarmNetwork", "front.end", {}))
    assert [e.field for e in errors] == ["metadata.name"]


def test_secret_ref_is_read_from_the_namespace() -> None:
    bodies = [body("SwarmSecret", "db", {"secretRef": {"name": "db-creds", "key": "password"}})]
    specs = load_namespace(bodies, reader({("Secret", "db-creds"): {"password": SECRET_VALUE}}))
    [manifest] = specs.manifests
    assert manifest.value is not None and manifest.value.get_secret_value() == SECRET_VALUE
    config = [body("SwarmConfig", "conf", {"secretRef": {"name": "app", "key": "app.ini"}})]
    specs = load_namespace(config, reader({("ConfigMap", "app"): {"app.ini": b"[app]\n"}}))
    assert specs.manifests[0].value is not None and specs.manifests[0].value.get_secret_value() == b"[app]\n"


NO_KEY = 'spec.secretRef: Secret "db-creds" has no key "password" (its keys: user)'


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, 'spec.secretRef: Secret "db-creds" not found in namespace "shop"'),
        ({("Secret", "db-creds"): {"user": b"x"}}, NO_KEY),
        ({("Secret", "db-creds"): {"password": b""}}, 'spec.secretRef: Secret "db-creds" key "password" is empty'),
    ],
)
def test_unreadable_values_are_reported_without_values(values: dict[Any, Any], message: str) -> None:
    bodies = [body("SwarmSecret", "db", {"secretRef": {"name": "db-creds", "key": "password"}})]
    specs = load_namespace(bodies, reader(values))
    assert not specs.manifests
    problem = specs.problems[Key("SwarmSecret", "shop", "db")]
    assert problem.reason == VALUE_UNAVAILABLE
    assert problem.message.startswith(message)


def test_an_api_error_reading_a_value_is_a_problem_not_a_crash() -> None:
    def forbidden(kind: str, namespace: str, name: str) -> Mapping[str, bytes] | None:
        raise ValueReadError("403 Forbidden")

    specs = load_namespace([body("SwarmSecret", "db", {"secretRef": {"name": "x", "key": "k"}})], forbidden)
    assert specs.problems[Key("SwarmSecret", "shop", "db")].message == 'spec.secretRef: Secret "x": 403 Forbidden'


@pytest.mark.parametrize("source", [{"file": "db.txt"}, {"env": "DB_PASSWORD"}])
def test_files_and_environment_are_not_a_kubernetes_source(source: dict[str, str]) -> None:
    specs = load_namespace([body("SwarmSecret", "db", source)], reader({}))
    problem = specs.problems[Key("SwarmSecret", "shop", "db")]
    assert problem.reason == INVALID_SPEC
    assert "not available through Kubernetes" in problem.message and "secretRef" in problem.message


def test_inline_values_work() -> None:
    specs = load_namespace([body("SwarmConfig", "c", {"stringData": "hello"})], reader({}))
    assert specs.manifests[0].value is not None and specs.manifests[0].value.get_secret_value() == b"hello"


def test_objects_waiting_on_an_invalid_one_are_left_out_too() -> None:
    bodies = [
        body("SwarmSecret", "db", {"file": "nope"}),
        body("SwarmNetwork", "net", {}),
        body("SwarmService", "api", {"image": "x", "secrets": [{"source": "db"}], "networks": [{"name": "net"}]}),
        body("SwarmService", "web", {"image": "x", "dependsOn": ["api"]}),
        body("SwarmService", "solo", {"image": "x", "networks": [{"name": "net"}]}),
        body("SwarmService", "typo", {"image": "x", "networks": [{"name": "nett"}]}),
    ]
    specs = load_namespace(bodies, reader({}))
    assert sorted(m.name for m in specs.manifests) == ["net", "solo"]
    reasons = {key.name: p.reason for key, p in specs.problems.items()}
    assert reasons == {"db": INVALID_SPEC, "api": DEPENDENCY_INVALID, "web": DEPENDENCY_INVALID, "typo": INVALID_SPEC}
    assert (
        specs.problems[Key("SwarmService", "shop", "api")].message
        == "waits for SwarmSecret/db, which cannot be applied"
    )
    assert 'no SwarmNetwork "nett"' in specs.problems[Key("SwarmService", "shop", "typo")].message


def test_objects_being_deleted_are_never_applied() -> None:
    going = body("SwarmNetwork", "old", {}, deletionTimestamp="2026-01-01T00:00:00Z")
    specs = load_namespace([going, body("SwarmNetwork", "new", {})], reader({}))
    assert [m.name for m in specs.manifests] == ["new"]
    assert ("SwarmNetwork", "shop", "old") not in specs.resources


def test_custom_resource_identity_and_orphaning() -> None:
    cr = CustomResource.from_body(
        body("SwarmService", "web", {"image": "x"}, annotations={"swarmkeeper.io/orphan": "True"})
    )
    assert cr.key == ("SwarmService", "shop", "web") and cr.plural == "swarmservices" and cr.orphans
    assert cr.reference()["uid"] == "uid-SwarmService-web"
    assert not CustomResource.from_body(body("SwarmNetwork", "n", {})).orphans
    assert source_name("shop") == "k8s.shop"


def test_merge_patch_sets_changes_and_removes_what_is_gone() -> None:
    old = {"ready": "2/3", "replicas": {"desired": 3, "running": 2}, "taskError": {"task": "t"}, "conditions": [1]}
    new = {"ready": "3/3", "replicas": {"desired": 3, "running": 3}, "conditions": [1]}
    assert merge_patch(old, new) == {"ready": "3/3", "replicas": {"running": 3}, "taskError": None}
    assert merge_patch(new, copy.deepcopy(new)) == {}
    assert merge_patch({}, {"a": {"b": 1}}) == {"a": {"b": 1}}


def test_problem_status_keeps_the_rest_and_the_transition_time() -> None:
    from swarmkeeper.loading import SpecError

    old = {
        "ready": "3/3",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Converged", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Degraded", "status": "False", "reason": "Healthy"},
        ],
    }
    problem = Problem(
        INVALID_SPEC, (SpecError("must be >= 0", kind="SwarmService", name="web", field="spec.replicas"),)
    )
    first = problem_status(old, problem, 4)
    ready = first["conditions"][0]
    assert ready["reason"] == INVALID_SPEC and ready["status"] == "False" and ready["observedGeneration"] == 4
    assert ready["message"] == "spec.replicas: must be >= 0"
    assert ready["lastTransitionTime"] != "2026-01-01T00:00:00Z"
    assert first["ready"] == "3/3" and first["conditions"][1]["type"] == "Degraded"
    assert problem_status(first, problem, 4) == first  # nothing to patch on the next pass


def test_referenced_values() -> None:
    bodies = [
        body("SwarmSecret", "a", {"secretRef": {"name": "s1", "key": "k"}}),
        body("SwarmConfig", "b", {"secretRef": {"name": "c1", "key": "k"}}),
        body("SwarmSecret", "c", {"stringData": "x"}),
    ]
    assert referenced_values(bodies) == {("Secret", "s1"), ("ConfigMap", "c1")}
