"""Images pinned to registry digests (``resolveImage``): what following a tag costs, and how soon a
tag pushed again reaches the swarm.

Against a registry of its own (Debian's ``/usr/bin/docker-registry`` on 127.0.0.1, plain HTTP,
storage in a temporary folder; dockerd treats 127.0.0.0/8 registries as insecure), it measures:

1. tag pushed → service update started, by polling: ``swarmkeeper watch --image-interval 1s
   --status none`` as a process, over one service on ``127.0.0.1:PORT/bench/app:1``; the tag is
   pushed again PUSHES times (default 10), each time a new image. "Started" is the moment the
   engine holds the new spec (``ContainerSpec.Image`` ends with the new digest, read every 20 ms),
   counted from the end of the push. The image is pulled right after the push, as the tests do
   (the engine runs tasks from local images only), inside the measured time. Each push waits for
   the last rollout to end, 3 s more and a random part of the interval, so that it lands at a
   random point of the loop's cycle;
1b. the same by the registry's push notifications (``hook``): a second registry of its own posts
   them to the watch's ``--registry-webhook-addr`` with a bearer token, and the watch polls only
   hourly, so the notification alone rolls the tag out;
2. registry requests per pass at N = 200 services over 10 images, in-process
   (``reconcile(connect(), manifests)``, replicas 0): ``/distribution`` calls of the first pass and
   of 5 idle passes (within the interval), and the time of an idle pass; also one pass with the
   interval over (every image asked again, once);
3. cold apply of 50 services over 5 images, resolution included: ``swarmkeeper apply`` vs
   ``docker stack deploy -c compose.yml --resolve-image always`` (wall time of each command), the
   same registry, the same run, ROUNDS rounds (default 3), alternating which goes first and
   removing both between rounds; then the same with ``resolveImage: never`` / ``--resolve-image
   never``, the cost of everything but the resolution. Both must pin the same digests. Registry
   requests per command are read from the registry's access log.

PARTS picks parts (default ``watch,hook,idle,cold``). It removes what it made: services, networks,
images it built or pulled, the registry and its storage.

    .venv/bin/python bench/image_pinning.py
    PUSHES=30 ROUNDS=5 PARTS=watch,cold .venv/bin/python bench/image_pinning.py
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import requests

sys.path.insert(0, str(Path(__file__).parent))
from latency_common import SK, Summary, cleanup_namespace, free_port, table, wait_until

from registry_fixtures import build_distinct_image, pull, push
from swarmkeeper.engine.reconcile import Options, reconcile
from swarmkeeper.loading import load_paths
from swarmkeeper.swarm.connect import EngineClient, connect

REGISTRY = "/usr/bin/docker-registry"
DOCKER = "/usr/bin/docker"
PARTS = ("watch", "hook", "idle", "cold")
WATCH_NS, IDLE_NS, SK_NS, STACK_NS = "bimg", "bimgidle", "bimgsk", "bimgst"
IMAGE_INTERVAL = 1.0  # --image-interval of the watch, seconds
POLL = 0.02  # seconds between two reads of the service spec
api = docker.APIClient(version="auto", timeout=120)
ENV: dict[str, str] = {}  # set by main(): swarmkeeper's Python, with bytecode compiled once


# --- the registry -------------------------------------------------------------------------------


@dataclass
class Registry:
    host: str
    proc: subprocess.Popen[bytes]
    log: Path

    def manifest_requests(self) -> int:
        """Manifest requests (HEAD or GET) in the registry's access log so far."""
        text = self.log.read_text(errors="replace")
        return len(re.findall(r'"(?:HEAD|GET) /v2/\S+/manifests/', text))


@contextmanager
def own_registry(tmp: Path, notify: tuple[str, str] | None = None) -> Iterator[Registry]:
    """A registry of the bench's own; with ``notify`` (HOST:PORT, token) it sends its push
    notifications to a watch's --registry-webhook-addr."""
    if not os.access(REGISTRY, os.X_OK):
        sys.exit(f"{REGISTRY} is missing (Debian's docker-registry package)")
    port = free_port()
    config = tmp / "registry.yml"
    hook = ""
    if notify is not None:
        hook = textwrap.dedent(
            f"""\
            notifications:
              endpoints:
                - {{name: swarmkeeper, url: "http://{notify[0]}/registry", timeout: 2s, threshold: 3, backoff: 1s,
                   headers: {{Authorization: ["Bearer {notify[1]}"]}}}}
            """
        )
    config.write_text(
        textwrap.dedent(
            f"""\
            version: 0.1
            log: {{level: warn}}
            storage: {{filesystem: {{rootdirectory: {tmp / "registry-data"}}}, delete: {{enabled: true}}}}
            http: {{addr: 127.0.0.1:{port}}}
            """
        )
        + hook
    )
    log_path = tmp / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    registry = Registry(f"127.0.0.1:{port}", proc, log_path)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the registry exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
        try:
            return requests.get(f"http://{registry.host}/v2/", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(answers, 30, f"registry {registry.host} answering")
        yield registry
    finally:
        stop(proc)
        shutil.rmtree(tmp / "registry-data", ignore_errors=True)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Images:
    """Every image built here, removed at the end (with the tags of the bench registry)."""

    registry: str
    built: list[str] = field(default_factory=list)

    def new(self, repository: str, tag: str = "1") -> str:
        """A new image pushed as ``repository:tag``; its manifest digest."""
        image = build_distinct_image(api)
        self.built.append(image)
        return push(api, image, repository, tag)

    def remove(self) -> None:
        for image in self.built:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(image, force=True)
        for image in api.images():  # tags of this registry left over (a pull of a tag moved meanwhile)
            for ref in [*(image.get("RepoTags") or []), *(image.get("RepoDigests") or [])]:
                if ref.startswith(self.registry + "/"):
                    with contextlib.suppress(docker.errors.APIError):
                        api.remove_image(ref, force=True)


# --- swarm reads --------------------------------------------------------------------------------


def live_image(name: str) -> str | None:
    try:
        svc = api.inspect_service(name)
    except docker.errors.NotFound:
        return None
    return cast(str, svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def rolled_out(name: str) -> bool:
    """The service's last update (if any) completed and its one task runs."""
    svc = api.inspect_service(name)
    if (svc.get("UpdateStatus") or {}).get("State") not in (None, "completed"):
        return False
    tasks = api.tasks(filters={"service": name, "desired-state": "running"})
    return len(tasks) == 1 and tasks[0]["Status"]["State"] == "running"


def owned(prefix: str) -> list[dict[str, Any]]:
    """Services and networks named ``prefix_...``."""
    services = [s for s in api.services() if s["Spec"]["Name"].startswith(prefix + "_")]
    networks = [n for n in api.networks() if n["Name"].startswith(prefix + "_")]
    return cast(list[dict[str, Any]], services + networks)


def gone(prefix: str) -> Callable[[], bool]:
    return lambda: not owned(prefix)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(cmd: list[str], timeout: float = 300) -> float:
    """Wall seconds of a command run to its end (it must succeed)."""
    t = time.monotonic()
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def service_doc(ns: str, name: str, image: str, *, replicas: int = 1, resolve: str | None = None) -> str:
    extra = f"\n  resolveImage: {resolve}" if resolve else ""
    return (
        "apiVersion: swarmkeeper.io/v1alpha1\nkind: SwarmService\n"
        f"metadata: {{name: {name}, namespace: {ns}}}\n"
        f'spec:\n  image: {image}\n  command: [sleep, "1d"]\n  replicas: {replicas}\n  stopGracePeriod: 1s{extra}\n'
    )


# --- 1. tag pushed → update started -------------------------------------------------------------


def metrics(port: int) -> tuple[float, float]:
    """(passes, seconds spent in them) from the controller's /metrics."""
    passes = seconds = 0.0
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        m = re.match(r"^(swarmkeeper_reconcile_total|swarmkeeper_reconcile_time_seconds_sum)(?:\{.*\})? (\S+)$", line)
        if m and m.group(1) == "swarmkeeper_reconcile_total":
            passes += float(m.group(2))
        elif m:
            seconds += float(m.group(2))
    return passes, seconds


def push_to_update(
    tmp: Path, registry: Registry, images: Images, pushes: int, hook: tuple[str, Path] | None = None
) -> dict[str, Any]:
    """Pushes of a tag until the watch has the service's spec name the new digest: by polling every
    IMAGE_INTERVAL, or (``hook``: HOST:PORT and token file) by the registry's push notifications
    alone, polling only hourly."""
    repository = f"{registry.host}/bench/app"
    name = f"{WATCH_NS}_app"
    folder = tmp / ("hook-specs" if hook else "watch-specs")
    folder.mkdir()
    (folder / "app.yaml").write_text(service_doc(WATCH_NS, "app", f"{repository}:1"))
    first = images.new(repository)
    pull(api, repository, "1")
    port = free_port()
    interval = "1h" if hook else f"{IMAGE_INTERVAL:g}s"
    cmd = [SK, "watch", str(folder), "--source", "bench-img", "--image-interval", interval]
    cmd += ["--status", "none", "--metrics-addr", f"127.0.0.1:{port}"]
    if hook is not None:
        cmd += ["--registry-webhook-addr", hook[0], "--registry-webhook-token-file", str(hook[1])]
    log_path = tmp / ("hook.log" if hook else "watch.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV)

    def alive(check: Callable[[], bool]) -> Callable[[], bool]:
        def checked() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"watch exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            return check()

        return checked

    latencies: list[float] = []
    pulls: list[float] = []
    try:
        wait_until(alive(lambda: live_image(name) == f"{repository}:1@{first}"), 60, f"{name} created, pinned")
        wait_until(alive(lambda: rolled_out(name)), 60, f"{name} running")
        time.sleep(2)
        passes0, seconds0 = metrics(port)
        window0, log0 = time.monotonic(), len(registry.log.read_bytes())
        for i in range(pushes):
            image = build_distinct_image(api)  # built ahead: the push alone is timed
            images.built.append(image)
            # A push lands at a random moment of the loop's cycle, not at a fixed distance from the
            # passes that the last rollout's events caused (follow-ups end 2.5 s after an event).
            time.sleep(3 + random.uniform(0, IMAGE_INTERVAL))
            digest = push(api, image, repository, "1")
            pushed = time.monotonic()
            pull(api, repository, "1")
            pulls.append((time.monotonic() - pushed) * 1000)
            wanted = f"{repository}:1@{digest}"
            deadline = pushed + 30
            while live_image(name) != wanted:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise TimeoutError(f"push {i + 1}: {name} not updated to {digest}:\n{log_path.read_text()[-3000:]}")
                time.sleep(POLL)
            latencies.append((time.monotonic() - pushed) * 1000)
            print(f"  push {i + 1}/{pushes}: update started after {latencies[-1]:.0f} ms", flush=True)
            wait_until(alive(lambda: rolled_out(name)), 60, f"{name} rolled out")
        passes1, seconds1 = metrics(port)
        window = time.monotonic() - window0
        # The watch's questions: a HEAD of the tag each (a pull GETs it; a push PUTs it).
        asks = registry.log.read_bytes()[log0:].count(b'"HEAD /v2/bench/app/manifests/1 ')
    finally:
        stop(proc)
        cleanup_namespace(api, WATCH_NS)
    if "Traceback" in log_path.read_text():
        print(f"  note: the watch logged a traceback:\n{log_path.read_text()[-3000:]}")
    pass_ms = (seconds1 - seconds0) / max(passes1 - passes0, 1) * 1000
    return {
        "latency": Summary.of(latencies),
        "pull_ms": median(pulls),
        "pass_ms": pass_ms,
        "passes": passes1 - passes0,
        "window_s": window,
        "asks": asks,
        "runs": latencies,
    }


def by_notifications(tmp: Path, pushes: int) -> dict[str, Any]:
    """Part 1 again, with a registry of its own that notifies the watch of each push."""
    folder = tmp / "notifying"
    folder.mkdir()
    addr, token = f"127.0.0.1:{free_port()}", f"bench-{random.getrandbits(64):x}"
    token_file = folder / "token"
    token_file.write_text(token + "\n")
    with own_registry(folder, notify=(addr, token)) as registry:
        images = Images(registry.host)
        try:
            return push_to_update(folder, registry, images, pushes, hook=(addr, token_file))
        finally:
            images.remove()


# --- 2. registry requests per pass at N = 200 ---------------------------------------------------


def distribution_calls(client: EngineClient) -> int:
    return sum(n for (_, path), n in client.calls.items() if path.startswith("/distribution"))


def idle_passes(tmp: Path, registry: Registry, images: Images, n: int = 200, distinct: int = 10) -> dict[str, Any]:
    repositories = [f"{registry.host}/bench/idle{j}" for j in range(distinct)]
    for repository in repositories:
        images.new(repository)
    folder = tmp / "idle-specs"
    folder.mkdir()
    docs = [service_doc(IDLE_NS, f"s{i}", f"{repositories[i % distinct]}:1", replicas=0) for i in range(n)]
    for start in range(0, n, 100):
        (folder / f"services-{start // 100}.yaml").write_text("---\n".join(docs[start : start + 100]))
    manifests = load_paths([folder]).manifests
    client = connect()
    out: dict[str, Any] = {}
    try:
        asked = registry.manifest_requests()
        t = time.monotonic()
        first = reconcile(client, manifests)
        first_at = time.monotonic()
        out["first_s"] = time.monotonic() - t
        if not first.ok:
            raise RuntimeError(f"first pass failed: {first.errors}")
        out["first_calls"] = distribution_calls(client)
        out["first_registry"] = registry.manifest_requests() - asked
        idle_calls, idle_ms = [], []
        asked = registry.manifest_requests()
        for _ in range(5):
            client.calls.clear()
            t = time.monotonic()
            again = reconcile(client, manifests)
            idle_ms.append((time.monotonic() - t) * 1000)
            if not again.plan.empty:
                raise RuntimeError(f"an idle pass planned changes: {[s.describe() for s in again.plan.steps]}")
            idle_calls.append(distribution_calls(client))
        out["idle_calls"], out["idle_ms"] = idle_calls, idle_ms
        out["idle_registry"] = registry.manifest_requests() - asked
        out["idle_engine_calls"] = sum(client.calls.values())
        # The interval over (1 s here, the first answers being older): every image asked again, once
        # per pass; nothing changes (the tags did not move). An interval of 0 would ask per service.
        time.sleep(max(0.0, first_at + 1.1 - time.monotonic()))
        client.calls.clear()
        asked = registry.manifest_requests()
        t = time.monotonic()
        expired = reconcile(client, manifests, Options(image_interval=1.0))
        out["expired_ms"] = (time.monotonic() - t) * 1000
        out["expired_calls"] = distribution_calls(client)
        out["expired_registry"] = registry.manifest_requests() - asked
        if not expired.plan.empty:
            raise RuntimeError("a pass asking again planned changes")
    finally:
        client.close()
        cleanup_namespace(api, IDLE_NS)
    return out


# --- 3. cold apply vs docker stack deploy -------------------------------------------------------


def write_cold(folder: Path, repositories: list[str], n: int, mode: str) -> tuple[Path, Path]:
    """The same 50 services (and one overlay network) as swarmkeeper specs and as a compose file."""
    specs, stack = folder / "specs", folder / "stack"
    specs.mkdir(parents=True)
    stack.mkdir()
    docs = [
        "apiVersion: swarmkeeper.io/v1alpha1\nkind: SwarmNetwork\n"
        f"metadata: {{name: net, namespace: {SK_NS}}}\nspec: {{}}\n"
    ]
    lines = ['version: "3.8"', "services:"]
    for i in range(n):
        image = f"{repositories[i % len(repositories)]}:1"
        doc = service_doc(SK_NS, f"svc{i}", image, replicas=0, resolve=mode)
        docs.append(doc + "  networks: [{name: net}]\n")
        lines += [
            f"  svc{i}:",
            f"    image: {image}",
            '    command: [sleep, "1d"]',
            "    stop_grace_period: 1s",
            "    deploy: {replicas: 0}",
            "    networks: [net]",
        ]
    lines += ["networks:", "  net: {driver: overlay}"]
    (specs / "services.yaml").write_text("---\n".join(docs))
    (stack / "compose.yml").write_text("\n".join(lines) + "\n")
    return specs, stack / "compose.yml"


def check_same(repositories: list[str], digests: dict[str, str], n: int, mode: str) -> list[str]:
    """What differs between the two tools' services, or from what was pushed."""
    problems = []
    for i in range(n):
        repository = repositories[i % len(repositories)]
        want = f"{repository}:1@{digests[repository]}" if mode == "always" else f"{repository}:1"
        sk_image, stack_image = live_image(f"{SK_NS}_svc{i}"), live_image(f"{STACK_NS}_svc{i}")
        if sk_image != want or stack_image != want:
            problems.append(f"svc{i}: swarmkeeper {sk_image}, stack {stack_image}, pushed {want}")
    return problems


def platforms(name: str) -> list[Any]:
    placement = api.inspect_service(name)["Spec"]["TaskTemplate"].get("Placement") or {}
    return cast(list[Any], placement.get("Platforms") or [])


def cold_apply(tmp: Path, registry: Registry, images: Images, rounds: int, n: int = 50) -> dict[str, Any]:
    repositories = [f"{registry.host}/bench/cold{j}" for j in range(5)]
    digests = {repository: images.new(repository) for repository in repositories}
    samples: dict[str, list[float]] = {}
    asked: dict[str, list[int]] = {}
    notes: list[str] = []
    for mode in ("always", "never"):
        specs, compose = write_cold(tmp / f"cold-{mode}", repositories, n, mode)
        tools = {
            "sk": ([SK, "apply", str(specs)], [SK, "delete", str(specs)], SK_NS),
            "stack": (
                [DOCKER, "stack", "deploy", "-c", str(compose), "--resolve-image", mode, STACK_NS],
                [DOCKER, "stack", "rm", STACK_NS],
                STACK_NS,
            ),
        }
        if mode == "always":  # compile swarmkeeper's bytecode and warm the engine, unmeasured
            run([SK, "apply", "--dry-run", str(specs)])
            run([SK, "delete", "svc", "absent", "-n", SK_NS])
        try:
            for r in range(rounds):
                for tool in ("sk", "stack") if r % 2 == 0 else ("stack", "sk"):
                    before = registry.manifest_requests()
                    samples.setdefault(f"{mode}/{tool}", []).append(run(tools[tool][0]))
                    asked.setdefault(f"{mode}/{tool}", []).append(registry.manifest_requests() - before)
                    time.sleep(1)
                problems = check_same(repositories, digests, n, mode)
                if problems:
                    raise RuntimeError(f"{mode}: the tools disagree:\n" + "\n".join(problems[:5]))
                sk_platforms, stack_platforms = platforms(f"{SK_NS}_svc0"), platforms(f"{STACK_NS}_svc0")
                if r == 0 and sk_platforms != stack_platforms:
                    notes.append(f"{mode}: Placement.Platforms: swarmkeeper {sk_platforms}, stack {stack_platforms}")
                print(
                    f"  {mode} round {r + 1}/{rounds}: swarmkeeper {samples[f'{mode}/sk'][-1]:.2f} s, "
                    f"stack {samples[f'{mode}/stack'][-1]:.2f} s; {n} images the same",
                    flush=True,
                )
                for _up, down, prefix in tools.values():
                    run(down)
                    wait_until(gone(prefix), 120, f"{prefix} removed")
                time.sleep(1)
        finally:
            for ns in (SK_NS, STACK_NS):
                cleanup_namespace(api, ns)
    return {"samples": samples, "asked": asked, "notes": notes}


# --- main ---------------------------------------------------------------------------------------


def selected_parts() -> set[str]:
    chosen = {p.strip() for p in os.environ.get("PARTS", ",".join(PARTS)).split(",") if p.strip()}
    if chosen - set(PARTS):
        sys.exit(f"unknown parts: {', '.join(sorted(chosen - set(PARTS)))}; use {', '.join(PARTS)}")
    return chosen


def report_watch(w: dict[str, Any]) -> None:
    s: Summary = w["latency"]
    what = f"tag pushed → update started (watch, --image-interval {IMAGE_INTERVAL:g}s, {s.n} pushes)"
    print("\n" + table(["", "p50", "p95", "max"], [[what, *s.cells()]]))
    half = IMAGE_INTERVAL * 1000 / 2
    print(
        f"expected: about half the interval plus one pass, {half:.0f} + {w['pass_ms']:.0f} = "
        f"{half + w['pass_ms']:.0f} ms (mean pass {w['pass_ms']:.0f} ms over {w['passes']:.0f} passes, most "
        f"of them follow-ups of engine events); the pull after each push, inside the figure, took "
        f"{w['pull_ms']:.0f} ms (median)"
    )
    print(
        f"the watch asked the registry {w['asks']} times in {w['window_s']:.0f} s (one ask every "
        f"{w['window_s'] / max(w['asks'], 1):.2f} s) and ran {w['passes'] / w['window_s']:.1f} passes a second"
    )
    print("runs (ms): " + ", ".join(f"{x:.0f}" for x in w["runs"]))


def report_idle(d: dict[str, Any]) -> None:
    idle_ms = d["idle_ms"]
    rows = [
        ["first pass (creates them)", str(d["first_calls"]), str(d["first_registry"]), f"{d['first_s'] * 1000:.0f} ms"],
        [
            "5 idle passes",
            ", ".join(map(str, d["idle_calls"])),
            f"{d['idle_registry']} in all",
            f"{median(idle_ms):.0f} ms (median; {min(idle_ms):.0f}-{max(idle_ms):.0f})",
        ],
        [
            "a pass with the interval over",
            str(d["expired_calls"]),
            str(d["expired_registry"]),
            f"{d['expired_ms']:.0f} ms",
        ],
    ]
    header = ["N = 200 services, 10 images", "/distribution calls", "registry manifest requests", "pass time"]
    print("\n" + table(header, rows))
    print(
        f"engine calls of the last idle pass: {d['idle_engine_calls']}; each /distribution call is a HEAD of "
        "the tag and a GET of the manifest at the registry"
    )


def report_cold(c: dict[str, Any], rounds: int) -> None:
    sm, asked = c["samples"], c["asked"]
    rows = []
    for mode in ("always", "never"):
        a, b = median(sm[f"{mode}/sk"]), median(sm[f"{mode}/stack"])
        requests_ = [" / ".join(str(x) for x in sorted(set(asked[f"{mode}/{t}"]))) for t in ("sk", "stack")]
        rows.append(
            [
                f"cold apply, 50 services over 5 images, resolve {mode}",
                f"{a:.2f} s ({', '.join(f'{x:.2f}' for x in sm[f'{mode}/sk'])})",
                f"{b:.2f} s ({', '.join(f'{x:.2f}' for x in sm[f'{mode}/stack'])})",
                f"{a / b:.2f}",
                f"{requests_[0]} / {requests_[1]}",
            ]
        )
    cost = [median(sm[f"always/{t}"]) - median(sm[f"never/{t}"]) for t in ("sk", "stack")]
    rows.append(["resolution itself (always - never)", f"{cost[0]:+.2f} s", f"{cost[1]:+.2f} s", "", ""])
    header = ["", "swarmkeeper apply (runs)", "stack deploy (runs)", "sk/stack", "registry requests sk / stack"]
    print("\n" + table(header, rows))
    print(f"({rounds} rounds, wall time of the command, medians; both pinned the same digests in every round)")
    for note in c["notes"]:
        print("note: " + note)


def main() -> None:
    pushes = int(os.environ.get("PUSHES", "10"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    parts = selected_parts()
    tmp = Path(tempfile.mkdtemp(prefix="skimg-"))
    ENV.update(os.environ)
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    results: dict[str, dict[str, Any]] = {}
    try:
        with own_registry(tmp) as registry:
            images = Images(registry.host)
            print(f"registry {registry.host}, swarmkeeper {SK}, {os.cpu_count()} cores", flush=True)
            try:
                if "watch" in parts:
                    print(f"\n1. tag pushed → update started ({pushes} pushes)", flush=True)
                    results["watch"] = push_to_update(tmp, registry, images, pushes)
                if "hook" in parts:
                    print(f"\n1b. tag pushed → update started by registry notifications ({pushes} pushes)", flush=True)
                    results["hook"] = by_notifications(tmp, pushes)
                if "idle" in parts:
                    print("\n2. registry requests per pass, N = 200", flush=True)
                    results["idle"] = idle_passes(tmp, registry, images)
                if "cold" in parts:
                    print(f"\n3. cold apply of 50 services vs docker stack deploy ({rounds} rounds)", flush=True)
                    results["cold"] = cold_apply(tmp, registry, images, rounds)
            finally:
                images.remove()
        if "watch" in results:
            report_watch(results["watch"])
        if "hook" in results:
            s: Summary = results["hook"]["latency"]
            what = f"tag pushed → update started (registry notification, polling hourly, {s.n} pushes)"
            print("\n" + table(["", "p50", "p95", "max"], [[what, *s.cells()]]))
            print("runs (ms): " + ", ".join(f"{x:.0f}" for x in results["hook"]["runs"]))
        if "idle" in results:
            report_idle(results["idle"])
        if "cold" in results:
            report_cold(results["cold"], rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
