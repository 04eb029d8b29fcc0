"""What the command line writes to pipes and files: log records one per line, tables with every
column whole, long lines unbroken, and help that names arguments the way users write them.

Every command runs as a real process with stdout and stderr as pipes and ``COLUMNS=80``, the
width rich assumes when it is not writing to a terminal."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from cli_helpers import write_spec
from swarmkeeper.cli import common
from swarmkeeper.cli.render import TableView, print_table

SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S")


def plain_env() -> dict[str, str]:
    """The environment of a pipe: nothing that makes rich act as if it wrote to a terminal."""
    forcing = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE", "COLUMNS", "LINES")
    return {**{k: v for k, v in os.environ.items() if k not in forcing}, "COLUMNS": "80"}


def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SWARMKEEPER), *map(str, args)],
        capture_output=True,
        text=True,
        env=plain_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def long_folder(root: Path) -> Path:
    """A folder whose path is over 300 characters (no single name over the 255 a file system allows)."""
    folder = root / ("d" * 150) / ("e" * 150)
    folder.mkdir(parents=True)
    return folder


# -- logging ---------------------------------------------------------------------------------------


def test_a_long_log_record_stays_one_line(namespace: str, tmp_path: Path) -> None:
    folder = long_folder(tmp_path / "specs")
    write_spec(
        folder,
        "bad.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {name: Not_A_Name}
        spec: {image: x}
        """,
    )
    res = run("watch", tmp_path / "specs", "--once", "--status", "none", "--source", namespace)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    assert lines and all(LOG_LINE.match(line) for line in lines), res.stderr
    invalid = [line for line in lines if "invalid spec:" in line]
    assert len(invalid) == 1, res.stderr
    assert len(invalid[0]) > 300
    assert f"{folder}/bad.yaml" in invalid[0] and invalid[0].endswith(
        "String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"
    )


LOG_SCRIPT = """
import logging, sys
from swarmkeeper.cli.common import setup_logging
setup_logging(1, sys.argv[1])
log = logging.getLogger("swarmkeeper.example")
log.warning("first line\\nsecond line\\r\\x1b[31m " + "x" * 300)
try:
    raise ValueError("broken\\nvalue")
except ValueError:
    log.exception("it failed")
"""


def log_lines(log_format: str) -> list[str]:
    res = subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT, log_format],
        capture_output=True,
        text=True,
        env=plain_env(),
        timeout=60,
        check=True,
    )
    assert res.stdout == ""
    return res.stderr.splitlines()


def test_line_breaks_in_a_record_are_escaped() -> None:
    warning, failure = log_lines("text")
    assert LOG_LINE.match(warning) and LOG_LINE.match(failure)
    assert " WARNING swarmkeeper.example: first line\\nsecond line\\r\\x1b[31m " + "x" * 300 in warning
    assert " ERROR swarmkeeper.example: it failed\\nTraceback (most recent call last):\\n" in failure
    assert failure.endswith("ValueError: broken\\nvalue")


def test_json_logs_are_one_object_per_line() -> None:
    warning, failure = (json.loads(line) for line in log_lines("json"))
    assert warning["level"] == "warning" and warning["msg"].startswith("first line\nsecond line\r\x1b[31m x")
    assert failure["msg"] == "it failed" and "ValueError: broken\nvalue" in failure["error"]


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_a_terminal_keeps_rich_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.logging import RichHandler

    from swarmkeeper.cli.jsonlog import LineFormatter

    monkeypatch.setattr(common, "err", Console(stderr=True, force_terminal=True))
    common.setup_logging(1)
    assert [type(h) for h in logging.getLogger().handlers] == [RichHandler]
    monkeypatch.setattr(common, "err", Console(stderr=True, force_terminal=False))
    common.setup_logging(1)
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, LineFormatter)


# -- tables and lines ------------------------------------------------------------------------------

LONG_NAME = "output-columns-" + "w" * 35  # 50 characters; with the namespace, a 60-character swarm name


def columns_of(header: str, row: str, names: list[str]) -> dict[str, str]:
    """Each column's cell in ``row``, cut where the header puts the column."""
    assert header.startswith(names[0]), header
    starts = [0]
    for name in names[1:]:  # each header is three spaces after the previous column
        starts.append(header.index(f"   {name}", starts[-1]) + 3)
    cells = {}
    for name, start, end in zip(names, starts, [*starts[1:], None], strict=True):
        cell = row[start:end]
        assert end is None or cell.endswith("   ") or cell.strip() == "", (header, row)
        cells[name] = cell.strip()
    return cells


def test_get_wide_in_a_pipe_prints_every_column_whole(local_image: str, namespace: str, specs_dir: Path) -> None:
    write_spec(
        specs_dir,
        "svc.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata:
          name: {LONG_NAME}
          namespace: {namespace}
        spec:
          image: {local_image}
          command: ["sleep", "3600"]
          stopGracePeriod: 1s
        """,
    )
    applied = run("apply", specs_dir, "--wait", "--timeout", "60s")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    progress = applied.stdout.splitlines()[-2:]
    assert columns_of(progress[0], progress[1], ["SERVICE", "READY", "UPDATED"]) == {
        "SERVICE": f"✓ {LONG_NAME}",
        "READY": "1/1",
        "UPDATED": "1/1",
    }, applied.stdout

    wide = run("get", "services", "-n", namespace, "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    assert "…" not in wide.stdout
    header, row = wide.stdout.splitlines()
    assert len(row) > 80
    names = ["NAME", "NAMESPACE", "READY", "UPDATE", "IMAGE", "AGE", "MODE", "PORTS", "REVISION", "SWARM NAME", "ID"]
    cells = columns_of(header, row, names)
    assert cells["NAME"] == LONG_NAME and cells["NAMESPACE"] == namespace and cells["READY"] == "1/1"
    assert cells["IMAGE"] == local_image and cells["MODE"] == "replicated"
    assert cells["SWARM NAME"] == f"{namespace}_{LONG_NAME}" and len(cells["ID"]) == 12
    assert header == header.rstrip() and row == row.rstrip()

    listed = run("get", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    cells = columns_of(header, row, names[:6])
    assert re.fullmatch(r"\d+[smhd]", cells.pop("AGE"))
    assert cells == {
        "NAME": f"SwarmService/{LONG_NAME}",
        "NAMESPACE": namespace,
        "READY": "1/1",
        "UPDATE": "",
        "IMAGE": local_image,
    }


def test_table_view_in_a_pipe_and_on_a_terminal() -> None:
    view = TableView(["NAME", "MESSAGE", "X"], [["a-long-name", "line one\nline two", None], ["b", "", "1"]])
    assert view.lines() == [
        "NAME          MESSAGE              X",
        "a-long-name   line one\\nline two",
        "b                                  1",
    ]
    assert len(TableView(["A", "B"], [["a" * 200, "b" * 200]]).lines()[1]) == 403
    pipe = Console(width=20, force_terminal=False, record=True, file=io.StringIO())
    print_table(pipe, view.columns, view.rows)
    assert pipe.export_text().splitlines() == view.lines()
    pipe = Console(width=20, force_terminal=False, record=True, file=io.StringIO(), soft_wrap=True)
    pipe.print(view)  # as the commands' consoles print progress_table()
    assert pipe.export_text().splitlines() == view.lines()
    terminal = Console(width=20, force_terminal=True, record=True, file=io.StringIO())
    terminal.print(view)
    assert all(len(line) <= 20 for line in terminal.export_text().splitlines())


def test_long_lines_are_not_wrapped(tmp_path: Path) -> None:
    missing = tmp_path / ("z" * 150) / ("y" * 150)
    res = run("validate", missing)
    assert res.returncode == 2
    assert res.stderr.splitlines()[0].startswith(f"error: {missing}")

    compose = tmp_path / "compose.yaml"
    value = "v" * 300
    compose.write_text(
        textwrap.dedent(
            f"""\
            services:
              web:
                image: local/busybox:1
                environment:
                  LONG: {value}
            """
        )
    )
    res = run("import", "compose", compose)
    assert res.returncode == 0, res.stderr
    assert any(line.strip() == value for line in res.stdout.splitlines()), res.stdout


# -- help ------------------------------------------------------------------------------------------


def command_paths() -> list[list[str]]:
    """Every command and group of the command line, the root included."""
    import typer.main

    from swarmkeeper.cli.main import app

    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


TYPE_LABELS = re.compile(r"<(str|int|float|bool|path|uuid|datetime|list\[[^\]]*\])>|\{[a-z_]+\}")


def test_help_names_arguments_as_users_write_them() -> None:
    paths = command_paths()
    assert len(paths) > 10
    procs = {
        " ".join(path): subprocess.Popen(
            [str(SWARMKEEPER), *path, "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=plain_env(),
        )
        for path in paths
    }
    helps = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, (name, stderr)
        helps[name] = stdout
    for name, text in helps.items():
        assert not TYPE_LABELS.search(text), (name, text)
    for name in ("validate", "diff", "apply", "watch"):
        assert f"Usage: swarmkeeper {name} [OPTIONS] PATH...\n" in helps[name]
        assert "\n  PATH...  Spec files or folders" in helps[name]
    assert "Usage: swarmkeeper get [OPTIONS] [KIND] [NAME]\n" in helps["get"]
    assert "--timeout DURATION" in helps["apply"] and "--interval DURATION" in helps["watch"]
    assert "--metrics-addr HOST:PORT" in helps["watch"] and "--config FILE" in helps["sync"]
