"""Every generated file in one place, for the generator and for the drift check.

CI and the tests compare the committed files with what the models generate now, so a model
change without a regeneration (or a hand edit of a generated file) fails loudly.
"""

from __future__ import annotations

from pathlib import Path

from .crd import CHART_CRD_DIR, CRD_DIR, render_crds
from .jsonschema import GENERATED, SCHEMA_DIR, render_schemas
from .reference import render_reference

REGENERATE = "scripts/gen-schema"


def render_all() -> dict[Path, str]:
    """Relative path → content of every generated file."""
    return {**render_crds(), **render_schemas(), **render_reference()}


def _stale(root: Path, expected: dict[Path, str]) -> list[Path]:
    """Generated files no longer produced (a kind was renamed or removed); only files that carry
    the generated marker are considered, so hand-written neighbours are never touched."""
    found: list[Path] = []
    for directory, pattern in ((CRD_DIR, "*.yaml"), (CHART_CRD_DIR, "*.yaml"), (SCHEMA_DIR, "*.json")):
        for path in sorted((root / directory).glob(pattern)):
            relative = path.relative_to(root)
            if relative not in expected and GENERATED in path.read_text(encoding="utf-8"):
                found.append(relative)
    return found


def drift(root: Path) -> list[str]:
    """What differs between the files under ``root`` and the models, one line per file."""
    expected = render_all()
    problems: list[str] = []
    for relative, text in expected.items():
        path = root / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{relative}: differs from the models")
    problems.extend(f"{relative}: no longer generated" for relative in _stale(root, expected))
    return problems


def write_all(root: Path) -> list[str]:
    """Write every generated file that changed and remove stale ones; what was done, per file."""
    expected = render_all()
    done: list[str] = []
    for relative, text in expected.items():
        path = root / relative
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        done.append(f"wrote {relative}")
    for relative in _stale(root, expected):
        (root / relative).unlink()
        done.append(f"removed {relative}")
    return done
