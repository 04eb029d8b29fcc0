"""The only calls that change the swarm: create, update and remove.

Payloads come from ``build`` unchanged. The raw endpoints are used (``EngineClient.post_json``)
so the engine receives exactly the spec that was compared, not a re-assembled one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Literal

from docker import auth
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from .connect import EngineClient
from .errors import EngineError, call

ValueKind = Literal["secret", "config"]


def _auth_headers(client: EngineClient, image: str | None, with_registry_auth: bool) -> dict[str, str]:
    # What `--with-registry-auth` does: the client's stored credentials for the image's registry
    # travel with the request, so every node can pull a private image.
    if not with_registry_auth or not image:
        return {}
    registry, _ = auth.resolve_repository_name(image)
    header = auth.get_config_header(client, registry)
    return {"X-Registry-Auth": header} if header else {}


def create_network(client: EngineClient, payload: Mapping[str, Any]) -> str:
    return str(client.post_json("/networks/create", body=payload)["Id"])


def remove_network(client: EngineClient, network_id: str, *, settle: float = 30.0) -> None:
    """Remove a network and wait (up to ``settle`` s) until the node stops listing it.

    After removal the node keeps its copy of an overlay network until the last task has detached,
    and it lists that copy exactly like a live network; creating a service on it then fails with
    "network not found". Waiting here keeps what the next pass reads consistent. The other way
    round, a service removed a moment earlier (services go first) still has tasks stopping on the
    network; those are waited for too, within the same ``settle`` time.
    """
    deadline = time.monotonic() + settle
    while True:
        try:
            call(lambda: client.remove_network(network_id))
            break
        except EngineError as exc:
            # Removed already (by a run that died before it heard back) and still listed while its
            # last task detaches: the engine answers 500 "network <id> not found". Gone is the goal.
            if exc.not_found or "not found" in str(exc):
                break
            holder = _IN_USE_BY_TASK.search(str(exc))
            if holder is None or time.monotonic() >= deadline or not _task_leaving(client, holder.group(1)):
                raise
            time.sleep(0.25)
    # Back off while polling, but not far: many networks removed at once, each polled by its own
    # thread, must not load the engine while it stops the very tasks waited for; yet every second
    # of pause past the moment the network goes is a second added to the removal.
    pause = 0.1
    while time.monotonic() < deadline and call(lambda: client.networks(ids=[network_id])):
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


_IN_USE_BY_TASK = re.compile(r"in use by task (\w+)")
_LIVE_TASK_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"})


def _task_leaving(client: EngineClient, task_id: str) -> bool:
    """Whether the task is on its way out: marked to stop, or its service is gone (swarm marks the
    tasks of a removed service a moment after the removal, and blocks the network until then)."""
    try:
        task = call(lambda: client.inspect_task(task_id))
        if task.get("DesiredState") not in _LIVE_TASK_STATES:
            return True
        call(lambda: client.inspect_service(task["ServiceID"]))
    except EngineError as exc:
        if exc.not_found:
            return True  # the task or its service is gone
        raise
    return False


def create_value(client: EngineClient, kind: ValueKind, payload: Mapping[str, Any]) -> str:
    return str(client.post_json(f"/{kind}s/create", body=payload)["ID"])


def update_value_labels(client: EngineClient, kind: ValueKind, value_id: str, payload: Mapping[str, Any]) -> None:
    """Replace the labels of a secret/config (the only thing swarm lets change). With ``Data`` in
    ``payload``, swarm refuses (400) unless it equals the value it holds."""
    current = client.get_json(f"/{kind}s/{{0}}", value_id)
    params = {"version": current["Version"]["Index"]}
    client.post_json(f"/{kind}s/{{0}}/update", value_id, body=payload, params=params)


def remove_value(client: EngineClient, kind: ValueKind, value_id: str) -> None:
    if kind == "secret":
        call(lambda: client.remove_secret(value_id))
    else:
        call(lambda: client.remove_config(value_id))


def create_service(client: EngineClient, payload: Mapping[str, Any], *, with_registry_auth: bool) -> str:
    image = payload["TaskTemplate"]["ContainerSpec"].get("Image")
    headers = _auth_headers(client, image, with_registry_auth)
    return str(client.post_json("/services/create", body=payload, headers=headers)["ID"])


def _is_out_of_sequence(exc: BaseException) -> bool:
    return isinstance(exc, EngineError) and exc.out_of_sequence


@retry(
    retry=retry_if_exception(_is_out_of_sequence),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.05, max=1),
    reraise=True,
)
def update_service(
    client: EngineClient,
    service_id: str,
    payload: Mapping[str, Any],
    *,
    with_registry_auth: bool,
    rollback: bool = False,
) -> list[str]:
    """Replace the service's spec with ``payload``; returns the engine's warnings.

    The version index is re-read on every attempt: "update out of sequence" means someone else
    updated the service in between, and the full desired spec is simply sent again on top.
    """
    current = call(lambda: client.inspect_service(service_id))
    body = dict(payload)
    # `docker service update --force` bumps ForceUpdate; keep it, or the update would restart tasks.
    task = dict(body["TaskTemplate"])
    task["ForceUpdate"] = current["Spec"].get("TaskTemplate", {}).get("ForceUpdate", 0)
    body["TaskTemplate"] = task
    image = task["ContainerSpec"].get("Image")
    headers = _auth_headers(client, image, with_registry_auth)
    params: dict[str, Any] = {"version": current["Version"]["Index"]}
    if rollback:
        params["rollback"] = "previous"
    result = client.post_json("/services/{0}/update", service_id, body=body, headers=headers, params=params)
    return list(result.get("Warnings") or []) if isinstance(result, dict) else []


def remove_service(client: EngineClient, service_id: str) -> None:
    call(lambda: client.remove_service(service_id))
