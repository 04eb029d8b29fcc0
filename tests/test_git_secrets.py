"""A SOPS-encrypted secret in Git, end to end: the real ``sops`` encrypts it, ``swarmkeeper sync``
decrypts it in memory, and its plaintext is readable only inside the service that names it —
nowhere on disk under the cache, in the logs, the status file or ``swarmkeeper get``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import docker

from git_helpers import SWARMKEEPER, GitRepo, age_keypair, read_status, run_sync_once, sops_encrypt
from helpers import exec_in_service, running_count, wait_for

PLAINTEXT = "s0ps-decrypted-db-password-7f3a"


def test_sops_secret_reaches_only_the_service_that_names_it(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    key_file, recipient = age_keypair(tmp_path)
    plain = tmp_path / "plain" / "db-pass.txt"
    plain.parent.mkdir()
    plain.write_text(PLAINTEXT)
    repo = GitRepo(tmp_path / "repo")
    repo.write_bytes("specs/db-pass.enc.txt", sops_encrypt(plain, recipient))
    plain.unlink()  # from here on the plaintext exists only in the test's memory
    repo.write(
        "specs/app.yaml",
        f"""\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: db-pass, namespace: {namespace}}}
        spec: {{file: db-pass.enc.txt}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: api, namespace: {namespace}}}
        spec:
          image: local/busybox:1
          command: ["sleep", "3600"]
          secrets: [{{source: db-pass}}]
          stopGracePeriod: 1s
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          image: local/busybox:1
          command: ["sleep", "3600"]
          stopGracePeriod: 1s
        """,
    )
    repo.commit("encrypted db password")
    cache, status_file = tmp_path / "cache", tmp_path / "status.yaml"
    args: list[str | Path] = [
        "--repo", repo.url, "--path", "specs", "--name", f"{namespace}-sops", "--cache-dir", cache,
    ]  # fmt: skip
    result = run_sync_once(*args, "--status-file", status_file, "--age-key-file", key_file)
    assert result.returncode == 0, result.stderr

    api, web = f"{namespace}_api", f"{namespace}_web"
    wait_for(lambda: running_count(docker_api, api) == 1 and running_count(docker_api, web) == 1, timeout=60)
    assert exec_in_service(docker_api, api, ["cat", "/run/secrets/db-pass"]) == PLAINTEXT
    assert "db-pass" not in exec_in_service(docker_api, web, ["sh", "-c", "ls /run/secrets 2>&1 || true"])

    # nowhere else: not in any file under the cache (raw or as a decompressed Git object) ...
    needle = PLAINTEXT.encode()
    for path in cache.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    from dulwich.repo import Repo

    (cache_repo,) = [p for p in cache.iterdir() if p.is_dir()]
    with Repo(str(cache_repo)) as stored:
        for sha in stored.object_store:
            assert needle not in stored.object_store[sha].as_raw_string()
    # ... nor in the logs, the status file, or what swarmkeeper shows about it
    assert PLAINTEXT not in result.stdout + result.stderr
    assert PLAINTEXT not in status_file.read_text()
    assert read_status(status_file)["lastAppliedRevision"] == repo.head()
    shown = subprocess.run(
        [str(SWARMKEEPER), "get", "secrets", "-n", namespace, "-o", "yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert "db-pass" in shown.stdout and PLAINTEXT not in shown.stdout + shown.stderr
    dry = run_sync_once(*args, "--dry-run", "--age-key-file", key_file)
    assert dry.returncode == 0 and PLAINTEXT not in dry.stdout + dry.stderr

    # without the key the commit is not applied, and the error says why without the value
    missing = run_sync_once(*args, env={"SOPS_AGE_KEY_FILE": "", "SOPS_AGE_KEY": "", "HOME": str(tmp_path)})
    assert missing.returncode == 2
    assert "specs/app.yaml:4:8: SwarmSecret/db-pass: spec.file: specs/db-pass.enc.txt" in missing.stderr
    assert PLAINTEXT not in missing.stdout + missing.stderr
