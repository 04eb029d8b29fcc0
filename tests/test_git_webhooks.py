"""Push webhooks: GitHub, Gitea and GitLab deliveries verified against the secret; a bad or
missing signature is refused (401, logged without the secret) and changes nothing; a good push
for the tracked ref makes the controller fetch at once. The repository is served over smart HTTP
with a token, so the token path is exercised end to end."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import docker
import pytest
import requests

from git_helpers import (
    GitRepo,
    gitea_headers,
    github_headers,
    gitlab_headers,
    post_hook,
    push_event,
    service_label,
    smart_http,
    sync_process,
    web_spec,
)
from helpers import wait_for
from swarmkeeper.sources.webhook import Push, Route, Unverified, handle, verify

SECRET = b"webhook-secret-for-tests"
TOKEN = "git-access-token-for-tests"
REVISION = "io.swarmkeeper.revision"


def test_push_webhooks_trigger_a_fetch_and_bad_signatures_change_nothing(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repos" / "specs")
    repo.write("specs/web.yaml", web_spec(namespace, 1))
    first = repo.commit("release 1")
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    name = f"{namespace}_web"
    with smart_http(repo.root, token=TOKEN) as base:
        args: list[str | Path] = [
            "--repo", f"{base}/origin.git", "--path", "specs", "--name", f"{namespace}-hooks",
            "--cache-dir", tmp_path / "cache", "--interval", "1h",  # no polling: only webhooks fetch
            "--token-file", tmp_path / "token", "--webhook-secret-file", tmp_path / "secret",
        ]  # fmt: skip
        with sync_process(*args, log=tmp_path / "sync.log", webhook=True) as ctl:
            port = ctl.webhook_port
            assert port is not None
            wait_for(lambda: service_label(docker_api, name, REVISION) == first, timeout=60, message="never applied")
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200

            repo.write("specs/web.yaml", web_spec(namespace, 2))
            second = repo.commit("release 2")
            body = push_event("refs/heads/main", second)
            forged = github_headers(body, b"not-the-secret")
            assert post_hook(port, body, forged).status_code == 401
            assert post_hook(port, body, {"X-GitHub-Event": "push"}).status_code == 401
            assert post_hook(port, body, gitlab_headers(b"not-the-secret")).status_code == 401
            tampered = github_headers(body, SECRET)
            assert post_hook(port, body.replace(b"main", b"mainx"), tampered).status_code == 401
            time.sleep(3)
            assert service_label(docker_api, name, REVISION) == first  # nothing fetched, nothing changed

            other = push_event("refs/heads/feature", second)
            answer = post_hook(port, other, github_headers(other, SECRET))
            assert answer.status_code == 202 and "not tracked" in answer.text

            started = time.monotonic()
            assert post_hook(port, body, github_headers(body, SECRET)).status_code == 202
            wait_for(lambda: service_label(docker_api, name, REVISION) == second, timeout=30, message="github push")
            assert time.monotonic() - started < 15

            repo.write("specs/web.yaml", web_spec(namespace, 3))
            third = repo.commit("release 3")
            body = push_event("refs/heads/main", third)
            assert post_hook(port, body, gitlab_headers(SECRET)).status_code == 202
            wait_for(lambda: service_label(docker_api, name, REVISION) == third, timeout=30, message="gitlab push")

            repo.write("specs/web.yaml", web_spec(namespace, 4))
            fourth = repo.commit("release 4")
            body = push_event("refs/heads/main", fourth)
            path = f"/hooks/{namespace}-hooks"
            assert post_hook(port, body, gitea_headers(body, SECRET), path=path).status_code == 202
            wait_for(lambda: service_label(docker_api, name, REVISION) == fourth, timeout=30, message="gitea push")

            logs = ctl.logs()
            assert "webhook from 127.0.0.1 rejected" in logs
            assert SECRET.decode() not in logs and TOKEN not in logs


# -- verification without a controller --------------------------------------------------------


def test_each_provider_signature() -> None:
    body = push_event("refs/heads/main", "a" * 40)
    assert verify(github_headers(body, SECRET), body, SECRET) == "github"
    assert verify(gitea_headers(body, SECRET), body, SECRET) == "gitea"
    assert verify(gitlab_headers(SECRET), body, SECRET) == "gitlab"
    for headers in (github_headers(body, b"x" * 24), gitea_headers(body, b"x" * 24), gitlab_headers(b"x" * 24), {}):
        with pytest.raises(Unverified) as failure:
            verify(headers, body, SECRET)
        assert SECRET.decode() not in str(failure.value)


def test_handle_routes_by_secret_and_ref(caplog: pytest.LogCaptureFixture) -> None:
    pushed: list[tuple[str, Push]] = []
    routes = [
        Route("a", b"secret-of-a-xxxx", "main", lambda p: pushed.append(("a", p))),
        Route("b", b"secret-of-b-xxxx", "v1", lambda p: pushed.append(("b", p))),
    ]
    body = push_event("refs/heads/main", "c" * 40)
    assert handle(routes, github_headers(body, b"secret-of-a-xxxx"), body, "127.0.0.1")[0] == 202
    assert [(n, p.ref) for n, p in pushed] == [("a", "refs/heads/main")]
    tag = push_event("refs/tags/v1", "d" * 40)
    assert handle(routes, gitea_headers(tag, b"secret-of-b-xxxx"), tag, "127.0.0.1")[0] == 202
    assert pushed[-1][0] == "b"
    with caplog.at_level(logging.WARNING):
        assert handle(routes, github_headers(body, b"wrong-secret-xxx"), body, "10.0.0.9")[0] == 401
    assert "10.0.0.9 rejected" in caplog.text and "secret-of" not in caplog.text
    ping = {**github_headers(b"{}", b"secret-of-a-xxxx"), "X-GitHub-Event": "ping"}
    assert handle(routes, ping, b"{}", "127.0.0.1") == (200, "pong")
    assert len(pushed) == 2
