"""What every command shares: loading specs with errors printed, logging, engine selection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ..loading import LoadResult, Manifest

# Exit codes shared by all commands (diff uses 1 for "changes").
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def setup_logging(verbose: int, log_format: str = "text") -> None:
    level = logging.WARNING - 10 * verbose
    root = logging.getLogger()
    root.handlers.clear()
    if log_format == "json":
        from .jsonlog import JsonFormatter

        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(console=err, show_path=False, rich_tracebacks=False, markup=False)
    root.addHandler(handler)
    root.setLevel(max(logging.DEBUG, level))
    # watchfiles reports every batch at INFO, our own status writes included; we log what matters.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


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
