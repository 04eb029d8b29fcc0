"""A revision's result as a Git commit status: GitHub, Gitea/Forgejo and GitLab, by their REST APIs.

``sync`` says ``pending`` when it attempts a revision, ``success`` once its services converged,
``failure`` (with the reason) when its release failed or its specs were refused as invalid, and
``error`` when the swarm could not take it (an engine away, changes refused). The forge shows it
next to the commit, as it shows CI results.

Posts go through a bounded queue and a worker thread, so a slow or unreachable forge never slows a
pass; identical posts for a commit are sent once. The token is only ever put in a request header:
errors name the forge, the repository, the commit and the HTTP status, never the token or a
response body (which may echo the request).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, urlsplit

import requests
from pydantic import SecretStr

from .git_transport import parse_remote

log = logging.getLogger(__name__)

Forge = Literal["github", "gitea", "gitlab"]
State = Literal["pending", "success", "failure", "error"]
FORGES: tuple[Forge, ...] = ("github", "gitea", "gitlab")
MAX_DESCRIPTION = 140  # GitHub's limit; the others take more, but a status is a one-line summary
_GITLAB_STATE: dict[State, str] = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class CommitStatusConfig:
    forge: Forge
    api: str  # the API's base: https://api.github.com, https://gitea.example.com, https://gitlab.com
    repository: str  # owner/name (GitLab: group/subgroup/project)
    token: SecretStr = field(repr=False)
    context: str = "swarmkeeper"  # the status' name, one per source

    @property
    def display(self) -> str:
        return f"{self.forge} {self.repository}"


def guess_location(forge: Forge, repo_url: str) -> tuple[str | None, str | None]:
    """The API base and repository path a forge most likely has for ``repo_url`` (None: unknown)."""
    try:
        remote = parse_remote(repo_url)
    except ValueError:
        return None, None
    if remote.scheme not in ("http", "https", "ssh") or not remote.host:
        return None, None
    path = remote.path.strip("/").removesuffix(".git") or None
    if remote.scheme in ("http", "https"):
        port = f":{remote.port}" if remote.port else ""
        base = f"{remote.scheme}://{remote.host}{port}"
    else:
        base = f"https://{remote.host}"
    if forge == "github":
        base = "https://api.github.com" if remote.host == "github.com" else f"{base}/api/v3"
    return base, path


def request_for(
    config: CommitStatusConfig, sha: str, state: State, description: str
) -> tuple[str, dict[str, str], dict[str, str]]:
    """(URL, headers, JSON body) of the request that sets ``sha``'s status; pure."""
    api = config.api.rstrip("/")
    text = description if len(description) <= MAX_DESCRIPTION else description[: MAX_DESCRIPTION - 1] + "…"
    token = config.token.get_secret_value()
    if config.forge == "gitlab":
        url = f"{api}/api/v4/projects/{quote(config.repository, safe='')}/statuses/{sha}"
        body = {"state": _GITLAB_STATE[state], "name": config.context, "description": text}
        return url, {"PRIVATE-TOKEN": token}, body
    owner_name = "/".join(quote(p, safe="") for p in config.repository.split("/"))
    body = {"state": state, "context": config.context, "description": text}
    if config.forge == "github":
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        return f"{api}/repos/{owner_name}/statuses/{sha}", headers, body
    return f"{api}/api/v1/repos/{owner_name}/statuses/{sha}", {"Authorization": f"token {token}"}, body


@dataclass(frozen=True)
class _Post:
    sha: str
    state: State
    description: str


class CommitStatusReporter:
    """Posts statuses in the background, in order, each (commit, state, description) once."""

    QUEUE = 64
    RETRIES = (1.0, 3.0)  # waits between attempts
    TIMEOUT = 10.0

    def __init__(self, config: CommitStatusConfig, name: str) -> None:
        if urlsplit(config.api).scheme not in ("http", "https"):
            raise ValueError(f"{config.api!r}: the API base must be an http(s) URL")
        self.config = config
        self.name = name  # the source's, for log lines
        self._queue: queue.Queue[_Post | None] = queue.Queue(self.QUEUE)
        self._last: dict[str, tuple[State, str]] = {}  # commit → what was last queued for it
        self._lock = threading.Lock()
        self._failing = False
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"commit-status {name}", daemon=True)
        self._thread.start()

    def report(self, sha: str, state: State, description: str) -> None:
        """Queue a status for ``sha``; a repeat of the last one for it is skipped. Never blocks."""
        if not _SHA.match(sha):
            return
        with self._lock:
            if self._last.get(sha) == (state, description):
                return
            self._last[sha] = (state, description)
            while len(self._last) > 256:  # only recent commits can be reported again
                self._last.pop(next(iter(self._last)))
        try:
            self._queue.put_nowait(_Post(sha, state, description))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("%s: commit statuses are dropped: %s does not keep up", self.name, self.config.display)

    def close(self, timeout: float = 5.0) -> None:
        """Post what is queued, for at most ``timeout`` seconds, then stop."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            return
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        with requests.Session() as session:
            while True:
                post = self._queue.get()
                if post is None:
                    return
                self._post(session, post)

    def _post(self, session: requests.Session, post: _Post) -> None:
        url, headers, body = request_for(self.config, post.sha, post.state, post.description)
        why = ""
        for delay in (0.0, *self.RETRIES):
            time.sleep(delay)
            try:
                answer = session.post(url, json=body, headers=headers, timeout=self.TIMEOUT)
            except requests.RequestException as exc:
                why = f"{type(exc).__name__} reaching the API"
                continue
            if answer.status_code < 300:
                log.debug("%s: commit %s is %s on %s", self.name, post.sha[:12], post.state, self.config.display)
                if self._failing:
                    log.info("%s: commit statuses reach %s again", self.name, self.config.display)
                    self._failing = False
                return
            why = f"{answer.status_code} {answer.reason}"
            if answer.status_code < 500 and answer.status_code != 429:
                break  # refused (token, scope, repository): trying again changes nothing
        if not self._failing:
            log.error(
                "%s: cannot set the status of commit %s on %s: %s",
                self.name,
                post.sha[:12],
                self.config.display,
                why,
            )
            self._failing = True
