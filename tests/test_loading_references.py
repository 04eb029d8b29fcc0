"""Set-level checks: duplicate objects, dangling references, dependsOn cycles, cluster references."""

from __future__ import annotations

import textwrap
from pathlib import Path

from swarmkeeper.api import SwarmNetwork, SwarmService
from swarmkeeper.loading import Manifest, check_references, load_paths


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def doc(kind: str, name: str, namespace: str | None = None, spec: str = "") -> str:
    """One YAML document; ``spec`` is the spec's body, indented by two spaces."""
    meta = f"metadata:\n  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "")
    body = "spec:\n" + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ") + "\n" if spec else ""
    return f"apiVersion: swarmkeeper.io/v1alpha1\nkind: {kind}\n{meta}{body}---\n"


def messages(tmp_path: Path) -> list[str]:
    return [str(e) for e in load_paths([tmp_path]).errors]


def test_duplicate_object_names_the_first(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", doc("SwarmNetwork", "backend", "shop"))
    second = write(tmp_path / "b.yaml", "# the same again\n" + doc("SwarmNetwork", "backend", "shop"))
    write(tmp_path / "c.yaml", doc("SwarmNetwork", "backend", "other") + doc("SwarmNetwork", "backend"))

    result = load_paths([tmp_path])

    assert len(result.errors) == 1
    error = result.errors[0]
    assert (error.file, error.line, error.kind, error.name) == (second, 2, "SwarmNetwork", "backend")
    assert error.message == f'duplicate SwarmNetwork "backend" (in namespace "shop"); first defined at {first}:1'


def test_swarm_clusters_are_duplicates_whatever_their_namespace(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", doc("SwarmCluster", "prod") + doc("SwarmCluster", "prod", "shop"))

    assert [e.message.split(";")[0] for e in load_paths([tmp_path]).errors] == ['duplicate SwarmCluster "prod"']


def test_dangling_references_point_at_the_field_and_suggest_names(tmp_path: Path) -> None:
    write(
        tmp_path / "values.yaml",
        doc("SwarmNetwork", "backend", "shop")
        + doc("SwarmSecret", "db-password", "shop", "stringData: x")
        + doc("SwarmConfig", "nginx-conf", "shop", "stringData: x")
        + doc("SwarmService", "api", "shop", "image: api:1"),
    )
    web = write(
        tmp_path / "web.yaml",
        doc(
            "SwarmService",
            "web",
            "shop",
            """
            image: nginx:1.27
            networks:
              - name: backend
              - name: frontend
            secrets:
              - source: db-passwrd
            configs:
              - source: nginx-conf
              - source: nginx-cfg
            dependsOn: [api, apx]
            """,
        ),
    )

    errors = load_paths([tmp_path]).errors

    assert [(e.file, e.line, e.column, e.field, e.message) for e in errors] == [
        (web, 10, 7, "spec.networks[1].name", 'no SwarmNetwork "frontend" in namespace "shop"'),
        (
            web,
            12,
            7,
            "spec.secrets[0].source",
            'no SwarmSecret "db-passwrd" in namespace "shop" (did you mean "db-password"?)',
        ),
        (
            web,
            15,
            7,
            "spec.configs[1].source",
            'no SwarmConfig "nginx-cfg" in namespace "shop" (did you mean "nginx-conf"?)',
        ),
        (web, 16, 20, "spec.dependsOn[1]", 'no SwarmService "apx" in namespace "shop" (did you mean "api"?)'),
    ]
    assert all((e.kind, e.name) == ("SwarmService", "web") for e in errors)


def test_references_stay_within_the_namespace(tmp_path: Path) -> None:
    write(
        tmp_path / "specs.yaml",
        doc("SwarmSecret", "token", "billing", "stringData: x")
        + doc("SwarmService", "web", None, "image: x\nsecrets:\n  - source: token"),
    )

    assert [e.message for e in load_paths([tmp_path]).errors] == [
        'no SwarmSecret "token" without a namespace (there is one in namespace "billing")'
    ]


def test_depends_on_cycle_is_one_error(tmp_path: Path) -> None:
    write(
        tmp_path / "specs.yaml",
        doc("SwarmService", "a", "shop", "image: x\ndependsOn: [b]")
        + doc("SwarmService", "b", "shop", "image: x\ndependsOn: [c]")
        + doc("SwarmService", "c", "shop", "image: x\ndependsOn: [a]")
        + doc("SwarmService", "d", "shop", "image: x\ndependsOn: [a]"),
    )

    errors = load_paths([tmp_path]).errors

    assert [(e.name, e.field, e.line, e.message) for e in errors] == [
        ("a", "spec.dependsOn[0]", 8, "dependsOn cycle: a -> b -> c -> a")
    ]


def test_depending_on_itself_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "specs.yaml", doc("SwarmService", "web", None, "image: x\ndependsOn: [db, web]"))
    write(tmp_path / "db.yaml", doc("SwarmService", "db", None, "image: x"))

    assert messages(tmp_path) == [
        f"{tmp_path / 'specs.yaml'}:7:19: SwarmService/web: spec.dependsOn[1]: dependsOn cycle: web -> web"
    ]


def test_two_cycles_two_errors(tmp_path: Path) -> None:
    write(
        tmp_path / "specs.yaml",
        doc("SwarmService", "a", None, "image: x\ndependsOn: [b]")
        + doc("SwarmService", "b", None, "image: x\ndependsOn: [a]")
        + doc("SwarmService", "a", "other", "image: x\ndependsOn: [a]"),
    )

    assert [e.message for e in load_paths([tmp_path]).errors] == [
        "dependsOn cycle: a -> b -> a",
        "dependsOn cycle: a -> a",
    ]


def test_cluster_reference_ignores_namespaces(tmp_path: Path) -> None:
    write(
        tmp_path / "specs.yaml",
        doc("SwarmCluster", "production")
        + doc("SwarmNetwork", "backend", "shop", "cluster: production")
        + doc("SwarmSecret", "token", "shop", "stringData: x\ncluster: prodution")
        + doc("SwarmService", "web", None, "image: x\ncluster: staging"),
    )

    errors = load_paths([tmp_path]).errors

    assert [(e.name, e.field, e.line, e.message) for e in errors] == [
        ("token", "spec.cluster", 21, 'no SwarmCluster "prodution" (did you mean "production"?)'),
        ("web", "spec.cluster", 29, 'no SwarmCluster "staging"'),
    ]


def test_manifests_without_origin_get_errors_without_position() -> None:
    service = SwarmService.model_validate(
        {"metadata": {"name": "web"}, "spec": {"image": "x", "networks": [{"name": "backend"}]}}
    )
    network = SwarmNetwork.model_validate({"metadata": {"name": "backend", "namespace": "shop"}})

    errors = check_references([Manifest(service, None), Manifest(network, None)])

    assert [str(e) for e in errors] == [
        'SwarmService/web: spec.networks[0].name: no SwarmNetwork "backend" without a namespace '
        '(there is one in namespace "shop")'
    ]
    assert errors[0].file is None and errors[0].line is None


def test_a_consistent_set_has_no_errors(tmp_path: Path) -> None:
    write(
        tmp_path / "specs.yaml",
        doc("SwarmCluster", "prod")
        + doc("SwarmNetwork", "backend", "shop", "cluster: prod")
        + doc("SwarmService", "db", "shop", "image: x\nnetworks: [{name: backend}]")
        + doc("SwarmService", "web", "shop", "image: x\ndependsOn: [db]\nnetworks: [{name: backend}]"),
    )

    assert messages(tmp_path) == []
