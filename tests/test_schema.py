"""The generated CRDs, JSON Schemas and spec reference: up to date, structural, and accepting the examples.

Pure tests: no Docker Engine and no Kubernetes API server. The structural-schema checks restate
Kubernetes' rules independently of ``swarmkeeper.schema.structural`` so a bug there is caught here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from swarmkeeper.api import KINDS, RESOURCE_ADAPTER
from swarmkeeper.schema import UnsupportedSchema, crd, drift, render_all, structural, write_all
from swarmkeeper.schema.__main__ import main
from swarmkeeper.schema.crd import crd_path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "specs").rglob("*.yaml"))

# Everything Kubernetes' JSONSchemaProps knows that a generated schema may use.
K8S_KEYWORDS = {
    "description", "type", "format", "enum", "pattern", "minLength", "maxLength", "minimum",
    "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    "minProperties", "maxProperties", "nullable", "required", "items", "properties",
    "additionalProperties", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
}  # fmt: skip
INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def open_api(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from nodes(schema["additionalProperties"], f"{path}.*")
    if isinstance(schema.get("items"), Mapping):
        yield from nodes(schema["items"], f"{path}[]")


@functools.cache
def combined_validator() -> jsonschema.protocols.Validator:
    """The committed editor schema, as yaml-language-server would read it (draft 2020-12, like pydantic)."""
    document = json.loads((ROOT / "schemas/swarmkeeper.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_generated_files_match_the_models() -> None:
    problems = drift(ROOT)
    assert not problems, "generated files are out of date, run scripts/gen-schema:\n" + "\n".join(problems)


def test_rendering_is_deterministic() -> None:
    assert render_all() == render_all()


@pytest.mark.parametrize("kind", list(KINDS))
def test_crd_schema_is_structural(kind: str) -> None:
    root = open_api(kind)
    assert root["type"] == "object"
    assert root["properties"]["metadata"] == {"type": "object"}, "Kubernetes owns metadata"
    for path, node in nodes(root):
        where = path or "<root>"
        assert set(node) <= K8S_KEYWORDS, f"{where}: keywords Kubernetes does not know"
        assert "default" not in node, f"{where}: defaults would be written into stored objects"
        assert not {"anyOf", "oneOf", "allOf", "not"} & set(node), f"{where}: junctors are not needed"
        assert "type" in node or node.get(INT_OR_STRING) or node.get(PRESERVE), f"{where}: no type"
        if node.get(INT_OR_STRING) or node.get(PRESERVE):
            assert "type" not in node, f"{where}: int-or-string/untyped nodes carry no type"
        if PRESERVE in node:
            assert "properties" not in node, f"{where}: preserve-unknown-fields only on untyped leaves"
        assert not ("properties" in node and "additionalProperties" in node), where
        if node.get("type") == "array":
            assert isinstance(node.get("items"), Mapping), f"{where}: arrays need one items schema"
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{where}: required {name} is not a property"


@pytest.mark.parametrize("kind", list(KINDS))
def test_status_schema_is_faithful(kind: str) -> None:
    status = open_api(kind)["properties"]["status"]
    assert not any(PRESERVE in node for _, node in nodes(status))
    assert status["properties"]["conditions"]["items"]["required"] == ["type", "status", "reason"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_crd_names_and_subresources(kind: str) -> None:
    document = crd(kind)
    spec = document["spec"]
    plural = kind.lower() + "s"
    assert document["metadata"]["name"] == f"{plural}.swarmkeeper.io"
    assert (spec["group"], spec["scope"]) == ("swarmkeeper.io", "Namespaced")
    assert spec["names"]["plural"] == plural
    assert spec["names"]["categories"] == ["swarm"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"]["status"] == {}
    assert crd_path(kind) == Path("crds") / f"{plural}.swarmkeeper.io.yaml"
    columns = {c["name"].upper(): c for c in version["additionalPrinterColumns"]}
    assert len(columns) == len(version["additionalPrinterColumns"]), "kubectl upper-cases column names"
    assert columns["AGE"] == {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def test_short_names() -> None:
    short = {kind: crd(kind)["spec"]["names"]["shortNames"] for kind in KINDS}
    assert short == {
        "SwarmCluster": ["scl"],
        "SwarmNetwork": ["snet"],
        "SwarmSecret": ["ssec"],
        "SwarmConfig": ["scfg"],
        "SwarmService": ["ssvc"],
        "SwarmAlert": ["salert"],
    }


def test_service_scales_and_prints_its_state() -> None:
    version = crd("SwarmService")["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas.running",
    }
    paths = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert paths["READY"] == ".status.ready"
    assert paths["UPDATE"] == ".status.update.state"
    assert paths["IMAGE"] == ".spec.image"
    assert '.status.conditions[?(@.type=="Ready")].status' in paths.values()
    schema = open_api("SwarmService")["properties"]
    assert schema["spec"]["properties"]["replicas"]["type"] == "integer"
    assert schema["status"]["properties"]["replicas"]["properties"]["running"]["type"] == "integer"


@pytest.mark.parametrize("kind", ["SwarmSecret", "SwarmConfig"])
def test_values_print_their_version(kind: str) -> None:
    columns = crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert {"name": "VERSION", "type": "integer"}.items() <= columns[0].items()
    assert columns[0]["jsonPath"] == ".status.currentVersion"


def test_type_mapping() -> None:
    service = open_api("SwarmService")["properties"]["spec"]["properties"]
    limits = service["resources"]["properties"]["limits"]["properties"]
    assert limits["memory"] == {"nullable": True, INT_OR_STRING: True}
    assert limits["cpus"] == {"nullable": True, PRESERVE: True}, "0.5 is no int-or-string"
    assert service["env"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert service["mode"]["enum"] == ["replicated", "global", "replicated-job", "global-job"]
    assert service["replicas"]["nullable"] is True
    mode = service["secrets"]["items"]["properties"]["mode"]
    assert mode[INT_OR_STRING] is True and "type" not in mode
    value = open_api("SwarmSecret")["properties"]["spec"]["properties"]
    assert value["stringData"] == {
        "description": "The value inline, as text.",
        "type": "string",
        "format": "password",
        "nullable": True,
    }
    condition = open_api("SwarmService")["properties"]["status"]["properties"]["conditions"]["items"]
    assert condition["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_descriptions_survive() -> None:
    spec = open_api("SwarmService")["properties"]["spec"]["properties"]
    assert spec["image"]["description"].startswith("Image reference")
    assert "title" not in spec["image"]


def test_unsupported_shapes_fail_loudly() -> None:
    with pytest.raises(UnsupportedSchema, match="x"):
        structural({"type": "object", "properties": {"x": {"anyOf": [{"type": "object"}, {"type": "string"}]}}})
    with pytest.raises(UnsupportedSchema, match="uniqueItems"):
        structural({"type": "array", "items": {"type": "string"}, "uniqueItems": True})
    with pytest.raises(UnsupportedSchema, match="propertyNames"):
        structural({"type": "object", "propertyNames": {"pattern": "^a"}})
    with pytest.raises(UnsupportedSchema, match="no type"):
        structural({"type": "object", "properties": {"any": {}}})


def test_structural_conversions() -> None:
    converted = structural(
        {
            "$defs": {"Inner": {"title": "Inner", "description": "model", "type": "object", "properties": {}}},
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ref": {
                    "anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}],
                    "description": "field",
                    "default": None,
                },
                "const": {"const": "A", "type": "string"},
                "gt": {"type": "integer", "exclusiveMinimum": 0},
            },
        }
    )  # fmt: skip
    assert converted == {
        "type": "object",
        "properties": {
            "ref": {"description": "field", "type": "object", "nullable": True, "properties": {}},
            "const": {"type": "string", "enum": ["A"]},
            "gt": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
        },
    }


def test_crd_files_read_the_same_in_yaml_1_1() -> None:
    # Kubernetes reads YAML like 1.1, where unquoted yes/on/True are booleans.
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 1)
    for kind in KINDS:
        assert yaml.load((ROOT / crd_path(kind)).read_text(encoding="utf-8")) == crd(kind)


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_examples_validate_against_the_editor_schema(path: Path) -> None:
    validator = combined_validator()
    documents = [d for d in YAML(typ="safe", pure=True).load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert documents, f"{path} holds no spec"
    for document in documents:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, "\n".join(errors)
        RESOURCE_ADAPTER.validate_python(document)  # and the models agree


@pytest.mark.parametrize(
    ("mode", "valid"), [("0400", True), ("0o640", True), (444, True), ("0999", False), ("rw", False)]
)
def test_file_modes_in_the_schema_match_the_model(mode: object, valid: bool) -> None:
    document = {
        "kind": "SwarmService",
        "metadata": {"name": "web"},
        "spec": {"image": "nginx", "secrets": [{"source": "token", "mode": mode}]},
    }
    assert combined_validator().is_valid(document) is valid
    model_accepts = True
    try:
        RESOURCE_ADAPTER.validate_python(document)
    except ValueError:
        model_accepts = False
    assert model_accepts is valid


def test_editor_schema_rejects_typos_and_unknown_kinds() -> None:
    validator = combined_validator()
    base = {"apiVersion": "swarmkeeper.io/v1alpha1", "metadata": {"name": "web"}}
    assert validator.is_valid({**base, "kind": "SwarmService", "spec": {"image": "nginx"}})
    assert not validator.is_valid({**base, "kind": "SwarmService", "spec": {"image": "nginx", "replica": 2}})
    assert not validator.is_valid({**base, "kind": "SwarmPod", "spec": {}})


def test_reference_documents_nested_fields_and_the_modeline() -> None:
    text = (ROOT / "docs/spec-reference.md").read_text(encoding="utf-8")
    assert "# yaml-language-server: $schema=../../schemas/swarmkeeper.json" in text
    for kind in KINDS:
        assert f"## {kind}\n" in text
    assert '| `spec.updateConfig.order` | one of `stop-first`, `start-first` | `"stop-first"` |' in text
    assert "`spec.ports[].target`" in text


def test_check_reports_drift_and_the_generator_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert "run scripts/gen-schema" in capsys.readouterr().err
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--root", str(tmp_path), "--check"]) == 0
    stale = tmp_path / "crds/swarmpods.swarmkeeper.io.yaml"
    stale.write_text((tmp_path / crd_path("SwarmService")).read_text(encoding="utf-8"), encoding="utf-8")
    own = tmp_path / "crds/hand-written.yaml"
    own.write_text("kind: Namespace\n", encoding="utf-8")
    assert any("no longer generated" in line for line in drift(tmp_path))
    assert write_all(tmp_path) == ["removed crds/swarmpods.swarmkeeper.io.yaml"]
    assert own.exists() and not stale.exists()
