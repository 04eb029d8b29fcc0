"""One compose service → a SwarmService spec, as ``docker stack deploy`` (docker CLI 20.10) converts it.

Every ordering and default here is the CLI's, so the payload the spec builds equals the one the
CLI sends: environment and capabilities sorted, networks by swarm name, secrets and configs by
swarm name, ports by published port; the service's name added as an alias on each network; named
volumes labelled with the stack. What the spec model cannot say becomes a comment on the object.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from ....api.units import cpus_to_nano
from ....loading.fieldpath import FieldPath
from ....swarm import labels as L
from ..export import spec_name
from .fields import Fields, Invalid
from .reading import Data
from .result import ImportedObject

# Swarm can do these, but SwarmService has no field for them: docker stack deploy would set them.
_NO_FIELD = {
    "credential_spec": "a credential spec",
    "oom_score_adj": "an OOM score adjustment",
    "group_add": "additional groups",
}
# docker stack deploy ignores (or refuses) these as well: swarm has no such thing.
_NOT_IN_SWARM = {
    "build": "swarm runs images and does not build them: build and push the image, and keep image: naming it",
    "links": "services on a shared network reach each other by service name; no equivalent needed",
    "external_links": "services on a shared network reach each other by name; no equivalent needed",
    "container_name": "swarm names task containers itself",
    "expose": "documentation only; services on a shared network reach every port",
    "network_mode": "swarm services attach to networks (networks:)",
    "privileged": "swarm services cannot run privileged",
    "devices": "swarm services cannot map devices",
    "cgroup_parent": "not supported by swarm",
    "cgroupns_mode": "not supported by swarm",
    "domainname": "not supported by swarm",
    "ipc": "not supported by swarm",
    "pid": "not supported by swarm",
    "mac_address": "not supported by swarm",
    "security_opt": "not supported by swarm",
    "shm_size": "not supported by swarm",
    "userns_mode": "not supported by swarm",
    "tmpfs": "use a volume of type tmpfs (volumes:)",
    "extends": "not supported by docker stack deploy: merge the files first",
    "volume_driver": "define a top-level volume with a driver instead",
    "volumes_from": "share a top-level volume instead",
    "cpu_quota": "use deploy.resources",
    "cpu_shares": "use deploy.resources",
    "cpuset": "use deploy.resources",
    "cpus": "use deploy.resources.limits.cpus",
    "cpu_count": "use deploy.resources",
    "cpu_percent": "use deploy.resources",
    "mem_limit": "use deploy.resources.limits.memory",
    "mem_reservation": "use deploy.resources.reservations.memory",
    "memswap_limit": "use deploy.resources",
    "mem_swappiness": "not supported by swarm",
    "pids_limit": "use deploy.resources.limits.pids",
    "platform": "use deploy.placement.constraints (node.platform.arch/os)",
    "profiles": "every service in the file is translated",
    "pull_policy": "swarm pulls when a node lacks the image",
    "scale": "use deploy.replicas",
    "runtime": "not supported by swarm",
    "storage_opt": "not supported by swarm",
    "blkio_config": "not supported by swarm",
    "annotations": "not supported by swarm",
    "attach": "not supported by swarm",
    "develop": "a docker compose development setting",
}
_SERVICE_KEYS = frozenset(
    {
        "image",
        "command",
        "entrypoint",
        "environment",
        "env_file",
        "labels",
        "deploy",
        "networks",
        "ports",
        "secrets",
        "configs",
        "volumes",
        "healthcheck",
        "hostname",
        "user",
        "working_dir",
        "stop_grace_period",
        "stop_signal",
        "init",
        "isolation",
        "read_only",
        "cap_add",
        "cap_drop",
        "logging",
        "depends_on",
        "restart",
        "dns",
        "dns_search",
        "dns_opt",
        "extra_hosts",
        "sysctls",
        "ulimits",
        "tty",
        "stdin_open",
    }
)

_DEPLOY_KEYS = frozenset(
    {
        "mode",
        "replicas",
        "labels",
        "update_config",
        "rollback_config",
        "resources",
        "restart_policy",
        "placement",
        "endpoint_mode",
    }
)
# Compose keys read as text into the spec key of the same meaning.
_TEXT_FIELDS = (
    ("user", "user"),
    ("working_dir", "workdir"),
    ("hostname", "hostname"),
    ("stop_signal", "stopSignal"),
    ("isolation", "isolation"),
)

_ENV_NAME = re.compile(r"^[^=]+$")


class Services(Fields):
    """Service translation; the file-level part (and what a service refers to) is the subclass's."""

    def service(self, key: str, svc: dict[str, Any]) -> ImportedObject:
        at: FieldPath = ("services", key)
        comments: list[str] = []
        name = self.named("services", key, comments)
        errors_before = len(self.errors)
        self.untranslated(svc, comments)
        if "image" not in svc and "build" in svc:
            self.notes.append(
                f"services.{key}: build: without image: is not translated: swarm runs images, so build and push "
                "it, then name it with image:"
            )
            raise Invalid(key)
        if "image" not in svc:
            raise self.error(at, "image is required (swarm runs images)")
        spec: dict[str, Any] = {"image": self.text(svc["image"], (*at, "image"))}
        # Each field on its own: an invalid one is recorded, and the others are still read.
        field = functools.partial(self.optional, svc, at, spec)
        field("entrypoint", "command", self.command)
        field("command", "args", self.command)
        with self.guard():
            self.environment(svc, at, spec, comments)
        field("labels", "containerLabels", self.pairs)
        deploy: dict[str, Any] = {}
        with self.guard():
            deploy = self.mapping(svc.get("deploy"), (*at, "deploy"))
            self.deploy(deploy, (*at, "deploy"), spec, comments)
        with self.guard():
            self.restart(svc, deploy, at, spec)
        with self.guard():
            self.service_networks(key, svc.get("networks"), (*at, "networks"), spec, comments)
        for section in ("secrets", "configs"):
            field(section, section, functools.partial(self.file_refs, section))
        field("ports", "ports", lambda value, where: self.ports(value, where, comments))
        field("healthcheck", "healthcheck", lambda value, where: self.healthcheck(value, where, comments))
        field("volumes", "mounts", lambda value, where: self.mounts(value, where, comments))
        for compose_key, spec_key in _TEXT_FIELDS:
            field(compose_key, spec_key, self.text)
        field("stop_grace_period", "stopGracePeriod", self.duration)
        field("init", "init", self.boolean)
        with self.guard():
            if svc.get("read_only") is not None and self.boolean(svc["read_only"], (*at, "read_only")):
                spec["readOnly"] = True
        with self.guard():
            self.capabilities(svc, at, spec)
        with self.guard():
            if svc.get("logging") is not None:
                self.logging(svc["logging"], (*at, "logging"), spec, comments)
        field("depends_on", "dependsOn", lambda value, where: self.depends_on(value, where, comments))
        with self.guard():
            self.host_settings(svc, at, spec)
        if len(self.errors) > errors_before:
            raise Invalid(key)
        spec = self.with_own_name("services", key, spec)
        return ImportedObject("SwarmService", name, self.document("SwarmService", name, spec), comments)

    def optional(
        self,
        svc: dict[str, Any],
        at: FieldPath,
        spec: dict[str, Any],
        compose_key: str,
        spec_key: str,
        read: Callable[[Data, FieldPath], Any],
    ) -> None:
        """``spec[spec_key]``, read from the service's ``compose_key`` when that is set."""
        with self.guard():
            if svc.get(compose_key) is not None:
                spec[spec_key] = read(svc[compose_key], (*at, compose_key))

    def untranslated(self, svc: dict[str, Any], comments: list[str]) -> None:
        for k in svc:
            if k in _SERVICE_KEYS or k.startswith("x-"):
                continue
            if k in _NOT_IN_SWARM:
                comments.append(f"{k}: not translated: {_NOT_IN_SWARM[k]}")
            elif k in _NO_FIELD:
                comments.append(f"{k}: not translated: SwarmService has no field for {_NO_FIELD[k]}")
            else:
                comments.append(f"{k}: not translated: not a compose service key swarmkeeper knows")

    def environment(self, svc: dict[str, Any], at: FieldPath, spec: dict[str, Any], comments: list[str]) -> None:
        if svc.get("env_file") is not None:
            files = svc["env_file"]
            paths = []
            for i, item in enumerate(files if isinstance(files, list) else [files]):
                where = (*at, "env_file", i) if isinstance(files, list) else (*at, "env_file")
                if isinstance(item, dict):  # the compose specification's {path, required}
                    item = item.get("path")
                paths.append(self.reference(self.text(item, where)))
            spec["envFile"] = paths
        if svc.get("environment") is None:
            return
        env: dict[str, str] = {}
        for k, v in self.pairs(svc["environment"], (*at, "environment"), allow_none=True).items():
            # As the docker CLI: a variable without a value (or an empty one) takes the value of the
            # same variable where the file is deployed, if it has one there.
            if not v and k in self.variables:
                v = self.variables[k]
            if v is None:
                comments.append(f"environment.{k}: has no value and {k} is not set here; not translated")
                continue
            if not _ENV_NAME.match(k):
                raise self.error((*at, "environment", k), "is not a variable name")
            env[k] = v
        # docker stack deploy sends them sorted as KEY=VALUE strings.
        spec["env"] = dict(sorted(env.items(), key=lambda kv: f"{kv[0]}={kv[1]}"))

    def host_settings(self, svc: dict[str, Any], at: FieldPath, spec: dict[str, Any]) -> None:
        """DNS, /etc/hosts, sysctls, ulimits and the terminal, as the docker CLI converts them."""
        dns = {
            sk_: self.strings(svc[ck], (*at, ck))
            for ck, sk_ in (("dns", "nameservers"), ("dns_search", "search"), ("dns_opt", "options"))
            if svc.get(ck)
        }
        if dns:
            spec["dns"] = dns
        if svc.get("extra_hosts"):
            hosts = svc["extra_hosts"]
            where = (*at, "extra_hosts")
            # A mapping (HOST: IP) is read as the list form "HOST:IP", sorted, as the CLI's loader does.
            pairs = self.pairs(hosts, where) if isinstance(hosts, dict) else None
            spec["extraHosts"] = (
                sorted(f"{k}:{v}" for k, v in pairs.items()) if pairs is not None else self.strings(hosts, where)
            )
        if svc.get("sysctls"):
            spec["sysctls"] = self.pairs(svc["sysctls"], (*at, "sysctls"))
        if svc.get("ulimits"):
            spec["ulimits"] = self.ulimits(self.mapping(svc["ulimits"], (*at, "ulimits")), (*at, "ulimits"))
        for ck, sk_ in (("tty", "tty"), ("stdin_open", "stdinOpen")):
            if svc.get(ck) is not None and self.boolean(svc[ck], (*at, ck)):
                spec[sk_] = True

    def ulimits(self, value: dict[str, Any], at: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, limit in value.items():
            if isinstance(limit, dict):
                out[name] = {
                    "soft": self.integer(limit.get("soft"), (*at, name, "soft"), minimum=-1),
                    "hard": self.integer(limit.get("hard"), (*at, name, "hard"), minimum=-1),
                }
            else:  # one number: soft and hard alike
                single = self.integer(limit, (*at, name), minimum=-1)
                out[name] = {"soft": single, "hard": single}
        return out

    def capabilities(self, svc: dict[str, Any], at: FieldPath, spec: dict[str, Any]) -> None:
        # The docker CLI's EffectiveCapAddCapDrop: CAP_ prefixed, upper case, ALL trumps the rest,
        # adding wins over dropping, both sorted.
        def norm(values: list[str]) -> set[str]:
            out = set()
            for v in values:
                v = v.upper()
                out.add(v if v in ("ALL", "RESET") or v.startswith("CAP_") else "CAP_" + v)
            return out

        add = norm(self.strings(svc["cap_add"], (*at, "cap_add"))) if svc.get("cap_add") else set()
        drop = norm(self.strings(svc["cap_drop"], (*at, "cap_drop"))) if svc.get("cap_drop") else set()
        if "ALL" in add:
            add = {"ALL"}
        if "ALL" in drop:
            drop = {"ALL"}
        cap_add = sorted(c for c in add if c != "RESET")
        cap_drop = sorted(c for c in drop if c not in add and c != "RESET")
        if cap_add:
            spec["capAdd"] = cap_add
        if cap_drop:
            spec["capDrop"] = cap_drop

    def logging(self, value: Data, at: FieldPath, spec: dict[str, Any], comments: list[str]) -> None:
        cfg = self.mapping(value, at)
        if cfg.get("driver") is None:
            comments.append("logging: options without a driver are not translated (swarm needs the driver)")
            return
        driver: dict[str, Any] = {"name": self.text(cfg["driver"], (*at, "driver"))}
        options = self.pairs(cfg.get("options"), (*at, "options"))
        if options:
            driver["options"] = options
        spec["logDriver"] = driver

    def depends_on(self, value: Data, at: FieldPath, comments: list[str]) -> list[str]:
        names: list[str] = []
        items = value.items() if isinstance(value, dict) else [(v, None) for v in self.strings(value, at)]
        for other, cfg in items:
            if other not in self.service_names:
                raise self.error((*at, other), f"names no service of this file: {other}")
            names.append(self.service_names[other])
            if isinstance(cfg, dict):
                condition = cfg.get("condition", "service_started")
                if condition != "service_started":
                    comments.append(
                        f"depends_on.{other}.condition: {condition} has no exact equivalent: dependsOn waits "
                        f"until {self.service_names[other]} has converged (all its tasks running)"
                    )
        return names

    def deploy(self, deploy: dict[str, Any], at: FieldPath, spec: dict[str, Any], comments: list[str]) -> None:
        for k in deploy:
            if k not in _DEPLOY_KEYS and not k.startswith("x-"):
                comments.append(f"deploy.{k}: not translated: not a deploy key swarmkeeper knows")
        if deploy.get("labels") is not None:
            spec["labels"] = self.pairs(deploy["labels"], (*at, "labels"))
        self.deploy_mode(deploy, at, spec)
        if deploy.get("endpoint_mode") is not None:
            self.endpoint_mode(deploy["endpoint_mode"], (*at, "endpoint_mode"), spec)
        if deploy.get("placement") is not None:
            self.placement(self.mapping(deploy["placement"], (*at, "placement")), (*at, "placement"), spec)
        if deploy.get("resources") is not None:
            self.resources(self.mapping(deploy["resources"], (*at, "resources")), (*at, "resources"), spec, comments)
        if deploy.get("restart_policy") is not None:
            where = (*at, "restart_policy")
            spec["restartPolicy"] = self.restart_policy(self.mapping(deploy["restart_policy"], where), where)
        for ck, sk_ in (("update_config", "updateConfig"), ("rollback_config", "rollbackConfig")):
            if deploy.get(ck) is not None:
                spec[sk_] = self.update_config(self.mapping(deploy[ck], (*at, ck)), (*at, ck))

    def deploy_mode(self, deploy: dict[str, Any], at: FieldPath, spec: dict[str, Any]) -> None:
        """deploy.mode, and the replicas it allows."""
        mode = self.text(deploy["mode"], (*at, "mode")) if deploy.get("mode") is not None else "replicated"
        if mode not in ("replicated", "global", "replicated-job", "global-job"):
            raise self.error((*at, "mode"), "must be replicated, global, replicated-job or global-job")
        if mode != "replicated":
            spec["mode"] = mode
        if deploy.get("replicas") is None:
            return
        if mode.startswith("global"):
            raise self.error((*at, "replicas"), f"cannot be set with mode {mode}")
        replicas = self.integer(deploy["replicas"], (*at, "replicas"))
        spec["replicas"] = replicas
        if mode == "replicated-job":
            # docker stack deploy runs a job's replicas all at once (MaxConcurrent = replicas).
            spec["maxConcurrent"] = max(replicas, 1)

    def endpoint_mode(self, value: Data, at: FieldPath, spec: dict[str, Any]) -> None:
        endpoint = self.text(value, at).lower()
        if endpoint not in ("vip", "dnsrr"):
            raise self.error(at, "must be vip or dnsrr")
        if endpoint != "vip":
            spec["endpointMode"] = endpoint

    def restart_policy(self, policy: dict[str, Any], at: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if policy.get("condition") is not None:
            out["condition"] = self.text(policy["condition"], (*at, "condition"))
        for ck, sk_ in (("delay", "delay"), ("window", "window")):
            if policy.get(ck) is not None:
                out[sk_] = self.duration(policy[ck], (*at, ck))
        if policy.get("max_attempts") is not None:
            out["maxAttempts"] = self.integer(policy["max_attempts"], (*at, "max_attempts"))
        return out

    def restart(self, svc: dict[str, Any], deploy: dict[str, Any], at: FieldPath, spec: dict[str, Any]) -> None:
        # The docker CLI falls back to the service's `restart:` when deploy.restart_policy is absent.
        if deploy.get("restart_policy") is not None or svc.get("restart") is None:
            return
        text = self.text(svc["restart"], (*at, "restart"))
        name, _, count = text.partition(":")
        if name in ("no", ""):
            return
        if name in ("always", "unless-stopped"):
            spec["restartPolicy"] = {"condition": "any"}
        elif name == "on-failure":
            attempts = self.integer(count or "0", (*at, "restart"))
            spec["restartPolicy"] = {"condition": "on-failure", "maxAttempts": attempts}
        else:
            raise self.error((*at, "restart"), "must be no, always, on-failure[:N] or unless-stopped")

    def placement(self, p: dict[str, Any], at: FieldPath, spec: dict[str, Any]) -> None:
        out: dict[str, Any] = {}
        if p.get("constraints"):
            out["constraints"] = self.strings(p["constraints"], (*at, "constraints"))
        if p.get("preferences"):
            prefs = []
            for i, pref in enumerate(p["preferences"] if isinstance(p["preferences"], list) else []):
                pref = self.mapping(pref, (*at, "preferences", i))
                prefs.append({"spread": self.text(pref.get("spread"), (*at, "preferences", i, "spread"))})
            out["preferences"] = prefs
        if p.get("max_replicas_per_node") is not None:
            out["maxReplicasPerNode"] = self.integer(p["max_replicas_per_node"], (*at, "max_replicas_per_node"))
        if out:
            spec["placement"] = out

    def cpus(self, value: Data, path: FieldPath) -> str | float:
        text = self.text(value, path)
        try:
            nano = cpus_to_nano(text)
            number = float(Decimal(text))
        except (ValueError, InvalidOperation):
            raise self.error(path, "must be a number of CPUs, like 0.5") from None
        return number if cpus_to_nano(number) == nano else text

    def resources(self, r: dict[str, Any], at: FieldPath, spec: dict[str, Any], comments: list[str]) -> None:
        out: dict[str, Any] = {}
        for section in ("limits", "reservations"):
            if r.get(section) is None:
                continue
            src = self.mapping(r[section], (*at, section))
            amounts: dict[str, Any] = {}
            if src.get("cpus") is not None:
                amounts["cpus"] = self.cpus(src["cpus"], (*at, section, "cpus"))
            if src.get("memory") is not None:
                amounts["memory"] = self.size(src["memory"], (*at, section, "memory"))
            if section == "limits" and src.get("pids") is not None:
                amounts["pids"] = self.integer(src["pids"], (*at, section, "pids"))
            if section == "reservations" and src.get("generic_resources"):
                where = (*at, section, "generic_resources")
                amounts["genericResources"] = self.generic_resources(src["generic_resources"], where, comments)
            known = ("cpus", "memory", "pids" if section == "limits" else "generic_resources")
            for k in src:
                if k not in known:
                    comments.append(f"deploy.resources.{section}.{k}: not translated: SwarmService has no field for it")
            out[section] = amounts
        if out:
            spec["resources"] = out

    def generic_resources(self, value: Data, at: FieldPath, comments: list[str]) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.error(at, "must be a list")
        out = []
        for i, item in enumerate(value):
            spec = self.mapping(self.mapping(item, (*at, i)).get("discrete_resource_spec"), (*at, i))
            if not spec:
                comments.append(
                    f"deploy.resources.reservations.generic_resources[{i}]: only discrete resources are translated"
                )
                continue
            where = (*at, i, "discrete_resource_spec")
            kind = self.text(spec.get("kind"), (*where, "kind"))
            out.append({"kind": kind, "value": self.integer(spec.get("value"), (*where, "value"))})
        return out

    def update_config(self, u: dict[str, Any], at: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if u.get("parallelism") is not None:
            out["parallelism"] = self.integer(u["parallelism"], (*at, "parallelism"))
        for ck, sk_ in (("delay", "delay"), ("monitor", "monitor")):
            if u.get(ck) is not None:
                out[sk_] = self.duration(u[ck], (*at, ck))
        if u.get("failure_action") is not None:
            out["failureAction"] = self.text(u["failure_action"], (*at, "failure_action"))
        if u.get("max_failure_ratio") is not None:
            out["maxFailureRatio"] = self.number(u["max_failure_ratio"], (*at, "max_failure_ratio"))
        if u.get("order") is not None:
            out["order"] = self.text(u["order"], (*at, "order"))
        return out

    def healthcheck(self, value: Data, at: FieldPath, comments: list[str]) -> dict[str, Any]:
        hc = self.mapping(value, at)
        out: dict[str, Any] = {}
        if hc.get("disable") is not None and self.boolean(hc["disable"], (*at, "disable")):
            if hc.get("test"):
                raise self.error((*at, "disable"), "test and disable cannot be set together")
            return {"test": ["NONE"]}
        if hc.get("test") is not None:
            test = hc["test"]
            out["test"] = ["CMD-SHELL", test] if isinstance(test, str) else self.strings(test, (*at, "test"))
        for ck, sk_ in (("interval", "interval"), ("timeout", "timeout"), ("start_period", "startPeriod")):
            if hc.get(ck) is not None:
                out[sk_] = self.duration(hc[ck], (*at, ck))
        if hc.get("retries") is not None:
            out["retries"] = self.integer(hc["retries"], (*at, "retries"))
        if hc.get("start_interval") is not None:
            comments.append("healthcheck.start_interval: not translated: SwarmService has no field for it")
        return out

    def service_networks(
        self, service: str, value: Data, at: FieldPath, spec: dict[str, Any], comments: list[str]
    ) -> None:
        entries: list[tuple[str, dict[str, Any]]] = []
        if value is None:
            entries = [("default", {})]
        elif isinstance(value, list):
            entries = [(self.text(v, (*at, i)), {}) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            entries = [(k, self.mapping(v, (*at, k))) for k, v in value.items()]
        else:
            raise self.error(at, "must be a list of network names or a mapping")
        if not entries:
            entries = [("default", {})]
        attachments: list[tuple[str, dict[str, Any]]] = []
        for key, cfg in entries:
            top = self.top["networks"].get(key)
            if top is None and key != "default":
                raise self.error((*at, key), f"names no network of this file: {key}")
            aliases = self.strings(cfg["aliases"], (*at, key, "aliases")) if cfg.get("aliases") else []
            for k in cfg:
                if k != "aliases":
                    comments.append(f"networks.{key}.{k}: not translated: not supported by swarm services")
            attachment: dict[str, Any]
            external = self.external_name("networks", key) if top is not None else None
            if external is not None:
                target = external
                attachment = {"name": target, "external": True}
            else:
                net_name = spec_name(key)
                self.used_networks.setdefault(key, net_name)
                target = self.real_name("networks", key)
                attachment = {"name": net_name}
            if aliases:
                attachment["aliases"] = aliases
            attachments.append((target, attachment))
        # docker stack deploy sorts attachments by the network's swarm name.
        spec["networks"] = [a for _, a in sorted(attachments, key=lambda t: t[0])]

    def file_refs(self, section: str, value: Data, at: FieldPath) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.error(at, "must be a list")
        refs: list[tuple[str, dict[str, Any]]] = []
        for i, item in enumerate(value):
            where = (*at, i)
            ref = {"source": item} if isinstance(item, str) else self.mapping(item, where)
            source = self.text(ref.get("source"), (*where, "source"))
            if source not in self.top[section]:
                raise self.error((*where, "source"), f"names no {section[:-1]} of this file: {source}")
            external = self.external_name(section, source)
            name = external or spec_name(source)
            target = self.text(ref["target"], (*where, "target")) if ref.get("target") else source
            out: dict[str, Any] = {"source": name}
            if external is not None:  # used as it is, like docker stack deploy does
                out["external"] = True
            if target != name:
                out["target"] = target
            for k in ("uid", "gid"):
                if ref.get(k) is not None and self.text(ref[k], (*where, k)) != "0":
                    out[k] = self.text(ref[k], (*where, k))
            if ref.get("mode") is not None:
                mode = ref["mode"]
                if isinstance(mode, str) and mode.isdigit():  # interpolated: read as YAML 1.1 would
                    mode = int(mode, 8) if mode.startswith("0") else int(mode)
                mode = self.integer(mode, (*where, "mode"))
                if mode > 0o777:
                    raise self.error((*where, "mode"), "must be a file mode, like 0400")
                if mode != 0o444:
                    out["mode"] = f"0{mode:03o}"
            # The docker CLI sorts by the swarm object's name: the stack's own, or an external name.
            refs.append((self.real_name(section, source), out))
        return [r for _, r in sorted(refs, key=lambda t: t[0])]

    def ports(self, value: Data, at: FieldPath, comments: list[str]) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.error(at, "must be a list")
        ports: list[dict[str, Any]] = []
        for i, item in enumerate(value):
            where = (*at, i)
            if isinstance(item, dict):
                entry: dict[str, Any] = {"target": self.integer(item.get("target"), (*where, "target"), minimum=1)}
                if item.get("published") is not None:
                    entry["published"] = self.integer(item["published"], (*where, "published"), minimum=1)
                if item.get("protocol") is not None:
                    entry["protocol"] = self.text(item["protocol"], (*where, "protocol"))
                if item.get("mode") is not None:
                    entry["mode"] = self.text(item["mode"], (*where, "mode"))
                if item.get("host_ip"):
                    comments.append(f"ports[{i}].host_ip: not translated: swarm publishes on every address")
                ports.append(entry)
            else:
                ports += self.short_port(self.text(item, where), where, comments)
        for p in ports:
            if p.get("protocol") == "tcp":
                del p["protocol"]
            if p.get("mode") == "ingress":
                del p["mode"]
        # docker stack deploy sorts ports by published port (unpublished first).
        return sorted(ports, key=lambda p: p.get("published", 0))

    def short_port(self, text: str, at: FieldPath, comments: list[str]) -> list[dict[str, Any]]:
        spec, _, protocol = text.partition("/")
        parts = spec.rsplit(":", 2)
        ip, host, container = ("", "", parts[-1]) if len(parts) == 1 else ("", *parts) if len(parts) == 2 else parts
        if ip:
            comments.append(f"ports: {text}: the address {ip} is not translated: swarm publishes on every address")

        def port_range(value: str) -> tuple[int, int]:
            low, dash, high = value.partition("-")
            try:
                start, end = int(low), int(high) if dash else int(low)
            except ValueError:
                raise self.error(at, f"invalid port {value!r}: write [[ip:]published:]target[/protocol]") from None
            if not 1 <= start <= end <= 65535:
                raise self.error(at, f"invalid port range {value!r}")
            return start, end

        first, last = port_range(container)
        published: list[int | None] = [None] * (last - first + 1)
        if host:
            h_first, h_last = port_range(host)
            if h_last - h_first != last - first:
                raise self.error(at, "published and target port ranges must have the same length")
            published = list(range(h_first, h_last + 1))
        out = []
        for target, pub in zip(range(first, last + 1), published, strict=True):
            entry: dict[str, Any] = {"target": target}
            if pub is not None:
                entry["published"] = pub
            if protocol:
                entry["protocol"] = protocol
            out.append(entry)
        return out

    def mounts(self, value: Data, at: FieldPath, comments: list[str]) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.error(at, "must be a list")
        out = []
        for i, item in enumerate(value):
            where = (*at, i)
            vol = self.short_volume(self.text(item, where), where, comments) if isinstance(item, str) else item
            out.append(self.mount(self.mapping(vol, where), where, comments))
        return out

    def short_volume(self, text: str, at: FieldPath, comments: list[str]) -> dict[str, Any]:
        parts = text.split(":")
        if len(parts) == 1:
            return {"type": "volume", "target": parts[0]}
        if len(parts) > 3:
            raise self.error(at, "must be [source:]target[:mode]")
        source, target = parts[0], parts[1]
        vol: dict[str, Any] = {
            "type": "bind" if source[:1] in (".", "/", "~") else "volume",
            "source": source,
            "target": target,
        }
        for opt in parts[2].split(",") if len(parts) == 3 else []:
            if opt == "ro":
                vol["read_only"] = True
            elif opt == "nocopy" and vol["type"] == "volume":
                vol["volume"] = {"nocopy": True}
            elif opt != "rw":
                comments.append(f"volumes: {text}: the option {opt} is not translated")
        return vol

    def mount(self, vol: dict[str, Any], at: FieldPath, comments: list[str]) -> dict[str, Any]:
        kind = self.text(vol.get("type", "volume"), (*at, "type"))
        if kind not in ("volume", "bind", "tmpfs"):
            raise self.error((*at, "type"), f"mounts of type {kind} are not supported")
        target = self.text(vol.get("target"), (*at, "target"))
        out: dict[str, Any] = {"type": kind, "source": None, "target": target}  # keys in reading order
        source = self.text(vol["source"], (*at, "source")) if vol.get("source") else None
        if vol.get("read_only") is not None and self.boolean(vol["read_only"], (*at, "read_only")):
            out["readOnly"] = True
        for k in ("consistency", "image", "cluster"):
            if vol.get(k):
                comments.append(f"volumes: {target}: {k} is not translated: SwarmService has no field for it")
        if kind == "bind":
            out["source"] = self.bind_source(source, at)
            bind = self.mapping(vol.get("bind"), (*at, "bind"))
            if bind.get("propagation"):
                out["bindPropagation"] = self.text(bind["propagation"], (*at, "bind", "propagation"))
        elif kind == "tmpfs":
            tmpfs = self.mapping(vol.get("tmpfs"), (*at, "tmpfs"))
            if tmpfs.get("size") is not None:
                out["tmpfsSize"] = self.size(tmpfs["size"], (*at, "tmpfs", "size"))
        elif source:
            self.named_volume(source, vol, at, out, comments)
        if out["source"] is None:
            del out["source"]
        return out

    def bind_source(self, source: str | None, at: FieldPath) -> str:
        if not source:
            raise self.error((*at, "source"), "a bind mount needs a source")
        if source.startswith("~") and "HOME" in self.variables:
            source = self.variables["HOME"] + source[1:]
        if not os.path.isabs(source):
            # As the docker CLI: relative to the compose file's folder, made absolute.
            source = os.path.normpath(self.compose_dir / source)
        return source

    def named_volume(
        self, source: str, vol: dict[str, Any], at: FieldPath, out: dict[str, Any], comments: list[str]
    ) -> None:
        top = self.top["volumes"].get(source)
        if top is None:
            raise self.error((*at, "source"), f"names no volume of this file: {source}")
        options: dict[str, Any] = {}
        nocopy = self.mapping(vol.get("volume"), (*at, "volume")).get("nocopy")
        if nocopy is not None and self.boolean(nocopy, (*at, "volume", "nocopy")):
            options["noCopy"] = True
        external = self.external_name("volumes", source)
        if external is not None:
            out["source"] = external
        else:
            own = self.text(top["name"], ("volumes", source, "name")) if top.get("name") else None
            out["source"] = own or self.swarm_name(source)
            labels = self.pairs(top.get("labels"), ("volumes", source, "labels"))
            if self.namespace:
                labels[L.STACK_NAMESPACE] = self.namespace
            if labels:
                options["labels"] = labels
            if top.get("driver"):
                options["driver"] = self.text(top["driver"], ("volumes", source, "driver"))
                if top.get("driver_opts"):
                    options["driverOptions"] = self.pairs(top["driver_opts"], ("volumes", source, "driver_opts"))
            elif top.get("driver_opts"):
                comments.append(f"volumes.{source}.driver_opts: not translated without a driver")
        if options:
            out["volume"] = options
