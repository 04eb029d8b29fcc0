"""Plans, progress and object lists as rich tables and text (plain aligned lines in pipes and
files). Nothing here reads a secret value: plans and states carry names, versions and
fingerprints' existence, never the values."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from ..api import Key
from ..engine.plan import Plan, Step
from ..engine.progress import Progress
from .jsonlog import one_line

_SYMBOL = {"create": "+", "update": "~", "recreate": "±", "delete": "-"}
_STYLE = {"create": "green", "update": "yellow", "recreate": "magenta", "delete": "red"}


def key_name(key: Key) -> str:
    return str(Key(*key))


def step_line(step: Step) -> Text:
    text = Text()
    text.append(f"{_SYMBOL[step.action]} {step.action:<8} ", style=_STYLE[step.action])
    text.append(key_name(step.key), style="bold")
    text.append(f"  ({step.swarm_name}; {step.reason})", style="dim")
    return text


_ADOPTION = {
    "adopt": {
        "service": "taken over as it runs: only its service labels change, no task restarts",
        "network": "taken over by reference, unchanged (swarm networks cannot be relabelled)",
        "secret": "taken over as version 0 if swarm confirms it holds the spec's value, else a new version "
        "is made and the services using it restart",
        "config": "taken over as version 0 if swarm confirms it holds the spec's value, else a new version "
        "is made and the services using it restart",
    },
    "adopt + update": {
        "service": "taken over and updated to the spec: its tasks restart",
        "network": "taken over and recreated to the spec (nothing uses it)",
        "secret": "",
        "config": "",
    },
}


def plan_lines(plan: Plan, *, changes: bool = True) -> list[Text]:
    lines: list[Text] = []
    for step in plan.steps:
        lines.append(step_line(step))
        if changes:
            for change in step.changes:
                lines.append(Text("      " + change.describe(), style="dim"))
            if step.type in ("secret", "config") and step.action == "create" and step.reason == "changed":
                lines.append(Text("      value or labels changed: new version (value not shown)", style="dim"))
            if step.reason in _ADOPTION:
                lines.append(Text("      " + _ADOPTION[step.reason][step.type], style="dim"))
    for error in plan.errors:
        lines.append(Text(f"! {key_name(error.key) if error.key else ''}: {error.message}", style="red"))
    for key, why in plan.held.items():
        lines.append(Text(f"! {key_name(key)}: {why} (apply --force sends it again)", style="red"))
    for key in plan.orphans:
        lines.append(Text(f"? {key_name(key)}: no longer in the specs; kept (use --prune to remove)", style="cyan"))
    if plan.blocked:
        lines.append(Text(f"! {plan.blocked}", style="bold red"))
    if plan.unmanaged and changes:
        names = ", ".join(f"{t} {n}" for t, n in plan.unmanaged[:8])
        more = f" and {len(plan.unmanaged) - 8} more" if len(plan.unmanaged) > 8 else ""
        lines.append(Text(f"  unmanaged, left alone: {names}{more}", style="dim"))
    return lines


def age(created: str | None, now: datetime | None = None) -> str:
    if not created:
        return ""
    head = created.split(".")[0].rstrip("Z")
    then = datetime.fromisoformat(head).replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def progress_table(progress: dict[Key, Progress | None]) -> TableView:
    rows: list[list[str]] = []
    for key, p in progress.items():
        if p is None:
            rows.append([key_name(key), "-", "-", "", "missing"])
            continue
        done = "✓" if p.converged else ("✗" if p.failed else "…")
        message = p.failed or (p.task_error["error"] if p.task_error and not p.converged else p.update_message or "")
        rows.append([f"{done} {key.name}", p.ready, f"{p.up_to_date}/{p.desired}", p.update_state or "", message or ""])
    return TableView(
        ["SERVICE", "READY", "UPDATED", "UPDATE", "MESSAGE"], rows, no_wrap=False, header_style="table.header"
    )


def rows_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> TableView:
    return TableView(columns, rows)


def print_table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Every table the commands print goes through here (or is a ``TableView`` printed as is)."""
    console.print(TableView(columns, rows), crop=False)


class TableView:
    """Rows under column headers. On a terminal, a rich table fitted to its width; in a pipe or a
    file, plain lines as kubectl prints them: every cell whole, columns aligned with spaces, no
    styles, and line breaks inside a cell written ``\\n`` so that a row stays one line."""

    GAP = "   "

    def __init__(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        no_wrap: bool = True,
        header_style: str = "bold",
    ) -> None:
        self.columns = list(columns)
        self.rows = [["" if v is None else str(v) for v in row] for row in rows]
        self.no_wrap = no_wrap
        self.header_style = header_style

    def table(self) -> Table:
        table = Table(box=None, pad_edge=False, header_style=self.header_style)
        for col in self.columns:
            table.add_column(col, no_wrap=self.no_wrap)
        for row in self.rows:
            table.add_row(*row)
        return table

    def lines(self) -> list[str]:
        grid = [[one_line(cell) for cell in row] for row in (self.columns, *self.rows)]
        widths: dict[int, int] = {}
        for row in grid:
            for i, cell in enumerate(row):
                widths[i] = max(widths.get(i, 0), cell_len(cell))
        return [
            self.GAP.join(cell + " " * (widths[i] - cell_len(cell)) for i, cell in enumerate(row)).rstrip()
            for row in grid
        ]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if console.is_terminal:
            yield self.table()
            return
        for line in self.lines():
            yield Segment(line)
            yield Segment.line()


def print_documents(console: Console, docs: Sequence[Mapping[str, Any]], output: str, *, single: bool) -> None:
    """``-o json`` (one object when ``single``, else a list) or ``-o yaml`` (a stream of documents)."""
    if output == "json":
        console.print_json(json.dumps(docs[0] if single else list(docs)))
        return
    from ruamel.yaml import YAML

    buf = io.StringIO()
    yaml = YAML()
    yaml.explicit_start = len(docs) > 1
    yaml.dump_all([dict(d) for d in docs], buf)
    console.print(buf.getvalue(), end="", markup=False)
