"""The same workload for swarmkeeper and for `docker stack deploy`: N services with networks and
secrets, as swarmkeeper specs and as an equivalent compose file."""

from __future__ import annotations

import textwrap
from pathlib import Path

IMAGE = "local/busybox:1"


def sizes(n: int) -> tuple[int, int]:
    """(networks, secrets) for n services: one of each per ten services."""
    return max(1, n // 10), max(1, n // 10)


def write_specs(folder: Path, n: int, namespace: str, *, release: str = "1", changed: int | None = None) -> Path:
    """Spec files under ``folder``; service number ``changed`` gets ``RELEASE=release``."""
    folder.mkdir(parents=True, exist_ok=True)
    nets, secrets = sizes(n)
    docs = []
    for i in range(nets):
        docs.append(f"kind: SwarmNetwork\nmetadata: {{name: net{i}, namespace: {namespace}}}\nspec: {{}}\n")
    for i in range(secrets):
        (folder / f"secret{i}.txt").write_text(f"bench-secret-{i}")
        docs.append(
            f"kind: SwarmSecret\nmetadata: {{name: secret{i}, namespace: {namespace}}}\nspec: {{file: secret{i}.txt}}\n"
        )
    for i in range(n):
        rel = release if changed == i else "1"
        docs.append(
            textwrap.dedent(f"""\
            kind: SwarmService
            metadata: {{name: svc{i}, namespace: {namespace}}}
            spec:
              image: {IMAGE}
              command: ["sleep", "86400"]
              replicas: 1
              env: {{RELEASE: "{rel}"}}
              stopGracePeriod: 1s
              networks: [{{name: net{i % nets}}}]
              secrets: [{{source: secret{i % secrets}}}]
            """)
        )
    # One file per 100 objects, as a real folder would be split (a file holds at most 100,000
    # YAML nodes: the loader's guard against alias bombs).
    for old in folder.glob("workload*.yaml"):
        old.unlink()
    for start in range(0, len(docs), 100):
        text = "".join(f"---\napiVersion: swarmkeeper.io/v1alpha1\n{d}" for d in docs[start : start + 100])
        (folder / f"workload-{start // 100:04d}.yaml").write_text(text)
    return folder


def write_compose(folder: Path, n: int, *, release: str = "1", changed: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nets, secrets = sizes(n)
    lines = ['version: "3.8"', "services:"]
    for i in range(n):
        rel = release if changed == i else "1"
        lines += [
            f"  svc{i}:",
            f"    image: {IMAGE}",
            '    command: ["sleep", "86400"]',
            f'    environment: {{RELEASE: "{rel}"}}',
            "    stop_grace_period: 1s",
            "    deploy: {replicas: 1}",
            f"    networks: [net{i % nets}]",
            f"    secrets: [secret{i % secrets}]",
        ]
    lines.append("networks:")
    lines += [f"  net{i}: {{driver: overlay}}" for i in range(nets)]
    lines.append("secrets:")
    for i in range(secrets):
        (folder / f"secret{i}.txt").write_text(f"bench-secret-{i}")
        lines.append(f"  secret{i}: {{file: ./secret{i}.txt}}")
    path = folder / "compose.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
