"""Commit statuses for GitHub and GitLab, as ``swarmkeeper sync`` sends them: each forge's REST
request (path, token header, body) received by a recording server on loopback, the options checked
before anything runs, and the locations guessed from --repo."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest
from pydantic import SecretStr

from cli_helpers import sk
from git_helpers import GitRepo, run_sync_once, web_spec
from swarmkeeper.sources.commit_status import CommitStatusConfig, Forge, guess_location, request_for

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "forge-token-for-tests"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@contextmanager
def forge() -> Iterator[tuple[str, list[Request]]]:
    """A server that answers 201 to every POST and records it; yields its URL and the requests."""
    seen: list[Request] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(Request(self.path, dict(self.headers.items()), json.loads(raw or b"{}")))
            self.send_response(201)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_request_shapes() -> None:
    def config(forge: Forge, repository: str = "acme/deploy") -> CommitStatusConfig:
        return CommitStatusConfig(forge, "https://api.example.com/", repository, SecretStr(TOKEN), "swarmkeeper/prod")

    url, headers, body = request_for(config("github"), SHA, "failure", "x" * 200)
    assert url == f"https://api.example.com/repos/acme/deploy/statuses/{SHA}"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert body["state"] == "failure" and body["context"] == "swarmkeeper/prod" and len(body["description"]) == 140
    url, headers, body = request_for(config("gitea"), SHA, "error", "engine away")
    assert url == f"https://api.example.com/api/v1/repos/acme/deploy/statuses/{SHA}"
    assert headers == {"Authorization": f"token {TOKEN}"}
    url, headers, body = request_for(config("gitlab", "group/sub/deploy"), SHA, "error", "engine away")
    assert url == f"https://api.example.com/api/v4/projects/group%2Fsub%2Fdeploy/statuses/{SHA}"
    assert headers == {"PRIVATE-TOKEN": TOKEN}
    assert body == {"state": "failed", "name": "swarmkeeper/prod", "description": "engine away"}


def test_locations_guessed_from_the_repository_url() -> None:
    assert guess_location("github", "https://github.com/acme/deploy.git") == ("https://api.github.com", "acme/deploy")
    assert guess_location("github", "git@ghe.example.com:acme/deploy.git") == (
        "https://ghe.example.com/api/v3",
        "acme/deploy",
    )
    assert guess_location("gitea", "http://127.0.0.1:3000/sk/specs.git") == ("http://127.0.0.1:3000", "sk/specs")
    assert guess_location("gitlab", "ssh://git@gitlab.com/group/sub/deploy.git") == (
        "https://gitlab.com",
        "group/sub/deploy",
    )
    assert guess_location("gitea", "/srv/git/specs") == (None, None)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--commit-status", "bitbucket"], "--commit-status: 'bitbucket'"),
        (["--commit-status-url", "https://x"], "--commit-status-url: needs --commit-status"),
        (["--commit-status", "gitea"], "--commit-status-url: the gitea API's address is needed"),
        (["--commit-status", "gitea", "--commit-status-url", "http://x"], "--commit-status-repo: OWNER/NAME"),
        (
            ["--commit-status", "gitea", "--commit-status-url", "http://x", "--commit-status-repo", "a/b"],
            "--commit-status-token-file: a token is needed",
        ),
        (["--commit-status", "gitlab", "--commit-status-url", "ftp://x"], "an http(s) URL"),
    ],
)
def test_options_are_checked_before_anything_runs(args: list[str], complaint: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    result = sk("sync", "--repo", repo.origin, "--once", *args)
    assert result.code == 2, result.output
    assert complaint in result.output


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_sync_posts_the_status_of_the_revision_it_applies(
    kind: str, docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/web.yaml", web_spec(namespace, 1))
    sha = repo.commit("release 1")
    (tmp_path / "token").write_text(TOKEN + "\n")
    with forge() as (url, seen):
        result = run_sync_once(
            "--repo", repo.url, "--path", "specs", "--name", f"{namespace}-{kind}", "--cache-dir", tmp_path / "cache",
            "--commit-status", kind, "--commit-status-url", url, "--commit-status-repo", "acme/deploy",
            "--commit-status-token-file", tmp_path / "token",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [request] = seen  # one pass: the revision is attempted; its release is followed by later passes
    if kind == "github":
        assert request.path == f"/repos/acme/deploy/statuses/{sha}"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.body == {
            "state": "pending",
            "context": f"swarmkeeper/{namespace}-github",
            "description": "applying to the swarm",
        }
    else:
        assert request.path == f"/api/v4/projects/acme%2Fdeploy/statuses/{sha}"
        assert request.headers["PRIVATE-TOKEN"] == TOKEN
        assert request.body["state"] == "pending" and request.body["name"] == f"swarmkeeper/{namespace}-gitlab"
    assert TOKEN not in result.stdout + result.stderr
