"""``swarmkeeper import compose`` at the command line: what a user sees for a broken file and for
keys swarm cannot honour. Import reads files and writes specs; it never talks to an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import sk

# Each file breaks YAML itself (not the compose schema): the place is where the parser stops.
SYNTAX_ERRORS = {
    "unclosed flow sequence": (
        'version: "3.8"\nservices:\n  web:\n    image: local/busybox:1\n    ports: [80, 443\n    command: sleep 1d\n',
        "6:12",
        "expected ',' or ']'",
    ),
    "bad indentation": (
        'version: "3.8"\nservices:\n  web:\n    image: local/busybox:1\n   command: sleep 1d\n',
        "5:4",
        "expected <block end>",
    ),
    "unclosed quote": (
        'version: "3.8"\nservices:\n  web:\n    image: "local/busybox:1\n',
        "5:1",
        "unexpected end of stream",
    ),
    "tab indentation": (
        'version: "3.8"\nservices:\n  web:\n\timage: local/busybox:1\n',
        "4:1",
        "'\\t' that cannot start any token",
    ),
}

GOOD = 'version: "3.8"\nservices:\n  web:\n    image: local/busybox:1\n    command: ["sleep", "1d"]\n'


@pytest.mark.parametrize("case", sorted(SYNTAX_ERRORS))
def test_a_yaml_syntax_error_names_file_line_and_column_exits_2_and_writes_nothing(tmp_path: Path, case: str) -> None:
    text, where, message = SYNTAX_ERRORS[case]
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text)
    out = tmp_path / "specs"
    res = sk("import", "compose", broken, "-n", "shop", "-o", out)
    assert res.code == 2, res.output
    assert f"error: {broken}:{where}: " in res.stderr and message in res.stderr, res.stderr
    assert "1 error; nothing was written" in res.stderr
    assert res.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == [broken.name]  # no specs folder, no root marker
    # Printing to stdout instead: no partial specs either.
    res = sk("import", "compose", broken, "-n", "shop")
    assert res.code == 2 and res.stdout == "", res.output


def test_a_syntax_error_in_an_override_names_the_override_and_leaves_existing_specs_alone(tmp_path: Path) -> None:
    base = tmp_path / "base.yml"
    base.write_text(GOOD)
    out = tmp_path / "specs"
    assert sk("import", "compose", base, "-n", "shop", "-o", out).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "service-web.yaml" in before
    text, where, _ = SYNTAX_ERRORS["unclosed flow sequence"]
    override = tmp_path / "prod.yml"
    override.write_text(text)
    # Even with --force, which would overwrite the specs a good import writes.
    res = sk("import", "compose", base, override, "-n", "shop", "-o", out, "--force")
    assert res.code == 2, res.output
    assert f"{override}:{where}: " in res.stderr and f"{base}:" not in res.stderr, res.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


UNTRANSLATABLE = """\
version: "3.8"
services:
  builder:
    build: ./app
  web:
    image: local/busybox:1
    container_name: web-1
    links: [db]
    privileged: true
    devices: ["/dev/fuse:/dev/fuse"]
    depends_on:
      db:
        condition: service_healthy
  db:
    image: local/busybox:1
    network_mode: host
"""


def test_keys_swarm_cannot_honour_get_a_note_each_a_comment_each_and_one_summary_line(tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(UNTRANSLATABLE)
    out = tmp_path / "specs"
    res = sk("import", "compose", compose, "-n", "shop", "-o", out)
    assert res.code == 0, res.output
    notes = res.stderr.splitlines()
    dropped = {
        "web": ["container_name", "links", "privileged", "devices"],
        "db": ["network_mode"],
    }
    for service, keys in dropped.items():
        spec = (out / f"service-{service}.yaml").read_text()
        for key in keys:
            assert any(n.startswith(f"note: service {service}: {key}: not translated: ") for n in notes), res.stderr
            assert f"# {key}: not translated: " in spec, spec
    # A condition is approximated rather than dropped: dependsOn waits for db to converge.
    web = (out / "service-web.yaml").read_text()
    assert "# depends_on.db.condition: service_healthy has no exact equivalent" in web
    assert "dependsOn:\n    - db" in web
    assert any(n.startswith("note: service web: depends_on.db.condition: service_healthy") for n in notes)
    # A service with nothing to run: no spec, and a note naming it.
    assert not (out / "service-builder.yaml").exists()
    assert any(n.startswith("note: services.builder: build: without image: is not translated") for n in notes)
    # One summary line, counting the keys written as comments and the specs holding them.
    summary = [n for n in notes if "not translated in" in n]
    assert summary == ["note: 5 keys not translated in 2 objects; each is a comment in its spec file"], res.stderr
    assert notes[-1] == f"wrote 3 spec files to {out}"
