"""The operator and registries: it pins images of a private registry with a namespace's
dockerconfigjson Secret, and rolls out a tag pushed again within its ``--image-interval``.

Against the real API server (tests/kube_fixtures.py) and the test registries
(tests/registry_fixtures.py); the password must appear nowhere the operator writes.
"""

from __future__ import annotations

import time
from pathlib import Path

import docker

from helpers import wait_for
from kube_fixtures import Kube, operator
from registry_fixtures import Registries, build_distinct_image, pull, push


def test_the_namespace_secret_logs_in_to_pin_a_private_image(
    kube: Kube,
    kube_namespace: str,
    docker_api: docker.APIClient,
    isolated_api: docker.APIClient,
    registries: Registries,
    tmp_path: Path,
    scratch_images: list[str],
) -> None:
    ns = kube_namespace
    repository = f"{registries.tls}/sk/{ns}"
    image = build_distinct_image(docker_api)
    scratch_images.append(image)
    digest = push(isolated_api, image, repository, "1", auth=registries.auth())
    pull(isolated_api, repository, "1", auth=registries.auth())
    kube.kubectl(
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "-n",
        ns,
        f"--docker-server={registries.tls}",
        f"--docker-username={registries.user}",
        f"--docker-password={registries.password}",
    )
    kube.apply(
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app, namespace: {ns}}}
        spec:
          image: {repository}:1
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """
    )
    log = tmp_path / "operator.log"
    # The operator's own docker config has no login for this registry: only the Secret can pin it.
    env = {"DOCKER_CONFIG": str(tmp_path / "empty-docker-config")}
    with operator(kube, ns, log, "--registry-auth-secret", "regcred", env=env):

        def pinned() -> str | None:
            services = docker_api.services(filters={"name": f"{ns}_app"})
            image = services[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] if services else None
            return image if image == f"{repository}:1@{digest}" else None

        wait_for(pinned, timeout=90, message=f"{ns}_app pinned to {digest}")
        wait_for(
            lambda: (kube.get("ssvc/app", ns).get("status") or {}).get("imageDigest") == digest,
            timeout=60,
            message="status.imageDigest",
        )
    shown = kube.kubectl("get", "swarm", "-n", ns, "-o", "yaml").stdout
    shown += kube.kubectl("get", "events", "-n", ns, "-o", "yaml").stdout
    assert registries.password not in shown + log.read_text(errors="replace")


def test_the_operator_rolls_out_a_tag_pushed_again_within_its_image_interval(
    kube: Kube,
    kube_namespace: str,
    docker_api: docker.APIClient,
    registries: Registries,
    tmp_path: Path,
    scratch_images: list[str],
) -> None:
    ns = kube_namespace
    repository = f"{registries.plain}/sk/{ns}"

    def push_new() -> str:
        # The test engine runs tasks from local images only: pull what was pushed.
        image = build_distinct_image(docker_api)
        scratch_images.append(image)
        digest = push(docker_api, image, repository, "1")
        pull(docker_api, repository, "1")
        return digest

    def live_image() -> str | None:
        services = docker_api.services(filters={"name": f"{ns}_app"})
        return str(services[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]) if services else None

    first = push_new()
    kube.apply(
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app, namespace: {ns}}}
        spec:
          image: {repository}:1
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """
    )
    interval = 2.0
    # The resync (30 s) is far longer than the interval: only the image interval can roll it out in time.
    with operator(kube, ns, tmp_path / "operator.log", "--image-interval", f"{interval:g}s") as op:
        wait_for(lambda: live_image() == f"{repository}:1@{first}", timeout=90, message=f"{ns}_app pinned to {first}")
        second = push_new()
        pushed_at = time.monotonic()
        wait_for(
            lambda: live_image() == f"{repository}:1@{second}",
            timeout=30,
            message=f"{ns}_app rolled out to {second}",
        )
        took = time.monotonic() - pushed_at
        print(f"\na tag pushed again rolled out by the operator in {took:.2f} s (image interval {interval:g} s)")
        assert took < interval + 8, took  # the interval and a pass, with room for a busy machine
        wait_for(
            lambda: (kube.get("ssvc/app", ns).get("status") or {}).get("imageDigest") == second,
            timeout=30,
            message="status.imageDigest names the new digest",
        )
        assert "pass (image interval)" in op.logs()  # at -vv the operator names what woke each pass
        assert "Traceback" not in op.logs()
