"""Fetching specs from real repositories over every transport served on loopback: a local path,
file://, git daemon (git://) and smart HTTP with a token; reading them at a commit, from the
object store only; committing a status file to a branch of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from git_helpers import GitRepo, git, git_daemon, smart_http
from swarmkeeper.sources.git import GitError, GitSource, cache_dir_for, normalized_url, source_name_for
from swarmkeeper.sources.git_transport import GitAuth, parse_remote, redact, ssh_command

SERVICE = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {name: web, namespace: demo}
spec:
  image: local/busybox:1
  replicas: 2
  envFile: [web.env]
"""


@pytest.fixture
def opened() -> Iterator[list[GitSource]]:
    """Sources to close after the test (their cache keeps pack files open)."""
    sources: list[GitSource] = []
    yield sources
    for s in sources:
        s.close()


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "repos" / "specs")
    r.write("specs/web.yaml", SERVICE)
    r.write("specs/web.env", "GREETING=hello\n")
    r.write("specs/.hidden.yaml", "not: a spec\n")
    r.write("README.md", "not a spec\n")
    r.commit("first")
    return r


def _load(source: GitSource) -> tuple[str, list[str]]:
    sha = source.fetch()
    result = source.load(sha)
    assert result.ok, [str(e) for e in result.errors]
    (m,) = result.manifests
    assert m.origin is not None and m.origin.file.as_posix() == "specs/web.yaml"
    assert dict(m.file_env) == {"GREETING": "hello"}
    return sha, [m.name for m in result.manifests]


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_local_path_and_file_url(repo: GitRepo, tmp_path: Path, form: str, opened: list[GitSource]) -> None:
    url = str(repo.origin) if form == "path" else repo.url
    source = _open(opened, url, "main", "specs", cache_dir=tmp_path / "cache")
    sha, names = _load(source)
    assert sha == repo.head() and names == ["web"]
    # nothing but a bare repository in the cache: no checkout, no file from the tree
    assert not list((tmp_path / "cache").rglob("web.yaml"))
    assert (tmp_path / "cache" / "objects").is_dir()


def test_git_daemon(repo: GitRepo, tmp_path: Path, opened: list[GitSource]) -> None:
    with git_daemon(repo.root) as port:
        source = _open(opened, f"git://127.0.0.1:{port}/origin.git", "main", "specs", cache_dir=tmp_path / "cache")
        sha, _ = _load(source)
        assert sha == repo.head()
        repo.write("specs/web.env", "GREETING=again\n")
        second = repo.commit("second")
        assert source.fetch() == second
        assert source.is_ancestor(sha, second)


def test_smart_http_with_token(repo: GitRepo, tmp_path: Path, opened: list[GitSource]) -> None:
    token = "s3cr3t-t0ken-value"
    with smart_http(repo.root, token=token) as base:
        url = f"{base}/origin.git"
        anonymous = _open(opened, url, "main", "specs", cache_dir=tmp_path / "anon")
        with pytest.raises(GitError) as failure:
            anonymous.fetch()
        assert "127.0.0.1" in str(failure.value)
        wrong = _open(opened, url, "main", "specs", cache_dir=tmp_path / "wrong", auth=GitAuth(token=_secret("nope")))
        with pytest.raises(GitError) as failure:
            wrong.fetch()
        assert token not in str(failure.value)
        source = _open(opened, url, "main", "specs", cache_dir=tmp_path / "cache", auth=GitAuth(token=_secret(token)))
        sha, _ = _load(source)
        assert sha == repo.head()
        # status goes to a branch of its own, over the same transport, never to the tracked one
        pushed = source.push_file("sk-status", "demo.status.yaml", b"ready: true\n", "status")
        assert pushed is not None
        assert git("show", "sk-status:demo.status.yaml", cwd=repo.origin) == "ready: true"
        assert git("rev-parse", "main", cwd=repo.origin) == sha
        assert source.push_file("sk-status", "demo.status.yaml", b"ready: true\n", "status") is None  # unchanged
        assert source.push_file("sk-status", "demo.status.yaml", b"ready: false\n", "status") is not None
        assert git("rev-list", "--count", "sk-status", cwd=repo.origin) == "2"


def test_tags_and_missing_refs(repo: GitRepo, tmp_path: Path, opened: list[GitSource]) -> None:
    git("tag", "-a", "v1", "-m", "release 1", cwd=repo.work)
    git("push", "-q", "origin", "v1", cwd=repo.work)
    tagged = _open(opened, repo.url, "v1", "specs", cache_dir=tmp_path / "cache")
    assert tagged.fetch() == repo.head()  # the annotated tag is peeled to its commit
    missing = _open(opened, repo.url, "nope", "specs", cache_dir=tmp_path / "cache")
    with pytest.raises(GitError, match="no branch or tag 'nope'"):
        missing.fetch()
    absent_path = _open(opened, repo.url, "main", "deploy", cache_dir=tmp_path / "cache")
    result = absent_path.load(absent_path.fetch())
    assert [str(e) for e in result.errors] == [f"{repo.head()[:12]}:deploy: no such file or folder"]


def test_force_push_is_seen_as_rewritten_history(repo: GitRepo, tmp_path: Path, opened: list[GitSource]) -> None:
    source = _open(opened, repo.url, "main", "specs", cache_dir=tmp_path / "cache")
    first = source.fetch()
    repo.write("specs/web.env", "GREETING=two\n")
    second = repo.commit("second")
    assert source.fetch() == second and source.is_ancestor(first, second)
    repo.reset_hard(first)
    repo.write("specs/web.env", "GREETING=three\n")
    third = repo.commit("third", push=False)
    repo.push(force=True)
    assert source.fetch() == third
    assert not source.is_ancestor(second, third)


def test_values_must_stay_inside_the_specs_path(tmp_path: Path, opened: list[GitSource]) -> None:
    r = GitRepo(tmp_path / "repo")
    r.write("secret.txt", "outside\n")
    r.write(
        "specs/s.yaml",
        """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {name: s}
        spec: {file: ../secret.txt}
        """,
    )
    sha = r.commit("escape")
    source = _open(opened, r.url, "main", "specs", cache_dir=tmp_path / "cache")
    result = source.load(source.fetch())
    (error,) = result.errors
    assert str(error) == f"{sha[:12]}:specs/s.yaml:4:8: SwarmSecret/s: spec.file: ../secret.txt: escapes the specs path"


def test_names_and_urls() -> None:
    assert redact("https://user:tok3n@example.com/acme/deploy.git") == "https://user@example.com/acme/deploy.git"
    assert normalized_url("https://a:b@example.com/acme/deploy.git/") == normalized_url(
        "https://example.com/acme/deploy"
    )
    a = source_name_for("https://example.com/acme/deploy.git", "specs/prod")
    b = source_name_for("https://example.com/acme/deploy.git", "specs/staging")
    assert a.startswith("git-deploy-specs-prod-") and a != b and len(a) <= 46
    assert cache_dir_for("https://x:1@example.com/r.git") == cache_dir_for("https://example.com/r")
    remote = parse_remote("git@example.com:acme/deploy.git")
    assert (remote.scheme, remote.host, remote.user, remote.path) == ("ssh", "example.com", "git", "acme/deploy.git")
    command = ssh_command(GitAuth(ssh_key_file=Path("/k"), known_hosts_file=Path("/kh")))
    assert "StrictHostKeyChecking=yes" in command and "UserKnownHostsFile=/kh" in command
    assert "BatchMode=yes" in command and "IdentitiesOnly=yes" in command
    with pytest.raises(ValueError, match="unsupported scheme"):
        parse_remote("ftp://example.com/x")


def _secret(text: str) -> SecretStr:
    return SecretStr(text)


def _open(opened: list[GitSource], *args: Any, **kwargs: Any) -> GitSource:
    source = GitSource(*args, **kwargs)
    opened.append(source)
    return source


def test_ssh_runs_ssh_with_the_key_and_pinned_hosts(
    repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[GitSource]
) -> None:
    """No sshd here: a stand-in ``ssh`` first on PATH records its arguments and runs the remote
    command locally, as sshd would; what is proven is the client side (URL, user, key, options)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ssh-args"
    fake = bin_dir / "ssh"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {calls}\nfor last; do :; done\nexec sh -c "$last"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    key.write_text("not a real key\n")
    known.write_text("git.example.com ssh-ed25519 AAAA\n")
    auth = GitAuth(ssh_key_file=key, known_hosts_file=known)
    url = f"deploy@git.example.com:{repo.origin}"
    source = _open(opened, url, "main", "specs", cache_dir=tmp_path / "c", auth=auth)
    sha, _ = _load(source)
    assert sha == repo.head()
    args = calls.read_text().splitlines()
    assert "deploy@git.example.com" in args
    assert args[args.index("-i") + 1] == str(key)
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", f"UserKnownHostsFile={known}", "IdentitiesOnly=yes"):
        assert option in args
    assert any(a.startswith("git-upload-pack") and str(repo.origin) in a for a in args)
