"""SOPS files made by the real ``sops`` (age keys from the real ``age-keygen``), committed to a real
repository and decrypted in memory by swarmkeeper: plain, YAML and JSON files; wrong or missing
keys and tampered files are refused with the spec's file, line and field, never the value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from git_helpers import GitRepo, age_keypair, sops_decrypt, sops_encrypt
from swarmkeeper.sources.git import GitSource
from swarmkeeper.sources.sops import AgeKeys, SopsError

PLAIN = "correct horse battery staple\n"

SECRETS = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {name: db-pass}
spec: {file: db-pass.enc.txt}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {name: app-yaml}
spec: {file: app.enc.yaml}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {name: app-json}
spec: {file: app.enc.json}
"""


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str]:
    return age_keypair(tmp_path)


@pytest.fixture
def repo(tmp_path: Path, keys: tuple[Path, str]) -> GitRepo:
    _, public = keys
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "db-pass.txt").write_text(PLAIN)
    (plain / "app.yaml").write_text("db:\n  user: app\n  password: hunter2\n  port: 5432\nfeatures: [a, b]\n")
    (plain / "app.json").write_text(json.dumps({"token": "abc123", "retries": 3, "ratio": 0.5, "on": True}))
    r = GitRepo(tmp_path / "repo")
    r.write_bytes("specs/db-pass.enc.txt", sops_encrypt(plain / "db-pass.txt", public))
    r.write_bytes("specs/app.enc.yaml", sops_encrypt(plain / "app.yaml", public))
    r.write_bytes("specs/app.enc.json", sops_encrypt(plain / "app.json", public))
    r.write("specs/secrets.yaml", SECRETS)
    r.commit("encrypted secrets")
    return r


@pytest.fixture
def source(repo: GitRepo, tmp_path: Path) -> Iterator[GitSource]:
    s = GitSource(repo.url, "main", "specs", cache_dir=tmp_path / "cache")
    yield s
    s.close()


def test_decrypts_what_sops_encrypted(source: GitSource, repo: GitRepo, keys: tuple[Path, str]) -> None:
    key_file, _ = keys
    result = source.load(source.fetch(), keys=AgeKeys.load(key_file))
    assert result.ok, [str(e) for e in result.errors]
    values = {m.name: m.value.get_secret_value() for m in result.manifests if m.value is not None}
    assert values["db-pass"] == PLAIN.encode()  # plain files: exactly the bytes that were encrypted
    yaml = YAML(typ="safe")
    for name, file in (("app-yaml", "app.enc.yaml"), ("app-json", "app.enc.json")):
        reference = sops_decrypt(repo.work / "specs" / file, key_file)  # the real tool's plaintext
        if name == "app-yaml":
            assert yaml.load(values[name]) == yaml.load(reference)
        else:
            assert json.loads(values[name]) == json.loads(reference)
    # the cache holds the encrypted blobs only: no object, loose or packed, contains a plaintext
    objects = source.repo.object_store
    for sha in objects:
        raw = objects[sha].as_raw_string()
        assert b"correct horse" not in raw and b"hunter2" not in raw and b"abc123" not in raw
    assert "correct horse" not in repr(result)  # SecretBytes all the way


def test_key_from_environment(source: GitSource, keys: tuple[Path, str]) -> None:
    key_file, _ = keys
    from_text = AgeKeys.load(environ={"SOPS_AGE_KEY": key_file.read_text()})
    from_file = AgeKeys.load(environ={"SOPS_AGE_KEY_FILE": str(key_file)})
    assert from_text is not None and from_file is not None
    assert source.load(source.fetch(), keys=from_text).ok
    assert source.load(source.fetch(), keys=from_file).ok


def test_wrong_or_missing_key_names_file_line_and_field(source: GitSource, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other, _ = age_keypair(tmp_path / "other")
    sha = source.fetch()
    wrong = source.load(sha, keys=AgeKeys.load(other))
    assert not wrong.ok
    first = str(wrong.errors[0])
    assert first.startswith(f"{sha[:12]}:specs/secrets.yaml:4:8: SwarmSecret/db-pass: spec.file: ")
    assert "none of the age keys" in first
    missing = source.load(sha, keys=None)
    assert "no age key was given" in str(missing.errors[0])
    for e in [*wrong.errors, *missing.errors]:
        assert "correct horse" not in str(e) and "hunter2" not in str(e)


def test_tampered_file_is_refused(repo: GitRepo, tmp_path: Path, keys: tuple[Path, str]) -> None:
    key_file, _ = keys
    yaml = YAML()
    path = repo.work / "specs" / "app.enc.yaml"
    doc = yaml.load(path.read_text())
    # swap two encrypted values: each decrypts only at its own place (the path is authenticated)
    doc["db"]["user"], doc["db"]["password"] = doc["db"]["password"], doc["db"]["user"]
    with path.open("w") as f:
        yaml.dump(doc, f)
    sha = repo.commit("tamper")
    s = GitSource(repo.url, "main", "specs", cache_dir=tmp_path / "cache2")
    try:
        result = s.load(s.fetch(), keys=AgeKeys.load(key_file))
    finally:
        s.close()
    (error,) = result.errors
    assert str(error).startswith(f"{sha[:12]}:specs/secrets.yaml:9:8: SwarmSecret/app-yaml: spec.file: ")
    assert "db:user" in str(error) and "hunter2" not in str(error)


def test_dropped_value_fails_the_mac(tmp_path: Path, keys: tuple[Path, str]) -> None:
    from swarmkeeper.sources.sops import decrypt, parse_document

    key_file, public = keys
    plain = tmp_path / "two.yaml"
    plain.write_text("a: one\nb: two\n")
    doc = parse_document(sops_encrypt(plain, public), "yaml")
    del doc["b"]
    with pytest.raises(SopsError, match="MAC mismatch"):
        decrypt(doc, "yaml", AgeKeys.load(key_file), "two.yaml")


def test_encrypted_files_only_for_secrets(tmp_path: Path, keys: tuple[Path, str]) -> None:
    key_file, public = keys
    plain = tmp_path / "conf.txt"
    plain.write_text("not for a config\n")
    r = GitRepo(tmp_path / "repo")
    r.write_bytes("specs/conf.enc.txt", sops_encrypt(plain, public))
    r.write(
        "specs/c.yaml",
        """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmConfig
        metadata: {name: c}
        spec: {file: conf.enc.txt}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {name: s}
        spec: {image: 'local/busybox:1', envFile: [conf.enc.txt]}
        """,
    )
    sha = r.commit("misuse")
    s = GitSource(r.url, "main", "specs", cache_dir=tmp_path / "cache")
    try:
        result = s.load(s.fetch(), keys=AgeKeys.load(key_file))
    finally:
        s.close()
    messages = [str(e) for e in result.errors]
    assert messages[0].startswith(f"{sha[:12]}:specs/c.yaml:4:8: SwarmConfig/c: spec.file: conf.enc.txt: is SOPS")
    assert "only a SwarmSecret may hold an encrypted value" in messages[0]
    assert messages[1].startswith(f"{sha[:12]}:specs/c.yaml:9:44: SwarmService/s: spec.envFile[0]: conf.enc.txt")
