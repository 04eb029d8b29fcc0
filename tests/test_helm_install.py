"""The Helm chart installed for real: ``helm install`` into the API server, then the operator run
exactly as the release's Deployment says (its command, arguments and environment) with a token of
the release's ServiceAccount and nothing else, as a local process: this API server has no kubelet,
so the Deployment's pod never runs and ``helm install --wait`` would never return.

What that proves: the chart's RBAC is enough for the arguments the chart itself gives, an upgrade
changes them and the operator still converges, cluster-wide RBAC allows what the operator needs and
no more, and the documented uninstall order leaves no custom resource stuck on the finalizer.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from ruamel.yaml import YAML

from controller_helpers import free_port
from helpers import cleanup_namespace, wait_for
from kube_fixtures import ROOT, SWARMKEEPER, Kube, OperatorProcess, release_custom_resources

pytestmark = pytest.mark.timeout(300)

CHART = ROOT / "charts" / "swarmkeeper"
FINALIZER = "swarmkeeper.io/finalizer"
# A pod would reach its swarm manager over TCP and TLS; this process reaches the local engine.
DOCKER_HOST = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
LOCAL_ENGINE = ("--set", f"docker.host={DOCKER_HOST}", "--set", "docker.tls.enabled=false")


@dataclass(frozen=True)
class Release:
    kube: Kube
    name: str
    namespace: str

    @property
    def fullname(self) -> str:
        return f"{self.name}-swarmkeeper"

    def install(self, *values: str) -> None:
        # metrics.port: the pod has a network namespace of its own, this process shares the host's.
        port = ("--set", f"metrics.port={free_port()}")
        self.kube.helm("install", self.name, str(CHART), "-n", self.namespace, *LOCAL_ENGINE, *port, *values)

    def upgrade(self, *values: str) -> None:
        self.kube.helm("upgrade", self.name, str(CHART), "-n", self.namespace, "--reuse-values", *values)

    def uninstall(self) -> None:
        self.kube.helm("uninstall", self.name, "-n", self.namespace)

    def deployment(self) -> dict[str, Any]:
        deployment = self.kube.get(f"deployment/{self.fullname}", self.namespace)
        assert deployment is not None, f"the release made no Deployment {self.fullname}"
        return dict(deployment)

    def container(self) -> dict[str, Any]:
        (container,) = self.deployment()["spec"]["template"]["spec"]["containers"]
        return dict(container)

    def can_i(self, check: str, *where: str) -> bool:
        account = f"system:serviceaccount:{self.namespace}:{self.fullname}"
        result = self.kube.kubectl("auth", "can-i", *check.split(), *where, f"--as={account}", check=False)
        answer = result.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl auth can-i {check}: {result.stdout}{result.stderr}"
        return answer == "yes"


@pytest.fixture
def release(kube: Kube, kube_namespace: str) -> Iterator[Release]:
    """A release named like its namespace (names stay unique: ClusterRoles are cluster-wide)."""
    rel = Release(kube, kube_namespace, kube_namespace)
    try:
        yield rel
    finally:
        kube.helm("uninstall", rel.name, "-n", rel.namespace, "--ignore-not-found", check=False)


@pytest.fixture
def apps_namespace(kube: Kube, kube_namespace: str, docker_api: docker.APIClient) -> Iterator[str]:
    """A second watched namespace, apart from the release's (as with ``-n swarm-system``)."""
    ns = f"{kube_namespace}-apps"
    kube.kubectl("create", "namespace", ns)
    try:
        yield ns
    finally:
        release_custom_resources(kube, ns)
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cleanup_namespace(docker_api, ns)


def account_kubeconfig(kube: Kube, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig with the API server's address and CA, and a fresh token of ``account`` only."""
    token = kube.kubectl("create", "token", account, "-n", namespace).stdout.strip()
    admin = json.loads(kube.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = admin["clusters"][0]["cluster"]
    ca = (
        cluster.get("certificate-authority-data")
        or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube", "cluster": {"server": cluster["server"], "certificate-authority-data": ca}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "kube", "user": account}}],
        "current-context": "operator",
    }
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        json.dump(config, out)
    return path


def _env_value(var: dict[str, Any], namespace: str, pod: str) -> str:
    """A container env entry's value as the kubelet would give it (the downward API fields used)."""
    if "value" in var:
        return str(var["value"])
    field = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    fields = {"metadata.namespace": namespace, "metadata.name": pod}
    assert field in fields, f"env {var['name']}: no local equivalent of {var.get('valueFrom')}"
    return fields[field]


def start_deployed(release: Release, log: Path) -> OperatorProcess:
    """The release's Deployment's container as a local process: its command, args and env, and a
    kubeconfig holding only a token of the Deployment's ServiceAccount."""
    deployment = release.deployment()
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    command, args = container["command"], container.get("args") or []
    assert command[0] == "swarmkeeper", command
    metrics = [a.split("=", 1)[1] for a in args if a.startswith("--metrics-addr=")]
    assert len(metrics) == 1, args
    pod = f"{release.fullname}-local"
    kubeconfig = account_kubeconfig(
        release.kube, release.namespace, pod_spec["serviceAccountName"], log.with_suffix(".kubeconfig")
    )
    # Nothing of this environment but PATH: what the operator needs must come from the chart.
    env = {"PATH": os.environ["PATH"], "KUBECONFIG": str(kubeconfig)}
    env |= {var["name"]: _env_value(var, release.namespace, pod) for var in container.get("env") or []}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(SWARMKEEPER), *command[1:], *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return OperatorProcess(proc, log, int(metrics[0].rsplit(":", 1)[1]))


@contextmanager
def deployed_operator(release: Release, log: Path) -> Iterator[OperatorProcess]:
    """``start_deployed``, acting (it holds the Lease) before the body runs; stopped (SIGTERM) after."""
    op = start_deployed(release, log)
    try:
        wait_for(lambda: op.leading() or op.proc.poll() is not None, timeout=90, message="operator not leading")
        assert op.proc.poll() is None, op.logs()[-4000:]
        yield op
    finally:
        op.stop()
    text = op.logs()
    assert "Forbidden" not in text and " 403" not in text, text[-3000:]


def wait_ready(kube: Kube, resource: str, namespace: str, ready: str | None = None, timeout: float = 90) -> None:
    """Until the CR's Ready condition is True (and its ``status.ready`` is ``ready``, if given)."""

    def done() -> bool:
        obj = kube.get(resource, namespace) or {}
        status = obj.get("status") or {}
        cond: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        return cond.get("status") == "True" and (ready is None or status.get("ready") == ready)

    wait_for(done, timeout=timeout, message=f"{namespace}/{resource} never became Ready {ready or ''}")


def services(docker_api: docker.APIClient, namespace: str) -> dict[str, dict[str, Any]]:
    return {s["Spec"]["Name"]: s for s in docker_api.services() if s["Spec"]["Name"].startswith(f"{namespace}_")}


def service_cr(name: str, namespace: str, image: str, replicas: int = 1, network: str | None = None) -> str:
    networks = f"networks: [{{name: {network}}}]" if network else ""
    return f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          image: {image}
          command: [sleep, "600"]
          replicas: {replicas}
          stopGracePeriod: 1s
          {networks}
    """


def test_installed_release_converges_and_upgrades(
    kube: Kube, release: Release, apps_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns, apps = release.namespace, apps_namespace
    release.install("--set", f"watch.namespaces={{{ns},{apps}}}")
    container = release.container()
    assert f"--namespace={ns}" in container["args"] and f"--namespace={apps}" in container["args"]
    assert kube.get(f"role/{release.fullname}", apps) is not None

    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmNetwork
        metadata: {{name: backend, namespace: {apps}}}
        spec: {{driver: overlay, attachable: true}}
    """)
    kube.apply(service_cr("web", apps, local_image, network="backend"))
    kube.apply(service_cr("api", ns, local_image))
    with deployed_operator(release, tmp_path / "operator-1.log") as op:
        wait_ready(kube, "snet/backend", apps)
        wait_ready(kube, "ssvc/web", apps, "1/1")
        wait_ready(kube, "ssvc/api", ns, "1/1")
        web = services(docker_api, apps)[f"{apps}_web"]
        network = docker_api.inspect_network(f"{apps}_backend")["Id"]
        assert [n["Target"] for n in web["Spec"]["TaskTemplate"]["Networks"]] == [network]
        assert f"{ns}_api" in services(docker_api, ns)
        lease = kube.get("lease/swarmkeeper-operator", ns)
        assert lease["spec"]["holderIdentity"].startswith(f"{release.fullname}-local-")  # POD_NAME, as in the pod
        records = [json.loads(line) for line in op.logs().splitlines() if line.startswith("{")]
        assert any(r["msg"].startswith("holding the lease") for r in records)  # --log-format=json, the default

    before = container["args"]
    release.upgrade("--set", "operator.verbosity=2", "--set", "operator.logFormat=text", "--set", "operator.resync=20s")
    after = release.container()["args"]
    assert set(before) - set(after) == {"--resync=30s", "--log-format=json", "-v"}
    assert set(after) - set(before) == {"--resync=20s", "--log-format=text", "-vv"}
    assert release.deployment()["metadata"]["generation"] == 2
    kube.apply(service_cr("web", apps, local_image, replicas=2, network="backend"))
    with deployed_operator(release, tmp_path / "operator-2.log") as op:
        wait_ready(kube, "ssvc/web", apps, "2/2")
        assert services(docker_api, apps)[f"{apps}_web"]["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
        text = op.logs()
        assert not text.startswith("{") and "pass (" in text, text[-2000:]  # text format, debug lines


def test_uninstall_in_the_documented_order_leaves_nothing(
    kube: Kube, release: Release, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = release.namespace
    release.install()
    kube.apply(f"""
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmNetwork
        metadata: {{name: backend, namespace: {ns}}}
        spec: {{driver: overlay}}
    """)
    kube.apply(service_cr("web", ns, local_image, network="backend"))
    with deployed_operator(release, tmp_path / "operator.log"):
        wait_ready(kube, "ssvc/web", ns, "1/1")
        # The README's order: the custom resources first, while the operator runs (its finalizer
        # removes their swarm objects) ...
        kube.kubectl("delete", "swarm", "--all", "-n", ns, "--timeout=60s", timeout=90)
        assert not services(docker_api, ns)
        assert not [n for n in docker_api.networks() if n["Name"].startswith(f"{ns}_")]
    # ... then the release (which stops the operator's pod).
    release.uninstall()
    assert kube.get("swarm", ns)["items"] == []
    labelled = kube.kubectl(
        "get", "all,sa,role,rolebinding", "-n", ns, "-o", "name", f"-l=app.kubernetes.io/instance={release.name}"
    )
    assert labelled.stdout.strip() == ""
    assert kube.get(f"deployment/{release.fullname}", ns) is None
    # The operator made its Lease, not Helm: it stays (the README says so).
    assert kube.get("lease/swarmkeeper-operator", ns) is not None
    # Helm never deletes what a chart's crds/ installed.
    assert kube.get("crd/swarmservices.swarmkeeper.io") is not None


def test_resources_deleted_after_uninstall_wait_for_a_reinstall(
    kube: Kube, release: Release, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = release.namespace
    release.install()
    kube.apply(service_cr("web", ns, local_image))
    kube.apply(service_cr("kept", ns, local_image))
    with deployed_operator(release, tmp_path / "operator-1.log"):
        wait_ready(kube, "ssvc/web", ns, "1/1")
        wait_ready(kube, "ssvc/kept", ns, "1/1")
    release.uninstall()
    assert set(services(docker_api, ns)) == {f"{ns}_web", f"{ns}_kept"}  # no operator: the swarm stays as it is

    kube.kubectl("delete", "ssvc", "web", "kept", "-n", ns, "--wait=false")
    for name in ("web", "kept"):
        stuck = kube.get(f"ssvc/{name}", ns)
        assert stuck["metadata"]["deletionTimestamp"] and FINALIZER in stuck["metadata"]["finalizers"]
    # The finalizer removed by hand: the CR goes, its swarm service stays.
    kube.kubectl("patch", "ssvc", "kept", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    assert kube.get("ssvc/kept", ns) is None

    # The chart installed again: its operator finishes the removal.
    release.install()
    with deployed_operator(release, tmp_path / "operator-2.log"):
        wait_for(lambda: kube.get("ssvc/web", ns) is None, timeout=60, message="the CR stayed on its finalizer")
        assert set(services(docker_api, ns)) == {f"{ns}_kept"}


def shipped_plurals() -> list[str]:
    """The plural of every CRD the chart ships: its RBAC must cover each one."""
    yaml = YAML(typ="safe")
    return sorted(yaml.load(p.read_text())["spec"]["names"]["plural"] for p in (CHART / "crds").glob("*.yaml"))


def access_reviews(kube: Kube, kubeconfig: Path, checks: list[tuple[str, str | None]]) -> list[bool]:
    """``kubectl auth can-i`` for many checks in one run: a SelfSubjectAccessReview each, sent with
    the account's own token (so with the groups a real token has). A check reads
    ``VERB RESOURCE[.GROUP][/SUBRESOURCE] [NAME]``; namespace None: cluster-scoped, "": all of them."""
    reviews: list[dict[str, Any]] = []
    for check, namespace in checks:
        verb, target, *name = check.split()
        resource, _, subresource = target.partition("/")
        resource, _, group = resource.partition(".")
        attributes = {"verb": verb, "group": group, "resource": resource, "subresource": subresource}
        attributes |= {"name": name[0]} if name else {}
        attributes |= {"namespace": namespace} if namespace is not None else {}
        kind = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview"}
        reviews.append({**kind, "spec": {"resourceAttributes": attributes}})
    batch = json.dumps({"apiVersion": "v1", "kind": "List", "items": reviews})
    text = kube.kubectl("create", "-f", "-", "-o", "json", kubeconfig=kubeconfig, input=batch).stdout
    decoder, at = json.JSONDecoder(), 0
    answers: list[bool] = []
    while text[at:].strip():  # one JSON object per review, in the order sent
        review, at = decoder.raw_decode(text, text.index("{", at))
        got, asked = review["spec"]["resourceAttributes"], reviews[len(answers)]["spec"]["resourceAttributes"]
        assert all(got.get(k, "") == v for k, v in asked.items()), (got, asked)
        answers.append(bool(review["status"].get("allowed")))
    assert len(answers) == len(checks)
    return answers


# Cluster-wide, in any namespace: what the operator does (kopf lists and watches each kind across
# all namespaces at once) and what it must not. Reading Secrets everywhere is inherent to this mode:
# a SwarmSecret in any namespace may name one (watch.namespaces limits it).
CLUSTER_ALLOWED = ["get secrets", "watch secrets", "list configmaps", "watch configmaps", "create events"]
CLUSTER_DENIED = [
    "update swarmservices.swarmkeeper.io/scale",
    "patch swarmservices.swarmkeeper.io/scale",
    "create secrets",
    "update secrets",
    "delete secrets",
    "patch configmaps",
    "get pods",
    "create pods/exec",
    "create deployments.apps",
    "create serviceaccounts/token",
    "create roles.rbac.authorization.k8s.io",
    "create rolebindings.rbac.authorization.k8s.io",
    "create leases.coordination.k8s.io",
    "update leases.coordination.k8s.io swarmkeeper-operator",
]
# Cluster-scoped: nothing at all.
CLUSTER_SCOPED_DENIED = [
    "delete namespaces",
    "create namespaces",
    "list namespaces",
    "list nodes",
    "get customresourcedefinitions.apiextensions.k8s.io",
    "delete customresourcedefinitions.apiextensions.k8s.io",
    "create clusterroles.rbac.authorization.k8s.io",
    "create clusterrolebindings.rbac.authorization.k8s.io",
    "impersonate users",
    "impersonate serviceaccounts",
]


def test_cluster_wide_rbac_is_enough_everywhere_and_no_more(kube: Kube, release: Release, tmp_path: Path) -> None:
    ns = release.namespace
    release.install("--set", "watch.allNamespaces=true")
    args = release.container()["args"]
    assert "--all-namespaces" in args and not [a for a in args if a.startswith("--namespace")]
    assert kube.get(f"clusterrole/{release.fullname}") is not None
    assert kube.get(f"role/{release.fullname}", ns) is None  # no per-namespace Role in this mode

    allowed = list(CLUSTER_ALLOWED)
    denied = list(CLUSTER_DENIED)
    for plural in shipped_plurals():
        allowed += [f"{verb} {plural}.swarmkeeper.io" for verb in ("get", "list", "watch", "patch")]
        allowed += [f"{verb} {plural}.swarmkeeper.io/status" for verb in ("get", "patch")]
        denied += [f"{verb} {plural}.swarmkeeper.io" for verb in ("create", "update", "delete", "deletecollection")]
        denied.append(f"update {plural}.swarmkeeper.io/status")
    # All at once (as kopf lists and watches), the release's, another, one that does not exist yet.
    elsewhere = ["kube-system", f"{ns}-none"]
    expected: list[tuple[tuple[str, str | None], bool]]
    expected = [((check, where), True) for check in allowed for where in ("", ns, *elsewhere)]
    expected += [((check, where), False) for check in denied for where in elsewhere]
    expected += [((check, None), False) for check in CLUSTER_SCOPED_DENIED]
    # The Lease: in the release namespace only, and that one Lease only.
    expected += [
        (("create leases.coordination.k8s.io", ns), True),
        (("update leases.coordination.k8s.io swarmkeeper-operator", ns), True),
        (("update leases.coordination.k8s.io another", ns), False),
        (("delete leases.coordination.k8s.io swarmkeeper-operator", ns), False),
    ]
    kubeconfig = account_kubeconfig(kube, ns, release.fullname, tmp_path / "operator.kubeconfig")
    answers = access_reviews(kube, kubeconfig, [check for check, _ in expected])
    wrong = [
        f"{'cannot' if want else 'can'} {check} in {where!r}"
        for ((check, where), want), got in zip(expected, answers, strict=True)
        if got != want
    ]
    assert not wrong, "the operator's account:\n" + "\n".join(wrong)
    # The same answers as kubectl's own, impersonating the account.
    assert release.can_i("watch secrets", "--all-namespaces")
    assert not release.can_i("patch swarmservices.swarmkeeper.io", "--subresource=scale", "-n", ns)
