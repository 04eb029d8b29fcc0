"""Images pinned to registry digests, as ``docker stack deploy`` pins them, against real registries.

The test registries (tests/registry_fixtures.py) are Debian's distribution registry on loopback.
The test engine runs tasks only from local images (dockerd's DOCKER_SERVICE_PREFER_OFFLINE_IMAGE,
see ./dev): a test pulls what it pushed before a task needs it; what is under test, the service
spec the engine is given and keeps, does not depend on that.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from cli_helpers import sk, write_spec
from controller_helpers import controller, free_port
from git_helpers import GitRepo, git, sync_process
from helpers import running_count, wait_for
from registry_fixtures import BASE_IMAGE, Registries, build_distinct_image, pull, push
from swarmkeeper.api import Condition, ObjectStatus
from swarmkeeper.engine.reconcile import Options, reconcile
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


def login_config(folder: Path, registries: Registries, password: str) -> dict[str, str]:
    """``DOCKER_CONFIG`` naming a config.json with a login for the TLS registry, as ``docker login``
    writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{registries.user}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {registries.tls: {"auth": token}}}))
    return {"DOCKER_CONFIG": str(folder)}


def leaks(text: str, registries: Registries) -> bool:
    """Whether ``text`` holds the TLS registry's password, plainly or as a config.json/header token."""
    token = base64.b64encode(f"{registries.user}:{registries.password}".encode()).decode()
    return registries.password in text or token in text


def image_condition(status: ObjectStatus) -> Condition:
    return next(c for c in status.conditions if c.type == "ImageResolved")


def test_two_hundred_services_ask_the_registry_once_per_image_per_interval(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    digests: dict[str, str] = {}
    for tag in ("a", "b", "c", "d"):
        image = build_distinct_image(docker_api)
        scratch_images.append(image)
        digests[tag] = push(docker_api, image, repository, tag)
    tags = sorted(digests)
    # No replicas: what is under test is the pin in each service's spec, not its tasks.
    documents = [
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: s{i}, namespace: {namespace}}}
        spec:
          image: {repository}:{tags[i % len(tags)]}
          replicas: 0
          command: [sleep, "1d"]
        """
        for i in range(200)
    ]
    write_spec(specs_dir, "many.yaml", "---\n".join(textwrap.dedent(d).lstrip() for d in documents))
    manifests = load_paths([specs_dir]).manifests
    assert len(manifests) == 200
    client = connect()

    def distribution_calls() -> Counter[str]:
        return Counter({path: n for (_, path), n in client.calls.items() if path.startswith("/distribution")})

    first = reconcile(client, manifests, Options(status=False))
    assert first.ok and len(first.plan.steps) == 200, first.errors
    asked = distribution_calls()
    # 200 services, four images: four requests, one per image.
    assert sum(asked.values()) == 4 and all(n == 1 for n in asked.values()), asked
    running = docker_api.services(filters={"label": f"com.docker.stack.namespace={namespace}"})
    assert len(running) == 200
    for svc in running:
        i = int(svc["Spec"]["Name"].removeprefix(f"{namespace}_s"))
        tag = tags[i % len(tags)]
        assert svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{repository}:{tag}@{digests[tag]}"
    for _ in range(3):  # passes within the interval ask nothing
        client.calls.clear()
        again = reconcile(client, manifests, Options(status=False))
        assert again.plan.empty and not distribution_calls(), client.calls
    # Once the interval is over, each image is asked again, once.
    client.calls.clear()
    later = reconcile(client, manifests, Options(status=False, image_interval=0))
    assert later.plan.empty and sum(distribution_calls().values()) == 4, client.calls


def test_a_tag_deleted_after_the_pin_keeps_the_last_digest_and_says_why(
    docker_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.plain}/sk/{namespace}"
    first = push_new(docker_api, repository, scratch_images)
    service(specs_dir, namespace, f"{repository}:1")
    assert sk("apply", specs_dir).code == 0
    name = f"{namespace}_app"
    assert live_image(docker_api, name) == f"{repository}:1@{first}"
    version = docker_api.inspect_service(name)["Version"]["Index"]
    # The manifest deleted from the registry (the distribution API; its tags go with it).
    deleted = requests.delete(f"http://{registries.plain}/v2/sk/{namespace}/manifests/{first}", timeout=10)
    assert deleted.status_code == 202, deleted.text
    assert registries.manifest_digest(registries.plain, f"sk/{namespace}", "1") is None

    res = sk("apply", specs_dir, "-vv")
    assert res.code == 0 and "Traceback" not in res.output, res.output
    manifests = load_paths([specs_dir]).manifests
    outcome = reconcile(connect(), manifests)
    assert outcome.ok and outcome.plan.empty, [s.describe() for s in outcome.plan.steps]
    assert live_image(docker_api, name) == f"{repository}:1@{first}"
    assert docker_api.inspect_service(name)["Version"]["Index"] == version
    resolved = image_condition(outcome.statuses[manifests[0].key])
    assert resolved.status == "False" and resolved.reason == "RegistryError"
    assert f"{repository}:1: manifest unknown" in resolved.message, resolved.message


def test_a_refused_login_keeps_the_pinned_digest_and_shows_no_password(
    docker_api: docker.APIClient,
    isolated_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    tmp_path: Path,
    scratch_images: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repository = f"{registries.tls}/sk/{namespace}"
    image = build_distinct_image(docker_api)
    scratch_images.append(image)
    digest = push(isolated_api, image, repository, "1", auth=registries.auth())
    pull(isolated_api, repository, "1", auth=registries.auth())
    service(specs_dir, namespace, f"{repository}:1")
    name = f"{namespace}_app"
    # Applied as the controller below's source, so that it may write the status of the service.
    right = login_config(tmp_path / "right", registries, registries.password)
    res = sk("apply", specs_dir, "--source", namespace, env=right)
    assert res.code == 0, res.output
    assert live_image(docker_api, name) == f"{repository}:1@{digest}"
    version = docker_api.inspect_service(name)["Version"]["Index"]

    wrong = login_config(tmp_path / "wrong", registries, "not-the-" + registries.password)
    res = sk("apply", specs_dir, "--source", namespace, "-vv", env=wrong)  # debug logging too
    assert res.code == 0 and "Traceback" not in res.output, res.output
    assert live_image(docker_api, name) == f"{repository}:1@{digest}"
    assert docker_api.inspect_service(name)["Version"]["Index"] == version
    shown = sk("get", "services", "-n", namespace, "-o", "yaml", env=wrong)
    assert shown.code == 0, shown.output
    # The status a controller writes back into the spec file says why, without the password.
    monkeypatch.setenv("DOCKER_CONFIG", wrong["DOCKER_CONFIG"])
    with controller(specs_dir, namespace, "--image-interval", "1s") as ctl:
        wait_for(
            lambda: "RegistryError" in (specs_dir / "app.yaml").read_text(),
            timeout=30,
            message="the status names the registry's error",
        )
        logs = ctl.logs()
    written = (specs_dir / "app.yaml").read_text()
    assert "type: ImageResolved" in written and "status: 'False'" in written, written
    assert "unauthorized" in written.lower() or "authentication required" in written.lower(), written
    assert live_image(docker_api, name) == f"{repository}:1@{digest}"
    assert docker_api.inspect_service(name)["Version"]["Index"] == version
    assert "Traceback" not in logs
    for text in (res.output, shown.output, written, logs):
        assert not leaks(text, registries), "the registry password leaks"


def test_an_image_no_registry_knows_runs_by_its_tag_with_one_warning(
    docker_api: docker.APIClient, namespace: str, specs_dir: Path
) -> None:
    image = f"local/{namespace}:1"  # only in the local engine, under a name no other test warns about
    docker_api.tag(BASE_IMAGE, f"local/{namespace}", "1")
    name = f"{namespace}_app"
    service(specs_dir, namespace, image)
    try:
        with controller(specs_dir, namespace, "--image-interval", "1s") as ctl:
            wait_for(lambda: running_count(docker_api, name) == 1, timeout=60, message=f"{name} running")
            assert live_image(docker_api, name) == image
            # Passes go on asking the registry every interval; the warning is said once all the same.
            passes = ctl.metric("swarmkeeper_reconcile_total")
            wait_for(lambda: ctl.metric("swarmkeeper_reconcile_total") >= passes + 3, timeout=30, message="passes")
            logs = ctl.logs()
    finally:
        with contextlib.suppress(docker.errors.APIError):
            docker_api.remove_image(image)  # the tag only: busybox keeps the image
    warning = f"image {image} could not be pinned to a registry digest ("
    lines = [line for line in logs.splitlines() if warning in line]
    assert len(lines) == 1, logs
    assert "WARNING" in lines[0] and f"each node uses its own {image}, which may differ between nodes" in lines[0]
    assert live_image(docker_api, name) == image


def test_a_semver_range_lists_the_tags_of_a_tls_registry_with_its_login(
    docker_api: docker.APIClient,
    isolated_api: docker.APIClient,
    registries: Registries,
    namespace: str,
    specs_dir: Path,
    tmp_path: Path,
    scratch_images: list[str],
) -> None:
    repository = f"{registries.tls}/sk/{namespace}"
    digests = {}
    for tag in ("1.0.0", "1.1.0", "2.0.0"):
        image = build_distinct_image(docker_api)
        scratch_images.append(image)
        digests[tag] = push(isolated_api, image, repository, tag, auth=registries.auth())
    service(specs_dir, namespace, f"{repository}:1.0.0")
    (specs_dir / "app.yaml").write_text((specs_dir / "app.yaml").read_text() + '  imagePolicy: {semver: ">=1 <2"}\n')
    name = f"{namespace}_app"
    # Without the login the registry lists nothing: the image runs as written, and the refusal is said.
    res = sk("apply", specs_dir, "-vv", env={"DOCKER_CONFIG": str(tmp_path / "no-login")})
    assert res.code == 0, res.output
    assert live_image(docker_api, name) == f"{repository}:1.0.0"
    manifests = load_paths([specs_dir]).manifests
    wrong = login_config(tmp_path / "wrong", registries, "not-the-" + registries.password)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DOCKER_CONFIG", wrong["DOCKER_CONFIG"])
        refused = reconcile(connect(), manifests)
    assert refused.plan.empty, [s.describe() for s in refused.plan.steps]
    condition = image_condition(refused.statuses[manifests[0].key])
    assert condition.status == "False", condition
    assert f"list the tags of {repository}: the login was refused" in condition.message, condition
    # With it: the tags are listed over TLS (verified against the test CA) and the highest in range runs.
    right = login_config(tmp_path / "right", registries, registries.password)
    res = sk("apply", specs_dir, "-vv", env=right)
    assert res.code == 0, res.output
    assert live_image(docker_api, name) == f"{repository}:1.1.0@{digests['1.1.0']}"
    for text in (res.output, str(condition)):
        assert not leaks(text, registries), "the registry password leaks"


def test_sync_commits_the_image_to_the_image_branch_and_leaves_the_tracked_one(
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
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: app, namespace: {namespace}}}
        spec:
          image: {repository}:1
          imagePolicy: {{}}
          command: [sleep, "1d"]
          stopGracePeriod: 1s
        """,
    )
    repo.write("README.md", "not a spec\n")
    tracked = repo.commit("app: follow tag 1")  # the image branch does not exist yet: sync starts it here
    name = f"{namespace}_app"
    args: list[str | Path] = ["--repo", repo.origin, "--path", "specs", "--name", f"{namespace}-git"]
    args += ["--cache-dir", tmp_path / "cache", "--interval", "1s", "--image-interval", "1s"]
    args += ["--write-images", "--image-branch", "images", "--git-author", "Image Bot <bot@example.com>"]

    def at(branch: str) -> str:
        return git("show", f"{branch}:specs/app.yaml", cwd=repo.origin)

    with sync_process(*args, log=tmp_path / "sync.log") as ctl:
        wait_for(lambda: f"image: {repository}:1@{first}\n" in at("images"), timeout=60, message="first pin")
        assert live_image(docker_api, name) == f"{repository}:1@{first}"
        second = push_new(docker_api, repository, scratch_images)
        wait_for(lambda: f"image: {repository}:1@{second}\n" in at("images"), timeout=60, message="second pin")
        wait_for(lambda: live_image(docker_api, name) == f"{repository}:1@{second}", timeout=30)
        log = git("log", "-1", "--format=%an <%ae>%n%B", "images", cwd=repo.origin)
        assert "Image Bot <bot@example.com>" in log
        assert f"SwarmService {namespace}/app: {repository}:1 -> {repository}:1@{second}" in log, log
        # The image branch grows on top of the tracked commit, one commit per pin; the tracked branch,
        # the one applied, is as it was written.
        assert git("rev-parse", "images~2", cwd=repo.origin) == tracked
        assert git("rev-parse", "main", cwd=repo.origin) == tracked
        assert f"image: {repository}:1\n" in at("main")
        assert git("show", "images:README.md", cwd=repo.origin).strip() == "not a spec"  # the whole tree
        # Only the image line differs.
        before, after = at("main").splitlines(), at("images").splitlines()
        assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [4]
        assert "Traceback" not in ctl.logs()
