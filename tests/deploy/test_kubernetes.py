"""deploy/k8s: every overlay renders with kustomize (``kubectl kustomize``) into manifests
valid against the Kubernetes API schemas (kubernetes-validate, offline, strict), with the
properties the deployment relies on."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests import servers

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"  # the oldest release the manifests promise to work on
TARGETS = ("base", "overlays/dev", "overlays/production")
SERVICES = ("identity", "catalog", "booking", "notification")
# Who calls whom: the only peers each service's NetworkPolicy may admit.
CALLERS = {
    "identity": {"gateway", "booking", "notification"},
    "catalog": {"gateway", "booking", "notification"},
    "booking": {"gateway", "notification"},
    "notification": {"gateway"},
}

Manifest = dict[str, Any]


def kustomize(directory: Path) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        servers.unavailable("kubectl", "PATH", "not installed")
    rendered = subprocess.run(  # noqa: S603
        [str(kubectl), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def schema_errors(manifests: list[Manifest]) -> list[str]:
    errors = []
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{manifest['kind']}/{manifest['metadata']['name']}: {exc.message}")
    return errors


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    return kustomize(K8S / request.param)


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def marquee_deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {
        name: m
        for name, m in of_kind(manifests, "Deployment").items()
        if m["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        != "dependency"
    }


def containers(deployment: Manifest) -> Iterator[Manifest]:
    spec = deployment["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def test_every_manifest_is_valid_against_the_kubernetes_schemas(
    rendered: list[Manifest],
) -> None:
    assert schema_errors(rendered) == []


def test_the_schema_check_catches_a_misplaced_field() -> None:
    manifests = kustomize(K8S / "base")
    gateway = of_kind(manifests, "Deployment")["gateway"]
    gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}

    assert any("readinessProbes" in error for error in schema_errors([gateway]))


def test_every_service_runs_from_the_one_image_with_probes_and_resources(
    rendered: list[Manifest],
) -> None:
    deployments = marquee_deployments(rendered)
    assert set(deployments) == {*SERVICES, "gateway"}
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for each in containers(deployment):
            assert each["image"].split(":")[0].endswith("marquee"), name
            assert {"cpu", "memory"} <= set(each["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(each["resources"]["limits"]), name
            assert each["securityContext"]["allowPrivilegeEscalation"] is False
            assert each["securityContext"]["readOnlyRootFilesystem"] is True
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def test_services_wait_for_the_migration_job(rendered: list[Manifest]) -> None:
    job = of_kind(rendered, "Job")["marquee-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    deployments = marquee_deployments(rendered)
    for name in SERVICES:
        (init,) = deployments[name]["spec"]["template"]["spec"]["initContainers"]
        assert init["args"][:2] == ["migrate", "--check"]
        assert init["args"][-1] == name


def test_every_service_is_cluster_internal_and_protected_from_disruption(
    rendered: list[Manifest],
) -> None:
    services = of_kind(rendered, "Service")
    assert {s["spec"].get("type", "ClusterIP") for s in services.values()} == {"ClusterIP"}
    budgets = of_kind(rendered, "PodDisruptionBudget")
    assert {*SERVICES, "gateway"} <= set(budgets)
    autoscalers = of_kind(rendered, "HorizontalPodAutoscaler")
    assert {a["spec"]["scaleTargetRef"]["name"] for a in autoscalers.values()} == {
        "gateway",
        "booking",
    }
    for service in {*SERVICES, "gateway"}:
        assert services[service]["spec"]["ports"][0]["name"] == "http"  # scraped as "http"


def test_network_policies_admit_only_each_services_callers(rendered: list[Manifest]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    deny = policies["marquee-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny["spec"]
    for service, callers in CALLERS.items():
        (rule,) = policies[f"{service}-from-its-callers"]["spec"]["ingress"]
        peers = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in rule["from"]}
        assert peers == callers, service
    assert "from" not in policies["gateway-from-anywhere"]["spec"]["ingress"][0]


def test_secrets_are_referenced_never_inlined(rendered: list[Manifest]) -> None:
    assert of_kind(rendered, "Secret") == {}
    for deployment in [
        *of_kind(rendered, "Deployment").values(),
        *of_kind(rendered, "Job").values(),
    ]:
        for container in containers(deployment):
            for variable in container.get("env", []):
                assert (
                    "value" not in variable
                    or not any(
                        word in variable["name"] for word in ("PASSWORD", "SECRET", "_URL", "KEY")
                    )
                    or variable["name"].endswith(("_FILE", "PUBLIC_URL"))
                ), variable
    config = of_kind(rendered, "ConfigMap")["marquee-config"]["data"]
    assert not any("@" in value for value in config.values())


def test_production_is_reached_only_through_an_ingress_to_the_gateway() -> None:
    manifests = kustomize(K8S / "overlays" / "production")
    (ingress,) = of_kind(manifests, "Ingress").values()
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"gateway"}
    assert {m["metadata"].get("namespace") for m in manifests if m["kind"] != "Namespace"} == {
        "marquee"
    }
