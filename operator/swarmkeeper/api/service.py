"""``SwarmService``: a swarm service, with everything ``docker service create`` can say.

Field names follow the docker CLI and compose where they differ from the Engine API, since that
is what users already know; ``swarm/`` translates them to the API's ServiceSpec.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from .base import API_VERSION, NAME_PATTERN, ClusterRef, Model, Name, ObjectMeta, ObjectStatus, StrMap
from .units import ByteSize, CPUs, Duration


def _file_mode(value: object) -> object:
    # YAML 1.2 reads 0444 as the decimal 444: take a number whose digits are all octal as octal,
    # which is what anyone writing 0444 or 444 meant; strings are read as octal too.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.removeprefix("0o")
    else:
        return value
    if not text or any(c not in "01234567" for c in text) or len(text.lstrip("0")) > 3:
        raise ValueError(f"invalid file mode {value!r}: write it in octal, like '0444' or '0400'")
    return int(text, 8)


# Written as octal text ("0400") or a number with octal digits (400); the schema says exactly that.
FileMode = Annotated[
    int,
    BeforeValidator(_file_mode),
    Field(ge=0, le=0o777),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 777},
                {"type": "string", "pattern": "^(0o)?0*[0-7]{1,3}$"},
            ]
        },
        mode="validation",
    ),
]


class NetworkAttachment(Model):
    name: str = Field(
        description="A SwarmNetwork in the same namespace; with external: true, the swarm name of a network "
        "made outside swarmkeeper (e.g. a shared proxy network).",
        min_length=1,
        max_length=128,
    )
    external: bool = Field(default=False, description="Attach to an existing network not managed here.")
    aliases: list[str] = Field(default_factory=list)


class FileReference(Model):
    source: str = Field(
        description="The SwarmSecret or SwarmConfig (same namespace); with external: true, the swarm name "
        "of a secret or config made outside swarmkeeper.",
        min_length=1,
        max_length=128,
    )
    external: bool = Field(default=False, description="Use an existing secret or config not managed here.")
    target: str | None = Field(
        default=None,
        description="File name (secrets: under /run/secrets/) or absolute path; the source name when omitted.",
    )
    uid: str = "0"
    gid: str = "0"
    mode: FileMode = Field(default=0o444, json_schema_extra={"default": "0444"})

    @model_validator(mode="after")
    def _source_name(self) -> FileReference:
        if not self.external and (len(self.source) > 63 or not re.match(NAME_PATTERN, self.source)):
            raise ValueError(f"source {self.source!r}: must name a spec (a-z, 0-9 and -), or set external: true")
        return self


class Port(Model):
    target: int = Field(ge=1, le=65535)
    published: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    mode: Literal["ingress", "host"] = "ingress"


class SpreadPreference(Model):
    spread: str = Field(description="A node label or attribute, e.g. node.labels.zone.")


class Placement(Model):
    constraints: list[str] = Field(default_factory=list)
    preferences: list[SpreadPreference] = Field(default_factory=list)
    max_replicas_per_node: int | None = Field(default=None, ge=0)


class ResourceAmounts(Model):
    cpus: CPUs | None = None
    memory: ByteSize | None = None


class ResourceLimits(ResourceAmounts):
    pids: int | None = Field(default=None, ge=0)


class GenericResource(Model):
    kind: str = Field(min_length=1, description="A resource the nodes advertise, e.g. gpu.")
    value: int = Field(ge=0, description="How many of them (a discrete resource).")


class ResourceReservations(ResourceAmounts):
    generic_resources: list[GenericResource] = Field(default_factory=list)


class Resources(Model):
    limits: ResourceLimits | None = None
    reservations: ResourceReservations | None = None


class RestartPolicy(Model):
    condition: Literal["none", "on-failure", "any"] = "any"
    delay: Duration | None = None
    max_attempts: int | None = Field(default=None, ge=0)
    window: Duration | None = None


class RollbackConfig(Model):
    parallelism: int = Field(default=1, ge=0)
    delay: Duration | None = None
    order: Literal["stop-first", "start-first"] = "stop-first"
    failure_action: Literal["pause", "continue"] = "pause"
    monitor: Duration | None = None
    max_failure_ratio: float = Field(default=0.0, ge=0, le=1)


class UpdateConfig(Model):
    parallelism: int = Field(default=1, ge=0)
    delay: Duration | None = None
    order: Literal["stop-first", "start-first"] = "stop-first"
    failure_action: Literal["pause", "continue", "rollback"] = "pause"
    monitor: Duration | None = None
    max_failure_ratio: float = Field(default=0.0, ge=0, le=1)


class Healthcheck(Model):
    test: list[str] = Field(
        default_factory=list,
        description='["CMD", "prog", "arg"], ["CMD-SHELL", "command"] or ["NONE"] to disable the image\'s.',
    )
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0)
    start_period: Duration | None = None


class VolumeOptions(Model):
    no_copy: bool = False
    labels: StrMap = Field(default_factory=dict)
    driver: str | None = None
    driver_options: StrMap = Field(default_factory=dict)


class Mount(Model):
    type: Literal["volume", "bind", "tmpfs"] = "volume"
    source: str | None = None
    target: str
    read_only: bool = False
    volume: VolumeOptions | None = None
    bind_propagation: Literal["private", "rprivate", "shared", "rshared", "slave", "rslave"] | None = None
    tmpfs_size: ByteSize | None = None


class DNSConfig(Model):
    nameservers: list[str] = Field(default_factory=list)
    search: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list)


class Ulimit(Model):
    soft: int = Field(ge=-1)
    hard: int = Field(ge=-1)


class LogDriver(Model):
    name: str
    options: StrMap = Field(default_factory=dict)


ServiceMode = Literal["replicated", "global", "replicated-job", "global-job"]


def _check_range(value: str) -> str:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        SpecifierSet(version_range(value))
    except InvalidSpecifier:
        raise ValueError(f"{value!r} is not a version range like '>=1.2 <2'") from None
    return value


def version_range(text: str) -> str:
    """``">=1.2 <2"`` (space or comma separated) as a PEP 440 specifier set, ``">=1.2,<2"``."""
    return ",".join(part for part in text.replace(",", " ").split())


class ImagePolicy(Model):
    """Which image of the repository to run, picked again whenever the registry changes. With a
    policy, the digest written in ``image`` is where swarmkeeper last pinned it (``sync
    --write-images`` writes it back), not a pin of the spec's own: the policy decides."""

    semver: Annotated[str, AfterValidator(_check_range)] | None = Field(
        default=None,
        description='Run the highest version tag in this range, e.g. ">=1.2 <2" (comparisons separated '
        "by spaces or commas; a leading v in tags is fine; pre-releases only if the range names one). "
        "Without it: the tag written in image, pinned to the digest it has now.",
        min_length=1,
    )


class SwarmServiceSpec(ClusterRef):
    image: str = Field(description="Image reference, optionally pinned: name:tag@sha256:<digest>.")
    resolve_image: Literal["always", "changed", "never"] = Field(
        default="always",
        description="Pin the image to the digest its tag has in the registry, as docker stack deploy "
        "--resolve-image does: always (a tag pushed again rolls the service), changed (only when the "
        "image in the spec changes) or never (the tag as written; each node pulls it on its own).",
    )
    image_policy: ImagePolicy | None = None
    with_registry_auth: bool = Field(
        default=True,
        description="Send the registry credentials of the local docker config to the engine, as "
        "`docker service create --with-registry-auth` does.",
    )
    command: list[str] | None = Field(default=None, description="Replaces the image's ENTRYPOINT.")
    args: list[str] | None = Field(default=None, description="Replaces the image's CMD.")
    env: StrMap = Field(default_factory=dict)
    env_file: list[str] = Field(default_factory=list, description="KEY=VALUE files relative to the spec file.")
    labels: StrMap = Field(default_factory=dict, description="Labels of the swarm service.")
    container_labels: StrMap = Field(default_factory=dict)
    mode: ServiceMode = "replicated"
    replicas: int | None = Field(default=None, ge=0, description="replicated modes; 1 when omitted.")
    max_concurrent: int | None = Field(default=None, ge=1, description="replicated-job only.")
    networks: list[NetworkAttachment] = Field(default_factory=list)
    secrets: list[FileReference] = Field(default_factory=list)
    configs: list[FileReference] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    endpoint_mode: Literal["vip", "dnsrr"] = "vip"
    placement: Placement | None = None
    resources: Resources | None = None
    restart_policy: RestartPolicy | None = None
    update_config: UpdateConfig | None = None
    rollback_config: RollbackConfig | None = None
    healthcheck: Healthcheck | None = None
    mounts: list[Mount] = Field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    hostname: str | None = None
    stop_grace_period: Duration | None = None
    stop_signal: str | None = None
    init: bool | None = None
    isolation: Literal["default", "process", "hyperv"] | None = Field(
        default=None, description="The container's isolation technology (docker service create --isolation)."
    )
    read_only: bool = False
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    dns: DNSConfig | None = None
    extra_hosts: list[str] = Field(
        default_factory=list, description='Extra /etc/hosts entries as "HOST:IP", as docker service create --host.'
    )
    sysctls: StrMap = Field(default_factory=dict)
    ulimits: dict[str, Ulimit] = Field(default_factory=dict, description="By name, e.g. nofile: {soft, hard}.")
    tty: bool = False
    stdin_open: bool = False
    log_driver: LogDriver | None = None
    depends_on: list[Name] = Field(
        default_factory=list,
        description="Services (same namespace) that must be converged before this one is created or updated.",
    )

    @model_validator(mode="after")
    def _mode_fields(self) -> SwarmServiceSpec:
        if self.mode.startswith("global") and self.replicas is not None:
            raise ValueError(f"replicas cannot be set with mode {self.mode}")
        if self.max_concurrent is not None and self.mode != "replicated-job":
            raise ValueError("maxConcurrent is only valid with mode replicated-job")
        if self.endpoint_mode == "dnsrr" and any(p.mode == "ingress" for p in self.ports):
            raise ValueError("ports in ingress mode need endpointMode vip; use mode: host with dnsrr")
        return self


class ReplicaCounts(Model):
    desired: int = 0
    running: int = 0
    completed: int | None = Field(default=None, description="Jobs only.")


class UpdateProgress(Model):
    state: str | None = Field(default=None, description="Swarm's UpdateStatus.State, e.g. updating, completed.")
    message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class TaskError(Model):
    task: str
    node: str | None = None
    state: str
    error: str
    at: datetime | None = None


class RunningImage(Model):
    image: str = Field(description="The image reference, without its digest.")
    digest: str | None = Field(
        default=None, description="The registry digest the tasks run (sha256:...); absent when the image is not pinned."
    )
    tasks: int = Field(description="How many running tasks use it.")


class ServiceStatus(ObjectStatus):
    replicas: ReplicaCounts | None = None
    ready: str | None = Field(default=None, description='running/desired, e.g. "3/3".')
    update: UpdateProgress | None = None
    image: str | None = Field(default=None, description="The image reference the running tasks use.")
    image_digest: str | None = Field(
        default=None, description="The registry digest the image's tag is pinned to (resolveImage)."
    )
    running_images: list[RunningImage] | None = Field(
        default=None,
        description="What the running tasks run: each image with the digest their spec names and how "
        "many tasks run it (two entries while an update rolls from one digest to another).",
    )
    task_error: TaskError | None = Field(default=None, description="The latest failed task, while not ready.")


UNMANAGED_FIELDS_ANNOTATION = "swarmkeeper.io/unmanaged-fields"
# Fields that may be handed to someone else (an autoscaler, a deploy tool): their live value is
# kept and never reported or reverted as drift.
UNMANAGED_FIELDS = frozenset({"replicas", "image", "env", "resources", "placement"})


class SwarmService(Model):
    api_version: Literal["swarmkeeper.io/v1alpha1"] = API_VERSION
    kind: Literal["SwarmService"] = "SwarmService"
    metadata: ObjectMeta
    spec: SwarmServiceSpec
    status: ServiceStatus | None = None

    @model_validator(mode="after")
    def _unmanaged_fields(self) -> SwarmService:
        unknown = set(self.unmanaged_fields()) - UNMANAGED_FIELDS
        if unknown:
            allowed = ", ".join(sorted(UNMANAGED_FIELDS))
            raise ValueError(
                f"annotation {UNMANAGED_FIELDS_ANNOTATION}: unknown field(s) {', '.join(sorted(unknown))}; "
                f"allowed: {allowed}"
            )
        return self

    def unmanaged_fields(self) -> list[str]:
        raw = self.metadata.annotations.get(UNMANAGED_FIELDS_ANNOTATION, "")
        return [f.strip() for f in raw.split(",") if f.strip()]
