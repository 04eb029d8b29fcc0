"""What a one-shot command loads: only what it uses.

Start-up is most of a no-op ``apply`` (docs/benchmarks.md): each command imports the engine, the
models and the Docker client when it runs, never the long-running front doors (Kubernetes, Git,
file watching, metrics) nor their libraries, and compiles the validators of the kinds it reads
only. Each command runs as a real process; a probe records ``sys.modules`` when it exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_helpers import write_spec

# Libraries only the controllers, the Git / Kubernetes / SOPS sources, migrate or the schema
# generator use; and swarmkeeper's own packages for those.
NEVER_ONE_SHOT = frozenset(
    {
        "aiohttp",
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
import atexit, json, os, sys

def record():
    modules = sorted(sys.modules)  # before anything here imports more
    base = sys.modules["pydantic"].BaseModel if "pydantic" in sys.modules else None
    built, stack = [], list(base.__subclasses__()) if base else []
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("swarmkeeper.") and cls.__pydantic_complete__:
            built.append(cls.__name__)
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump({"modules": modules, "built": sorted(set(built))}, f)

atexit.register(record)
sys.argv[0] = "swarmkeeper"
from swarmkeeper.cli.main import main
main()
"""


def loaded(tmp_path: Path, *args: str | Path) -> tuple[set[str], set[str]]:
    """The modules (and names of the swarmkeeper models compiled) by the end of ``swarmkeeper ARGS``."""
    out = tmp_path / "probe.json"
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
    data = json.loads(out.read_text())
    return set(data["modules"]), set(data["built"])


def under(modules: set[str], packages: frozenset[str]) -> list[str]:
    """The packages of ``packages`` that ``modules`` holds (a package or any module inside it)."""
    return sorted(p for p in packages if any(m == p or m.startswith(p + ".") for m in modules))


def test_help_loads_neither_models_nor_the_docker_client(tmp_path: Path) -> None:
    modules, _ = loaded(tmp_path, "--help")
    assert under(modules, NEVER_ONE_SHOT | ENGINE | SPECS) == []


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
    modules, built = loaded(tmp_path, "validate", specs)
    assert under(modules, NEVER_ONE_SHOT | ENGINE) == []
    assert "SwarmNetwork" in built
    assert not built & {"SwarmService", "SwarmCluster", "SwarmSecret", "SwarmConfig"}


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
        modules, built = loaded(tmp_path, *args)
        assert under(modules, NEVER_ONE_SHOT) == [], args
        # Kinds absent from the specs are never compiled, nor is the any-kind adapter of migrate.
        assert not built & {"SwarmCluster", "SwarmConfig"}, args
