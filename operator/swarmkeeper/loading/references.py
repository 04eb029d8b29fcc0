"""Checks that need the whole set of objects: duplicates, dangling references, dependsOn cycles.

They run over everything one source provides (a folder, a Git commit, a Kubernetes namespace),
because a service usually refers to networks and secrets defined in other files.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from ..api import Key, SwarmService
from ..api.base import ClusterRef
from .errors import SpecError, did_you_mean, shorten, sorted_errors
from .fieldpath import FieldPath
from .manifest import Manifest

Names = dict[tuple[str, str | None], set[str]]  # (kind, namespace) → names of the objects there
_CLUSTER = "SwarmCluster"


def check_references(manifests: Sequence[Manifest]) -> list[SpecError]:
    """Every problem between objects of the set, each pointing at the referring field."""
    errors = _duplicates(manifests)
    names: Names = {}
    for m in manifests:
        names.setdefault((m.kind, _scope(m)), set()).add(m.name)
    clusters = names.get((_CLUSTER, None), set())
    for m in manifests:
        spec = m.resource.spec
        if isinstance(spec, ClusterRef) and spec.cluster is not None and spec.cluster not in clusters:
            hint = did_you_mean(spec.cluster, clusters)
            errors.append(m.error(("spec", "cluster"), f'no {_CLUSTER} "{shorten(spec.cluster)}"{hint}'))
        if isinstance(m.resource, SwarmService):
            errors.extend(_dangling(m, m.resource, names))
    errors.extend(_cycles(manifests))
    return sorted_errors(errors)


def _scope(m: Manifest) -> str | None:
    # SwarmCluster objects are cluster-scoped: a namespace on one does not set it apart.
    return None if m.kind == _CLUSTER else m.namespace


def _in(namespace: str | None) -> str:
    return f'in namespace "{namespace}"' if namespace else "without a namespace"


def _duplicates(manifests: Sequence[Manifest]) -> list[SpecError]:
    errors: list[SpecError] = []
    first: dict[Key, Manifest] = {}
    for m in manifests:
        key = Key(m.kind, _scope(m), m.name)
        original = first.setdefault(key, m)
        if original is m:
            continue
        where = f" ({_in(m.namespace)})" if m.kind != _CLUSTER else ""
        if original.origin is not None:
            where += f"; first defined at {original.origin.file}:{original.origin.line}"
        errors.append(m.error((), f'duplicate {m.kind} "{m.name}"{where}'))
    return errors


def _dangling(m: Manifest, service: SwarmService, names: Names) -> list[SpecError]:
    spec = service.spec
    references: list[tuple[FieldPath, str, str]] = [
        *(
            (("spec", "networks", i, "name"), "SwarmNetwork", n.name)
            for i, n in enumerate(spec.networks)
            if not n.external  # made outside swarmkeeper: the engine checks it exists
        ),
        *(
            (("spec", section, i, "source"), kind, r.source)
            for section, kind, refs in (
                ("secrets", "SwarmSecret", spec.secrets),
                ("configs", "SwarmConfig", spec.configs),
            )
            for i, r in enumerate(refs)
            if not r.external
        ),
        *((("spec", "dependsOn", i), "SwarmService", d) for i, d in enumerate(spec.depends_on)),
    ]
    errors: list[SpecError] = []
    for path, kind, target in references:
        here = names.get((kind, m.namespace), set())
        if target in here:
            continue
        hint = did_you_mean(target, here)
        if not hint:
            elsewhere = sorted(ns or "" for (k, ns), found in names.items() if k == kind and target in found)
            hint = f" (there is one {_in(elsewhere[0] or None)})" if elsewhere else ""
        errors.append(m.error(path, f'no {kind} "{shorten(target)}" {_in(m.namespace)}{hint}'))
    return errors


def _cycles(manifests: Sequence[Manifest]) -> list[SpecError]:
    """One error per group of services that depend on each other, naming one cycle in it."""
    services: dict[Key, Manifest] = {}
    for m in manifests:
        if isinstance(m.resource, SwarmService):
            services.setdefault(m.key, m)
    graph: dict[Key, list[Key]] = {}
    for key, m in services.items():
        assert isinstance(m.resource, SwarmService)
        targets = (Key("SwarmService", m.namespace, name) for name in m.resource.spec.depends_on)
        graph[key] = [t for t in targets if t in services]  # dangling ones are reported elsewhere
    reachable = {key: _reachable(graph, key) for key in graph}
    errors: list[SpecError] = []
    reported: set[Key] = set()
    for key in sorted(graph, key=lambda k: (k.namespace or "", k.name)):
        if key in reported or key not in reachable[key]:
            continue
        reported.update(k for k in reachable[key] if key in reachable[k])  # the rest of its group
        cycle = _shortest_cycle(graph, key)
        m = services[key]
        assert isinstance(m.resource, SwarmService)
        step = m.resource.spec.depends_on.index(cycle[1][2])
        path = " -> ".join(k.name for k in cycle)
        errors.append(m.error(("spec", "dependsOn", step), f"dependsOn cycle: {path}"))
    return errors


def _reachable(graph: dict[Key, list[Key]], start: Key) -> set[Key]:
    """Services reachable from ``start`` through one or more dependencies (``start`` only on a cycle)."""
    seen: set[Key] = set()
    stack = list(graph[start])
    while stack:
        key = stack.pop()
        if key not in seen:
            seen.add(key)
            stack.extend(graph[key])
    return seen


def _shortest_cycle(graph: dict[Key, list[Key]], start: Key) -> list[Key]:
    """``[start, …, start]``; ``start`` must lie on a cycle."""
    came_from: dict[Key, Key] = {}
    queue = deque([start])
    while queue:
        key = queue.popleft()
        for target in graph[key]:
            if target == start:
                path = [key]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target not in came_from:
                came_from[target] = key
                queue.append(target)
    raise ValueError(f"{start} is not on a cycle")
