"""Image references as the docker CLI sends them: a spec's ``image:`` must build the string
``docker service create`` and ``docker stack deploy`` would send, or adopting a stack rolls its
services and a plan shows changes where there are none.

The table is checked twice: against ``normalize_image`` (fast, no engine), and against what the
reference client, Debian's docker 20.10, sends for each reference (the engine stores it as sent).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest

from helpers import DOCKER_CLI
from swarmkeeper.swarm.images import normalize_image, repository_of

HEX = "0123456789abcdef" * 4  # a well-formed sha256 digest
TAG_MAX = "t" * 128

# (as written, as the CLI sends it); None: the CLI cannot parse it and sends it as written, which
# the engine refuses ("is not a valid repository/tag").
TABLE: list[tuple[str, str | None]] = [
    ("redis", "redis:latest"),
    ("redis:7", "redis:7"),
    ("docker.io/library/redis", "redis:latest"),
    ("docker.io/redis", "redis:latest"),
    ("library/redis:7", "redis:7"),
    ("index.docker.io/x/y", "x/y:latest"),
    ("docker.io/x/y:1", "x/y:1"),
    ("docker.io/local/busybox:1", "local/busybox:1"),
    ("docker.io/library/a/b", "library/a/b:latest"),  # library/ is left out only before one name
    (f"redis@sha256:{HEX}", f"redis@sha256:{HEX}"),  # a digest gets no tag
    (f"docker.io/library/redis@sha256:{HEX}", f"redis@sha256:{HEX}"),
    (f"redis:7@sha256:{HEX}", f"redis:7@sha256:{HEX}"),
    (f"docker.io/library/redis:7@sha256:{HEX}", f"redis:7@sha256:{HEX}"),
    (f"example.com:5000/x/y:v1.2@sha256:{HEX}", f"example.com:5000/x/y:v1.2@sha256:{HEX}"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
    ("localhost/x", "localhost/x:latest"),
    ("localhost", "localhost:latest"),
    ("127.0.0.1:5000/sk/app", "127.0.0.1:5000/sk/app:latest"),
    ("Host.Example.com/x", "Host.Example.com/x:latest"),  # a host may have capitals, a path not
    ("redis:Latest", "redis:Latest"),
    (f"redis:{TAG_MAX}", f"redis:{TAG_MAX}"),
    ("a--b/c__d.e:1", "a--b/c__d.e:1"),
    ("a__b", "a__b:latest"),
    (f"sha256:{HEX}", f"sha256:{HEX}"),  # the name sha256 with a 64-character tag
    ("Redis", None),
    ("Foo/bar", None),
    ("docker.io/library/Redis", None),
    ("a-/b", None),
    ("redis:7:8", None),
    (f"redis:{TAG_MAX}x", None),
    ("redis@sha256:abc", None),  # a digest of the wrong length
    (f"redis@sha256:{HEX.upper()}", None),
    (f"redis@sha512:{HEX}", None),  # sha512 needs 128 hex digits
    (HEX, None),  # an image ID is not a name
]


@pytest.mark.parametrize(("written", "sent"), TABLE, ids=[w[:40] for w, _ in TABLE])
def test_an_image_reference_is_normalised_as_the_docker_cli_does(written: str, sent: str | None) -> None:
    assert normalize_image(written) == (written if sent is None else sent)


@pytest.mark.parametrize(("written", "sent"), [(w, s) for w, s in TABLE if s is not None])
def test_normalising_twice_changes_nothing(written: str, sent: str) -> None:
    # The live side of a comparison is normalised too: what the engine stores must read as itself.
    assert normalize_image(sent) == sent


@pytest.mark.parametrize(
    ("written", "repository"),
    [
        ("docker.io/library/redis:7", "redis"),
        ("index.docker.io/x/y", "x/y"),
        (f"docker.io/library/redis:7@sha256:{HEX}", "redis"),
        ("localhost:5000/x", "localhost:5000/x"),
    ],
)
def test_the_repository_of_a_long_form_reference_is_the_short_one(written: str, repository: str) -> None:
    # Tags are listed for repository_of(the normalised reference): redis means docker.io/library/redis.
    assert repository_of(normalize_image(written)) == repository


CREATE = (DOCKER_CLI, "service", "create", "--detach", "--no-resolve-image", "--replicas", "0")


def test_the_table_is_what_the_docker_cli_sends(docker_api: docker.APIClient, namespace: str) -> None:
    assert Path(DOCKER_CLI).exists(), f"{DOCKER_CLI} is missing: the reference client is needed"
    mismatches = []
    for i, (written, sent) in enumerate(TABLE):
        name = f"{namespace}_ref{i}"
        result = subprocess.run(
            [*CREATE, "--name", name, "--label", f"com.docker.stack.namespace={namespace}", written],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            stored = None
            assert "is not a valid repository/tag" in result.stderr, result.stderr
        else:
            stored = docker_api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        if stored != sent:
            mismatches.append(f"{written}: the CLI sent {stored}, the table says {sent}")
    assert not mismatches, "\n".join(mismatches)
