"""Kubernetes custom resources as a front door: CR bodies in, manifests out; status and Events back.

Thin by design: validation is the models', reconciling is the engine's. This module knows how a
custom resource becomes a ``Manifest`` (the CR's namespace is the spec's ``metadata.namespace``;
``spec.secretRef`` is read from a Secret or ConfigMap of that namespace), how a new status becomes
a merge patch of the status subresource, and how to say so to the API server. It never decides
what to reconcile or when: that is the operator's (``controller/operator.py``).

Everything here that talks to the API server blocks; the operator calls it from worker threads.
Values read from Secrets and ConfigMaps stay inside ``Manifest.value``: no message, log line,
status or Event built here ever contains one.
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import SecretBytes, SecretStr

from ..api import API_VERSION, KINDS, Key, SwarmAlert, SwarmConfig, SwarmSecret, SwarmService
from ..engine.conditions import INVALID_SPEC, READY, condition, status_with
from ..loading import Manifest, SpecError, check_references
from ..loading.alerts import parse_url
from ..loading.documents import Document
from ..loading.errors import sorted_errors
from ..loading.files import format_size
from ..loading.validation import validate_document
from ..loading.values import MAX_VALUE_BYTES, resolve_value

log = logging.getLogger(__name__)

GROUP, VERSION = API_VERSION.split("/")
PLURALS: Final = {kind: kind.lower() + "s" for kind in KINDS}

ORPHAN_ANNOTATION: Final = "swarmkeeper.io/orphan"
FINALIZER: Final = "swarmkeeper.io/finalizer"
# Where the operator framework keeps its own bookkeeping on each CR (what it last handled, retries).
BOOKKEEPING_PREFIX: Final = "operator.swarmkeeper.io"
# Annotations that are about the CR, not the swarm object: tools' bookkeeping (kubectl's holds the
# whole last-applied object) never reaches the models.
_FOREIGN_ANNOTATIONS = ("kubectl.kubernetes.io/", f"{BOOKKEEPING_PREFIX}/", "kopf.zalando.org/")

# Ready=False reasons for objects that are not applied at all.
VALUE_UNAVAILABLE: Final = "ValueUnavailable"  # spec.secretRef names no readable key
DEPENDENCY_INVALID: Final = "DependencyInvalid"  # it refers to an object that is not applied itself

_MAX_EVENT_MESSAGE = 1000
_NOWHERE = Path("-")  # validation wants a file; a CR has none, and errors drop it again


def source_name(namespace: str) -> str:
    """The ownership source of a namespace's objects: prune and delete never cross namespaces."""
    return f"k8s.{namespace}"


@dataclass(frozen=True)
class CustomResource:
    """What the operator keeps of a CR besides its spec: identity, generation, status, annotations."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int | None
    status: Mapping[str, Any] | None
    annotations: Mapping[str, str]
    deleting: bool

    @property
    def key(self) -> Key:
        return Key(self.kind, self.namespace, self.name)

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]

    @property
    def orphans(self) -> bool:
        """Deleting the CR leaves its swarm objects in place."""
        return self.annotations.get(ORPHAN_ANNOTATION, "").strip().lower() == "true"

    def reference(self) -> dict[str, str]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CustomResource:
        meta = body.get("metadata") or {}
        status = body.get("status")
        return cls(
            kind=str(body.get("kind")),
            namespace=str(meta.get("namespace")),
            name=str(meta.get("name")),
            uid=str(meta.get("uid", "")),
            generation=meta.get("generation"),
            status=status if isinstance(status, Mapping) else None,
            annotations=dict(meta.get("annotations") or {}),
            deleting=meta.get("deletionTimestamp") is not None,
        )


@dataclass(frozen=True)
class Problem:
    """Why an object is not applied: a Ready=False reason and the errors behind it."""

    reason: str
    errors: tuple[SpecError, ...]

    @property
    def message(self) -> str:
        shown = "; ".join(_without_object(e) for e in self.errors[:5])
        more = f" (+{len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        return shown + more


@dataclass
class NamespaceSpecs:
    """One namespace's CRs, read as one set: what can be applied, and why the rest cannot."""

    manifests: list[Manifest] = field(default_factory=list)
    problems: dict[Key, Problem] = field(default_factory=dict)
    resources: dict[Key, CustomResource] = field(default_factory=dict)  # every CR not being deleted


class ValueReadError(Exception):
    """A Secret or ConfigMap could not be read (other than: it does not exist)."""


# (kind: "Secret" or "ConfigMap", namespace, name) → its keys and their bytes; None when it does not exist.
ValueReader = Callable[[str, str, str], Mapping[str, bytes] | None]


# --- CR → Manifest ------------------------------------------------------------------------------


def desired_document(body: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a CR the models read: Kubernetes' metadata cut down to what a spec file has."""
    meta = body.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(_FOREIGN_ANNOTATIONS)}
    metadata: dict[str, Any] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    if meta.get("labels"):
        metadata["labels"] = dict(meta["labels"])
    if annotations:
        metadata["annotations"] = annotations
    if meta.get("generation") is not None:
        metadata["generation"] = meta["generation"]
    document = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": metadata}
    if "spec" in body:
        document["spec"] = copy.deepcopy(body["spec"])
    return document


def to_manifest(body: Mapping[str, Any]) -> tuple[Manifest | None, list[SpecError]]:
    """A CR as a validated manifest (value not resolved yet), or the model's errors with field paths."""
    document = Document(index=0, data=desired_document(body), line=None)
    manifest, errors = validate_document(document, _NOWHERE, _NOWHERE)
    # A CR has no file or line: errors name the object and the field only, and the manifest has no
    # origin, so nothing can be read relative to a file.
    errors = [replace(e, file=None, line=None, column=None) for e in errors]
    if manifest is None:
        return None, errors
    return replace(manifest, origin=None, positions={}), []


def resolve(manifest: Manifest, read: ValueReader) -> tuple[Manifest, Problem | None]:
    """A SwarmSecret/SwarmConfig with its value: from its secretRef, or inline (stringData, data); a
    SwarmAlert with its targets' URLs."""
    resource = manifest.resource
    if isinstance(resource, SwarmAlert):
        return _alert_urls(manifest, resource, read)
    if not isinstance(resource, SwarmSecret | SwarmConfig):
        return manifest, None
    spec = resource.spec
    if spec.file is not None or spec.env is not None:
        which = "file" if spec.file is not None else "env"
        message = (
            f"{which} is not available through Kubernetes (the operator's files and environment are its own); "
            "use secretRef, stringData or data"
        )
        return manifest, Problem(INVALID_SPEC, (manifest.error(("spec", which), message),))
    if spec.secret_ref is None:
        value, errors = resolve_value(manifest, {})
        if errors:
            return manifest, Problem(INVALID_SPEC, tuple(errors))
        return replace(manifest, value=value), None
    source = "Secret" if isinstance(resource, SwarmSecret) else "ConfigMap"
    ref = spec.secret_ref
    where = ("spec", "secretRef")
    try:
        data = read(source, resource.metadata.namespace or "", ref.name)
    except ValueReadError as exc:
        return manifest, Problem(VALUE_UNAVAILABLE, (manifest.error(where, f'{source} "{ref.name}": {exc}'),))
    if data is None:
        message = f'{source} "{ref.name}" not found in namespace "{resource.metadata.namespace}"'
        return manifest, Problem(VALUE_UNAVAILABLE, (manifest.error(where, message),))
    raw = data.get(ref.key)
    if raw is None:
        keys = ", ".join(sorted(data)) or "none"
        message = f'{source} "{ref.name}" has no key "{ref.key}" (its keys: {keys})'
        return manifest, Problem(VALUE_UNAVAILABLE, (manifest.error(where, message),))
    if not raw:
        message = f'{source} "{ref.name}" key "{ref.key}" is empty; swarm needs at least 1 byte'
        return manifest, Problem(VALUE_UNAVAILABLE, (manifest.error(where, message),))
    if len(raw) >= MAX_VALUE_BYTES:
        message = f'{source} "{ref.name}" key "{ref.key}" must be smaller than {format_size(MAX_VALUE_BYTES)}'
        return manifest, Problem(VALUE_UNAVAILABLE, (manifest.error(where, message),))
    return replace(manifest, value=SecretBytes(raw)), None


def _alert_urls(manifest: Manifest, alert: SwarmAlert, read: ValueReader) -> tuple[Manifest, Problem | None]:
    """Each target's URL from the Secret key its secretRef names (never quoted in a message)."""
    urls: list[SecretStr | None] = []
    for i, target in enumerate(alert.spec.targets):
        ref = target.secret_ref
        if ref is None:
            message = "urlFile is not available through Kubernetes (the operator's files are its own); use secretRef"
            return manifest, Problem(INVALID_SPEC, (manifest.error(("spec", "targets", i, "urlFile"), message),))
        where = ("spec", "targets", i, "secretRef")
        try:
            data = read("Secret", alert.metadata.namespace or "", ref.name)
        except ValueReadError as exc:
            return manifest, Problem(VALUE_UNAVAILABLE, (manifest.error(where, f'Secret "{ref.name}": {exc}'),))
        raw = (data or {}).get(ref.key)
        if raw is None:
            missing = f'has no key "{ref.key}"' if data is not None else "not found"
            message = f'Secret "{ref.name}" {missing}'
            return manifest, Problem(VALUE_UNAVAILABLE, (manifest.error(where, message),))
        url, problem = parse_url(raw)
        if problem is not None:
            message = f'Secret "{ref.name}" key "{ref.key}" {problem}'
            return manifest, Problem(VALUE_UNAVAILABLE, (manifest.error(where, message),))
        urls.append(url)
    return replace(manifest, urls=tuple(urls)), None


def load_namespace(bodies: Iterable[Mapping[str, Any]], read: ValueReader) -> NamespaceSpecs:
    """Every CR of one namespace as manifests; an object that cannot be applied is left out with its
    problem, and so is everything that refers to it (a service whose secret is invalid waits)."""
    out = NamespaceSpecs()
    candidates: list[Manifest] = []
    for body in bodies:
        cr = CustomResource.from_body(body)
        if cr.kind not in KINDS or cr.deleting:
            continue  # one being deleted is the finalizer's to remove, never to apply again
        out.resources[cr.key] = cr
        manifest, errors = to_manifest(body)
        if manifest is None:
            out.problems[cr.key] = Problem(INVALID_SPEC, tuple(errors))
            continue
        manifest, problem = resolve(manifest, read)
        if problem is not None:
            out.problems[cr.key] = problem
            continue
        candidates.append(manifest)
    # Leaving one object out can leave another's reference dangling: repeat until the set is whole.
    while True:
        by_object: dict[tuple[str | None, str | None], list[SpecError]] = {}
        for e in check_references(candidates):
            by_object.setdefault((e.kind, e.name), []).append(e)
        kept: list[Manifest] = []
        for m in candidates:
            found = by_object.get((m.kind, m.name))
            if found is None:
                kept.append(m)
                continue
            invalid = [k for k in _references(m) if k in out.problems]
            if invalid:
                names = ", ".join(f"{k.kind}/{k.name}" for k in invalid)
                waiting = m.error((), f"waits for {names}, which cannot be applied")
                out.problems[m.key] = Problem(DEPENDENCY_INVALID, (waiting,))
            else:
                out.problems[m.key] = Problem(INVALID_SPEC, tuple(sorted_errors(found)))
        if len(kept) == len(candidates):
            break  # nothing (more) to leave out
        candidates = kept
    out.manifests = candidates
    return out


def _references(m: Manifest) -> list[Key]:
    """The objects a manifest needs in the same namespace (its cluster included)."""
    res, ns = m.resource, m.namespace
    keys: list[Key] = []
    cluster = getattr(res.spec, "cluster", None)
    if cluster is not None:
        keys.append(Key("SwarmCluster", ns, cluster))
    if isinstance(res, SwarmService):
        spec = res.spec
        keys += [Key("SwarmNetwork", ns, n.name) for n in spec.networks if not n.external]
        keys += [Key("SwarmSecret", ns, s.source) for s in spec.secrets if not s.external]
        keys += [Key("SwarmConfig", ns, c.source) for c in spec.configs if not c.external]
        keys += [Key("SwarmService", ns, d) for d in spec.depends_on]
    return keys


def _without_object(e: SpecError) -> str:
    # The condition sits on the object itself: its kind and name would only repeat.
    return f"{e.field}: {e.message}" if e.field else e.message


# --- status -------------------------------------------------------------------------------------


def problem_status(old: Mapping[str, Any] | None, problem: Problem, generation: int | None) -> dict[str, Any]:
    """The status of an object that is not applied: what it had, with Ready=False and the reason.

    Its swarm objects (if any) keep running as they were; the other conditions describe them.
    """
    ready = condition(READY, "False", problem.reason, problem.message, generation=generation)
    return status_with(old, ready)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``; empty when they are equal."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif key not in old or before != value:
            patch[key] = value
    return patch


# --- the API server -----------------------------------------------------------------------------


# Per request, in seconds. The client sets none: against an API server that accepts connections but
# never answers (a stalled control plane), a pass would hang on a read or a status write forever,
# and act on what it read before once the server came back. Every caller handles the error.
REQUEST_TIMEOUT = 10.0


class KubeApi:
    """The few API calls the operator makes besides kopf's own: values, status, Events, discovery.

    Custom objects go through the generic custom-objects API (plain JSON, no model classes), which
    also serves built-in groups such as coordination.k8s.io.
    """

    def __init__(self, api_client: Any, component: str = "swarmkeeper", instance: str = "") -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.errors = client.exceptions.ApiException
        self.component = component
        self.instance = instance

    def read_value(self, kind: str, namespace: str, name: str) -> Mapping[str, bytes] | None:
        """The keys of a Secret or ConfigMap and their bytes; None when it does not exist."""
        try:
            if kind == "Secret":
                secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT)
                return {k: _b64(v) for k, v in (secret.data or {}).items()}
            config_map = self.core.read_namespaced_config_map(name, namespace, _request_timeout=REQUEST_TIMEOUT)
            data = {k: v.encode("utf-8") for k, v in (config_map.data or {}).items()}
            data.update({k: _b64(v) for k, v in (config_map.binary_data or {}).items()})
            return data
        except self.errors as exc:
            if exc.status == 404:
                return None
            raise ValueReadError(_api_reason(exc)) from None
        except Exception as exc:  # an unreachable API server: the object waits, the pass goes on
            raise ValueReadError(f"the API server did not answer ({type(exc).__name__})") from None

    def patch_status(self, cr: CustomResource, patch: Mapping[str, Any]) -> bool:
        """Merge-patch the status subresource; False when the CR is gone."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                cr.namespace,
                cr.plural,
                cr.name,
                {"status": dict(patch)},
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except self.errors as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def post_event(self, cr: CustomResource, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``cr``; failures are logged, never raised (Events are best effort)."""
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        if len(message) > _MAX_EVENT_MESSAGE:
            message = message[: _MAX_EVENT_MESSAGE - 3] + "..."
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{cr.name}.", "namespace": cr.namespace},
            "involvedObject": cr.reference(),
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(cr.namespace, body, _request_timeout=REQUEST_TIMEOUT)
        except self.errors as exc:
            log.warning("cannot post event %s on %s/%s: %s", reason, cr.kind, cr.name, _api_reason(exc))
        except Exception as exc:  # an unreachable API server: the next pass posts what matters again
            log.warning("cannot post event %s on %s/%s: %s", reason, cr.kind, cr.name, type(exc).__name__)

    def missing_kinds(self) -> list[str]:
        """Kinds whose CRD the API server does not serve (the operator cannot start without them)."""
        try:
            served = {r.kind for r in self.custom.get_api_resources(GROUP, VERSION).resources}
        except self.errors as exc:
            if exc.status == 404:
                return list(KINDS)
            raise
        return [kind for kind in KINDS if kind not in served]


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueReadError("the API server returned data that is not base64") from None


def _api_reason(exc: Any) -> str:
    """An API error in a few words; never its body, which may echo what was sent."""
    return f"{getattr(exc, 'status', '?')} {getattr(exc, 'reason', '') or 'error'}".strip()


def referenced_values(bodies: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap that the SwarmSecrets/SwarmConfigs refer to."""
    out: set[tuple[str, str]] = set()
    for body in bodies:
        kind = body.get("kind")
        ref = (body.get("spec") or {}).get("secretRef")
        if kind in ("SwarmSecret", "SwarmConfig") and isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            out.add(("Secret" if kind == "SwarmSecret" else "ConfigMap", ref["name"]))
        if kind == "SwarmAlert":  # a target's URL, so a rotated token is used at once
            for target in (body.get("spec") or {}).get("targets") or []:
                ref = target.get("secretRef") if isinstance(target, Mapping) else None
                if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
                    out.add(("Secret", ref["name"]))
    return out
