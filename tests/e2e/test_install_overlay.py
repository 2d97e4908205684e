"""README's kustomize overlay of dist/install/, word for word, on the real node: another
namespace and another image name (`registry.example.com/mirror/oras-cache-sync`, which the
node's mirror serves as a registry of its own, tests/harness/node.py `mirror_aliases`).

The service runs from the new name in the new namespace (restricted Pod Security), holds
its Lease there, an OrasCache becomes Ready and the webhook (its Service moved, its
namespaceSelector carried by the overlay's replacement) wires an annotated Pod; `kubectl
delete -k` leaves nothing. tests/integration/test_install_kustomize.py checks the same
overlay's objects on a control plane; this is the running service.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib import schema
from tests.e2e.test_install import (
    DEPLOYMENT,
    LEASE,
    LEASE_DURATION_S,
    PART_OF,
    TIMEOUT_S,
    _annotated_pod,
    cache_ready,
    kubectl,
)
from tests.harness import LocalCluster
from tests.harness.crds import install_crds
from tests.harness.node import OVERLAY_IMAGE_NAME, Node
from tests.integration.conftest import repo_crds
from tests.integration.syncproc import wait_for
from tests.integration.test_install_kustomize import OVERLAY
from tests.original_examples import HELLO_WORLD_CACHE

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "dist" / "install"
NAMESPACE = "oras-cache-ops"  # README's

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def admin(cluster: LocalCluster, node: Node) -> Iterator[ApiClient]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("overlay")
    (directory / "kustomization.yaml").write_text(OVERLAY.format(
        base=os.path.relpath(INSTALL, directory), namespace=NAMESPACE))
    return directory


@pytest.fixture(scope="module")
def moved(cluster: LocalCluster, admin: ApiClient, overlay: Path) -> Iterator[float]:
    """`kubectl apply -k overlay/`, Available in NAMESPACE; yields the seconds it took."""
    began = time.monotonic()
    kubectl(cluster, "apply", "-k", str(overlay))
    kubectl(cluster, "-n", NAMESPACE, "rollout", "status", f"deployment/{DEPLOYMENT}",
            f"--timeout={TIMEOUT_S:.0f}s")
    took = time.monotonic() - began
    print(f"\noverlay Available in {took:.1f} s")
    yield took
    cluster.kubectl("delete", "-k", str(overlay), "--ignore-not-found", "--wait=true",
                    check=False, timeout=TIMEOUT_S)
    install_crds(cluster, repo_crds())  # for the tests after this module


def test_overlay_runs_from_the_new_image_in_the_new_namespace(
    cluster: LocalCluster, admin: ApiClient, node: Node, moved: float
) -> None:
    core = client.CoreV1Api(admin)
    pods = [p for p in core.list_namespaced_pod(
        NAMESPACE, label_selector="app.kubernetes.io/component=sync").items
        if p.metadata.deletion_timestamp is None]
    assert len(pods) == 2
    for pod in pods:
        (status,) = pod.status.container_statuses
        assert pod.spec.containers[0].image == f"{OVERLAY_IMAGE_NAME}:0.1.0"
        assert status.ready
    # Pulled by the new name (containerd reports a container's image by any of its names:
    # the same content is also there as ghcr.io/...:0.1.0 from other tests).
    images = node.ctr("images", "ls", "-q").stdout.split()
    assert f"{OVERLAY_IMAGE_NAME}:0.1.0" in images, images
    names = {p.metadata.name for p in pods}

    def holder() -> str | None:
        try:
            lease = client.CoordinationV1Api(admin).read_namespaced_lease(LEASE, NAMESPACE)
        except client.exceptions.ApiException:
            return None
        found: str | None = lease.spec.holder_identity
        return found

    wait_for(lambda: holder() in names, timeout=LEASE_DURATION_S * 2,
             what=f"a replica holding the Lease in {NAMESPACE}")
    assert cluster.kubectl("get", "namespace", "oras-cache-system",
                           check=False).returncode != 0
    labels = core.read_namespace(NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_a_cache_becomes_ready_and_the_moved_webhook_wires_pods(
    cluster: LocalCluster, admin: ApiClient, moved: float
) -> None:
    ns = f"e-overlay-{uuid.uuid4().hex[:6]}"
    kubectl(cluster, "create", "namespace", ns)
    try:
        began = time.monotonic()
        kubectl(cluster, "apply", "-n", ns, "-f", "-", input=HELLO_WORLD_CACHE)
        wait_for(lambda: cache_ready(admin, ns, "orascache-sample"), timeout=TIMEOUT_S,
                 interval=0.5, what="orascache-sample Ready=True")
        print(f"\nOrasCache Ready in {time.monotonic() - began:.1f} s")
        created = client.CoreV1Api(admin).create_namespaced_pod(ns, _annotated_pod(0))
        assert "oras-push" in [c.name for c in created.spec.containers]
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_delete_k_leaves_nothing_behind(cluster: LocalCluster, admin: ApiClient,
                                        overlay: Path, moved: float) -> None:
    kubectl(cluster, "delete", "-k", str(overlay), "--wait=true")
    wait_for(lambda: cluster.kubectl("get", "namespace", NAMESPACE, check=False).returncode
             != 0, timeout=TIMEOUT_S, interval=0.5, what=f"namespace {NAMESPACE} gone")
    kinds = ("clusterroles,clusterrolebindings,mutatingwebhookconfigurations,"
             "customresourcedefinitions,namespaces")
    assert kubectl(cluster, "get", kinds, "-l", PART_OF, "-o", "name").strip() == ""
    got = cluster.kubectl("get", f"customresourcedefinition/{schema.PLURAL}.{schema.GROUP}",
                          check=False)
    assert got.returncode != 0
