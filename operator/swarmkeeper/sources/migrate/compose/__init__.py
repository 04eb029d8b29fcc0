"""A compose file → swarmkeeper specs, translated the way ``docker stack deploy`` translates it.

The goal is equality, not resemblance: applied under the same namespace, the specs build the
service specs that ``docker stack deploy -c FILE NAMESPACE`` (docker CLI 20.10) creates, field for
field, so a running stack can be adopted without restarting a task. That is why lists are sorted
the way the CLI sorts them, the ``default`` network appears when a service names none, and named
volumes carry the stack label. Whatever has no equivalent becomes a comment on the object and a
note for the user; nothing is dropped silently.

Pure: the caller reads the compose file and chooses the variables. Nothing here reads another file,
looks at the process environment or talks to an engine. Secret values are not read here: specs
refer to the files the compose file names (the writer copies them into the specs folder). Errors
name file, line and field, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ....api import RESOURCE_ADAPTER
from ....loading import SpecError
from ....loading.discovery import ROOT_MARKER
from ....loading.fieldpath import FieldPath
from ..export import spec_name
from .fields import Invalid
from .reading import MAX_COMPOSE_BYTES, read_compose
from .result import ImportedObject, ImportResult
from .services import Services

__all__ = ["MAX_COMPOSE_BYTES", "ImportResult", "ImportedObject", "import_compose"]


def import_compose(
    text: str,
    file: Path,
    *,
    overrides: Sequence[tuple[str, Path]] = (),
    variables: Mapping[str, str],
    namespace: str | None = None,
    specs_dir: Path | None = None,
) -> ImportResult:
    """The specs for the compose file ``text`` (read from ``file``), with ``overrides`` (text, file)
    merged over it as ``docker stack deploy -c FILE -c OVERRIDE ...`` merges them.

    ``variables`` are what ``${VAR}`` expands to. File references (secret and config files,
    ``env_file``) are written relative to ``specs_dir``, where the specs will live (the compose
    file's folder when None); bind mount sources become absolute, as the docker CLI makes them.
    Relative paths in every file are relative to the first file's folder, as for the docker CLI.
    """
    parsed = []
    errors: list[SpecError] = []
    for t, f in [(text, file), *overrides]:
        data, positions, problems = read_compose(t, f)
        errors += problems
        parsed.append((f, data, positions))
    if errors:
        return ImportResult([], [], errors)
    if overrides:
        from .merging import merge_compose

        data, placed = merge_compose(parsed)
    else:
        data, placed = parsed[0][1], {path: (file, at) for path, at in parsed[0][2].items()}
    base = Path(os.path.abspath(file)).parent
    translator = _Translator(file, placed, namespace, Path(os.path.abspath(specs_dir or base)), base, variables)
    objects = translator.translate(data)
    notes = list(translator.notes)
    if translator.interpolate.unset:
        names = ", ".join(sorted(translator.interpolate.unset))
        notes.append(f"variables not set, replaced by an empty string: {names}")
    if translator.interpolate.substituted:
        names = ", ".join(sorted(translator.interpolate.substituted))
        notes.append(
            f"the values of {names} are written into the specs, as docker stack deploy writes them into the "
            "services: review the files before committing them"
        )
    specs = Path(os.path.abspath(specs_dir or base))
    common = Path(os.path.commonpath([specs, *translator.referenced]))
    root: Path | None = common
    errors = translator.errors
    if common == specs:
        root = None  # every file named is inside the specs' own folder
    elif common == Path(common.anchor):
        root = None
        notes.append(_NO_COMMON_ROOT)
    else:
        notes.append(
            f"the specs name files outside their folder: {root} is marked as the root of their spec tree "
            f"({ROOT_MARKER}), so swarmkeeper reads them there and nowhere above it"
        )
    return ImportResult(objects, notes, errors, root)


_NO_COMMON_ROOT = (
    "the specs name files outside their folder, with no folder in common but the file system's root: "
    "swarmkeeper reads files only inside a spec tree, so write the specs into a folder beside the compose file"
)


class _Translator(Services):
    """The file as a whole: its services, and the networks, secrets and configs they use."""

    def translate(self, raw: dict[str, Any]) -> list[ImportedObject]:
        data = {k: self.expand(v, (k,)) for k, v in raw.items() if not k.startswith("x-")}
        for key in data:
            if key not in ("version", "name", "services", "networks", "volumes", "secrets", "configs"):
                self.notes.append(f"{key}: not a compose key swarmkeeper knows; not translated")
        services = data.get("services")
        if not isinstance(services, dict) or not services:
            self.error(("services",), "a compose file needs services (a mapping of service names)")
            return []
        for section in ("networks", "volumes", "secrets", "configs"):
            try:
                self.top[section] = {
                    k: self.mapping(v, (section, k)) for k, v in self.mapping(data.get(section), (section,)).items()
                }
            except Invalid:
                self.top[section] = {}
        self.name_services(services)
        objects: list[ImportedObject] = []
        service_objects = []
        for key, value in services.items():
            try:
                service_objects.append(self.service(key, self.mapping(value, ("services", key))))
            except Invalid:
                continue
        objects += self.networks()
        objects += self.values("secrets", "SwarmSecret")
        objects += self.values("configs", "SwarmConfig")
        objects += service_objects
        for obj in objects:
            self.check(obj)
        return objects

    def name_services(self, services: dict[str, Any]) -> None:
        """The spec name of each service; two that would get the same one are an error."""
        for key in services:
            self.service_names[key] = spec_name(key)
        taken: dict[str, str] = {}
        for key, name in self.service_names.items():
            if name in taken:
                self.error(("services", key), f"becomes the name {name}, like services.{taken[name]}: rename one")
            taken[name] = key

    def check(self, obj: ImportedObject) -> None:
        """Every object must load as a spec; a failure here is a value swarmkeeper cannot take."""
        try:
            RESOURCE_ADAPTER.validate_python(obj.document)
        except ValidationError as exc:
            section = {"SwarmNetwork": "networks", "SwarmSecret": "secrets", "SwarmConfig": "configs"}
            where = section.get(obj.kind, "services")
            key = next((k for k, v in self._keys(where).items() if v == obj.name), obj.name)
            for detail in exc.errors(include_url=False, include_input=False):
                loc = ".".join(str(p) for p in detail["loc"][1:])
                self.error((where, key), f"cannot be translated ({loc}: {detail['msg']})")

    def _keys(self, section: str) -> dict[str, str]:
        if section == "services":
            return self.service_names
        return {k: spec_name(k) for k in self.top.get(section, {})}

    def networks(self) -> list[ImportedObject]:
        """A SwarmNetwork for each network a service uses; a note for each one none uses."""
        for key in self.top["networks"]:
            if self.external_name("networks", key) is None and key not in self.used_networks:
                self.notes.append(
                    f"networks.{key}: used by no service; not translated (docker stack deploy does not create it)"
                )
        out = []
        for key, name in self.used_networks.items():
            with self.guard():
                out.append(self.network(key, name))
        return out

    def network(self, key: str, name: str) -> ImportedObject:
        cfg = self.top["networks"].get(key, {})
        comments: list[str] = []
        self.named("networks", key, comments)  # the same name, and the comment when it is another
        spec = self.with_own_name("networks", key, self.network_spec(cfg, ("networks", key), comments))
        for k in cfg:
            if k not in ("driver", "attachable", "internal", "driver_opts", "labels", "ipam", "name", "external"):
                comments.append(f"networks.{key}.{k}: not translated: SwarmNetwork has no field for it")
        return ImportedObject("SwarmNetwork", name, self.document("SwarmNetwork", name, spec), comments)

    def network_spec(self, cfg: dict[str, Any], at: FieldPath, comments: list[str]) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        driver = self.text(cfg["driver"], (*at, "driver")) if cfg.get("driver") else "overlay"
        if driver != "overlay":
            spec["driver"] = driver
        for ck, sk_ in (("attachable", "attachable"), ("internal", "internal")):
            if cfg.get(ck) is not None and self.boolean(cfg[ck], (*at, ck)):
                spec[sk_] = True
        if cfg.get("driver_opts"):
            spec["options"] = self.pairs(cfg["driver_opts"], (*at, "driver_opts"))
        if cfg.get("labels"):
            spec["labels"] = self.pairs(cfg["labels"], (*at, "labels"))
        if cfg.get("ipam"):
            spec["ipam"] = self.ipam(self.mapping(cfg["ipam"], (*at, "ipam")), (*at, "ipam"), comments)
        return spec

    def ipam(self, ipam: dict[str, Any], at: FieldPath, comments: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if ipam.get("driver"):
            out["driver"] = self.text(ipam["driver"], (*at, "driver"))
        pools = []
        for i, pool in enumerate(ipam.get("config") or []):
            pool = self.mapping(pool, (*at, "config", i))
            entry: dict[str, Any] = {"subnet": self.text(pool.get("subnet"), (*at, "config", i, "subnet"))}
            if pool.get("gateway"):
                entry["gateway"] = self.text(pool["gateway"], (*at, "config", i, "gateway"))
            if pool.get("ip_range"):
                entry["ipRange"] = self.text(pool["ip_range"], (*at, "config", i, "ip_range"))
            pools.append(entry)
        if pools:
            out["config"] = pools
        if ipam.get("options"):
            comments.append("ipam.options: not translated: docker stack deploy does not pass them either")
        return out

    def values(self, section: str, kind: str) -> list[ImportedObject]:
        out = []
        for key, cfg in self.top[section].items():
            at: FieldPath = (section, key)
            comments: list[str] = []
            try:
                if self.external_name(section, key) is not None:
                    continue  # services name it with external: true; swarmkeeper leaves it alone
                name = self.named(section, key, comments)
                spec: dict[str, Any] = {}
                if cfg.get("file") is not None:
                    spec["file"] = self.reference(self.text(cfg["file"], (*at, "file")))
                elif cfg.get("environment") is not None:
                    spec["env"] = self.text(cfg["environment"], (*at, "environment"))
                elif section == "configs" and cfg.get("content") is not None:
                    spec["stringData"] = self.text(cfg["content"], (*at, "content"))
                else:
                    raise self.error(at, "needs file:, environment: or external: true")
                if cfg.get("labels"):
                    spec["labels"] = self.pairs(cfg["labels"], (*at, "labels"))
                if cfg.get("template_driver") is not None:
                    spec["templateDriver"] = self.text(cfg["template_driver"], (*at, "template_driver"))
                for k in cfg:
                    if k in ("driver", "driver_opts"):
                        comments.append(f"{section}.{key}.{k}: not translated: {kind} has no field for it")
            except Invalid:
                continue
            spec = self.with_own_name(section, key, spec)
            out.append(ImportedObject(kind, name, self.document(kind, name, spec), comments))
        return out
