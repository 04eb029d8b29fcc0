"""docs/dashboard.png: the demo (specs/demo) under `swarmkeeper watch --ui-addr`, a moment after one
of its tasks was killed, in headless Chromium.

    .venv/bin/python scripts/dashboard-screenshot.py

Status is not written back (--status none), so the demo's files stay as they are; the demo's
objects are removed afterwards.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parent.parent
SK = str(Path(sys.executable).parent / "swarmkeeper")
DEMO = ROOT / "specs" / "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def ready(url: str) -> bool:
    try:
        objects = requests.get(f"{url}/api/state", timeout=2).json()["objects"]
    except (requests.RequestException, ValueError):
        return False
    services = [o for o in objects if o["kind"] == "SwarmService" and o["namespace"] == "demo"]
    return bool(services) and all(o["ready"] and o["ready"].split("/")[0] == o["ready"].split("/")[1] for o in services)


def main() -> None:
    api = docker.APIClient(version="auto")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    watch = subprocess.Popen(
        [SK, "watch", str(DEMO), "--status", "none", "--ui-addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        wait(lambda: ready(url), 120, "the demo never converged")
        browser.get(url + "/")
        time.sleep(1)
        (task, *_) = api.tasks(filters={"service": "demo_api", "desired-state": "running"})
        api.kill(task["Status"]["ContainerStatus"]["ContainerID"])
        time.sleep(1.5)
        browser.save_screenshot(str(ROOT / "docs" / "dashboard.png"))
    finally:
        browser.quit()
        watch.terminate()
        watch.wait(30)
        subprocess.run([SK, "delete", str(DEMO)], check=False, capture_output=True)


if __name__ == "__main__":
    main()
