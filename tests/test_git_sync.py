"""``swarmkeeper sync`` against the real engine and real repositories: commits converge, a bad
commit keeps the last good revision (even across a restart), reverts roll back, force-pushes are
followed, revisions are labelled and shown by ``get -o wide``, and the prune guard holds."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from git_helpers import (
    SWARMKEEPER,
    GitRepo,
    condition,
    git_daemon,
    read_status,
    run_sync_once,
    service_label,
    sync_process,
)
from helpers import running_count, wait_for

REVISION = "io.swarmkeeper.revision"


def service_spec(ns: str, *, replicas: Any = 1, release: str = "1", command: str = '["sleep", "3600"]') -> str:
    return f"""\
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmService
    metadata: {{name: web, namespace: {ns}}}
    spec:
      image: local/busybox:1
      command: {command}
      replicas: {replicas}
      env: {{RELEASE: "{release}"}}
      stopGracePeriod: 1s
    """


def env_of(api: docker.APIClient, name: str) -> list[str]:
    try:
        return list(api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or [])
    except docker.errors.NotFound:
        return []


def replicas_of(api: docker.APIClient, name: str) -> int | None:
    try:
        return int(api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"])
    except docker.errors.NotFound:
        return None


def sync_args(repo_url: str | Path, ns: str, tmp_path: Path, *extra: str) -> list[str | Path]:
    return [
        "--repo",
        repo_url,
        "--path",
        "specs",
        "--name",
        f"{ns}-git",
        "--cache-dir",
        tmp_path / "cache",
        "--status-file",
        tmp_path / "status.yaml",
        *extra,
    ]


def test_commit_converges_and_revision_is_labelled(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/web.yaml", service_spec(namespace))
    first = repo.commit("web: one replica")
    name = f"{namespace}_web"
    status_file = tmp_path / "status.yaml"
    args = sync_args(repo.origin, namespace, tmp_path, "--interval", "1s")
    with sync_process(*args, log=tmp_path / "sync.log") as ctl:
        wait_for(lambda: service_label(docker_api, name, REVISION) == first, timeout=60, message="never applied")
        wait_for(lambda: read_status(status_file).get("lastReleasedRevision") == first, timeout=60)
        status = read_status(status_file)
        assert status["lastAttemptedRevision"] == status["lastAppliedRevision"] == first
        assert condition(status, "Ready")["status"] == "True"
        (obj,) = status["objects"]
        assert obj["file"] == "specs/web.yaml" and obj["status"]["ready"] == "1/1"

        repo.write("specs/web.yaml", service_spec(namespace, replicas=2))
        second = repo.commit("web: two replicas")
        wait_for(lambda: replicas_of(docker_api, name) == 2, timeout=30, message="the commit did not reach the swarm")
        assert service_label(docker_api, name, REVISION) == second
        wait_for(lambda: running_count(docker_api, name) == 2, timeout=60)
        wait_for(lambda: read_status(status_file).get("lastReleasedRevision") == second, timeout=60)
        logs = ctl.logs()
        assert f"revision {second[:12]} (web: two replicas) applied" in logs

    wide = subprocess.run(
        [str(SWARMKEEPER), "get", "services", "-n", namespace, "-o", "wide"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        timeout=60,
    )
    assert wide.returncode == 0, wide.stderr
    assert "REVISION" in wide.stdout and second in wide.stdout


def test_invalid_commit_keeps_last_good_even_after_restart(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/web.yaml", service_spec(namespace))
    good = repo.commit("good")
    name = f"{namespace}_web"
    status_file = tmp_path / "status.yaml"
    args = sync_args(repo.url, namespace, tmp_path, "--interval", "1s")
    with sync_process(*args, log=tmp_path / "sync1.log") as ctl:
        wait_for(lambda: service_label(docker_api, name, REVISION) == good, timeout=60, message="never applied")
        repo.write("specs/web.yaml", service_spec(namespace, replicas="lots"))
        bad = repo.commit("oops")
        wait_for(lambda: read_status(status_file).get("lastAttemptedRevision") == bad, timeout=30)
        status = read_status(status_file)
        assert status["lastAppliedRevision"] == good
        (error,) = status["errors"]
        assert error["commit"] == bad[:12] and error["file"] == "specs/web.yaml"
        assert (error["line"], error["field"], error["object"]) == (7, "spec.replicas", "SwarmService/web")
        assert condition(status, "Valid")["reason"] == "InvalidSpec"
        assert f"revision {good[:12]} stays applied" in condition(status, "Valid")["message"]
        expected = f"{bad[:12]}:specs/web.yaml:7:3: SwarmService/web: spec.replicas: Input should be a valid integer"
        wait_for(lambda: expected in ctl.logs(), timeout=10, message="the log does not name commit/file/line/field")
        assert replicas_of(docker_api, name) == 1 and service_label(docker_api, name, REVISION) == good

    # Restarted with the bad commit still on top: the last good revision (from the status file)
    # is what the loop keeps applying, so drift is still corrected.
    spec = docker_api.inspect_service(name)
    docker_api.update_service(
        spec["ID"], spec["Version"]["Index"], task_template=spec["Spec"]["TaskTemplate"], name=name,
        labels=spec["Spec"].get("Labels"), mode={"Replicated": {"Replicas": 3}},
    )  # fmt: skip
    with sync_process(*args, log=tmp_path / "sync2.log"):
        wait_for(lambda: replicas_of(docker_api, name) == 1, timeout=30, message="last good not re-applied")
        repo.write("specs/web.yaml", service_spec(namespace, replicas=2))
        fixed = repo.commit("fixed")
        wait_for(lambda: service_label(docker_api, name, REVISION) == fixed, timeout=30, message="fix not applied")
        wait_for(lambda: "errors" not in read_status(status_file), timeout=10)
        assert replicas_of(docker_api, name) == 2


def test_revert_rolls_back_and_force_push_is_followed(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repos" / "specs")
    repo.write("specs/web.yaml", service_spec(namespace, release="1"))
    first = repo.commit("release 1")
    name = f"{namespace}_web"
    with git_daemon(repo.root) as port:
        url = f"git://127.0.0.1:{port}/origin.git"
        with sync_process(*sync_args(url, namespace, tmp_path, "--interval", "1s"), log=tmp_path / "sync.log") as ctl:
            wait_for(lambda: service_label(docker_api, name, REVISION) == first, timeout=60, message="never applied")
            repo.write("specs/web.yaml", service_spec(namespace, release="2"))
            second = repo.commit("release 2")
            wait_for(lambda: "RELEASE=2" in env_of(docker_api, name), timeout=30, message="release 2 not applied")

            reverted = repo.revert(second)
            wait_for(lambda: "RELEASE=1" in env_of(docker_api, name), timeout=30, message="revert not applied")
            assert service_label(docker_api, name, REVISION) == reverted

            repo.reset_hard(first)  # rewrite history: drop release 2 and its revert
            repo.write("specs/web.yaml", service_spec(namespace, release="3"))
            rewritten = repo.commit("release 3", push=False)
            repo.push(force=True)
            wait_for(lambda: "RELEASE=3" in env_of(docker_api, name), timeout=30, message="force-push not followed")
            assert service_label(docker_api, name, REVISION) == rewritten
            assert "was rewritten (force-push?)" in ctl.logs()


def test_prune_is_guarded_and_only_touches_own_objects(
    docker_api: docker.APIClient, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    for i in range(4):
        repo.write(
            f"specs/c{i}.yaml",
            f"""\
            apiVersion: swarmkeeper.io/v1alpha1
            kind: SwarmConfig
            metadata: {{name: c{i}, namespace: {namespace}}}
            spec: {{stringData: "value {i}"}}
            """,
        )
    first = repo.commit("four configs")
    other = tmp_path / "other"
    other.mkdir()
    (other / "foreign.yaml").write_text(
        "apiVersion: swarmkeeper.io/v1alpha1\nkind: SwarmConfig\n"
        f"metadata: {{name: foreign, namespace: {namespace}}}\nspec: {{stringData: mine}}\n"
    )
    from cli_helpers import sk

    assert sk("apply", other, "--source", f"{namespace}-other").code == 0

    def configs() -> set[str]:
        return {c["Spec"]["Name"] for c in docker_api.configs() if c["Spec"]["Name"].startswith(f"{namespace}_")}

    args = sync_args(repo.url, namespace, tmp_path, "--prune")
    done = run_sync_once(*args)
    assert done.returncode == 0, done.stderr
    assert configs() == {f"{namespace}_c{i}-v1" for i in range(4)} | {f"{namespace}_foreign-v1"}

    for i in range(1, 4):
        repo.remove(f"specs/c{i}.yaml")
    emptied = repo.commit("remove three of four")
    refused = run_sync_once(*args)
    assert refused.returncode == 1
    assert "refusing to prune 3 of the 4 objects" in refused.stderr
    assert len(configs()) == 5  # nothing deleted
    status = read_status(tmp_path / "status.yaml")
    assert status["lastAttemptedRevision"] == emptied and status["lastAppliedRevision"] == first
    assert "refusing to prune" in condition(status, "Applied")["message"]

    forced = run_sync_once(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert configs() == {f"{namespace}_c0-v1", f"{namespace}_foreign-v1"}  # another source's object stays
    assert read_status(tmp_path / "status.yaml")["lastAppliedRevision"] == emptied


def test_suspend_and_dry_run_change_nothing(docker_api: docker.APIClient, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/web.yaml", service_spec(namespace))
    sha = repo.commit("web")
    dry = run_sync_once(*sync_args(repo.url, namespace, tmp_path, "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    assert f"revision {sha[:12]} web" in dry.stdout
    assert f"create   SwarmService/{namespace}/web" in dry.stdout
    suspended = run_sync_once(*sync_args(repo.url, namespace, tmp_path, "--suspend"))
    assert suspended.returncode == 0, suspended.stderr
    status = read_status(tmp_path / "status.yaml")
    assert status["suspended"] is True and status["lastFetchedRevision"] == sha
    assert condition(status, "Applied")["reason"] == "Suspended"
    assert not [s for s in docker_api.services() if s["Spec"]["Name"].startswith(f"{namespace}_")]
    assert not [c for c in docker_api.configs() if c["Spec"]["Name"].startswith("swarmkeeper-lease." + namespace)]


def test_rollback_on_failure_reapplies_the_last_good_revision(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    def specs(command: str, value: str) -> str:
        return f"""\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmConfig
        metadata: {{name: app-conf, namespace: {namespace}}}
        spec: {{stringData: "{value}"}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          image: local/busybox:1
          command: {command}
          replicas: 1
          configs: [{{source: app-conf, target: /app.conf}}]
          stopGracePeriod: 1s
          updateConfig: {{failureAction: rollback, monitor: 3s}}
          rollbackConfig: {{monitor: 1s}}
        """

    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/app.yaml", specs('["sleep", "3600"]', "good"))
    good = repo.commit("good")
    name = f"{namespace}_web"
    status_file = tmp_path / "status.yaml"
    args = sync_args(repo.url, namespace, tmp_path, "--interval", "1s", "--rollback-on-failure", "--timeout", "90s")
    with sync_process(*args, log=tmp_path / "sync.log") as ctl:
        wait_for(lambda: read_status(status_file).get("lastReleasedRevision") == good, timeout=60, message="no release")
        repo.write("specs/app.yaml", specs('["sh", "-c", "exit 3"]', "bad"))
        bad = repo.commit("broken command")
        wait_for(
            lambda: bad in {f.get("revision") for f in read_status(status_file).get("failedRevisions") or []},
            timeout=120,
            message="the failed release was not detected:\n" + ctl.logs()[-3000:],
        )
        wait_for(lambda: read_status(status_file).get("lastAppliedRevision") == good, timeout=30)
        status = read_status(status_file)
        assert condition(status, "Released")["reason"] == "RolledBack"

        def settled() -> bool:
            spec: dict[str, Any] = docker_api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]
            return spec.get("Command") == ["sleep", "3600"] or spec.get("Args") == ["sleep", "3600"]

        wait_for(settled, timeout=60, message="the service is not back at the good spec")
        # every object of the source is back at the good revision: the config holds "good" again
        (ref,) = docker_api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"]
        import base64

        data = base64.b64decode(docker_api.inspect_config(ref["ConfigID"])["Spec"]["Data"])
        assert data == b"good"
        assert "re-applying revision" in ctl.logs()


@pytest.mark.parametrize("bad", [["--status-branch", "main"], ["--interval", "soon"], ["--repo", "ftp://x/y"]])
def test_bad_options_exit_2(tmp_path: Path, bad: list[str]) -> None:
    from cli_helpers import sk

    repo = GitRepo(tmp_path / "repo")
    repo.commit("empty")
    args = ["sync", "--repo", str(repo.origin), "--once", *bad]
    result = sk(*args)
    assert result.code == 2, result.output
    assert "error:" in result.stderr


def test_idle_sync_fetches_but_writes_and_changes_nothing(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    from controller_helpers import wait_until_idle

    repo = GitRepo(tmp_path / "repo")
    repo.write("specs/web.yaml", service_spec(namespace))
    head = repo.commit("web")
    status_file = tmp_path / "status.yaml"
    with sync_process(*sync_args(repo.url, namespace, tmp_path, "--interval", "200ms"), log=tmp_path / "s.log") as ctl:
        wait_for(lambda: read_status(status_file).get("lastReleasedRevision") == head, timeout=60)
        wait_until_idle(ctl)
        mtime = status_file.stat().st_mtime_ns
        passes = ctl.metric("swarmkeeper_reconcile_total")
        posts = ctl.metric("swarmkeeper_engine_requests_total", method="POST")
        time.sleep(3)
        assert ctl.metric("swarmkeeper_reconcile_total") - passes >= 5  # it kept polling and passing...
        assert ctl.metric("swarmkeeper_engine_requests_total", method="POST") == posts  # ...changing nothing
        assert status_file.stat().st_mtime_ns == mtime  # ...and rewriting nothing
