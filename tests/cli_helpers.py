"""Run the real ``swarmkeeper`` command line in-process and write spec files for it."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from swarmkeeper.cli.main import app


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def sk(*args: str | Path, env: Mapping[str, str | None] | None = None) -> CliResult:
    """``swarmkeeper ARGS`` as a user would run it; exceptions surface as test errors."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def write_spec(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path
