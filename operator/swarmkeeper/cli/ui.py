"""The dashboard's options (``--ui-addr``, ``--ui-token-file``, checked before anything starts; shared by
watch and sync) and ``swarmkeeper ui``: the dashboard alone, read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_INVALID, fail

UiAddr = Annotated[
    str | None,
    typer.Option(
        metavar="HOST:PORT",
        help="Serve the read-only dashboard on HOST:PORT (host 127.0.0.1 when omitted; any other than a "
        "loopback address needs --ui-token-file).",
    ),
]
UiTokenFile = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Token the dashboard asks for: Authorization: Bearer <token>, or ?token=<token> once in a browser.",
    ),
]


def ui_token(addr: str | None, token_file: Path | None) -> bytes:
    """The dashboard's token, read once (empty: none); exit 2 when the address is refused."""
    from ..controller.ui import check_address
    from ..loading.files import FileProblem, read_bounded

    if addr is None:
        if token_file is not None:
            fail("--ui-token-file needs --ui-addr", EXIT_INVALID)
        return b""
    token = b""
    if token_file is not None:
        try:
            token = read_bounded(token_file, 4096).strip()
        except FileProblem as exc:
            fail(f"--ui-token-file {token_file}: {exc}", EXIT_INVALID)
        if not token:
            fail(f"--ui-token-file {token_file}: is empty", EXIT_INVALID)
    problem = check_address(addr, bool(token))
    if problem is not None:
        fail(f"--ui-addr: {problem}", EXIT_INVALID)
    return token


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui(
        paths: Annotated[
            list[Path] | None,
            typer.Argument(
                metavar="[PATH...]",
                help="Spec files or folders: their plan against the swarm is shown, never applied.",
            ),
        ] = None,
        ui_addr: Annotated[
            str,
            typer.Option(
                metavar="HOST:PORT",
                help="Where the dashboard listens (any other than a loopback address needs --ui-token-file).",
            ),
        ] = "127.0.0.1:8080",
        ui_token_file: UiTokenFile = None,
        interval: Annotated[
            str, typer.Option(metavar="DURATION", help="Full refresh period, besides file and engine events.")
        ] = "1m",
        prune: Annotated[bool, typer.Option(help="Show what --prune would delete.")] = False,
        host: Annotated[
            str | None,
            typer.Option("--host", "-H", envvar="DOCKER_HOST", metavar="URL", help="Default engine."),
        ] = None,
        source: Annotated[
            str, typer.Option("--source", metavar="NAME", help="The source whose objects the specs are planned as.")
        ] = "default",
        verbose: Annotated[
            int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
        ] = 0,
    ) -> None:
        """Serve the read-only dashboard: what runs in the swarm, from every source, and the plan of PATH."""
        from ..api.units import duration_to_ns
        from ..controller.loop import LoopOptions
        from ..controller.watch import WatchOptions, run_watch
        from .common import manager_or_wait, setup_logging

        setup_logging(max(verbose, 1))
        try:
            period = duration_to_ns(interval) / 1e9
        except ValueError as exc:
            fail(f"--interval: {exc}", EXIT_INVALID)
        token = ui_token(ui_addr, ui_token_file)
        for p in paths or []:
            if not p.exists():
                fail(f"{p}: no such file or folder", EXIT_INVALID)
        from ..engine.run import Clients

        manager_or_wait(lambda: Clients(host).get(None), wait=True, init=False, advertise_addr=None)
        loop = LoopOptions(
            interval=period, prune=prune, source=source, host=host, ui_addr=ui_addr, ui_token=token, read_only=True
        )
        raise typer.Exit(run_watch(WatchOptions(paths=paths or [], status="none", loop=loop)))
