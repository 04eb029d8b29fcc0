"""``status.runningImages``: which digest the running tasks use, and how many of them, against the
real engine and the plain test registry (tests/registry_fixtures.py).

The test engine runs tasks only from local images (see tests/test_image_pinning.py): what is pushed
is pulled before a task needs it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import docker

from cli_helpers import sk, write_spec
from helpers import wait_for
from registry_fixtures import Registries, build_distinct_image, pull, push

REPLICAS = 3


def service(folder: Path, ns: str, image: str, resolve: str = "always") -> None:
    # One task at a time, a few seconds apart: the rolling update lasts long enough to be seen.
    write_spec(
        folder,
        "app.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app, namespace: {ns}}}
        spec:
          image: {image}
          resolveImage: {resolve}
          replicas: {REPLICAS}
          command: [sleep, "1d"]
          stopGracePeriod: 1s
          updateConfig: {{parallelism: 1, delay: 3s, monitor: 1s}}
        """,
    )


def push_new(api: docker.APIClient, repository: str, scratch: list[str]) -> str:
    image = build_distinct_image(api)
    scratch.append(image)
    digest = push(api, image, repository, "1")
    pull(api, repository, "1")
    return digest


def status(ns: str) -> dict[str, Any]:
    """The service's live status, as ``get -o json`` prints it."""
    res = sk("get", "services", "app", "-n", ns, "-o", "json")
    assert res.code == 0, res.output
    doc = json.loads(res.stdout)
    return dict(doc.get("status") or {})


def running_images(ns: str) -> list[dict[str, Any]]:
    return list(status(ns).get("runningImages") or [])


def test_running_tasks_name_their_digest_through_a_rolling_update(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    first = push_new(docker_api, repository, scratch_images)
    service(specs_dir, namespace, f"{repository}:1")
    res = sk("apply", specs_dir, "--wait", "--timeout", "120s")
    assert res.code == 0, res.output
    settled = [{"image": f"{repository}:1", "digest": first, "tasks": REPLICAS}]
    wait_for(lambda: running_images(namespace) == settled, timeout=60, message=f"runningImages {settled}")
    shown = status(namespace)
    assert shown["imageDigest"] == first
    assert shown["image"] == f"{repository}:1@{first}"

    # The tag pushed again: the next apply rolls the service, one task at a time.
    second = push_new(docker_api, repository, scratch_images)
    res = sk("apply", specs_dir)
    assert res.code == 0, res.output
    seen: list[list[dict[str, Any]]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = running_images(namespace)
        seen.append(now)
        if [i["digest"] for i in now] == [second] and now[0]["tasks"] == REPLICAS:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the update never settled on {second}: {seen[-5:]}")
    # Mid-way, both digests run, each named with its own count, the tag the same.
    both = [s for s in seen if {i["digest"] for i in s} == {first, second}]
    assert both, f"the rolling update never showed both digests: {seen}"
    for entry in both:
        assert {i["image"] for i in entry} == {f"{repository}:1"}
        counts = {i["digest"]: i["tasks"] for i in entry}
        assert counts[first] >= 1 and counts[second] >= 1 and sum(counts.values()) <= REPLICAS, entry
    states = [{i["digest"][:15]: i["tasks"] for i in s} for s in both]
    print(f"\nmid-update states seen: {[s for n, s in enumerate(states) if n == 0 or s != states[n - 1]]}")
    settled = [{"image": f"{repository}:1", "digest": second, "tasks": REPLICAS}]
    assert running_images(namespace) == settled
    shown = status(namespace)
    assert shown["imageDigest"] == second and shown["image"] == f"{repository}:1@{second}"


def test_tasks_of_an_unpinned_image_have_no_digest(local_image: str, namespace: str, specs_dir: Path) -> None:
    service(specs_dir, namespace, local_image, resolve="never")
    res = sk("apply", specs_dir, "--wait", "--timeout", "120s")
    assert res.code == 0, res.output
    wait_for(
        lambda: running_images(namespace) == [{"image": local_image, "tasks": REPLICAS}],
        timeout=60,
        message="runningImages without a digest",
    )
    assert "imageDigest" not in status(namespace)
