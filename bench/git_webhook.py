"""Git front door: push → swarm service update started (p50/p95), with a push webhook.

Each round commits a changed spec, pushes it to a bare repository (a local path, or smart HTTP
over loopback with a token), then delivers a signed GitHub-style push event, as a Git host
would; the time is from just before ``git push`` to the engine's own "service update" event.

    .venv/bin/python bench/git_webhook.py --pushes 30 --transport http
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from controller_helpers import free_port  # noqa: E402
from git_helpers import GitRepo, github_headers, push_event, smart_http, web_spec  # noqa: E402

SK = str(ROOT / ".venv" / "bin" / "swarmkeeper")
SECRET = b"bench-webhook-secret"
TOKEN = "bench-token"
api = docker.APIClient(version="auto", timeout=120)


@contextlib.contextmanager
def served(repo: GitRepo, transport: str) -> Iterator[tuple[str, list[str]]]:
    if transport == "http":
        with smart_http(repo.root, token=TOKEN) as base:
            token_file = repo.root / "token"
            token_file.write_text(TOKEN)
            yield f"{base}/origin.git", ["--token-file", str(token_file)]
    else:
        yield str(repo.origin), []


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("swarmkeeper sync exited")
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError("sync never ready")


def run(pushes: int, transport: str, tmp: Path) -> None:
    ns = f"bgit{int(time.time()) % 100000}"
    repo = GitRepo(tmp / "repos" / "specs")
    repo.write("specs/web.yaml", web_spec(ns, 0))
    repo.commit("release 0")
    (tmp / "secret").write_bytes(SECRET)
    name = f"{ns}_web"
    metrics_port, hook_port = free_port(), free_port()
    with served(repo, transport) as (url, extra):
        log = open(tmp / "sync.log", "wb")  # noqa: SIM115 - closed with the process
        cmd = [SK, "sync", "--repo", url, "--path", "specs", "--name", ns, "--interval", "1h",
               "--cache-dir", str(tmp / "cache"), "--webhook-secret-file", str(tmp / "secret"),
               "--webhook-addr", f"127.0.0.1:{hook_port}",
               "--metrics-addr", f"127.0.0.1:{metrics_port}", *extra]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(metrics_port, proc)
            while not api.services(filters={"name": name}):
                time.sleep(0.2)
            events = api.events(decode=True, filters={"type": "service", "event": "update"})
            updates: list[int] = []
            got = threading.Event()

            def follow() -> None:
                for ev in events:
                    if ev.get("Actor", {}).get("Attributes", {}).get("name") == name:
                        updates.append(int(ev["timeNano"]))
                        got.set()

            threading.Thread(target=follow, daemon=True).start()
            latencies, push_times = [], []
            for i in range(1, pushes + 1):
                repo.write("specs/web.yaml", web_spec(ns, i))
                sha = repo.commit(f"release {i}", push=False)
                got.clear()
                before = time.time_ns()
                repo.push()
                pushed = time.time_ns()
                body = push_event("refs/heads/main", sha)
                answer = requests.post(f"http://127.0.0.1:{hook_port}/", data=body,
                                       headers=github_headers(body, SECRET), timeout=10)  # fmt: skip
                if answer.status_code != 202:
                    raise RuntimeError(f"webhook answered {answer.status_code}: {answer.text}")
                if not got.wait(30):
                    raise TimeoutError(f"no update event after push {i}")
                latencies.append((updates[-1] - before) / 1e6)
                push_times.append((pushed - before) / 1e6)
                time.sleep(1.0)  # let the controller go idle between pushes
            events.close()
            qs = statistics.quantiles(latencies, n=20)
            print(
                f"git ({transport}): push → service update started over {pushes} pushes: "
                f"p50 {statistics.median(latencies):.0f} ms, p95 {qs[18]:.0f} ms, max {max(latencies):.0f} ms "
                f"(of which `git push` itself: p50 {statistics.median(push_times):.0f} ms)"
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            log.close()
            for svc in api.services(filters={"name": name}):
                api.remove_service(svc["ID"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=30)
    parser.add_argument("--transport", choices=["local", "http"], default="local")
    args = parser.parse_args()
    if args.pushes < 20:
        parser.error("--pushes: at least 20, for a meaningful p95")
    run(args.pushes, args.transport, Path(tempfile.mkdtemp(prefix="skgit-")))


if __name__ == "__main__":
    main()
