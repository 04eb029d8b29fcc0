"""Carry out a plan against the engine, level by level, independent steps concurrently.

A failed step fails only itself and what depends on it; everything else still converges. Removing
an old secret/config version that tasks still hold is not a failure: it is left for a later pass.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..api import Key
from ..swarm import labels as L
from ..swarm import mutate
from ..swarm.build import Payload, bind_ids
from ..swarm.connect import EngineClient
from ..swarm.errors import EngineError, call
from ..swarm.observe import SwarmState
from .adopt import take_over_value
from .fingerprint import fingerprint
from .plan import Plan, Step
from .progress import service_progress

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 32  # engine calls are I/O-bound; removals also wait for networks to detach


@dataclass
class StepResult:
    step: Step
    ok: bool
    error: str | None = None
    deferred: bool = False  # not done now, retried by a later pass (not an error)
    skipped: bool = False
    warnings: list[str] = field(default_factory=list)
    object_id: str | None = None


@dataclass
class ApplyReport:
    results: list[StepResult] = field(default_factory=list)

    @property
    def failed(self) -> list[StepResult]:
        return [r for r in self.results if not r.ok and not r.deferred]

    def errors_by_key(self) -> dict[Key, str]:
        return {r.step.key: r.error or "failed" for r in self.failed}


class DependencyNotReady(Exception):
    pass


def wait_converged(client: EngineClient, names: list[str], timeout: float, poll: float = 0.5) -> None:
    """Block until each named service is converged; raise on a failed update or timeout."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        for name in list(pending):
            services = call(lambda n=name: client.services(filters={"name": n}, status=True))  # type: ignore[misc]
            svc = next((s for s in services if s["Spec"]["Name"] == name), None)
            if svc is None:
                raise DependencyNotReady(f"dependency {name} does not exist")
            tasks = call(lambda s=svc: client.tasks(filters={"service": s["ID"]}))  # type: ignore[misc]
            progress = service_progress(svc, tasks)
            if progress.failed:
                raise DependencyNotReady(f"dependency {name}: {progress.failed}")
            if progress.converged:
                pending.remove(name)
        if pending:
            if timeout <= 0:  # a controller's pass does not wait: it looks again later
                raise DependencyNotReady(f"waits for {', '.join(pending)} to converge")
            if time.monotonic() > deadline:
                raise DependencyNotReady(f"dependencies not converged within {timeout:.0f}s: {', '.join(pending)}")
            time.sleep(poll)


class _Executor:
    def __init__(
        self,
        client: EngineClient,
        state: SwarmState,
        dependency_timeout: float,
        on_result: Callable[[StepResult], None] | None,
    ) -> None:
        self.client = client
        self.dependency_timeout = dependency_timeout
        self.on_result = on_result
        self.secret_ids = {s["Spec"]["Name"]: s["ID"] for s in state.secrets}
        self.config_ids = {c["Spec"]["Name"]: c["ID"] for c in state.configs}

    def run(self, step: Step) -> StepResult:
        try:
            if step.wait_for:
                wait_converged(self.client, step.wait_for, self.dependency_timeout)
            result = self._do(step)
        except DependencyNotReady as exc:
            # A controller does not block on dependencies: the step is retried by a later pass.
            result = StepResult(step, ok=False, error=str(exc), deferred=self.dependency_timeout == 0)
        except EngineError as exc:
            in_use = exc.conflict or "in use" in str(exc)
            if step.action == "delete" and step.reason == "superseded" and in_use:
                result = StepResult(step, ok=False, deferred=True, error="still in use; removed by a later pass")
            elif step.action == "delete" and exc.not_found:
                result = StepResult(step, ok=True)  # already gone: the goal is met
            else:
                result = StepResult(step, ok=False, error=str(exc))
        # A deferred step comes back every pass while it waits: the controller says when waiting
        # starts and ends (its lasting-state log), so here it is only a debug line.
        log.log(
            logging.INFO if result.ok else (logging.DEBUG if result.deferred else logging.ERROR),
            "%s%s",
            step.describe(),
            "" if result.ok else f" — {result.error}",
        )
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _do(self, step: Step) -> StepResult:
        c = self.client
        if step.type == "network":
            if step.action in ("delete", "recreate"):
                assert step.object_id is not None
                mutate.remove_network(c, step.object_id)
            if step.action in ("create", "recreate"):
                assert step.payload is not None
                return StepResult(step, ok=True, object_id=mutate.create_network(c, step.payload))
            return StepResult(step, ok=True)
        if step.type in ("secret", "config"):
            kind: mutate.ValueKind = "secret" if step.type == "secret" else "config"
            if step.action == "delete":
                assert step.object_id is not None
                mutate.remove_value(c, kind, step.object_id)
                return StepResult(step, ok=True)
            assert step.payload is not None
            if step.action == "update":  # only adoption updates a value: its labels (adopt.py)
                assert step.object_id is not None
                warnings = take_over_value(c, kind, step.object_id, step.payload)
                return StepResult(step, ok=True, warnings=warnings, object_id=step.object_id)
            new_id = mutate.create_value(c, kind, with_fingerprint(step.payload))
            (self.secret_ids if kind == "secret" else self.config_ids)[step.swarm_name] = new_id
            return StepResult(step, ok=True, object_id=new_id)
        if step.action == "delete":
            assert step.object_id is not None
            mutate.remove_service(c, step.object_id)
            return StepResult(step, ok=True)
        assert step.payload is not None
        payload = bind_ids(step.payload, self.secret_ids, self.config_ids)
        if step.action == "create":
            new_id = mutate.create_service(c, payload, with_registry_auth=step.with_registry_auth)
            return StepResult(step, ok=True, object_id=new_id)
        assert step.object_id is not None
        warnings = mutate.update_service(c, step.object_id, payload, with_registry_auth=step.with_registry_auth)
        return StepResult(step, ok=True, warnings=warnings, object_id=step.object_id)


def with_fingerprint(payload: Payload) -> Payload:
    """The value's fingerprint label, derived only now that the version is really created."""
    labels = payload["Labels"]
    if L.FINGERPRINT in labels:
        return payload
    value = base64.b64decode(payload["Data"])
    return {**payload, "Labels": {**labels, L.FINGERPRINT: fingerprint(value)}}


def apply_plan(
    client: EngineClient,
    plan: Plan,
    state: SwarmState,
    *,
    dependency_timeout: float = 300.0,
    on_result: Callable[[StepResult], None] | None = None,
) -> ApplyReport:
    report = ApplyReport()
    if plan.blocked or plan.empty:
        return report
    executor = _Executor(client, state, dependency_timeout, on_result)
    failed: set[int] = set()
    with ThreadPoolExecutor(max_workers=MAX_CONCURRENCY, thread_name_prefix="apply") as pool:
        for level in plan.levels():
            runnable = []
            for step in level:
                if step.after & failed:
                    failed.add(step.index)
                    report.results.append(
                        StepResult(step, ok=False, skipped=True, error="skipped: a step it needs failed")
                    )
                else:
                    runnable.append(step)
            for result in pool.map(executor.run, runnable):
                report.results.append(result)
                if not result.ok and not result.deferred:
                    failed.add(result.step.index)
    return report
