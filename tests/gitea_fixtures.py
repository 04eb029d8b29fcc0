"""A real Gitea on loopback for the commit-status and webhook tests, with sqlite in a temporary
folder: an admin user made with ``gitea admin user create``, an access token made through its API,
repositories pushed to over HTTP.

The binary is built from the Go module proxy by ``.ci/gitea-build.sh`` (``./dev test`` builds it,
once per version, and exports ``SWARMKEEPER_GITEA``). Without it the tests fail, never skip.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import requests

from controller_helpers import free_port
from git_helpers import git
from helpers import wait_for

CACHE = Path(os.environ.get("SWARMKEEPER_GITEA_CACHE") or Path.home() / ".cache" / "swarmkeeper-gitea")
BUILD_HINT = "build it with .ci/gitea-build.sh (./dev test does, once per version)"
USER = "sk-admin"


def gitea_home() -> Path:
    """The folder holding ``gitea`` and its ``static/`` files."""
    given = os.environ.get("SWARMKEEPER_GITEA")
    candidates = [Path(given)] if given else sorted(CACHE.glob("gitea-*"), reverse=True)
    for home in candidates:
        if (home / "gitea").is_file() and (home / "static" / "templates").is_dir():
            return home
    pytest.fail(f"no Gitea build found (SWARMKEEPER_GITEA or {CACHE}/gitea-*); {BUILD_HINT}", pytrace=False)


@dataclass
class Gitea:
    url: str  # http://127.0.0.1:PORT
    token: str
    work: Path

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(
            method, f"{self.url}/api/v1{path}", headers={"Authorization": f"token {self.token}"}, timeout=30, **kwargs
        )
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text[:300]}"
        return answer.json() if answer.content else None

    def create_repo(self, name: str) -> GiteaRepo:
        self.api("POST", "/user/repos", json={"name": name, "private": True, "default_branch": "main"})
        return GiteaRepo(self, name, self.work / "clones" / name)

    def statuses(self, repo: str, sha: str) -> list[dict[str, Any]]:
        """Every status set on ``sha``, newest first."""
        found = self.api("GET", f"/repos/{USER}/{repo}/statuses/{sha}", params={"limit": 50})
        return sorted(cast(list[dict[str, Any]], found), key=lambda s: -int(s["id"]))

    def add_push_hook(self, repo: str, url: str, secret: str) -> None:
        config = {"url": url, "content_type": "json", "secret": secret}
        self.api(
            "POST",
            f"/repos/{USER}/{repo}/hooks",
            json={"type": "gitea", "config": config, "events": ["push"], "active": True},
        )


class GiteaRepo:
    """A repository on the Gitea and a local clone to commit in."""

    def __init__(self, gitea: Gitea, name: str, work: Path) -> None:
        self.gitea, self.name, self.work = gitea, name, work
        work.mkdir(parents=True)
        git("init", "-q", "-b", "main", work)

    @property
    def url(self) -> str:
        return f"{self.gitea.url}/{USER}/{self.name}.git"

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())

    def commit(self, message: str) -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        # The token as the password, in the URL of this one command only (never in a remote's config).
        push = self.url.replace("http://", f"http://{USER}:{self.gitea.token}@")
        git("push", "-q", push, "HEAD:refs/heads/main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


APP_INI = """\
APP_NAME = swarmkeeper-test
RUN_MODE = prod
RUN_USER = {user}
WORK_PATH = {work}
; The test machine runs as root; Gitea refuses that unless told, and this one serves loopback only.
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
DISABLE_SSH = true
START_SSH_SERVER = false
; No bindata in the build: templates and locales are read from the build's static folder.
STATIC_ROOT_PATH = {static}
APP_DATA_PATH = {work}/data
OFFLINE_MODE = true
LFS_START_SERVER = false

[database]
DB_TYPE = sqlite3
PATH = {work}/gitea.db

[repository]
ROOT = {work}/repositories
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = {secret_key}
INTERNAL_TOKEN = {internal_token}

[service]
DISABLE_REGISTRATION = true

[webhook]
; Deliveries go to swarmkeeper sync's receiver on loopback, which Gitea refuses by default.
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[log]
MODE = file
LEVEL = Info
ROOT_PATH = {work}/log

[mailer]
ENABLED = false

[cron]
ENABLED = false

[actions]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db
"""


@pytest.fixture(scope="module")
def gitea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gitea]:
    home = gitea_home()
    work = tmp_path_factory.mktemp("gitea")
    port = free_port()
    ini = work / "app.ini"
    ini.write_text(
        APP_INI.format(
            user=subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip(),
            work=work,
            port=port,
            static=home / "static",
            secret_key=secrets.token_hex(32),
            internal_token=secrets.token_urlsafe(48),
        )
    )
    env = {**os.environ, "GITEA_WORK_DIR": str(work), "HOME": str(work)}
    binary = str(home / "gitea")

    def gitea_cli(*args: str) -> None:
        result = subprocess.run([binary, *args, "-c", str(ini)], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"gitea {args[0]}: {result.stdout[-2000:]}{result.stderr[-2000:]}"

    password = secrets.token_hex(16)
    gitea_cli("migrate")
    gitea_cli(
        "admin", "user", "create", "--admin", "--username", USER, "--password", password,
        "--email", "sk-admin@example.com", "--must-change-password=false",
    )  # fmt: skip
    log = (work / "web.log").open("wb")
    proc = subprocess.Popen([binary, "web", "-c", str(ini)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert proc.poll() is None, (work / "web.log").read_text()[-3000:]
            try:
                return requests.get(f"{url}/api/v1/version", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout=90, interval=0.2, message="Gitea did not start")
        answer = requests.post(
            f"{url}/api/v1/users/{USER}/tokens",
            auth=(USER, password),
            json={"name": "swarmkeeper-tests", "scopes": ["write:repository", "write:user"]},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        yield Gitea(url, answer.json()["sha1"], work)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
