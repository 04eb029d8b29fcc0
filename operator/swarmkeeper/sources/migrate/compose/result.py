"""What an import produces: spec documents with their comments, notes for the user, and errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ....loading import SpecError


@dataclass
class ImportedObject:
    """One spec object, ready to be written; ``comments`` say what was not translated and why."""

    kind: str
    name: str
    document: dict[str, Any]
    comments: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    objects: list[ImportedObject]
    notes: list[str]  # for the user: untranslated features, unset variables, files to check
    errors: list[SpecError]
    # Where the marker of the spec tree's root goes, so the specs may read the files they name.
    tree_root: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.errors
