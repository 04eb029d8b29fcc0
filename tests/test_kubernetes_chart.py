"""The Helm chart: it lints, its values are checked, its manifests are accepted by a real API server,
and its RBAC is enough for the operator and no more.

RBAC is proven the way it is used: the chart's ServiceAccount, Roles and bindings are applied for
real, the operator runs with a token of that ServiceAccount and converges a namespace, and
``kubectl auth can-i`` shows what the account may not do. (The Deployment itself never runs here:
this API server has no scheduler and no nodes.)
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from helpers import wait_for
from kube_fixtures import ROOT, Kube, operator

pytestmark = pytest.mark.timeout(300)

CHART = ROOT / "charts" / "swarmkeeper"
VALUE_SETS = {
    "defaults": [],
    "all-namespaces": ["--set", "watch.allNamespaces=true", "--set", "docker.tls.enabled=false"],
    "two-replicas": [
        "--set",
        "replicaCount=2",
        "--set",
        "operator.verbosity=2",
        "--set",
        "metrics.service.enabled=false",
    ],
}


def test_chart_lints(kube: Kube) -> None:
    for name, values in VALUE_SETS.items():
        result = kube.helm("lint", str(CHART), "--strict", *values)
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, name


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["--set", "operator.logFormat=xml"], "logFormat"),
        (["--set", "watch.namespace=x"], "namespace"),
        (["--set", "docker.host=swarm:2376"], "/docker/host"),
    ],
)
def test_values_schema_rejects_mistakes(kube: Kube, values: list[str], complaint: str) -> None:
    result = kube.helm("template", "rel", str(CHART), *values, check=False)
    assert result.returncode != 0 and complaint in result.stderr


def test_chart_crds_are_the_generated_ones() -> None:
    generated = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert shipped == generated and len(shipped) == 6


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_rendered_manifests_pass_server_side_dry_run(kube: Kube, kube_namespace: str, values: str) -> None:
    rendered = kube.helm(
        "template", kube_namespace, str(CHART), "-n", kube_namespace, "--include-crds", *VALUE_SETS[values]
    ).stdout
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    kinds = sorted({line.split("/")[0] for line in result.stdout.splitlines()})
    expected = {
        "customresourcedefinition.apiextensions.k8s.io",
        "deployment.apps",
        "serviceaccount",
    }
    assert expected <= set(kinds), result.stdout
    assert ("clusterrole.rbac.authorization.k8s.io" in kinds) == (values == "all-namespaces")


# What the operator's account must be able to do in a watched namespace, and what it must not.
ALLOWED = [
    "list swarmservices.swarmkeeper.io",
    "watch swarmsecrets.swarmkeeper.io",
    "patch swarmnetworks.swarmkeeper.io",
    "patch swarmservices.swarmkeeper.io/status",
    "get secrets",
    "watch configmaps",
    "create events",
    "create leases.coordination.k8s.io",
    "update leases.coordination.k8s.io/swarmkeeper-operator",
]
DENIED = [
    "delete swarmservices.swarmkeeper.io",
    "create swarmservices.swarmkeeper.io",
    "update swarmservices.swarmkeeper.io/scale",
    "delete pods",
    "create deployments.apps",
    "create secrets",
    "update secrets",
    "update leases.coordination.k8s.io/some-other-lease",
    "delete leases.coordination.k8s.io/swarmkeeper-operator",
]


def can_i(check: str) -> list[str]:
    """``kubectl auth can-i`` arguments for "VERB RESOURCE[/NAME|/status|/scale]": after the slash
    can-i reads a resource name, so a subresource must be passed as --subresource."""
    verb, resource = check.split()
    base, _, rest = resource.partition("/")
    if rest in ("status", "scale"):
        return ["auth", "can-i", verb, base, f"--subresource={rest}"]
    return ["auth", "can-i", verb, resource]


def test_rbac_is_enough_for_the_operator_and_no_more(
    kube: Kube, kube_namespace: str, docker_api: docker.APIClient, local_image: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    release = ns
    rendered = kube.helm("template", release, str(CHART), "-n", ns, "--set", "docker.tls.enabled=false").stdout
    kube.kubectl("apply", "-f", "-", input=rendered)
    account = f"system:serviceaccount:{ns}:{release}-swarmkeeper"
    for check in ALLOWED:
        result = kube.kubectl(*can_i(check), "-n", ns, f"--as={account}", check=False)
        assert result.stdout.strip() == "yes", f"the operator needs to {check}"
    for check in DENIED:
        result = kube.kubectl(*can_i(check), "-n", ns, f"--as={account}", check=False)
        assert result.stdout.strip() == "no", f"the operator must not {check}"
    for check in ("get secrets", "list swarmservices.swarmkeeper.io"):  # namespaces it does not watch
        result = kube.kubectl(*can_i(check), "-n", "default", f"--as={account}", check=False)
        assert result.stdout.strip() == "no", f"the operator must not {check} outside its namespaces"

    token = kube.kubectl("create", "token", f"{release}-swarmkeeper", "-n", ns).stdout.strip()
    config = json.loads(kube.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    kubeconfig = tmp_path / "operator.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    kubeconfig.chmod(0o600)

    kube.apply(f"""
        apiVersion: v1
        kind: Secret
        metadata: {{name: token, namespace: {ns}}}
        stringData: {{value: rbac-test-value}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmSecret
        metadata: {{name: token, namespace: {ns}}}
        spec: {{secretRef: {{name: token, key: value}}}}
        ---
        apiVersion: swarmkeeper.io/v1alpha1
        kind: SwarmService
        metadata: {{name: web, namespace: {ns}}}
        spec:
          image: {local_image}
          command: [sleep, "600"]
          secrets: [{{source: token}}]
          stopGracePeriod: 1s
    """)
    log = tmp_path / "operator.log"
    with operator(kube, ns, log, kubeconfig=kubeconfig, env={"POD_NAMESPACE": ns}):
        wait_for(
            lambda: ((kube.get("ssvc/web", ns) or {}).get("status") or {}).get("ready") == "1/1",
            timeout=120,
            message="the operator, with the chart's RBAC, never converged",
        )
        assert any(e["reason"] == "Applied" for e in kube.get("events", ns)["items"])
        kube.kubectl("delete", "ssvc", "web", "-n", ns, "--timeout=60s", timeout=90)
        wait_for(
            lambda: not [s for s in docker_api.services() if s["Spec"]["Name"] == f"{ns}_web"],
            timeout=60,
            message="the finalizer never removed the service",
        )
    text = log.read_text(errors="replace")
    assert "Forbidden" not in text and " 403" not in text, text[-3000:]
