"""CustomResourceDefinitions for the kinds, so the operator can read them from Kubernetes.

The openAPIV3Schema is the kind's JSON Schema made structural (see ``structural``); everything
else (names, subresources, printer columns) is what ``kubectl get`` and ``kubectl scale`` need.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.resolver import VersionedResolver

from swarmkeeper.api import API_VERSION, KINDS

from .jsonschema import json_schema
from .structural import Schema, structural

GROUP, VERSION = API_VERSION.split("/")
CRD_DIR = Path("crds")
# Helm installs the CRDs in a chart's crds/ folder before its templates; generating them there too
# means the chart can never carry an older schema than the repository.
CHART_CRD_DIR = Path("charts/swarmkeeper/crds")
HEADER = "# Generated from operator/swarmkeeper/api by scripts/gen-schema; do not edit.\n"

SHORT_NAMES = {
    "SwarmCluster": "scl",
    "SwarmNetwork": "snet",
    "SwarmSecret": "ssec",
    "SwarmConfig": "scfg",
    "SwarmService": "ssvc",
    "SwarmAlert": "salert",
}

_READY_CONDITION = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    "description": "Status of the Ready condition.",
}
_AGE = {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_VERSION = {
    "name": "VERSION",
    "type": "integer",
    "jsonPath": ".status.currentVersion",
    "description": "Version of the value in swarm.",
}

PRINTER_COLUMNS: dict[str, list[dict[str, str]]] = {
    "SwarmService": [
        {"name": "READY", "type": "string", "jsonPath": ".status.ready", "description": "Running/desired tasks."},
        {"name": "UPDATE", "type": "string", "jsonPath": ".status.update.state", "description": "Rolling update."},
        {"name": "IMAGE", "type": "string", "jsonPath": ".spec.image"},
        # kubectl upper-cases column names, so "Ready" would print as a second READY column here.
        {**_READY_CONDITION, "name": "Condition"},
        _AGE,
    ],
    "SwarmSecret": [_VERSION, _READY_CONDITION, _AGE],
    "SwarmConfig": [_VERSION, _READY_CONDITION, _AGE],
    "SwarmNetwork": [_READY_CONDITION, _AGE],
    "SwarmCluster": [_READY_CONDITION, _AGE],
    "SwarmAlert": [_READY_CONDITION, _AGE],
}

# `kubectl scale` and autoscalers go through /scale; the model keeps its replica counts there.
SCALE = {"SwarmService": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas.running"}}

_K8S_FIELDS: Schema = {
    "apiVersion": {
        "description": "The versioned schema of this object; the server may convert older versions.",
        "type": "string",
    },
    "kind": {"description": "The REST resource this object represents.", "type": "string"},
    # Kubernetes owns metadata and validates it; restating ObjectMeta here is not allowed.
    "metadata": {"type": "object"},
}


def plural(kind: str) -> str:
    return kind.lower() + "s"


def crd_path(kind: str) -> Path:
    return CRD_DIR / f"{plural(kind)}.{GROUP}.yaml"


def open_api_schema(kind: str) -> Schema:
    """The structural openAPIV3Schema of a kind: the model's spec and status, Kubernetes' envelope."""
    source = json_schema(kind)
    own = {name: sub for name, sub in source["properties"].items() if name not in _K8S_FIELDS}
    root = {**source, "properties": {**_K8S_FIELDS, **own}}
    # metadata is always there in Kubernetes; of the model's required fields only spec remains.
    required = [name for name in source.get("required", []) if name in own]
    if required:
        root["required"] = required
    else:
        root.pop("required", None)
    return structural(root)


def crd(kind: str) -> Schema:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of a kind."""
    if kind not in KINDS:
        raise KeyError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    subresources: Schema = {"status": {}}
    if kind in SCALE:
        subresources["scale"] = dict(SCALE[kind])
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural(kind)}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural(kind),
                "singular": kind.lower(),
                "shortNames": [SHORT_NAMES[kind]],
                "categories": ["swarm"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS[kind]],
                    "schema": {"openAPIV3Schema": open_api_schema(kind)},
                }
            ],
        },
    }


class _Representer(RoundTripRepresenter):
    """Quotes every string a YAML 1.1 or 1.2 reader would take for something else.

    ruamel follows YAML 1.2, where ``yes``/``on``/``n`` are strings, but Kubernetes reads YAML like
    1.1 (go-yaml v2) and would turn them into booleans.
    """

    _resolvers = (VersionedResolver(version=(1, 1)), VersionedResolver(version=(1, 2)))

    def _represent_str(self, data: str) -> Any:
        ambiguous = any(r.resolve(ScalarNode, data, (True, False)) != "tag:yaml.org,2002:str" for r in self._resolvers)
        return self.represent_scalar("tag:yaml.org,2002:str", data, style="'" if ambiguous else None)


_Representer.add_representer(str, _Representer._represent_str)


def to_yaml(document: Schema) -> str:
    yaml = YAML(typ="rt", pure=True)
    yaml.Representer = _Representer
    yaml.width = 4096  # one line per description: stable, greppable diffs
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return HEADER + buffer.getvalue()


def render_crds() -> dict[Path, str]:
    """The CRD files, in ``crds/`` and, identical, in the Helm chart's ``crds/``."""
    files = {crd_path(kind): to_yaml(crd(kind)) for kind in KINDS}
    files.update({CHART_CRD_DIR / path.name: text for path, text in list(files.items())})
    return files
