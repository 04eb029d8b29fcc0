"""Images pinned to registry digests, as ``docker stack deploy`` pins them, against real registries.

The test registries (tests/registry_fixtures.py) are Debian's distribution registry on loopback.
The test engine runs tasks only from local images (dockerd's DOCKER_SERVICE_PREFER_OFFLINE_IMAGE,
see ./dev): a test pulls what it pushed before a task needs it; what is under test, the service
spec the engine is given and keeps, does not depend on that.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
import requests

from cli_helpers import sk, write_spec
from controller_helpers import controller, free_port
from git_helpers import GitRepo, git, sync_process
from helpers import wait_for
from registry_fixtures import Registries, build_distinct_image, pull, push
from swarmkeeper.engine.reconcile import reconcile
from swarmkeeper.loading import load_paths
from swarmkeeper.swarm.connect import connect


def service(folder: Path, ns: str, image: str, *, resolve: str | None = None, name: str = "app") -> None:
    extra = f"\n          resolveImage: {resolve}" if resolve else ""
    write_spec(
        folder,
        f"{name}.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: {name}, namespace: {ns}}}
        spec:
          image: {image}
          command: [sleep, "1d"]
          stopGracePeriod: 1s{extra}
        """,
    )


def live_image(api: docker.APIClient, name: str) -> str:
    return str(api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def push_new(api: docker.APIClient, repository: str, scratch: list[str]) -> str:
    image = build_distinct_image(api)
    scratch.append(image)
    digest = push(api, image, repository, "1")
    pull(api, repository, "1")
    return digest


def test_a_tag_is_pinned_to_its_digest_and_a_new_push_rolls_out(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    first = push_new(docker_api, repository, scratch_images)
    service(specs_dir, namespace, f"{repository}:1")
    res = sk("apply", specs_dir, "--wait", "--timeout", "60s")
    assert res.code == 0, res.output
    name = f"{namespace}_app"
    # As docker stack deploy: the task template names the digest, the stack label the image as written.
    assert live_image(docker_api, name) == f"{repository}:1@{first}", res.output
    labels = docker_api.inspect_service(name)["Spec"]["Labels"]
    assert labels["com.docker.stack.image"] == f"{repository}:1"
    got = json.loads(sk("get", "services", "-n", namespace, "-o", "json").stdout)
    assert got[0]["status"]["imageDigest"] == first

    # Unchanged tag: nothing to do.
    assert sk("diff", specs_dir).code == 0
    # The tag pushed again: the moved digest is a change of its own, and apply rolls it out.
    second = push_new(docker_api, repository, scratch_images)
    plan = sk("diff", specs_dir)
    assert plan.code == 1, plan.output
    assert first in plan.stdout and second in plan.stdout and "ContainerSpec.Image" in plan.stdout
    res = sk("apply", specs_dir, "--wait", "--timeout", "60s")
    assert res.code == 0, res.output
    assert live_image(docker_api, name) == f"{repository}:1@{second}"


def test_changed_keeps_the_pin_until_the_image_changes_and_never_runs_the_tag(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    first = push_new(docker_api, repository, scratch_images)
    service(specs_dir, namespace, f"{repository}:1", resolve="changed")
    service(specs_dir, namespace, f"{repository}:1", resolve="never", name="loose")
    assert sk("apply", specs_dir).code == 0
    assert live_image(docker_api, f"{namespace}_app") == f"{repository}:1@{first}"
    assert live_image(docker_api, f"{namespace}_loose") == f"{repository}:1"
    push_new(docker_api, repository, scratch_images)
    # changed: the tag moved, but the spec did not: no change, the service keeps its digest.
    assert sk("diff", specs_dir).code == 0
    # Another image in the spec: resolved again.
    other = push(docker_api, scratch_images[-1], repository, "2")
    service(specs_dir, namespace, f"{repository}:2", resolve="changed")
    assert sk("apply", specs_dir).code == 0
    assert live_image(docker_api, f"{namespace}_app") == f"{repository}:2@{other}"


def test_one_registry_request_per_image_per_interval(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    push_new(docker_api, repository, scratch_images)
    for i in range(5):
        service(specs_dir, namespace, f"{repository}:1", name=f"s{i}")
    manifests = load_paths([specs_dir]).manifests
    client = connect()

    def distribution_calls() -> int:
        return sum(n for (method, path), n in client.calls.items() if path.startswith("/distribution"))

    assert reconcile(client, manifests).ok
    assert distribution_calls() == 1  # five services, one image: one request
    for _ in range(3):  # passes within the interval ask nothing
        client.calls.clear()
        again = reconcile(client, manifests)
        assert again.plan.empty and distribution_calls() == 0, client.calls


@contextmanager
def registry_process(tmp_path: Path, notify: str | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A registry of the test's own (Debian's docker-registry), which the test may stop; with
    ``notify`` (URL, token) it sends its push notifications there."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        textwrap.dedent(
            f"""
            version: 0.1
            storage: {{filesystem: {{rootdirectory: {tmp_path / "data"}}}}}
            http: {{addr: 127.0.0.1:{port}}}
            """
        )
        + (notify or "")
    )
    binary = "/usr/bin/docker-registry"
    assert os.access(binary, os.X_OK), f"{binary} is missing: ./dev installs docker-registry"
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"

    def answers() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(answers, timeout=30, message=f"registry {host} answering")
        yield host, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with registry_process(tmp_path) as registry:
        yield registry


def test_a_registry_away_keeps_the_last_digest_and_says_why(
    docker_api: docker.APIClient,
    own_registry: tuple[str, subprocess.Popen[bytes]],
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    host, proc = own_registry
    repository = f"{host}/sk/{namespace}"
    first = push_new(docker_api, repository, scratch_images)
    service(specs_dir, namespace, f"{repository}:1")
    assert sk("apply", specs_dir).code == 0
    name = f"{namespace}_app"
    version = docker_api.inspect_service(name)["Version"]["Index"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    # Away: no rollout, the last good digest runs on, and the service's status says why.
    manifests = load_paths([specs_dir]).manifests
    outcome = reconcile(connect(), manifests)
    assert outcome.ok and outcome.plan.empty, [s.describe() for s in outcome.plan.steps]
    assert live_image(docker_api, name) == f"{repository}:1@{first}"
    assert docker_api.inspect_service(name)["Version"]["Index"] == version
    status = outcome.statuses[manifests[0].key]
    resolved = next(c for c in status.conditions if c.type == "ImageResolved")
    assert resolved.status == "False" and resolved.reason == "RegistryError"
    assert host in resolved.message


def test_a_private_registry_with_the_login_of_the_docker_config(
    docker_api: docker.APIClient,
    isolated_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    tmp_path: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.tls}/sk/{namespace}"
    image = build_distinct_image(docker_api)
    scratch_images.append(image)
    digest = push(isolated_api, image, repository, "1", auth=registries.auth())
    pull(isolated_api, repository, "1", auth=registries.auth())
    service(specs_dir, namespace, f"{repository}:1")

    def docker_config(password: str) -> dict[str, str]:
        folder = tmp_path / f"docker-{len(password)}-{password[:1]}"
        folder.mkdir(exist_ok=True)
        token = base64.b64encode(f"{registries.user}:{password}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {registries.tls: {"auth": token}}}))
        return {"DOCKER_CONFIG": str(folder)}

    # A refused login: the tag as written (never pinned before), and no password anywhere.
    wrong = "not-the-" + registries.password
    res = sk("apply", specs_dir, "-vv", env=docker_config(wrong))  # debug logging too
    assert res.code == 0, res.output
    assert live_image(docker_api, f"{namespace}_app") == f"{repository}:1"
    assert wrong not in res.output and registries.password not in res.output
    # The right login (docker login's config.json): pinned.
    res = sk("apply", specs_dir, "-vv", env=docker_config(registries.password))
    assert res.code == 0, res.output
    assert live_image(docker_api, f"{namespace}_app") == f"{repository}:1@{digest}"
    assert registries.password not in res.output
    shown = sk("get", "services", "-n", namespace, "-o", "yaml", env=docker_config(registries.password)).stdout
    assert registries.password not in shown


def test_watch_rolls_out_a_tag_pushed_again(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    first = push_new(docker_api, repository, scratch_images)
    service(specs_dir, namespace, f"{repository}:1")
    name = f"{namespace}_app"
    with controller(specs_dir, namespace, "--image-interval", "1s") as ctl:
        wait_for(lambda: name in {s["Spec"]["Name"] for s in docker_api.services()}, timeout=30, message=name)
        assert live_image(docker_api, name) == f"{repository}:1@{first}"
        second = push_new(docker_api, repository, scratch_images)
        pushed_at = time.monotonic()
        wait_for(
            lambda: live_image(docker_api, name) == f"{repository}:1@{second}",
            timeout=30,
            message=f"{name} rolled out to {second}",
        )
        took = time.monotonic() - pushed_at
        assert took < 10, took  # one interval (1 s) and a pass, with room for a busy machine
        # The spec file says which digest runs now, once the pass that rolled it writes status back.
        wait_for(
            lambda: f"imageDigest: {second}" in (specs_dir / "app.yaml").read_text(),
            timeout=15,
            message="status names the new digest",
        )
        assert "Traceback" not in ctl.logs()


def test_a_registry_notification_rolls_out_a_push_at_once(
    docker_api: docker.APIClient, namespace: str, specs_dir: Path, tmp_path: Path, scratch_images: list[str]
) -> None:
    hook, token = f"127.0.0.1:{free_port()}", f"tok-{namespace}"
    (tmp_path / "token").write_text(token + "\n")
    notify = textwrap.dedent(
        f"""
        notifications:
          endpoints:
            - name: swarmkeeper
              url: http://{hook}/registry
              headers: {{Authorization: [Bearer {token}]}}
              timeout: 2s
              threshold: 3
              backoff: 1s
        """
    )
    with registry_process(tmp_path, notify) as (host, _):
        repository = f"{host}/sk/{namespace}"
        push_new(docker_api, repository, scratch_images)
        service(specs_dir, namespace, f"{repository}:1")
        name = f"{namespace}_app"
        # Polling every hour: only the notification can roll the push out in time.
        args = ("--image-interval", "1h", "--registry-webhook-addr", hook, "--registry-webhook-token-file")
        with controller(specs_dir, namespace, *args, str(tmp_path / "token")) as ctl:
            wait_for(lambda: name in {s["Spec"]["Name"] for s in docker_api.services()}, timeout=30, message=name)
            second = push_new(docker_api, repository, scratch_images)
            pushed_at = time.monotonic()
            wait_for(
                lambda: live_image(docker_api, name) == f"{repository}:1@{second}",
                timeout=20,
                message=f"{name} rolled out to {second} on the registry's notification",
            )
            assert time.monotonic() - pushed_at < 10
            assert "registry notification" in ctl.logs() and token not in ctl.logs()
            # Without the token: 401, and nothing happens.
            forged = requests.post(f"http://{hook}/registry", data=b'{"events": []}', timeout=5)
            assert forged.status_code == 401


def test_a_cluster_names_its_registry_logins(
    docker_api: docker.APIClient,
    isolated_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.tls}/sk/{namespace}"
    image = build_distinct_image(docker_api)
    scratch_images.append(image)
    digest = push(isolated_api, image, repository, "1", auth=registries.auth())
    pull(isolated_api, repository, "1", auth=registries.auth())
    write_spec(
        specs_dir,
        "cluster.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmCluster
        metadata: {name: here}
        spec:
          engine: {host: "unix:///var/run/docker.sock", registryAuthFile: logins/config.json}
        """,
    )
    (specs_dir / "logins").mkdir()
    service(specs_dir, namespace, f"{repository}:1")
    spec = (specs_dir / "app.yaml").read_text().replace("spec:\n", "spec:\n  cluster: here\n")
    (specs_dir / "app.yaml").write_text(spec)

    def logins(password: str) -> None:
        token = base64.b64encode(f"{registries.user}:{password}".encode()).decode()
        (specs_dir / "logins" / "config.json").write_text(json.dumps({"auths": {registries.tls: {"auth": token}}}))

    # The local docker config has no login for this registry: only the cluster's file can pin it.
    empty = {"DOCKER_CONFIG": str(specs_dir / "nowhere")}
    logins("not-the-" + registries.password)
    res = sk("apply", specs_dir, env=empty)
    assert res.code == 0, res.output
    assert live_image(docker_api, f"{namespace}_app") == f"{repository}:1"
    assert registries.password not in res.output
    logins(registries.password)
    res = sk("apply", specs_dir, env=empty)
    assert res.code == 0, res.output
    assert live_image(docker_api, f"{namespace}_app") == f"{repository}:1@{digest}"
    assert registries.password not in res.output


def test_a_semver_range_runs_the_highest_tag_in_it_and_follows_new_ones(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    digests = {}
    for tag in ("1.2.0", "1.3.0", "v1.3.1", "2.0.0", "1.5.0rc1", "latest"):
        image = build_distinct_image(docker_api)
        scratch_images.append(image)
        digests[tag] = push(docker_api, image, repository, tag)
        pull(docker_api, repository, tag)
    service(specs_dir, namespace, f"{repository}:1.2.0")
    spec = (specs_dir / "app.yaml").read_text() + '  imagePolicy: {semver: ">=1.2 <2"}\n'
    (specs_dir / "app.yaml").write_text(spec)
    name = f"{namespace}_app"
    res = sk("apply", specs_dir)
    assert res.code == 0, res.output
    # The highest version inside the range: not 2.0.0, not the pre-release, not "latest".
    assert live_image(docker_api, name) == f"{repository}:v1.3.1@{digests['v1.3.1']}"
    with controller(specs_dir, namespace, "--image-interval", "1s"):
        image = build_distinct_image(docker_api)
        scratch_images.append(image)
        newer = push(docker_api, image, repository, "1.4.0")
        pull(docker_api, repository, "1.4.0")
        wait_for(
            lambda: live_image(docker_api, name) == f"{repository}:1.4.0@{newer}",
            timeout=30,
            message=f"{name} moved to 1.4.0",
        )
    bad = spec.replace(">=1.2 <2", "about two")
    (specs_dir / "app.yaml").write_text(bad)
    res = sk("validate", specs_dir)
    assert res.code == 2 and "imagePolicy.semver" in res.stderr and "is not a version range" in res.stderr


def test_sync_commits_the_image_that_runs_back_into_git(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    tmp_path: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    first = push_new(docker_api, repository, scratch_images)
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        "specs/app.yaml",
        f"""
        # The image line below is kept up to date by swarmkeeper sync --write-images.
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app, namespace: {namespace}}}
        spec:
          image: {repository}:1   # follows tag 1
          imagePolicy: {{}}
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """,
    )
    repo.commit("app: follow tag 1")
    name = f"{namespace}_app"
    args: list[str | Path] = ["--repo", repo.origin, "--path", "specs", "--name", f"{namespace}-git"]
    args += ["--cache-dir", tmp_path / "cache", "--interval", "1s", "--image-interval", "1s", "--write-images"]
    args += ["--git-author", "Image Bot <bot@example.com>", "--signoff"]

    def committed() -> str:
        return git("show", "main:specs/app.yaml", cwd=repo.origin)

    with sync_process(*args, log=tmp_path / "sync.log") as ctl:
        wait_for(lambda: f"image: {repository}:1@{first}   # follows tag 1" in committed(), timeout=60)
        assert live_image(docker_api, name) == f"{repository}:1@{first}"
        second = push_new(docker_api, repository, scratch_images)
        wait_for(lambda: f"image: {repository}:1@{second}   # follows tag 1" in committed(), timeout=60)
        wait_for(lambda: live_image(docker_api, name) == f"{repository}:1@{second}", timeout=30)
        log = git("log", "-1", "--format=%an <%ae>%n%B", "main", cwd=repo.origin)
        assert "Image Bot <bot@example.com>" in log
        assert f"{repository}:1@{first} -> {repository}:1@{second}" in log
        assert "Signed-off-by: Image Bot <bot@example.com>" in log
        # Everything but the image's value is as it was written, comments included.
        assert committed().startswith("# The image line below is kept up to date")
        assert "Traceback" not in ctl.logs()
