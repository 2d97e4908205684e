"""The harness against the real control plane: versions, controllers, RBAC, faults, leaks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.harness import LocalCluster
from tests.harness.ports import port_is_free
from tests.harness.procs import is_alive
from tests.harness.versions import k8s_version

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy (controllers are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _statefulset(name: str, replicas: int) -> client.V1StatefulSet:
    labels = {"app": name}
    container = client.V1Container(name="main", image="registry.invalid/never-pulled:1")
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1StatefulSetSpec(
            service_name=name,
            replicas=replicas,
            pod_management_policy="Parallel",  # OrderedReady stops at -0 without a kubelet
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )


def _pod_names(core: client.CoreV1Api, namespace: str, app: str) -> list[str]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return sorted(p.metadata.name for p in pods)


def test_server_reports_the_pinned_version(cluster: LocalCluster, api_client: ApiClient) -> None:
    info = client.VersionApi(api_client).get_code()
    assert info.git_version == k8s_version().version
    assert cluster.binaries is not None
    assert cluster.binaries.k8s_version == k8s_version().version


def test_built_kubectl_talks_to_the_cluster(cluster: LocalCluster) -> None:
    proc = cluster.kubectl("version", "--output=json")
    versions = json.loads(proc.stdout)
    assert versions["clientVersion"]["gitVersion"] == k8s_version().version
    assert versions["serverVersion"]["gitVersion"] == k8s_version().version
    assert f"--kubeconfig={cluster.kubeconfig}" in proc.args


def test_statefulset_gets_pods_and_gc_removes_them(api_client: ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_stateful_set(namespace, _statefulset("web", replicas=2))

    names = eventually(
        lambda: _pod_names(core, namespace, "web") == ["web-0", "web-1"],
        what="web-0 and web-1 from the StatefulSet controller",
    )
    assert names
    pod = core.read_namespaced_pod("web-0", namespace)
    assert pod.status.phase == "Pending"  # no kubelet
    assert pod.metadata.owner_references[0].kind == "StatefulSet"

    apps.delete_namespaced_stateful_set("web", namespace, propagation_policy="Background")
    eventually(
        lambda: _pod_names(core, namespace, "web") == [] or None,
        what="the garbage collector to delete the Pods",
    )


def test_deleting_an_owner_garbage_collects_its_dependents(
    api_client: ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as err:
            return err.status == 404
        return False

    eventually(gone, timeout=20, what="the dependent ConfigMap to be garbage-collected")


def test_service_account_is_forbidden_until_rbac_grants_it(
    cluster: LocalCluster,
    api_client: ApiClient,
    namespace: str,
    sa_kubeconfig: Callable[[str, str], Path],
) -> None:
    kubeconfig = sa_kubeconfig(namespace, "reader")
    with cluster.api_client(kubeconfig) as as_reader:
        review = client.AuthenticationV1Api(as_reader).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:reader"

        reader_core = client.CoreV1Api(as_reader)
        with pytest.raises(ApiException) as denied:
            reader_core.list_namespaced_secret(namespace)
        assert denied.value.status == 403

        rbac = client.RbacAuthorizationV1Api(api_client)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="secret-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="reader-reads-secrets"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="secret-reader"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
                ],
            ),
        )

        def allowed() -> bool:
            try:
                reader_core.list_namespaced_secret(namespace)
            except ApiException as err:
                if err.status != 403:
                    raise
                return False
            return True

        eventually(allowed, timeout=10, what="the RoleBinding to take effect")
    can_i = cluster.kubectl(
        "auth", "can-i", "delete", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert can_i.stdout.strip() == "no"


def test_client_certificate_users_and_groups_meet_rbac(
    cluster: LocalCluster, namespace: str
) -> None:
    alice = cluster.kubeconfig_for_user("alice", ["devs"])
    ask = ("auth", "can-i", "list", "pods", "-n", namespace)
    assert cluster.kubectl(*ask, kubeconfig=alice, check=False).stdout.strip() == "no"
    cluster.kubectl(
        "create", "rolebinding", "devs-view", "--clusterrole=view", "--group=devs", "-n", namespace
    )
    whoami = cluster.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}", kubeconfig=alice
    ).stdout
    assert "devs" in whoami
    eventually(
        lambda: cluster.kubectl(*ask, kubeconfig=alice, check=False).stdout.strip() == "yes",
        timeout=10,
        what="the group RoleBinding to take effect",
    )


def test_client_works_again_after_an_apiserver_restart(
    api_client: ApiClient, namespace: str, restart_apiserver: Callable[[], float]
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="before"), data={"k": "v"})
    )
    seconds = restart_apiserver()
    assert seconds < 30

    assert core.read_namespaced_config_map("before", namespace).data == {"k": "v"}
    # The controller-manager reconnects too: a new StatefulSet still gets its Pods.
    apps.create_namespaced_stateful_set(namespace, _statefulset("after", replicas=1))
    eventually(
        lambda: _pod_names(core, namespace, "after") == ["after-0"],
        what="a Pod created after the restart",
    )


TEST_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.harness.example.com}
spec:
  group: harness.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget is.
            properties:
              size: {type: integer, minimum: 1, description: How big.}
"""


def test_short_lived_cluster_with_a_crd_leaves_nothing_behind(tmp_path: Path) -> None:
    crd = tmp_path / "widgets.yaml"
    crd.write_text(TEST_CRD)
    with LocalCluster(crds=[crd]) as local:
        workdir, kubeconfig = local.workdir, local.kubeconfig
        assert local.is_running()
        pids = [c.pid for c in local.components.values()]
        ports = [p for c in local.components.values() for p in c.ports]
        assert all(is_alive(pid) for pid in pids)

        # The CRD went in before the controller-manager: its kind is usable at once and GC
        # of a custom object's dependents is immediate (not after KCM's 30 s rediscovery).
        widget = {
            "apiVersion": "harness.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"},
            "spec": {"size": 2},
        }
        local.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(widget))
        uid = local.kubectl(
            "get", "widget", "w", "-n", "default", "-o", "jsonpath={.metadata.uid}"
        ).stdout
        dependent = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "of-w",
                "namespace": "default",
                "ownerReferences": [
                    {
                        "apiVersion": "harness.example.com/v1",
                        "kind": "Widget",
                        "name": "w",
                        "uid": uid,
                    }
                ],
            },
        }
        local.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(dependent))
        explain = local.kubectl("explain", "widget.spec.size").stdout
        assert "How big." in explain

        local.kubectl("delete", "widget", "w", "-n", "default")
        began = time.monotonic()
        eventually(
            lambda: (
                "NotFound"
                in local.kubectl("get", "cm", "of-w", "-n", "default", check=False).stderr
            ),
            timeout=20,
            what="GC of the custom object's dependent",
        )
        assert time.monotonic() - began < 10

    assert not any(is_alive(pid) for pid in pids)
    assert all(port_is_free(port) for port in ports)
    assert not workdir.exists()
    assert not kubeconfig.exists()
