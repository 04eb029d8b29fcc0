"""Real Git repositories for tests: a bare "origin" and a clone to commit in, served over a local
path, ``file://``, ``git daemon`` (git://) and smart HTTP (``git http-backend`` behind a tiny
WSGI server, with a token) — all on loopback. Also the real ``sops``/``age-keygen`` and a runner
for ``swarmkeeper sync`` as a process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests

from controller_helpers import Controller, free_port
from helpers import wait_for

SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"
TOOLS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "swarmkeeper" / "tools"
SETUP_HINT = "run `./dev setup` (it builds sops and age-keygen from the Go module proxy)"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",  # no user config: tests see git's defaults only
}


def git(*args: str | Path, cwd: Path | None = None, check: bool = True) -> str:
    result = subprocess.run(
        ["git", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed: {result.stderr.strip()}")
    return result.stdout.strip()


class GitRepo:
    """``<root>/origin.git`` (bare, what swarmkeeper fetches) and ``<root>/work`` (where tests commit)."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.root = root
        self.branch = branch
        self.origin = root / "origin.git"
        self.work = root / "work"
        root.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", "-b", branch, self.origin)
        git("config", "http.receivepack", "true", cwd=self.origin)
        git("init", "-q", "-b", branch, self.work)
        git("remote", "add", "origin", self.origin, cwd=self.work)

    @property
    def url(self) -> str:
        return f"file://{self.origin}"

    def write(self, path: str, text: str) -> Path:
        import textwrap

        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())
        return target

    def write_bytes(self, path: str, data: bytes) -> Path:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def remove(self, path: str) -> None:
        git("rm", "-q", "-r", path, cwd=self.work)

    def commit(self, message: str, push: bool = True) -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        if push:
            self.push()
        return self.head()

    def push(self, force: bool = False) -> None:
        git("push", "-q", *(["--force"] if force else []), "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.work)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def revert(self, sha: str) -> str:
        git("revert", "--no-edit", sha, cwd=self.work)
        self.push()
        return self.head()

    def reset_hard(self, sha: str) -> None:
        git("reset", "-q", "--hard", sha, cwd=self.work)


@contextmanager
def git_daemon(base: Path) -> Iterator[int]:
    """``git daemon`` serving every repository under ``base`` on a loopback port (pushes allowed)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        env={**os.environ, **GIT_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _port_open(port), timeout=15, message="git daemon did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        threading.Thread(target=self._handle, args=(request, client_address), daemon=True).start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


@contextmanager
def smart_http(base: Path, token: str | None = None) -> Iterator[str]:
    """Smart HTTP over loopback: ``git http-backend`` (CGI) behind a WSGI server; with ``token``,
    requests need HTTP basic auth with that password (any user). Yields the base URL."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if token is not None:
            given = environ.get("HTTP_AUTHORIZATION", "")
            ok = False
            if given.startswith("Basic "):
                _, _, password = base64.b64decode(given[6:]).decode().partition(":")
                ok = hmac.compare_digest(password, token)
            if not ok:
                start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
                return [b"unauthorized\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        cgi_env = {
            **os.environ,
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(base),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "test",
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=cgi_env, capture_output=True, timeout=60)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = "200 OK"
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]

    port = free_port()
    server = make_server("127.0.0.1", port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# sops and age
# ---------------------------------------------------------------------------------------------


def tool(name: str) -> Path:
    """The ``sops`` or ``age-keygen`` that ``./dev setup`` built (``$SWARMKEEPER_<NAME>`` overrides)."""
    override = os.environ.get(f"SWARMKEEPER_{name.upper().replace('-', '_')}")
    if override:
        return Path(override)
    prefix = "sops-" if name == "sops" else "age-"
    found = sorted(TOOLS.glob(f"{prefix}v*/{name}"))
    if not found:
        raise AssertionError(f"{name} is not built under {TOOLS}; {SETUP_HINT}")
    return found[-1]


def age_keypair(folder: Path) -> tuple[Path, str]:
    """A fresh age key file and its public key (the recipient)."""
    key_file = folder / "age.key"
    subprocess.run([str(tool("age-keygen")), "-o", str(key_file)], check=True, capture_output=True, timeout=30)
    public = next(
        line.split(":", 1)[1].strip() for line in key_file.read_text().splitlines() if line.startswith("# public key:")
    )
    return key_file, public


def sops_encrypt(plain: Path, recipient: str, *extra: str) -> bytes:
    result = subprocess.run(
        [str(tool("sops")), "encrypt", "--age", recipient, *extra, str(plain)],
        capture_output=True,
        timeout=60,
        env={**os.environ, "SOPS_AGE_KEY_FILE": "/nonexistent"},
    )
    if result.returncode != 0:
        raise AssertionError(f"sops encrypt failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def sops_decrypt(encrypted: Path, key_file: Path) -> bytes:
    result = subprocess.run(
        [str(tool("sops")), "decrypt", str(encrypted)],
        capture_output=True,
        timeout=60,
        env={**os.environ, "SOPS_AGE_KEY_FILE": str(key_file)},
    )
    if result.returncode != 0:
        raise AssertionError(f"sops decrypt failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


# ---------------------------------------------------------------------------------------------
# webhooks
# ---------------------------------------------------------------------------------------------


def web_spec(ns: str, release: int) -> str:
    """A one-service spec whose RELEASE says which push it came from."""
    return f"""\
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmService
    metadata: {{name: web, namespace: {ns}}}
    spec:
      image: local/busybox:1
      command: ["sleep", "3600"]
      env: {{RELEASE: "{release}"}}
      stopGracePeriod: 1s
    """


def push_event(ref: str, after: str) -> bytes:
    return json.dumps({"ref": ref, "after": after, "repository": {"name": "specs"}}).encode()


def github_headers(body: bytes, secret: bytes) -> dict[str, str]:
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={signature}", "Content-Type": "application/json"}


def gitea_headers(body: bytes, secret: bytes) -> dict[str, str]:
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-Gitea-Event": "push", "X-Gitea-Signature": signature, "Content-Type": "application/json"}


def gitlab_headers(secret: bytes) -> dict[str, str]:
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret.decode(), "Content-Type": "application/json"}


def post_hook(port: int, body: bytes, headers: dict[str, str], path: str = "/") -> requests.Response:
    return requests.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers, timeout=10)


# ---------------------------------------------------------------------------------------------
# swarmkeeper sync as a process
# ---------------------------------------------------------------------------------------------


class SyncProcess(Controller):
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, port: int, webhook_port: int | None) -> None:
        super().__init__(proc, log, port)
        self.webhook_port = webhook_port


@contextmanager
def sync_process(
    *args: str | Path,
    log: Path,
    webhook: bool = False,
    wait_ready: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[SyncProcess]:
    """``swarmkeeper sync ARGS`` with metrics (and webhooks) on free loopback ports; SIGTERM after."""
    port = free_port()
    webhook_port = free_port() if webhook else None
    cmd = [str(SWARMKEEPER), "sync", *map(str, args), "--metrics-addr", f"127.0.0.1:{port}", "-vv"]
    if webhook_port is not None:
        cmd += ["--webhook-addr", f"127.0.0.1:{webhook_port}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "250", **(env or {})},
        )
    ctl = SyncProcess(proc, log, port, webhook_port)
    try:
        if wait_ready:
            wait_for(lambda: ctl.ready() or proc.poll() is not None, timeout=90, message="sync not ready")
            assert proc.poll() is None, ctl.logs()
        yield ctl
    finally:
        ctl.stop(signal.SIGTERM)


def run_sync_once(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``swarmkeeper sync --once ARGS`` to completion."""
    return subprocess.run(
        [str(SWARMKEEPER), "sync", "--once", "-vv", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
    )


def read_status(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    if not path.exists():
        return {}
    return YAML(typ="safe").load(path.read_text()) or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def service_label(api: Any, name: str, label: str) -> str | None:
    import docker.errors

    try:
        svc = api.inspect_service(name)
    except docker.errors.NotFound:
        return None
    return (svc["Spec"].get("Labels") or {}).get(label)
