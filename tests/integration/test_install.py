"""dist/install/ on a real API server, and the install's RBAC acting as its ServiceAccount.

The default install (namespace oras-cache-system) is really applied to the session
cluster; there is no kubelet, so its Pods stay Pending, but the ReplicaSet controller
creating them proves that the restricted Pod Security level admits them.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from constructs_lib import schema, to_yaml
from constructs_lib.install import render_install
from constructs_lib.install_git import GIT_NAME, render_git_install
from sync.apply.applyset import LAST_COMMIT, LAST_RESULT
from sync.apply.kube import Kube
from sync.render.synth import REPO_ROOT
from tests.harness import LocalCluster
from tests.integration.gitserver import WorkRepo
from tests.integration.syncproc import (
    SyncProcess,
    get,
    post_trigger,
    trigger_token_file,
    wait_for,
)

NS = "oras-cache-system"
SA = "oras-cache-sync"
ORASCACHES = f"orascaches.{schema.GROUP}"
APPLY = ("apply", "--server-side", "--force-conflicts", "--field-manager=orascache")


def rendered_names(manifests: list[dict[str, Any]]) -> list[str]:
    """What `kubectl apply -oname` prints for them, e.g. `deployment.apps/oras-cache-sync`."""
    out = []
    for m in manifests:
        group = m["apiVersion"].rpartition("/")[0]
        out.append(f"{m['kind'].lower()}{'.' + group if group else ''}/{m['metadata']['name']}")
    return out


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster) -> Iterator[str]:
    """`kubectl apply --server-side -f dist/install/`; returns kubectl's stderr.

    The webhook configuration is removed afterwards: nothing serves it in this cluster,
    and with failurePolicy Fail it would refuse the annotated Pods of later tests.
    """
    proc = cluster.kubectl(*APPLY, "-oname", "-f", str(REPO_ROOT / "dist/install"))
    expected = rendered_names([schema.crd(), *render_install(include_crd=False)])
    assert proc.stdout.split() == expected
    yield proc.stderr
    cluster.kubectl("delete", "mutatingwebhookconfiguration", "oras-cache-sync")


@pytest.fixture(scope="module")
def sa_api(cluster: LocalCluster, installed: str) -> Iterator[ApiClient]:
    with cluster.api_client(cluster.kubeconfig_for_service_account(NS, SA)) as api:
        yield api


def can_i(cluster: LocalCluster, kubeconfig: Path, *args: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), (args, proc.stdout, proc.stderr)
    assert proc.returncode == (0 if answer == "yes" else 1)
    return answer == "yes"


def raw(api: ApiClient, method: str, path: str, body: Any = None, **query: str) -> int:
    """One request as that client; returns the HTTP status (no typed models, no retries)."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = (
            "application/apply-patch+yaml" if method == "PATCH" else "application/json"
        )
    request = api.param_serialize(
        method,
        path,
        query_params=list(query.items()),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request, _request_timeout=30)
    response.read()
    status: int = response.status
    return status


def test_apply_is_accepted_and_idempotent(
    cluster: LocalCluster, installed: str, api_client: ApiClient
) -> None:
    assert "PodSecurity" not in installed, installed
    again = cluster.kubectl(*APPLY, "-f", str(REPO_ROOT / "dist/install"))
    assert "PodSecurity" not in again.stderr, again.stderr
    # The session had installed the same CRD from crds/ (another field manager): still served.
    cluster.kubectl("get", ORASCACHES, "--all-namespaces")
    deployment = json.loads(
        cluster.kubectl("get", "deployment", SA, "-n", NS, "-ojson", "--show-managed-fields").stdout
    )
    managers = {f["manager"] for f in deployment["metadata"]["managedFields"]}
    assert "orascache" in managers, managers


def test_restricted_namespace_admits_the_sync_pods(installed: str, api_client: ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    selector = "app.kubernetes.io/name=oras-cache,app.kubernetes.io/component=sync"
    deadline = time.monotonic() + 60
    while True:
        pods = core.list_namespaced_pod(NS, label_selector=selector).items
        if len(pods) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    events = core.list_namespaced_event(NS).items
    failures = [e.message for e in events if e.reason == "FailedCreate"]
    assert len(pods) >= 2, failures
    assert not failures
    for pod in pods:
        assert pod.spec.service_account_name == SA
        assert pod.spec.containers[0].security_context.read_only_root_filesystem is True


ALLOWED = [
    *[(verb, ORASCACHES) for verb in ("get", "list", "watch")],
    *[(verb, ORASCACHES, "--subresource=status") for verb in ("get", "patch", "update")],
    *[
        (verb, resource)
        for resource in ("services", "persistentvolumeclaims", "statefulsets.apps")
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    ],
    *[
        (verb, resource)
        for resource in ("events", "events.events.k8s.io")
        for verb in ("create", "patch")
    ],
]
DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "secrets"),
    ("create", ORASCACHES),
    ("update", ORASCACHES),
    ("patch", ORASCACHES),
    ("delete", ORASCACHES),
    ("delete", ORASCACHES, "--subresource=status"),
    ("update", "services"),
    ("update", "statefulsets.apps"),
    ("deletecollection", "statefulsets.apps"),
    ("create", "deployments.apps"),
    ("create", "pods"),
    ("get", "configmaps"),
    ("get", "events"),
    ("list", "events.events.k8s.io"),
    ("create", "leases.coordination.k8s.io"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("*", "*"),
]


@pytest.mark.parametrize("check", ALLOWED, ids=" ".join)
def test_service_account_can(
    cluster: LocalCluster, installed: str, namespace: str, check: tuple[str, ...]
) -> None:
    kubeconfig = cluster.kubeconfig_for_service_account(NS, SA)
    assert can_i(cluster, kubeconfig, *check, "-n", namespace)
    assert can_i(cluster, kubeconfig, *check, "--all-namespaces")


@pytest.mark.parametrize("check", DENIED, ids=" ".join)
def test_service_account_cannot(
    cluster: LocalCluster, installed: str, namespace: str, check: tuple[str, ...]
) -> None:
    kubeconfig = cluster.kubeconfig_for_service_account(NS, SA)
    assert not can_i(cluster, kubeconfig, *check, "-n", namespace)


def test_webhook_configuration_only_its_own(cluster: LocalCluster, installed: str) -> None:
    kubeconfig = cluster.kubeconfig_for_service_account(NS, SA)
    mwc = "mutatingwebhookconfigurations.admissionregistration.k8s.io"
    assert can_i(cluster, kubeconfig, "get", f"{mwc}/oras-cache-sync")
    assert can_i(cluster, kubeconfig, "update", f"{mwc}/oras-cache-sync")
    assert not can_i(cluster, kubeconfig, "update", f"{mwc}/someone-else")
    assert not can_i(cluster, kubeconfig, "create", mwc)
    assert not can_i(cluster, kubeconfig, "delete", f"{mwc}/oras-cache-sync")


def test_leases_only_in_its_namespace_and_by_name(cluster: LocalCluster, installed: str) -> None:
    kubeconfig = cluster.kubeconfig_for_service_account(NS, SA)
    lease = "leases.coordination.k8s.io"
    assert can_i(cluster, kubeconfig, "create", lease, "-n", NS)
    assert can_i(cluster, kubeconfig, "get", f"{lease}/{SA}", "-n", NS)
    assert can_i(cluster, kubeconfig, "update", f"{lease}/{SA}", "-n", NS)
    assert not can_i(cluster, kubeconfig, "get", f"{lease}/other", "-n", NS)
    assert not can_i(cluster, kubeconfig, "update", f"{lease}/other", "-n", NS)
    assert not can_i(cluster, kubeconfig, "delete", f"{lease}/{SA}", "-n", NS)
    assert not can_i(cluster, kubeconfig, "list", lease, "-n", NS)
    assert not can_i(cluster, kubeconfig, "create", lease, "-n", "default")
    assert not can_i(cluster, kubeconfig, "get", f"{lease}/{SA}", "-n", "default")
    assert not can_i(cluster, kubeconfig, "get", "secrets", "-n", NS)


def test_real_requests_as_the_service_account(
    sa_api: ApiClient, api_client: ApiClient, namespace: str
) -> None:
    cache = {
        "apiVersion": schema.API_VERSION,
        "kind": schema.KIND,
        "metadata": {"name": "c", "namespace": namespace},
        "spec": {},
    }
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        schema.GROUP, schema.VERSION, namespace, schema.PLURAL, cache
    )
    caches = f"/apis/{schema.API_VERSION}/{schema.PLURAL}"
    in_ns = f"/apis/{schema.API_VERSION}/namespaces/{namespace}/{schema.PLURAL}"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "c", "namespace": namespace},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 5000}]},
    }
    services = f"/api/v1/namespaces/{namespace}/services"
    # As the service writes it: with observedGeneration (the CRD defaults it to -1 otherwise).
    status = {**cache, "status": {"endpoint": "c-0.c:5000", "observedGeneration": 1}}
    del status["spec"]
    lease_name = f"t-{uuid.uuid4().hex[:8]}"
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease_name},
        "spec": {"holderIdentity": "test"},
    }
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
    try:
        # Allowed: list caches cluster-wide, write status, server-side apply a new child
        # (authorized as create + patch), delete it; create a lease in its namespace.
        assert raw(sa_api, "GET", caches) == 200
        assert raw(sa_api, "PATCH", f"{in_ns}/c/status", status, fieldManager="orascache") == 200
        assert raw(sa_api, "PATCH", f"{services}/c", service, fieldManager="orascache") == 201
        assert raw(sa_api, "PATCH", f"{services}/c", service, fieldManager="orascache") == 200
        assert raw(sa_api, "DELETE", f"{services}/c") == 200
        assert raw(sa_api, "POST", leases, lease) == 201
        # Forbidden: the new lease is not the one it may read; secrets; other kinds and
        # namespaces; deleting a cache or writing its spec.
        assert raw(sa_api, "GET", f"{leases}/{lease_name}") == 403
        assert raw(sa_api, "GET", f"/api/v1/namespaces/{namespace}/secrets") == 403
        assert raw(sa_api, "GET", f"/api/v1/namespaces/{NS}/secrets") == 403
        default_leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
        assert raw(sa_api, "POST", default_leases, lease) == 403
        deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
        assert raw(sa_api, "POST", deployments, deployment) == 403
        assert raw(sa_api, "DELETE", f"{in_ns}/c") == 403
        spec = {**cache, "spec": {"replicas": 1}}
        assert raw(sa_api, "PATCH", f"{in_ns}/c", spec, fieldManager="orascache") == 403
    finally:
        try:
            client.CoordinationV1Api(api_client).delete_namespaced_lease(lease_name, NS)
        except ApiException as err:
            if err.status != 404:
                raise
    stored = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        schema.GROUP, schema.VERSION, namespace, schema.PLURAL, "c"
    )
    assert stored["status"] == status["status"]


def test_namespaced_install_grants_only_the_watched_namespaces(
    cluster: LocalCluster, api_client: ApiClient, namespace: str
) -> None:
    """SyncService(watch_namespaces=[...]): Roles in those namespaces, no ClusterRole."""
    core = client.CoreV1Api(api_client)
    watched = f"{namespace[:50]}-w"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=watched)))
    try:
        manifests = render_install(
            namespace=namespace, watch_namespaces=[watched], include_crd=False
        )
        proc = cluster.kubectl(*APPLY, "-oname", "-f", "-", input=to_yaml(manifests))
        assert proc.stdout.split() == rendered_names(manifests)
        assert "PodSecurity" not in proc.stderr, proc.stderr
        kubeconfig = cluster.kubeconfig_for_service_account(namespace, SA)
        assert can_i(cluster, kubeconfig, "create", "statefulsets.apps", "-n", watched)
        assert can_i(cluster, kubeconfig, "watch", ORASCACHES, "-n", watched)
        assert can_i(
            cluster, kubeconfig, "patch", ORASCACHES, "--subresource=status", "-n", watched
        )
        assert can_i(cluster, kubeconfig, "create", "leases.coordination.k8s.io", "-n", namespace)
        assert not can_i(cluster, kubeconfig, "create", "statefulsets.apps", "-n", namespace)
        assert not can_i(cluster, kubeconfig, "list", ORASCACHES, "--all-namespaces")
        assert not can_i(cluster, kubeconfig, "create", "statefulsets.apps", "-n", "default")
        assert not can_i(cluster, kubeconfig, "create", "leases.coordination.k8s.io", "-n", watched)
    finally:
        core.delete_namespace(watched)


# ----- the git source's install (dist/install-git/) ------------------------------------------
GIT_INSTALL = REPO_ROOT / "dist/install-git"
# What docs/git-source.md documents: point the install at a repository with a patch of the env.
GIT_OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
patches:
  - patch: |
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: oras-cache-git-sync
        namespace: oras-cache-system
      spec:
        template:
          spec:
            containers:
              - name: sync
                env:
                  - name: ORASCACHE_GIT_REPO
                    value: https://github.com/example/caches.git
                  - name: ORASCACHE_GIT_PATH
                    value: clusters/prod/caches
"""


def test_git_install_is_accepted_by_the_api_server(
    cluster: LocalCluster, installed: str, tmp_path: Path
) -> None:
    """Server-side dry runs (the namespace oras-cache-system exists: `installed`)."""
    expected = sorted(rendered_names(render_git_install()))
    proc = cluster.kubectl(*APPLY, "--dry-run=server", "-oname", "-k", str(GIT_INSTALL))
    assert sorted(proc.stdout.split()) == expected  # kustomize orders by kind
    assert "PodSecurity" not in proc.stderr, proc.stderr

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        GIT_OVERLAY.format(base=os.path.relpath(GIT_INSTALL, overlay)))
    built = cluster.kubectl("kustomize", str(overlay)).stdout
    (deployment,) = [d for d in yaml.safe_load_all(built) if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in
           deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ORASCACHE_GIT_REPO"] == "https://github.com/example/caches.git"
    assert env["ORASCACHE_GIT_PATH"] == "clusters/prod/caches"
    assert env["ORASCACHE_GIT_REF"] == "main"
    proc = cluster.kubectl(*APPLY, "--dry-run=server", "-oname", "-f", "-", input=built)
    assert sorted(proc.stdout.split()) == expected
    proc = cluster.kubectl(*APPLY, "--dry-run=server", "-oname", "-f",
                           str(GIT_INSTALL / "git-sync-service.yaml"))
    assert proc.stdout.split() == rendered_names(render_git_install())


def cache_doc(name: str, namespace: str | None = None) -> str:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return yaml.safe_dump({"apiVersion": schema.API_VERSION, "kind": schema.KIND,
                           "metadata": meta, "spec": {}})


def assert_git_out_of_role(
    cluster: LocalCluster, kubeconfig: Path, namespace: str, target: str, other: str
) -> None:
    """As the git install's ServiceAccount: the Secrets API, other ConfigMaps, the parent
    elsewhere, other kinds, the OrasCache API, Events outside the parent's namespace."""
    with cluster.api_client(kubeconfig) as sa:
        cms = f"/api/v1/namespaces/{target}/configmaps"
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
        assert raw(sa, "GET", f"{cms}/orascache-git") == 200
        assert raw(sa, "GET", f"/api/v1/namespaces/{target}/secrets") == 403
        assert raw(sa, "GET", f"/api/v1/namespaces/{namespace}/secrets/x") == 403
        assert raw(sa, "GET", f"{cms}/kube-root-ca.crt") == 403
        assert raw(sa, "GET", cms) == 403
        assert raw(sa, "POST", cms, cm) == 403
        assert raw(sa, "PATCH", f"{cms}/x", cm, fieldManager="orascache") == 403
        assert raw(sa, "GET", f"/api/v1/namespaces/{other}/configmaps/orascache-git") == 403
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
        assert raw(sa, "POST", f"/apis/apps/v1/namespaces/{target}/deployments",
                   deployment) == 403
        assert raw(sa, "GET", f"/apis/{schema.API_VERSION}/{schema.PLURAL}") == 403
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                 "involvedObject": {"kind": "ConfigMap", "name": "x"}}
        assert raw(sa, "POST", f"/api/v1/namespaces/{other}/events", event) == 403
        assert raw(sa, "DELETE", f"/api/v1/namespaces/{target}/services") == 403
    assert not can_i(cluster, kubeconfig, "watch", "services", "-n", target)
    assert not can_i(cluster, kubeconfig, "update", "statefulsets.apps", "-n", target)
    assert not can_i(cluster, kubeconfig, "create", "leases.coordination.k8s.io", "-n",
                     namespace)
    assert not can_i(cluster, kubeconfig, "update",
                     "mutatingwebhookconfigurations.admissionregistration.k8s.io")


def assert_git_pod_admitted(core: client.CoreV1Api, namespace: str) -> None:
    """The restricted Pod Security level admits the git Pod (fsGroup, the Secret volume)."""
    pods: list[Any] = []
    deadline = time.monotonic() + 60
    while not pods and time.monotonic() < deadline:
        pods = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=git-sync").items
        time.sleep(0.5)
    failures = [e.message for e in core.list_namespaced_event(namespace).items
                if e.reason == "FailedCreate"]
    assert pods and not failures, failures


def test_git_install_rbac_is_enough_for_the_git_source_and_no_more(
    cluster: LocalCluster, api_client: ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The install's objects really applied (service in `namespace`, ApplySet parent and
    namespace-less caches in `target`), then `orascache sync --source git` run as its
    ServiceAccount: it applies, corrects drift and prunes; anything else is forbidden."""
    core = client.CoreV1Api(api_client)
    target, other = f"{namespace[:50]}-t", f"{namespace[:50]}-o"
    for ns in (target, other):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    kube = Kube(api_client)
    proc: SyncProcess | None = None
    try:
        manifests = render_git_install(namespace=namespace, target_namespace=target)
        applied = cluster.kubectl(*APPLY, "-oname", "-f", "-", input=to_yaml(manifests))
        assert applied.stdout.split() == rendered_names(manifests)
        assert "PodSecurity" not in applied.stderr, applied.stderr
        kubeconfig = cluster.kubeconfig_for_service_account(namespace, GIT_NAME)

        repo = WorkRepo(tmp_path / "remote" / "caches.git")
        first = (repo.write("caches/a.yaml", cache_doc("a"))
                 .write("caches/b.yaml", cache_doc("b", other)).commit())
        proc = SyncProcess(kubeconfig, [
            "--source", "git", "--repo", repo.url, "--ref", "main", "--path", "caches",
            "--namespace", target, "--interval", "1h", "--log-format", "text",
            "--git-dir", str(tmp_path / "clone"),
            "--trigger-token-file", str(trigger_token_file(tmp_path))],
            tmp_path / "sync.log").start()
        proc.wait_ready(60)
        parent_path = f"/api/v1/namespaces/{target}/configmaps/orascache-git"

        def annotations() -> dict[str, str]:
            found: dict[str, str] = (get(kube, parent_path) or {}).get(
                "metadata", {}).get("annotations") or {}
            return found

        wait_for(lambda: annotations().get(LAST_COMMIT) == first, timeout=60,
                 what=f"first commit applied as the ServiceAccount: {proc.output()[-2000:]}")
        assert get(kube, f"/apis/apps/v1/namespaces/{target}/statefulsets/a")
        assert get(kube, f"/apis/apps/v1/namespaces/{other}/statefulsets/b")

        def trigger() -> None:
            assert post_trigger(proc.port) == 202

        # Drift correction (list, get, create) as the ServiceAccount.
        kube.request("DELETE", f"/api/v1/namespaces/{other}/services/b")
        trigger()
        wait_for(lambda: get(kube, f"/api/v1/namespaces/{other}/services/b"), timeout=30,
                 what="Service b restored by the drift pass")
        # Prune (delete) as the ServiceAccount.
        second = repo.remove("caches/b.yaml").commit("drop b")
        trigger()
        wait_for(lambda: annotations().get(LAST_COMMIT) == second, timeout=60,
                 what="second commit applied")
        assert annotations()[LAST_RESULT] == "Applied"
        assert get(kube, f"/apis/apps/v1/namespaces/{other}/statefulsets/b") is None
        assert "Forbidden" not in proc.output() and "forbidden" not in proc.output()
        events = core.list_namespaced_event(target).items
        assert "Applied" in {e.reason for e in events if e.reporting_component == "orascache"}

        assert_git_out_of_role(cluster, kubeconfig, namespace, target, other)
        assert_git_pod_admitted(core, namespace)
    finally:
        if proc is not None and not proc.exited():
            proc.stop()
        for ns in (target, other):
            core.delete_namespace(ns)
        rbac = client.RbacAuthorizationV1Api(api_client)
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(GIT_NAME)
            except ApiException as err:
                if err.status != 404:
                    raise
