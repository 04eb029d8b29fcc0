"""What swarmkeeper must never do: change anything on bad input, touch foreign objects, mass-prune."""

from __future__ import annotations

from pathlib import Path

import docker

from cli_helpers import sk, write_spec
from helpers import wait_for

SVC = """
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata:
  name: {name}
  namespace: {ns}
spec:
  image: {image}
  command: ["sleep", "3600"]
  stopGracePeriod: 1s
"""


def test_invalid_spec_changes_nothing(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    write_spec(specs_dir, "good.yaml", SVC.format(name="good", ns=namespace, image=local_image))
    write_spec(specs_dir, "bad.yaml", SVC.format(name="bad", ns=namespace, image=local_image) + "  replicas: many\n")
    res = sk("apply", specs_dir)
    assert res.code == 2
    assert "bad.yaml:" in res.stderr and "spec.replicas" in res.stderr
    assert "nothing was changed" in res.stderr
    assert not docker_api.services(filters={"name": f"{namespace}_"})


def test_foreign_objects_are_left_alone(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    foreign = f"{namespace}_mine"
    docker_api.create_service({"ContainerSpec": {"Image": local_image, "Command": ["sleep", "3600"]}}, name=foreign)
    before = docker_api.inspect_service(foreign)["Version"]["Index"]
    # a spec with the same swarm name is refused, not taken over
    write_spec(specs_dir, "mine.yaml", SVC.format(name="mine", ns=namespace, image=local_image) + "  replicas: 2\n")
    res = sk("apply", specs_dir, "--prune", "--force", "--source", namespace)
    assert res.code == 1
    assert "not managed by swarmkeeper" in res.output
    assert docker_api.inspect_service(foreign)["Version"]["Index"] == before
    assert sk("delete", "service", "mine", "-n", namespace).code == 0
    assert docker_api.inspect_service(foreign)["Version"]["Index"] == before


def test_prune_needs_flag_and_guard_refuses_mass_delete(
    docker_api: docker.APIClient, local_image: str, namespace: str, specs_dir: Path
) -> None:
    for name in ("a", "b", "c"):
        write_spec(specs_dir, f"{name}.yaml", SVC.format(name=name, ns=namespace, image=local_image))
    src = ("--source", namespace)
    assert sk("apply", specs_dir, *src).code == 0
    (specs_dir / "c.yaml").unlink()
    res = sk("apply", specs_dir, *src)
    assert res.code == 0 and "--prune" in res.stdout  # reported, kept
    assert docker_api.services(filters={"name": f"{namespace}_c"})
    assert sk("apply", specs_dir, "--prune", *src).code == 0
    wait_for(lambda: not docker_api.services(filters={"name": f"{namespace}_c"}), message="c not pruned")
    # now an emptied folder would remove both remaining objects: refused without --force
    (specs_dir / "a.yaml").unlink()
    (specs_dir / "b.yaml").unlink()
    write_spec(specs_dir, "other.yaml", SVC.format(name="other", ns=namespace, image=local_image))
    res = sk("apply", specs_dir, "--prune", *src)
    assert res.code == 1 and "refusing to prune" in res.output
    assert len(docker_api.services(filters={"name": f"{namespace}_"})) == 2  # nothing changed at all
    assert sk("apply", specs_dir, "--prune", "--force", *src).code == 0
    wait_for(lambda: len(docker_api.services(filters={"name": f"{namespace}_"})) == 1, message="force prune")
