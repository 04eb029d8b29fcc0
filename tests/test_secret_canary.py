"""A secret value, once in a spec, is never seen again outside the swarm's secret store.

One unique value (a UUID) is pushed through every path there is — validate, diff, apply (dry run,
real, with --wait), get in every format, logging at -vv, rotation, the watch controller in text and
JSON logging with status written inline and into ``.status/``, invalid specs whose errors sit next to
the value — and then searched for in everything those paths produced: outputs, logs, status blocks,
status files, metrics, and the labels and specs of every object in the swarm. It must be found 0
times; and it must be found in the running service, so the search is not vacuous.

A registry password is a canary too: the TLS test registry's login, from the docker client config
and from a SwarmCluster's ``engine.registryAuthFile``, right and refused (a wrong password, whose
error is reported), searched for as it is and as the base64 ``user:password`` of a config.json.
It must be found 0 times; and the images it pins prove it was used.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import pytest
import requests
from ruamel.yaml import YAML

from cli_helpers import write_spec
from controller_helpers import controller, wait_until_idle
from helpers import exec_in_service, wait_for
from registry_fixtures import Registries, build_distinct_image, pull, push

SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"
ENV_VARIABLE = "SWARMKEEPER_CANARY_VALUE"

SPECS = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {{name: from-file, namespace: {ns}}}
spec:
  file: token.txt
  keepVersions: 0
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {{name: inline, namespace: {ns}}}
spec:
  stringData: "{canary}-inline"
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {{name: encoded, namespace: {ns}}}
spec:
  data: {encoded}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata: {{name: from-env, namespace: {ns}}}
spec:
  env: {env}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: holder, namespace: {ns}}}
spec:
  image: {image}
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
  updateConfig: {{monitor: 1s}}
  secrets:
    - source: from-file
    - source: inline
    - source: encoded
    - source: from-env
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: private, namespace: {ns}}}
spec:
  image: {private}
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
"""

# The registry login comes from the SwarmCluster's file alone (the docker config has none for it).
VIA_CLUSTER = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmCluster
metadata: {{name: here}}
spec:
  engine: {{host: "unix:///var/run/docker.sock", registryAuthFile: logins/config.json}}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: via-cluster, namespace: {ns}}}
spec:
  cluster: here
  image: {private}
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
"""

# Invalid specs whose errors are about the very lines that hold the value.
INVALID = {
    "beside-bad-field": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          stringData: "{canary}"
          keepVersions: lots
        """,
    "unknown-field": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          stringData: {canary}
          rotate: always
        """,
    "broken-quote": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          stringData: "{canary}
          keepVersions: 1
        """,
    "broken-indentation": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
        \tstringData: {canary}
        """,
    "duplicate-key": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          stringData: {canary}-1
          stringData: {canary}-2
        """,
    "two-sources": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          env: {env}
          stringData: {canary}
        """,
    "env-value-beside-bad-field": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          env: {env}
          keepVersions: -1
        """,
    "env-value-beside-dangling-reference": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          env: {env}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: user, namespace: {ns}}}
        spec:
          image: local/busybox:1
          secrets: [{{source: bad}}, {{source: missing}}]
        """,
    "value-in-a-key": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          stringData:
            {canary}: value
        """,
    "base64-garbage": """\
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: bad, namespace: {ns}}}
        spec:
          data: "{canary}!!"
        """,
}


@dataclass
class Seen:
    """Everything the paths under test produced, by where it came from."""

    texts: dict[str, str]

    def add(self, where: str, text: str) -> None:
        self.texts[where] = self.texts.get(where, "") + text

    def places(self, needle: str) -> list[str]:
        return sorted(where for where, text in self.texts.items() if needle in text)


def swarmkeeper(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process: everything it writes, logging included, is captured."""
    return subprocess.run(
        [str(SWARMKEEPER), *(str(a) for a in args)],
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def status_blocks(folder: Path) -> str:
    """The status: blocks of every spec file under ``folder``, as JSON (spec bodies hold the value)."""
    out = []
    for path in sorted(folder.rglob("*.yaml")):
        if ".status" in path.parts:
            continue
        try:
            docs = list(YAML(typ="safe").load_all(path.read_text()))
        except Exception:  # an invalid file the test wrote on purpose: no status block to read
            continue
        out += [json.dumps(doc.get("status"), default=str) for doc in docs if isinstance(doc, dict)]
    return "\n".join(out)


def status_of(path: Path, document: int) -> dict[str, Any]:
    docs = list(YAML(typ="safe").load_all(path.read_text()))
    return cast(dict[str, Any], docs[document].get("status") or {})


def tree_text(folder: Path, *, skip: tuple[Path, ...] = ()) -> str:
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p not in skip)
    return "\n".join(f"{p}:\n{p.read_text(errors='replace')}" for p in files)


def swarm_text(api: docker.APIClient, namespace: str) -> dict[str, str]:
    """Labels of every object in the swarm, and the full inspect output of those of ``namespace``."""
    listings = {
        "services": api.services(),
        "networks": api.networks(),
        "secrets": api.secrets(),
        "configs": api.configs(),
        "tasks": api.tasks(),
        "nodes": api.nodes(),
    }
    out: dict[str, str] = {}
    for kind, objects in listings.items():
        labels = [((o.get("Spec") or {}).get("Labels"), o.get("Labels")) for o in objects]
        out[f"swarm {kind} labels"] = json.dumps(labels)
        mine = [o for o in objects if namespace in json.dumps(o.get("Spec") or o.get("Name") or "")]
        out[f"swarm {kind} of the namespace"] = json.dumps(mine)
    return out


def secret_file(api: docker.APIClient, service: str, name: str) -> str | None:
    """The secret file as a running task of ``service`` sees it; None while no task runs (rollout)."""
    try:
        return exec_in_service(api, service, ["cat", f"/run/secrets/{name}"], check=False)
    except (AssertionError, docker.errors.APIError):
        return None


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    value = f"canary-{uuid.uuid4()}"
    monkeypatch.setenv(ENV_VARIABLE, f"{value}-env")  # inherited by every process started below
    yield value


def docker_login(folder: Path, registries: Registries, password: str) -> str:
    """A docker client config.json in ``folder`` with a login for the TLS registry, as ``docker
    login`` writes it; returns the base64 ``user:password`` it holds."""
    token = base64.b64encode(f"{registries.user}:{password}".encode()).decode()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"auths": {registries.tls: {"auth": token}}}))
    return token


def live_image(api: docker.APIClient, name: str) -> str:
    return str(api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def test_a_secret_value_is_never_seen_outside_the_secret_store(
    docker_api: docker.APIClient,
    local_image: str,
    namespace: str,
    specs_dir: Path,
    tmp_path: Path,
    canary: str,
    registries: Registries,
    isolated_api: docker.APIClient,
    scratch_images: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = Seen({})
    src = ("--source", namespace)
    encoded = base64.b64encode(f"{canary}-encoded".encode()).decode()
    # A private image in the TLS registry, pulled so the test engine can run it.
    private = f"{registries.tls}/sk/{namespace}"
    built = build_distinct_image(docker_api)
    scratch_images.append(built)
    digest = push(isolated_api, built, private, "1", auth=registries.auth())
    pull(isolated_api, private, "1", auth=registries.auth())
    wrong = f"not-the-{registries.password}-{uuid.uuid4().hex[:8]}"
    docker_config = tmp_path / "docker-config"  # outside the specs: every process below logs in with it
    tokens = [docker_login(docker_config, registries, registries.password)]
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    write_spec(
        specs_dir,
        "app.yaml",
        SPECS.format(
            ns=namespace,
            image=local_image,
            canary=canary,
            encoded=encoded,
            env=ENV_VARIABLE,
            private=f"{private}:1",
        ),
    )
    (specs_dir / "token.txt").write_text(f"{canary}-file")

    def run(label: str, *args: str | Path, ok: tuple[int, ...] = (0,)) -> None:
        result = swarmkeeper(*args)
        seen.add(label, result.stdout + result.stderr)
        assert result.returncode in ok, f"{label}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"

    # one-shot commands, before and after the first apply
    run("validate -vv", "validate", specs_dir, "-vv")
    run("diff -vv (all new)", "diff", specs_dir, "-vv", *src, ok=(1,))
    run("apply --dry-run -vv", "apply", specs_dir, "--dry-run", "-vv", *src)
    run("apply --wait -vv", "apply", specs_dir, "--wait", "--timeout", "120s", "-vv", *src)
    run("diff -vv (no changes)", "diff", specs_dir, "-vv", *src)
    assert live_image(docker_api, f"{namespace}_private") == f"{private}:1@{digest}"  # the login was used
    for output in ("table", "wide", "yaml", "json"):
        run(f"get -o {output} -vv", "get", "-o", output, "-vv")
        run(f"get secrets -o {output}", "get", "secrets", "-n", namespace, "-o", output)
    run("get secret by name", "get", "secrets", "from-file", "-n", namespace, "-o", "yaml")

    # rotation through the CLI: a new value in the file and in the environment
    (specs_dir / "token.txt").write_text(f"{canary}-file-rotated")
    rotated_env = {ENV_VARIABLE: f"{canary}-env-rotated"}
    for label, args in (
        ("diff after rotation -vv", ("diff", specs_dir, "-vv", *src)),
        ("apply --dry-run after rotation -vv", ("apply", specs_dir, "--dry-run", "-vv", *src)),
        ("apply --wait after rotation -vv", ("apply", specs_dir, "--wait", "--timeout", "120s", "-vv", *src)),
    ):
        result = swarmkeeper(*args, env=rotated_env)
        seen.add(label, result.stdout + result.stderr)
        assert result.returncode in (0, 1), f"{label}: {result.stderr}"
    holder = f"{namespace}_holder"
    wait_for(
        lambda: secret_file(docker_api, holder, "from-env") == f"{canary}-env-rotated",
        timeout=90,
        message="the rotated value never reached the service",
    )

    # invalid specs: every error is about a line that holds the value
    for name, text in INVALID.items():
        folder = tmp_path / "invalid" / name
        write_spec(folder, "bad.yaml", text.format(ns=namespace, canary=canary, env=ENV_VARIABLE))
        for command in ("validate", "apply"):
            result = swarmkeeper(command, folder, "-vv", *(src if command == "apply" else ()))
            seen.add(f"{command} invalid/{name}", result.stdout + result.stderr)
            assert result.returncode == 2, f"{name}: {result.stdout}\n{result.stderr}"
            assert "bad.yaml:" in result.stderr, f"{name}: the error does not name the file:\n{result.stderr}"

    # the watch controller: text logs, status inline; then JSON logs, status in .status/
    (specs_dir / "token.txt").write_text(f"{canary}-file")  # back: the environment is the original again
    app = specs_dir / "app.yaml"
    with controller(specs_dir, namespace, log=tmp_path / "watch-text.log") as ctl:
        wait_until_idle(ctl)
        version = status_of(app, 0).get("currentVersion")
        (specs_dir / "token.txt").write_text(f"{canary}-file-watched")
        wait_for(
            lambda: (status_of(app, 0).get("currentVersion") or 0) > (version or 0),
            timeout=90,
            message="the watch controller did not rotate the secret",
        )
        # an invalid spec appears next to the valid ones, holding the value
        bad = write_spec(specs_dir, "bad.yaml", INVALID["beside-bad-field"].format(ns=namespace, canary=canary))
        wait_for(lambda: "bad.yaml" in ctl.logs(), timeout=30, message="the invalid spec was not reported")
        wait_for(lambda: "InvalidSpec" in bad.read_text(), timeout=30, message="no InvalidSpec status")
        seen.add("watch: status blocks with an invalid spec (inline)", status_blocks(specs_dir))
        broken = write_spec(specs_dir, "broken.yaml", INVALID["broken-quote"].format(ns=namespace, canary=canary))
        wait_for(lambda: "broken.yaml" in ctl.logs(), timeout=30, message="the broken spec was not reported")
        seen.add("watch: metrics", requests.get(f"http://127.0.0.1:{ctl.port}/metrics", timeout=5).text)
        bad.unlink()
        broken.unlink()
        wait_until_idle(ctl)
        seen.add("watch: status blocks (inline)", status_blocks(specs_dir))
    seen.add("watch: text log -vv", ctl.logs())

    json_log = tmp_path / "watch-json.log"
    with controller(specs_dir, namespace, "--status", "file", "--log-format", "json", log=json_log) as ctl:
        wait_until_idle(ctl)
        status_file = specs_dir / ".status" / "app.yaml.status.yaml"
        wait_for(status_file.exists, timeout=30, message="no .status/ file")
        before = status_file.read_text()
        (specs_dir / "token.txt").write_text(f"{canary}-file-watched-again")
        wait_for(lambda: status_file.read_text() != before, timeout=90, message=".status/ not updated")
        bad = write_spec(specs_dir, "bad.yaml", INVALID["unknown-field"].format(ns=namespace, canary=canary))
        wait_for(lambda: "bad.yaml" in ctl.logs(), timeout=30, message="the invalid spec was not reported")
        wait_for(
            lambda: (specs_dir / ".status" / "bad.yaml.status.yaml").exists(),
            timeout=30,
            message="no .status/ file for the invalid spec",
        )
        seen.add("watch: .status/ tree", tree_text(specs_dir / ".status"))
        bad.unlink()
        wait_until_idle(ctl)
    seen.add("watch: JSON log -vv", ctl.logs())
    assert all(json.loads(line) for line in ctl.logs().splitlines() if line.startswith("{"))
    seen.add("watch --status file: status blocks (must be none)", status_blocks(specs_dir))
    seen.add("watch --status file: .status/ tree at the end", tree_text(specs_dir / ".status"))

    # a refused registry login: the pinned digest runs on, and the registry's error is reported
    tokens.append(docker_login(docker_config, registries, wrong))
    run("apply -vv, login refused", "apply", specs_dir, "-vv", *src)
    run("diff -vv, login refused", "diff", specs_dir, "-vv", *src, ok=(0, 1))
    run("get -o yaml -vv, login refused", "get", "-o", "yaml", "-vv")
    with controller(specs_dir, namespace, "--image-interval", "1s", log=tmp_path / "watch-refused.log") as ctl:
        wait_for(
            lambda: "RegistryError" in status_blocks(specs_dir),
            timeout=60,
            message="the refused login was not reported in status",
        )
        wait_until_idle(ctl)
        seen.add("watch, login refused: status blocks (inline)", status_blocks(specs_dir))
        seen.add("watch, login refused: metrics", requests.get(f"http://127.0.0.1:{ctl.port}/metrics", timeout=5).text)
    seen.add("watch, login refused: text log -vv", ctl.logs())
    assert live_image(docker_api, f"{namespace}_private") == f"{private}:1@{digest}"
    tokens.append(docker_login(docker_config, registries, registries.password))

    # a SwarmCluster's registryAuthFile, refused then right, with a docker config that has no login
    via = tmp_path / "via-cluster"
    write_spec(via, "app.yaml", VIA_CLUSTER.format(ns=namespace, private=f"{private}:1"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    tokens.append(docker_login(via / "logins", registries, wrong))
    run("registryAuthFile refused: apply -vv", "apply", via, "-vv", *src)
    run("registryAuthFile refused: diff -vv", "diff", via, "-vv", *src, ok=(0, 1))
    tokens.append(docker_login(via / "logins", registries, registries.password))
    run("registryAuthFile: apply --wait -vv", "apply", via, "--wait", "--timeout", "120s", "-vv", *src)
    run("registryAuthFile: diff -vv", "diff", via, "-vv", *src)
    run("registryAuthFile: get -o json -vv", "get", "-o", "json", "-vv", "--cluster", "here", "-f", via)
    assert live_image(docker_api, f"{namespace}_via-cluster") == f"{private}:1@{digest}"

    # the swarm itself, and what is left on disk besides the specs and the value file
    for where, text in swarm_text(docker_api, namespace).items():
        seen.add(where, text)
    seen.add("every other file in the specs folder", tree_text(specs_dir, skip=(app, specs_dir / "token.txt")))

    # the value did flow: it is in the service's secret files, and nowhere else
    for name, value in (("from-file", "file-watched-again"), ("inline", "inline"), ("encoded", "encoded")):
        wait_for(
            lambda n=name, v=value: secret_file(docker_api, holder, n) == f"{canary}-{v}",  # type: ignore[misc]
            timeout=90,
            message=f"{name} never reached the service",
        )
    assert len(seen.texts) > 40
    assert "InvalidSpec" in seen.texts["watch: .status/ tree"]
    assert "spec.keepVersions" in seen.texts["watch: text log -vv"]  # the error is there, the value is not
    assert seen.places(canary) == [], f"the secret value was found in: {seen.places(canary)}"
    assert seen.places(encoded) == [], f"the base64 value was found in: {seen.places(encoded)}"
    # the registry passwords, as they are and as a config.json holds them (messages name no value)
    assert "RegistryError" in seen.texts["watch, login refused: status blocks (inline)"]
    assert registries.tls in seen.texts["watch, login refused: status blocks (inline)"]
    for name, needle in (("the registry password", registries.password), ("the refused password", wrong)):
        assert seen.places(needle) == [], f"{name} was found in: {seen.places(needle)}"
    for token in tokens:
        assert seen.places(token) == [], f"a base64 registry login was found in: {seen.places(token)}"
