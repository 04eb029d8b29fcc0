"""Plans, progress and object lists as rich tables and text. Nothing here reads a secret value:
plans and states carry names, versions and fingerprints' existence, never the values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from ..engine.plan import Plan, Step
from ..engine.progress import Progress
from ..swarm.observe import Key

_SYMBOL = {"create": "+", "update": "~", "recreate": "±", "delete": "-"}
_STYLE = {"create": "green", "update": "yellow", "recreate": "magenta", "delete": "red"}


def key_name(key: Key) -> str:
    kind, ns, name = key
    return f"{kind}/{name}" if ns is None else f"{kind}/{ns}/{name}"


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


def progress_table(progress: dict[Key, Progress | None]) -> Table:
    table = Table(box=None, pad_edge=False)
    for col in ("SERVICE", "READY", "UPDATED", "UPDATE", "MESSAGE"):
        table.add_column(col)
    for key, p in progress.items():
        if p is None:
            table.add_row(key_name(key), "-", "-", "", "missing")
            continue
        done = "✓" if p.converged else ("✗" if p.failed else "…")
        message = p.failed or (p.task_error["error"] if p.task_error and not p.converged else p.update_message or "")
        table.add_row(f"{done} {key[2]}", p.ready, f"{p.up_to_date}/{p.desired}", p.update_state or "", message or "")
    return table


def rows_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in columns:
        table.add_column(col, no_wrap=True)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table
