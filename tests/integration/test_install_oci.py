"""dist/install-oci/ on the real API server, and `orascache sync --source oci` run as its
ServiceAccount against the real registry (with htpasswd auth) and the real oras CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from constructs_lib import schema, to_yaml
from constructs_lib.install_oci import OCI_NAME, render_oci_install
from sync.apply.applyset import LAST_COMMIT, LAST_RESULT
from sync.apply.kube import Kube
from sync.publish.oci import push_artifact
from sync.render.synth import REPO_ROOT
from sync.sources.git import Credentials
from sync.sources.oras import Oras, Reference
from tests.harness import LocalCluster
from tests.harness.oras_tools import LocalRegistry, ensure_oras_tools
from tests.integration import syncproc
from tests.integration.syncproc import SyncProcess, get, wait_for
from tests.integration.test_install import APPLY, rendered_names

OCI_INSTALL = REPO_ROOT / "dist/install-oci"


def cache_doc(name: str, namespace: str | None = None) -> str:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return yaml.safe_dump({"apiVersion": schema.API_VERSION, "kind": schema.KIND,
                           "metadata": meta, "spec": {}})


def trigger(proc: SyncProcess) -> None:
    assert syncproc.post_trigger(proc.port) == 202


def assert_pod_admitted(core: client.CoreV1Api, namespace: str) -> None:
    """The restricted Pod Security level admits the Pod (fsGroup, the Secret volume)."""
    pods: list[Any] = []
    deadline = time.monotonic() + 60
    while not pods and time.monotonic() < deadline:
        pods = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=oci-sync").items
        time.sleep(0.5)
    failures = [e.message for e in core.list_namespaced_event(namespace).items
                if e.reason == "FailedCreate"]
    assert pods and not failures, failures


def test_oci_install_is_accepted_by_the_api_server(cluster: LocalCluster) -> None:
    """Server-side dry runs need the Namespace to exist: it is applied for real first."""
    manifests = render_oci_install()
    assert manifests[0]["kind"] == "Namespace"
    cluster.kubectl(*APPLY, "-f", "-", input=to_yaml(manifests[:1]))
    expected = sorted(rendered_names(manifests))
    proc = cluster.kubectl(*APPLY, "--dry-run=server", "-oname", "-k", str(OCI_INSTALL))
    assert sorted(proc.stdout.split()) == expected


def test_oci_install_rbac_is_enough_for_the_oci_source(
    cluster: LocalCluster, api_client: ApiClient, namespace: str, tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """The install applied (service in `namespace`, parent and namespace-less caches in
    `target`), then the OCI source run as its ServiceAccount, with registry credentials
    from a directory laid out as the mounted Secret: it applies and prunes, unforbidden."""
    tools = ensure_oras_tools()
    monkeypatch.setenv("ORASCACHE_ORAS", str(tools.oras))
    core = client.CoreV1Api(api_client)
    target, other = f"{namespace[:50]}-t", f"{namespace[:50]}-o"
    for ns in (target, other):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    kube = Kube(api_client)
    password = "inst-" + os.urandom(6).hex()
    proc: SyncProcess | None = None
    try:
        manifests = render_oci_install(namespace=namespace, target_namespace=target)
        applied = cluster.kubectl(*APPLY, "-oname", "-f", "-", input=to_yaml(manifests))
        assert applied.stdout.split() == rendered_names(manifests)
        assert "PodSecurity" not in applied.stderr, applied.stderr
        kubeconfig = cluster.kubeconfig_for_service_account(namespace, OCI_NAME)
        with LocalRegistry(tools.registry, auth=("robot", password)) as reg:
            ref = Reference.parse(f"{reg.address}/caches/src:main")
            oras = Oras(reg.address, Credentials("robot", password), plain_http=True,
                        binary=str(tools.oras))

            def publish(files: dict[str, str]) -> str:
                pushed = push_artifact(oras, ref, files, source="t", revision="t")
                return pushed.reference.split("@")[1]

            first = publish({"caches/a.yaml": cache_doc("a"),
                             "caches/b.yaml": cache_doc("b", other)})
            secret = tmp_path / "registry-credentials"  # laid out as the mounted Secret
            secret.mkdir()
            for key, value in (("username", "robot"), ("password", password)):
                (secret / key).write_text(value)
            proc = SyncProcess(kubeconfig, [
                "--source", "oci", "--artifact", str(ref), "--path", "caches",
                "--plain-http", "--registry-credentials-file", str(secret),
                "--namespace", target, "--applyset-name", "orascache-oci",
                "--interval", "1h", "--log-format", "text", "--trigger-token-file",
                str(syncproc.trigger_token_file(tmp_path))], tmp_path / "sync.log").start()
            proc.wait_ready(60)
            parent_path = f"/api/v1/namespaces/{target}/configmaps/orascache-oci"

            def annotations() -> dict[str, str]:
                found: dict[str, str] = (get(kube, parent_path) or {}).get(
                    "metadata", {}).get("annotations") or {}
                return found

            wait_for(lambda: annotations().get(LAST_COMMIT) == first, timeout=60,
                     what=f"first digest applied as the ServiceAccount: "
                     f"{proc.output()[-2000:]}")
            assert get(kube, f"/apis/apps/v1/namespaces/{other}/statefulsets/b")
            second = publish({"caches/a.yaml": cache_doc("a")})
            trigger(proc)
            wait_for(lambda: annotations().get(LAST_COMMIT) == second, timeout=60,
                     what="second digest applied")
            assert annotations()[LAST_RESULT] == "Applied"
            assert get(kube, f"/apis/apps/v1/namespaces/{other}/statefulsets/b") is None
            assert "orbidden" not in proc.output() and password not in proc.output()
        assert_pod_admitted(core, namespace)
    finally:
        if proc is not None and not proc.exited():
            proc.stop()
        for ns in (target, other):
            core.delete_namespace(ns)
        rbac = client.RbacAuthorizationV1Api(api_client)
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(OCI_NAME)
            except ApiException as err:
                if err.status != 404:
                    raise
