"""``swarmkeeper sync --config sources.yaml``: several Git sources in one process.

Each entry is what one ``swarmkeeper sync --repo …`` command line would say; options given on
the command line are defaults for every entry. Each source keeps its own name (ownership and
prune), lease, status file and poll interval; one webhook receiver serves them all.

Only the file's structure is checked here; what the values mean (durations, paths) is checked
where they are used, with the same ``file:line: field`` errors.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from ..api.base import Model
from ..loading import SpecError
from ..loading.documents import decode, read_documents
from ..loading.fieldpath import format_path, locate


class SourceConfig(Model):
    """One Git source. Unset fields take the command line's value (or its default)."""

    name: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,45}$")
    repo: str
    ref: str | None = None
    path: str | None = None
    interval: str | None = None
    prune: bool | None = None
    force: bool | None = None
    suspend: bool | None = None
    dry_run: bool | None = None
    status_file: str | None = None
    status_branch: str | None = None
    cache_dir: str | None = None
    username: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    ssh_key_file: str | None = None
    known_hosts_file: str | None = None
    webhook_secret_file: str | None = None
    age_key_file: str | None = None
    rollback_on_failure: bool | None = None
    timeout: str | None = None
    metrics_addr: str | None = None
    commit_status: str | None = None
    commit_status_url: str | None = None
    commit_status_repo: str | None = None
    commit_status_token_file: str | None = None


class SyncConfig(Model):
    sources: list[SourceConfig] = Field(min_length=1)
    webhook_addr: str | None = None


def load_config(path: Path) -> tuple[SyncConfig | None, list[SpecError]]:
    """The config file, or every error in it (file, line, field)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [SpecError(exc.strerror or "cannot be read", file=path)]
    text = decode(raw, path)
    if isinstance(text, SpecError):
        return None, [text]
    documents, errors = read_documents(text, path)
    if errors:
        return None, errors
    if len(documents) != 1 or not isinstance(documents[0].data, dict):
        return None, [SpecError("must be one YAML mapping with a sources: list", file=path, line=1)]
    doc = documents[0]
    try:
        config = SyncConfig.model_validate(doc.data)
    except ValidationError as exc:
        out = []
        for detail in exc.errors(include_url=False, include_input=False, include_context=False):
            loc = tuple(detail["loc"])  # aliases: the YAML's own camelCase keys
            line, column = locate(doc.positions, loc) or (doc.line, None)
            message = detail["msg"].removeprefix("Value error, ")
            out.append(SpecError(message, file=path, line=line, column=column, field=format_path(loc)))
        return None, out
    names = [s.name for s in config.sources if s.name]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        return None, [SpecError(f"source names must be unique: {', '.join(duplicates)}", file=path, line=doc.line)]
    return config, []
