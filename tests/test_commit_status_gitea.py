"""``swarmkeeper sync`` against a real Gitea (built from the Go module proxy, on loopback): each
revision's result is a commit status read back through Gitea's API — pending, then success once its
services converged; failure, with file, line and field, for a commit whose specs are invalid — and
Gitea's own signed push webhooks make sync fetch at once."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from git_helpers import service_label, sync_process, web_spec
from gitea_fixtures import Gitea, gitea  # noqa: F401 (the fixture)
from helpers import wait_for

pytestmark = pytest.mark.timeout(240)

REVISION = "io.swarmkeeper.revision"


def states(statuses: list[dict[str, Any]]) -> list[str]:
    """Oldest first."""
    return [s["status"] for s in reversed(statuses)]


def test_revision_results_are_commit_statuses_in_gitea(
    gitea: Gitea,  # noqa: F811
    docker_api: docker.APIClient,
    local_image: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    repo = gitea.create_repo(f"specs-{namespace}")
    repo.write("specs/web.yaml", web_spec(namespace, 1))
    pushed = time.monotonic()
    first = repo.commit("release 1")
    token_file = tmp_path / "token"
    token_file.write_text(gitea.token + "\n")
    name = f"{namespace}-gitea"
    args: list[str | Path] = [
        "--repo", repo.url, "--path", "specs", "--name", name, "--cache-dir", tmp_path / "cache",
        "--interval", "1s", "--token-file", token_file, "--username", "sk-admin", "--commit-status", "gitea",
    ]  # fmt: skip
    with sync_process(*args, log=tmp_path / "sync.log") as ctl:

        def released(sha: str) -> list[dict[str, Any]] | None:
            found = gitea.statuses(repo.name, sha)
            return found if found and found[0]["status"] == "success" else None

        statuses = wait_for(lambda: released(first), timeout=90, interval=0.1, message="no success status")
        print(f"release 1: success {time.monotonic() - pushed:.1f} s after the push")
        assert states(statuses) == ["pending", "success"]
        assert {s["context"] for s in statuses} == {f"swarmkeeper/{name}"}
        assert statuses[0]["description"] == "released: its services converged"
        assert service_label(docker_api, f"{namespace}_web", REVISION) == first

        repo.write("specs/web.yaml", web_spec(namespace, 2).replace('env: {RELEASE: "2"}', "replicas: lots"))
        pushed = time.monotonic()
        second = repo.commit("a mistake")

        def refused() -> list[dict[str, Any]] | None:
            found = gitea.statuses(repo.name, second)
            return found if found and found[0]["status"] == "failure" else None

        statuses = wait_for(refused, timeout=60, interval=0.1, message="no failure status for the invalid commit")
        print(f"invalid revision: failure {time.monotonic() - pushed:.1f} s after the push")
        assert states(statuses) == ["failure"]  # never attempted, so never pending
        description = statuses[0]["description"]
        assert description.startswith("invalid specs (1 error): specs/web.yaml:")
        assert "spec.replicas" in description
        assert service_label(docker_api, f"{namespace}_web", REVISION) == first  # the last good one stays

        repo.write("specs/web.yaml", web_spec(namespace, 3))
        third = repo.commit("fixed")
        statuses = wait_for(lambda: released(third), timeout=90, interval=0.1, message="the fix was not released")
        assert states(statuses) == ["pending", "success"]
        assert gitea.statuses(repo.name, second)[0]["status"] == "failure"
        logs = ctl.logs()
    assert gitea.token not in logs


def test_gitea_push_webhooks_make_sync_fetch(
    gitea: Gitea,  # noqa: F811
    docker_api: docker.APIClient,
    local_image: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    repo = gitea.create_repo(f"hooks-{namespace}")
    repo.write("specs/web.yaml", web_spec(namespace, 1))
    first = repo.commit("release 1")
    secret = uuid.uuid4().hex
    (tmp_path / "secret").write_text(secret + "\n")
    (tmp_path / "token").write_text(gitea.token + "\n")
    args: list[str | Path] = [
        "--repo", repo.url, "--path", "specs", "--name", f"{namespace}-hooks", "--cache-dir", tmp_path / "cache",
        "--interval", "1h",  # no polling: only the first fetch and webhooks
        "--token-file", tmp_path / "token", "--username", "sk-admin", "--webhook-secret-file", tmp_path / "secret",
    ]  # fmt: skip
    name = f"{namespace}_web"
    with sync_process(*args, log=tmp_path / "sync.log", webhook=True) as ctl:
        wait_for(lambda: service_label(docker_api, name, REVISION) == first, timeout=60, message="never applied")
        gitea.add_push_hook(repo.name, f"http://127.0.0.1:{ctl.webhook_port}/hooks/{namespace}-hooks", secret)
        pushed_shas = []
        for release in (2, 3):
            repo.write("specs/web.yaml", web_spec(namespace, release))
            pushed = time.monotonic()
            sha = repo.commit(f"release {release}")
            pushed_shas.append(sha)

            def applied(sha: str = sha) -> bool:
                return service_label(docker_api, name, REVISION) == sha

            wait_for(
                applied,
                timeout=30,
                interval=0.05,
                message=f"release {release} not applied after Gitea's webhook",
            )
            print(f"release {release}: in the swarm {time.monotonic() - pushed:.2f} s after the push")
        logs = ctl.logs()
    # Polling is off, so each release was fetched on a webhook, which Gitea signed and sync verified.
    # (Gitea queues its deliveries: one may name an earlier commit, and the fetch finds the newest.)
    lines = logs.splitlines()
    since = next(i for i, line in enumerate(lines) if f"main is at {first[:12]}" in line)
    for sha in pushed_shas:
        found = next(i for i, line in enumerate(lines) if f"main is at {sha[:12]}" in line)
        assert any("webhook (gitea) push to refs/heads/main" in line for line in lines[since:found]), sha
        since = found
    assert "rejected" not in logs
    assert secret not in logs and gitea.token not in logs
