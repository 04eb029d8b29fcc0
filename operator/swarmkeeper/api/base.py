"""Shared pieces of every kind: the model base, ``metadata``, conditions and the status base.

Kubernetes API conventions apply (conditions are a list keyed by ``type``, CamelCase reasons, no
single ``phase`` string) so the same objects work as files and as custom resources.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_VERSION: Final = "swarmkeeper.io/v1alpha1"

# Swarm object names are DNS labels for services (63 chars); keep metadata names within that once a
# namespace prefix is added, and in the character set both Docker and Kubernetes accept.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]


def _scalar_text(value: object) -> object:
    # Compose files write `PORT: 8080` and `DEBUG: true`; the engine wants strings. YAML 1.2 spells
    # booleans in lower case, so does this.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# A string value in a map (env, labels, options): numbers and booleans are taken as their text.
Text = Annotated[str, BeforeValidator(_scalar_text)]
StrMap = dict[str, Text]


class Model(BaseModel):
    """camelCase in YAML, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
    )


class ObjectMeta(Model):
    name: Name
    namespace: Annotated[str | None, Field(max_length=40, pattern=NAME_PATTERN)] = Field(
        default=None,
        description="Groups objects like a stack: swarm objects are named <namespace>_<name> and carry "
        "com.docker.stack.namespace, so `docker stack ls/ps/services` show them.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="swarmkeeper's own labels, for selection.")
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = Field(default=None, description="Set by Kubernetes; absent in files.")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


class ObjectStatus(Model):
    """Written by swarmkeeper, never read as desired state."""

    observed_generation: int | None = None
    observed_spec_hash: str | None = Field(
        default=None, description="Hash of the applied spec (values of secrets excluded)."
    )
    conditions: list[Condition] = Field(default_factory=list)
    swarm_name: str | None = None
    swarm_id: str | None = None
    swarm_version: int | None = None
    last_applied_at: datetime | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


SWARM_NAME_PATTERN = r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9])?$"


class ClusterRef(Model):
    """Mixed into every kind that lives in a swarm."""

    cluster: str | None = Field(
        default=None, description="Name of the SwarmCluster to apply to; the local engine when omitted."
    )
    swarm_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=56,
        pattern=SWARM_NAME_PATTERN,
        description="The object's name in the swarm, instead of <namespace>_<name>: to take over an object "
        "named otherwise (a compose key such as db_password, or a compose name:). Secrets and configs "
        "add -v1, -v2, ... to it.",
    )
