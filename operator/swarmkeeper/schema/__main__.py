"""``python -m swarmkeeper.schema``: regenerate the CRDs, JSON Schemas and spec reference, or,
with ``--check``, fail when the committed files no longer match the models (for CI)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .render import REGENERATE, drift, write_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarmkeeper.schema", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on drift")
    args = parser.parse_args(argv)
    root: Path = args.root
    if args.check:
        problems = drift(root)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"generated files are out of date: run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    for line in write_all(root):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
