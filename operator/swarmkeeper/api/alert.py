"""``SwarmAlert``: who is told what about which objects (notification targets as specs).

Not a swarm object: nothing is created for it in any swarm and it never counts for prune. It
travels through every front door like the other kinds, so targets are reviewed and versioned with
the specs they watch. A target's URL (Apprise syntax: ``json://``, ``slack://``, ``ntfy://`` ...)
carries tokens, so it is never written in the spec itself: it is read from a file beside the spec
(``urlFile``) or, in Kubernetes, from a Secret (``secretRef``), and treated as a secret value.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from pydantic import Field, model_validator

from .base import API_VERSION, Model, ObjectMeta, ObjectStatus
from .values import SourceKeyRef

AlertEvent = Literal[
    "Applied",
    "DriftCorrected",
    "Failed",
    "RolledBack",
    "InvalidSpec",
    "Degraded",
    "Recovered",
    "NodeDown",
    "ImageUpdated",
]
ALERT_EVENTS: Final[tuple[AlertEvent, ...]] = get_args(AlertEvent)


class AlertTarget(Model):
    """Where messages go: exactly one of urlFile or secretRef."""

    url_file: str | None = Field(
        default=None,
        description="File holding one Apprise URL (json://, slack://, discord://, ntfy://, mailto:// ...), "
        "relative to the spec file and inside the specs root; SOPS-encrypted in Git. The URL is a secret: "
        "never logged, shown or put in status.",
    )
    secret_ref: SourceKeyRef | None = Field(
        default=None, description="Kubernetes only: a key of a Secret in the alert's namespace holding the URL."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AlertTarget:
        if (self.url_file is None) == (self.secret_ref is None):
            raise ValueError("exactly one of urlFile or secretRef must be set")
        return self


class ObjectSelector(Model):
    """Objects by shell-style globs (``*``, ``?``, ``[abc]``); an omitted field matches everything."""

    kind: str = Field(default="*", description="SwarmService, SwarmNetwork, ..., or a glob.")
    namespace: str = Field(default="*", description="A glob; objects without a namespace match only *.")
    name: str = Field(default="*", description="A glob.")


class SwarmAlertSpec(Model):
    targets: list[AlertTarget] = Field(
        min_length=1, max_length=20, description="Each gets one message per pass that has events for it."
    )
    objects: list[ObjectSelector] = Field(
        default_factory=list,
        description="Which objects' events are sent (any selector matching); every object when empty. Events "
        "about no object (an engine away, a file that is not YAML) match only when this is empty.",
    )
    events: list[AlertEvent] = Field(
        default_factory=lambda: list(ALERT_EVENTS), description="Which events are sent; all of them when omitted."
    )


class SwarmAlert(Model):
    api_version: Literal["swarmkeeper.io/v1alpha1"] = API_VERSION
    kind: Literal["SwarmAlert"] = "SwarmAlert"
    metadata: ObjectMeta
    spec: SwarmAlertSpec
    status: ObjectStatus | None = None
