"""Flux's own controllers (source-controller, kustomize-controller, built from the Go module
proxy: tests/harness/flux.py) applying this repository's output on a real control plane:

- from git: dist/examples through a GitRepository (a real `git http-backend` with basic
  auth, the credentials in a Secret) and a Kustomization with `prune: true` and
  `wait: true`; removing an example prunes it; dist/install applied by Flux too;
- from OCI: an artifact pushed by `orascache render --push-oci` to the real registry, read
  by an OCIRepository with its defaults.

Without a kubelet no registry becomes Ready here, so `wait: true` must keep each
Kustomization not Ready, naming the StatefulSets it waits for; that it becomes Ready once
the caches are Ready is shown on the real node (tests/e2e/test_flux.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from sync.apply.kube import Kube
from tests.harness import LocalCluster
from tests.harness.flux import FluxControllers
from tests.harness.oras_tools import LocalRegistry, OrasTools
from tests.integration import fluxkit
from tests.integration.gitserver import GitHttpServer, WorkRepo
from tests.integration.syncproc import REPO, get, sts, svc, wait_for
from tests.integration.test_oci_render import orascache
from tests.integration.test_sync_git import cache_yaml

pytestmark = pytest.mark.timeout(600)
USER, PASSWORD = "flux", "fl-" + "ux-pa55"


@pytest.fixture(scope="module")
def flux(cluster: LocalCluster) -> Iterator[FluxControllers]:
    with fluxkit.running_flux(cluster) as controllers:
        yield controllers


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    server = GitHttpServer(tmp_path / "remote", USER, PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def gitops_repo(tmp_path: Path) -> WorkRepo:
    """A repository holding this repository's dist/examples and dist/install."""
    repo = WorkRepo(tmp_path / "remote" / "gitops.git")
    for part in ("examples", "install"):
        shutil.copytree(REPO / "dist" / part, repo.path / "dist" / part)
    repo.commit("dist/")
    return repo


def git_secret(api: ApiClient, namespace: str) -> str:
    """The git credentials, as Flux reads them: a Secret with `username` and `password`."""
    client.CoreV1Api(api).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="git-credentials"),
        string_data={"username": USER, "password": PASSWORD}))
    return "git-credentials"


def ready(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return fluxkit.condition(fluxkit.get(api, namespace, "Kustomization", name))


def kustomization(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = fluxkit.get(api, namespace, "Kustomization", name)
    assert obj is not None
    return obj


def applied(api: ApiClient, namespace: str, name: str, revision: str) -> dict[str, Any] | None:
    """The Kustomization once it applied `revision` (Ready or not: it waits for health)."""
    obj = fluxkit.get(api, namespace, "Kustomization", name)
    status = (obj or {}).get("status", {})
    return obj if revision in status.get("lastAttemptedRevision", "") and status.get(
        "inventory") else None


def drop_example(repo: WorkRepo, rel: str) -> None:
    """Remove one rendered example and its kustomization entry, as `make synth` would."""
    repo.remove(f"dist/examples/{rel}")
    path = repo.path / "dist/examples/kustomization.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["resources"].remove(rel)
    path.write_text(yaml.safe_dump(doc))


def test_controllers_listen_on_loopback_only(flux: FluxControllers) -> None:
    listening = flux.listening()
    assert set(listening) == {"source-controller", "kustomize-controller"}
    # metrics + health (+ source-controller's artifact server), nothing else.
    assert len(listening["source-controller"]) == 3, listening
    assert f"127.0.0.1:{flux.storage_port}" in listening["source-controller"]
    assert len(listening["kustomize-controller"]) == 2, listening
    for addresses in listening.values():
        assert all(a.startswith("127.0.0.1:") for a in addresses), listening


def test_git_dist_examples_applied_waited_for_and_pruned(
    flux: FluxControllers, api_client: ApiClient, kube: Kube, namespace: str,
    git_server: GitHttpServer, gitops_repo: WorkRepo,
) -> None:
    first = gitops_repo.repo.head.commit.hexsha
    source = fluxkit.git_repository("gitops", git_server.url("gitops.git"),
                                    secret=git_secret(api_client, namespace))
    fluxkit.create(api_client, namespace, source)
    fluxkit.create(api_client, namespace, fluxkit.kustomization(
        "examples", source, "./dist/examples", timeout="30s", target_namespace=namespace))

    obj = wait_for(lambda: applied(api_client, namespace, "examples", first), timeout=120,
                   what="dist/examples applied")
    names = ("oras", "persistent", "shared")
    for name in names:
        assert sts(kube, namespace, name) is not None, name
        assert svc(kube, namespace, name) is not None, name
        assert f"{namespace}_{name}_apps_StatefulSet" in fluxkit.inventory(obj)
    # wait: true waits for the registries, which need a node: not Ready, and says why.
    cond = wait_for(lambda: ready(api_client, namespace, "examples").get(
        "reason") == "HealthCheckFailed" and ready(api_client, namespace, "examples"),
        timeout=60, what="the health check to fail")
    assert cond["status"] == "False"
    assert f"StatefulSet/{namespace}/" in cond["message"], cond["message"]

    drop_example(gitops_repo, "workflows/shared.yaml")
    second = gitops_repo.commit("drop the shared example")
    wait_for(lambda: applied(api_client, namespace, "examples", second), timeout=60,
             what="the second commit applied")
    wait_for(lambda: sts(kube, namespace, "shared") is None
             and svc(kube, namespace, "shared") is None, timeout=60,
             what="the shared example pruned")
    pvc = get(kube, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/shared-data")
    assert pvc is None or pvc["metadata"].get("deletionTimestamp"), pvc
    assert sts(kube, namespace, "oras") is not None
    assert sts(kube, namespace, "persistent") is not None
    obj = kustomization(api_client, namespace, "examples")
    assert f"{namespace}_shared_apps_StatefulSet" not in fluxkit.inventory(obj)
    # lastAppliedRevision is only set by a reconciliation that passes its health checks.
    assert obj["status"]["lastAttemptedRevision"] == f"main@sha1:{second}"
    assert "lastAppliedRevision" not in obj["status"]

    # Deleting the Kustomization (prune: true) deletes what it applied.
    fluxkit.delete_and_wait(api_client, namespace, "Kustomization", "examples")
    wait_for(lambda: sts(kube, namespace, "oras") is None, timeout=30,
             what="garbage collection")
    fluxkit.delete_and_wait(api_client, namespace, "GitRepository", "gitops")


def test_git_dist_install_applied_by_flux(
    flux: FluxControllers, cluster: LocalCluster, api_client: ApiClient, kube: Kube,
    namespace: str, git_server: GitHttpServer, gitops_repo: WorkRepo,
) -> None:
    commit = gitops_repo.repo.head.commit.hexsha
    source = fluxkit.git_repository("gitops", git_server.url("gitops.git"),
                                    secret=git_secret(api_client, namespace))
    fluxkit.create(api_client, namespace, source)
    # prune: false, so that deleting this Kustomization keeps the CRD (and every cache of
    # the other tests in this cluster). wait: false: the Deployment's image is another
    # matter (a node, an image in reach); here the objects must exist and be accepted.
    fluxkit.create(api_client, namespace, fluxkit.kustomization(
        "install", source, "./dist/install", prune=False, wait=False))
    try:
        obj = wait_for(lambda: fluxkit.condition(fluxkit.get(
            api_client, namespace, "Kustomization", "install")).get("status") == "True"
            and kustomization(api_client, namespace, "install"), timeout=120,
            what="dist/install applied and Ready")
        assert obj["status"]["lastAppliedRevision"] == f"main@sha1:{commit}"
        expected = {doc["kind"] + "/" + doc["metadata"]["name"]
                    for path in (REPO / "dist/install").glob("*.yaml")
                    for doc in yaml.safe_load_all(path.read_text()) if doc}
        found = {entry.split("_")[-1] + "/" + entry.split("_")[1]
                 for entry in fluxkit.inventory(obj)}
        assert found == expected
        deployment = get(kube, "/apis/apps/v1/namespaces/oras-cache-system/deployments/"
                         "oras-cache-sync")
        assert deployment is not None
        labels = deployment["metadata"]["labels"]
        assert labels["kustomize.toolkit.fluxcd.io/name"] == "install"
        assert labels["kustomize.toolkit.fluxcd.io/namespace"] == namespace
    finally:
        fluxkit.delete_and_wait(api_client, namespace, "Kustomization", "install")
        fluxkit.delete_and_wait(api_client, namespace, "GitRepository", "gitops")
        # Nothing serves the webhook in this cluster (as in test_install.py).
        try:
            client.AdmissionregistrationV1Api(api_client) \
                .delete_mutating_webhook_configuration("oras-cache-sync")
        except ApiException as err:
            if err.status != 404:
                raise
    assert cluster.kubectl("get", "crd", "orascaches.cache.converged-computing.github.io",
                           check=False).returncode == 0


def test_oci_artifact_from_render_push_oci_applied_and_pruned(
    flux: FluxControllers, tools: OrasTools, registry: LocalRegistry, api_client: ApiClient,
    kube: Kube, namespace: str, tmp_path: Path,
) -> None:
    repo = WorkRepo(tmp_path / "caches")
    repo.write("caches/a.yaml", cache_yaml("a")).write(
        "caches/b.yaml", cache_yaml("b", port=6000)).commit()
    ref = f"{registry.address}/caches/rendered:main"
    push = ["render", "--repo", repo.url, "--ref", "main", "--path", "caches",
            "--push-oci", f"oci://{ref}", "--plain-http"]
    done = orascache(tools, *push)
    assert done.returncode == 0, done.stderr
    digest = done.stdout.strip().split("@")[1]

    source = fluxkit.oci_repository("rendered", f"oci://{registry.address}/caches/rendered")
    fluxkit.create(api_client, namespace, source)
    # wait: false here: a health check that cannot pass holds the next revision for its
    # whole timeout (30 s at least); waiting is shown on the real node (tests/e2e).
    fluxkit.create(api_client, namespace, fluxkit.kustomization(
        "rendered", source, "./", wait=False, target_namespace=namespace))
    obj = wait_for(lambda: applied(api_client, namespace, "rendered", digest)
                   and ready(api_client, namespace, "rendered").get("status") == "True"
                   and kustomization(api_client, namespace, "rendered"), timeout=120,
                   what="the artifact applied")
    assert obj["status"]["lastAppliedRevision"] == f"main@{digest}"
    oci = fluxkit.get(api_client, namespace, "OCIRepository", "rendered")
    assert oci is not None and fluxkit.condition(oci)["status"] == "True"
    assert oci["status"]["artifact"]["revision"] == f"main@{digest}"
    b = sts(kube, namespace, "b")
    assert sts(kube, namespace, "a") is not None and b is not None
    assert b["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 6000

    repo.remove("caches/b.yaml").write("caches/a.yaml", cache_yaml("a", port=7000))
    repo.commit("drop b, a on 7000")
    done = orascache(tools, *push)
    assert done.returncode == 0, done.stderr
    second = done.stdout.strip().split("@")[1]
    wait_for(lambda: applied(api_client, namespace, "rendered", second), timeout=60,
             what="the second artifact applied")
    wait_for(lambda: sts(kube, namespace, "b") is None, timeout=30, what="b pruned")
    a = sts(kube, namespace, "a")
    assert a is not None
    assert a["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 7000
    fluxkit.delete_and_wait(api_client, namespace, "Kustomization", "rendered")
    fluxkit.delete_and_wait(api_client, namespace, "OCIRepository", "rendered")
