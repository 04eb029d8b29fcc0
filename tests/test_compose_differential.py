"""The same compose file, two ways: ``docker stack deploy`` and ``swarmkeeper import`` + ``apply``.

Each file of the corpus (tests/data/compose_corpus/) is deployed with the reference client,
Debian's docker 20.10 (``/usr/bin/docker stack deploy --resolve-image never``), under one
namespace, and imported and applied by swarmkeeper under another. Every field of every service,
network, secret and config, as the engine stores it, is compared with IDs turned into names and
the namespace mapped. A difference fails unless it is in ``INTENDED`` below. The same stacks are
then adopted in place (no task restarts) and exported back (the export adopts, changing no field).

The keys the corpus covers: everything docker stack deploy 20.10 converts (docker/cli
cli/compose/convert, schema v3.0 to v3.9), file by file:

- ports-volumes.yml: ports short (``published:target``, ranges, ``/udp``, an address, target
  only) and long (target, published, protocol, mode); volumes short (bind ro, named nocopy,
  anonymous) and long (bind with read_only and bind.propagation, volume with volume.nocopy,
  tmpfs with tmpfs.size); top-level volumes with driver, driver_opts, labels and ``name:``.
- deploy.yml: deploy.mode (replicated, global), replicas (0 too), labels (map and list),
  resources (limits cpus/memory/pids, reservations cpus/memory/generic_resources),
  restart_policy (condition, delay, max_attempts, window), update_config and rollback_config
  (parallelism, delay, failure_action, monitor, max_failure_ratio, order), placement
  (constraints, preferences, max_replicas_per_node), endpoint_mode (vip, dnsrr); the
  service-level ``restart:`` the CLI falls back to.
- container.yml: entrypoint and command as string and list, environment as map and list (with
  a variable taken from the shell), env_file (several), labels at both levels (map and list),
  healthcheck (test as string and list, interval, timeout, retries, start_period, disable), init,
  cap_add/cap_drop (ALL, CAP_ prefix, lower case), sysctls (map and list), ulimits (single and
  soft/hard), logging (driver, options), dns and dns_search (string and list), extra_hosts,
  hostname with swarm templates ({{.Task.Slot}}, {{.Node.ID}}), stop_signal,
  stop_grace_period, user, working_dir, read_only, tty, stdin_open.
- variables.yml: ``${VAR}``, ``$VAR``, ``${VAR:-default}``, ``${VAR-default}``,
  ``${VAR?error}``, ``$$``; ``x-`` extension fields at the top and in a service; YAML anchors
  and ``<<`` merge keys; templates ({{.Service.Name}}, {{.Node.Hostname}}, {{.Task.Name}}); an
  image without a tag (normalised to ``:latest`` as the CLI does) and one in long form
  (``docker.io/local/busybox:1``, sent as ``local/busybox:1``).
- networks.yml: service networks as list and mapping, aliases; top-level driver, attachable,
  internal, driver_opts, labels (map and list), ipam (driver, config.subnet), external with
  ``name:``; a network no service uses (not created, as the CLI does); the ``default`` network.
- secrets-configs.yml: secrets and configs from files, external (with ``name:``), with a
  ``name:`` of their own, labels (map and list), config template_driver, long syntax (source,
  target, uid, gid, mode).
- VERSIONS: one file per version "3.0" to "3.9", each using the keys its schema added; and the
  unversioned compose specification (docker stack deploy 20.10 refuses a file without
  ``version:``, so it is compared with the same file declaring "3.9").

Not compared here because docker stack deploy 20.10 does not honour them (it refuses or drops
them): deploy.mode replicated-job/global-job ("Unknown mode"), dns_opt ("Additional property
dns_opt is not allowed"), healthcheck.start_interval, group_add, cgroup_parent and the other keys
swarm cannot do (see test_migrate_compose.py and test_compose_keys.py for their unit tests and
the comments import writes for them). credential_spec (gMSA credentials, for Windows containers),
which the CLI does set, is left out too: SwarmService has no field for it; import names it as
not translated.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import pytest
from ruamel.yaml import YAML

from cli_helpers import sk
from helpers import cleanup_namespace, stack_deploy, wait_for
from registry_fixtures import Registries, build_distinct_image, push
from swarmkeeper.sources.migrate.export import spec_name
from swarmkeeper.swarm.labels import MANAGED_BY
from swarmkeeper.swarm.labels import PREFIX as LABEL_PREFIX

CORPUS = Path(__file__).parent / "data" / "compose_corpus"
MERGE = Path(__file__).parent / "data" / "compose_merge"
STACK_LABEL = "com.docker.stack.namespace"
FILES = sorted(p.name for p in CORPUS.glob("*.yml"))

# What swarmkeeper does differently on purpose; anything else that differs fails the test.
INTENDED = (
    # 1. Its own labels on every object it owns: ownership, spec hash, value version, fingerprint.
    "labels io.swarmkeeper.*",
    # 2. Secrets and configs are versioned, NS_name-v1, -v2 ..., so a new value rolls the services
    #    over instead of failing (swarm cannot change a secret in place); references follow.
    "secret and config names: NS_x-vN for NS_x",
)


# -- the two deployments ---------------------------------------------------------------------------


def import_and_apply(compose: Path | Sequence[Path], specs: Path, namespace: str, env: Mapping[str, str]) -> str:
    files = [compose] if isinstance(compose, Path) else list(compose)
    res = sk("import", "compose", *files, "-n", namespace, "-o", specs, env=dict(env))
    assert res.code == 0, res.output
    applied = sk("apply", specs, "--source", namespace, env=dict(env))
    assert applied.code == 0, applied.output
    return res.output


# -- the engine's view, made comparable ------------------------------------------------------------


def engine_view(api: docker.APIClient, namespace: str) -> dict[str, Any]:
    """Every object of the namespace as the engine stores it: IDs named, the namespace as NS."""
    net_names = {n["Id"]: n["Name"] for n in api.networks()}
    view: dict[str, Any] = {}
    for svc in api.services(filters={"label": f"{STACK_LABEL}={namespace}"}):
        spec = copy.deepcopy(svc["Spec"])
        task = spec.get("TaskTemplate", {})
        for attachment in task.get("Networks") or []:
            attachment["Target"] = net_names.get(attachment["Target"], attachment["Target"])
        for kind in ("Secret", "Config"):
            for ref in task.get("ContainerSpec", {}).get(kind + "s") or []:
                ref.pop(kind + "ID", None)
        view[f"service {spec['Name']}"] = spec
    for net in api.networks(filters={"label": f"{STACK_LABEL}={namespace}"}):
        shape = network_shape(api.inspect_network(net["Id"]))
        view[f"network {shape['Name']}"] = shape
    for kind, listing in (("secret", api.secrets), ("config", api.configs)):
        for obj in listing(filters={"label": f"{STACK_LABEL}={namespace}"}):
            view[f"{kind} {obj['Spec']['Name']}"] = obj["Spec"]
    return comparable(view, namespace)


def network_shape(shape: dict[str, Any]) -> dict[str, Any]:
    """A network as inspected, less what the engine allocates or tracks per run."""
    for key in ("Id", "Created", "Containers", "Peers", "Services"):
        shape.pop(key, None)
    options = shape.get("Options") or {}
    if "com.docker.network.driver.overlay.vxlanid_list" in options:  # allocated by the engine
        options["com.docker.network.driver.overlay.vxlanid_list"] = "<allocated>"
    for pool in (shape.get("IPAM") or {}).get("Config") or []:
        for key in ("Subnet", "Gateway", "IPRange"):
            if key in pool:  # allocated per network, or set from a per-run variable
                pool[key] = "<address>"
    return shape


def comparable(view: dict[str, Any], namespace: str) -> dict[str, Any]:
    text = json.dumps(view, sort_keys=True)
    text = text.replace(f'"{namespace}"', '"NS"').replace(f"{namespace}_", "NS_")
    # Intended difference 2: the version a secret's or config's name ends in, wherever it is named.
    text = re.sub(r'"((?:secret|config) [^"]+?)-v\d+"', r'"\1"', text)
    text = re.sub(r'"(Name|SecretName|ConfigName)": "([^"]+?)-v\d+"', r'"\1": "\2"', text)
    data = json.loads(text)
    return {key: _without_own_labels(value) for key, value in data.items()}


def _without_own_labels(value: Any) -> Any:
    """Intended difference 1: swarmkeeper's own labels, wherever labels are."""
    if isinstance(value, dict):
        return {
            k: _without_own_labels(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.startswith("io.swarmkeeper."))
        }
    if isinstance(value, list):
        return [_without_own_labels(v) for v in value]
    return value


def differences(theirs: Any, ours: Any, path: str = "") -> list[str]:
    """Every field that differs, as ``path: theirs != ours``."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        out: list[str] = []
        for key in sorted(set(theirs) | set(ours)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in ours:
                out.append(f"{sub}: {json.dumps(theirs[key])} != (absent)")
            elif key not in theirs:
                out.append(f"{sub}: (absent) != {json.dumps(ours[key])}")
            else:
                out += differences(theirs[key], ours[key], sub)
        return out
    if isinstance(theirs, list) and isinstance(ours, list) and len(theirs) == len(ours):
        return [d for i, (a, b) in enumerate(zip(theirs, ours, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if theirs == ours else [f"{path}: {json.dumps(theirs)} != {json.dumps(ours)}"]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def corpus_env(docker_api: docker.APIClient, namespace: str) -> Iterator[dict[str, str]]:
    """The variables the corpus reads, and the external objects it names, made for this test."""
    external_net, external_secret = f"{namespace}x_shared", f"{namespace}x_outside"
    docker_api.create_network(external_net, driver="overlay", attachable=True, scope="swarm")
    docker_api.create_secret(external_secret, b"external-CANARY")
    # `image: local/busybox` runs this, as the CLI normalises it
    docker_api.tag("local/busybox:1", "local/busybox", "latest")
    env = {
        "CORPUS_GREETING": "hello world",
        "CORPUS_EMPTY": "",
        "CORPUS_REPLICAS": "2",
        "CORPUS_SHARED_NETWORK": external_net,
        "CORPUS_EXTERNAL_SECRET": external_secret,
        "FROM_SHELL": "shell-value",
    }
    try:
        yield env
    finally:
        for ns in (f"{namespace}d", namespace):
            remove_stack(docker_api, ns)
        with contextlib.suppress(docker.errors.APIError):
            docker_api.remove_network(external_net)
        with contextlib.suppress(docker.errors.APIError):
            docker_api.remove_secret(external_secret)


def remove_stack(api: docker.APIClient, namespace: str) -> None:
    cleanup_namespace(api, namespace)
    for vol in api.volumes(filters={"label": f"{STACK_LABEL}={namespace}"}).get("Volumes") or []:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_volume(vol["Name"], force=True)
    for cfg in api.configs(filters={"label": f"{STACK_LABEL}={namespace}"}):
        with contextlib.suppress(docker.errors.APIError):
            api.remove_config(cfg["ID"])


def stack_folder(tmp: Path, name: str) -> Path:
    """A copy of the corpus file and the files beside it, as a user's stack folder."""
    folder = tmp / "stack"
    shutil.copytree(CORPUS / "files", folder / "files")
    shutil.copy(CORPUS / name, folder / "docker-compose.yml")
    return folder / "docker-compose.yml"


# -- the tests -------------------------------------------------------------------------------------


def deployed_both_ways(
    api: docker.APIClient, compose: Path | Sequence[Path], specs: Path, namespace: str, env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's view of the file deployed by docker stack deploy, then by swarmkeeper.

    One after the other, the first removed before the second: names that are not namespaced
    (a volume or config ``name:``) and published ports can be held by one stack at a time.
    """
    theirs_ns, ours_ns = f"{namespace}d", namespace
    stack_deploy(compose, theirs_ns, env)
    theirs = engine_view(api, theirs_ns)
    remove_stack(api, theirs_ns)
    import_and_apply(compose, specs, ours_ns, env)
    return theirs, engine_view(api, ours_ns)


def assert_same(theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    assert sorted(ours) == sorted(theirs)
    found = [f"{key}: {d}" for key in sorted(theirs) for d in differences(theirs[key], ours[key])]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name", FILES)
def test_import_and_apply_build_what_docker_stack_deploy_builds(
    docker_api: docker.APIClient,
    local_image: str,
    namespace: str,
    corpus_env: dict[str, str],
    tmp_path: Path,
    name: str,
) -> None:
    compose = stack_folder(tmp_path, name)
    # Specs written outside the stack folder: the files beside the compose file must still be read.
    theirs, ours = deployed_both_ways(docker_api, compose, tmp_path / "specs", namespace, corpus_env)
    assert_same(theirs, ours)


def test_several_files_merge_as_docker_stack_deploy_merges_them(
    docker_api: docker.APIClient,
    local_image: str,
    namespace: str,
    corpus_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """``docker stack deploy -c base.yml -c prod.yml`` against ``import compose base.yml prod.yml``:
    the override mixes the forms a base is overridden with (ports long over short, environment list
    over map and map over list, aliases, deploy replicas/resources/labels, volumes, secrets,
    configs, command), and every field the engine stores must come out alike."""
    folder = tmp_path / "stack"
    shutil.copytree(MERGE, folder)
    files = [folder / "base.yml", folder / "prod.yml"]
    theirs, ours = deployed_both_ways(docker_api, files, tmp_path / "specs", namespace, corpus_env)
    assert_same(theirs, ours)
    # Both sides read the override: without it, they would agree just as well.
    web = theirs["service NS_web"]
    container = web["TaskTemplate"]["ContainerSpec"]
    assert container["Args"] == ["sleep", "1d", "2h"]  # docker 20.10 appends an override's command
    assert "LOG_LEVEL=warn" in container["Env"] and "REGION=eu" in container["Env"]
    assert web["Mode"]["Replicated"]["Replicas"] == 2
    assert {"service NS_cron", "network NS_edge", "secret NS_prod_key", "config NS_app_conf_prod"} <= set(theirs)


def version_file(version: str | None) -> str:
    """A stack file of ``version`` using the keys its schema added (docker/cli
    cli/compose/schema/data); None: the unversioned compose specification, with every key."""

    def at_least(v: str) -> bool:
        return version is None or float(version) >= float(v)

    svc = ["    image: local/busybox:1", '    command: ["sleep", "1d"]', "    stop_grace_period: 2s"]
    deploy = ["      replicas: 1", "      resources: {limits: {memory: 32M}}"]
    update = ["parallelism: 1", "delay: 1s"]
    top: list[str] = []
    healthcheck = ['test: ["CMD", "true"]', "interval: 10s"]
    if at_least("3.1"):
        svc.append("    secrets: [token]")
        top += ["secrets:", "  token: {file: ./files/api_key.txt}"]
    if at_least("3.2"):
        deploy.append("      endpoint_mode: dnsrr")
        svc += ["    ports:", "      - {target: 80, published: 18180, mode: host}"]
        svc += ["    volumes:", "      - {type: volume, source: data, target: /data}"]
        top += ["volumes:", "  data: {}" if not at_least("3.4") else "  data: {name: corpus-versioned-data}"]
    if at_least("3.3"):
        svc.append("    configs: [conf]")
        top += ["configs:", "  conf: {file: ./files/app.ini}"]
    if at_least("3.4"):
        healthcheck.append("start_period: 5s")
        update.append("order: start-first")
        top.insert(0, "x-top: {ignored: true}")
    if at_least("3.5"):
        svc += ["    networks: [back]"]
        top += ["networks:", "  back: {name: corpus-versioned-back}"]
    if at_least("3.6"):
        svc.append("      - {type: tmpfs, target: /scratch, tmpfs: {size: 1048576}}")
    if at_least("3.7"):
        svc.append("    init: true")
        deploy.append("      rollback_config: {parallelism: 2, order: start-first}")
        svc.append("    x-service: {ignored: true}")
    if at_least("3.8"):
        deploy.append("      placement: {max_replicas_per_node: 1}")
    # The volumes list must stay contiguous: move the tmpfs item up behind the named volume.
    if at_least("3.6"):
        tmpfs = svc.pop(svc.index("      - {type: tmpfs, target: /scratch, tmpfs: {size: 1048576}}"))
        svc.insert(svc.index("      - {type: volume, source: data, target: /data}") + 1, tmpfs)
    deploy.append(f"      update_config: {{{', '.join(update)}}}")
    lines = [f'version: "{version}"'] if version else []
    lines += ["services:", "  app:", *svc, f"    healthcheck: {{{', '.join(healthcheck)}}}", "    deploy:", *deploy]
    return "\n".join([*lines, *top, ""])


VERSIONS = ["3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "3.8", "3.9", None]


@pytest.mark.parametrize("version", VERSIONS, ids=[v or "unversioned" for v in VERSIONS])
def test_every_file_version_builds_what_docker_stack_deploy_builds(
    docker_api: docker.APIClient,
    local_image: str,
    namespace: str,
    corpus_env: dict[str, str],
    tmp_path: Path,
    version: str | None,
) -> None:
    compose = stack_folder(tmp_path, FILES[0])
    # docker stack deploy 20.10 refuses a file without version: (it reads it as 1.0); newer
    # clients read it as the compose specification, which for these keys is 3.9.
    theirs_file = compose.with_name("theirs.yml")
    theirs_file.write_text(version_file(version or "3.9"))
    compose.write_text(version_file(version))
    theirs_ns, ours_ns = f"{namespace}d", namespace
    stack_deploy(theirs_file, theirs_ns, corpus_env)
    theirs = engine_view(docker_api, theirs_ns)
    remove_stack(docker_api, theirs_ns)
    import_and_apply(compose, tmp_path / "specs", ours_ns, corpus_env)
    assert_same(theirs, engine_view(docker_api, ours_ns))


# -- adoption and round trip -----------------------------------------------------------------------


Starts = dict[str, dict[str, tuple[str, str]]]


def tasks_and_starts(api: docker.APIClient, namespace: str) -> Starts:
    """Per service: every task it has had, with its container and when that container started.

    A rolling update or a rescheduled task adds a task; a task's container restarted in place
    changes its start time, and one replaced under the same task changes the container."""
    return {
        svc["Spec"]["Name"]: {
            task["ID"]: (container, started_at(api, container))
            for task in api.tasks(filters={"service": svc["ID"]})
            for container in [(task["Status"].get("ContainerStatus") or {}).get("ContainerID") or ""]
        }
        for svc in api.services(filters={"label": f"{STACK_LABEL}={namespace}"})
    }


def started_at(api: docker.APIClient, container: str) -> str:
    """``docker inspect``'s State.StartedAt of ``container`` ("" for a task that never had one)."""
    if not container:
        return ""
    try:
        return str(api.inspect_container(container)["State"]["StartedAt"])
    except docker.errors.NotFound:
        return "(removed)"


def running_containers(api: docker.APIClient, namespace: str) -> set[str]:
    """The containers of the namespace's tasks that run now."""
    return {
        task["Status"]["ContainerStatus"]["ContainerID"]
        for svc in api.services(filters={"label": f"{STACK_LABEL}={namespace}"})
        for task in api.tasks(filters={"service": svc["ID"], "desired-state": "running"})
        if task["Status"]["State"] == "running"
    }


def settled(api: docker.APIClient, namespace: str, count: int) -> bool:
    """All ``count`` services there; none in the middle of an update; every task the orchestrator
    wants made and running in its container, or held back by the scheduler for a resource no node
    has (a GPU). A task just made is pending too, with no such reason: not settled yet."""
    services = api.services(filters={"label": f"{STACK_LABEL}={namespace}"}, status=True)
    if len(services) != count:
        return False
    for svc in services:
        state = (svc.get("UpdateStatus") or {}).get("State")
        if state not in (None, "completed", "rollback_completed"):
            return False
        tasks = api.tasks(filters={"service": svc["ID"], "desired-state": "running"})
        if len(tasks) != svc["ServiceStatus"]["DesiredTasks"]:
            return False  # the orchestrator has not made them all yet
        for task in tasks:
            status = task["Status"]
            if status["State"] == "pending" and status.get("Err"):
                continue  # the scheduler found no node with the resource it asks for (a GPU)
            if status["State"] != "running" or not (status.get("ContainerStatus") or {}).get("ContainerID"):
                return False
    return True


Marks = dict[str, tuple[int, str | None]]


def update_marks(api: docker.APIClient, namespace: str) -> Marks:
    """Per service: its version, and when the engine last finished rolling it out (if ever)."""
    return {
        svc["Spec"]["Name"]: (svc["Version"]["Index"], (svc.get("UpdateStatus") or {}).get("CompletedAt"))
        for svc in api.services(filters={"label": f"{STACK_LABEL}={namespace}"})
    }


def moment(stamp: str) -> tuple[str, int]:
    """An engine timestamp (RFC 3339, up to nanoseconds) in a form that orders correctly."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    return head, int(fraction.ljust(9, "0")[:9] or 0)


def task_dirty(svc: dict[str, Any], task: dict[str, Any]) -> bool:
    """Whether the engine will replace ``task``: as swarmkit's IsTaskDirty decides it, its spec is
    no longer the service's task template (pull options aside) or its endpoint no longer the
    service's."""
    want = copy.deepcopy(svc["Spec"]["TaskTemplate"])
    have = copy.deepcopy(task["Spec"])
    for spec in (want, have):
        spec.get("ContainerSpec", {}).pop("PullOptions", None)
        spec.pop("Runtime", None)  # named in a service's template only; the ContainerSpec says it
    endpoint = (task.get("Endpoint") or {}).get("Spec")
    return want != have or (endpoint is not None and endpoint != (svc["Spec"].get("EndpointSpec") or {}))


def update_finished(api: docker.APIClient, namespace: str, count: int, before: Marks) -> bool:
    """Settled, and every update sent since ``before`` carried through by the engine: a service
    whose version did not move was sent none; one that moved either had a rollout that the engine
    reports completed after the one before, or has no task left that the engine would replace
    (then it starts no rollout: a change of service labels alone)."""
    if not settled(api, namespace, count):
        return False
    for svc in api.services(filters={"label": f"{STACK_LABEL}={namespace}"}, status=True):
        index, completed = before[svc["Spec"]["Name"]]
        if svc["Version"]["Index"] == index:
            continue
        status = svc.get("UpdateStatus") or {}
        done = status.get("CompletedAt") if status.get("State") in ("completed", "rollback_completed") else None
        if done is not None and (completed is None or moment(done) > moment(completed)):
            continue  # the rollout it caused is over
        tasks = api.tasks(filters={"service": svc["ID"], "desired-state": "running"})
        if any(task_dirty(svc, task) for task in tasks):
            return False
    return True


# A step as diff and apply print it (cli/render.py): "~ update   KIND/NS/NAME  (SWARM_NAME; REASON)",
# then, indented, one "+|~|- PATH: ..." line per changed field and a line saying what adoption does.
STEP_LINE = re.compile(r"^([+~±-]) (create|update|recreate|delete) +(\S+)  \((\S+); (.+)\)$")
CHANGE_LINE = re.compile(r"^      [+~-] (\S+): ")


def plan_steps(output: str) -> list[dict[str, Any]]:
    """The steps of a printed plan, each with the field paths it changes. Anything else the plan
    says (an error, a held or orphaned object, a line of unknown shape) fails the test."""
    steps: list[dict[str, Any]] = []
    for line in output.splitlines():
        if m := STEP_LINE.match(line):
            action, key, swarm_name, reason = m.group(2, 3, 4, 5)
            steps.append({"action": action, "key": key, "swarm_name": swarm_name, "reason": reason, "paths": []})
        elif line.startswith("      ") and steps:
            if m := CHANGE_LINE.match(line):
                steps[-1]["paths"].append(m.group(1))
        elif line.startswith("  unmanaged, left alone: ") or not line.strip():
            continue  # foreign objects anywhere in the swarm, other tests' among them
        else:
            raise AssertionError(f"unexpected line in the plan: {line!r}\n{output}")
    return steps


def namespace_objects(api: docker.APIClient, namespace: str) -> set[str]:
    """Swarm names of the services, networks, secrets and configs docker stack deploy made."""
    label = {"label": f"{STACK_LABEL}={namespace}"}
    return (
        {s["Spec"]["Name"] for s in api.services(filters=label)}
        | {n["Name"] for n in api.networks(filters=label)}
        | {s["Spec"]["Name"] for s in api.secrets(filters=label)}
        | {c["Spec"]["Name"] for c in api.configs(filters=label)}
    )


@pytest.mark.parametrize("name", FILES)
def test_a_stack_deployed_by_docker_is_adopted_without_a_restart_and_exports_to_itself(
    docker_api: docker.APIClient,
    local_image: str,
    namespace: str,
    corpus_env: dict[str, str],
    tmp_path: Path,
    name: str,
) -> None:
    compose = stack_folder(tmp_path, name)
    count = len(YAML(typ="safe").load(compose.read_text())["services"])
    stack_deploy(compose, namespace, corpus_env)
    wait_for(lambda: settled(docker_api, namespace, count), timeout=120, message=f"{namespace} settled")
    before = tasks_and_starts(docker_api, namespace)
    started = {c: at for tasks in before.values() for c, at in tasks.values() if c}
    # Every running container is seen with its start (a file may ask for no replica at all).
    running = running_containers(docker_api, namespace)
    assert all(started.get(c, "(removed)") != "(removed)" for c in running), (running, before)

    # Round trip: what export writes of the running stack differs from it in ownership alone.
    exported = tmp_path / "exported"
    res = sk("export", "-n", namespace, "-o", exported, env=corpus_env)
    assert res.code == 0, res.output
    for secret in exported.glob("secret-*.yaml"):  # swarm gives no secret back: the user fills them
        spec = secret.stem.removeprefix("secret-")
        (exported / f"{spec}.txt").write_text(secret_value(compose, spec))
    marks = update_marks(docker_api, namespace)
    plan = sk("diff", exported, "--source", namespace, "--adopt", env=corpus_env)
    assert plan.code == 1, plan.output
    steps = plan_steps(plan.stdout)
    assert {(s["action"], s["reason"]) for s in steps} == {("update", "adopt")}, plan.stdout
    assert {s["swarm_name"] for s in steps} == namespace_objects(docker_api, namespace), plan.stdout
    changed = [p for s in steps for p in s["paths"]]
    assert all(p.startswith(f"Labels.{LABEL_PREFIX}") for p in changed), plan.stdout
    assert any(s["paths"] for s in steps if s["key"].startswith("SwarmService/")), plan.stdout
    assert update_marks(docker_api, namespace) == marks  # diff changes nothing
    assert tasks_and_starts(docker_api, namespace) == before

    # Adoption of the import: labels only, no task restarted.
    specs = tmp_path / "specs"
    res = sk("import", "compose", compose, "-n", namespace, "-o", specs, env=corpus_env)
    assert res.code == 0, res.output
    res = sk("apply", specs, "--source", namespace, "--adopt", env=corpus_env)
    assert res.code == 0, res.output
    assert "adopt + update" not in res.output, res.output
    wait_for(
        lambda: update_finished(docker_api, namespace, count, marks),
        timeout=120,
        message=f"{namespace}: the engine done with the adoption's updates",
    )
    for svc in docker_api.services(filters={"label": f"{STACK_LABEL}={namespace}"}):
        assert svc["Spec"]["Labels"].get(MANAGED_BY) == "swarmkeeper", svc["Spec"]["Name"]  # adopted
    assert tasks_and_starts(docker_api, namespace) == before

    # Then swarmkeeper's: the next real pass has nothing to do and writes nothing.
    marks = update_marks(docker_api, namespace)
    again = sk("apply", specs, "--source", namespace, env=corpus_env)
    assert again.code == 0, again.output
    assert again.stdout.strip() == "no changes", again.output
    assert update_marks(docker_api, namespace) == marks
    assert tasks_and_starts(docker_api, namespace) == before


def secret_value(compose: Path, spec: str) -> str:
    """The value of the compose file's secret whose spec name is ``spec``, read from its file."""
    data = YAML(typ="safe").load(compose.read_text())
    for key, cfg in (data.get("secrets") or {}).items():
        if spec_name(key) == spec and isinstance(cfg, dict) and cfg.get("file"):
            return str((compose.parent / cfg["file"]).read_text())
    raise AssertionError(f"no secret {spec} in {compose}")


def test_images_pinned_as_docker_stack_deploy_pins_them_by_default(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    corpus_env: dict[str, str],
    tmp_path: Path,
    scratch_images: list[str],
) -> None:
    """docker stack deploy's default, --resolve-image always, against a real registry: the digest in
    the image and the platforms the registry lists in Placement.Platforms, both ways alike; and the
    stack adopted as it runs."""
    repository = f"{registries.plain}/sk/{namespace}"
    image = build_distinct_image(docker_api)
    scratch_images.append(image)
    digest = push(docker_api, image, repository, "1")
    compose = tmp_path / "stack" / "docker-compose.yml"
    compose.parent.mkdir()
    compose.write_text(
        f'version: "3.8"\nservices:\n  app:\n    image: {repository}:1\n    command: ["sleep", "1d"]\n'
        "    deploy: {replicas: 0}\n"
    )
    theirs_ns, ours_ns = f"{namespace}d", namespace
    stack_deploy(compose, theirs_ns, corpus_env, resolve_image="always")
    theirs = engine_view(docker_api, theirs_ns)
    remove_stack(docker_api, theirs_ns)
    import_and_apply(compose, tmp_path / "specs", ours_ns, corpus_env)
    ours = engine_view(docker_api, ours_ns)
    assert_same(theirs, ours)
    container = ours["service NS_app"]["TaskTemplate"]
    assert container["ContainerSpec"]["Image"] == f"{repository}:1@{digest}"
    assert container["Placement"]["Platforms"], "the registry's platforms, as the docker CLI sets them"
    # Deployed by docker with its defaults, then adopted: labels only.
    stack_deploy(compose, theirs_ns, corpus_env, resolve_image="always")
    specs = tmp_path / "adopt"
    assert sk("import", "compose", compose, "-n", theirs_ns, "-o", specs, env=corpus_env).code == 0
    res = sk("apply", specs, "--source", theirs_ns, "--adopt", env=corpus_env)
    assert res.code == 0 and "adopt + update" not in res.output, res.output
