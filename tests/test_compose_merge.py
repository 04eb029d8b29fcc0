"""Compose files merged as ``docker stack deploy -c base.yml -c override.yml`` merges them (pure).

Expected results are what docker CLI 20.10's ``cli/compose/loader/merge.go`` (mergo v0.3.8 with
WithOverride and WithAppendSlice) makes of the same files, some of them surprising; the Go function
behind each surprise is named where it is tested.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from swarmkeeper.loading import SpecLoadError
from swarmkeeper.loading.fieldpath import FieldPath, Position
from swarmkeeper.sources.migrate.compose.merging import merge_compose
from swarmkeeper.sources.migrate.compose.reading import read_compose

BASE = Path("base.yml")
OVER = Path("override.yml")
THIRD = Path("third.yml")

Places = dict[FieldPath, tuple[Path, Position]]


def read(text: str, path: Path) -> tuple[Path, Any, dict[FieldPath, Position]]:
    data, positions, errors = read_compose(textwrap.dedent(text), path)
    assert not errors
    return path, data, positions


def merge(*texts: str) -> tuple[Any, Places]:
    paths = (BASE, OVER, THIRD)
    return merge_compose([read(text, paths[i]) for i, text in enumerate(texts)])


def service(*texts: str, name: str = "web") -> Any:
    """The merged service ``name`` of files that each hold only ``services: {name: ...}``."""
    documents = [f"services:\n  {name}:\n" + textwrap.indent(textwrap.dedent(t), "    ") for t in texts]
    data, _ = merge(*documents)
    return data["services"][name]


# -- services --------------------------------------------------------------------------------------
def test_a_single_file_is_returned_as_it_is() -> None:
    text = """\
        version: "3.8"
        services:
          web:
            image: nginx
            ports: ["80", "443"]
            environment: [A=1]
        x-note: {a: 1}
        """
    path, data, positions = read(text, BASE)
    merged, places = merge_compose([(path, data, positions)])
    assert merged == data
    assert places == {p: (BASE, pos) for p, pos in positions.items()}


def test_services_merge_by_name_and_one_only_in_the_override_is_added() -> None:
    data, _ = merge(
        """\
        services:
          web: {image: nginx, hostname: w}
          db: {image: postgres}
        """,
        """\
        services:
          web: {image: nginx:2}
          cache: {image: redis}
        """,
    )
    assert data["services"] == {
        "cache": {"image": "redis"},
        "db": {"image": "postgres"},
        "web": {"image": "nginx:2", "hostname": "w"},
    }
    assert list(data["services"]) == ["cache", "db", "web"]  # mergeServices sorts them by name


def test_a_scalar_is_overridden_but_never_by_an_empty_or_zero_value() -> None:
    # mergo sets a field only from a non-empty value: an override can't turn read_only off,
    # scale to 0 replicas (fixed in docker 23) or shorten a grace period to 0s.
    svc = service(
        """\
        image: nginx
        user: app
        read_only: true
        init: true
        stop_grace_period: 10s
        deploy: {mode: replicated, replicas: 3, restart_policy: {condition: any, max_attempts: 3}}
        """,
        """\
        image: nginx:2
        user: ""
        read_only: false
        init: false
        stop_grace_period: 0s
        deploy: {replicas: 0, restart_policy: {max_attempts: 0, delay: 5s}}
        """,
    )
    assert svc == {
        "image": "nginx:2",
        "user": "app",
        "read_only": True,
        "init": True,
        "stop_grace_period": "10s",
        "deploy": {
            "mode": "replicated",
            "replicas": 3,
            "restart_policy": {"condition": "any", "max_attempts": 3, "delay": "5s"},
        },
    }


def test_a_zero_value_is_taken_where_the_base_sets_nothing() -> None:
    svc = service("image: nginx\n", "deploy: {replicas: 0}\nread_only: false\n")
    assert svc == {"image": "nginx", "deploy": {"replicas": 0}, "read_only": False}


def test_environment_merges_a_mapping_and_a_list() -> None:
    # map[string]*string: a variable the override leaves without a value (B, or E=) keeps the
    # base's value (mergo's deepMerge writes a pointer only over an empty one).
    svc = service(
        """\
        environment: {A: "1", B: "2", C: null, E: "5", F: "6"}
        """,
        """\
        environment: [A=9, B, C=3, E=, G]
        """,
    )
    assert svc["environment"] == {"A": "9", "B": "2", "C": "3", "E": "5", "F": "6", "G": None}


def test_environment_in_two_lists_becomes_a_mapping() -> None:
    assert service("environment: [A=1, B=2]\n", "environment: [B=3]\n")["environment"] == {"A": "1", "B": "3"}


def test_labels_the_override_wins_every_key_even_with_an_empty_value() -> None:
    svc = service(
        """\
        labels: [l1=a, l2=b, l3]
        sysctls: {net.core.somaxconn: "1024"}
        deploy: {labels: {d1: one, d2: two}}
        """,
        """\
        labels: {l2: c, l3: d, l1: ""}
        sysctls: [net.core.somaxconn=2048, net.ipv4.tcp_syncookies=0]
        deploy: {labels: [d2=three]}
        """,
    )
    assert svc["labels"] == {"l1": "", "l2": "c", "l3": "d"}
    assert svc["sysctls"] == {"net.core.somaxconn": "2048", "net.ipv4.tcp_syncookies": "0"}
    assert svc["deploy"]["labels"] == {"d1": "one", "d2": "three"}


# -- lists merged by a key -------------------------------------------------------------------------
def test_ports_merge_by_published_port_alone_short_and_long_syntax() -> None:
    # toServicePortConfigsMap keys by Published only: 53/tcp and 53/udp are one port, and every
    # unpublished port is port 0, so "80" and "443" collapse into the last one. Sorted by published.
    svc = service(
        """\
        ports: ["80", "443", "53:53/tcp", "8080:80", "9000-9002:90-92/udp"]
        """,
        """\
        ports:
          - "53:53/udp"
          - {target: 8000, published: 8080, mode: host}
          - "9001:91"
        """,
    )
    assert svc["ports"] == [
        "443",
        "53:53/udp",
        {"target": 8000, "published": 8080, "mode": "host"},
        "9000:90/udp",
        "9001:91",
        "9002:92/udp",
    ]


def test_ports_are_keyed_even_when_the_override_leaves_them_alone() -> None:
    # mergeSlice runs on every non-empty base list of a service named in the override.
    svc = service('ports: ["81", "8080:80", "80"]\n', "image: nginx\n")
    assert svc["ports"] == ["80", "8080:80"]


def test_ports_of_an_empty_base_list_are_the_overrides_as_written() -> None:
    # mergo calls no transformer on an empty base list: it appends.
    assert service("ports: []\n", 'ports: ["90", "80"]\n')["ports"] == ["90", "80"]


def test_secrets_and_configs_merge_by_source_a_bare_string_being_one() -> None:
    svc = service(
        """\
        secrets: [zeta, {source: alpha, target: a1, mode: 0400}]
        configs: [{source: conf, target: /etc/app.conf}]
        """,
        """\
        secrets: [{source: zeta, target: z2}, beta]
        configs: [conf]
        """,
    )
    assert svc["secrets"] == [
        {"source": "alpha", "target": "a1", "mode": 0o400},
        "beta",
        {"source": "zeta", "target": "z2"},
    ]
    assert svc["configs"] == ["conf"]  # the item is replaced whole: its target is gone


def test_volumes_are_appended_not_merged_by_target() -> None:
    # Merging volumes by target came with docker 22.06 (toServiceVolumeConfigsMap); 20.10 appends,
    # and swarm then refuses the two mounts on /var/lib.
    svc = service('volumes: ["data:/var/lib:ro", "/x:/y"]\n', 'volumes: ["other:/var/lib"]\n')
    assert svc["volumes"] == ["data:/var/lib:ro", "/x:/y", "other:/var/lib"]


# -- lists mergo appends ---------------------------------------------------------------------------
def test_command_and_entrypoint_are_appended_word_by_word() -> None:
    # ShellCommand has no transformer in 20.10 (mergeShellCommand came with 22.06): WithAppendSlice.
    svc = service(
        """\
        command: echo "a b"
        entrypoint: ["/bin/sh", "-c"]
        """,
        """\
        command: [run]
        entrypoint: /entry --flag
        """,
    )
    assert svc["command"] == ["echo", "a b", "run"]
    assert svc["entrypoint"] == ["/bin/sh", "-c", "/entry", "--flag"]


def test_plain_lists_are_appended_duplicates_included() -> None:
    svc = service(
        """\
        dns: 8.8.8.8
        cap_add: [NET_ADMIN]
        extra_hosts: ["h1:1.1.1.1"]
        depends_on: [db]
        deploy: {placement: {constraints: [node.role==worker]}}
        """,
        """\
        dns: [1.1.1.1]
        cap_add: [NET_ADMIN, SYS_TIME]
        extra_hosts: {h3: 3.3.3.3, h2: 2.2.2.2}
        depends_on: [cache]
        deploy: {placement: {constraints: [node.labels.ssd==true]}}
        """,
    )
    assert svc["dns"] == ["8.8.8.8", "1.1.1.1"]
    assert svc["cap_add"] == ["NET_ADMIN", "NET_ADMIN", "SYS_TIME"]
    assert svc["extra_hosts"] == ["h1:1.1.1.1", "h2:2.2.2.2", "h3:3.3.3.3"]  # a mapping: sorted host:ip
    assert svc["depends_on"] == ["db", "cache"]
    assert svc["deploy"]["placement"]["constraints"] == ["node.role==worker", "node.labels.ssd==true"]


def test_healthcheck_merges_field_by_field_and_appends_the_test() -> None:
    # HealthCheckTest is a slice too: a test in the override is added to the base's.
    svc = service(
        """\
        healthcheck: {test: curl -f localhost, interval: 10s, retries: 3}
        """,
        """\
        healthcheck: {test: [CMD, wget, localhost], interval: 0s, retries: 5, timeout: 2s}
        """,
    )
    assert svc["healthcheck"] == {
        "test": ["CMD-SHELL", "curl -f localhost", "CMD", "wget", "localhost"],
        "interval": "10s",
        "retries": 5,
        "timeout": "2s",
    }


# -- special cases of mergeServices ----------------------------------------------------------------
def test_logging_same_driver_merges_options_another_driver_replaces_them() -> None:
    same = service(
        "logging: {driver: json-file, options: {max-size: 1m, max-file: '3'}}\n",
        "logging: {options: {max-size: 2m}}\n",
    )
    assert same["logging"] == {"driver": "json-file", "options": {"max-size": "2m", "max-file": "3"}}
    other = service(
        "logging: {driver: json-file, options: {max-size: 1m}}\n",
        "logging: {driver: syslog}\n",
    )
    assert other["logging"] == {"driver": "syslog"}
    unset = service("logging: {options: {a: '1'}}\n", "logging: {driver: syslog, options: {b: '2'}}\n")
    assert unset["logging"] == {"driver": "syslog", "options": {"a": "1", "b": "2"}}


def test_logging_options_are_lost_when_the_base_has_none() -> None:
    # mergeLoggingConfig merges into the base's Options map; without one, mergo makes a new map
    # that nothing keeps.
    svc = service("logging: {driver: json-file}\n", "logging: {driver: json-file, options: {max-size: 1m}}\n")
    assert svc["logging"] == {"driver": "json-file"}


def test_service_networks_merge_per_network_and_aliases_are_replaced() -> None:
    # mergeServiceNetworkConfig: the override's aliases replace the base's, none if it sets none;
    # an address changes only where the override sets one.
    svc = service(
        """\
        networks:
          front: {aliases: [w1], ipv4_address: 10.0.0.2}
          back:
          edge: {aliases: [e]}
        """,
        """\
        networks:
          front: {ipv6_address: "::1"}
          back: {aliases: [b1]}
          edge:
          extra:
        """,
    )
    assert svc["networks"] == {
        "front": {"ipv4_address": "10.0.0.2", "ipv6_address": "::1"},
        "back": {"aliases": ["b1"]},
        "edge": {"aliases": ["e"]},
        "extra": None,
    }
    assert service("networks: [front]\n", "networks: [back, front]\n")["networks"] == ["front", "back"]
    assert service("networks: [front]\n", "networks: {back: {aliases: [b]}}\n")["networks"] == {
        "front": None,
        "back": {"aliases": ["b"]},
    }


def test_ulimits_each_limit_is_replaced_whole() -> None:
    svc = service("ulimits: {nproc: 10, nofile: {soft: 1, hard: 2}}\n", "ulimits: {nofile: 5}\n")
    assert svc["ulimits"] == {"nproc": 10, "nofile": 5}


def test_a_value_docker_refuses_is_kept_for_the_translation_to_report() -> None:
    assert service("ports: {a: 1}\n", 'ports: ["80"]\n')["ports"] == {"a": 1}
    assert service('ports: ["80"]\n', "ports: 80\n")["ports"] == 80


# -- the file as a whole ---------------------------------------------------------------------------
def test_top_level_definitions_are_replaced_whole() -> None:
    # mergeNetworks & co: mergo.Map WithOverride sets the override's struct for the name, whole.
    data, _ = merge(
        """\
        services: {web: {image: nginx}}
        networks:
          front: {driver: overlay, attachable: true}
          back: {driver: overlay}
        volumes:
          data: {driver: local, labels: {a: "1"}}
        secrets:
          token: {file: ./token.txt}
        configs:
          conf: {file: ./app.conf}
        """,
        """\
        networks:
          front: {internal: true}
          back:
          edge: {}
        volumes:
          data: {labels: {b: "2"}}
        secrets:
          token: {external: true}
        configs:
          other: {file: ./other.conf}
        """,
    )
    assert data["networks"] == {"front": {"internal": True}, "back": None, "edge": {}}
    assert data["volumes"] == {"data": {"labels": {"b": "2"}}}
    assert data["secrets"] == {"token": {"external": True}}
    assert data["configs"] == {"conf": {"file": "./app.conf"}, "other": {"file": "./other.conf"}}


def test_top_level_extension_keys_are_the_first_files() -> None:
    # merge() touches only services and the four sections: Config.Extras stays the base's.
    data, _ = merge("x-a: {k: 1}\nservices: {web: {image: a}}\n", "x-a: {k: 2}\nx-b: 1\nservices: {}\n")
    assert data == {"x-a": {"k": 1}, "services": {"web": {"image": "a"}}}


def test_service_extension_keys_merge_deeply() -> None:
    svc = service("x-meta: {tags: [a], owner: me}\n", "x-meta: {tags: [b], owner: you, extra: null}\n")
    assert svc["x-meta"] == {"tags": ["a", "b"], "owner": "you"}


def test_files_merge_in_order() -> None:
    data, _ = merge(
        "services: {web: {image: a, dns: [1.1.1.1]}}\n",
        "services: {web: {image: b, dns: [2.2.2.2]}}\n",
        "services: {web: {image: c}}\n",
    )
    assert data["services"]["web"] == {"image": "c", "dns": ["1.1.1.1", "2.2.2.2"]}


def test_versions_must_be_the_same_in_every_file() -> None:
    data, _ = merge('version: "3"\nservices: {web: {image: a}}\n', 'version: "3.0"\nservices: {}\n')
    assert data["version"] == "3"  # schema.Version reads "3" as "3.0"
    with pytest.raises(SpecLoadError) as caught:
        merge('version: "3.8"\nservices: {}\n', 'services: {}\nversion: "3.7"\n')
    [error] = caught.value.errors
    assert (error.file, error.line, error.column, error.field) == (OVER, 2, 1, "version")
    with pytest.raises(SpecLoadError):
        merge('version: "3.8"\nservices: {}\n', "services: {}\n")  # no version is 1.0


def test_nothing_to_merge_is_a_mistake_of_the_caller() -> None:
    with pytest.raises(ValueError, match="no compose file"):
        merge_compose([])


def test_the_inputs_are_left_as_they_were() -> None:
    files = [
        read("services:\n  web: {image: a, ports: ['81', '80'], environment: [A=1]}\n", BASE),
        read("services:\n  web: {environment: {A: '2'}, ports: ['90']}\n", OVER),
    ]
    before = copy.deepcopy(files)
    merge_compose(files)
    assert files == before


# -- where each merged field was written -----------------------------------------------------------
def test_positions_name_the_file_and_line_that_set_the_value() -> None:
    data, places = merge(
        """\
        services:
          web:
            image: nginx
            hostname: web
            dns: [1.1.1.1]
            ports: ["8080:80", "443"]
            environment: {A: "1", B: "2"}
            deploy:
              replicas: 3
        """,
        """\
        services:
          web:
            image: nginx:2
            dns: [2.2.2.2]
            ports: ["8080:81"]
            environment: [B=3, C=4]
            deploy:
              replicas: 0
        """,
    )
    web = ("services", "web")
    assert places[(*web, "image")] == (OVER, (3, 5))  # set last by the override
    assert places[(*web, "hostname")] == (BASE, (4, 5))  # only in the base
    assert data["services"]["web"]["dns"] == ["1.1.1.1", "2.2.2.2"]
    assert places[(*web, "dns", 0)] == (BASE, (5, 11))  # appended items keep their own place
    assert places[(*web, "dns", 1)] == (OVER, (4, 11))
    assert data["services"]["web"]["ports"] == ["443", "8080:81"]
    assert places[(*web, "ports", 0)] == (BASE, (6, 24))  # re-sorted: each item where it was written
    assert places[(*web, "ports", 1)] == (OVER, (5, 13))  # the item that won the key
    assert places[(*web, "environment", "A")] == (BASE, (7, 19))
    assert places[(*web, "environment", "B")] == (OVER, (6, 19))  # a list item, now a key
    assert places[(*web, "environment", "C")] == (OVER, (6, 24))
    assert places[(*web, "deploy", "replicas")] == (BASE, (9, 7))  # replicas: 0 did not win


def test_positions_of_values_expanded_from_one_item() -> None:
    data, places = merge(
        """\
        services:
          web:
            command: run --fast
            ports: ["9000-9001:90-91"]
        """,
        """\
        services:
          web:
            command: [--verbose]
            ports: ["9002:92"]
        """,
    )
    web = ("services", "web")
    assert data["services"]["web"]["command"] == ["run", "--fast", "--verbose"]
    assert [places[(*web, "command", i)][0] for i in range(3)] == [BASE, BASE, OVER]
    assert places[(*web, "command", 1)] == (BASE, (3, 5))  # a word of a string: the key's place
    assert data["services"]["web"]["ports"] == ["9000:90", "9001:91", "9002:92"]
    assert places[(*web, "ports", 1)] == (BASE, (4, 13))  # one port of a range: the range's place
