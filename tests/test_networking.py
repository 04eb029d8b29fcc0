"""Overlay networks: services reach each other by name, also on an encrypted overlay.

This kernel has no IPVS, so the VIP of a service does not answer (neither does the ingress
routing mesh); traffic is tested through DNS round-robin, which is how the tasks are addressed
behind a VIP too. Cross-node encrypted traffic needs the kernel's ESP support: see README.
"""

from __future__ import annotations

from pathlib import Path

import docker

from cli_helpers import sk, write_spec
from helpers import exec_in_service, wait_for

SPECS = """
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmNetwork
metadata: {{name: private, namespace: {ns}}}
spec:
  encrypted: true
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: server, namespace: {ns}}}
spec:
  image: {image}
  command: ["nc", "-ll", "-p", "7000", "-e", "hostname"]
  hostname: "server-{{{{.Task.Slot}}}}"
  replicas: 2
  endpointMode: dnsrr
  stopGracePeriod: 1s
  networks: [{{name: private}}]
---
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata: {{name: client, namespace: {ns}}}
spec:
  image: {image}
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
  networks: [{{name: private}}]
  dependsOn: [server]
"""


def test_encrypted_overlay_dns_and_traffic(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    write_spec(specs_dir, "app.yaml", SPECS.format(ns=namespace, image=local_image))
    res = sk("apply", specs_dir, "--wait", "--timeout", "120s")
    assert res.code == 0, res.output
    net = docker_api.inspect_network(f"{namespace}_private")
    assert "encrypted" in net["Options"]
    client = f"{namespace}_client"
    # the short name works as on a stack: `server` resolves on the shared network
    lookup = exec_in_service(docker_api, client, ["nslookup", "server"], check=False)
    assert lookup.count("Address") >= 3, lookup  # the resolver + two tasks
    answers: set[str] = set()

    def reach_both() -> bool:
        answers.add(exec_in_service(docker_api, client, ["sh", "-c", "nc -w 2 server 7000 </dev/null"], check=False))
        return {"server-1", "server-2"} <= answers

    wait_for(reach_both, timeout=60, interval=0.2, message=f"traffic did not reach both tasks: {answers}")
