"""Several compose files made one, as ``docker stack deploy -c base.yml -c override.yml`` makes them.

A stack deployed from a base file and overrides is only reproduced if the files are combined the way
the docker CLI 20.10 combines them (``cli/compose/loader/merge.go``: mergo with WithOverride and
WithAppendSlice, plus a few special cases). Those rules are not the plain "the override wins" one might
guess, so each one here is docker's, key by key: in 20.10 ``command``, ``entrypoint``, ``volumes``
and ``healthcheck.test`` are appended, a zero value (``replicas: 0``, ``read_only: false``, ``0s``)
never overrides, and ports are merged by published port alone.

Docker merges the structs it built from each file; here the files are raw YAML data, so the keys
docker merges by are computed from the short and the long syntax alike, and every item keeps the
form it was written in (the translation parses it later). Keys are read before interpolation: an
item written with a ``${VARIABLE}`` in its key is never merged with another one.

Pure: no file is read and no environment looked at. Every value carries the file and the line it
came from, so an error on a merged field names the file that set it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from ....loading import SpecError, SpecLoadError
from ....loading.fieldpath import FieldPath, Position
from .reading import Data

__all__ = ["merge_compose"]

Where: TypeAlias = tuple[Path, Position]


@dataclass(slots=True)
class _Node:
    """A value and where its key (or list item) was written; mappings and lists hold nodes."""

    value: Any
    at: Where | None


Rule: TypeAlias = Callable[[_Node, _Node], _Node]
"""How a key set in both files merges: (base, override) → result. Neither value is None."""

_Key: TypeAlias = tuple[int, int | str]
"""The key a list item is merged by: (0, key), or (1, index) for an item docker could not read."""


def merge_compose(
    files: Sequence[tuple[Path, Data, dict[FieldPath, Position]]],
) -> tuple[Data, dict[FieldPath, tuple[Path, Position]]]:
    """The merged document, and for each field path where it was last written: (file, (line, column)).

    ``files`` are (path, top-level mapping, positions) as ``reading.read_compose`` gives them, base
    first. Raises SpecLoadError when the files' versions differ: docker stack deploy refuses them.
    """
    if not files:
        raise ValueError("no compose file to merge")
    _check_versions(files)
    merged = _wrap(files[0][1], (), files[0][0], files[0][2])
    for path, data, positions in files[1:]:
        merged = _merge_documents(merged, _wrap(data, (), path, positions))
    if len(files) > 1:
        _sort_services(merged)
    where: dict[FieldPath, Where] = {}
    return _unwrap(merged, (), where), where


# -- values with their place -----------------------------------------------------------------------
def _wrap(data: Data, path: FieldPath, file: Path, positions: Mapping[FieldPath, Position]) -> _Node:
    found = positions.get(path)
    at = None if found is None else (file, found)
    if isinstance(data, dict):
        return _Node({k: _wrap(v, (*path, k), file, positions) for k, v in data.items()}, at)
    if isinstance(data, list):
        return _Node([_wrap(v, (*path, i), file, positions) for i, v in enumerate(data)], at)
    return _Node(data, at)


def _unwrap(node: _Node, path: FieldPath, where: dict[FieldPath, Where]) -> Data:
    if node.at is not None:
        where[path] = node.at
    if isinstance(node.value, dict):
        return {k: _unwrap(v, (*path, k), where) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [_unwrap(v, (*path, i), where) for i, v in enumerate(node.value)]
    return node.value


def _text(value: Any) -> str:
    """A scalar as Go's ``fmt.Sprint`` writes it (docker's keys and versions are made that way)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


# -- the file as a whole (merge, Load in loader.go) ------------------------------------------------
_SECTIONS = ("networks", "volumes", "secrets", "configs")


def _version(data: Data) -> str:
    """schema.Version: the file's version, 1.0 without one, and "3" read as "3.0"."""
    if not isinstance(data, dict) or "version" not in data:
        return "1.0"
    text = "<nil>" if data["version"] is None else _text(data["version"])
    return "3.0" if text == "3" else text


def _check_versions(files: Sequence[tuple[Path, Data, dict[FieldPath, Position]]]) -> None:
    first = _version(files[0][1])
    for path, data, positions in files[1:]:
        if _version(data) != first:
            line, column = positions.get(("version",)) or (None, None)
            message = f"differs from the version of {files[0][0]}: docker stack deploy needs the same one in every file"
            raise SpecLoadError([SpecError(message, file=path, line=line, column=column, field="version")])


def _merge_documents(base: _Node, over: _Node) -> _Node:
    out = dict(base.value)
    for key, node in over.value.items():
        if key == "services":
            out[key] = _merge_services(out.get(key), node)
        elif key in _SECTIONS:
            out[key] = _merge_section(out.get(key), node)
        elif key not in out and key != "version" and not key.startswith("x-"):
            # merge() keeps the first file's Config for all but the five sections (its x- keys too);
            # any other key is one docker's schema refuses, kept so that the translation notes it.
            out[key] = node
    return _Node(out, base.at)


def _merge_section(base: _Node | None, over: _Node) -> _Node:
    """Top-level networks, volumes, secrets, configs: mergo.Map WithOverride, so a name defined in
    both files is the override's definition, whole (even an empty one), never a mix of the two."""
    if base is None or base.value is None:
        return over
    if over.value is None or not isinstance(base.value, dict):
        return base
    if not isinstance(over.value, dict):
        return over
    return _Node({**base.value, **over.value}, over.at)


def _merge_services(base: _Node | None, over: _Node) -> _Node:
    """mergeServices: by name; a service only in the override is added as it is."""
    if base is None or base.value is None:
        return over
    if over.value is None or not isinstance(base.value, dict):
        return base
    if not isinstance(over.value, dict):
        return over
    out = dict(base.value)
    for name, node in over.value.items():
        out[name] = _merge_service(out[name], node) if name in out else node
    return _Node(out, over.at)


def _sort_services(document: _Node) -> None:
    # mergeServices returns the services sorted by name.
    services = document.value.get("services")
    if services is not None and isinstance(services.value, dict):
        services.value = dict(sorted(services.value.items()))


def _merge_service(base: _Node, over: _Node) -> _Node:
    if not isinstance(base.value, dict):
        return base  # a value docker refuses stays, so that the translation reports it
    if not isinstance(over.value, dict):
        return over
    merged = _merge_fields(base, over, _SERVICE)
    for key, rule in _KEYED.items():
        # mergo calls the slice transformers on every non-empty base list, so these are keyed and
        # sorted whenever the service is merged, even when the override does not set them.
        old, new = base.value.get(key), over.value.get(key)
        if old is not None and old.value and (new is None or new.value is None):
            merged.value[key] = rule(old, _Node([], None))
    return merged


# -- mergo.Merge(WithOverride, WithAppendSlice) on a struct ----------------------------------------
def _merge_fields(base: _Node, over: _Node, rules: Mapping[str, Rule]) -> _Node:
    """Field by field: a field the override leaves out (or null) keeps the base's value, one only
    the override sets is taken as it is, one set in both merges by its rule."""
    if not isinstance(base.value, dict):
        return base
    if not isinstance(over.value, dict):
        return over
    out = dict(base.value)
    for key, node in over.value.items():
        old = out.get(key)
        if old is None or old.value is None:
            out[key] = node
        elif node.value is not None:
            out[key] = _rule(rules, key)(old, node)
    return _Node(out, over.at)


def _rule(rules: Mapping[str, Rule], key: str) -> Rule:
    if key in rules:
        return rules[key]
    # Keys docker does not know fail its schema validation; the override's value is kept for the
    # translation to note.
    return _extras if key.startswith("x-") else _replace


def _struct(rules: Mapping[str, Rule]) -> Rule:
    def rule(base: _Node, over: _Node) -> _Node:
        return _merge_fields(base, over, rules)

    return rule


def _replace(base: _Node, over: _Node) -> _Node:
    return over


def _unless(empty: Callable[[Any], bool]) -> Rule:
    """A scalar: mergo sets a field only from a non-empty value, so an empty or zero override
    (``""``, ``false``, ``0``, ``0s``) leaves the base's value in place."""

    def rule(base: _Node, over: _Node) -> _Node:
        return base if empty(over.value) else over

    return rule


_FALSE = frozenset({"false", "no", "n", "off", ""})


def _no_text(value: Any) -> bool:
    return value is None or value == ""


def _no_bool(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, str) and value.lower() in _FALSE)


def _no_number(value: Any) -> bool:
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        try:
            return float(value) == 0
        except ValueError:
            return value == ""
    return value is None


def _no_amount(value: Any) -> bool:
    """A duration or a size that is zero: ``0``, ``0s``, ``0m``, ``0h0m``."""
    if isinstance(value, str):
        return value == "" or ("0" in value and re.search(r"[1-9]", value) is None)
    return _no_number(value)


_TEXT = _unless(_no_text)
_BOOL = _unless(_no_bool)
_NUMBER = _unless(_no_number)
_AMOUNT = _unless(_no_amount)


# -- lists that mergo appends ----------------------------------------------------------------------
def _appended(items: Callable[[_Node], list[_Node] | None]) -> Rule:
    """WithAppendSlice: the base's items, then the override's (duplicates stay)."""

    def rule(base: _Node, over: _Node) -> _Node:
        old = items(base)
        if old is None:
            return base
        new = items(over)
        if new is None:
            return over
        return _Node(old + new, over.at)

    return rule


def _strings(node: _Node) -> list[_Node] | None:
    """A list, or one string (StringList)."""
    if isinstance(node.value, list):
        return list(node.value)
    if isinstance(node.value, str):
        return [_Node(node.value, node.at)]
    return None


def _words(node: _Node) -> list[_Node] | None:
    """A ShellCommand: a string is split into words before docker merges it."""
    if isinstance(node.value, str):
        try:
            return [_Node(word, node.at) for word in shlex.split(node.value)]
        except ValueError:
            return None
    return _strings(node)


def _test(node: _Node) -> list[_Node] | None:
    """A healthcheck test: a string is ``CMD-SHELL string`` (transformHealthCheckTest)."""
    if isinstance(node.value, str):
        return [_Node("CMD-SHELL", node.at), _Node(node.value, node.at)]
    return _strings(node)


def _hosts(node: _Node) -> list[_Node] | None:
    """A HostsList: a mapping is ``host:ip`` strings, sorted, those without an address left out."""
    if isinstance(node.value, dict):
        pairs = [(f"{k}:{_text(v.value)}", v.at) for k, v in node.value.items() if v.value is not None]
        return [_Node(text, at) for text, at in sorted(pairs, key=lambda p: p[0])]
    return _strings(node) if isinstance(node.value, list) else None


_APPEND = _appended(_strings)


# -- mappings merged key by key --------------------------------------------------------------------
def _pairs(node: _Node, *, allow_none: bool) -> dict[str, _Node] | None:
    """A mapping, or ``KEY=VALUE`` strings as one (``KEY`` alone: None, or "" where docker has no nil)."""
    if isinstance(node.value, dict):
        return dict(node.value)
    if not isinstance(node.value, list):
        return None
    out: dict[str, _Node] = {}
    for item in node.value:
        key, eq, rest = _text(item.value).partition("=")
        out[key] = _Node(rest if eq else (None if allow_none else ""), item.at)
    return out


def _labels(base: _Node, over: _Node) -> _Node:
    """map[string]string (labels, sysctls, options) and ulimits: the override wins for each key it
    sets, even with an empty value."""
    old = _pairs(base, allow_none=False)
    if old is None:
        return base
    new = _pairs(over, allow_none=False)
    if new is None:
        return over
    return _Node({**old, **new}, over.at)


def _environment(base: _Node, over: _Node) -> _Node:
    """MappingWithEquals (environment, build args) is map[string]*string: mergo replaces a pointer
    only where the base's is empty, and writes through one only a non-empty value. So a variable
    the override leaves without a value (``FOO`` or ``FOO=``) keeps the base's value.

    Docker fills such a variable from the deploying shell before it merges; this merge sees no
    shell, so where the shell sets FOO, docker ends with the shell's value and this with the base's.
    """
    old = _pairs(base, allow_none=True)
    if old is None:
        return base
    new = _pairs(over, allow_none=True)
    if new is None:
        return over
    out = dict(old)
    for key, node in new.items():
        kept = out.get(key)
        if kept is not None and _no_text(node.value) and not _no_text(kept.value):
            continue
        out[key] = node
    return _Node(out, over.at)


# -- lists merged by a key (mergeSlice) ------------------------------------------------------------
def _keyed(keys: Callable[[_Node, int], list[tuple[_Key, _Node]]]) -> Rule:
    """mergeSlice: items by key, a later one replacing an earlier one whole (within one file too),
    then sorted by key. Only on a non-empty base list: mergo calls no transformer on an empty one."""

    def rule(base: _Node, over: _Node) -> _Node:
        if not isinstance(base.value, list):
            return base
        if not isinstance(over.value, list):
            return over
        if not base.value:
            return over
        merged: dict[_Key, _Node] = {}
        for index, item in enumerate(base.value + over.value):
            for key, node in keys(item, index):
                merged[key] = node
        return _Node([merged[k] for k in sorted(merged)], over.at or base.at)

    return rule


def _source_keys(item: _Node, index: int) -> list[tuple[_Key, _Node]]:
    """Secrets and configs merge by source; a bare string is the source (transformStringSourceMap)."""
    if isinstance(item.value, str):
        return [((0, item.value), item)]
    if isinstance(item.value, dict):
        source = item.value.get("source")
        return [((0, _text(None if source is None else source.value)), item)]
    return [((1, index), item)]


def _port_keys(item: _Node, index: int) -> list[tuple[_Key, _Node]]:
    """Ports merge by published port alone (toServicePortConfigsMap): the protocol is not part of
    the key, and every unpublished port has the key 0. A short range is one item per port."""
    value = item.value
    if isinstance(value, dict):
        published = value.get("published")
        number = _port(_text(published.value)) if published is not None and published.value is not None else 0
        return [((0, number), item)] if number is not None else [((1, index), item)]
    if isinstance(value, int) and not isinstance(value, bool):
        return [((0, 0), item)]
    ports = _short_port(value) if isinstance(value, str) else None
    if ports is None:
        return [((1, index), item)]
    if len(ports) == 1:
        return [((0, ports[0][0]), item)]
    return [((0, published), _Node(text, item.at)) for published, text in ports]


def _port(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[0-9]+", text) and int(text) <= 65535 else None


def _port_range(text: str) -> tuple[int, int] | None:
    """nat.ParsePortRange: ``80`` or ``80-82``."""
    parts = text.split("-")
    start = _port(parts[0])
    end = start if len(parts) == 1 else _port(parts[1])
    if start is None or end is None or end < start:
        return None
    return start, end


def _short_port(text: str) -> list[tuple[int, str]] | None:
    """``[ip:][published:]target[/protocol]`` as nat.ParsePortSpec reads it: each port it stands
    for, as (published port or 0, the same short syntax for that port alone); None if invalid."""
    parts = text.split(":")
    container = parts[-1]
    host = parts[-2] if len(parts) > 1 else ""
    number = container.split("/")[0]
    suffix = container[len(number) :]  # "/udp" as written
    protocol = suffix[1:].split("/")[0].lower() or "tcp"
    targets = _port_range(number)
    published = _port_range(host) if host else (0, 0)
    if targets is None or published is None or protocol not in ("tcp", "udp", "sctp"):
        return None
    t_start, t_end = targets
    p_start, p_end = published
    if not host:
        head = text[: len(text) - len(container)]
        return [(0, f"{head}{t}{suffix}") for t in range(t_start, t_end + 1)]
    ip = ":".join(parts[:-2]) + ":" if len(parts) > 2 else ""
    if t_end - t_start != p_end - p_start:
        if t_start != t_end:
            return None
        # One target published on each port of the range (ConvertPortToPortConfig).
        return [(p, f"{ip}{p}:{t_start}{suffix}") for p in range(p_start, p_end + 1)]
    return [(p_start + i, f"{ip}{p_start + i}:{t_start + i}{suffix}") for i in range(t_end - t_start + 1)]


_KEYED: dict[str, Rule] = {
    "ports": _keyed(_port_keys),
    "secrets": _keyed(_source_keys),
    "configs": _keyed(_source_keys),
}


# -- the special cases of mergeServices ------------------------------------------------------------
def _driver(config: Mapping[str, _Node]) -> str:
    node = config.get("driver")
    return "" if node is None else _text(node.value)


def _logging(base: _Node, over: _Node) -> _Node:
    """mergeLoggingConfig: another driver replaces the whole logging, options included; the same
    driver (or none on either side) merges the options key by key."""
    if not isinstance(base.value, dict):
        return base
    if not isinstance(over.value, dict):
        return over
    old_driver, new_driver = _driver(base.value), _driver(over.value)
    if old_driver and new_driver and old_driver != new_driver:
        return over
    out = dict(base.value)
    if not old_driver and "driver" in over.value:
        out["driver"] = over.value["driver"]
    old, new = base.value.get("options"), over.value.get("options")
    # The options merge into the base's own map: when the base has none, mergo makes a new map
    # that nothing keeps, and the override's options are lost.
    if old is not None and isinstance(old.value, dict) and new is not None and new.value is not None:
        out["options"] = _labels(old, new)
    return _Node(out, over.at)


def _attachments(node: _Node) -> dict[str, _Node] | None:
    """A list of names as a mapping of names without settings (service networks, depends_on)."""
    if isinstance(node.value, dict):
        return dict(node.value)
    if isinstance(node.value, list):
        return {_text(item.value): _Node(None, item.at) for item in node.value}
    return None


def _networks(base: _Node, over: _Node) -> _Node:
    """Per network; a network the override lists without settings keeps the base's settings."""
    old = _attachments(base)
    if old is None:
        return base
    new = _attachments(over)
    if new is None:
        return over
    out = dict(old)
    for name, node in new.items():
        kept = out.get(name)
        if kept is None or kept.value is None:
            out[name] = node
        elif node.value is not None:
            out[name] = _attachment(kept, node)
    if isinstance(base.value, list) and isinstance(over.value, list):
        return _Node([_Node(name, node.at) for name, node in out.items()], over.at)
    return _Node(out, over.at)


def _attachment(base: _Node, over: _Node) -> _Node:
    """mergeServiceNetworkConfig: the aliases are the override's, none if it sets none; an address
    changes only where the override sets one."""
    if not isinstance(base.value, dict):
        return base
    if not isinstance(over.value, dict):
        return over
    out = {k: v for k, v in base.value.items() if k != "aliases"}
    for key, node in over.value.items():
        if key in ("ipv4_address", "ipv6_address") and _no_text(node.value):
            continue
        out[key] = node
    return _Node(out, over.at)


def _depends_on(base: _Node, over: _Node) -> _Node:
    """Lists are appended; the compose specification's mapping (which docker 20.10 refuses, and the
    translation reads) merges by service name."""
    if isinstance(base.value, list) and isinstance(over.value, list):
        return _APPEND(base, over)
    old, new = _attachments(base), _attachments(over)
    if old is None:
        return base
    if new is None:
        return over
    return _Node({**old, **new}, over.at)


def _build(base: _Node, over: _Node) -> _Node:
    """A build given as a string is its context (transformBuildConfig)."""

    def fields(node: _Node) -> _Node:
        return _Node({"context": _Node(node.value, node.at)}, node.at) if isinstance(node.value, str) else node

    return _merge_fields(fields(base), fields(over), _BUILD)


def _extras(base: _Node, over: _Node) -> _Node:
    """``x-`` keys (map[string]interface{}): mappings merged key by key, lists appended, any other
    value replaced; a null in the override is skipped."""
    if isinstance(base.value, dict) and isinstance(over.value, dict):
        out = dict(base.value)
        for key, node in over.value.items():
            if node.value is not None:
                out[key] = _extras(out[key], node) if key in out and out[key].value is not None else node
        return _Node(out, over.at)
    if isinstance(base.value, list) and isinstance(over.value, list):
        return _Node(base.value + over.value, over.at)
    return over


# -- the compose keys docker 20.10 knows (types.ServiceConfig), each with its rule -----------------
_BUILD: dict[str, Rule] = {
    "context": _TEXT,
    "dockerfile": _TEXT,
    "network": _TEXT,
    "target": _TEXT,
    "args": _environment,
    "labels": _labels,
    "cache_from": _APPEND,
    "extra_hosts": _appended(_hosts),
}
_UPDATE: dict[str, Rule] = {
    "parallelism": _NUMBER,
    "delay": _AMOUNT,
    "failure_action": _TEXT,
    "monitor": _AMOUNT,
    "max_failure_ratio": _NUMBER,
    "order": _TEXT,
}
_RESOURCES: dict[str, Rule] = {
    "limits": _struct({"cpus": _TEXT, "memory": _AMOUNT, "pids": _NUMBER}),
    "reservations": _struct({"cpus": _TEXT, "memory": _AMOUNT, "generic_resources": _APPEND}),
}
_DEPLOY: dict[str, Rule] = {
    "mode": _TEXT,
    "replicas": _NUMBER,  # replicas: 0 in an override is ignored (fixed only in docker 23)
    "labels": _labels,
    "update_config": _struct(_UPDATE),
    "rollback_config": _struct(_UPDATE),
    "resources": _struct(_RESOURCES),
    "restart_policy": _struct({"condition": _TEXT, "delay": _AMOUNT, "max_attempts": _NUMBER, "window": _AMOUNT}),
    "placement": _struct({"constraints": _APPEND, "preferences": _APPEND, "max_replicas_per_node": _NUMBER}),
    "endpoint_mode": _TEXT,
}
_HEALTHCHECK: dict[str, Rule] = {
    "test": _appended(_test),
    "interval": _AMOUNT,
    "timeout": _AMOUNT,
    "start_period": _AMOUNT,
    "retries": _NUMBER,
    "disable": _BOOL,
}
_SERVICE: dict[str, Rule] = {
    **{
        key: _TEXT
        for key in (
            "image",
            "hostname",
            "user",
            "working_dir",
            "stop_signal",
            "container_name",
            "cgroupns_mode",
            "cgroup_parent",
            "domainname",
            "ipc",
            "isolation",
            "mac_address",
            "network_mode",
            "pid",
            "restart",
            "shm_size",
            "userns_mode",
        )
    },
    **{key: _BOOL for key in ("privileged", "read_only", "stdin_open", "tty", "init")},
    "stop_grace_period": _AMOUNT,
    # Appended, volumes too: merging them by target came with docker 22.06.
    **{
        key: _APPEND
        for key in (
            "cap_add",
            "cap_drop",
            "devices",
            "dns",
            "dns_search",
            "env_file",
            "expose",
            "external_links",
            "links",
            "security_opt",
            "tmpfs",
            "volumes",
        )
    },
    "depends_on": _depends_on,
    # ShellCommand is a slice with no transformer in 20.10: appended (replaced from docker 22.06).
    "command": _appended(_words),
    "entrypoint": _appended(_words),
    "extra_hosts": _appended(_hosts),
    "labels": _labels,
    "sysctls": _labels,
    "ulimits": _labels,  # mergeUlimitsConfig: each limit set in the override replaces the base's whole
    "environment": _environment,
    **_KEYED,
    "logging": _logging,
    "networks": _networks,
    "healthcheck": _struct(_HEALTHCHECK),
    "deploy": _struct(_DEPLOY),
    "build": _build,
    "credential_spec": _struct({"config": _TEXT, "file": _TEXT, "registry": _TEXT}),
}
