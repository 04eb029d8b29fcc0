"""Loading spec files: finding them, reading YAML safely, validating, and pointing errors at lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from swarmkeeper.api import SwarmNetwork, SwarmService
from swarmkeeper.loading import LoadResult, SpecError, SpecLoadError, load_paths, load_text

DATA = Path(__file__).parent / "data" / "loading"
EXAMPLE_SPECS = Path(__file__).parent.parent / "specs"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def only_error(result: LoadResult) -> SpecError:
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


SERVICE = """
    apiVersion: swarmkeeper.io/v1alpha1
    kind: SwarmService
    metadata:
      name: web
    spec:
      image: nginx:1.27
"""


# --- a valid folder -------------------------------------------------------------------------------


def test_valid_folder_with_several_documents_per_file() -> None:
    result = load_paths([DATA / "valid"])

    assert result.ok, [str(e) for e in result.errors]
    assert [m.key for m in result.manifests] == [
        ("SwarmNetwork", "shop", "backend"),
        ("SwarmSecret", "shop", "db-pass"),
        ("SwarmConfig", "shop", "nginx-conf"),
        ("SwarmService", "shop", "web"),
        ("SwarmService", "shop", "api"),
    ]
    network, secret, config, web, _ = result.manifests
    assert isinstance(network.resource, SwarmNetwork) and network.resource.spec.encrypted
    assert network.origin is not None and network.origin.line == 2  # the comment above is not a key
    assert config.origin is not None and config.origin.document == 3  # the empty document counts
    assert secret.value is not None and secret.value.get_secret_value() == b"not-a-real-password\n"
    assert config.value is not None and config.value.get_secret_value() == b"server { listen 80; }\n"
    assert isinstance(web.resource, SwarmService)
    assert web.resource.spec.secrets[0].mode == 0o400
    assert web.resource.status is None  # never read as desired state, however wrong it is
    assert dict(web.file_env) == {"WORKERS": "4", "GREETING": "hello world", "EMPTY": ""}
    assert web.origin is not None
    assert web.origin.file == DATA / "valid" / "app" / "web.yml"
    assert web.origin.root == DATA / "valid"
    assert (web.kind, web.name, web.namespace) == ("SwarmService", "web", "shop")


def test_origin_keeps_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "specs" / "sub" / "web.yaml", SERVICE)
    monkeypatch.chdir(tmp_path)

    result = load_paths([Path("specs")])

    assert result.ok
    origin = result.manifests[0].origin
    assert origin is not None
    assert (origin.file, origin.root, origin.line, origin.document) == (
        Path("specs/sub/web.yaml"),
        Path("specs"),
        1,
        0,
    )


def test_a_file_argument_is_its_own_root(tmp_path: Path) -> None:
    spec = write(tmp_path / "web.txt", SERVICE)  # named explicitly: loaded whatever its name

    result = load_paths([spec])

    assert result.ok
    origin = result.manifests[0].origin
    assert origin is not None and origin.root == tmp_path


def test_a_file_named_twice_is_loaded_once(tmp_path: Path) -> None:
    spec = write(tmp_path / "web.yaml", SERVICE)

    result = load_paths([tmp_path, spec])

    assert result.ok and len(result.manifests) == 1


def test_status_block_is_ignored(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE + "    status:\n      replicas: lots\n      unknownThing: 1\n")

    result = load_paths([tmp_path])

    assert result.ok, [str(e) for e in result.errors]
    assert result.manifests[0].resource.status is None


def test_hidden_folders_and_editor_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE)
    broken = "this: is [not yaml\n"
    for name in (
        ".git/config.yaml",
        ".status/web.yaml",
        ".web.yaml",
        ".#web.yaml",
        "web.yaml~",
        "web.yaml.swp",
        "web.yaml.swx",
        "web.yaml.tmp",
        "4913",
        "notes.txt",
        "sub/.hidden/x.yml",
    ):
        write(tmp_path / name, broken)

    result = load_paths([tmp_path])

    assert result.ok, [str(e) for e in result.errors]
    assert len(result.manifests) == 1


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"

    error = only_error(load_paths([missing]))

    assert error.file == missing
    assert "no such file or folder" in str(error)


def test_a_symlink_loop_among_the_specs_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE)
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")

    result = load_paths([tmp_path])

    error = only_error(result)
    assert error.file == tmp_path / "loop.yaml"
    assert "symlink loop" in error.message
    assert len(result.manifests) == 1


def test_empty_documents_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "empty.yaml", "---\n# nothing here\n---\n")

    result = load_paths([tmp_path])

    assert result.ok and result.manifests == []


def test_load_text_accepts_str_and_bytes() -> None:
    text = textwrap.dedent(SERVICE)
    for content in (text, text.encode()):
        result = load_text(content, Path("specs/web.yaml"))
        assert result.ok
        origin = result.manifests[0].origin
        assert origin is not None and origin.root == Path("specs")
        assert origin.line == 2  # dedent leaves the leading blank line


def test_load_text_leaves_references_to_the_caller() -> None:
    text = textwrap.dedent(SERVICE) + "  dependsOn: [api]\n"

    assert load_text(text, Path("web.yaml")).ok


# --- validation errors ----------------------------------------------------------------------------


def test_wrong_type_deep_inside_points_at_its_line_and_column(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "web.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata:
          name: web
        spec:
          image: nginx:1.27
          ports:
            - target: 80
            - published: 8080
              target: "abc"
        """,
    )

    error = only_error(load_paths([spec]))

    assert (error.file, error.line, error.column) == (spec, 10, 7)
    assert (error.kind, error.name, error.field) == ("SwarmService", "web", "spec.ports[1].target")
    assert str(error) == f"{spec}:10:7: SwarmService/web: spec.ports[1].target: {error.message}"
    assert "abc" not in str(error)


def test_unknown_field_suggests_the_known_one(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE + "      replica: 3\n")

    error = only_error(load_paths([tmp_path]))

    assert error.field == "spec.replica"
    assert (error.line, error.column) == (7, 3)
    assert error.message == 'unknown field "replica" (did you mean "replicas"?)'


def test_unknown_field_inside_a_list_item_suggests_the_item_field(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE + "      secrets:\n        - source: db\n          mdoe: 0400\n")

    error = only_error(load_paths([tmp_path]))

    assert error.field == "spec.secrets[0].mdoe"
    assert (error.line, error.column) == (9, 7)
    assert error.message == 'unknown field "mdoe" (did you mean "mode"?)'


def test_value_error_message_has_no_prefix(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE + "      mode: global\n      replicas: 2\n")

    error = only_error(load_paths([tmp_path]))

    assert error.field == "spec"
    assert error.line == 5
    assert error.message == "replicas cannot be set with mode global"


def test_unknown_kind_suggests_a_known_kind(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE.replace("kind: SwarmService", "kind: SwarmServce"))

    error = only_error(load_paths([tmp_path]))

    assert (error.line, error.column, error.field) == (2, 1, "kind")
    assert error.message == 'unknown kind "SwarmServce" (did you mean "SwarmService"?)'


def test_wrong_api_version(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE.replace("v1alpha1", "v1"))

    error = only_error(load_paths([tmp_path]))

    assert (error.line, error.field) == (1, "apiVersion")
    assert 'must be "swarmkeeper.io/v1alpha1"' in error.message


def test_missing_required_field_points_at_its_parent(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", SERVICE.replace("      image: nginx:1.27\n", "      replicas: 1\n"))

    error = only_error(load_paths([tmp_path]))

    assert error.field == "spec.image"
    assert (error.line, error.column) == (5, 1)  # the "spec:" key


def test_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    write(tmp_path / "list.yaml", SERVICE + "---\n- a\n- b\n")

    result = load_paths([tmp_path])

    error = only_error(result)
    assert error.line == 8
    assert "document 2 is a list" in error.message
    assert len(result.manifests) == 1


def test_all_errors_of_all_files_are_returned_sorted(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", SERVICE + "      replicas: many\n      bogus: 1\n")
    write(tmp_path / "a.yaml", SERVICE.replace("name: web", "name: api").replace("image", "imgae"))

    result = load_paths([tmp_path])

    assert [(e.file.name if e.file else None, e.line) for e in result.errors] == [
        ("a.yaml", 5),  # spec.image missing
        ("a.yaml", 6),  # spec.imgae unknown
        ("b.yaml", 7),
        ("b.yaml", 8),
    ]


def test_spec_error_str_leaves_out_what_is_unknown() -> None:
    assert str(SpecError("boom")) == "boom"
    assert str(SpecError("boom", file=Path("a.yaml"))) == "a.yaml: boom"
    assert str(SpecError("boom", file=Path("a.yaml"), line=3, kind="SwarmService")) == "a.yaml:3: SwarmService: boom"
    assert str(SpecError("boom", kind="SwarmSecret", name="db", field="spec.env")) == "SwarmSecret/db: spec.env: boom"


def test_spec_load_error_carries_the_errors() -> None:
    errors = [SpecError("one", file=Path("a.yaml"), line=1), SpecError("two")]

    exc = SpecLoadError(errors)

    assert exc.errors == errors
    assert str(exc) == "a.yaml:1: one\ntwo"


# --- reading YAML safely --------------------------------------------------------------------------


def test_syntax_error_has_position_but_no_snippet_of_the_line(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "secret.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata:
          name: db
        spec:
          stringData: "hunter2-CANARY
        """,
    )

    error = only_error(load_paths([tmp_path]))

    assert error.file == spec
    assert error.line == 7 and error.column is not None
    assert "hunter2-CANARY" not in str(error)
    assert "line 6, column 15" in error.message  # where the unterminated scalar starts


def test_indentation_error_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "bad.yaml", "metadata:\n  name: web\n password: hunter2-CANARY: x\n")

    error = only_error(load_paths([tmp_path]))

    assert error.line == 3
    assert "hunter2-CANARY" not in str(error)


def test_duplicate_key_is_reported_without_values(tmp_path: Path) -> None:
    write(
        tmp_path / "secret.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata:
          name: db
        spec:
          stringData: first-CANARY
          stringData: second-CANARY
        """,
    )

    error = only_error(load_paths([tmp_path]))

    assert (error.line, error.column) == (7, 3)
    assert error.message == 'duplicate key "stringData"'
    assert "CANARY" not in str(error)


def test_non_utf8_file(tmp_path: Path) -> None:
    spec = write(tmp_path / "latin1.yaml", "metadata:\n  name: caf\xe9\n".encode("latin-1"))

    error = only_error(load_paths([tmp_path]))

    assert (error.file, error.line) == (spec, 2)
    assert "UTF-8" in error.message


def test_file_larger_than_4_mib(tmp_path: Path) -> None:
    spec = write(tmp_path / "big.yaml", b"# " + b"x" * (4 * 1024 * 1024) + b"\n")

    error = only_error(load_paths([tmp_path]))

    assert error.file == spec
    assert "larger than 4 MiB" in error.message


def test_alias_bomb_is_rejected(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    spec = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")

    error = only_error(load_paths([tmp_path]))

    assert error.file == spec
    assert "too many nodes (YAML alias expansion?)" in error.message


def test_shared_anchors_within_limits_are_fine(tmp_path: Path) -> None:
    write(
        tmp_path / "web.yaml",
        SERVICE + "      labels: &labels {tier: web}\n      containerLabels: *labels\n",
    )

    result = load_paths([tmp_path])

    assert result.ok
    resource = result.manifests[0].resource
    assert isinstance(resource, SwarmService)
    assert resource.spec.container_labels == {"tier": "web"}


@pytest.mark.parametrize("levels", [65, 5000])
def test_deep_nesting_is_rejected(tmp_path: Path, levels: int) -> None:
    write(tmp_path / "deep.yaml", "a: " + "[" * (levels - 1) + "]" * (levels - 1) + "\n")

    error = only_error(load_paths([tmp_path]))

    assert error.line == 1
    assert "nested deeper than 64 levels" in error.message


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    write(tmp_path / "deep.yaml", "a: " + "[" * 63 + "1" + "]" * 63 + "\n")

    result = load_paths([tmp_path])  # read fine, then rejected as a spec (no apiVersion, no kind)

    assert [e.field for e in result.errors] == ["apiVersion", "kind"]


def test_unsupported_tag_and_non_string_key(tmp_path: Path) -> None:
    write(tmp_path / "tag.yaml", SERVICE + "      user: !vault secret/path\n")
    write(tmp_path / "key.yaml", SERVICE + "      env:\n        1: one\n")

    result = load_paths([tmp_path])

    assert [(e.file.name if e.file else None, e.line, e.message) for e in result.errors] == [
        ("key.yaml", 8, "a mapping key must be a string here; quote it"),
        ("tag.yaml", 7, "unsupported YAML tag !vault"),
    ]


def test_string_data_never_appears_in_errors(tmp_path: Path) -> None:
    write(
        tmp_path / "secret.yaml",
        """
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata:
          name: db
        spec:
          stringData: CANARY-123
          keepVersion: 2
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata:
          name: db2
        spec:
          stringData: CANARY-123
          env: ALSO_SET
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata:
          name: db3
        spec:
          stringData: {nested: CANARY-123}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata:
          name: db4
        spec:
          stringData: CANARY-123
          cluster: prod
        """,
    )

    result = load_paths([tmp_path])

    assert [e.name for e in result.errors] == ["db", "db2", "db3", "db4"]
    for error in result.errors:
        assert "CANARY-123" not in str(error)
    assert "CANARY-123" not in str(SpecLoadError(result.errors))


# --- the example specs ------------------------------------------------------------------------------


def test_example_specs_load() -> None:
    if not any(EXAMPLE_SPECS.rglob("*.y*ml")):
        pytest.skip("specs/ holds no YAML yet")

    result = load_paths([EXAMPLE_SPECS], resolve_values=False)

    assert result.ok, "\n".join(str(e) for e in result.errors)
    assert result.manifests


def test_impossible_date_is_reported_without_the_value(tmp_path: Path) -> None:
    spec = write(tmp_path / "web.yaml", SERVICE + "      user: 2024-13-45\n")

    error = only_error(load_paths([tmp_path]))

    assert error.file == spec
    assert error.message.startswith("a value cannot be read")
    assert error.line == 7 and error.column is not None  # where the value is
    assert "2024" not in str(error)


def test_control_character_is_reported_with_its_position(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", "a: 1\nb: x\x07y\n")

    error = only_error(load_paths([tmp_path]))

    assert (error.line, error.column) == (2, 5)
    assert error.message.startswith("unacceptable character #x0007")


def test_a_path_the_system_refuses_is_an_error_not_a_crash(tmp_path: Path) -> None:
    too_long = tmp_path / ("a" * 300) / "web.yaml"
    result = load_paths([too_long])
    assert not result.ok
    assert [e.file for e in result.errors] == [too_long]
    assert "too long" in result.errors[0].message
