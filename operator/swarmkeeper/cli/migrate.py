"""``swarmkeeper import compose`` and ``swarmkeeper export``: the ways in for existing stacks.

Import translates a compose file; export reads what runs. Both write one object per file (or
one multi-document YAML to stdout), with comments saying what did not translate, and check that
what they wrote loads as specs. Neither changes the swarm: taking running objects over is
``apply --adopt``'s job. Secret values are never read or written here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import EXIT_FAILED, EXIT_INVALID, err, fail, out, print_load_errors, setup_logging

if TYPE_CHECKING:
    from ..sources.migrate.writing import SpecObject

import_app = typer.Typer(
    name="import",
    help="Translate existing definitions into swarmkeeper specs.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

OutputDir = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", metavar="DIR", help="Write one file per object into this folder (stdout when omitted)."
    ),
]
Force = Annotated[bool, typer.Option(help="Overwrite spec files that exist in the output folder.")]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")]


def _write(objects: Sequence[SpecObject], header: Sequence[str], output: Path | None, force: bool) -> None:
    """Every object into ``output`` (a subfolder per namespace when there are several), or stdout."""
    from ..sources.migrate.writing import FilesExist, render_all, write

    rendered = render_all(objects, header, output)
    if not rendered.ok:
        err.print("error: the generated specs do not load; nothing was written:", markup=False)
        print_load_errors(rendered.checked)
        raise typer.Exit(EXIT_FAILED)
    if output is None:
        out.print(rendered.stream(), markup=False)
        return
    try:
        write(rendered.texts, force=force)
    except FilesExist as exc:
        shown = ", ".join(str(p) for p in exc.paths[:5]) + (" ..." if len(exc.paths) > 5 else "")
        fail(f"{shown}: exists; nothing was written (use --force to overwrite)", EXIT_INVALID)
    n = len(rendered.texts)
    err.print(f"wrote {n} spec file{'s' if n != 1 else ''} to {output}", markup=False)


def _namespace_or_exit(namespace: str | None) -> None:
    import re

    from ..api.base import NAME_PATTERN

    if namespace is not None and (not re.match(NAME_PATTERN, namespace) or len(namespace) > 40):
        fail(
            f"--namespace {namespace!r}: use up to 40 of a-z, 0-9 and -, starting and ending alphanumeric",
            EXIT_INVALID,
        )


@import_app.command("compose")
def import_compose(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The compose file (as for docker stack deploy -c).")],
    env_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--env-file", metavar="FILE", help="KEY=VALUE variables for ${VAR}; the environment wins, as in compose."
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            metavar="NAME",
            help="The stack name (docker stack deploy's NAME): objects are NAME_<name>.",
        ),
    ] = None,
    output: OutputDir = None,
    force: Force = False,
    verbose: Verbose = 0,
) -> None:
    """Translate a compose file into specs: one object per file, comments where something has no equivalent."""
    from ..loading.envfiles import parse_env_file
    from ..loading.files import FileProblem, read_bounded
    from ..sources.migrate.compose import MAX_COMPOSE_BYTES
    from ..sources.migrate.compose import import_compose as translate
    from ..sources.migrate.writing import KIND_PREFIX

    setup_logging(verbose)
    _namespace_or_exit(namespace)
    variables: dict[str, str] = {}
    for path in env_file or []:
        try:
            text = read_bounded(path, MAX_COMPOSE_BYTES).decode("utf-8")
        except (FileProblem, UnicodeDecodeError) as exc:
            fail(f"{path}: {exc}", EXIT_INVALID)
        parsed, malformed = parse_env_file(text)
        if malformed:
            fail(f"{path}:{malformed[0]}: not a KEY=VALUE line", EXIT_INVALID)
        variables.update(parsed)
    variables.update(os.environ)
    try:
        raw = read_bounded(file, MAX_COMPOSE_BYTES)
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except FileProblem as exc:
        fail(f"{file}: {exc}", EXIT_INVALID)
    except UnicodeDecodeError:
        fail(f"{file}: not valid UTF-8 text", EXIT_INVALID)
    result = translate(text, file, variables=variables, namespace=namespace, specs_dir=output or Path.cwd())
    if not result.ok:
        for e in result.errors:
            err.print(f"error: {e}", markup=False)
        n = len(result.errors)
        err.print(f"{n} error{'s' if n != 1 else ''}; nothing was written", markup=False)
        raise typer.Exit(EXIT_INVALID)
    for note in result.notes:
        err.print(f"note: {note}", markup=False)
    for obj in result.objects:
        for comment in obj.comments:
            err.print(f"note: {KIND_PREFIX[obj.kind]} {obj.name}: {comment}", markup=False)
    header = [f"Imported from {file} by swarmkeeper import compose."]
    _write(result.objects, header, output, force)


def export(
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", metavar="NAMESPACE", help="Only objects of this namespace.")
    ] = None,
    output: OutputDir = None,
    force: Force = False,
    host: Annotated[
        str | None,
        typer.Option("--host", "-H", envvar="DOCKER_HOST", metavar="URL", help="The engine to read (default: local)."),
    ] = None,
    verbose: Verbose = 0,
) -> None:
    """Specs for what runs in the swarm now: services, networks, configs, and secrets by reference."""
    from ..api import EngineEndpoint
    from ..sources.migrate.export import export_state
    from ..swarm.connect import connect
    from ..swarm.errors import EngineError
    from ..swarm.observe import observe

    setup_logging(verbose)
    _namespace_or_exit(namespace)
    try:
        state = observe(connect(EngineEndpoint(host=host) if host else None))
    except EngineError as exc:
        fail(str(exc))
    objects = export_state(state, namespace)
    if not objects:
        fail("nothing to export" + (f" in namespace {namespace}" if namespace else ""))
    secrets = [o for o in objects if o.kind == "SwarmSecret"]
    if secrets:
        err.print(
            f"note: {len(secrets)} secret value{'s' if len(secrets) != 1 else ''} cannot be read back from swarm: "
            "put each in the .txt file its spec names before applying",
            markup=False,
        )
    _write(objects, ["Exported from the swarm by swarmkeeper export."], output, force)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.command("export")(export)
