"""Specs at one commit, read straight from the Git object store: no checkout, nothing on disk.

The same rules as a specs folder: ``*.yaml``/``*.yml`` under the path, hidden entries and editor
leftovers skipped (and SOPS-encrypted YAML, which holds a value, not specs); values and env files
named by a spec are read from the same commit, relative to the spec, and may not leave the specs
path. Paths stay relative to the repository
(``specs/web.yaml``), and every error is prefixed with the commit, git's own ``<commit>:<path>``
notation, so it names commit, file, line and field.

A SwarmSecret's ``spec.file`` may be SOPS-encrypted: it is decrypted here, in memory, and kept
only as the manifest's ``SecretBytes``. Encrypted files are refused anywhere else (a SwarmConfig
or an env file), because those values end up readable in the swarm's object specs.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretBytes, SecretStr

from ..api import SwarmAlert, SwarmConfig, SwarmSecret, SwarmService
from ..loading import LoadResult, Manifest, SpecError, check_references, load_text
from ..loading.alerts import MAX_URL_BYTES, parse_url
from ..loading.discovery import ROOT_MARKER, SPEC_SUFFIXES, is_ignored
from ..loading.envfiles import MAX_ENV_FILE_BYTES, parse_env_file
from ..loading.files import MiB, format_size
from ..loading.values import MAX_VALUE_BYTES, resolve_value
from .sops import AgeKeys, SopsError, decrypt, format_of, is_encrypted, parse_document

if TYPE_CHECKING:
    from dulwich.objects import Tree
    from dulwich.repo import Repo

MAX_SPEC_FILE_BYTES = 4 * MiB
MAX_ENCRYPTED_BYTES = 4 * MiB  # a SOPS file is larger than its value: base64, per-value IVs, metadata


class TreeProblem(Exception):
    """Why a path cannot be read at this commit, in words fit for an error message."""


class CommitTree:
    """Read-only access to the files of one commit."""

    def __init__(self, repo: Repo, sha: str) -> None:
        from dulwich.objects import Commit, ObjectID

        commit = repo.object_store[ObjectID(sha.encode())]
        if not isinstance(commit, Commit):
            raise TreeProblem(f"{sha[:12]} is not a commit")
        self.repo = repo
        self.root = commit.tree

    def _entry(self, path: str) -> tuple[int, bytes]:
        from dulwich.objects import Tree

        mode, sha = stat.S_IFDIR, bytes(self.root)
        for part in [p for p in path.split("/") if p]:
            if not stat.S_ISDIR(mode):
                raise TreeProblem("no such file or folder")
            tree = self.repo.object_store[sha]  # type: ignore[index]
            assert isinstance(tree, Tree)
            try:
                mode, sha = tree[part.encode()]
            except KeyError:
                raise TreeProblem("no such file or folder") from None
        return mode, sha

    def kind(self, path: str) -> str:
        """``dir``, ``file``, ``symlink``, ``submodule`` or ``missing``."""
        try:
            mode, _ = self._entry(path)
        except TreeProblem:
            return "missing"
        if stat.S_ISDIR(mode):
            return "dir"
        if stat.S_ISLNK(mode):
            return "symlink"
        if mode & 0o170000 == 0o160000:
            return "submodule"
        return "file"

    def read(self, path: str, limit: int) -> bytes:
        from dulwich.objects import Blob

        mode, sha = self._entry(path)
        if stat.S_ISDIR(mode):
            raise TreeProblem("is a folder, not a file")
        if stat.S_ISLNK(mode):
            # Following links inside a tree is possible, but a link is how a path would sneak out.
            raise TreeProblem("is a symbolic link; specs from Git must name regular files")
        if mode & 0o170000 == 0o160000:
            raise TreeProblem("is a submodule, not a file")
        blob = self.repo.object_store[sha]  # type: ignore[index]
        assert isinstance(blob, Blob)
        if blob.raw_length() > limit:
            raise TreeProblem(f"is larger than {format_size(limit)}")
        return blob.as_raw_string()

    def spec_root(self, folder: str) -> str:
        """The root of the spec tree ``folder`` belongs to, as ``discovery.tree_root`` finds it on
        disk, but never above the repository's top."""
        parts = [p for p in folder.split("/") if p and p != "."]
        for n in range(len(parts), -1, -1):
            if self.kind(posixpath.join(*parts[:n], ROOT_MARKER)) == "file":
                return "/".join(parts[:n])
        return folder

    def spec_files(self, folder: str) -> list[str]:
        """Every ``*.yaml``/``*.yml`` under ``folder``, sorted, hidden entries skipped."""
        from dulwich.objects import Tree

        out: list[str] = []

        def walk(tree: Tree, prefix: str) -> None:
            for entry in sorted(tree.iteritems(), key=lambda e: e.path):
                name = entry.path.decode("utf-8", "surrogateescape")
                if is_ignored(name):
                    continue
                path = posixpath.join(prefix, name) if prefix else name
                if stat.S_ISDIR(entry.mode):
                    sub = self.repo.object_store[entry.sha]
                    assert isinstance(sub, Tree)
                    walk(sub, path)
                elif stat.S_ISREG(entry.mode) and name.lower().endswith(SPEC_SUFFIXES):
                    out.append(path)

        _, sha = self._entry(folder)
        tree = self.repo.object_store[sha]  # type: ignore[index]
        assert isinstance(tree, Tree)
        walk(tree, folder)
        return out


def load_specs(
    repo: Repo,
    sha: str,
    path: str,
    *,
    keys: AgeKeys | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadResult:
    """Every spec under ``path`` at commit ``sha``, values resolved, checked as one set."""
    import os

    env = os.environ if environ is None else environ
    short = sha[:12]
    tree = CommitTree(repo, sha)
    where = path or "."
    kind = tree.kind(path) if path else "dir"
    errors: list[SpecError] = []
    manifests: list[Manifest] = []
    if kind == "dir":
        files, root = tree.spec_files(path), tree.spec_root(path)
    elif kind == "file":
        files, root = [path], tree.spec_root(posixpath.dirname(path))
    else:
        problem = "no such file or folder" if kind == "missing" else f"is a {kind}, not a folder of specs"
        return LoadResult([], [SpecError(problem, file=Path(f"{short}:{where}"))])
    for file in files:
        try:
            raw = tree.read(file, MAX_SPEC_FILE_BYTES)
        except TreeProblem as exc:
            errors.append(SpecError(str(exc), file=Path(file)))
            continue
        if b"sops:" in raw and is_encrypted(parse_document(raw, "yaml")):
            continue  # an encrypted value file beside the specs (spec.file: app.enc.yaml), not a spec
        result = load_text(raw, Path(file), root=Path(root or "."), resolve_values=False)
        errors.extend(result.errors)
        for m in result.manifests:
            m, problems = _resolve(m, tree, root, keys, env)
            errors.extend(problems)
            manifests.append(m)
    errors.extend(check_references(manifests))
    return LoadResult(manifests, [_at_commit(e, short) for e in errors])


def _at_commit(error: SpecError, short: str) -> SpecError:
    """``specs/web.yaml`` → ``<commit>:specs/web.yaml`` (``git show`` takes it as it is)."""
    if error.file is None:
        return replace(error, message=f"commit {short}: {error.message}")
    return replace(error, file=Path(f"{short}:{error.file.as_posix()}"))


def _resolve(
    m: Manifest, tree: CommitTree, root: str, keys: AgeKeys | None, environ: Mapping[str, str]
) -> tuple[Manifest, list[SpecError]]:
    res = m.resource
    if isinstance(res, SwarmSecret | SwarmConfig):
        if res.spec.file is None:
            value, errors = resolve_value(m, environ)  # inline, base64 or an environment variable
            return replace(m, value=value), errors
        return _file_value(m, res, tree, root, keys)
    if isinstance(res, SwarmService) and res.spec.env_file:
        return _env_files(m, res, tree, root)
    if isinstance(res, SwarmAlert):
        return _alert_urls(m, res, tree, root, keys)
    return m, []


def _alert_urls(
    m: Manifest, res: SwarmAlert, tree: CommitTree, root: str, keys: AgeKeys | None
) -> tuple[Manifest, list[SpecError]]:
    """Each target's URL from its urlFile at this commit; a SOPS-encrypted file is decrypted in memory
    (a URL holds a token: in Git it belongs encrypted)."""
    urls: list[SecretStr | None] = []
    errors: list[SpecError] = []
    for i, target in enumerate(res.spec.targets):
        field = ("spec", "targets", i, "urlFile" if target.url_file is not None else "secretRef")
        urls.append(None)
        if target.url_file is None:
            errors.append(m.error(field, "secretRef is only valid for objects applied through Kubernetes"))
            continue
        name = target.url_file
        try:
            path = _relative(m, name, root)
            raw = tree.read(path, MAX_ENCRYPTED_BYTES)
            document = _sops_document(raw, path)
            if document is not None:
                raw = decrypt(document, format_of(path), keys, path)
        except (TreeProblem, SopsError) as exc:
            errors.append(m.error(field, f"{name}: {exc}" if isinstance(exc, TreeProblem) else str(exc)))
            continue
        url, problem = parse_url(raw) if len(raw) <= MAX_URL_BYTES else (None, "is larger than 4 KiB")
        urls[-1] = url
        if problem is not None:
            errors.append(m.error(field, f"{name}: {problem}"))
    return replace(m, urls=tuple(urls)), errors


def _relative(m: Manifest, name: str, root: str) -> str:
    """``name`` relative to the spec file, provided it stays inside the specs path."""
    assert m.origin is not None
    base = posixpath.dirname(m.origin.file.as_posix())
    joined = posixpath.normpath(posixpath.join(base, name))
    inside = root in ("", ".") and not joined.startswith("../") and joined != ".."
    inside = inside or joined == root or joined.startswith(root.rstrip("/") + "/")
    if name.startswith("/") or not inside:
        raise TreeProblem("escapes the specs path")
    return joined


def _file_value(
    m: Manifest, res: SwarmSecret | SwarmConfig, tree: CommitTree, root: str, keys: AgeKeys | None
) -> tuple[Manifest, list[SpecError]]:
    field = ("spec", "file")
    name = res.spec.file or ""
    try:
        path = _relative(m, name, root)
        raw = tree.read(path, MAX_ENCRYPTED_BYTES)
    except TreeProblem as exc:
        return m, [m.error(field, f"{name}: {exc}")]
    fmt = format_of(path)
    try:
        document = _sops_document(raw, path)
    except SopsError as exc:
        return m, [m.error(field, str(exc))]
    if document is not None:
        if isinstance(res, SwarmConfig):
            return m, [
                m.error(
                    field,
                    f"{name}: is SOPS-encrypted; only a SwarmSecret may hold an encrypted value "
                    "(a SwarmConfig is readable by anyone with access to the swarm)",
                )
            ]
        try:
            raw = decrypt(document, fmt, keys, path)
        except SopsError as exc:
            return m, [m.error(field, str(exc))]
    if not raw:
        return m, [m.error(field, f"{name}: the value is empty; swarm needs at least 1 byte")]
    if len(raw) >= MAX_VALUE_BYTES:
        return m, [m.error(field, f"{name}: the value must be smaller than {format_size(MAX_VALUE_BYTES)}")]
    return replace(m, value=SecretBytes(raw)), []


def _sops_document(raw: bytes, path: str) -> Mapping[str, object] | None:
    """The parsed file when it is SOPS-encrypted, else None (a plain value)."""
    fmt = format_of(path)
    if fmt == "binary" and not raw.lstrip().startswith(b"{"):
        if raw.startswith(b"sops_") or b"\nsops_mac=" in raw:
            raise SopsError(f"{path}: SOPS dotenv files are not supported; encrypt it as binary (--input-type binary)")
        return None  # binary SOPS files are JSON; anything else is the value itself
    document = parse_document(raw, fmt)
    return document if is_encrypted(document) else None


def _env_files(m: Manifest, res: SwarmService, tree: CommitTree, root: str) -> tuple[Manifest, list[SpecError]]:
    merged: dict[str, str] = {}
    errors: list[SpecError] = []
    for i, name in enumerate(res.spec.env_file):
        field = ("spec", "envFile", i)
        try:
            path = _relative(m, name, root)
            raw = tree.read(path, MAX_ENV_FILE_BYTES)
        except TreeProblem as exc:
            errors.append(m.error(field, f"{name}: {exc}"))
            continue
        try:
            encrypted = _sops_document(raw, path) is not None
        except SopsError:
            encrypted = True
        if encrypted:
            errors.append(
                m.error(
                    field,
                    f"{name}: is SOPS-encrypted; put secret values in a SwarmSecret (env values are "
                    "stored in the service spec, readable by anyone with access to the swarm)",
                )
            )
            continue
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            errors.append(m.error(field, "not valid UTF-8 text", file=Path(path), line=line))
            continue
        variables, malformed = parse_env_file(text)
        errors.extend(m.error(field, "not a KEY=VALUE line", file=Path(path), line=n) for n in malformed)
        merged.update(variables)
    return replace(m, file_env=merged), errors
