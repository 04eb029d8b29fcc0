"""``swarmkeeper import compose`` and ``swarmkeeper export``: the ways in for existing stacks.

Import translates a compose file; export reads what runs. Both write one object per file (or
one multi-document YAML to stdout), with comments saying what did not translate, and check that
what they wrote loads as specs. Neither changes the swarm: taking running objects over is
``apply --adopt``'s job. Secret values are never printed: import copies the files a compose file
names into the specs folder (a secret's copy readable by its owner only), export reads none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import EXIT_FAILED, EXIT_INVALID, err, fail, out, print_load_errors, setup_logging

if TYPE_CHECKING:
    from ..sources.migrate.compose import ImportResult
    from ..sources.migrate.writing import FileCopy, Placement, SpecObject

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


def _write(
    objects: Sequence[SpecObject],
    header: Sequence[str],
    output: Path | None,
    force: bool,
    copies: Mapping[Path, FileCopy] | None = None,
) -> None:
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
        write(rendered.texts, force=force, copies=copies)
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
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...",
            help="The compose file, and files that override it, merged as docker stack deploy -c A -c B merges them.",
        ),
    ],
    env_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--env-file",
            metavar="FILE",
            help="KEY=VALUE variables for ${VAR}, instead of the .env beside the first file; the environment wins.",
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
    keep_file_paths: Annotated[
        bool,
        typer.Option(
            "--keep-file-paths",
            help="Name the files beside the compose file where they are instead of copying them into DIR/_files/, "
            "and mark the nearest folder holding them and DIR as the root of the spec tree.",
        ),
    ] = False,
    verbose: Verbose = 0,
) -> None:
    """Translate compose files into specs: one object per file, comments where something has no equivalent."""
    from ..sources.migrate.compose import import_compose as translate

    setup_logging(verbose)
    _namespace_or_exit(namespace)
    variables = _variables(files[0], env_file)
    texts = [(_read_compose(f), f) for f in files]
    (text, first), overrides = texts[0], texts[1:]
    copying = output is not None and not keep_file_paths
    # Copying: references come back relative to the file system's root, i.e. absolute, and are made
    # relative to the specs when placed; otherwise relative to where the specs go.
    names_from = Path(Path.cwd().anchor) if copying else Path(os.path.abspath(output or Path.cwd()))
    result = translate(text, first, overrides=overrides, variables=variables, namespace=namespace, specs_dir=names_from)
    if output is not None and not copying and result.ok:
        _keep_paths_or_exit(result, output)
    _report(result)
    names = " ".join(str(f) for f in files)
    header = [f"Imported from {names} by swarmkeeper import compose."]
    if output is None or not copying:
        _write(result.objects, header, output, force)
        _mark_root(result, output)
        return
    placement = _place(result, output, names_from, Path(os.path.abspath(first)).parent)
    _write(result.objects, header, output, force, placement.copies)
    if placement.copies:
        from ..loading.discovery import VALUES_FOLDER

        folder = output / VALUES_FOLDER
        copies = Path(os.path.abspath(folder))
        shown = ", ".join(sorted(p.relative_to(copies).as_posix() for p in placement.copies))
        n = len(placement.copies)
        err.print(
            f"copied {n} file{'s' if n != 1 else ''} the compose file names into {folder} ({shown}); "
            "the specs name the copies",
            markup=False,
        )


def _keep_paths_or_exit(result: ImportResult, output: Path) -> None:
    """--keep-file-paths: the specs and the files they name must share a folder that may be marked
    as the root of their spec tree; otherwise apply could not read the files, so nothing is written."""
    from ..loading.discovery import VALUES_FOLDER, root_refusal
    from ..sources.migrate.writing import file_references

    specs = Path(os.path.abspath(output))
    outside = any(
        not Path(os.path.normpath(specs / container[key])).is_relative_to(specs)
        for obj in result.objects
        for container, key in file_references(obj)
    )
    root = result.tree_root
    refusal = root_refusal(root) if root is not None else None
    if not outside or (root is not None and refusal is None):
        return
    why = "share no folder but the file system's root" if root is None else f"share {root}, which {refusal}"
    fail(
        f"--keep-file-paths: {output} and the files its specs name {why}; nothing was written "
        f"(without --keep-file-paths the files are copied into {output / VALUES_FOLDER})",
        EXIT_INVALID,
    )


def _mark_root(result: ImportResult, output: Path | None) -> None:
    from ..loading.discovery import ROOT_MARKER
    from ..sources.migrate.writing import mark_tree_root

    if result.tree_root is None:
        return
    if output is None:
        marker = result.tree_root / ROOT_MARKER
        err.print(
            f"note: create {marker}, or import with -o DIR to copy the files into DIR, so the specs may read them",
            markup=False,
        )
    else:
        mark_tree_root(result.tree_root)


def _place(result: ImportResult, output: Path, names_from: Path, compose_dir: Path) -> Placement:
    """The files named outside the specs folder, to copy into it; a note for each that cannot be read."""
    from ..sources.migrate.writing import place_files

    placement = place_files(result.objects, output, names_from=names_from, compose_dir=compose_dir)
    for original, copy, problem in placement.unread:
        err.print(f"note: {original}: {problem}; not copied: put the file at {copy} before applying", markup=False)
    return placement


def _variables(first: Path, env_files: list[Path] | None) -> dict[str, str]:
    """What ${VAR} expands to: the environment over the env files, as docker compose reads them.

    Without --env-file, the .env beside the first compose file, as docker compose reads it (docker
    stack deploy ignores it, and users have asked it to read it since 2016: moby#29133).
    """
    from ..loading.envfiles import parse_env_file
    from ..loading.files import FileProblem, read_bounded
    from ..sources.migrate.compose import MAX_COMPOSE_BYTES

    paths = env_files
    if paths is None:
        dotenv = first.parent / ".env"
        paths = [dotenv] if dotenv.is_file() else []
        if paths:
            err.print(
                f"note: variables read from {dotenv}, as docker compose reads it (docker stack deploy does not; "
                "--env-file replaces it, --env-file /dev/null reads none)",
                markup=False,
            )
    variables: dict[str, str] = {}
    for path in paths:
        try:
            text = read_bounded(path, MAX_COMPOSE_BYTES).decode("utf-8") if path != Path("/dev/null") else ""
        except (FileProblem, UnicodeDecodeError) as exc:
            fail(f"{path}: {exc}", EXIT_INVALID)
        parsed, malformed = parse_env_file(text)
        if malformed:
            fail(f"{path}:{malformed[0]}: not a KEY=VALUE line", EXIT_INVALID)
        variables.update(parsed)
    variables.update(os.environ)
    return variables


def _read_compose(file: Path) -> str:
    from ..loading.files import FileProblem, read_bounded
    from ..sources.migrate.compose import MAX_COMPOSE_BYTES

    try:
        raw = read_bounded(file, MAX_COMPOSE_BYTES)
        return raw.decode("utf-8").removeprefix("\ufeff")
    except FileProblem as exc:
        fail(f"{file}: {exc}", EXIT_INVALID)
    except UnicodeDecodeError:
        fail(f"{file}: not valid UTF-8 text", EXIT_INVALID)


def _report(result: ImportResult) -> None:
    """Errors (then exit 2, nothing written), or the notes: one per key not translated, and a summary."""
    from ..sources.migrate.writing import KIND_PREFIX

    if not result.ok:
        for e in result.errors:
            err.print(f"error: {e}", markup=False)
        n = len(result.errors)
        err.print(f"{n} error{'s' if n != 1 else ''}; nothing was written", markup=False)
        raise typer.Exit(EXIT_INVALID)
    for note in result.notes:
        err.print(f"note: {note}", markup=False)
    dropped = 0
    for obj in result.objects:
        for comment in obj.comments:
            err.print(f"note: {KIND_PREFIX[obj.kind]} {obj.name}: {comment}", markup=False)
            dropped += "not translated" in comment
    if dropped:
        where = sum(1 for o in result.objects if any("not translated" in c for c in o.comments))
        err.print(
            f"note: {dropped} key{'s' if dropped != 1 else ''} not translated in {where} object"
            f"{'s' if where != 1 else ''}; each is a comment in its spec file",
            markup=False,
        )


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
    from ..sources.migrate.export import export_state
    from ..swarm.connect import connect_default
    from ..swarm.errors import EngineError
    from ..swarm.observe import observe

    setup_logging(verbose)
    _namespace_or_exit(namespace)
    try:
        state = observe(connect_default(host))
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
