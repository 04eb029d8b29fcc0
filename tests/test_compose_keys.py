"""Compose keys the differential corpus cannot hold, because ``docker stack deploy`` 20.10 refuses
them (``dns_opt``: "Additional property dns_opt is not allowed") or because SwarmService has no
field for them (``credential_spec``, which the 20.10 CLI does set, for Windows containers). Their
translation is checked here: the import itself, then what the engine makes of the result.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, cast

import docker

from cli_helpers import sk
from helpers import exec_in_service, service_containers, wait_for
from swarmkeeper.api import RESOURCE_ADAPTER, SwarmService
from swarmkeeper.sources.migrate.compose import ImportResult, import_compose
from swarmkeeper.swarm.build import References, build_service_spec

COMPOSE = Path("/project/stack/compose.yaml")


def translate(text: str) -> ImportResult:
    return import_compose(
        textwrap.dedent(text), COMPOSE, variables={}, namespace="shop", specs_dir=COMPOSE.parent.parent / "specs"
    )


def service(result: ImportResult, name: str) -> tuple[dict[str, Any], list[str]]:
    assert result.ok, [str(e) for e in result.errors]
    found = next(o for o in result.objects if o.kind == "SwarmService" and o.name == name)
    return cast(dict[str, Any], found.document["spec"]), found.comments


def payload(result: ImportResult, name: str) -> dict[str, Any]:
    found = next(o for o in result.objects if o.kind == "SwarmService" and o.name == name)
    svc = RESOURCE_ADAPTER.validate_python(found.document)
    assert isinstance(svc, SwarmService)
    return build_service_spec(svc, References(networks={"default": "shop_default"}))


def test_dns_opt_becomes_the_dns_options_next_to_nameservers_and_search() -> None:
    result = translate(
        """
        services:
          web:
            image: local/busybox:1
            dns: 10.0.0.2
            dns_search: [corp.example]
            dns_opt: [ndots:2, timeout:3]
          single:
            image: local/busybox:1
            dns_opt: use-vc
        """
    )
    web, notes = service(result, "web")
    assert web["dns"] == {"nameservers": ["10.0.0.2"], "search": ["corp.example"], "options": ["ndots:2", "timeout:3"]}
    assert not [n for n in notes if "dns" in n]
    dns = payload(result, "web")["TaskTemplate"]["ContainerSpec"]["DNSConfig"]
    assert dns == {"Nameservers": ["10.0.0.2"], "Search": ["corp.example"], "Options": ["ndots:2", "timeout:3"]}
    # A string is one option, as for dns and dns_search.
    assert service(result, "single")[0]["dns"] == {"options": ["use-vc"]}
    assert payload(result, "single")["TaskTemplate"]["ContainerSpec"]["DNSConfig"] == {"Options": ["use-vc"]}


def test_isolation_is_translated_and_credential_spec_named_as_not_translated() -> None:
    # SwarmService has no field for Privileges.CredentialSpec: the import says so on the object
    # instead of dropping it silently. isolation is the container's, as the CLI sets it.
    result = translate(
        """
        services:
          web:
            image: local/busybox:1
            isolation: default
            credential_spec: {config: gmsa}
        """
    )
    web, notes = service(result, "web")
    assert web["isolation"] == "default" and "credentialSpec" not in web
    assert not any(n.startswith("isolation") for n in notes), notes
    assert any(n.startswith("credential_spec: not translated") for n in notes), notes
    container = payload(result, "web")["TaskTemplate"]["ContainerSpec"]
    assert container["Isolation"] == "default"
    assert container["Privileges"]["CredentialSpec"] is None


def test_dns_opt_reaches_the_containers_resolv_conf(
    docker_api: docker.APIClient, local_image: str, namespace: str, tmp_path: Path
) -> None:
    compose = tmp_path / "stack" / "compose.yaml"
    compose.parent.mkdir()
    compose.write_text(
        textwrap.dedent(
            f"""
            services:
              web:
                image: docker.io/{local_image}
                command: sleep 600
                dns_opt: [ndots:2, timeout:3]
            """
        )
    )
    specs = tmp_path / "specs"
    imported = sk("import", "compose", compose, "-n", namespace, "-o", specs)
    assert imported.code == 0, imported.output
    applied = sk("apply", specs, "--source", namespace, "--wait")
    assert applied.code == 0, applied.output
    name = f"{namespace}_web"
    container = docker_api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert container["DNSConfig"] == {"Options": ["ndots:2", "timeout:3"]}
    # docker.io/local/busybox:1 is stored as the CLI would send it.
    assert container["Image"] == local_image
    wait_for(lambda: service_containers(docker_api, name), timeout=60, message=f"{name} running")
    assert "options ndots:2 timeout:3" in exec_in_service(docker_api, name, ["cat", "/etc/resolv.conf"])
