"""What loading produces: validated objects with their origin, resolved values and positions.

Every source (files, Git, Kubernetes) hands the engine ``Manifest`` objects, so the engine never
needs to know where specs came from; ``origin`` is only for pointing errors back at the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretBytes, SecretStr

from ..api import Key, Resource
from .errors import SpecError
from .fieldpath import FieldPath, Position, format_path, locate


@dataclass(frozen=True)
class Origin:
    """Where an object came from."""

    file: Path  # as given or found; relative when the user gave a relative path
    line: int  # 1-based line of the document's first key
    root: Path  # the root of its spec tree: files it names must lie under it (discovery.tree_root)
    document: int  # 0-based index of the YAML document in the file


@dataclass(frozen=True)
class Manifest:
    resource: Resource  # status removed: status is never read as desired state
    origin: Origin | None
    value: SecretBytes | None = None  # resolved value of a SwarmSecret/SwarmConfig
    # SwarmService: KEY=VALUE pairs of spec.envFile, merged in order (spec.env wins; the engine merges).
    file_env: Mapping[str, str] = field(default_factory=dict)
    # SwarmAlert: each target's URL, by target index (None: it could not be read; the error says why).
    urls: tuple[SecretStr | None, ...] = ()
    # Where each field was written, for errors found after validation (empty without a file).
    positions: Mapping[FieldPath, Position] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.resource.metadata.namespace

    @property
    def key(self) -> Key:
        return Key(self.kind, self.namespace, self.name)

    def error(self, path: FieldPath, message: str, *, file: Path | None = None, line: int | None = None) -> SpecError:
        """An error about the field at ``path``, at the line that holds it (or its nearest parent).

        ``file``/``line`` point elsewhere instead, e.g. at the line of an env file.
        """
        column: int | None = None
        if file is None and self.origin is not None:
            file = self.origin.file
            line, column = locate(self.positions, path) or (self.origin.line, None)
        return SpecError(
            message,
            file=file,
            line=line,
            column=column,
            kind=self.kind,
            name=self.name,
            field=format_path(path),
        )


@dataclass
class LoadResult:
    """Manifests and every error found; apply the manifests only when ``ok``."""

    manifests: list[Manifest]
    errors: list[SpecError]

    @property
    def ok(self) -> bool:
        return not self.errors
