"""Reading a file document by document (what keeps a pass after a save short) gives exactly what
reading it whole gives: the same documents, indexes, data and positions — or it declines."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmkeeper.loading import documents as D
from swarmkeeper.loading.errors import SpecError
from swarmkeeper.loading.spans import document_spans, split_lines

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(
    p
    for folder in (ROOT / "tests" / "corpus", ROOT / "tests" / "data", ROOT / "specs")
    for p in folder.rglob("*.y*ml")
    if p.is_file()
)

MULTI = """\
# leading comment
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmNetwork
metadata: {name: a}
---
---   # an empty document counts as one
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata:
  name: b
spec:
  image: x
  env: &e {A: "1"}
  labels: *e
status:
  replicas: 1/1
--- !!map
kind: SwarmNetwork
metadata: {name: c}
# trailing comment
"""


def _whole(text: str) -> list[D.Document]:
    read = D._read_whole(text, Path("f.yaml"))
    return read.documents if not read.errors else []


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_sample_reads_the_same_either_way(path: Path) -> None:
    decoded = D.decode(path.read_bytes(), path)
    if isinstance(decoded, SpecError):
        return
    split = D._read_by_document(decoded)
    if split is None:
        return  # declined: the whole file is read
    assert D._read_whole(decoded, path).errors == []  # never accepts what a whole read rejects
    assert split == _whole(decoded)


def test_documents_moved_down_keep_true_positions() -> None:
    split = D._read_by_document(MULTI)
    assert split is not None and split == _whole(MULTI)
    assert [d.index for d in split] == [0, 2, 3]
    shifted = "# one more line\n" + MULTI
    moved = D._read_by_document(shifted)
    assert moved is not None and moved == _whole(shifted)
    assert moved[1].positions[("spec", "image")] == (split[1].positions[("spec", "image")][0] + 1, 3)


@pytest.mark.parametrize(
    "text",
    [
        "%YAML 1.2\n---\na: 1\n",  # a directive belongs to the next document
        "a: 1\n...\n---\nb: 2\n",  # an end marker
        "a: 1\rb: 2\n",  # a line break only the parser counts
        "a: 1\n---\nb: [1\n---\nc: 2\n",  # a syntax error: reported by the whole-file read
        "a: 1\n---\nb: 1\nb: 2\n",  # a duplicate key: likewise
    ],
)
def test_declines_what_only_a_whole_read_gets_right(text: str) -> None:
    assert D._read_by_document(text) is None


def test_parts_kept_from_a_whole_read_are_what_reading_each_part_gives() -> None:
    D._parts.clear()
    documents, errors = D.read_documents(MULTI, Path("f.yaml"))  # new text: read whole, parts kept
    assert not errors and documents == _whole(MULTI)
    lines = split_lines(MULTI)
    texts = ["".join(lines[s.start : s.end]) for s in document_spans(lines)]
    parts = D._parts[Path("f.yaml")]
    assert len(texts) == 4
    for text in texts:
        kept, own = parts[text], D._read_whole(text, Path())
        assert kept.nodes == own.nodes and not kept.errors
        assert [D._moved(d, 0, -kept.line_offset) for d in kept.documents] == own.documents


def test_a_save_that_changes_one_document_reads_the_same_as_a_whole_read() -> None:
    D._parts.clear()
    D.read_documents(MULTI, Path("f.yaml"))
    edited = MULTI.replace("image: x", "image: y\n  replicas: 3")  # one line more, in the middle
    before = D._parts[Path("f.yaml")]
    documents, errors = D.read_documents(edited, Path("f.yaml"))
    assert not errors and documents == _whole(edited)
    after = D._parts[Path("f.yaml")]
    assert len(after) == 4 and sum(after[t] is before.get(t) for t in after) == 3  # one document read again
    old_line, column = _whole(MULTI)[2].positions[("metadata", "name")]
    assert documents[2].positions[("metadata", "name")] == (old_line + 1, column)  # below the edit: moved
