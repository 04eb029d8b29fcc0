"""What every command shares: loading specs with errors printed, logging, engine selection."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ..loading import LoadResult, Manifest
    from ..swarm.connect import EngineClient

# --image-interval of the controllers (watch, operator).
ImageInterval = Annotated[
    str,
    typer.Option(
        metavar="DURATION",
        help="How often registries are asked for the digest of each followed tag (resolveImage: always).",
    ),
]

# Exit codes shared by all commands (diff uses 1 for "changes").
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

# soft_wrap: a line longer than the terminal (or, in a pipe or file, than 80 columns) is written
# whole, never broken or cut.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _argument_metavars() -> None:
    """Help shows an argument by its metavar alone: ``PATH...`` in the usage line and the help,
    where typer writes ``{paths}...`` and ``paths... <list[Path]>``. Arguments without a metavar
    keep typer's rendering; options show their metavar already."""
    from typer.core import TyperArgument

    help_record = TyperArgument.get_help_record
    usage_pieces = TyperArgument.get_usage_pieces

    def get_help_record(self: TyperArgument, ctx: Any) -> tuple[str, str] | None:
        record = help_record(self, ctx)
        if record is None or self.metavar is None:
            return record
        return self.metavar, record[1]

    def get_usage_pieces(self: TyperArgument, ctx: Any) -> list[str]:
        if self.metavar is None:
            return usage_pieces(self, ctx)
        return [self.metavar if self.required else f"[{self.metavar}]"]

    TyperArgument.get_help_record = get_help_record  # type: ignore[method-assign]
    TyperArgument.get_usage_pieces = get_usage_pieces  # type: ignore[method-assign]


_argument_metavars()


def setup_logging(verbose: int, log_format: str = "text") -> None:
    level = logging.WARNING - 10 * verbose
    root = logging.getLogger()
    root.handlers.clear()
    handler: logging.Handler
    if log_format == "json":
        from .jsonlog import JsonFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
    elif err.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=err, show_path=False, rich_tracebacks=False, markup=False)
    else:  # a file or a pipe: one line per record, never wrapped to a width nobody reads at
        from .jsonlog import LineFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(LineFormatter())
    root.addHandler(handler)
    root.setLevel(max(logging.DEBUG, level))
    # watchfiles reports every batch at INFO, our own status writes included; we log what matters.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def manager_or_wait(
    connect: Callable[[], EngineClient], *, wait: bool, init: bool = False, advertise_addr: str | None = None
) -> str | None:
    """``require_manager`` for a controller: with ``wait``, an engine that does not answer yet, or
    whose swarm is still starting, is waited for (a controller started at boot or during a dockerd
    restart must come up with its engine, not exit). An engine that answers and will never do fails
    at once. SIGTERM/SIGINT while waiting exit 0, as they do once the loop runs."""
    stopping = threading.Event()
    previous: dict[int, Any] = {}
    if wait and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stopping.set())
    try:
        node = _wait_for_manager(connect, wait, init, advertise_addr, stopping)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if stopping.is_set():  # a signal that came during the last call to the engine
        raise typer.Exit(EXIT_OK)
    return node


def _wait_for_manager(
    connect: Callable[[], EngineClient], wait: bool, init: bool, advertise_addr: str | None, stopping: threading.Event
) -> str | None:
    from ..swarm.errors import EngineError, NotAManager
    from ..swarm.membership import require_manager

    log = logging.getLogger(__name__)
    delay, said = 0.5, ""
    while True:
        try:
            node = require_manager(connect(), init=init, advertise_addr=advertise_addr)
        except NotAManager as exc:
            if not wait or exc.state != "pending":  # pending: the node's swarm is still starting
                fail(str(exc))
            why = f"the engine's swarm is starting (state {exc.state})"
        except EngineError as exc:
            if not wait or not exc.unreachable:
                fail(str(exc))
            why = str(exc)
        else:
            if said:
                log.info("the engine answers")
            return node
        if why != said:
            log.warning("%s; waiting for it", why)
            said = why
        if stopping.wait(delay):
            raise typer.Exit(EXIT_OK)
        delay = min(delay * 2, 30.0)


def print_load_errors(result: LoadResult) -> None:
    for e in result.errors:
        err.print(f"error: {e}", markup=False)
    n = len(result.errors)
    err.print(f"{n} error{'s' if n != 1 else ''}; nothing was changed", markup=False)


def load_or_exit(paths: Sequence[Path], *, resolve_values: bool = True) -> list[Manifest]:
    from ..loading import load_paths

    result = load_paths(list(paths), resolve_values=resolve_values)
    if not result.ok:
        print_load_errors(result)
        raise typer.Exit(EXIT_INVALID)
    return result.manifests
