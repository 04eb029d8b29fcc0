"""``swarmkeeper nodes``: a swarm's nodes, as its SwarmCluster sees them or as the engine lists them.

Also how ``apply`` and ``diff`` print what a pass does (or would do) to a cluster's membership.
Read-only: listing nodes observes and plans, and never changes the swarm. Nothing printed here can
hold a join token or the unlock key: the status it prints is built without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from .common import EXIT_INVALID, fail, load_or_exit, out, setup_logging

if TYPE_CHECKING:
    from ..api.cluster import NodeStatus
    from ..engine.reconcile import Outcome

COLUMNS = ["NAME", "ROLE", "AVAILABILITY", "STATE", "LEADER", "REACHABILITY", "ENGINE", "LABELS"]


def _symbol(step: str) -> tuple[str, str]:
    word = step.split(" ", 1)[0]
    if word in ("initialise", "join", "store"):
        return "+", "green"
    if word == "remove":
        return "-", "red"
    return "~", "yellow"


def cluster_lines(outcome: Outcome, *, dry_run: bool) -> list[Text]:
    """What the pass did (or, in a dry run, would do) to each cluster; errors are logged where they happen."""
    lines: list[Text] = []
    for cluster in outcome.clusters:
        for step in cluster.planned if dry_run else cluster.done:
            symbol, style = _symbol(step)
            line = Text(f"{symbol} ", style=style)
            line.append(f"SwarmCluster/{cluster.name}", style="bold")
            line.append(f": {step}")
            lines.append(line)
    return lines


def _rows(statuses: list[NodeStatus], unknown: list[NodeStatus]) -> list[list[str]]:
    rows = []
    for node, is_unknown in [*((n, False) for n in statuses), *((n, True) for n in unknown)]:
        rows.append(
            [
                f"{node.name} (unknown)" if is_unknown else node.name,
                node.role or "",
                node.availability or "",
                node.state,
                "yes" if node.leader else "",
                node.reachability or "",
                node.engine_version or "",
                ",".join(f"{k}={v}" for k, v in sorted(node.labels.items())),
            ]
        )
    return rows


def show_nodes(paths: list[Path], cluster: str | None, host: str | None, output: str) -> None:
    """Print the nodes of every SwarmCluster with nodes in ``paths`` (or only ``cluster``); without
    specs, or for a cluster that is a connection only, the nodes its engine lists."""
    from ..api.cluster import SwarmCluster
    from ..engine.cluster import has_nodes, reconcile_cluster
    from ..engine.cluster_status import member_status
    from ..engine.clusters import connect_target
    from ..swarm.errors import EngineError
    from .render import print_table

    if output not in ("table", "yaml", "json"):
        fail(f"unknown output {output!r}; use table, yaml or json", EXIT_INVALID)
    manifests = load_or_exit(paths, resolve_values=False) if paths else []
    clusters = [m for m in manifests if isinstance(m.resource, SwarmCluster)]
    if cluster is not None and not any(m.name == cluster for m in clusters):
        fail(f"no SwarmCluster named {cluster!r}" + (" in the specs given" if paths else "; pass its specs with -f"))
    chosen = [m for m in clusters if cluster is None or m.name == cluster]
    sections: list[tuple[str | None, list[NodeStatus], list[NodeStatus], dict[str, Any]]] = []
    try:
        for m in (m for m in chosen if has_nodes(m)):
            status = reconcile_cluster(m, dry_run=True).status
            doc = {"cluster": m.name, **status.model_dump(mode="json", by_alias=True, exclude_none=True)}
            sections.append((m.name, status.nodes, status.unknown_nodes, doc))
        plain: list[str | None] = [m.name for m in chosen if not has_nodes(m)] if chosen else [None]
        for name in plain:
            client = connect_target(name, manifests, host=host)
            from ..swarm.nodes import members

            listed = [
                member_status(m.hostname, m, None, None) for m in sorted(members(client), key=lambda m: m.hostname)
            ]
            doc = {"nodes": [n.model_dump(mode="json", by_alias=True, exclude_none=True) for n in listed]}
            sections.append((name, listed, [], {"cluster": name, **doc} if name else doc))
    except (EngineError, LookupError) as exc:
        fail(str(exc))
    if output != "table":
        from . import render

        docs = [doc for *_, doc in sections]
        render.print_documents(out, docs, output, single=len(docs) == 1)
        return
    for name, statuses, unknown, _ in sections:
        if len(sections) > 1:
            out.print(f"cluster {name or '(default engine)'}:", style="bold")
        print_table(out, COLUMNS, _rows(statuses, unknown))


def register(app: typer.Typer) -> None:
    @app.command("nodes")
    def nodes(
        files: Annotated[
            list[Path] | None,
            typer.Option(
                "--file", "-f", metavar="PATH", help="Spec files or folders holding the SwarmCluster objects."
            ),
        ] = None,
        cluster: Annotated[
            str | None, typer.Option("--cluster", metavar="NAME", help="Only this SwarmCluster.")
        ] = None,
        output: Annotated[str, typer.Option("--output", "-o", metavar="FORMAT", help="table, yaml or json.")] = "table",
        host: Annotated[
            str | None,
            typer.Option("--host", "-H", envvar="DOCKER_HOST", metavar="URL", help="Engine to ask without specs."),
        ] = None,
        verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging.")] = 0,
    ) -> None:
        """The swarm's nodes: role, availability, state, leader, reachability, engine, labels."""
        setup_logging(verbose)
        show_nodes(files or [], cluster, host, output)
