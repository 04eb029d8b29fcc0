"""Status written back into spec files (inline) or a ``.status/`` tree, touching nothing else (pure)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from swarmkeeper.loading import writes
from swarmkeeper.loading.spans import document_spans, split_lines
from swarmkeeper.loading.writes import TEMP_SUFFIX
from swarmkeeper.sources.status_files import (
    FolderStatusWriter,
    InlineStatusWriter,
    NullStatusWriter,
    StatusEntry,
    make_writer,
    read_status,
)

# Three documents after a leading comment: comments everywhere, every quoting style, flow
# collections, blank lines; the middle one already has a status that sits before another key.
SHOP = """\
# Shop stack: everything the web tier needs
---
apiVersion: swarmkeeper.io/v1alpha1  # pinned
kind: SwarmService
metadata:
  name: 'web'
  namespace: "shop"

spec:
  image: nginx:1.25   # keep in sync with staging
  ports: [80, 443]
  env: {A: '1', B: "two", C: plain}
  # replicas picked by a load test
  replicas: 3

# the network the web tier talks over
---
kind: SwarmNetwork
metadata: {name: backend, namespace: shop}
status:
  # observed by the controller
  phase: Ready
# the network itself
spec:
  driver: overlay
--- # the database
kind: SwarmService
metadata:
  name: db
  namespace: shop
spec:
  image: "postgres:16"
  command: ['postgres', "-c", max_connections=200]
  replicas: 1
"""

WEB_STATUS: dict[str, Any] = {
    "phase": "Running",
    "observedGeneration": 3,
    "lastTransitionTime": "2024-05-01T12:00:00Z",
    "conditions": [{"type": "Ready", "status": "True", "message": "3/3 tasks: running"}],
    "replicas": {"desired": 3, "running": 3},
}
DB_STATUS: dict[str, Any] = {"phase": "Pending", "message": "no suitable node (yes, really)", "ready": False}


def entry(
    file: Path, document: int, name: str, status: dict[str, Any] | None, kind: str = "SwarmService"
) -> StatusEntry:
    return StatusEntry(file=file, document=document, kind=kind, name=name, namespace="shop", status=status)


def without_status_blocks(text: str) -> str:
    """``text`` minus every ``status:`` line and the indented lines under it (an independent oracle)."""
    kept: list[str] = []
    inside = False
    for line in re.split(r"(?<=\n)", text):
        if re.match(r"status:", line):
            inside = True
            continue
        if inside and line.startswith(" "):
            continue
        inside = False
        kept.append(line)
    return "".join(kept)


def load_all(text: str) -> list[Any]:
    return list(YAML(typ="safe", pure=True).load_all(text))


def no_temp_files(folder: Path) -> bool:
    return not [name for _, _, names in os.walk(folder) for name in names if name.endswith(TEMP_SUFFIX)]


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("final_newline", [True, False])
@pytest.mark.parametrize("bom", [False, True])
def test_inline_touches_nothing_outside_status(tmp_path: Path, eol: str, final_newline: bool, bom: bool) -> None:
    original = SHOP.replace("\n", eol) if final_newline else SHOP.rstrip("\n").replace("\n", eol)
    raw = ("\ufeff" if bom else "").encode() + original.encode()
    spec = tmp_path / "shop.yaml"
    spec.write_bytes(raw)

    writer = InlineStatusWriter()
    assert writer.write([entry(spec, 0, "web", WEB_STATUS), entry(spec, 2, "db", DB_STATUS)]) == [spec]

    written_raw = spec.read_bytes()
    assert written_raw.startswith(b"\xef\xbb\xbf") == bom
    written = written_raw.decode().removeprefix("\ufeff")
    # Every byte outside the status blocks is the original one (the final line break aside: a block
    # appended at the end of a file without one takes the last line's place).
    assert without_status_blocks(written).rstrip(eol) == without_status_blocks(original).rstrip(eol)
    assert written.endswith("\n") == final_newline
    if eol == "\r\n":
        assert "\n" not in written.replace("\r\n", "")
    else:
        assert "\r" not in written
    assert written.count("  phase: Ready") == 1  # the middle document was not touched

    before, after = load_all(original), load_all(written)
    assert [{k: v for k, v in d.items() if k != "status"} for d in after] == [
        {k: v for k, v in d.items() if k != "status"} for d in before
    ]
    assert [d.get("status") for d in after] == [WEB_STATUS, {"phase": "Ready"}, DB_STATUS]
    assert read_status(spec, 0) == WEB_STATUS
    assert read_status(spec, 2) == DB_STATUS
    assert no_temp_files(tmp_path)


def test_rendered_block_is_block_style_in_the_given_key_order(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    InlineStatusWriter().write([entry(spec, 2, "db", {"z": "1.0", "a": "on", "when": "2024-05-01T12:00:00Z"})])
    assert spec.read_text().endswith("  replicas: 1\nstatus:\n  z: '1.0'\n  a: on\n  when: '2024-05-01T12:00:00Z'\n")
    assert read_status(spec, 2) == {"z": "1.0", "a": "on", "when": "2024-05-01T12:00:00Z"}


def test_status_in_the_middle_is_replaced_in_place(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    status = {"phase": "Failed", "message": "subnet overlaps"}
    InlineStatusWriter().write([entry(spec, 1, "backend", status, kind="SwarmNetwork")])
    old_block = "status:\n  # observed by the controller\n  phase: Ready\n"
    new_block = "status:\n  phase: Failed\n  message: subnet overlaps\n"
    # The comment inside the old block goes with it; the one above `spec:` belongs to `spec:`.
    assert spec.read_text() == SHOP.replace(old_block, new_block)


def test_none_removes_the_block(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    writer = InlineStatusWriter()
    assert writer.write([entry(spec, 1, "backend", None, kind="SwarmNetwork")]) == [spec]
    assert spec.read_text() == SHOP.replace("status:\n  # observed by the controller\n  phase: Ready\n", "")
    assert read_status(spec, 1) is None
    assert writer.write([entry(spec, 1, "backend", None, kind="SwarmNetwork")]) == []


def test_appended_block_removed_again_restores_the_file(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_bytes(SHOP.rstrip("\n").replace("\n", "\r\n").encode())
    original = spec.read_bytes()
    writer = InlineStatusWriter()
    writer.write([entry(spec, 0, "web", WEB_STATUS), entry(spec, 2, "db", DB_STATUS)])
    writer.write([entry(spec, 0, "web", None), entry(spec, 2, "db", None)])
    assert spec.read_bytes() == original


def test_block_goes_before_the_comments_that_introduce_the_next_document(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    InlineStatusWriter().write([entry(spec, 0, "web", {"phase": "Running"})])
    assert "  replicas: 3\nstatus:\n  phase: Running\n\n# the network the web tier talks over\n---\n" in (
        spec.read_text()
    )


def test_same_status_again_does_not_touch_the_file(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    writer = InlineStatusWriter()
    assert writer.write([entry(spec, 0, "web", WEB_STATUS)]) == [spec]
    before = spec.stat()
    assert writer.write([entry(spec, 0, "web", dict(WEB_STATUS))]) == []
    after = spec.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_same_data_formatted_differently_is_left_alone(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    text = "kind: SwarmNetwork\nmetadata: {name: backend}\nstatus: {phase: Ready, 'count': 2}  # hand-written\n"
    spec.write_text(text)
    writer = InlineStatusWriter()
    assert writer.write([entry(spec, 0, "backend", {"count": 2, "phase": "Ready"}, kind="SwarmNetwork")]) == []
    # Strictly equal, though: YAML's true is not 2.
    assert writer.write([entry(spec, 0, "backend", {"count": True, "phase": "Ready"}, kind="SwarmNetwork")])
    assert read_status(spec, 0) == {"count": True, "phase": "Ready"}


def test_is_own_write(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    writer = InlineStatusWriter()
    assert not writer.is_own_write(spec)
    writer.write([entry(spec, 0, "web", WEB_STATUS)])
    assert writer.is_own_write(spec)
    with spec.open("a") as out:
        out.write("# edited by hand\n")
    assert not writer.is_own_write(spec)
    assert not writer.is_own_write(tmp_path / "missing.yaml")


def test_file_changed_meanwhile_is_not_clobbered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    write_temp = writes.write_temp

    def edit_first(target: Path, data: bytes, *, mode: int | None = None) -> Path:
        # Someone saves the file after it was read, while the new version is being prepared.
        target.write_text(SHOP + "# edited meanwhile\n")
        return write_temp(target, data, mode=mode)

    monkeypatch.setattr(writes, "write_temp", edit_first)
    writer = InlineStatusWriter()
    assert writer.write([entry(spec, 0, "web", WEB_STATUS)]) == []
    assert spec.read_text() == SHOP + "# edited meanwhile\n"
    assert not writer.is_own_write(spec)
    assert no_temp_files(tmp_path)


def test_permissions_kept_and_symlinks_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text(SHOP)
    real.chmod(0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    writer = InlineStatusWriter()
    assert writer.write([entry(link, 0, "web", WEB_STATUS)]) == [link]
    assert link.is_symlink()
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert read_status(real, 0) == WEB_STATUS
    assert writer.is_own_write(link) and writer.is_own_write(real)


def test_bad_documents_are_skipped_and_other_files_still_written(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: SwarmService\nmetadata: {name: a\n---\nkind: SwarmService\nmetadata: {name: b}\n")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    good = tmp_path / "good.yaml"
    good.write_text(SHOP)
    original_broken = broken.read_bytes()
    written = InlineStatusWriter().write(
        [
            entry(broken, 0, "a", {"phase": "x"}),
            entry(broken, 1, "b", {"phase": "y"}),
            entry(scalar, 0, "c", {"phase": "z"}),
            entry(tmp_path / "missing.yaml", 0, "d", {"phase": "z"}),
            entry(good, 0, "web", WEB_STATUS),
            entry(good, 7, "nothing", WEB_STATUS),
        ]
    )
    assert written == [broken, good]
    # The broken first document is left as it was; the valid second one still gets its status.
    assert broken.read_text() == original_broken.decode() + "status:\n  phase: y\n"
    assert scalar.read_text() == "just text\n"
    assert read_status(broken, 0) is None
    assert read_status(good, 0) == WEB_STATUS


def test_document_that_no_longer_holds_the_object_is_left_alone(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    writer = InlineStatusWriter()
    assert writer.write([entry(spec, 0, "db", DB_STATUS)]) == []
    assert spec.read_text() == SHOP
    assert writer.read(spec, 1, "SwarmNetwork", "backend", "shop") == {"phase": "Ready"}
    assert writer.read(spec, 1, "SwarmNetwork", "frontend", "shop") is None


def test_indented_top_level_mapping(tmp_path: Path) -> None:
    spec = tmp_path / "indented.yaml"
    spec.write_text("---\n  kind: SwarmService\n  metadata:\n    name: web\n")
    InlineStatusWriter().write([entry(spec, 0, "web", {"phase": "Running"})])
    assert spec.read_text() == "---\n  kind: SwarmService\n  metadata:\n    name: web\n  status:\n    phase: Running\n"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n",
        "a: 1\n",
        "---\na: 1\n",
        "# c\n---\na: 1\n",
        "a: 1\n---\n",
        "a: 1\n---\n---\nb: 2\n",
        "a: 1\n...\n",
        "a: 1\n...\n---\nb: 1\n",
        "%YAML 1.2\n---\na: 1\n",
        "--- # c\na: 1\n--- \n",
        "---\n...\n---\n",
        "a: 1\n---\n# only a comment\n",
        "\n\n---\n",
        "a: |\n  ---x\n  text\n---\nb: 2",
    ],
)
def test_documents_are_counted_like_ruamel(text: str) -> None:
    lines = split_lines(text)
    assert len(document_spans(lines)) == len(list(YAML(typ="rt").load_all(text)))


def test_folder_mode_writes_and_reads_back(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    spec = tmp_path / "apps" / "shop.yaml"
    spec.write_text(SHOP)
    writer = FolderStatusWriter(tmp_path)
    target = tmp_path / ".status" / "apps" / "shop.yaml.status.yaml"
    entries = [entry(spec, 2, "db", DB_STATUS), entry(spec, 0, "web", WEB_STATUS)]
    assert writer.write(entries) == [target]
    assert spec.read_text() == SHOP
    assert load_all(target.read_text()) == [
        {"kind": "SwarmService", "metadata": {"name": "db", "namespace": "shop"}, "status": DB_STATUS},
        {"kind": "SwarmService", "metadata": {"name": "web", "namespace": "shop"}, "status": WEB_STATUS},
    ]
    assert writer.read(spec, 0, "SwarmService", "web", "shop") == WEB_STATUS
    assert writer.read(spec, 0, "SwarmService", "web", None) is None
    assert writer.is_own_write(target)

    before = target.stat()
    assert writer.write(list(reversed(entries))) == []  # same content, whatever the order given
    assert (target.stat().st_ino, target.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # Objects not mentioned keep their status; None drops one; no objects left drops the file.
    assert writer.write([entry(spec, 2, "db", None)]) == [target]
    assert writer.read(spec, 0, "SwarmService", "web", "shop") == WEB_STATUS
    assert writer.read(spec, 2, "SwarmService", "db", "shop") is None
    assert writer.write([entry(spec, 0, "web", None)]) == [target]
    assert not target.exists()
    assert writer.write([entry(tmp_path.parent / "elsewhere.yaml", 0, "x", {"phase": "y"})]) == []
    assert no_temp_files(tmp_path)


def test_make_writer(tmp_path: Path) -> None:
    assert isinstance(make_writer("inline", tmp_path), InlineStatusWriter)
    assert isinstance(make_writer("file", tmp_path), FolderStatusWriter)
    none = make_writer("none", tmp_path)
    assert isinstance(none, NullStatusWriter)
    spec = tmp_path / "shop.yaml"
    spec.write_text(SHOP)
    assert none.write([entry(spec, 0, "web", WEB_STATUS)]) == []
    assert spec.read_text() == SHOP
    assert none.read(spec, 0, "SwarmService", "web", "shop") is None


def test_merge_keys_and_files_that_are_not_text(tmp_path: Path) -> None:
    merged = tmp_path / "merged.yaml"
    merged.write_text("kind: SwarmService\n<<: {status: {phase: Old}}\nmetadata:\n  name: web\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"kind: \xff\xfe\n")
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    old_mac = tmp_path / "old-mac.yaml"  # lone CR line breaks: the parser's lines would not be ours
    old_mac.write_bytes(b"kind: SwarmService\rmetadata: {name: x}\r")
    written = InlineStatusWriter().write(
        [
            entry(binary, 0, "x", {"phase": "y"}),
            entry(loop, 0, "x", {"phase": "y"}),
            entry(old_mac, 0, "x", {"phase": "y"}),
            entry(merged, 0, "web", {"a": 1}),
        ]
    )
    assert written == [merged]
    assert merged.read_text().endswith("  name: web\nstatus:\n  a: 1\n")
    assert read_status(binary, 0) is None
    assert read_status(loop, 0) is None
    assert old_mac.read_bytes() == b"kind: SwarmService\rmetadata: {name: x}\r"
