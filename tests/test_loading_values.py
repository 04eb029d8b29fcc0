"""Values of SwarmSecret/SwarmConfig and env files of SwarmService, resolved while loading."""

from __future__ import annotations

import base64
import os
import textwrap
from pathlib import Path

import pytest

from swarmkeeper.loading import LoadResult, SpecError, load_paths
from swarmkeeper.loading.envfiles import parse_env_file


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def value_spec(source: str, kind: str = "SwarmSecret") -> str:
    """A SwarmSecret (or SwarmConfig) whose spec is ``source``, the source on line 6."""
    return f"apiVersion: swarmkeeper.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: db\nspec:\n  {source}\n"


def only_error(result: LoadResult) -> SpecError:
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


def value_of(result: LoadResult) -> bytes:
    assert result.ok, [str(e) for e in result.errors]
    value = result.manifests[0].value
    assert value is not None
    return value.get_secret_value()


# --- SwarmSecret / SwarmConfig values -------------------------------------------------------------


def test_file_is_relative_to_the_spec_file(tmp_path: Path) -> None:
    write(tmp_path / "db" / "secret.yaml", value_spec("file: files/pass.txt"))
    write(tmp_path / "db" / "files" / "pass.txt", b"s3cret\n")

    assert value_of(load_paths([tmp_path])) == b"s3cret\n"


def test_config_values_resolve_too(tmp_path: Path) -> None:
    write(tmp_path / "conf.yaml", value_spec("stringData: 'listen 80;'", kind="SwarmConfig"))

    assert value_of(load_paths([tmp_path])) == b"listen 80;"


def test_file_escaping_the_root_with_dotdot(tmp_path: Path) -> None:
    write(tmp_path / "outside.txt", "not for swarm")
    spec = write(tmp_path / "specs" / "secret.yaml", value_spec("file: ../outside.txt"))

    error = only_error(load_paths([tmp_path / "specs"]))

    assert (error.file, error.line, error.column, error.field) == (spec, 6, 3, "spec.file")
    assert error.message.endswith("escapes the specs root")
    assert "not for swarm" not in str(error)


def test_file_escaping_the_root_through_a_symlink(tmp_path: Path) -> None:
    write(tmp_path / "outside.txt", "not for swarm")
    write(tmp_path / "specs" / "secret.yaml", value_spec("file: innocent.txt"))
    (tmp_path / "specs" / "innocent.txt").symlink_to(tmp_path / "outside.txt")

    error = only_error(load_paths([tmp_path / "specs"]))

    assert error.field == "spec.file"
    assert "escapes the specs root" in error.message


def test_symlink_inside_the_root_is_fine(tmp_path: Path) -> None:
    write(tmp_path / "specs" / "values" / "real.txt", "v")
    write(tmp_path / "specs" / "secret.yaml", value_spec("file: link.txt"))
    (tmp_path / "specs" / "link.txt").symlink_to(tmp_path / "specs" / "values" / "real.txt")

    assert value_of(load_paths([tmp_path / "specs"])) == b"v"


def test_a_single_spec_file_has_its_folder_as_root(tmp_path: Path) -> None:
    write(tmp_path / "outside.txt", "x")
    spec = write(tmp_path / "specs" / "secret.yaml", value_spec("file: ../outside.txt"))

    assert "escapes the specs root" in only_error(load_paths([spec])).message


def test_missing_file(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("file: nope.txt"))

    error = only_error(load_paths([tmp_path]))

    assert error.field == "spec.file"
    assert error.message == f"{tmp_path / 'nope.txt'}: no such file"


def test_file_too_large_for_swarm(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("file: big.bin"))
    write(tmp_path / "big.bin", b"x" * (500 * 1024 + 1))

    error = only_error(load_paths([tmp_path]))

    assert error.field == "spec.file"
    assert "larger than 500 KiB" in error.message


def test_value_of_exactly_500_kib_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("file: big.bin"))
    write(tmp_path / "big.bin", b"x" * (500 * 1024))

    assert "smaller than 500 KiB" in only_error(load_paths([tmp_path])).message


def test_empty_value_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("stringData: ''"))

    error = only_error(load_paths([tmp_path]))

    assert (error.field, error.message) == ("spec.stringData", "the value is empty; swarm needs at least 1 byte")


def test_env_value_comes_from_the_given_environment(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("env: DB_PASS"))

    assert value_of(load_paths([tmp_path], environ={"DB_PASS": "from-env"})) == b"from-env"


def test_env_value_defaults_to_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "secret.yaml", value_spec("env: SWARMKEEPER_TEST_VALUE"))
    monkeypatch.setenv("SWARMKEEPER_TEST_VALUE", "from-os")

    assert value_of(load_paths([tmp_path])) == b"from-os"


def test_missing_env_variable(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("env: DB_PASS"))

    error = only_error(load_paths([tmp_path], environ={}))

    assert (error.line, error.field) == (6, "spec.env")
    assert error.message == 'environment variable "DB_PASS" is not set'


def test_base64_data(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"\x00binary\xff").decode()
    write(tmp_path / "secret.yaml", value_spec(f"data: {encoded}"))

    assert value_of(load_paths([tmp_path])) == b"\x00binary\xff"


def test_base64_may_be_wrapped_over_lines(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"a longer value, wrapped").decode()
    write(tmp_path / "secret.yaml", value_spec(f"data: |\n    {encoded[:12]}\n    {encoded[12:]}"))

    assert value_of(load_paths([tmp_path])) == b"a longer value, wrapped"


def test_bad_base64_is_not_echoed(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("data: CANARY-123!!"))

    error = only_error(load_paths([tmp_path]))

    assert (error.field, error.message) == ("spec.data", "not valid base64")
    assert "CANARY" not in str(error)


def test_secret_ref_is_only_for_kubernetes(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("secretRef: {name: db, key: password}"))

    error = only_error(load_paths([tmp_path]))

    assert (error.line, error.field) == (6, "spec.secretRef")
    assert error.message == "secretRef is only valid for objects applied through Kubernetes"


def test_without_resolving_nothing_is_read(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", value_spec("file: missing.txt"))
    write(tmp_path / "b.yaml", value_spec("env: NOT_SET").replace("name: db", "name: db2"))
    write(
        tmp_path / "web.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata:
          name: web
        spec:
          image: x
          envFile: [missing.env]
        """,
    )

    result = load_paths([tmp_path], resolve_values=False, environ={})

    assert result.ok, [str(e) for e in result.errors]
    assert [(m.value, dict(m.file_env)) for m in result.manifests] == [(None, {})] * 3


def test_a_failed_value_still_counts_as_defined(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("env: NOT_SET"))
    write(
        tmp_path / "web.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata:
          name: web
        spec:
          image: x
          secrets: [{source: db}]
        """,
    )

    error = only_error(load_paths([tmp_path], environ={}))

    assert error.name == "db"  # and no "no SwarmSecret" error for web


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("file: pipe"))
    os.mkfifo(tmp_path / "pipe")

    assert only_error(load_paths([tmp_path])).message.endswith("pipe: is not a regular file")


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "secret.yaml", value_spec("file: loop"))
    (tmp_path / "loop").symlink_to(tmp_path / "loop")

    assert "symlink loop" in only_error(load_paths([tmp_path])).message


# --- env files of services --------------------------------------------------------------------------

SERVICE_WITH_ENV_FILES = """
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmService
    metadata:
      name: web
    spec:
      image: nginx:1.27
      env:
        MODE: from-spec
      envFile:
        - env/common.env
        - env/web.env
"""


def test_env_files_are_parsed_and_merged_in_order(tmp_path: Path) -> None:
    write(tmp_path / "specs" / "web.yaml", SERVICE_WITH_ENV_FILES)
    write(tmp_path / "specs" / "env" / "common.env", "# shared\nexport LEVEL=info\nMODE=from-file\nNAME='common'\n")
    write(tmp_path / "specs" / "env" / "web.env", 'NAME="web app"\n\nURL=http://x/?a=b\n')

    result = load_paths([tmp_path / "specs"])

    assert result.ok, [str(e) for e in result.errors]
    assert dict(result.manifests[0].file_env) == {
        "LEVEL": "info",
        "MODE": "from-file",  # spec.env still wins: the engine merges the two
        "NAME": "web app",
        "URL": "http://x/?a=b",
    }


def test_bad_env_file_line_names_file_and_line_but_not_content(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE_WITH_ENV_FILES)
    write(tmp_path / "env" / "common.env", "A=1\n")
    env = write(tmp_path / "env" / "web.env", "B=2\nthe password is CANARY-123\n")

    error = only_error(load_paths([tmp_path]))

    assert (error.file, error.line, error.field) == (env, 2, "spec.envFile[1]")
    assert (error.kind, error.name) == ("SwarmService", "web")
    assert "CANARY" not in str(error)


def test_env_file_escaping_the_root(tmp_path: Path) -> None:
    write(tmp_path / "common.env", "A=1\n")
    spec = write(tmp_path / "specs" / "web.yaml", SERVICE_WITH_ENV_FILES.replace("env/common.env", "../common.env"))
    write(tmp_path / "specs" / "env" / "web.env", "B=2\n")

    error = only_error(load_paths([tmp_path / "specs"]))

    assert (error.file, error.line, error.column, error.field) == (spec, 10, 7, "spec.envFile[0]")
    assert "escapes the specs root" in error.message


def test_missing_env_file(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE_WITH_ENV_FILES)
    write(tmp_path / "env" / "common.env", "A=1\n")

    error = only_error(load_paths([tmp_path]))

    assert error.field == "spec.envFile[1]"
    assert error.message.endswith("web.env: no such file")


def test_parse_env_file() -> None:
    text = "\n".join(
        [
            "# comment",
            "  ",
            "PLAIN=value",
            "export EXPORTED=1",
            "SPACED = padded ",
            'DQ="double quoted # not a comment"',
            "SQ='single'",
            "MISMATCHED=\"half'",
            "EMPTY=",
            "EQUALS=a=b",
            "dotted.name-ok=x",
            "no equals sign",
            "1BAD=x",
            "=nothing",
            "has space=x",
        ]
    )

    variables, malformed = parse_env_file(text)

    assert variables == {
        "PLAIN": "value",
        "EXPORTED": "1",
        "SPACED": "padded",
        "DQ": "double quoted # not a comment",
        "SQ": "single",
        "MISMATCHED": "\"half'",
        "EMPTY": "",
        "EQUALS": "a=b",
        "dotted.name-ok": "x",
    }
    assert malformed == [12, 13, 14, 15]
