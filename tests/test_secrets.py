"""Secrets reach only the services that name them, rotate to new versions, and never leak."""

from __future__ import annotations

import logging
from pathlib import Path

import docker
import pytest

from cli_helpers import sk, write_spec
from helpers import exec_in_service, wait_for

CANARY = "CANARY-7f3a-do-not-print"

SPECS = """
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata:
  name: token
  namespace: {ns}
spec:
  file: token.txt
  keepVersions: {keep}
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata:
  name: holder
  namespace: {ns}
spec:
  image: {image}
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
  secrets:
    - source: token
      mode: "0400"
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata:
  name: bystander
  namespace: {ns}
spec:
  image: {image}
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
"""


def setup_specs(folder: Path, ns: str, image: str, value: str, keep: int = 0) -> None:
    write_spec(folder, "app.yaml", SPECS.format(ns=ns, image=image, keep=keep))
    (folder / "token.txt").write_text(value)


def test_secret_only_in_the_service_that_names_it(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    setup_specs(specs_dir, namespace, local_image, CANARY)
    res = sk("apply", specs_dir, "--wait", "--timeout", "90s")
    assert res.code == 0, res.output
    assert exec_in_service(docker_api, f"{namespace}_holder", ["cat", "/run/secrets/token"]) == CANARY
    absent = exec_in_service(docker_api, f"{namespace}_bystander", ["ls", "/run/secrets"], check=False)
    assert "token" not in absent
    assert CANARY not in res.output


def test_rotation_makes_a_new_version_and_removes_the_old(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    setup_specs(specs_dir, namespace, local_image, "first-value")
    assert sk("apply", specs_dir, "--wait", "--timeout", "90s").code == 0
    assert [s["Spec"]["Name"] for s in docker_api.secrets(filters={"name": f"{namespace}_token"})] == [
        f"{namespace}_token-v1"
    ]
    (specs_dir / "token.txt").write_text("second-value")
    res = sk("apply", specs_dir, "--wait", "--timeout", "90s")
    assert res.code == 0, res.output
    names = sorted(s["Spec"]["Name"] for s in docker_api.secrets(filters={"name": f"{namespace}_token"}))
    assert names == [f"{namespace}_token-v2"]  # keepVersions: 0 — the old one is gone once unused
    wait_for(
        lambda: exec_in_service(docker_api, f"{namespace}_holder", ["cat", "/run/secrets/token"]) == "second-value",
        message="the service did not move to the new secret version",
    )
    # same value again: nothing to do
    res = sk("apply", specs_dir)
    assert res.code == 0 and "no changes" in res.stdout


def test_keep_versions_retains_old_versions(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    setup_specs(specs_dir, namespace, local_image, "v1", keep=1)
    assert sk("apply", specs_dir, "--wait").code == 0
    for value in ("v2", "v3"):
        (specs_dir / "token.txt").write_text(value)
        assert sk("apply", specs_dir, "--wait").code == 0
    names = sorted(s["Spec"]["Name"] for s in docker_api.secrets(filters={"name": f"{namespace}_token"}))
    assert names == [f"{namespace}_token-v2", f"{namespace}_token-v3"]


def test_secret_value_never_printed_logged_or_in_status(
    docker_api: docker.APIClient,
    local_image: str,
    namespace: str,
    specs_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    setup_specs(specs_dir, namespace, local_image, CANARY)
    outputs = [
        sk("validate", specs_dir, "-vv"),
        sk("diff", specs_dir, "-vv"),
        sk("apply", specs_dir, "--wait", "-vv"),
        sk("get", "-o", "yaml", "-vv"),
        sk("get", "-o", "json"),
        sk("get", "secrets", "-o", "wide"),
    ]
    (specs_dir / "token.txt").write_text(CANARY + "-rotated")
    outputs += [sk("diff", specs_dir, "-vv"), sk("apply", specs_dir, "--wait", "-vv")]
    # an invalid spec next to the secret: errors must not echo it either
    write_spec(
        specs_dir,
        "bad.yaml",
        f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: inline, namespace: {namespace}}}
        spec:
          stringData: "{CANARY}"
          nope: 1
        """,
    )
    outputs.append(sk("apply", specs_dir, "-vv"))
    for res in outputs:
        assert CANARY not in res.output
    assert CANARY not in caplog.text
    for secret in docker_api.secrets(filters={"name": namespace}):
        assert CANARY not in str(secret["Spec"].get("Labels"))
