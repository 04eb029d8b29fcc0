"""A Git repository as a front door: fetch one ref into a local cache, read specs at a commit.

Thin by design: the cache is a bare repository (objects only, never a working tree, so no
file from the repository — decrypted or not — is ever written out), reading specs is
``git_specs``' and reconciling is the engine's. What the loop needs from Git is here: the commit a
ref points to now, whether the history was rewritten, a commit's subject, and a way to commit the
status file to a branch of its own.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..loading import LoadResult
from .git_specs import load_specs
from .git_transport import GitAuth, Remote, client_for, parse_remote, redact
from .sops import AgeKeys

if TYPE_CHECKING:
    from dulwich.repo import Repo

log = logging.getLogger(__name__)

DEFAULT_AUTHOR = "swarmkeeper <swarmkeeper@localhost>"  # who commits, unless told otherwise

DEFAULT_CACHE = Path("~/.cache/swarmkeeper/git")


class GitError(Exception):
    """A fetch or push that failed; the message names the repository without credentials."""


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    time: int  # seconds since the epoch

    @property
    def short(self) -> str:
        return self.sha[:12]


def cache_dir_for(url: str, base: Path | None = None) -> Path:
    """``~/.cache/swarmkeeper/git/<hash of the URL>``: one cache per repository, shared by its refs."""
    digest = hashlib.sha256(normalized_url(url).encode()).hexdigest()[:16]
    return (base or DEFAULT_CACHE).expanduser() / digest


def normalized_url(url: str) -> str:
    """The URL without credentials, trailing slash or ``.git``: the same repository spelt differently
    (or fetched with another token) is the same repository."""
    try:
        remote = parse_remote(url)
    except ValueError:
        return redact(url)
    if remote.scheme in ("local", "file"):
        return str(Path(remote.path).resolve())
    host = (remote.host or "").lower() + (f":{remote.port}" if remote.port else "")
    text = f"{remote.scheme}://{host}/{remote.path.lstrip('/')}".rstrip("/")
    return text.removesuffix(".git")


def source_name_for(url: str, path: str) -> str:
    """An owner name for prune and the lease, derived from the repository and the specs path:
    readable, unique per (repository, path), and short enough for a swarm config name."""

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")

    repo = normalized_url(url).rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    clean_path = path.strip("/")
    digest = hashlib.sha256(f"{normalized_url(url)}\n{clean_path}".encode()).hexdigest()[:8]
    readable = "-".join(p for p in (slug(repo), slug(clean_path)) if p)[:30].strip("-")
    return f"git-{readable}-{digest}" if readable else f"git-{digest}"


class GitSource:
    """One ref of one repository, fetched into a bare cache repository."""

    def __init__(
        self,
        url: str,
        ref: str = "main",
        path: str = "",
        *,
        cache_dir: Path | None = None,
        auth: GitAuth | None = None,
    ) -> None:
        self.remote: Remote = parse_remote(url)
        self.ref = ref
        self.path = path.strip("/")
        self.auth = auth or GitAuth()
        self.cache_dir = (cache_dir or cache_dir_for(url)).expanduser()
        self._repo: Repo | None = None
        # Fetches and status pushes of several sources may share one cache repository.
        self._lock = _lock_for(self.cache_dir)

    @property
    def display(self) -> str:
        return self.remote.display

    # -- the cache -----------------------------------------------------------------------------
    @property
    def repo(self) -> Repo:
        if self._repo is None:
            from dulwich.repo import Repo

            self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if (self.cache_dir / "objects").is_dir():
                self._repo = Repo(str(self.cache_dir))
            else:
                self._repo = Repo.init_bare(str(self.cache_dir))
        return self._repo

    def close(self) -> None:
        """Release the cache's open pack files (before exit: dulwich complains if left to ``__del__``)."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def _tracking_ref(self) -> bytes:
        return b"refs/swarmkeeper/" + self.ref.removeprefix("refs/").encode()

    # -- fetch ---------------------------------------------------------------------------------
    def fetch(self) -> str:
        """Bring the ref's commit into the cache; returns its SHA (tags are peeled to their commit)."""
        from dulwich.object_store import peel_sha
        from dulwich.objects import Commit as GitCommit
        from dulwich.objects import ObjectID

        found: dict[str, bytes] = {}

        def wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[ObjectID]:
            name = self._match_ref(refs)
            if name is None:
                return []
            found["name"], found["sha"] = name, refs[name]
            sha = ObjectID(refs[name])
            return [] if sha in self.repo.object_store else [sha]

        client, path = client_for(self.remote, self.auth)
        started = time.monotonic()
        with self._lock:
            try:
                client.fetch(path, self.repo, determine_wants=wants)  # type: ignore[arg-type]
            except Exception as exc:  # dulwich raises many kinds (protocol, HTTP, OS); all mean "not fetched"
                raise GitError(f"cannot fetch {self.display}: {self._describe(exc)}") from None
            if "sha" not in found:
                raise GitError(f"{self.display} has no branch or tag {self.ref!r}")
            try:
                _, peeled = peel_sha(self.repo.object_store, ObjectID(found["sha"]))
            except KeyError:
                raise GitError(f"{self.display}: {self.ref!r} points to an object that was not sent") from None
            if not isinstance(peeled, GitCommit):
                raise GitError(f"{self.display}: {self.ref!r} does not point to a commit")
            sha = peeled.id
            self.repo.refs[self._tracking_ref()] = sha  # type: ignore[index]
        log.debug(
            "fetched %s %s → %s in %.0f ms",
            self.display,
            self.ref,
            sha.decode()[:12],
            (time.monotonic() - started) * 1000,
        )
        return sha.decode()

    def _match_ref(self, refs: Mapping[bytes, bytes]) -> bytes | None:
        ref = self.ref.encode()
        candidates = (
            [ref] if ref.startswith(b"refs/") or ref == b"HEAD" else [b"refs/heads/" + ref, b"refs/tags/" + ref]
        )
        return next((c for c in candidates if c in refs), None)

    # -- history -------------------------------------------------------------------------------
    def has(self, sha: str) -> bool:
        from dulwich.objects import ObjectID

        return ObjectID(sha.encode()) in self.repo.object_store

    def commit(self, sha: str) -> Commit:
        from dulwich.objects import Commit as GitCommit
        from dulwich.objects import ObjectID

        obj = self.repo.object_store[ObjectID(sha.encode())]
        if not isinstance(obj, GitCommit):
            raise GitError(f"{sha[:12]} is not a commit")
        message = obj.message.decode("utf-8", "replace")
        author = obj.author.decode("utf-8", "replace")
        return Commit(sha, message.strip().splitlines()[0] if message.strip() else "", author, int(obj.commit_time))

    def is_ancestor(self, old: str, new: str) -> bool:
        """Whether ``new`` descends from ``old`` (False after a force-push rewrote the history)."""
        from dulwich.graph import can_fast_forward
        from dulwich.objects import ObjectID

        if old == new:
            return True
        if not (self.has(old) and self.has(new)):
            return False
        return can_fast_forward(self.repo, ObjectID(old.encode()), ObjectID(new.encode()))

    # -- specs ---------------------------------------------------------------------------------
    def load(self, sha: str, *, keys: AgeKeys | None = None, environ: Mapping[str, str] | None = None) -> LoadResult:
        """The specs under the path at commit ``sha``, read from the object store into memory."""
        return load_specs(self.repo, sha, self.path, keys=keys, environ=environ)

    def read_file(self, sha: str, path: str) -> bytes:
        """The file ``path`` (in the repository) at commit ``sha``."""
        from ..loading.loader import MAX_SPEC_FILE_BYTES
        from .git_specs import CommitTree, TreeProblem

        try:
            return CommitTree(self.repo, sha).read(path, MAX_SPEC_FILE_BYTES)
        except TreeProblem as exc:
            raise GitError(f"{path} at {sha[:12]}: {exc}") from None

    # -- status back ---------------------------------------------------------------------------
    def push_file(self, branch: str, name: str, content: bytes, message: str) -> str | None:
        """Commit ``content`` as file ``name`` on ``branch`` (its own history, never the tracked
        branch's) and push it. Returns the new commit, or None when the content was already there."""
        return self.commit_files(branch, {name: content}, message)

    def commit_files(
        self,
        branch: str,
        files: Mapping[str, bytes],
        message: str,
        *,
        author: str = DEFAULT_AUTHOR,
        parent_must_be: str | None = None,
        start_at: str | None = None,
    ) -> str | None:
        """Commit ``files`` (paths in the repository → content) on top of ``branch`` as the remote has
        it, and push. Returns the new commit; None when nothing changed, or when ``parent_must_be``
        is given and the branch is elsewhere (someone pushed meanwhile: the caller tries again later).
        A branch the remote does not have yet starts at ``start_at`` (a local commit), so it holds
        the whole tree, not only ``files``."""
        from dulwich.objects import Blob, ObjectID, Tree
        from dulwich.objects import Commit as GitCommit

        ref = b"refs/heads/" + branch.encode()
        client, path = client_for(self.remote, self.auth)
        with self._lock:
            parent: bytes | None = None

            def wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[ObjectID]:
                nonlocal parent
                parent = refs.get(ref)
                return [] if parent is None or ObjectID(parent) in self.repo.object_store else [ObjectID(parent)]

            try:
                client.fetch(path, self.repo, determine_wants=wants)  # type: ignore[arg-type]
            except Exception as exc:
                raise GitError(f"cannot fetch {branch!r} of {self.display}: {self._describe(exc)}") from None
            if parent_must_be is not None and (parent or b"").decode() != parent_must_be:
                return None
            if parent is None and start_at is not None:
                parent = start_at.encode()
            store = self.repo.object_store
            old_tree: bytes | None = None
            if parent is not None:
                old = store[ObjectID(parent)]
                assert isinstance(old, GitCommit)
                old_tree = old.tree
            added: list[Blob | Tree] = []
            tree = old_tree
            for name, content in files.items():
                blob = Blob.from_string(content)
                added.append(blob)
                tree = _with_file(store, tree, [p for p in name.split("/") if p], blob.id, added)
            if tree == old_tree:
                return None
            assert tree is not None
            commit = GitCommit()
            commit.tree = ObjectID(tree)
            commit.parents = [ObjectID(parent)] if parent is not None else []
            commit.author = commit.committer = author.encode("utf-8")
            commit.commit_time = commit.author_time = int(time.time())
            commit.commit_timezone = commit.author_timezone = 0
            commit.encoding = b"UTF-8"
            commit.message = message.encode("utf-8")
            store.add_objects([(o, None) for o in [*added, commit]])

            def update(refs: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
                return {**refs, ref: commit.id}

            try:
                result = client.send_pack(path, update, store.generate_pack_data)  # type: ignore[arg-type]
            except Exception as exc:
                raise GitError(f"cannot push {branch!r} to {self.display}: {self._describe(exc)}") from None
            problem = (getattr(result, "ref_status", None) or {}).get(ref)
            if problem:
                raise GitError(f"{self.display} refused the push to {branch!r}: {problem}")
        return commit.id.decode()

    def _describe(self, exc: BaseException) -> str:
        """An exception in words fit for logs: first line only, with no URL password and no token."""
        text = str(exc).strip() or type(exc).__name__
        secrets = [self.auth.token.get_secret_value()] if self.auth.token is not None else []
        parts = urlsplit(self.remote.url) if "://" in self.remote.url else None
        if parts is not None and parts.password:
            secrets.append(parts.password)
        for secret in secrets:
            text = text.replace(secret, "***")
        return redact(text.splitlines()[0])[:300]


def _with_file(store: Any, tree_id: bytes | None, parts: list[str], blob_id: bytes, added: list[Any]) -> bytes:
    """The id of tree ``tree_id`` (None: empty) with the file at ``parts`` set to ``blob_id``; every
    new tree object is appended to ``added`` (and stored)."""
    from dulwich.objects import ObjectID, Tree

    tree = Tree()
    if tree_id is not None:
        old = store[ObjectID(tree_id)]
        assert isinstance(old, Tree)
        for entry in old.iteritems():
            tree.add(entry.path, entry.mode, entry.sha)
    head = parts[0].encode()
    if len(parts) == 1:
        tree.add(head, 0o100644, ObjectID(blob_id))
    else:
        sub: bytes | None = None
        if tree_id is not None and head in tree:
            mode, sha = tree[head]
            sub = sha if mode == 0o040000 else None
        tree.add(head, 0o040000, ObjectID(_with_file(store, sub, parts[1:], blob_id, added)))
    store.add_object(tree)
    added.append(tree)
    return bytes(tree.id)


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


__all__ = ["DEFAULT_AUTHOR", "Commit", "GitAuth", "GitError", "GitSource", "cache_dir_for", "source_name_for"]
