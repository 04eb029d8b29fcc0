"""How far a service is from converged, read from the engine's own bookkeeping.

Swarm's orchestrator decides a task is out of date by comparing its spec with the service's task
template; the same comparison here tells "3 running" from "3 running the new version", so a
rolling update is not reported done before it has started.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..swarm.observe import same_template

Obj = dict[str, Any]

UPDATE_IN_PROGRESS = frozenset({"updating", "rollback_started"})
UPDATE_STUCK = frozenset({"paused", "rollback_paused", "rollback_completed"})
_FAILED_TASK_STATES = frozenset({"failed", "rejected", "orphaned"})


@dataclass(frozen=True)
class Progress:
    desired: int
    running: int
    up_to_date: int  # running tasks whose spec is the service's current task template
    completed: int | None  # jobs
    is_job: bool
    update_state: str | None
    update_message: str | None
    update_started_at: datetime | None
    update_completed_at: datetime | None
    image: str | None
    # (image without digest, digest or None, running tasks), one per distinct image of the running tasks
    running_images: tuple[tuple[str, str | None, int], ...]
    task_error: dict[str, Any] | None

    @property
    def ready(self) -> str:
        if self.is_job:
            return f"{self.completed or 0}/{self.desired}"
        return f"{self.running}/{self.desired}"

    @property
    def converged(self) -> bool:
        if self.update_state in UPDATE_IN_PROGRESS or self.update_state in UPDATE_STUCK:
            return False
        if self.is_job:
            return (self.completed or 0) >= self.desired
        return self.running == self.desired and self.up_to_date == self.desired

    @property
    def failed(self) -> str | None:
        """Why an update gave up (paused or rolled back), or None."""
        if self.update_state in UPDATE_STUCK:
            return f"update {self.update_state}: {self.update_message or 'no message'}"
        return None


def _time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    # The engine writes nanoseconds; Python's ISO parser takes microseconds at most.
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00" if frac else f"{head}+00:00")


def _split(image: str) -> tuple[str, str | None]:
    """``name:tag@sha256:...`` → (``name:tag``, ``sha256:...``); a reference without a digest → (it, None)."""
    name, at, digest = image.partition("@")
    return (name, digest) if at else (image, None)


def service_progress(service: Obj, tasks: list[Obj]) -> Progress:
    spec = service["Spec"]
    mode = spec.get("Mode") or {}
    is_job = "ReplicatedJob" in mode or "GlobalJob" in mode
    counts = service.get("ServiceStatus") or {}
    live = [t for t in tasks if t.get("DesiredState") == "running" and t["Status"]["State"] == "running"]
    template = spec.get("TaskTemplate") or {}
    update = service.get("UpdateStatus") or {}
    if "Replicated" in mode:
        desired = int(mode["Replicated"].get("Replicas", 1))
    elif "ReplicatedJob" in mode:
        desired = int(mode["ReplicatedJob"].get("TotalCompletions") or mode["ReplicatedJob"].get("MaxConcurrent") or 1)
    else:
        desired = int(counts.get("DesiredTasks", len({t.get("NodeID") for t in tasks})))
    used = Counter(
        str(t["Spec"]["ContainerSpec"].get("Image", "")) for t in live if t.get("Spec", {}).get("ContainerSpec")
    )
    images = sorted(used)
    failures = sorted(
        (t for t in tasks if t["Status"]["State"] in _FAILED_TASK_STATES or t["Status"].get("Err")),
        key=lambda t: t["Status"].get("Timestamp", ""),
    )
    error = None
    if failures:
        last = failures[-1]
        error = {
            "task": last["ID"][:12],
            "node": last.get("NodeID"),
            "state": last["Status"]["State"],
            "error": last["Status"].get("Err") or last["Status"].get("Message") or "",
            "at": _time(last["Status"].get("Timestamp")),
        }
    return Progress(
        desired=desired,
        running=len(live),
        up_to_date=sum(1 for t in live if same_template(t, template)),
        completed=int(counts.get("CompletedTasks", 0)) if is_job else None,
        is_job=is_job,
        update_state=update.get("State"),
        update_message=update.get("Message"),
        update_started_at=_time(update.get("StartedAt")),
        update_completed_at=_time(update.get("CompletedAt")),
        image=images[0] if len(images) == 1 else (", ".join(images) if images else None),
        running_images=tuple((*_split(image), used[image]) for image in images),
        task_error=error,
    )
