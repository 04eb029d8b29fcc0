"""The root of a spec tree: what a spec may read, wherever import puts the specs.

``import compose`` copies the files a compose file names into ``SPECS/_files/``, so import → apply
works even when the compose folder and the specs share only ``/``; ``--keep-file-paths`` names the
originals and marks their common folder with ``.swarmkeeper-root``, which the loader, ``watch`` and
the Git door honour, and beyond which no spec reads.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from cli_helpers import sk, write_spec
from git_helpers import GitRepo
from helpers import STACK_NAMESPACE_LABEL, exec_in_service, running_count, wait_for

DB_PASSWORD = "db-pw-CANARY-5d1e"
PROMETHEUS = "global:\n  scrape_interval: 15s\n"  # YAML: copied beside the specs, never taken for one

COMPOSE = """\
services:
  app:
    image: local/busybox:1
    command: ["sleep", "3600"]
    env_file: ./app.env
    secrets: [db_pw]
    configs: [prom]
    stop_grace_period: 1s
secrets:
  db_pw: {file: ./secrets/db_pw.txt}
configs:
  prom: {file: ./prometheus.yml}
"""


@pytest.fixture
def var_tmp() -> Iterator[Path]:
    """A folder under /var/tmp: with pytest's tmp_path (under /tmp), two folders sharing only ``/``."""
    folder = Path(tempfile.mkdtemp(prefix="sk-spec-root-", dir="/var/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def stack(folder: Path) -> Path:
    """A compose file with a secret, a YAML config and an env file beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compose.yml").write_text(COMPOSE)
    (folder / "secrets").mkdir()
    (folder / "secrets" / "db_pw.txt").write_text(DB_PASSWORD)
    (folder / "secrets" / "db_pw.txt").chmod(0o644)
    (folder / "prometheus.yml").write_text(PROMETHEUS)
    (folder / "app.env").write_text("GREETING=hello-from-env-file\n")
    (folder / "app.env").chmod(0o640)
    return folder / "compose.yml"


def test_import_then_apply_works_when_compose_and_specs_share_only_the_root(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path, var_tmp: Path
) -> None:
    compose, specs = stack(tmp_path / "stack"), var_tmp / "specs"
    assert os.path.commonpath([compose, specs]) == "/"
    res = sk("import", "compose", compose, "-n", namespace, "-o", specs)
    assert res.code == 0, res.output
    # One line says which files were copied; their content is never shown.
    copied = [line for line in res.stderr.splitlines() if line.startswith("copied ")]
    assert copied == [
        f"copied 3 files the compose file names into {specs / '_files'} "
        "(app.env, prometheus.yml, secrets/db_pw.txt); the specs name the copies"
    ]
    assert DB_PASSWORD not in res.output
    assert not list(tmp_path.rglob(".swarmkeeper-root")) and not list(var_tmp.rglob(".swarmkeeper-root"))
    assert "file: _files/secrets/db_pw.txt" in (specs / "secret-db-pw.yaml").read_text()

    res = sk("apply", specs, "--source", namespace, "--wait", "--timeout", "90s")
    assert res.code == 0, res.output
    assert DB_PASSWORD not in res.output
    service = f"{namespace}_app"
    wait_for(lambda: running_count(docker_api, service) == 1, timeout=60, message="the service runs")
    # The swarm holds the files' content: the secret as the task reads it, the config as stored.
    assert exec_in_service(docker_api, service, ["cat", "/run/secrets/db_pw"]) == DB_PASSWORD
    configs = docker_api.configs(filters={"label": f"{STACK_NAMESPACE_LABEL}={namespace}"})
    assert [base64.b64decode(c["Spec"]["Data"]).decode() for c in configs] == [PROMETHEUS]
    env = docker_api.inspect_service(service)["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    assert "GREETING=hello-from-env-file" in env

    # The specs own their copies: a new value there is what the next apply takes.
    (specs / "_files" / "secrets" / "db_pw.txt").write_text(DB_PASSWORD + "-2")
    res = sk("apply", specs, "--source", namespace, "--wait", "--timeout", "90s")
    assert res.code == 0, res.output
    wait_for(
        lambda: exec_in_service(docker_api, service, ["cat", "/run/secrets/db_pw"], check=False) == DB_PASSWORD + "-2",
        timeout=90,
        message="the task runs with the copy's new value",
    )


def test_a_copied_secret_is_readable_by_its_owner_only(tmp_path: Path, var_tmp: Path) -> None:
    compose = stack(tmp_path / "stack")
    specs = var_tmp / "specs"
    assert sk("import", "compose", compose, "-n", "shop", "-o", specs).code == 0
    copies = specs / "_files"
    assert stat.S_IMODE((copies / "secrets" / "db_pw.txt").stat().st_mode) == 0o600  # the original: 0644
    assert (copies / "secrets" / "db_pw.txt").read_text() == DB_PASSWORD
    # Listed for Git to leave alone: specs are meant to be committed, a plain secret is not.
    assert (copies / ".gitignore").read_text().splitlines()[1:] == ["/secrets/db_pw.txt"]
    # Other files keep their mode, as they would keep it when copied by hand.
    assert stat.S_IMODE((copies / "app.env").stat().st_mode) == 0o640
    assert stat.S_IMODE((copies / "prometheus.yml").stat().st_mode) == stat.S_IMODE(
        (compose.parent / "prometheus.yml").stat().st_mode
    )
    # Overwritten with --force, a copy is tightened again even when its content did not change.
    (copies / "secrets" / "db_pw.txt").chmod(0o644)
    again = sk("import", "compose", compose, "-n", "shop", "-o", specs)
    assert again.code == 2 and "--force" in again.stderr
    assert sk("import", "compose", compose, "-n", "shop", "-o", specs, "--force").code == 0
    assert stat.S_IMODE((copies / "secrets" / "db_pw.txt").stat().st_mode) == 0o600
    assert sk("validate", specs).code == 0
    # watch follows the copies: a new value in _files/ starts a pass, as any value file does.
    from swarmkeeper.controller.file_events import is_spec_change

    assert is_spec_change(str(copies / "secrets" / "db_pw.txt"))


def test_files_beside_and_above_the_compose_file_keep_their_layout(tmp_path: Path, var_tmp: Path) -> None:
    """A file outside the compose folder goes under the folder holding both, so no two collide."""
    compose = stack(tmp_path / "project" / "stack")
    shared = tmp_path / "project" / "shared" / "db_pw.txt"
    shared.parent.mkdir()
    shared.write_text("shared-value")
    compose.write_text(COMPOSE.replace("./secrets/db_pw.txt", "../shared/db_pw.txt"))
    res = sk("import", "compose", compose, "-n", "shop", "-o", var_tmp / "specs")
    assert res.code == 0, res.output
    copies = var_tmp / "specs" / "_files"
    assert sorted(
        p.relative_to(copies).as_posix() for p in copies.rglob("*") if p.is_file() and p.name != ".gitignore"
    ) == [
        "shared/db_pw.txt",
        "stack/app.env",
        "stack/prometheus.yml",
    ]
    assert sk("validate", var_tmp / "specs").code == 0


def test_a_file_that_cannot_be_read_is_named_where_its_copy_belongs(tmp_path: Path, var_tmp: Path) -> None:
    compose = stack(tmp_path / "stack")
    (compose.parent / "app.env").unlink()
    specs = var_tmp / "specs"
    res = sk("import", "compose", compose, "-n", "shop", "-o", specs)
    assert res.code == 0, res.output
    assert f"note: {compose.parent / 'app.env'}: no such file; not copied: put the file at " in res.stderr
    assert "- _files/app.env" in (specs / "service-app.yaml").read_text()
    res = sk("validate", specs)
    assert res.code == 2 and "spec.envFile[0]" in res.stderr and "no such file" in res.stderr


def test_keep_file_paths_marks_the_common_folder_or_refuses_without_one(tmp_path: Path, var_tmp: Path) -> None:
    compose = stack(tmp_path / "project" / "stack")
    # Only / in common: the specs could never read the originals, so nothing is written.
    res = sk("import", "compose", compose, "-n", "shop", "-o", var_tmp / "specs", "--keep-file-paths")
    assert res.code == 2
    assert "share no folder but the file system's root" in res.stderr
    assert not (var_tmp / "specs").exists()
    # A common folder: marked, and the specs name the originals.
    specs = tmp_path / "project" / "specs"
    res = sk("import", "compose", compose, "-n", "shop", "-o", specs, "--keep-file-paths")
    assert res.code == 0, res.output
    assert (tmp_path / "project" / ".swarmkeeper-root").is_file()
    assert "file: ../stack/secrets/db_pw.txt" in (specs / "secret-db-pw.yaml").read_text()
    assert not (specs / "_files").exists()
    assert sk("validate", specs).code == 0


def test_keep_file_paths_refuses_a_folder_anyone_may_write_to(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp is
    compose = stack(shared / "stack")
    res = sk("import", "compose", compose, "-n", "shop", "-o", shared / "specs", "--keep-file-paths")
    assert res.code == 2
    assert f"share {shared}, which is writable by every user" in res.stderr
    assert not (shared / ".swarmkeeper-root").exists() and not (shared / "specs").exists()


SECRET = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {{name: {name}, namespace: shop}}
spec:
  file: {file}
"""


def test_the_loader_reads_under_the_marker_and_refuses_above_it(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "values").mkdir(parents=True)
    (root / "values" / "db.txt").write_text("inside-value")
    (tmp_path / "outside.txt").write_text("outside-CANARY")
    specs = root / "specs"
    write_spec(specs, "db.yaml", SECRET.format(name="db", file="../values/db.txt"))

    # Without a marker the tree is the folder given: ../values is outside it.
    res = sk("validate", specs)
    assert res.code == 2 and "escapes the specs root" in res.stderr

    (root / ".swarmkeeper-root").write_text("")
    res = sk("validate", specs)
    assert res.code == 0, res.output
    # watch follows the whole tree: a value beside the specs changes them too.
    from swarmkeeper.loading.discovery import tree_root

    assert tree_root(specs) == root
    # A subfolder named on its own belongs to the same tree.
    write_spec(specs / "more", "more.yaml", SECRET.format(name="more", file="../../values/db.txt"))
    assert sk("validate", specs / "more").code == 0, sk("validate", specs / "more").output

    # ../ past the marked root: refused with file, line and field, before anything reaches the engine.
    escape = write_spec(specs, "escape.yaml", SECRET.format(name="escape", file="../../outside.txt"))
    for command in ("validate", "apply"):
        res = sk(command, specs)
        assert res.code == 2, res.output
        assert f"{escape}:5:3: SwarmSecret/escape: spec.file: " in res.stderr, res.stderr
        assert "escapes the specs root" in res.stderr
        assert "outside-CANARY" not in res.output
    # Neither does a symlink under the root lead above it.
    escape.unlink()
    (root / "values" / "link.txt").symlink_to(tmp_path / "outside.txt")
    write_spec(specs, "link.yaml", SECRET.format(name="link", file="../values/link.txt"))
    res = sk("validate", specs)
    assert res.code == 2 and f"{specs / 'link.yaml'}:5:3: SwarmSecret/link: spec.file: " in res.stderr


def test_a_marker_anyone_could_have_placed_is_not_honoured(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o1777)
    (open_folder / ".swarmkeeper-root").write_text("")
    (open_folder / "other.txt").write_text("someone-elses-CANARY")
    specs = open_folder / "mine" / "specs"
    write_spec(specs, "x.yaml", SECRET.format(name="x", file="../../other.txt"))
    res = sk("validate", specs)
    assert res.code == 2 and "escapes the specs root" in res.stderr
    assert "someone-elses-CANARY" not in res.output
    from swarmkeeper.loading.discovery import tree_root

    assert tree_root(specs) == specs


def test_the_git_door_honours_the_marker_inside_the_repository(tmp_path: Path) -> None:
    from dulwich.repo import Repo

    from swarmkeeper.sources.git_specs import CommitTree, load_specs

    repo = GitRepo(tmp_path / "repo")
    repo.write("project/.swarmkeeper-root", "")
    repo.write("project/values/db.txt", "git-value")
    repo.write("outside.txt", "outside-CANARY")
    repo.write("project/specs/db.yaml", SECRET.format(name="db", file="../values/db.txt"))
    repo.write("other/specs/db.yaml", SECRET.format(name="db", file="../values/db.txt"))
    repo.write("other/values/db.txt", "no-marker-here")
    # What import copies into _files/ is a value even when it is YAML: never taken for a spec.
    repo.write("project/specs/_files/prometheus.yml", PROMETHEUS)
    repo.write(
        "project/specs/prom.yaml",
        SECRET.replace("SwarmSecret", "SwarmConfig").format(name="prom", file="_files/prometheus.yml"),
    )
    sha = repo.commit("specs with a marked root")

    with Repo(str(repo.work)) as stored:
        tree = CommitTree(stored, sha)
        assert tree.spec_root("project/specs") == "project"
        assert tree.spec_root("project/specs/") == "project"
        assert tree.spec_root("project") == "project"
        assert tree.spec_root("other/specs") == "other/specs"

        loaded = load_specs(stored, sha, "project/specs")
        assert loaded.ok, [str(e) for e in loaded.errors]
        values = {m.resource.metadata.name: m.value for m in loaded.manifests}
        assert sorted(values) == ["db", "prom"]
        assert all(v is not None for v in values.values())
        assert [v.get_secret_value() for v in values.values() if v is not None] == [
            b"git-value",
            PROMETHEUS.encode(),
        ]
        # The same spec without a marker above it: the tree is the path given.
        unmarked = load_specs(stored, sha, "other/specs")
        assert [str(e) for e in unmarked.errors] == [
            f"{sha[:12]}:other/specs/db.yaml:5:3: SwarmSecret/db: spec.file: ../values/db.txt: escapes the specs path"
        ]

    # Above the marked root: refused, naming commit, file, line and field.
    repo.write("project/specs/escape.yaml", SECRET.format(name="escape", file="../../outside.txt"))
    sha = repo.commit("a spec reaching above the root")
    with Repo(str(repo.work)) as stored:
        loaded = load_specs(stored, sha, "project/specs")
    assert [str(e) for e in loaded.errors] == [
        f"{sha[:12]}:project/specs/escape.yaml:5:3: SwarmSecret/escape: spec.file: ../../outside.txt: "
        "escapes the specs path"
    ]
    assert "outside-CANARY" not in repr(loaded)

    # A marker that is a symbolic link is not one.
    os.unlink(repo.work / "project" / ".swarmkeeper-root")
    os.symlink("values/db.txt", repo.work / "project" / ".swarmkeeper-root")
    repo.remove("project/specs/escape.yaml")
    sha = repo.commit("the marker is a link now")
    with Repo(str(repo.work)) as stored:
        assert CommitTree(stored, sha).spec_root("project/specs") == "project/specs"
