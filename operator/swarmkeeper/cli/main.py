"""``swarmkeeper``: validate, diff, apply, get, delete and watch swarm specs.

Exit codes: 0 success; 1 a change failed (``diff``: there are changes); 2 invalid input, in which
case nothing in the swarm was changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import __version__
from .common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    ImageInterval,
    err,
    fail,
    load_or_exit,
    manager_or_wait,
    out,
    setup_logging,
)
from .ui import UiAddr, UiTokenFile, ui_token

if TYPE_CHECKING:
    from ..api import Key
    from ..engine.reconcile import Outcome
    from ..engine.run import Clients, PassOutcome, TargetOutcome
    from ..loading import Manifest
    from ..swarm.connect import EngineClient

# Each command imports the engine when it runs: `swarmkeeper --help` must not pay for pydantic
# models and the docker client.

app = typer.Typer(
    name="swarmkeeper",
    help="A declarative control plane for Docker Swarm: specs in, converged swarm out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Paths = Annotated[
    list[Path], typer.Argument(metavar="PATH...", help="Spec files or folders (searched for *.yaml, *.yml).")
]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", metavar="NAME", help="Only objects of this SwarmCluster.")]
HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host",
        "-H",
        envvar="DOCKER_HOST",
        metavar="URL",
        help="Default engine (objects without spec.cluster).",
    ),
]
SourceOpt = Annotated[
    str,
    typer.Option(
        "--source", metavar="NAME", help="Owner name for prune: only objects applied with the same source are pruned."
    ),
]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")]
AdoptOpt = Annotated[
    bool,
    typer.Option(
        "--adopt",
        help="Take over objects made outside swarmkeeper (e.g. by docker stack deploy) under the same names, "
        "in place: a service whose spec matches keeps its tasks running.",
    ),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"swarmkeeper {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """A declarative control plane for Docker Swarm."""


def _clients(host: str | None) -> Clients:
    from ..engine.run import Clients

    return Clients(host)


def _fail_unreachable(outcome: PassOutcome) -> None:
    """A one-shot command stops at the first engine that did not answer, naming it."""
    for t in outcome.targets:
        if t.error is not None:
            fail(f"{t.where}: {t.error}" if t.cluster else t.error)


@app.command()
def validate(paths: Paths, verbose: Verbose = 0) -> None:
    """Check specs without touching the swarm: schema, references, values."""
    setup_logging(verbose)
    manifests = load_or_exit(paths)
    kinds: dict[str, int] = {}
    for m in manifests:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no objects"
    out.print(f"valid: {summary}")


@app.command()
def diff(
    paths: Paths,
    prune: Annotated[bool, typer.Option(help="Show managed objects that left the specs as deletions.")] = False,
    cluster: ClusterOpt = None,
    host: HostOpt = None,
    source: SourceOpt = "default",
    adopt: AdoptOpt = False,
    verbose: Verbose = 0,
) -> None:
    """Field-level differences between specs and the live swarm (exit 1 when there are any)."""
    from ..engine.run import Options, run_pass
    from . import render
    from .nodes import cluster_lines

    setup_logging(verbose)
    manifests = load_or_exit(paths)
    options = Options(prune=prune, dry_run=True, source=source, adopt=adopt, status=False)
    # Empty specs reach the engine only to show what --prune would remove.
    outcome = run_pass(manifests, _clients(host), options, only=cluster, empty_pass=prune)
    _fail_unreachable(outcome)
    changes = False
    for target in outcome.targets:
        assert target.outcome is not None
        if target.cluster is not None:
            out.print(f"cluster {target.cluster}:")
        for line in [*cluster_lines(target.outcome, dry_run=True), *render.plan_lines(target.outcome.plan)]:
            out.print(line)
        plan = target.outcome.plan
        changes = changes or not plan.empty or bool(plan.errors) or bool(plan.held)
        changes = changes or any(c.planned or not c.ok for c in target.outcome.clusters)
    if not changes:
        out.print("no changes")
    raise typer.Exit(EXIT_FAILED if changes else EXIT_OK)


def _print_outcome(outcome: Outcome, dry_run: bool) -> None:
    from . import render
    from .nodes import cluster_lines

    lines = [*cluster_lines(outcome, dry_run=dry_run), *render.plan_lines(outcome.plan, changes=dry_run)]
    for line in lines:
        out.print(line)
    for result in outcome.report.results:
        if result.deferred:
            out.print(f"  {render.key_name(result.step.key)}: {result.step.swarm_name} {result.error}", style="dim")
        elif not result.ok:
            err.print(f"failed: {result.step.describe()}: {result.error}", markup=False)
        for warning in result.warnings:
            err.print(f"warning: {render.key_name(result.step.key)}: {warning}", markup=False)
    quiet = outcome.plan.empty and not outcome.plan.errors and not outcome.plan.held
    if quiet and not any(c.done or not c.ok for c in outcome.clusters):
        out.print("no changes")


@app.command()
def apply(
    paths: Paths,
    prune: Annotated[bool, typer.Option(help="Delete managed objects that left the specs.")] = False,
    force: Annotated[
        bool,
        typer.Option(help="Allow pruning more than half of the managed objects; send again a spec swarm rolled back."),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    wait: Annotated[bool, typer.Option(help="Follow services until converged; exit 1 if an update fails.")] = False,
    timeout: Annotated[str, typer.Option(metavar="DURATION", help="How long --wait (and dependsOn) may take.")] = "5m",
    cluster: ClusterOpt = None,
    host: HostOpt = None,
    source: SourceOpt = "default",
    adopt: AdoptOpt = False,
    verbose: Verbose = 0,
) -> None:
    """Make the swarm match the specs."""
    from ..api.units import duration_to_ns
    from ..engine.run import Options, run_pass
    from ..swarm.errors import EngineError

    setup_logging(verbose)
    try:
        limit = duration_to_ns(timeout) / 1e9
    except ValueError as exc:
        fail(f"--timeout: {exc}", EXIT_INVALID)
    manifests = load_or_exit(paths)
    clients = _clients(host)
    options = Options(
        prune=prune,
        force=force,
        dry_run=dry_run,
        source=source,
        dependency_timeout=limit,
        adopt=adopt,
        status=False,
    )
    # Each engine's plan is printed as it completes: a slow engine does not hide the others' results.
    outcome = run_pass(
        manifests, clients, options, only=cluster, empty_pass=prune, on_target=lambda t: _print_target(t, dry_run)
    )
    ok = outcome.applied_ok
    for target in outcome.targets:
        if target.outcome is None:
            continue
        if wait and not dry_run and not target.outcome.plan.blocked:
            keys = [m.key for m in target.manifests if m.kind == "SwarmService"]
            try:
                converged = _wait(clients.get(target.cluster, manifests), keys, limit)
            except EngineError as exc:
                fail(str(exc))
            ok = converged and ok
            # Versions freed by the finished rollout can go now rather than on the next apply. Not
            # after a rollout that failed: that pass would send the spec swarm just rolled back again.
            if converged:
                run_pass(manifests, clients, Options(source=source, status=False), only=target.cluster)
    _fail_unreachable(outcome)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def _print_target(target: TargetOutcome, dry_run: bool) -> None:
    if target.outcome is not None:
        _print_outcome(target.outcome, dry_run)


def _wait(client: EngineClient, keys: list[Key], timeout: float) -> bool:
    from rich.live import Live

    from ..engine.wait import wait_for_services
    from . import render

    if not keys:
        return True
    if out.is_terminal:
        with Live(render.progress_table({}), console=out, transient=False, auto_refresh=False) as live:
            result = wait_for_services(
                client, keys, timeout, on_progress=lambda p: live.update(render.progress_table(p), refresh=True)
            )
    else:  # logs and pipes get the final table only, not a redraw per poll
        result = wait_for_services(client, keys, timeout)
        out.print(render.progress_table(result.progress))
    if result.timed_out:
        pending = [render.key_name(k) for k, p in result.progress.items() if p is None or not p.converged]
        err.print(f"timed out after {timeout:.0f}s waiting for: {', '.join(pending)}", markup=False)
    for key, why in result.failures.items():
        err.print(f"failed: {render.key_name(key)}: {why}", markup=False)
    return result.converged


@app.command()
def get(
    kind: Annotated[
        str | None,
        typer.Argument(metavar="KIND", help="services, networks, secrets, configs, nodes (or all)."),
    ] = None,
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="Object name.")] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", metavar="NAMESPACE", help="Only objects of this namespace."),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="FORMAT", help="table, wide, yaml or json.")
    ] = "table",
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", metavar="NAME", help="Ask this SwarmCluster's engine (its spec is found with -f)."),
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Option("--file", "-f", metavar="PATH", help="Spec files or folders holding the SwarmCluster."),
    ] = None,
    host: HostOpt = None,
    verbose: Verbose = 0,
) -> None:
    """Live status of the objects swarmkeeper manages."""
    from ..engine.inventory import inventory
    from ..swarm.errors import EngineError
    from ..swarm.observe import observe
    from . import render

    setup_logging(verbose)
    if kind is not None and kind.lower() in ("nodes", "node"):
        from .nodes import show_nodes

        return show_nodes(files or [], cluster, host, output)
    kinds = _kinds_wanted(kind)
    # A cluster's engine is reached as its spec says (TLS, ssh): without specs, only the default engine.
    manifests = load_or_exit(files, resolve_values=False) if files and cluster else []
    if cluster is not None and not any(m.kind == "SwarmCluster" and m.name == cluster for m in manifests):
        fail(f"no SwarmCluster named {cluster!r}" + (" in the specs given" if files else "; pass its specs with -f"))
    try:
        objects = inventory(observe(_clients(host).get(cluster, manifests)))
    except EngineError as exc:
        fail(f"cluster {cluster}: {exc}" if cluster else str(exc))
    objects = [
        o
        for o in objects
        if (kinds is None or o.kind in kinds)
        and (name is None or o.name == name)
        and (namespace is None or o.namespace == namespace)
    ]
    if name is not None and not objects:
        fail(f"{kind} {name!r} not found", EXIT_FAILED)
    if output in ("yaml", "json"):
        docs: list[dict[str, object]] = [
            {
                "apiVersion": "swarmkeeper.io/v1alpha1",
                "kind": o.kind,
                "metadata": {"name": o.name, **({"namespace": o.namespace} if o.namespace else {})},
                "status": o.status.model_dump(mode="json", by_alias=True, exclude_none=True),
            }
            for o in objects
        ]
        render.print_documents(out, docs, output, single=name is not None)
        return
    if output not in ("table", "wide"):
        fail(f"unknown output {output!r}; use table, wide, yaml or json", EXIT_INVALID)
    wide = output == "wide"
    show_kind = kinds is None or len(kinds) > 1
    columns = ["NAME", "NAMESPACE", "READY", "UPDATE", "IMAGE", "AGE"]
    if wide:
        columns += ["MODE", "PORTS", "REVISION", "SWARM NAME", "ID"]
    rows = []
    for o in objects:
        label = f"{o.kind}/{o.name}" if show_kind else o.name
        row = [label, o.namespace or "", *_status_cells(o.kind, o.status, o.details), render.age(o.created)]
        if wide:
            row += [
                o.details.get("mode", o.details.get("driver", "")),
                o.details.get("ports", ""),
                o.details.get("revision", ""),
                o.swarm_name,
                o.swarm_id[:12],
            ]
        rows.append(row)
    if not rows:
        out.print("no objects")
        return
    render.print_table(out, columns, rows)


def _kinds_wanted(kind: str | None) -> set[str] | None:
    """The kinds ``get`` shows (None: all of them); exits on an unknown kind."""
    from ..engine.inventory import KIND_ALIASES

    if not kind or kind == "all":
        return None
    if kind.lower() not in KIND_ALIASES:
        fail(f"unknown kind {kind!r}; use one of services, networks, secrets, configs", EXIT_INVALID)
    return {KIND_ALIASES[kind.lower()]}


def _status_cells(kind: str, status: object, details: dict[str, str]) -> tuple[object, str, str]:
    """The READY, UPDATE and IMAGE cells of one object in ``get``'s table."""
    if kind == "SwarmService":
        ready = getattr(status, "ready", None)
        update = getattr(getattr(status, "update", None), "state", None) or ""
        image = getattr(status, "image", None) or ""
        return ready, update, image
    if kind == "SwarmNetwork":
        return "", "", ""
    return f"v{details['version']}", "", ""


@app.command()
def delete(
    targets: Annotated[
        list[str], typer.Argument(metavar="(PATH... | KIND NAME)", help="Spec files or folders, or a kind and a name.")
    ],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", metavar="NAMESPACE", help="With KIND NAME.")
    ] = None,
    host: HostOpt = None,
    verbose: Verbose = 0,
) -> None:
    """Remove managed objects: those defined in spec files, or one named KIND NAME."""
    from ..api import Key
    from ..engine.clusters import group_by_cluster
    from ..engine.inventory import KIND_ALIASES
    from ..engine.run import run_delete
    from . import render

    setup_logging(verbose)
    if len(targets) == 2 and targets[0].lower() in KIND_ALIASES and not Path(targets[0]).exists():
        keys_by_cluster: dict[str | None, set[Key]] = {
            None: {Key(KIND_ALIASES[targets[0].lower()], namespace, targets[1])}
        }
        manifests: list[Manifest] = []
    else:
        manifests = load_or_exit([Path(t) for t in targets], resolve_values=False)
        keys_by_cluster = {}
        for t in group_by_cluster(manifests):
            keys_by_cluster[t.cluster] = {m.key for m in t.manifests if m.kind != "SwarmCluster"}
    outcome = run_delete(keys_by_cluster, _clients(host), manifests)
    for k in outcome.missing:
        out.print(f"{render.key_name(k)}: not found (or not managed by swarmkeeper)")
    for plan in outcome.plans.values():
        for line in render.plan_lines(plan, changes=False):
            out.print(line)
    for r in outcome.failed:
        err.print(f"failed: {r.step.describe()}: {r.error}", markup=False)
    for cluster, why in outcome.unreachable.items():
        fail(f"cluster {cluster}: {why}" if cluster else why)
    raise typer.Exit(EXIT_OK if outcome.ok else EXIT_FAILED)


@app.command()
def watch(
    paths: Paths,
    interval: Annotated[
        str, typer.Option(metavar="DURATION", help="Full resync period, besides file and engine events.")
    ] = "5m",
    prune: Annotated[bool, typer.Option(help="Delete managed objects that left the specs.")] = False,
    force: Annotated[bool, typer.Option(help="Allow pruning more than half of the managed objects.")] = False,
    status: Annotated[
        str,
        typer.Option(
            metavar="MODE", help="Where status goes: inline (the spec files' status: blocks), file (.status/), none."
        ),
    ] = "inline",
    once: Annotated[bool, typer.Option(help="One pass, then exit (non-zero if it failed).")] = False,
    metrics_addr: Annotated[
        str | None, typer.Option(metavar="HOST:PORT", help="Serve /metrics, /healthz and /readyz on HOST:PORT.")
    ] = None,
    log_format: Annotated[str, typer.Option(metavar="FORMAT", help="text or json.")] = "text",
    init_swarm: Annotated[bool, typer.Option(help="Initialise a single-node swarm if the engine has none.")] = False,
    advertise_addr: Annotated[
        str | None, typer.Option(metavar="ADDR", help="With --init-swarm: the address to advertise.")
    ] = None,
    image_interval: ImageInterval = "1m",
    registry_webhook_addr: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Take a registry's push notifications on http://HOST:PORT/registry: a tag pushed again is "
            "rolled out at once (needs --registry-webhook-token-file).",
        ),
    ] = None,
    registry_webhook_token_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The token the registry sends as Authorization: Bearer <token> (its endpoint's headers).",
        ),
    ] = None,
    ui_addr: UiAddr = None,
    ui_token_file: UiTokenFile = None,
    host: HostOpt = None,
    source: SourceOpt = "default",
    verbose: Verbose = 0,
) -> None:
    """Keep the swarm in step with a specs folder; write live status back into the spec files."""
    from ..api.units import duration_to_ns
    from ..controller.loop import LoopOptions
    from ..controller.watch import WatchOptions, run_watch

    if log_format not in ("text", "json"):
        fail("--log-format must be text or json", EXIT_INVALID)
    if status not in ("inline", "file", "none"):
        fail("--status must be inline, file or none", EXIT_INVALID)
    setup_logging(max(verbose, 1), log_format)
    try:
        period = duration_to_ns(interval) / 1e9
    except ValueError as exc:
        fail(f"--interval: {exc}", EXIT_INVALID)
    try:
        image_period = duration_to_ns(image_interval) / 1e9
    except ValueError as exc:
        fail(f"--image-interval: {exc}", EXIT_INVALID)
    hook_token = _hook_token(registry_webhook_addr, registry_webhook_token_file)
    dashboard_token = ui_token(ui_addr, ui_token_file)
    for p in paths:
        if not p.exists():
            fail(f"{p}: no such file or folder", EXIT_INVALID)
    node = manager_or_wait(
        lambda: _clients(host).get(None), wait=not once, init=init_swarm, advertise_addr=advertise_addr
    )
    if node is not None:
        out.print(f"initialised a single-node swarm (node {node[:12]})")
    loop = LoopOptions(
        interval=period,
        prune=prune,
        force=force,
        once=once,
        source=source,
        host=host,
        metrics_addr=metrics_addr,
        image_interval=image_period,
        registry_hook_addr=registry_webhook_addr,
        registry_hook_token=hook_token,
        ui_addr=None if once else ui_addr,
        ui_token=dashboard_token,
    )
    raise typer.Exit(run_watch(WatchOptions(paths=paths, status=status, loop=loop)))  # type: ignore[arg-type]


def _hook_token(addr: str | None, token_file: Path | None) -> bytes:
    """The registry notifications' token, read once; exit 2 on a missing or empty one."""
    from ..loading.files import FileProblem, read_bounded

    if addr is None:
        return b""
    if token_file is None:
        fail("--registry-webhook-addr needs --registry-webhook-token-file", EXIT_INVALID)
    try:
        token = read_bounded(token_file, 4096).strip()
    except FileProblem as exc:
        fail(f"--registry-webhook-token-file {token_file}: {exc}", EXIT_INVALID)
    if not token:
        fail(f"--registry-webhook-token-file {token_file}: is empty", EXIT_INVALID)
    return token


def _register_extras() -> None:
    """Commands kept in their own modules (one per front door or tool), each adding itself."""
    import importlib

    for module in EXTRA_COMMANDS:
        importlib.import_module(f"{__package__}.{module}").register(app)


# Each entry is a module in this package with ``register(app: typer.Typer) -> None``.
EXTRA_COMMANDS: list[str] = ["sync", "operator", "nodes", "migrate", "ui"]
_register_extras()


def main() -> None:
    app()
