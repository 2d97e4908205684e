"""The chart as users run it, on the real node: `helm install oras-cache dist/chart` (Helm
v4, built from the Go module proxy), the service's image pulled by its name from the node's
mirror.

In file order, sharing the release (module fixture): the install is Available and an
OrasCache becomes Ready (the CRD from the chart's crds/), `helm upgrade` with a changed
value rolls the Deployment while the webhook keeps its caBundle and keeps wiring Pods, and
`helm uninstall` leaves nothing of the chart but the CRD (README, "Install"). The module's
teardown uninstalls in any case and puts the repo's CRDs back for the tests that follow.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib import schema
from tests.e2e.test_install import (
    DEPLOYMENT,
    PART_OF,
    SYSTEM,
    TIMEOUT_S,
    _annotated_pod,
    cache_ready,
    kubectl,
    sync_pods,
    wait_available,
)
from tests.harness import LocalCluster
from tests.harness.crds import install_crds
from tests.harness.helm_tool import Helm, ensure_helm, run
from tests.harness.node import Node
from tests.integration.conftest import repo_crds
from tests.integration.syncproc import wait_for
from tests.original_examples import HELLO_WORLD_CACHE

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "dist" / "chart"
RELEASE = "oras-cache"
CRD = f"customresourcedefinition/{schema.PLURAL}.{schema.GROUP}"

pytestmark = pytest.mark.timeout(900)


class Release:
    def __init__(self, cluster: LocalCluster, helm: Helm, home: Path) -> None:
        self.cluster, self.helm, self.home = cluster, helm, home

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = run(self.helm, *args, home=self.home, kubeconfig=self.cluster.kubeconfig,
                   timeout=TIMEOUT_S + 60)
        if check:
            assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout


@pytest.fixture(scope="module")
def admin(cluster: LocalCluster, node: Node) -> Iterator[ApiClient]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture(scope="module")
def helm(cluster: LocalCluster, node: Node,
         tmp_path_factory: pytest.TempPathFactory) -> Release:
    return Release(cluster, ensure_helm(), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, admin: ApiClient, helm: Release) -> Iterator[float]:
    """`helm install` on a cluster without the CRD (the chart's crds/ installs it),
    Available; yields the seconds it took."""
    cluster.kubectl("delete", CRD, "--ignore-not-found", "--wait=true", timeout=TIMEOUT_S)
    began = time.monotonic()
    helm("install", RELEASE, str(CHART), "--wait", "--timeout", f"{TIMEOUT_S:.0f}s")
    wait_available(cluster)
    took = time.monotonic() - began
    print(f"\nhelm install: Available in {took:.1f} s")
    yield took
    helm("uninstall", RELEASE, "--wait", "--ignore-not-found", check=False)
    install_crds(cluster, repo_crds())  # for the tests after this module


@pytest.fixture(scope="module")
def workflows(cluster: LocalCluster, installed: float, admin: ApiClient) -> Iterator[str]:
    ns = f"e-helm-{uuid.uuid4().hex[:6]}"
    kubectl(cluster, "create", "namespace", ns)
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_install_runs_and_an_orascache_becomes_ready(
    cluster: LocalCluster, admin: ApiClient, installed: float, workflows: str
) -> None:
    deployment = client.AppsV1Api(admin).read_namespaced_deployment(DEPLOYMENT, SYSTEM)
    assert deployment.status.available_replicas == 2
    labels = deployment.metadata.labels
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["helm.sh/chart"].startswith("oras-cache-")
    assert deployment.metadata.annotations["meta.helm.sh/release-name"] == RELEASE
    crd = json.loads(kubectl(cluster, "get", CRD, "-o", "json"))
    assert "helm.sh/chart" not in crd["metadata"]["labels"]  # crds/: never templated
    began = time.monotonic()
    kubectl(cluster, "apply", "-n", workflows, "-f", "-", input=HELLO_WORLD_CACHE)
    wait_for(lambda: cache_ready(admin, workflows, "orascache-sample"), timeout=TIMEOUT_S,
             interval=0.5, what="orascache-sample Ready=True")
    print(f"\nOrasCache Ready in {time.monotonic() - began:.1f} s")


def test_upgrade_with_a_changed_value_rolls_the_deployment(
    cluster: LocalCluster, admin: ApiClient, helm: Release, workflows: str
) -> None:
    apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)
    before = {p.metadata.name for p in sync_pods(admin)}
    generation = apps.read_namespaced_deployment(DEPLOYMENT, SYSTEM).metadata.generation
    began = time.monotonic()
    helm("upgrade", RELEASE, str(CHART), "--set", "resources.limits.memory=448Mi",
         "--wait", "--timeout", f"{TIMEOUT_S:.0f}s")
    wait_available(cluster)
    print(f"\nhelm upgrade: rolled out in {time.monotonic() - began:.1f} s")
    deployment = apps.read_namespaced_deployment(DEPLOYMENT, SYSTEM)
    assert deployment.metadata.generation == generation + 1
    wait_for(lambda: not before & {p.metadata.name for p in sync_pods(admin)},
             timeout=TIMEOUT_S, interval=0.5, what="the old Pods gone")
    pods = sync_pods(admin)
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.containers[0].resources.limits["memory"] == "448Mi"
    history = json.loads(helm("history", RELEASE, "-o", "json"))
    assert [h["revision"] for h in history] == [1, 2] and history[-1]["status"] == "deployed"
    # Helm's apply kept the caBundle the service writes, and the new replicas wire Pods.
    config = client.AdmissionregistrationV1Api(admin).read_mutating_webhook_configuration(
        DEPLOYMENT)
    assert all(h.client_config.ca_bundle for h in config.webhooks)
    pod = _annotated_pod(0)
    pod["metadata"]["name"] = "after-upgrade"
    # kube-proxy may still route the webhook's Service to a replaced Pod for a moment on a
    # loaded 2-core node (CI saw "connection refused" once): retry that, nothing else.
    def create() -> Any:
        try:
            return core.create_namespaced_pod(workflows, pod)
        except client.ApiException as err:
            if err.status == 500 and "connection refused" in str(err.body):
                return None
            raise

    created = wait_for(create, timeout=30, interval=1, what="the webhook answering")
    assert "oras-push" in [c.name for c in created.spec.containers]
    core.delete_namespaced_pod("after-upgrade", workflows, grace_period_seconds=0)
    assert cache_ready(admin, workflows, "orascache-sample")


def test_uninstall_leaves_nothing_but_the_crd(
    cluster: LocalCluster, admin: ApiClient, helm: Release, workflows: str
) -> None:
    began = time.monotonic()
    helm("uninstall", RELEASE, "--wait", "--timeout", f"{TIMEOUT_S:.0f}s")
    wait_for(lambda: cluster.kubectl("get", "namespace", SYSTEM, check=False).returncode != 0,
             timeout=TIMEOUT_S, interval=0.5, what=f"namespace {SYSTEM} gone")
    print(f"\nhelm uninstall took {time.monotonic() - began:.1f} s")
    kinds = ("clusterroles,clusterrolebindings,mutatingwebhookconfigurations,"
             "customresourcedefinitions,namespaces")
    left = kubectl(cluster, "get", kinds, "-l", PART_OF, "-o", "name").split()
    assert left == [f"customresourcedefinition.apiextensions.k8s.io/{schema.PLURAL}."
                    f"{schema.GROUP}"]
    assert helm("list", "-q").strip() == ""
    status = run(helm.helm, "status", RELEASE, home=helm.home, kubeconfig=cluster.kubeconfig)
    assert status.returncode != 0 and "not found" in status.stderr, status
    # The caches stay (the CRD does): no controller reconciles them any more.
    assert cache_ready(admin, workflows, "orascache-sample")
    pod = _annotated_pod(1)
    pod["metadata"]["name"] = "after-uninstall"
    created = client.CoreV1Api(admin).create_namespaced_pod(workflows, pod)
    assert [c.name for c in created.spec.containers] == ["app"]
