"""What runs in a swarm → the specs that would make it: the inverse of ``build``.

Pure: an observed ``SwarmState`` in, spec documents out. The promise is a round trip: applied
(with the secret values supplied), the exported specs build payloads that compare equal to what
runs, so the apply changes nothing. A field the spec model cannot express is named in a comment
on its object, since applying the spec would drop it; nothing is left out silently.

Secret values cannot be read back (swarm never returns them): a secret is exported by reference,
with a placeholder file the user fills. Config values can be, and are exported inline.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ...api import API_VERSION, RESOURCE_ADAPTER, SwarmNetwork
from ...api.units import cpus_to_nano, ns_to_duration
from ...swarm import labels as L
from ...swarm.build import build_network_spec
from ...swarm.images import normalize_image
from ...swarm.lease import is_lease
from ...swarm.observe import Obj, SwarmState

_OWNERSHIP = frozenset({L.MANAGED_BY, L.KIND, L.NAME, L.NAMESPACE, L.SOURCE, L.STACK_NAMESPACE, L.VERSION})


@dataclass
class Exported:
    kind: str
    name: str
    namespace: str | None
    document: dict[str, Any]
    comments: list[str] = field(default_factory=list)


def spec_name(text: str) -> str:
    """Any swarm or compose name as a spec name (a DNS label): ``My_App.web`` → ``my-app-web``."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name[:63].rstrip("-")


@dataclass(frozen=True)
class _Id:
    namespace: str | None
    name: str
    own_name: str | None = None  # the swarm name, where <namespace>_<name> would not give it (swarmName)


def _identity(swarm_name: str, labels: Mapping[str, str] | None) -> _Id:
    """(namespace, name) of a swarm object: from swarmkeeper's labels, else from the stack's naming;
    and its swarm name when the spec must say it (a compose key that is not a DNS label, a name:)."""
    labels = labels or {}
    if labels.get(L.VERSION, "0") not in ("", "0"):  # a secret's or config's version: NAME-vN
        swarm_name = re.sub(r"-v\d+$", "", swarm_name)
    key = L.identity(labels)
    if key is not None:
        namespace, name = key.namespace, key.name
    else:
        stack = labels.get(L.STACK_NAMESPACE)
        namespace = stack if stack and spec_name(stack) == stack else None
        rest = swarm_name.removeprefix(f"{namespace}_") if namespace else swarm_name
        name = spec_name(rest)
    own = swarm_name if L.swarm_name(name, namespace) != swarm_name else None
    return _Id(namespace, name, own)


def _user_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (labels or {}).items() if k not in _OWNERSHIP and k not in L.BOOKKEEPING}


def _document(kind: str, ident: _Id, spec: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": ident.name}
    if ident.namespace:
        meta["namespace"] = ident.namespace
    if ident.own_name:
        spec = {"swarmName": ident.own_name, **spec}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def _empty(value: Any) -> bool:
    """Nothing but empty containers, zeros, false and nulls all the way down."""
    if isinstance(value, Mapping):
        return all(_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(_empty(v) for v in value)
    return value in (None, "", 0, False)


def _size(n: int) -> str | int:
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return n


def _cpus(nano: int) -> str | float:
    text = format(Decimal(nano) / Decimal(1_000_000_000), "f").rstrip("0").rstrip(".") or "0"
    return float(text) if cpus_to_nano(float(text)) == nano else f"{nano // 1_000_000}m"


def _duration(ns: int | None) -> str | None:
    return None if ns is None else ns_to_duration(int(ns))


def export_state(state: SwarmState, namespace: str | None = None) -> list[Exported]:
    """Specs for every swarm object (of ``namespace``, when given), networks and values first."""
    return _Exporter(state).run(namespace)


class _Exporter:
    def __init__(self, state: SwarmState) -> None:
        self.state = state
        self.networks: dict[str, tuple[_Id, Obj]] = {}  # id → identity
        self.values: dict[str, dict[str, _Id]] = {"Secret": {}, "Config": {}}  # id → identity
        self.exported: dict[tuple[str, str | None, str], Exported] = {}

    def run(self, namespace: str | None) -> list[Exported]:
        out: list[Exported] = []
        for net in self.state.networks:
            if net.get("Scope") != "swarm" or net.get("Ingress") or net["Name"] == "ingress":
                continue
            self.networks[net["Id"]] = (_identity(net["Name"], net.get("Labels")), net)
        out += [self.network(ident, net) for ident, net in self.networks.values()]
        out += self.value_objects("Secret", self.state.secrets)
        out += self.value_objects("Config", self.state.configs)
        self.exported = {(e.kind, e.namespace, e.name): e for e in out}
        services = [self.service(svc) for svc in self.state.services]
        # Copies made for services that use a secret or config of another namespace (see refs).
        out += [e for e in self.exported.values() if e not in out]
        out += services
        return [e for e in out if namespace is None or e.namespace == namespace]

    # -- networks ------------------------------------------------------------------------------------
    def network(self, ident: _Id, net: Obj) -> Exported:
        labels = net.get("Labels") or {}
        comments = self._origin(net["Name"], labels, ident)
        options = {
            k: v
            for k, v in (net.get("Options") or {}).items()
            if not k.startswith("com.docker.network.driver.overlay.vxlanid")
        }
        spec: dict[str, Any] = {}
        if net.get("Driver", "overlay") != "overlay":
            spec["driver"] = net["Driver"]
        if "encrypted" in options and options["encrypted"] == "":
            del options["encrypted"]
            spec["encrypted"] = True
        for key in ("Attachable", "Internal"):
            if net.get(key):
                spec[key.lower()] = True
        if options:
            spec["options"] = options
        if _user_labels(labels):
            spec["labels"] = _user_labels(labels)
        ipam = self._ipam(ident, net, spec)
        if ipam is not None:
            spec["ipam"] = ipam
        elif (net.get("IPAM") or {}).get("Config"):
            subnets = ", ".join(p.get("Subnet", "?") for p in net["IPAM"]["Config"])
            comments.append(f"subnet {subnets} was chosen by swarm; add ipam: to pin it")
        return Exported("SwarmNetwork", ident.name, ident.namespace, _document("SwarmNetwork", ident, spec), comments)

    def _ipam(self, ident: _Id, net: Obj, spec: dict[str, Any]) -> dict[str, Any] | None:
        """The ipam: the network was created with, found by its spec hash (swarm does not say
        which subnets were asked for and which it chose). None for networks made elsewhere."""
        labels = net.get("Labels") or {}
        if not L.is_managed(labels) or L.SPEC_HASH not in labels:
            return None
        live = net.get("IPAM") or {}
        pools = live.get("Config") or []

        def pool(p: Mapping[str, Any], gateway: bool) -> dict[str, Any]:
            out = {"subnet": p.get("Subnet")}
            if gateway and p.get("Gateway"):
                out["gateway"] = p["Gateway"]
            if p.get("IPRange"):
                out["ipRange"] = p["IPRange"]
            return out

        candidates: list[dict[str, Any] | None] = [None]
        for gateway in (False, True):
            variant: dict[str, Any] = {"driver": live.get("Driver") or "default"}
            if pools:
                variant["config"] = [pool(p, gateway) for p in pools]
            if live.get("Options"):
                variant["options"] = dict(live["Options"])
            candidates.append(variant)
        for candidate in candidates:
            doc = _document("SwarmNetwork", ident, {**spec, **({"ipam": candidate} if candidate else {})})
            model = RESOURCE_ADAPTER.validate_python(doc)
            assert isinstance(model, SwarmNetwork)
            payload = build_network_spec(model, source=labels.get(L.SOURCE, L.DEFAULT_SOURCE))
            if payload["Labels"][L.SPEC_HASH] == labels[L.SPEC_HASH]:
                return candidate
        return None

    # -- secrets and configs ---------------------------------------------------------------------------
    def value_objects(self, kind: str, objs: list[Obj]) -> list[Exported]:
        latest: dict[tuple[str | None, str], tuple[_Id, Obj]] = {}
        for obj in objs:
            name = obj["Spec"]["Name"]
            if kind == "Config" and is_lease(name):
                continue
            ident = _identity(name, obj["Spec"].get("Labels"))
            self.values[kind][obj["ID"]] = ident
            key = (ident.namespace, ident.name)
            if key not in latest or _version(obj) > _version(latest[key][1]):
                latest[key] = (ident, obj)
        return [self.value(kind, ident, obj) for ident, obj in latest.values()]

    def value(self, kind: str, ident: _Id, obj: Obj) -> Exported:
        spec_kind = "Swarm" + kind
        labels = obj["Spec"].get("Labels") or {}
        comments = self._origin(obj["Spec"]["Name"], labels, ident)
        spec: dict[str, Any] = {}
        data = obj["Spec"].get("Data")
        if kind == "Config" and data is not None:
            try:
                raw = base64.b64decode(data, validate=True)
            except binascii.Error:
                raw = None
            text = _text(raw) if raw is not None else None
            if text is not None:
                spec["stringData"] = text
            else:
                spec["data"] = data
        else:
            spec["file"] = f"{ident.name}.txt"
            comments.append(
                f"The value cannot be read back from swarm: put it in {ident.name}.txt beside this file "
                "(or use env: or stringData:) before applying."
            )
        if _user_labels(labels):
            spec["labels"] = _user_labels(labels)
        if (obj["Spec"].get("Templating") or {}).get("Name"):
            spec["templateDriver"] = obj["Spec"]["Templating"]["Name"]
        return Exported(spec_kind, ident.name, ident.namespace, _document(spec_kind, ident, spec), comments)

    # -- services ------------------------------------------------------------------------------------
    def service(self, svc: Obj) -> Exported:
        raw = svc["Spec"]
        ident = _identity(raw["Name"], raw.get("Labels"))
        comments = self._origin(raw["Name"], raw.get("Labels") or {}, ident)
        spec = _ServiceUnbuilder(self, ident, raw, comments).spec()
        return Exported("SwarmService", ident.name, ident.namespace, _document("SwarmService", ident, spec), comments)

    def _origin(self, swarm_name: str, labels: Mapping[str, str], ident: _Id) -> list[str]:
        comments = []
        if not L.is_managed(labels):
            comments.append(f"{swarm_name} was made outside swarmkeeper: apply with --adopt to take it over in place.")
        if ident.own_name:
            comments.append(
                f"{swarm_name} is not a name a spec can produce: exported as {ident.name}, with swarmName "
                "keeping the swarm name."
            )
        return comments


def _version(obj: Obj) -> int:
    try:
        return int((obj["Spec"].get("Labels") or {}).get(L.VERSION, "0"))
    except ValueError:
        return 0


def _text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Text that YAML would not give back byte for byte (control characters, CR) stays base64.
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        return None
    return text


_CONTAINER_FIELDS = frozenset(
    {
        "Image",
        "Labels",
        "Command",
        "Args",
        "Hostname",
        "Env",
        "Dir",
        "User",
        "Mounts",
        "StopSignal",
        "StopGracePeriod",
        "Healthcheck",
        "ReadOnly",
        "Init",
        "Isolation",
        "Secrets",
        "Configs",
        "CapabilityAdd",
        "CapabilityDrop",
        "DNSConfig",
        "Hosts",
        "Sysctls",
        "Ulimits",
        "TTY",
        "OpenStdin",
    }
)
_TASK_FIELDS = frozenset(
    {"ContainerSpec", "Resources", "RestartPolicy", "Placement", "Networks", "LogDriver", "ForceUpdate"}
)
_SERVICE_FIELDS = frozenset(
    {"Name", "Labels", "TaskTemplate", "Mode", "UpdateConfig", "RollbackConfig", "EndpointSpec", "Networks"}
)
# Values the engine reports for fields nobody set; not worth a comment.
_DEFAULTS = {"Isolation": "default", "Runtime": "container"}


class _ServiceUnbuilder:
    def __init__(self, exporter: _Exporter, ident: _Id, raw: Obj, comments: list[str]) -> None:
        self.exporter = exporter
        self.ident = ident
        self.raw = raw
        self.comments = comments
        self.task: Obj = raw.get("TaskTemplate") or {}
        self.container: Obj = self.task.get("ContainerSpec") or {}

    def dropped(self, where: str, fields: Mapping[str, Any], known: frozenset[str]) -> None:
        for k, v in fields.items():
            if k not in known and not _empty(v) and _DEFAULTS.get(k) != v:
                self.comments.append(
                    f"{where}{k} is not exported: SwarmService has no field for it (applying drops it)"
                )

    def spec(self) -> dict[str, Any]:
        """The SwarmService spec, its keys in the order a spec file lists them."""
        self.dropped("", self.raw, _SERVICE_FIELDS)
        self.dropped("TaskTemplate.", self.task, _TASK_FIELDS)
        self.dropped("ContainerSpec.", self.container, _CONTAINER_FIELDS)
        image = self.container.get("Image", "")
        written = (self.raw.get("Labels") or {}).get(L.STACK_IMAGE)
        # docker stack deploy labels a service with its image as the file wrote it (`redis`, for
        # `redis:latest`); that form builds the same image and the same label again.
        if self.ident.namespace and isinstance(written, str) and normalize_image(written) == image:
            image = written
        spec: dict[str, Any] = {"image": image}
        spec.update(self.process())
        spec.update(self.labels(spec["image"]))
        spec.update(self.mode())
        spec.update(self.attachments())
        spec.update(self.endpoint())
        spec.update(self.policies())
        spec.update(self.container_options())
        spec.update(self.log_driver())
        return spec

    def process(self) -> dict[str, Any]:
        """command, args and env."""
        out: dict[str, Any] = {}
        for key, name in (("Command", "command"), ("Args", "args")):
            if self.container.get(key) is not None:
                out[name] = list(self.container[key])
        env = self.env()
        if env:
            out["env"] = env
        return out

    def labels(self, image: str) -> dict[str, Any]:
        """The service's labels and its containers', less those ``docker stack deploy`` adds."""
        out: dict[str, Any] = {}
        labels = _user_labels(self.raw.get("Labels"))
        if self.ident.namespace and labels.get(L.STACK_IMAGE) == image:
            del labels[L.STACK_IMAGE]
        if labels:
            out["labels"] = labels
        container_labels = dict(self.container.get("Labels") or {})
        if self.ident.namespace and container_labels.get(L.STACK_NAMESPACE) == self.ident.namespace:
            del container_labels[L.STACK_NAMESPACE]
        if container_labels:
            out["containerLabels"] = container_labels
        return out

    def attachments(self) -> dict[str, Any]:
        """networks, secrets and configs (each read before any is set, as their comments go in order)."""
        items = (("networks", self.networks()), ("secrets", self.refs("Secret")), ("configs", self.refs("Config")))
        return {key: value for key, value in items if value}

    def endpoint(self) -> dict[str, Any]:
        endpoint = self.raw.get("EndpointSpec") or {}
        out: dict[str, Any] = {}
        ports = [self.port(p) for p in endpoint.get("Ports") or []]
        if ports:
            out["ports"] = ports
        if endpoint.get("Mode", "vip") != "vip":
            out["endpointMode"] = endpoint["Mode"]
        return out

    def policies(self) -> dict[str, Any]:
        """placement, resources, restart, update and rollback policies, and the health check."""
        items = (
            ("placement", self.placement()),
            ("resources", self.resources()),
            ("restartPolicy", self.restart()),
            ("updateConfig", self.update("UpdateConfig")),
            ("rollbackConfig", self.update("RollbackConfig")),
            ("healthcheck", self.healthcheck()),
        )
        return {key: value for key, value in items if value}

    def container_options(self) -> dict[str, Any]:
        """Mounts, then how the container runs: user, folder, hostname, stopping, init, capabilities."""
        c = self.container
        out: dict[str, Any] = {}
        mounts = [self.mount(m) for m in c.get("Mounts") or []]
        if mounts:
            out["mounts"] = mounts
        for key, name in (
            ("User", "user"),
            ("Dir", "workdir"),
            ("Hostname", "hostname"),
            ("StopSignal", "stopSignal"),
            ("Isolation", "isolation"),
        ):
            if c.get(key):
                out[name] = c[key]
        if c.get("StopGracePeriod") is not None:
            out["stopGracePeriod"] = _duration(c["StopGracePeriod"])
        if c.get("Init") is not None:
            out["init"] = c["Init"]
        if c.get("ReadOnly"):
            out["readOnly"] = True
        for key, name in (("CapabilityAdd", "capAdd"), ("CapabilityDrop", "capDrop")):
            if c.get(key):
                out[name] = list(c[key])
        return {**out, **self.host_settings()}

    def host_settings(self) -> dict[str, Any]:
        """DNS, /etc/hosts, sysctls, ulimits and the terminal."""
        c = self.container
        out: dict[str, Any] = {}
        dns = c.get("DNSConfig") or {}
        fields = (("Nameservers", "nameservers"), ("Search", "search"), ("Options", "options"))
        if any(dns.get(k) for k, _ in fields):
            out["dns"] = {name: list(dns[k]) for k, name in fields if dns.get(k)}
        if c.get("Hosts"):
            # The engine's "IP HOST [ALIAS...]" → the spec's "HOST:IP", once per name.
            out["extraHosts"] = [f"{host}:{ip}" for ip, *hosts in (h.split() for h in c["Hosts"]) for host in hosts]
        if c.get("Sysctls"):
            out["sysctls"] = dict(c["Sysctls"])
        if c.get("Ulimits"):
            out["ulimits"] = {u["Name"]: {"soft": u["Soft"], "hard": u["Hard"]} for u in c["Ulimits"]}
        for key, name in (("TTY", "tty"), ("OpenStdin", "stdinOpen")):
            if c.get(key):
                out[name] = True
        return out

    def log_driver(self) -> dict[str, Any]:
        log = self.task.get("LogDriver")
        if not log or not log.get("Name"):
            return {}
        driver: dict[str, Any] = {"name": log["Name"]}
        if log.get("Options"):
            driver["options"] = dict(log["Options"])
        return {"logDriver": driver}

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for entry in self.container.get("Env") or []:
            key, eq, value = entry.partition("=")
            if not eq:
                self.comments.append(f"env {key} has no value, which a spec cannot say: not exported")
                continue
            out[key] = value
        return out

    def mode(self) -> dict[str, Any]:
        mode = self.raw.get("Mode") or {"Replicated": {}}
        if "Global" in mode:
            return {"mode": "global"}
        if "GlobalJob" in mode:
            return {"mode": "global-job"}
        if "ReplicatedJob" in mode:
            job = mode["ReplicatedJob"] or {}
            out: dict[str, Any] = {"mode": "replicated-job", "replicas": job.get("TotalCompletions", 1)}
            if job.get("MaxConcurrent", 1) != 1:
                out["maxConcurrent"] = job["MaxConcurrent"]
            return out
        return {"replicas": (mode.get("Replicated") or {}).get("Replicas", 1)}

    def networks(self) -> list[dict[str, Any]]:
        out = []
        ns = self.ident.namespace
        for att in self.task.get("Networks") or self.raw.get("Networks") or []:
            target = att.get("Target", "")
            known = self.exporter.networks.get(target)
            swarm_name = known[1]["Name"] if known else self.exporter.state.network_names.get(target, target)
            short = L.short_name(self.ident.name, ns, self.ident.own_name)
            aliases = [a for a in att.get("Aliases") or [] if not (ns and a == short)]
            if known and known[0].namespace == ns:
                entry: dict[str, Any] = {"name": known[0].name}
            else:
                entry = {"name": swarm_name, "external": True}
            if aliases:
                entry["aliases"] = aliases
            out.append(entry)
        return out

    def refs(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for ref in self.container.get(kind + "s") or []:
            if "File" not in ref:
                self.comments.append(f"a {kind.lower()} used other than as a file is not exported")
                continue
            ident = self.exporter.values[kind].get(ref.get(kind + "ID", ""))
            own = ident is not None and ident.namespace == self.ident.namespace
            # Of another stack, or of none: used as it is, as docker stack deploy uses an external one.
            name = ident.name if own and ident is not None else ref.get(kind + "Name", "")
            file = ref["File"]
            entry: dict[str, Any] = {"source": name}
            if not own:
                entry["external"] = True
            if file.get("Name") and file["Name"] != name:
                entry["target"] = file["Name"]
            for key in ("UID", "GID"):
                if file.get(key, "0") != "0":
                    entry[key.lower()] = file[key]
            mode = file.get("Mode", 0o444)
            if mode != 0o444:
                entry["mode"] = f"0{mode:03o}"
            out.append(entry)
        return out

    def port(self, p: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"target": p["TargetPort"]}
        if p.get("PublishedPort"):
            out["published"] = p["PublishedPort"]
        if p.get("Protocol", "tcp") != "tcp":
            out["protocol"] = p["Protocol"]
        if p.get("PublishMode", "ingress") != "ingress":
            out["mode"] = p["PublishMode"]
        return out

    def placement(self) -> dict[str, Any]:
        p = self.task.get("Placement") or {}
        out: dict[str, Any] = {}
        if p.get("Constraints"):
            out["constraints"] = list(p["Constraints"])
        prefs = [{"spread": x["Spread"]["SpreadDescriptor"]} for x in p.get("Preferences") or [] if "Spread" in x]
        if prefs:
            out["preferences"] = prefs
        if p.get("MaxReplicas"):
            out["maxReplicasPerNode"] = p["MaxReplicas"]
        if p.get("Platforms"):
            self.comments.append("Placement.Platforms is not exported: SwarmService has no field for it")
        return out

    def resources(self) -> dict[str, Any]:
        r = self.task.get("Resources") or {}
        out: dict[str, Any] = {}
        for key, section in (("Limits", "limits"), ("Reservations", "reservations")):
            src = r.get(key) or {}
            amounts: dict[str, Any] = {}
            if src.get("NanoCPUs"):
                amounts["cpus"] = _cpus(src["NanoCPUs"])
            if src.get("MemoryBytes"):
                amounts["memory"] = _size(src["MemoryBytes"])
            if key == "Limits" and src.get("Pids"):
                amounts["pids"] = src["Pids"]
            all_generic = src.get("GenericResources") or []
            generic = [g["DiscreteResourceSpec"] for g in all_generic if "DiscreteResourceSpec" in g]
            if key == "Reservations" and generic:
                amounts["genericResources"] = [{"kind": g["Kind"], "value": g["Value"]} for g in generic]
            if len(generic) != len(all_generic):
                self.comments.append(f"Resources.{key}.GenericResources: named resources are not exported")
            if amounts:
                out[section] = amounts
        return out

    def restart(self) -> dict[str, Any]:
        r = self.task.get("RestartPolicy") or {}
        out: dict[str, Any] = {}
        if r.get("Condition", "any") != "any":
            out["condition"] = r["Condition"]
        if r.get("Delay") is not None:
            out["delay"] = _duration(r["Delay"])
        if r.get("MaxAttempts"):
            out["maxAttempts"] = r["MaxAttempts"]
        if r.get("Window"):
            out["window"] = _duration(r["Window"])
        return out

    def update(self, key: str) -> dict[str, Any]:
        u = self.raw.get(key) or {}
        out: dict[str, Any] = {}
        if u.get("Parallelism", 1) != 1:
            out["parallelism"] = u["Parallelism"]
        if u.get("Delay"):
            out["delay"] = _duration(u["Delay"])
        if u.get("FailureAction", "pause") != "pause":
            out["failureAction"] = u["FailureAction"]
        if u.get("Monitor"):
            out["monitor"] = _duration(u["Monitor"])
        if u.get("MaxFailureRatio"):
            out["maxFailureRatio"] = u["MaxFailureRatio"]
        if u.get("Order", "stop-first") != "stop-first":
            out["order"] = u["Order"]
        return out

    def healthcheck(self) -> dict[str, Any]:
        hc = self.container.get("Healthcheck")
        if not hc:
            return {}
        out: dict[str, Any] = {}
        if hc.get("Test"):
            out["test"] = list(hc["Test"])
        for key, name in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "startPeriod")):
            if hc.get(key):
                out[name] = _duration(hc[key])
        if hc.get("Retries"):
            out["retries"] = hc["Retries"]
        if hc.get("StartInterval"):
            self.comments.append("Healthcheck.StartInterval is not exported: SwarmService has no field for it")
        return out

    def mount(self, m: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": m.get("Type", "volume")}
        if m.get("Source"):
            out["source"] = m["Source"]
        out["target"] = m.get("Target", "")
        if m.get("ReadOnly"):
            out["readOnly"] = True
        vol = m.get("VolumeOptions") or {}
        options: dict[str, Any] = {}
        if vol.get("NoCopy"):
            options["noCopy"] = True
        if vol.get("Labels"):
            options["labels"] = dict(vol["Labels"])
        driver = vol.get("DriverConfig") or {}
        if driver.get("Name"):
            options["driver"] = driver["Name"]
            if driver.get("Options"):
                options["driverOptions"] = dict(driver["Options"])
        if options:
            out["volume"] = options
        tmpfs = m.get("TmpfsOptions") or {}
        if tmpfs.get("SizeBytes"):
            out["tmpfsSize"] = _size(tmpfs["SizeBytes"])
        if (m.get("BindOptions") or {}).get("Propagation"):
            out["bindPropagation"] = m["BindOptions"]["Propagation"]
        for key in ("Consistency",):
            if m.get(key) and m.get(key) != "default":
                self.comments.append(f"mount {out['target']}: {key} is not exported: SwarmService has no field for it")
        return out
