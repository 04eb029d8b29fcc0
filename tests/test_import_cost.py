"""What a one-shot command loads: only what it uses.

Start-up is most of a no-op ``apply`` (docs/benchmarks.md). Each command imports the models, the
engine and the Docker client when it runs, and only if it needs them; no one-shot command imports
the long-running front doors (Kubernetes, Git, file watching, metrics) or their libraries. Each
command runs as a real process; a probe records ``sys.modules`` as it exits.

At exit the heap is frozen, so that the interpreter does not walk and free it object by object
(0.1 s of a no-op ``apply``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_helpers import write_spec

# Libraries that only the controllers, the Git / Kubernetes / SOPS sources, migrate or the schema
# generator use, and swarmkeeper's own packages for those.
NEVER_ONE_SHOT = frozenset(
    {
        "aiohttp",
        "apprise",
        "cryptography",
        "dulwich",
        "jsonschema",
        "kopf",
        "kubernetes",
        "markdown_it",
        "prometheus_client",
        "pygments",
        "pyrage",
        "watchfiles",
        "yaml",
        "swarmkeeper.controller",
        "swarmkeeper.schema",
        "swarmkeeper.sources",
    }
)
# What talks to an engine, and what reads specs.
ENGINE = frozenset({"docker", "requests", "urllib3", "tenacity", "swarmkeeper.engine", "swarmkeeper.swarm"})
SPECS = frozenset({"pydantic", "ruamel", "swarmkeeper.api", "swarmkeeper.loading"})

PROBE = """
import atexit, gc, json, os, sys

def record():  # registered first, so it runs last among the exit handlers
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump({"modules": sorted(sys.modules), "frozen": gc.get_freeze_count()}, f)

atexit.register(record)
sys.argv[0] = "swarmkeeper"
from swarmkeeper.cli.main import main
main()
"""


def loaded(tmp_path: Path, *args: str | Path) -> set[str]:
    """The modules loaded by the end of ``swarmkeeper ARGS``, which must succeed and freeze its heap."""
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PROBE_OUT": str(out)},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(out.read_text())
    assert seen["frozen"] > 0, args
    return set(seen["modules"])


def under(modules: set[str], packages: frozenset[str]) -> list[str]:
    """The packages of ``packages`` that ``modules`` holds (the package or any module inside it)."""
    return sorted(p for p in packages if any(m == p or m.startswith(p + ".") for m in modules))


def test_help_loads_neither_models_nor_the_docker_client(tmp_path: Path) -> None:
    assert under(loaded(tmp_path, "--help"), NEVER_ONE_SHOT | ENGINE | SPECS) == []


def test_validate_does_not_load_the_engine(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write_spec(
        specs,
        "net.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmNetwork
        metadata: {name: net}
        """,
    )
    assert under(loaded(tmp_path, "validate", specs), NEVER_ONE_SHOT | ENGINE) == []


def test_apply_diff_get_delete_load_only_the_one_shot_path(namespace: str, local_image: str, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write_spec(specs, "token.txt", "not a real token")
    write_spec(
        specs,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmNetwork
        metadata: {{name: net, namespace: {namespace}}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: token, namespace: {namespace}}}
        spec: {{file: token.txt}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          image: {local_image}
          command: [sleep, "3600"]
          networks: [{{name: net}}]
          secrets: [{{source: token}}]
        """,
    )
    commands: list[tuple[str | Path, ...]] = [
        ("apply", specs),  # creates
        ("apply", specs),  # the no-op one-shot apply
        ("diff", specs),
        ("get", "services", "-n", namespace),
        ("delete", specs),
    ]
    for args in commands:
        assert under(loaded(tmp_path, *args), NEVER_ONE_SHOT) == [], args
