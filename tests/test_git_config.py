"""Several Git sources in one process from a config file, each with its own name, lease and
status; status committed to a branch of its own; config mistakes named by file, line and field."""

from __future__ import annotations

import signal
from pathlib import Path

import docker

from cli_helpers import sk
from git_helpers import GitRepo, git, read_status, run_sync_once, sync_process
from helpers import wait_for

SOURCE_LABEL = "io.swarmkeeper.source"


def config_spec(ns: str, name: str) -> str:
    return f"""\
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmConfig
    metadata: {{name: {name}, namespace: {ns}}}
    spec: {{stringData: "{name} settings"}}
    """


def test_two_sources_in_one_process(docker_api: docker.APIClient, namespace: str, tmp_path: Path) -> None:
    repos = {}
    for name in ("alpha", "beta"):
        repo = GitRepo(tmp_path / name)
        repo.write(f"deploy/{name}.yaml", config_spec(namespace, name))
        repo.commit(name)
        repos[name] = repo
    config = tmp_path / "sources.yaml"
    config.write_text(
        f"""\
sources:
  - name: {namespace}-alpha
    repo: alpha/origin.git
    path: deploy
    interval: 1s
    statusFile: status/alpha.yaml
    statusBranch: sk-status
  - name: {namespace}-beta
    repo: {repos["beta"].url}
    path: deploy
    interval: 1s
    statusFile: status/beta.yaml
"""
    )

    def source_of(name: str) -> str | None:
        for c in docker_api.configs():
            if c["Spec"]["Name"] == f"{namespace}_{name}-v1":
                return str((c["Spec"].get("Labels") or {}).get(SOURCE_LABEL))
        return None

    log = tmp_path / "sync.log"
    with sync_process("--config", config, "--cache-dir", tmp_path / "cache", log=log, wait_ready=False) as ctl:

        def alpha_applied() -> bool:
            assert ctl.proc.poll() is None, ctl.logs()
            return source_of("alpha") == f"{namespace}-alpha"

        wait_for(alpha_applied, timeout=60, message="alpha not applied")
        wait_for(lambda: source_of("beta") == f"{namespace}-beta", timeout=60, message="beta not applied")
        alpha = tmp_path / "status" / "alpha.yaml"
        wait_for(lambda: read_status(alpha).get("lastAppliedRevision") == repos["alpha"].head(), timeout=30)
        # Each source writes its status after its own pass: beta's may land a moment after its config.
        beta = wait_for(
            lambda: (
                (b := read_status(tmp_path / "status" / "beta.yaml")).get("lastAppliedRevision") == repos["beta"].head()
                and b
            ),
            timeout=30,
        )
        assert beta["source"] == f"{namespace}-beta"
        leases = {c["Spec"]["Name"] for c in docker_api.configs() if c["Spec"]["Name"].startswith("swarmkeeper-lease.")}
        assert {f"swarmkeeper-lease.{namespace}-alpha", f"swarmkeeper-lease.{namespace}-beta"} <= leases

        # status went to its own branch of alpha's repository; main is untouched
        origin = repos["alpha"].origin
        branch_file = f"sk-status:{namespace}-alpha.status.yaml"
        applied = "lastAppliedRevision: " + repos["alpha"].head()
        wait_for(lambda: applied in git("show", branch_file, cwd=origin, check=False), timeout=30)
        assert git("rev-parse", "main", cwd=origin) == repos["alpha"].head()
        assert ctl.stop(signal.SIGTERM) == 0


def test_config_errors_name_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text("sources:\n  - repo: /nonexistent\n    interval: 1s\n    prune: maybe\n")
    result = sk("sync", "--config", config)
    assert result.code == 2
    assert f"{config}:4:5: sources[0].prune: Input should be a valid boolean" in result.stderr
    config.write_text("sources:\n  - repo: /nonexistent\n")
    result = sk("sync", "--config", config)
    assert result.code == 2 and "no such repository folder" in result.stderr


def test_status_branch_with_once(docker_api: docker.APIClient, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/c.yaml", config_spec(namespace, "gamma"))
    head = repo.commit("gamma")
    args: list[str | Path] = [
        "--repo", repo.url, "--path", "specs", "--name", f"{namespace}-st", "--cache-dir", tmp_path / "cache",
    ]  # fmt: skip
    done = run_sync_once(*args, "--status-branch", "swarmkeeper-status")
    assert done.returncode == 0, done.stderr
    text = git("show", f"swarmkeeper-status:{namespace}-st.status.yaml", cwd=repo.origin)
    assert f"lastAppliedRevision: {head}" in text
    assert git("rev-parse", "main", cwd=repo.origin) == head
