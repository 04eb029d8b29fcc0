"""The dashboard of ``swarmkeeper watch --ui-addr``, against the real engine and a real browser.

One controller serves the whole module (a service at 3/3 beside a secret holding a canary value);
tests kill its tasks, break a spec, and read what the dashboard's endpoints and page show.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from cli_helpers import write_spec
from controller_helpers import SWARMKEEPER, Controller, controller, free_port
from helpers import cleanup_namespace, running_count, service_containers, wait_for

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

SPECS = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {{name: token, namespace: {ns}}}
spec:
  stringData: "{canary}"
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: web, namespace: {ns}}}
spec:
  image: {image}
  command: ["sleep", "3600"]
  replicas: 3
  stopGracePeriod: 1s
  secrets:
    - source: token
"""

BAD = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: broken, namespace: {ns}}}
spec:
  image: {image}
  replicas: lots
"""


class Dash:
    def __init__(self, ctl: Controller, url: str, namespace: str, specs: Path, canary: str) -> None:
        self.ctl, self.url, self.namespace, self.specs, self.canary = ctl, url, namespace, specs, canary

    def state(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/api/state", timeout=5)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def web(self, state: dict[str, Any] | None = None) -> dict[str, Any] | None:
        state = state if state is not None else self.state()
        # The page lists every managed object in the swarm: other namespaces' "web" too.
        return web_of(state, self.namespace)

    @property
    def service(self) -> str:
        return f"{self.namespace}_web"


@pytest.fixture(scope="module")
def dash(docker_api: docker.APIClient, local_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    canary = f"canary-{uuid.uuid4()}"
    specs = tmp_path_factory.mktemp("ui") / "specs"
    specs.mkdir()
    write_spec(specs, "web.yaml", SPECS.format(ns=namespace, canary=canary, image=local_image))
    port = free_port()
    try:
        with controller(specs, namespace, "--ui-addr", f"127.0.0.1:{port}") as ctl:
            dash = Dash(ctl, f"http://127.0.0.1:{port}", namespace, specs, canary)
            wait_for(lambda: (dash.web() or {}).get("ready") == "3/3", timeout=60, message="web never 3/3")
            yield dash
    finally:
        cleanup_namespace(docker_api, namespace)


class Events:
    """``/api/events`` read in a thread: each state with the time it arrived."""

    def __init__(self, url: str) -> None:
        self.response = requests.get(f"{url}/api/events", stream=True, timeout=(5, 30))
        self.response.raise_for_status()
        self.received: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event = ""
        try:
            # Byte by byte: with larger chunks the end of a state waits in the buffer until more
            # bytes come (the next state or keep-alive), which is not when the server sent it.
            for line in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "state":
                    self.received.put((time.time(), json.loads(line[6:])))
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by the test

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no such state arrived")
            at, state = self.received.get(timeout=left)
            if predicate(state):
                return at, state

    def close(self) -> None:
        self.response.close()


def kill_one_task(api: docker.APIClient, service: str) -> float:
    container = service_containers(api, service)[0]
    api.kill(container["Id"])
    return time.time()


def web_of(state: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    return next(
        (
            o
            for o in state["objects"]
            if o["kind"] == "SwarmService" and o["name"] == "web" and o["namespace"] == namespace
        ),
        None,
    )


def degraded(state: dict[str, Any], after: float, namespace: str) -> bool:
    """The state shows a task that ended after ``after`` (or web below 3/3)."""
    web = web_of(state, namespace)
    if web is None:
        return False
    if web["ready"] != "3/3":
        return True
    return any(t["state"] == "failed" and _ts(t["at"]) > after for t in web["tasks"])


def _ts(text: str) -> float:
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))).timestamp()


def back_to_full(api: docker.APIClient, dash: Dash, killed: float | None = None) -> None:
    if killed is not None:  # the kill's pass first, so that an earlier 3/3 does not count
        wait_for(lambda: degraded(dash.state(), killed, dash.namespace), timeout=30, message="the kill was not seen")
    wait_for(lambda: running_count(api, dash.service) == 3, timeout=60, message="web not back to 3 tasks")
    wait_for(lambda: (dash.web() or {}).get("ready") == "3/3", timeout=30, message="dashboard not back to 3/3")


def test_state_shows_objects_nodes_and_passes(dash: Dash) -> None:
    state = dash.state()
    web = dash.web(state)
    assert web is not None and web["ready"] == "3/3"
    assert web["image"] and web["namespace"] == dash.namespace and re.search(r"web\.yaml:\d+$", web["file"])
    assert {c["type"] for c in web["conditions"]} >= {"Ready"}
    running = [t for t in web["tasks"] if t["state"] == "running"]
    assert len(running) == 3 and all(t["node"] for t in running)
    (secret,) = [o for o in state["objects"] if o["kind"] == "SwarmSecret" and o["namespace"] == dash.namespace]
    assert secret["name"] == "token" and secret["in_specs"] and secret["source"] == dash.namespace
    assert state["nodes"] and any(n["leader"] and n["role"] == "manager" for n in state["nodes"])
    # The controller's own lease (a swarm config) is bookkeeping, not an object nobody manages.
    assert not [u for u in state["unmanaged"] if u["name"].startswith("swarmkeeper-lease.")], state["unmanaged"]
    assert {n["id"] for n in state["nodes"]} >= {t["node"] for t in running}
    created = [c for p in state["passes"] for c in p["changes"] if c["action"] == "create"]
    assert {c["name"] for c in created} >= {"web", "token"}
    for path in ("/", "/app.js", "/app.css", "/api/state"):
        response = requests.get(dash.url + path, timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = requests.get(dash.url + "/", timeout=5).text
    assert "<script src=" in page and "<script>" not in page and "style=" not in page


def test_events_push_a_killed_task_within_a_second(docker_api: docker.APIClient, dash: Dash) -> None:
    events = Events(dash.url)
    try:
        events.until(lambda s: True, timeout=5)  # the current state, at once
        killed = kill_one_task(docker_api, dash.service)
        arrived, state = events.until(lambda s: degraded(s, killed, dash.namespace), timeout=10)
    finally:
        events.close()
    last = state["last_pass"]
    pass_end = _ts(last["at"]) + last["duration_ms"] / 1000
    print(f"SSE: {arrived - killed:.3f}s from kill to page, {arrived - pass_end:.3f}s from pass end")
    assert arrived - pass_end < 1.0, (arrived, pass_end)
    assert arrived - killed < 5.0
    back_to_full(docker_api, dash, killed)


def test_invalid_edit_shows_file_and_line(dash: Dash, local_image: str) -> None:
    bad = write_spec(dash.specs, "bad.yaml", BAD.format(ns=dash.namespace, image=local_image))
    try:
        state = wait_for(
            lambda: (s := dash.state())["spec_errors"] and s, timeout=30, message="the invalid spec was not shown"
        )
        assert any(re.search(r"bad\.yaml:6:\d+: SwarmService/broken: spec\.replicas", e) for e in state["spec_errors"])
        assert any("bad.yaml:6" in e for e in state["passes"][0]["spec_errors"])
        assert (dash.web(state) or {}).get("ready") == "3/3"  # the last good specs keep running
    finally:
        bad.unlink()
    wait_for(lambda: not dash.state()["spec_errors"], timeout=30, message="the error did not go away")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromium-driver are missing; run `./dev setup`", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _cell_texts(driver: Any, row_id: str) -> list[str]:
    # Read in one script: the page replaces its rows on each update, so element handles go stale.
    texts: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(`tr[data-id='${arguments[0]}'] > *`)].map(e => e.textContent)", row_id
    )
    return texts


def _failed_tasks(driver: Any) -> set[str]:
    ids: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#tasks .task.failed')].map(e => e.dataset.task)"
    )
    return set(ids)


def _count(driver: Any, selector: str) -> int:
    return int(driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector))


def _focused(driver: Any) -> tuple[str, str]:
    tag, ident = driver.execute_script(
        "const a = document.activeElement; return [a.tagName.toLowerCase(), a.id || a.getAttribute('data-focus')]"
    )
    return str(tag), str(ident)


def test_page_follows_the_swarm_live(
    docker_api: docker.APIClient, dash: Dash, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    back_to_full(docker_api, dash)
    web_id = f"SwarmService/{dash.namespace}/web"
    browser.get(dash.url + "/")
    wait_for(lambda: "3/3" in _cell_texts(browser, web_id), timeout=10, message="the page never showed 3/3")
    assert browser.find_element(By.XPATH, f"//caption[contains(., '{dash.namespace}')]")
    browser.execute_script("window.notReloaded = true")
    failed_before = _failed_tasks(browser)
    killed = kill_one_task(docker_api, dash.service)
    # A running task turns failed (with its error) or READY drops: either is the change on the page.
    wait_for(
        lambda: "2/3" in _cell_texts(browser, web_id) or _failed_tasks(browser) - failed_before,
        timeout=2.5,
        interval=0.05,
        message="the page did not show the killed task",
    )
    seen = time.time() - killed
    print(f"page: killed task shown {seen:.3f}s after the kill")
    assert browser.execute_script("return window.notReloaded === true")
    # While the service is short of a task, the failed one is shown with its error.
    wait_for(
        lambda: _count(browser, "#tasks .error"),
        timeout=5,
        message=f"the failing task's error is not shown: {(dash.web() or {}).get('tasks')}",
    )
    back_to_full(docker_api, dash, killed)
    wait_for(lambda: "3/3" in _cell_texts(browser, web_id), timeout=5, message="the page is not back to 3/3")
    # Keyboard: Tab walks through the buttons, each one focused in turn (and kept across updates).
    browser.find_element(By.TAG_NAME, "h1").click()
    keys = ActionChains(browser)
    focused = []
    for _ in range(3):
        keys.send_keys(Keys.TAB).perform()
        focused.append(_focused(browser))
    assert focused[0] == ("button", "pause")
    assert all(tag == "button" for tag, _ in focused) and len(set(focused)) == 3, focused
    keys.send_keys(Keys.ENTER).perform()  # open the row's details
    wait_for(lambda: _count(browser, "tr.detail"), timeout=5, message="no details row")
    assert _focused(browser) == focused[-1]
    # Readable: every text on the page (tables, conditions, task states, errors, header) has a
    # contrast of at least 4.5:1 against what is behind it (WCAG AA for normal text).
    worst = browser.execute_script(CONTRAST_JS)
    assert worst["checked"] > 50 and worst["ratio"] >= 4.5, worst
    # What the page looked like, kept with the test's files (docs/dashboard.png is the demo's).
    shot = tmp_path_factory.mktemp("screenshot") / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


# The lowest contrast between a text's colour and the first opaque background behind it.
CONTRAST_JS = """
const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => [r, g, b]
  .map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
  .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
const behind = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
  if (c.length === 3 || c[3] > 0) return c.slice(0, 3); } return [255, 255, 255]; };
let worst = { ratio: 21, text: "", checked: 0 };
for (const e of document.querySelectorAll("body *")) {
  if (!e.offsetParent && e.tagName !== "BODY") continue;
  const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(behind(e))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  worst.checked++;
  if (ratio < worst.ratio) {
    worst = { ratio, text: e.textContent.slice(0, 60), checked: worst.checked, tag: e.tagName, cls: e.className };
  }
}
return worst;
"""


def test_token_auth(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    token_file = tmp_path / "ui-token"
    token = uuid.uuid4().hex
    token_file.write_text(token + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    source = f"t{uuid.uuid4().hex[:8]}"
    with controller(specs, source, "--ui-addr", f"127.0.0.1:{port}", "--ui-token-file", str(token_file)) as ctl:
        for path in ("/", "/app.js", "/api/state", "/api/events"):
            assert requests.get(url + path, timeout=5).status_code == 401, path
        wrong = requests.get(url + "/api/state", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        ok = requests.get(url + "/api/state", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert ok.status_code == 200 and ok.json()["source"] == source
        assert "Content-Security-Policy" in wrong.headers
        with requests.Session() as browser_like:
            first = browser_like.get(f"{url}/?token={token}", timeout=5, allow_redirects=False)
            assert first.status_code == 303 and first.headers["Location"] == "/"
            cookie = first.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
            assert browser_like.get(url + "/api/state", timeout=5).status_code == 200
    assert token not in ctl.logs()


@pytest.mark.parametrize("command", ["watch", "sync"])
def test_public_address_needs_a_token(tmp_path: Path, command: str) -> None:
    where = [str(tmp_path)] if command == "watch" else ["--repo", str(tmp_path)]
    done = subprocess.run(
        [str(SWARMKEEPER), command, *where, "--ui-addr", f"0.0.0.0:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "needs a token file" in done.stderr + done.stdout


def test_no_secret_value_on_any_endpoint(dash: Dash) -> None:
    events = Events(dash.url)
    try:
        _, streamed = events.until(lambda s: True, timeout=5)
    finally:
        events.close()
    bodies = {
        path: requests.get(dash.url + path, timeout=5).text for path in ("/", "/app.js", "/app.css", "/api/state")
    }
    bodies["/api/events"] = json.dumps(streamed)
    bodies["log"] = dash.ctl.logs()
    assert any("SwarmSecret" in b for b in bodies.values())  # the secret is there, by name
    assert [where for where, body in bodies.items() if dash.canary in body] == []
