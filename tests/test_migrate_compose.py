"""Compose files → specs (pure): interpolation, the translation docker stack deploy makes, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, cast

import pytest

from cli_helpers import sk
from swarmkeeper.api import RESOURCE_ADAPTER, SwarmService
from swarmkeeper.loading import load_paths
from swarmkeeper.sources.migrate.compose import ImportResult, import_compose
from swarmkeeper.sources.migrate.compose.interpolation import InterpolationError, Interpolator
from swarmkeeper.swarm.build import References, build_service_spec

# -- interpolation ---------------------------------------------------------------------------------

VARS = {"SET": "value", "EMPTY": "", "PORT": "8080"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a${SET}b", "avalueb"),
        ("$SET-suffix", "value-suffix"),  # unbraced names stop at the first non-name character
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),  # :- also replaces an empty value
        ("${EMPTY-fallback}", ""),  # - replaces only an unset one
        ("${UNSET-fallback}", "fallback"),
        ("${SET:-fallback}", "value"),
        ("${SET:+other}", "other"),
        ("${EMPTY:+other}", ""),
        ("${EMPTY+other}", "other"),
        ("${UNSET:-${PORT}}", "8080"),  # a default may itself be interpolated
        ("${SET:-${NOT_USED}}", "value"),
        ("$$SET", "$SET"),  # $$ is a literal dollar
        ("cost: $$5", "cost: $5"),
        ("${PORT}:80", "8080:80"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    assert Interpolator(VARS)(text) == expected


def test_unset_variables_become_empty_and_are_reported() -> None:
    interpolate = Interpolator(VARS)
    assert interpolate("x${UNSET}y$ALSO_UNSET") == "xy"
    assert interpolate("${WITH_DEFAULT:-d}") == "d"
    assert interpolate.unset == {"UNSET", "ALSO_UNSET"}  # a variable with a default is not missing
    # Which values went into the text (they may be worth a review before the specs are committed).
    assert interpolate("$SET ${PORT:-1} ${EMPTY:-x} ${NOPE:-y}") == "value 8080 x y"
    assert interpolate.substituted == {"SET", "PORT"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?set UNSET first}", "required variable UNSET is missing a value: set UNSET first"),
        ("${EMPTY:?}", "required variable EMPTY is missing a value"),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        ("$ 5", "'$' must be followed by a variable name"),
        ("${SET", "expected '}'"),
        ("${UNSET:-x", "without a closing '}'"),
        ("${}", "must be followed by a variable name"),
        ("${1X}", "must be followed by a variable name"),
        ("${SET:x}", "expected '}'"),
    ],
)
def test_interpolation_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$").replace("(", r"\(")):
        Interpolator(VARS)(text)


def test_required_variable_that_is_set_is_fine_and_errors_never_show_values() -> None:
    assert Interpolator(VARS)("${SET:?needed}") == "value"
    assert Interpolator({"EMPTY": ""})("${EMPTY?}") == ""  # ? accepts an empty value
    with pytest.raises(InterpolationError) as info:
        Interpolator({"TOKEN": "hunter2"})("${TOKEN:-x} $")
    assert "hunter2" not in str(info.value)


# -- translation -----------------------------------------------------------------------------------


def translate(
    text: str, namespace: str | None = "shop", variables: dict[str, str] | None = None, tmp: Path | None = None
) -> ImportResult:
    root = tmp or Path("/project")
    file = root / "stack" / "compose.yaml"
    return import_compose(
        textwrap.dedent(text), file, variables=variables or {}, namespace=namespace, specs_dir=root / "specs"
    )


def objects(result: ImportResult) -> dict[str, dict[str, Any]]:
    assert result.ok, [str(e) for e in result.errors]
    return {f"{o.kind}/{o.name}": o.document for o in result.objects}


def spec(result: ImportResult, key: str) -> dict[str, Any]:
    return cast(dict[str, Any], objects(result)[key]["spec"])


def comments(result: ImportResult, key: str) -> list[str]:
    return next(o.comments for o in result.objects if f"{o.kind}/{o.name}" == key)


def test_a_service_like_docker_stack_deploy_makes_it() -> None:
    result = translate(
        """
        version: "3.8"
        services:
          web:
            image: nginx:${TAG:-1.27}
            entrypoint: /docker-entrypoint.sh
            command: nginx -g "daemon off;"
            environment:
              B: "2"
              A: 1
              DEBUG: yes
            labels: [tier=front]
            deploy:
              replicas: ${REPLICAS}
              labels: {team: shop}
              update_config: {order: start-first, parallelism: 2, delay: 10s}
              resources:
                limits: {cpus: '0.5', memory: 64M, pids: 100}
                reservations: {memory: 1g}
              placement:
                constraints: [node.role == manager]
                preferences: [{spread: node.labels.zone}]
            stop_grace_period: 1m30s
            healthcheck:
              test: curl -f http://localhost/
              interval: 5s
              retries: 3
            cap_add: [net_admin]
            cap_drop: [ALL]
        """,
        variables={"REPLICAS": "3"},
    )
    assert spec(result, "SwarmService/web") == {
        "image": "nginx:1.27",
        "command": ["/docker-entrypoint.sh"],  # compose's entrypoint is the spec's command
        "args": ["nginx", "-g", "daemon off;"],  # compose's command is the spec's args
        "env": {"A": "1", "B": "2", "DEBUG": "true"},  # sorted, as docker stack deploy sends them
        "containerLabels": {"tier": "front"},
        "labels": {"team": "shop"},
        "replicas": 3,
        "placement": {"constraints": ["node.role == manager"], "preferences": [{"spread": "node.labels.zone"}]},
        "resources": {"limits": {"cpus": 0.5, "memory": "64Mi", "pids": 100}, "reservations": {"memory": "1Gi"}},
        "updateConfig": {"parallelism": 2, "delay": "10s", "order": "start-first"},
        "networks": [{"name": "default"}],
        "healthcheck": {"test": ["CMD-SHELL", "curl -f http://localhost/"], "interval": "5s", "retries": 3},
        "stopGracePeriod": "1m30s",
        "capAdd": ["CAP_NET_ADMIN"],
        "capDrop": ["ALL"],
    }
    # A service without networks gets the stack's default network, which is created for it.
    assert spec(result, "SwarmNetwork/default") == {}
    assert len(result.notes) == 1 and "values of REPLICAS are written into the specs" in result.notes[0]


def test_every_object_loads_as_a_spec_and_builds() -> None:
    result = translate(
        """
        services:
          api:
            image: local/busybox:1
            networks: [back]
            secrets: [token]
            configs: [{source: conf, target: /etc/api.conf, mode: 0440}]
        networks:
          back: {driver: overlay, attachable: true}
        secrets:
          token: {file: ../specs/token.txt}
        configs:
          conf: {file: ./api.conf}
        """
    )
    for obj in result.objects:
        RESOURCE_ADAPTER.validate_python(obj.document)
    svc = RESOURCE_ADAPTER.validate_python(objects(result)["SwarmService/api"])
    assert isinstance(svc, SwarmService)
    payload = build_service_spec(
        svc, References(networks={"back": "shop_back"}, secrets={"token": "t"}, configs={"conf": "c"})
    )
    assert payload["TaskTemplate"]["ContainerSpec"]["Configs"][0]["File"]["Mode"] == 0o440


def test_lists_are_sorted_as_the_docker_cli_sorts_them() -> None:
    result = translate(
        """
        services:
          web:
            image: x
            networks: {zeta: {aliases: [z]}, alpha: {}, proxy: {}}
            secrets: [b, a]
            ports: ["9000:90", "80", "8080:8080/udp"]
        networks:
          zeta: {}
          alpha: {}
          proxy: {external: true, name: traefik}
        secrets:
          a: {file: a.txt}
          b: {file: b.txt}
        """
    )
    web = spec(result, "SwarmService/web")
    # Networks by swarm name: shop_alpha, shop_zeta, traefik.
    assert web["networks"] == [
        {"name": "alpha"},
        {"name": "zeta", "aliases": ["z"]},
        {"name": "traefik", "external": True},
    ]
    assert [s["source"] for s in web["secrets"]] == ["a", "b"]
    # Ports by published port, unpublished first.
    assert web["ports"] == [
        {"target": 80},
        {"target": 8080, "published": 8080, "protocol": "udp"},
        {"target": 90, "published": 9000},
    ]
    # An external network is referenced by its name, and no spec is made for it.
    assert "SwarmNetwork/proxy" not in objects(result)


def test_short_and_long_port_syntax() -> None:
    result = translate(
        """
        services:
          web:
            image: x
            ports:
              - "8000-8001:80-81"
              - "127.0.0.1:9090:90"
              - 53
              - {target: 443, published: 8443, protocol: tcp, mode: host}
        """
    )
    assert spec(result, "SwarmService/web")["ports"] == [
        {"target": 53},
        {"target": 80, "published": 8000},
        {"target": 81, "published": 8001},
        {"target": 443, "published": 8443, "mode": "host"},
        {"target": 90, "published": 9090},
    ]
    assert any("127.0.0.1" in c for c in comments(result, "SwarmService/web"))


def test_volumes_named_bind_tmpfs_and_anonymous(tmp_path: Path) -> None:
    result = translate(
        """
        services:
          db:
            image: postgres:16
            volumes:
              - data:/var/lib/postgresql/data
              - ./init:/docker-entrypoint-initdb.d:ro
              - /var/run/docker.sock:/var/run/docker.sock
              - /scratch
              - {type: tmpfs, target: /tmp, tmpfs: {size: 64m}}
              - {type: volume, source: shared, target: /shared, volume: {nocopy: true}}
        volumes:
          data: {driver: local, labels: {backup: daily}}
          shared: {external: true}
        """,
        tmp=tmp_path,
    )
    assert spec(result, "SwarmService/db")["mounts"] == [
        {
            "type": "volume",
            "source": "shop_data",  # named volumes are the stack's, labelled like docker stack deploy does
            "target": "/var/lib/postgresql/data",
            "volume": {"labels": {"backup": "daily", "com.docker.stack.namespace": "shop"}, "driver": "local"},
        },
        # Relative bind sources are made absolute against the compose file's folder.
        {
            "type": "bind",
            "source": str(tmp_path / "stack" / "init"),
            "target": "/docker-entrypoint-initdb.d",
            "readOnly": True,
        },
        {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"},
        {"type": "volume", "target": "/scratch"},
        {"type": "tmpfs", "target": "/tmp", "tmpfsSize": "64Mi"},
        {"type": "volume", "source": "shared", "target": "/shared", "volume": {"noCopy": True}},
    ]


def test_secrets_and_configs_refer_to_the_same_files_and_never_hold_values(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "db-password.txt").write_text("CANARY-do-not-copy")
    result = translate(
        """
        services:
          db:
            image: postgres:16
            secrets:
              - source: db_password
                target: password
                uid: "999"
                mode: 0400
            configs: [initdb]
        secrets:
          db_password: {file: ../specs/db-password.txt, labels: {owner: dba}}
          api_key: {external: true}
          from_env: {environment: API_TOKEN}
        configs:
          initdb: {file: ./initdb.sql}
        """,
        tmp=tmp_path,
    )
    # db_password is not a DNS label: the spec is db-password, the swarm object keeps its name.
    assert spec(result, "SwarmSecret/db-password") == {
        "swarmName": "shop_db_password",
        "file": "db-password.txt",
        "labels": {"owner": "dba"},
    }
    assert spec(result, "SwarmConfig/initdb") == {"file": "../stack/initdb.sql"}
    # A file outside the specs' folder: their common folder becomes the root of the spec tree.
    assert result.tree_root == tmp_path
    assert any(str(tmp_path) in n and ".swarmkeeper-root" in n for n in result.notes)
    assert spec(result, "SwarmSecret/from-env") == {"swarmName": "shop_from_env", "env": "API_TOKEN"}
    # An external secret is used as it is, like docker stack deploy does: no spec of its own.
    assert "SwarmSecret/api-key" not in {f"{o.kind}/{o.name}" for o in result.objects}
    # db_password is not a DNS label: renamed, with the file name inside the container kept.
    assert spec(result, "SwarmService/db")["secrets"] == [
        {"source": "db-password", "target": "password", "uid": "999", "mode": "0400"}
    ]
    assert any(
        "swarmName keeps the swarm name shop_db_password" in c for c in comments(result, "SwarmSecret/db-password")
    )
    assert spec(result, "SwarmService/db")["configs"] == [{"source": "initdb"}]
    assert "CANARY" not in repr([o.document for o in result.objects])


def test_mode_is_octal_as_yaml_1_1_reads_it() -> None:
    # docker's compose loader is YAML 1.1: 0440 is octal, 288 is decimal; both mean r--r-----.
    result = translate(
        """
        services:
          a: {image: x, secrets: [{source: s, mode: 0440}]}
          b: {image: x, secrets: [{source: s, mode: 288}]}
        secrets:
          s: {file: s.txt}
        """
    )
    assert spec(result, "SwarmService/a")["secrets"][0]["mode"] == "0440"
    assert spec(result, "SwarmService/b")["secrets"][0]["mode"] == "0440"


def test_environment_from_the_deploying_shell_and_env_files() -> None:
    result = translate(
        """
        services:
          web:
            image: x
            env_file: [common.env, ../specs/web.env]
            environment: [FROM_SHELL, EMPTY_BUT_SET=, MISSING, "URL=http://$HOST:${PORT:-80}/"]
        """,
        variables={"FROM_SHELL": "shell", "EMPTY_BUT_SET": "filled", "HOST": "db"},
    )
    web = spec(result, "SwarmService/web")
    assert web["envFile"] == ["../stack/common.env", "web.env"]
    assert web["env"] == {"EMPTY_BUT_SET": "filled", "FROM_SHELL": "shell", "URL": "http://db:80/"}
    assert any("MISSING" in c for c in comments(result, "SwarmService/web"))


def test_what_has_no_equivalent_becomes_a_comment() -> None:
    result = translate(
        """
        services:
          web:
            image: app:1
            build: .
            container_name: web
            links: [db]
            network_mode: host
            privileged: true
            devices: ["/dev/fuse"]
            extra_hosts: ["somehost:162.242.195.82"]
            depends_on:
              db: {condition: service_healthy}
            restart: on-failure:3
          builder:
            build: ./builder
          db:
            image: postgres:16
            restart: unless-stopped
            deploy: {mode: global, endpoint_mode: dnsrr}
        """
    )
    web = spec(result, "SwarmService/web")
    assert web["dependsOn"] == ["db"]
    assert web["restartPolicy"] == {"condition": "on-failure", "maxAttempts": 3}
    notes = "\n".join(comments(result, "SwarmService/web"))
    for word in ("build:", "container_name:", "links:", "network_mode:", "privileged:", "devices:", "service_healthy"):
        assert word in notes
    assert web["extraHosts"] == ["somehost:162.242.195.82"]  # swarm has it: translated
    # A service that is only built is left out, with a note saying what to do.
    assert "SwarmService/builder" not in {f"{o.kind}/{o.name}" for o in result.objects}
    assert any("services.builder: build:" in n for n in result.notes)
    db = spec(result, "SwarmService/db")
    assert db["mode"] == "global" and db["endpointMode"] == "dnsrr" and db["restartPolicy"] == {"condition": "any"}


def test_jobs_and_names_that_are_not_dns_labels() -> None:
    result = translate(
        """
        services:
          Data_Migration:
            image: x
            deploy: {mode: replicated-job, replicas: 4}
        """
    )
    job = spec(result, "SwarmService/data-migration")
    assert job["mode"] == "replicated-job" and job["replicas"] == 4 and job["maxConcurrent"] == 4
    # The swarm name stays what docker stack deploy made, and so does the alias the service answers to.
    assert job["swarmName"] == "shop_Data_Migration"
    service = RESOURCE_ADAPTER.validate_python(objects(result)["SwarmService/data-migration"])
    assert isinstance(service, SwarmService)
    refs = References(networks={"default": "shop_default"})
    payload = build_service_spec(service, refs)
    assert payload["Name"] == "shop_Data_Migration"
    assert payload["TaskTemplate"]["Networks"] == [{"Target": "shop_default", "Aliases": ["Data_Migration"]}]


def test_without_namespace_objects_have_plain_names() -> None:
    result = translate("services: {web: {image: x, volumes: ['data:/d']}}\nvolumes: {data: {}}\n", namespace=None)
    doc = objects(result)["SwarmService/web"]
    assert "namespace" not in doc["metadata"]
    assert doc["spec"]["mounts"] == [{"type": "volume", "source": "data", "target": "/d"}]


def test_unused_networks_and_unset_variables_are_noted() -> None:
    result = translate("services: {web: {image: 'x:${TAG}'}}\nnetworks: {spare: {}}\n")
    assert "SwarmNetwork/spare" not in objects(result)
    assert any("spare" in n and "no service" in n for n in result.notes)
    assert any("TAG" in n and "not set" in n for n in result.notes)
    with_tag = translate("services: {web: {image: 'x:${TAG}'}}\n", variables={"TAG": "2"})
    assert any("values of TAG are written into the specs" in n for n in with_tag.notes)


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: lots\n",
            5,
            "services.web.deploy.replicas",
            "whole number",
        ),
        ("services:\n  web:\n    image: x\n    networks: [nope]\n", 4, "services.web.networks.nope", "no network"),
        ("services:\n  web:\n    image: x\n    secrets: [nope]\n", 4, "services.web.secrets[0].source", "no secret"),
        ("services:\n  web:\n    command: x\n", 2, "services.web", "image is required"),
        ("services:\n  web:\n    image: ${TAG:?set TAG}\n", 3, "services.web.image", "required variable TAG"),
        ("services:\n  web:\n    image: x\n    ports: ['80-81:90']\n", 4, "services.web.ports[0]", "same length"),
        (
            "services:\n  web:\n    image: x\n    stop_grace_period: soon\n",
            4,
            "services.web.stop_grace_period",
            "duration",
        ),
        ("services: [web]\n", 1, "services", "needs services"),
    ],
)
def test_errors_name_file_line_and_field(text: str, line: int, field: str, message: str) -> None:
    result = translate(text)
    assert not result.ok
    error = result.errors[0]
    assert error.file == Path("/project/stack/compose.yaml")
    assert (error.line, error.field) == (line, field), str(error)
    assert message in error.message


def test_every_error_is_reported_at_once() -> None:
    result = translate(
        "services:\n  a:\n    image: x\n    deploy: {replicas: many}\n  b:\n    image: x\n    init: maybe\n"
    )
    assert [e.field for e in result.errors] == ["services.a.deploy.replicas", "services.b.init"]


def test_yaml_errors_do_not_quote_the_file() -> None:
    result = translate('services:\n  web:\n    image: x\n    environment: {PASSWORD: "hunter2\n')
    assert not result.ok and result.errors[0].line is not None
    assert "hunter2" not in str(result.errors[0])


# -- the command -----------------------------------------------------------------------------------


COMPOSE = """\
services:
  web:
    image: local/busybox:${TAG:-1}
    command: ["sleep", "3600"]
    secrets: [token]
    build: .
secrets:
  token:
    file: ./token.txt
"""


def test_import_command_writes_one_object_per_file_with_comments(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "token.txt").write_text("CANARY-value")
    (tmp_path / "vars.env").write_text("TAG=2\n")
    out = tmp_path / "specs"
    res = sk(
        "import", "compose", tmp_path / "compose.yaml", "--env-file", tmp_path / "vars.env", "-n", "shop", "-o", out
    )
    assert res.code == 0, res.output
    names = ["_files", "network-default.yaml", "secret-token.yaml", "service-web.yaml"]
    assert sorted(p.name for p in out.iterdir()) == names
    web = (out / "service-web.yaml").read_text()
    assert "# build: not translated" in web and "image: local/busybox:2" in web
    assert "file: _files/token.txt" in (out / "secret-token.yaml").read_text()
    assert "CANARY" not in res.output + web
    # The secret file was outside the folder: copied into it (owner-only), and the specs load.
    assert (out / "_files" / "token.txt").stat().st_mode & 0o077 == 0
    assert load_paths([out]).ok
    # A second import does not overwrite without --force.
    again = sk("import", "compose", tmp_path / "compose.yaml", "-n", "shop", "-o", out)
    assert again.code == 2 and "--force" in again.stderr
    assert sk("import", "compose", tmp_path / "compose.yaml", "-n", "shop", "-o", out, "--force").code == 0


def test_import_command_prints_to_stdout_and_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    res = sk("import", "compose", tmp_path / "compose.yaml")
    assert res.code == 0, res.output
    assert res.stdout.count("apiVersion: swarmkeeper.io/v1alpha1") == 3 and "\n---\n" in res.stdout
    (tmp_path / "bad.yaml").write_text("services:\n  web:\n    image: x\n    deploy: {replicas: lots}\n")
    bad = sk("import", "compose", tmp_path / "bad.yaml", "-o", tmp_path / "out")
    assert bad.code == 2
    assert "bad.yaml:4" in bad.stderr and "services.web.deploy.replicas" in bad.stderr
    assert not (tmp_path / "out").exists()
    assert sk("import", "compose", tmp_path / "missing.yaml").code == 2
    assert sk("import", "compose", tmp_path / "compose.yaml", "-n", "Bad_NS").code == 2


def test_several_files_are_merged_and_dotenv_is_read_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "base.yml").write_text(
        'version: "3.8"\nservices:\n  web:\n    image: app:${TAG}\n    environment: {A: "1", B: "1"}\n'
        "    deploy: {replicas: 1}\n"
    )
    (tmp_path / "prod.yml").write_text(
        'version: "3.8"\nservices:\n  web:\n    environment: {B: "2"}\n    deploy: {replicas: 3}\n'
    )
    (tmp_path / ".env").write_text("TAG=1.4\n")
    specs = tmp_path / "specs"
    res = sk("import", "compose", tmp_path / "base.yml", tmp_path / "prod.yml", "-n", "shop", "-o", specs)
    assert res.code == 0, res.output
    assert f"variables read from {tmp_path / '.env'}" in res.stderr
    web = next(m.resource for m in load_paths([specs]).manifests if isinstance(m.resource, SwarmService))
    assert isinstance(web, SwarmService)
    # As docker stack deploy -c base.yml -c prod.yml: the override wins key by key.
    assert (web.spec.image, web.spec.replicas, dict(web.spec.env)) == ("app:1.4", 3, {"A": "1", "B": "2"})
    # --env-file replaces the .env, as in docker compose.
    res = sk("import", "compose", tmp_path / "base.yml", "--env-file", "/dev/null", "--force", "-o", specs)
    assert res.code == 0, res.output
    assert "variables read from" not in res.stderr and "TAG" in res.stderr  # unset: said in a note


def test_an_override_with_an_error_names_its_own_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "base.yml").write_text('version: "3.8"\nservices:\n  web:\n    image: app:1\n')
    (tmp_path / "prod.yml").write_text('version: "3.8"\nservices:\n  web:\n    deploy:\n      replicas: lots\n')
    res = sk("import", "compose", tmp_path / "base.yml", tmp_path / "prod.yml", "-o", tmp_path / "specs")
    assert res.code == 2
    assert f"{tmp_path / 'prod.yml'}:5:" in res.stderr and "replicas" in res.stderr
    assert not (tmp_path / "specs").exists()
