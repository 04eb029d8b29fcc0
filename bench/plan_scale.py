"""Load + validate + plan for 1,000 and 10,000 specs, without an engine (the swarm is empty), to
show the pure part of a pass scales linearly.

    .venv/bin/python bench/plan_scale.py 1000 10000
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from workload import write_specs

from swarmkeeper.engine.desired import resolve_desired
from swarmkeeper.engine.plan import make_plan
from swarmkeeper.loading import load_paths
from swarmkeeper.swarm.observe import SwarmState


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    print(f"{'specs':>7} {'objects':>8} {'load+validate s':>16} {'plan s':>8} {'total s':>8} {'µs/object':>10}")
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_specs(Path(tmp) / "specs", n, "plan")
            t0 = time.perf_counter()
            result = load_paths([folder])
            t1 = time.perf_counter()
            assert result.ok, result.errors[:3]
            empty = SwarmState(services=[], tasks=[], networks=[], secrets=[], configs=[])
            plan = make_plan(resolve_desired(result.manifests, empty), empty)
            t2 = time.perf_counter()
            objects = len(result.manifests)
            assert len(plan.steps) == objects
            print(
                f"{n:>7} {objects:>8} {t1 - t0:>16.2f} {t2 - t1:>8.2f} {t2 - t0:>8.2f} "
                f"{(t2 - t0) / objects * 1e6:>10.0f}"
            )


if __name__ == "__main__":
    main()
