"""Argo CD's health check (dist/argocd, run by gopher-lua) and kstatus (cli-utils) on live
OrasCache objects: the real sync service brings them into each state on the real API
server, and the objects are read back as the API server's own JSON.

States: Ready (a `deploy: false` cache with spec.registry: Ready=True without a node),
reconciling (a deployed cache: no node here, so 0/1 replicas ready), stalled (a Service of
the same name that is not ours: Conflict), a spec changed while the service is stopped
(stale observedGeneration, over a Ready and over a Stalled status), and not reconciled yet
(the CRD's status default, observedGeneration -1).
The health check itself comes from the argocd-cm ConfigMap on the API server after the
documented `kubectl patch`, as Argo CD reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from constructs_lib import schema
from sync.render.synth import ARGOCD_HEALTH_KEY, REPO_ROOT, argocd_health_lua
from tests.harness import LocalCluster
from tests.harness.gitops_checks import GitopsChecks, argocd_health, kstatus
from tests.integration.syncproc import SyncProcess, wait_for
from tests.integration.test_sync_cluster import condition

ARGOCD_CM = REPO_ROOT / "dist" / "argocd" / "argocd-cm.yaml"
ARGOCD_NS = "argocd"


def live(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    """The object exactly as the API server serves it (what Argo CD's cache and Flux see)."""
    path = f"/apis/{schema.GROUP}/{schema.VERSION}/namespaces/{ns}/{schema.PLURAL}/{name}"
    code, text = cluster.admin_get(path)
    assert code == 200, text
    obj: dict[str, Any] = json.loads(text)
    return obj


def observed(cluster: LocalCluster, ns: str, name: str,
             when: Callable[[dict[str, Any]], bool]) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        obj = live(cluster, ns, name)
        current = obj.get("status", {}).get("observedGeneration") == obj["metadata"][
            "generation"]
        return obj if current and when(obj) else None

    return check


def is_true(type_: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: condition(obj, type_).get("status") == "True"


def argocd_cm_from_the_api_server(cluster: LocalCluster, api: ApiClient) -> dict[str, Any]:
    """An argocd-cm with a setting of its own, patched as docs/gitops.md says, read back."""
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ARGOCD_NS)))
    except ApiException as err:
        if err.status != 409:
            raise
    core.create_namespaced_config_map(ARGOCD_NS, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="argocd-cm"),
        data={"url": "https://argocd.example.com"}))
    try:
        cluster.kubectl("patch", "configmap", "argocd-cm", "-n", ARGOCD_NS, "--type", "merge",
                        "--patch-file", str(ARGOCD_CM))
        code, text = cluster.admin_get(f"/api/v1/namespaces/{ARGOCD_NS}/configmaps/argocd-cm")
        assert code == 200, text
    finally:
        core.delete_namespaced_config_map("argocd-cm", ARGOCD_NS)
    configmap: dict[str, Any] = json.loads(text)
    assert configmap["data"]["url"] == "https://argocd.example.com"  # the merge kept it
    assert configmap["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"
    return configmap


def test_health_of_live_caches_in_each_state(
    cluster: LocalCluster, api_client: ApiClient, namespace: str, tmp_path: Path,
    gitops_checks: GitopsChecks,
) -> None:
    ns = namespace
    custom = client.CustomObjectsApi(api_client)

    def create(name: str, spec: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(schema.GROUP, schema.VERSION, ns, schema.PLURAL, {
            "apiVersion": schema.API_VERSION, "kind": schema.KIND,
            "metadata": {"name": name}, "spec": spec})

    def patch(name: str, spec: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object(schema.GROUP, schema.VERSION, ns, schema.PLURAL,
                                              name, {"spec": spec})

    def sync() -> SyncProcess:
        log = tmp_path / "sync.log"
        return SyncProcess(cluster.kubeconfig, ["--namespace", ns, "--log-format", "text"],
                           log).start().wait_ready()

    argocd_cm = argocd_cm_from_the_api_server(cluster, api_client)
    assert ARGOCD_HEALTH_KEY in argocd_cm["data"]
    client.CoreV1Api(api_client).create_namespaced_service(ns, {
        "metadata": {"name": "taken"}, "spec": {"ports": [{"port": 80}]}})

    service = sync()
    try:
        create("remote", {"deploy": False, "registry": "registry.example.com:5000"})
        create("deployed", {})
        create("taken", {})
        ready = wait_for(observed(cluster, ns, "remote", is_true("Ready")), what="Ready")
        reconciling = wait_for(observed(cluster, ns, "deployed", is_true("Reconciling")),
                               what="Reconciling")
        stalled = wait_for(observed(cluster, ns, "taken", is_true("Stalled")), what="Stalled")
    finally:
        assert service.stop() == 0, service.output()[-3000:]

    # The service is stopped: nothing observes these changes.
    create("fresh", {})
    patch("remote", {"registry": "registry.example.com:5001"})
    patch("taken", {"port": 5001})
    fresh, stale_ready, stale_stalled = (live(cluster, ns, n) for n in ("fresh", "remote", "taken"))
    assert fresh["status"] == {"observedGeneration": -1}  # the CRD's default
    for obj in (stale_ready, stale_stalled):
        assert obj["status"]["observedGeneration"] == 1 and obj["metadata"]["generation"] == 2
    assert condition(stale_ready, "Ready")["status"] == "True"

    objects = [ready, reconciling, stalled, stale_ready, stale_stalled, fresh]
    argo = argocd_health(gitops_checks, argocd_cm, objects)
    kst = [r["status"] for r in kstatus(gitops_checks, objects)]
    assert argo == [
        {"status": "Healthy",
         "message": "workflow pods use the remote registry registry.example.com:5000"},
        {"status": "Progressing", "message": "0/1 replicas ready"},
        {"status": "Degraded", "message": condition(stalled, "Stalled")["message"]},
        {"status": "Progressing", "message": "Waiting for the sync service to observe "
                                             "generation 2 (status is for generation 1)"},
        {"status": "Progressing", "message": "Waiting for the sync service to observe "
                                             "generation 2 (status is for generation 1)"},
        {"status": "Progressing", "message": "Waiting for the sync service to report status"},
    ]
    assert "Service/" in argo[2]["message"]  # the sync service's own words about the conflict
    assert kst == ["Current", "InProgress", "Failed", "InProgress", "InProgress", "InProgress"]

    service = sync()
    try:
        healed = wait_for(observed(cluster, ns, "remote", is_true("Ready")), what="Ready again")
        started = wait_for(observed(cluster, ns, "fresh", is_true("Reconciling")),
                           what="fresh cache reconciled")
    finally:
        assert service.stop() == 0, service.output()[-3000:]
    assert argocd_health(gitops_checks, argocd_cm, [healed, started]) == [
        {"status": "Healthy",
         "message": "workflow pods use the remote registry registry.example.com:5001"},
        {"status": "Progressing", "message": "0/1 replicas ready"},
    ]
    assert [r["status"] for r in kstatus(gitops_checks, [healed, started])] == [
        "Current", "InProgress"]


INSTALL_STAND_IN = """\
# Argo CD's install.yaml declares argocd-cm like this: no namespace, a few labels.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  url: https://argocd.example.com
"""


def test_argocd_cm_is_a_kustomize_patch_for_argo_cds_install(
    cluster: LocalCluster, tmp_path: Path, gitops_checks: GitopsChecks,
) -> None:
    """docs/gitops.md's kustomization: `namespace: argocd`, the install, the patch."""
    (tmp_path / "install.yaml").write_text(INSTALL_STAND_IN)
    (tmp_path / "argocd-cm.yaml").write_text(ARGOCD_CM.read_text())
    (tmp_path / "kustomization.yaml").write_text(
        "namespace: argocd\nresources:\n  - install.yaml\npatches:\n  - path: argocd-cm.yaml\n")
    built = yaml.safe_load(cluster.kubectl("kustomize", str(tmp_path)).stdout)
    assert built["metadata"]["namespace"] == "argocd"
    assert built["data"]["url"] == "https://argocd.example.com"
    assert built["data"][ARGOCD_HEALTH_KEY] == argocd_health_lua()
    stalled = {"apiVersion": schema.API_VERSION, "kind": schema.KIND,
               "metadata": {"name": "c", "namespace": "team", "generation": 1},
               "status": {"observedGeneration": 1, "conditions": [
                   {"type": "Stalled", "status": "True", "reason": "Conflict",
                    "message": "in the way"}]}}
    assert argocd_health(gitops_checks, built, [stalled]) == [
        {"status": "Degraded", "message": "in the way"}]
