"""``SwarmSecret`` and ``SwarmConfig``: named values delivered as files into services.

Both are immutable in swarm. A changed value becomes a new versioned swarm object; services move
to it by a rolling update; old versions beyond ``keepVersions`` are removed once unused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel

from .base import API_VERSION, ClusterRef, Model, ObjectMeta, ObjectStatus, StrMap


class SourceKeyRef(Model):
    """A key of a Kubernetes Secret (SwarmSecret) or ConfigMap (SwarmConfig) in the same namespace."""

    name: str
    key: str


VALUE_SOURCES = ("file", "env", "string_data", "data", "secret_ref")


class ValueSpec(ClusterRef):
    file: str | None = Field(
        default=None, description="Path relative to the spec file; must stay inside the specs root."
    )
    env: str | None = Field(default=None, description="Name of an environment variable of swarmkeeper.")
    string_data: SecretStr | None = Field(default=None, description="The value inline, as text.")
    data: SecretStr | None = Field(default=None, description="The value inline, base64-encoded.")
    secret_ref: SourceKeyRef | None = Field(
        default=None, description="Kubernetes only: a key of a Secret/ConfigMap in the CR's namespace."
    )
    labels: StrMap = Field(default_factory=dict)
    template_driver: Literal["golang"] | None = Field(
        default=None,
        description='Render the value as a Go template in each task ({{ .Service.Name }}, {{ env "X" }}, ...).',
    )
    keep_versions: int = Field(
        default=1, ge=0, le=100, description="Old versions kept after a rotation (removed once unused)."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ValueSpec:
        given = [name for name in VALUE_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            names = "file, env, stringData, data or secretRef"
            found = ", ".join(to_camel(g) for g in given) or "none"
            raise ValueError(f"exactly one of {names} must be set (found: {found})")
        return self


class ValueStatus(ObjectStatus):
    current_version: int | None = None
    versions: list[str] = Field(default_factory=list, description="Swarm names of the versions kept.")


class SwarmSecret(Model):
    api_version: Literal["swarmkeeper.io/v1alpha1"] = API_VERSION
    kind: Literal["SwarmSecret"] = "SwarmSecret"
    metadata: ObjectMeta
    spec: ValueSpec
    status: ValueStatus | None = None


class SwarmConfig(Model):
    api_version: Literal["swarmkeeper.io/v1alpha1"] = API_VERSION
    kind: Literal["SwarmConfig"] = "SwarmConfig"
    metadata: ObjectMeta
    spec: ValueSpec
    status: ValueStatus | None = None
