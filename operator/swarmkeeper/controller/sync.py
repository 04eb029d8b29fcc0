"""``swarmkeeper sync``: a Git repository as the source of the shared reconcile loop.

The loop is the one ``watch`` uses; Git adds what a repository needs:

* **when to look**: a poll every interval and verified push webhooks set "fetch due" and wake the
  loop; other passes (Docker events, resyncs) reuse the last fetched commit without a fetch;
* **what to apply**: the newest *valid* commit. An invalid commit is reported (every error names
  commit, file, line and field) and the last good revision stays applied, across restarts too
  (it is read back from the status file). A revert is just a newer commit; a force-push is
  followed (and logged as such);
* **releases**: after a revision is applied its services are followed until they converge; with
  ``--rollback-on-failure`` a release that fails (an update paused or rolled back by swarm, or not
  converged within ``--timeout``) is answered by re-applying every object at the last revision
  that converged, and the failed commit is not applied again;
* **status back**: revisions, conditions, errors and every object's status, to a YAML file
  and/or committed to a status branch of the repository.

``--suspend`` and ``--dry-run`` run a read-only loop instead: fetch, validate and report (or print
the plan of each new commit) without taking the lease or changing the swarm.

What to apply, how a release goes and which conditions follow are decided in ``release.py`` (pure);
this module fetches, loads, logs and writes status around those decisions.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ..api import Key, ObjectStatus, SwarmService
from ..engine.conditions import now
from ..engine.reconcile import Outcome
from ..engine.run import Clients, Options, PassOutcome, run_pass
from ..loading import LoadResult, Manifest, SpecError
from ..loading.writes import write_atomic
from ..sources import sync_status
from ..sources.commit_status import CommitStatusConfig, CommitStatusReporter, State
from ..sources.git import Commit, GitError, GitSource
from ..sources.sops import AgeKeys
from ..sources.sync_status import Revisions
from ..sources.webhook import Push, Route, WebhookServer
from ..swarm.images import normalize_image
from . import release as R
from .loop import Controller, LoopOptions, PassResult, Trigger
from .triggers import Wakeup
from .ui import Dashboard, start_dashboard

log = logging.getLogger(__name__)

KEEP_LOADED = 4  # revisions whose loaded specs are kept in memory (current, last good, a spare)


@dataclass(frozen=True)
class ImageWriteBack:
    """``--write-images``: where and as whom the images that run are committed back into the specs."""

    branch: str | None  # None: the tracked branch
    author: str
    signoff: bool


@dataclass(frozen=True)
class SyncSettings:
    """Everything one Git source needs; ``loop.source`` is its name (ownership, prune, lease)."""

    git: GitSource
    loop: LoopOptions
    status_file: Path | None = None
    status_branch: str | None = None
    suspend: bool = False
    dry_run: bool = False
    rollback_on_failure: bool = False
    timeout: float = 300.0
    webhook_secret: bytes | None = field(default=None, repr=False)
    age_keys: AgeKeys | None = field(default=None, repr=False)
    environ: Mapping[str, str] | None = field(default=None, repr=False)
    images: ImageWriteBack | None = None
    commit_status: CommitStatusConfig | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.loop.source

    @property
    def read_only(self) -> bool:
        return self.suspend or self.dry_run

    @property
    def policy(self) -> R.Policy:
        return R.Policy(rollback_on_failure=self.rollback_on_failure, timeout=self.timeout)


# Called by --dry-run for each new revision: (commit or None, errors, outcomes).
PlanPrinter = Callable[[str, "Commit | None", Sequence[SpecError], Sequence[Outcome]], None]


class GitLoopSource:
    """The ``Source`` of the shared loop for one ref of one repository."""

    controller = "sync"

    def __init__(self, settings: SyncSettings) -> None:
        self.settings = settings
        self.git = settings.git
        self.name = settings.name
        self.revisions = Revisions()
        self.good: str | None = None  # the revision load() hands out (what revision() names)
        self.fetch_error: str | None = None
        self.spec_errors: list[SpecError] = []
        self.apply_problem: str | None = None
        self.release: R.Release | None = None
        self._loaded: dict[str, LoadResult] = {}
        self._reported_invalid: str | None = None
        self._fetch_due = threading.Event()
        self._fetch_due.set()
        self._wakeup: Wakeup | None = None
        self._published: tuple[list[Manifest], dict[Key, ObjectStatus]] = ([], {})
        self._last_doc: dict[str, object] | None = None
        self._branch_pushed: bytes | None = None
        self._branch_pushed_at = 0.0
        self._pending_told: str | None = None
        config = settings.commit_status
        # Only a source that applies has results to report (not --dry-run or --suspend).
        self.commit_status = (
            CommitStatusReporter(config, self.name) if config is not None and not settings.read_only else None
        )
        self._restore()

    def describe(self) -> dict[str, Any]:
        r = self.revisions
        return {
            "kind": "git",
            "repository": self.git.display,
            "ref": self.git.ref,
            "path": self.git.path or ".",
            "tracked": r.fetched,
            "attempted": r.attempted,
            "applied": r.applied,
            "released": r.released,
            "failed": dict(r.failed),
            "fetch_error": self.fetch_error,
            "suspended": self.settings.suspend,
        }

    # -- start-up --------------------------------------------------------------------------------
    def _restore(self) -> None:
        """Pick up where the last run left off: its revisions are in the status file."""
        path = self.settings.status_file
        previous = sync_status.read(path) if path is not None else None
        if previous is None:
            return
        self._last_doc = previous

        def known(key: str) -> str | None:
            value = previous.get(key)
            return value if isinstance(value, str) and self.git.has(value) else None

        self.revisions.fetched = known("lastFetchedRevision")
        self.revisions.applied = known("lastAppliedRevision")
        self.revisions.released = known("lastReleasedRevision")
        for entry in previous.get("failedRevisions") or []:
            if isinstance(entry, dict) and isinstance(entry.get("revision"), str):
                self.revisions.failed[entry["revision"]] = str(entry.get("reason", ""))
        if self.revisions.applied:
            log.info("%s: last applied revision %s (from %s)", self.name, self.revisions.applied[:12], path)

    def good_manifests(self) -> list[Manifest] | None:
        """The specs of the last applied revision, for a restarted loop whose newest commit is bad."""
        applied = self.good or self.revisions.applied
        if applied is None:
            return None
        result = self._load_at(applied)
        if not result.ok:
            return None
        self.good = applied
        return result.manifests

    # -- Source protocol -------------------------------------------------------------------------
    def triggers(self, wakeup: Wakeup) -> list[Trigger]:
        self._wakeup = wakeup
        return [_Poller(self, wakeup)]

    def request_fetch(self, reason: str) -> None:
        """Fetch on the next pass, and have that pass now (polls and webhooks)."""
        self._fetch_due.set()
        if self._wakeup is not None:
            self._wakeup.poke(reason)

    def revision(self) -> str | None:
        return self.good

    def load(self) -> LoadResult:
        self._fetch()
        target = R.attempt(self.revisions, self.settings.policy)
        if target is None:
            return LoadResult([], [SpecError(self.fetch_error or f"{self.git.display}: not fetched yet")])
        self.revisions.attempted = target
        result = self._load_at(target)
        if result.ok:
            if self.good != target:
                log.info(
                    "%s: revision %s is valid (%d objects)", self.name, self._describe(target), len(result.manifests)
                )
            self.good = target
            self.spec_errors = []
            self._reported_invalid = None
            if target not in (self._pending_told, self.revisions.released) and target not in self.revisions.failed:
                self._pending_told = target  # once per attempt: later passes' results follow it
                self._commit_status(target, "pending", "applying to the swarm")
            return result
        self.spec_errors = result.errors
        first = str(result.errors[0]).removeprefix(f"{target[:12]}:")
        count = f"{len(result.errors)} error{'s' if len(result.errors) != 1 else ''}"
        self._commit_status(target, "failure", f"invalid specs ({count}): {first}")
        if self._reported_invalid != target:
            self._reported_invalid = target
            kept = f"revision {self.good[:12]} stays applied" if self.good else "nothing is applied"
            log.error(
                "%s: revision %s is invalid (%d errors); %s",
                self.name,
                self._describe(target),
                len(result.errors),
                kept,
            )
        good = self.good_manifests()
        return LoadResult(good or [], result.errors)

    def publish(self, manifests: Sequence[Manifest], outcome: PassOutcome) -> None:
        """The release followed on the statuses the pass read, then what the pass applied, then the
        status written. A read-only run (--dry-run, --suspend) applies nothing: it only reports."""
        self._published = (list(manifests), outcome.statuses)
        if not self.settings.read_only:
            facts = R.PassFacts.of(outcome, self.good)
            decision = R.after_pass(self.revisions, self.release, facts, self.settings.policy, time.monotonic())
            self.revisions, self.release = decision.revisions, decision.release
            self.apply_problem = decision.apply_problem
            for event in decision.events:
                log.log(event.level, "%s: %s", self.name, event.message(self._describe))
                if isinstance(event, R.Converged):
                    self._commit_status(event.revision, "success", "released: its services converged")
                elif isinstance(event, R.Failed):
                    self._commit_status(event.revision, "failure", f"release failed: {event.why}")
            good, revs = self.good, self.revisions
            if decision.apply_problem and good and good != revs.released and good not in revs.failed:
                self._commit_status(good, "error", f"not applied: {decision.apply_problem}")
            if decision.rollback and self._wakeup is not None:
                self._wakeup.poke("rollback")
            self._write_back_images(manifests, outcome.pinned_images)
        self.write_status()

    # -- images back into Git -------------------------------------------------------------------
    def _write_back_images(self, manifests: Sequence[Manifest], pinned: Mapping[Key, str]) -> None:
        """Commit the image each service with an imagePolicy now runs into its spec file, when the
        applied revision names another: Git then says what runs, and the next fetch applies it."""
        images = self.settings.images
        good = self.good
        if images is None or good is None or self.revisions.fetched != good:
            return  # only on top of what is applied: a newer commit is being decided on
        edits = image_edits(manifests, pinned)
        if not edits:
            return
        branch = images.branch or self.git.ref.removeprefix("refs/heads/")
        files: dict[str, bytes] = {}
        lines: list[str] = []
        for path, changes in edits.items():
            try:
                text = self.git.read_file(good, path).decode("utf-8")
            except (GitError, UnicodeDecodeError) as exc:
                log.error("%s: cannot write images back into %s: %s", self.name, path, exc)
                return
            files[path] = rewrite_images(text, changes).encode("utf-8")
            lines += [f"{c.what}: {c.old} -> {c.new}" for c in changes]
        message = f"swarmkeeper: images of {self.name}\n\n" + "\n".join(lines) + "\n"
        if images.signoff:
            message += f"\nSigned-off-by: {images.author}\n"
        same_branch = images.branch is None or branch == self.git.ref.removeprefix("refs/heads/")
        try:
            sha = self.git.commit_files(
                branch,
                files,
                message,
                author=images.author,
                parent_must_be=good if same_branch else None,
                start_at=good,
            )
        except GitError as exc:
            log.error("%s: cannot commit images to %s: %s", self.name, branch, exc)
            return
        if sha is None:
            return  # the branch moved meanwhile (the next fetch decides), or nothing to change
        log.info("%s: committed %s to %s: %s", self.name, sha[:12], branch, "; ".join(lines))
        if same_branch and self._wakeup is not None:
            self._fetch_due.set()
            self._wakeup.poke("images")

    def _commit_status(self, sha: str, state: State, why: str) -> None:
        if self.commit_status is not None:
            self.commit_status.report(sha, state, why)

    def release_deadline(self) -> float | None:
        release = self.release
        return release.deadline if release is not None else None

    # -- loading ---------------------------------------------------------------------------------
    def _fetch(self) -> None:
        if not self._fetch_due.is_set():
            return
        self._fetch_due.clear()
        try:
            sha = self.git.fetch()
        except GitError as exc:
            if str(exc) != self.fetch_error:
                log.error("%s: %s", self.name, exc)
            self.fetch_error = str(exc)
            return
        if self.fetch_error is not None:
            log.info("%s: fetching works again", self.name)
        self.fetch_error = None
        old = self.revisions.fetched
        if sha == old:
            return
        if old is not None and not self.git.is_ancestor(old, sha):
            log.warning(
                "%s: history of %s was rewritten (force-push?): following %s → %s",
                self.name,
                self.git.ref,
                old[:12],
                sha[:12],
            )
        log.info("%s: %s is at %s", self.name, self.git.ref, self._describe(sha))
        self.revisions.fetched = sha

    def _load_at(self, sha: str) -> LoadResult:
        cached = self._loaded.get(sha)
        if cached is None:
            cached = self.git.load(sha, keys=self.settings.age_keys, environ=self.settings.environ)
            self._loaded[sha] = cached
            while len(self._loaded) > KEEP_LOADED:
                self._loaded.pop(next(iter(self._loaded)))
        return cached

    def _describe(self, sha: str) -> str:
        try:
            commit = self.git.commit(sha)
        except (GitError, KeyError):
            return sha[:12]
        return f"{commit.short} ({commit.subject[:60]})" if commit.subject else commit.short

    # -- status ----------------------------------------------------------------------------------
    def render(self) -> dict[str, object]:
        manifests, statuses = self._published
        view = R.SourceView(
            ref=self.git.ref,
            revisions=self.revisions,
            good=self.good,
            fetch_error=self.fetch_error,
            spec_errors=len(self.spec_errors),
            apply_problem=self.apply_problem,
            release=self.release,
            suspended=self.settings.suspend,
            policy=self.settings.policy,
        )
        return sync_status.render(
            source=self.name,
            repository=self.git.display,
            ref=self.git.ref,
            path=self.git.path,
            revisions=self.revisions,
            conditions=R.conditions(view, now()),
            errors=self.spec_errors,
            manifests=manifests,
            statuses=statuses,
            previous=self._last_doc,
            suspended=self.settings.suspend,
        )

    def write_status(self) -> None:
        doc = self.render()
        self._last_doc = doc
        content = sync_status.dump(doc)
        if self.settings.status_file is not None:
            try:
                write_atomic(self.settings.status_file, content)
            except OSError as exc:
                log.error("%s: cannot write %s: %s", self.name, self.settings.status_file, exc.strerror or exc)
        self._push_status(content)

    def _push_status(self, content: bytes) -> None:
        branch = self.settings.status_branch
        if branch is None or content == self._branch_pushed:
            return
        # A status change per task event would be a commit per task event: at most one per interval.
        gap = 0.0 if self.settings.loop.once else min(self.settings.loop.interval, 30.0)
        if time.monotonic() - self._branch_pushed_at < gap and self._branch_pushed is not None:
            return
        revision = (self.revisions.applied or "")[:12]
        try:
            self.git.push_file(branch, f"{self.name}.status.yaml", content, f"status of {self.name} at {revision}")
        except GitError as exc:
            log.error("%s: status branch: %s", self.name, exc)
            return
        self._branch_pushed, self._branch_pushed_at = content, time.monotonic()


@dataclass(frozen=True)
class ImageEdit:
    line: int  # 1-based line of the spec's image: key
    what: str  # "SwarmService ns/web"
    old: str
    new: str


def image_edits(manifests: Sequence[Manifest], pinned: Mapping[Key, str]) -> dict[str, list[ImageEdit]]:
    """Per spec file, the image: values to rewrite: services with an imagePolicy whose pinned
    image differs from what the file says."""
    out: dict[str, list[ImageEdit]] = {}
    for m in manifests:
        res = m.resource
        if not isinstance(res, SwarmService) or res.spec.image_policy is None or m.origin is None:
            continue
        new = pinned.get(m.key)
        at = m.positions.get(("spec", "image"))
        if new is None or at is None or new == normalize_image(res.spec.image):
            continue
        what = f"SwarmService {m.namespace}/{m.name}" if m.namespace else f"SwarmService {m.name}"
        out.setdefault(m.origin.file.as_posix(), []).append(ImageEdit(at[0], what, res.spec.image, new))
    return out


def rewrite_images(text: str, edits: Sequence[ImageEdit]) -> str:
    """``text`` with each edit's image: value replaced on its line; everything else byte for byte."""
    lines = text.split("\n")
    for e in edits:
        line = lines[e.line - 1] if 0 < e.line <= len(lines) else ""
        head, key, rest = line.partition("image:")
        if key and e.old in rest:
            lines[e.line - 1] = head + key + rest.replace(e.old, e.new, 1)
    return "\n".join(lines)


class _Poller:
    """Sets "fetch due" every interval, and wakes the loop when a release's deadline passes."""

    def __init__(self, source: GitLoopSource, wakeup: Wakeup) -> None:
        self.source = source
        self.wakeup = wakeup
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"poll-{source.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        interval = self.source.settings.loop.interval
        next_poll = time.monotonic() + interval
        while not self.stop_event.is_set():
            deadline = self.source.release_deadline()
            wake = min(next_poll, deadline + 0.05) if deadline is not None else next_poll
            if self.stop_event.wait(max(0.05, wake - time.monotonic())):
                return
            current = time.monotonic()
            if current >= next_poll:
                next_poll = current + interval
                self.source.request_fetch("poll")
            if deadline is not None and current >= deadline:
                self.wakeup.poke("release-deadline")


class SyncController(Controller):
    """The shared loop; after a restart whose newest commit is invalid, it keeps applying the specs
    of the last applied revision (read back from the status file)."""

    def __init__(self, source: GitLoopSource, options: LoopOptions) -> None:
        super().__init__(source, options)
        self.git_source = source

    def run_pass(self, reasons: set[str]) -> PassResult:
        if self.last_good is None:
            self.last_good = self.git_source.good_manifests()
        return super().run_pass(reasons)


# -- read-only runs: --dry-run and --suspend ------------------------------------------------------


class ReadOnlyLoop:
    """Fetch, validate, and plan or report, without the lease and without changing the swarm."""

    def __init__(self, source: GitLoopSource, on_plan: PlanPrinter | None) -> None:
        self.source = source
        self.settings = source.settings
        self.on_plan = on_plan
        self.wakeup = Wakeup()
        self.stopping = threading.Event()
        self.clients = Clients(self.settings.loop.host)
        self.dashboard: Dashboard | None = None

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.poke("stop")

    def run(self) -> int:
        loop = self.settings.loop
        if loop.ui_addr and not loop.once:
            # The plan of each revision, shown and not applied.
            self.dashboard = start_dashboard(
                loop.ui_addr,
                loop.ui_token,
                source=self.settings.name,
                host=loop.host,
                read_only=True,
                describe=self.source.describe,
            )
            if self.dashboard is None:
                return 2
        triggers = [] if loop.once else self.source.triggers(self.wakeup)
        for t in triggers:
            t.start()
        shown: str | None = None
        code = 0
        try:
            while not self.stopping.is_set():
                code = self._pass(shown)
                shown = self.source.revisions.attempted or shown
                if self.settings.loop.once:
                    break
                self.wakeup.wait(self.settings.loop.interval)
        finally:
            for t in triggers:
                t.stop()
            if self.dashboard is not None:
                self.dashboard.stop()
            self.clients.close()
        return code

    def _pass(self, shown: str | None) -> int:
        result = self.source.load()
        revision = self.source.revisions.attempted
        errors = self.source.spec_errors
        if self.source.good is None:  # no valid revision yet: nothing to plan, no status to read
            outcome = PassOutcome(spec_errors=list(errors), revision=revision)
        else:
            # With errors, the manifests are the last good revision's: their status is the swarm's.
            options = Options(
                prune=self.settings.loop.prune,
                force=self.settings.loop.force,
                dry_run=True,
                source=self.settings.name,
                revision=revision,
            )
            outcome = run_pass(result.manifests, self.clients, options, spec_errors=errors)
        if not outcome.engine_ok:
            for target in outcome.targets:
                if target.error is not None:
                    log.error("%s: %s unavailable: %s", self.settings.name, target.where, target.error)
            return 1
        if self.settings.dry_run and self.on_plan is not None and revision and revision != shown:
            commit = self.source.git.commit(revision) if self.source.git.has(revision) else None
            self.on_plan(self.settings.name, commit, errors, [] if errors else outcome.outcomes)
        self.source.publish(result.manifests, outcome)
        if self.dashboard is not None:
            self.dashboard.publish(result.manifests, outcome)  # never waits
        if self.source.fetch_error and self.source.revisions.fetched is None:
            return 1
        return 2 if errors else 0


# -- running one or several sources ----------------------------------------------------------------


class _Runner:
    """One source: the shared loop, or the read-only loop for --dry-run/--suspend."""

    def __init__(self, settings: SyncSettings, on_plan: PlanPrinter | None) -> None:
        self.settings = settings
        self.source = GitLoopSource(settings)
        self.loop: SyncController | ReadOnlyLoop
        if settings.dry_run or settings.suspend:
            self.loop = ReadOnlyLoop(self.source, on_plan)
        else:
            self.loop = SyncController(self.source, settings.loop)
        self.code = 0

    def run(self) -> int:
        self.code = self.loop.run()
        if self.settings.loop.once and self.source.spec_errors:
            self.code = 2  # invalid input: the newest commit was not applied
        return self.code

    def stop(self) -> None:
        self.loop.stop()

    def healthy(self) -> bool:
        return self.loop.healthy() if isinstance(self.loop, SyncController) else True


def run_sync(
    sources: Sequence[SyncSettings], webhook_addr: str | None = None, on_plan: PlanPrinter | None = None
) -> int:
    """Run every source until stopped (or one pass each with ``once``); the worst exit code wins."""
    runners = [_Runner(s, on_plan) for s in sources]
    server: WebhookServer | None = None
    once = all(s.loop.once for s in sources)
    if webhook_addr and not once:
        routes = [
            Route(r.settings.name, r.settings.webhook_secret, r.settings.git.ref, _push_handler(r.source))
            for r in runners
            if r.settings.webhook_secret is not None
        ]
        server = WebhookServer(webhook_addr, routes, healthy=lambda: all(r.healthy() for r in runners))
        server.start()
        log.info("webhooks on %s (POST /, /hooks/<source>; GET /healthz)", webhook_addr)
    try:
        if len(runners) == 1 or once:
            return max(r.run() for r in runners)
        return _run_threads(runners)
    finally:
        if server is not None:
            server.stop()
        for r in runners:
            r.source.git.close()
            if r.source.commit_status is not None:
                r.source.commit_status.close()


def _push_handler(source: GitLoopSource) -> Callable[[Push], None]:
    def on_push(push: Push) -> None:
        source.request_fetch("webhook")

    return on_push


def _run_threads(runners: Sequence[_Runner]) -> int:
    threads = [threading.Thread(target=r.run, name=f"sync-{r.settings.name}", daemon=True) for r in runners]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; finishing the current passes and stopping", signal.Signals(signum).name)
        for r in runners:
            r.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=0.5)  # short joins: the main thread must stay free to take signals
    return max(r.code for r in runners)
