"""Plot converge time against N for swarmkeeper and `docker stack deploy` (from stack_compare.py's
JSON) into a PNG.

    .venv/bin/python bench/plot.py stack_compare.json docs/converge-vs-n.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    ns = sorted(int(n) for n in data)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, phase, title in zip(
        axes,
        ("create", "change", "delete"),
        ("cold create → all running", "one service changed → update done", "delete everything → gone"),
        strict=True,
    ):
        for tool, label in (("sk", "swarmkeeper"), ("stack", "docker stack deploy / rm")):
            ax.plot(ns, [data[str(n)][f"{phase}/{tool}"]["wall"] for n in ns], marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("services (N)")
        ax.set_ylabel("seconds")
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)
    print(f"wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
