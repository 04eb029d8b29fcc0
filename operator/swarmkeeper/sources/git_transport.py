"""Where a Git repository is and how to reach it: local path, file://, git://, http(s):// with a
token, ssh:// (or ``user@host:path``) with a key file and pinned known hosts.

Credentials never leave this module in text form: URLs are shown with any password removed, and
a token is sent only to the origin it was configured for (dulwich scopes it per request).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from dulwich.client import GitClient

# ``git@github.com:acme/deploy.git``: scp-like syntax for ssh, as git accepts it.
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>(?!//).+)$")
HTTP_TIMEOUT = 60.0


@dataclass(frozen=True)
class GitAuth:
    """How to authenticate; everything optional (public repositories and local paths need nothing)."""

    username: str | None = None  # http(s): defaults to "git" when a token is given; ssh: the URL's user
    token: SecretStr | None = field(default=None, repr=False)  # http(s) password / access token
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None  # ssh: only these host keys are accepted


@dataclass(frozen=True)
class Remote:
    """A parsed repository location."""

    scheme: str  # "local", "file", "git", "http", "https", "ssh"
    url: str  # as given, credentials included (never shown: use ``display``)
    path: str  # path on the server (or the local path)
    host: str | None = None
    port: int | None = None
    user: str | None = None

    @property
    def display(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    """The URL without a password or token: safe for logs, status and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.scheme and parts.password is not None:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=user + host))
    return url


def parse_remote(url: str) -> Remote:
    """Classify ``url``; a plain path must exist (relative paths are taken from the working folder)."""
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            return Remote("file", url, parts.path)
        if scheme in ("git", "http", "https", "ssh", "git+ssh", "ssh+git"):
            if not parts.hostname:
                raise ValueError(f"{redact(url)}: no host in the URL")
            return Remote(
                "ssh" if "ssh" in scheme else scheme,
                url,
                parts.path,
                host=parts.hostname,
                port=parts.port,
                user=parts.username,
            )
        raise ValueError(f"{redact(url)}: unsupported scheme {scheme!r} (use a path, file, git, http(s) or ssh)")
    local = Path(url).expanduser()
    if local.exists():
        return Remote("local", url, str(local.resolve()))
    m = _SCP_LIKE.match(url)
    if m:
        return Remote("ssh", url, m.group("path"), host=m.group("host"), user=m.group("user"))
    raise ValueError(f"{url}: no such repository folder, and not a URL")


def client_for(remote: Remote, auth: GitAuth) -> tuple[GitClient, str]:
    """A dulwich client for ``remote`` and the path to pass to it."""
    from dulwich.client import LocalGitClient, SSHGitClient, TCPGitClient, Urllib3HttpGitClient

    if remote.scheme in ("local", "file"):
        return LocalGitClient(), remote.path
    if remote.scheme == "git":
        assert remote.host is not None
        return TCPGitClient(remote.host, remote.port), remote.path
    if remote.scheme in ("http", "https"):
        parts = urlsplit(remote.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        base = urlunsplit(parts._replace(netloc=netloc))
        password = auth.token.get_secret_value() if auth.token is not None else parts.password
        username = auth.username or parts.username or ("git" if password is not None else None)
        client = Urllib3HttpGitClient(base, username=username, password=password, timeout=HTTP_TIMEOUT)
        return client, parts.path
    assert remote.host is not None
    return (
        SSHGitClient(
            remote.host,
            port=remote.port,
            username=auth.username or remote.user,
            key_filename=str(auth.ssh_key_file) if auth.ssh_key_file else None,
            ssh_command=ssh_command(auth),
        ),
        remote.path,
    )


def ssh_command(auth: GitAuth) -> str:
    """``ssh`` never prompting, and with known hosts pinned when a file is given."""
    args = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]
    if auth.known_hosts_file is not None:
        args += [
            "-o",
            f"UserKnownHostsFile={auth.known_hosts_file}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
    if auth.ssh_key_file is not None:
        args += ["-o", "IdentitiesOnly=yes"]
    return shlex.join(args)
