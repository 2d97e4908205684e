"""The install as users run it: `kubectl apply -f dist/install/` exactly as committed, on the
real node, with the sync service's image pulled by its name from the node's mirror.

The tests run in file order and share the install (module fixtures): the Deployment
becomes Available, an OrasCache becomes Ready, the original operator's examples go through
the in-cluster webhook via its Service, the leader fails over, a rollout restart refuses no
Pod creation, `kubectl delete -f dist/install/` leaves nothing behind, and then
`dist/install-git/` alone follows a git repository served on the bridge. The module's
teardown deletes the install in any case and puts the repo's CRDs back for the tests that
follow.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
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

from constructs_lib import annotations, schema
from tests.harness import LocalCluster
from tests.harness.crds import install_crds
from tests.harness.node import NETWORK, Node
from tests.integration.conftest import repo_crds
from tests.integration.gitserver import GitHttpServer, WorkRepo
from tests.integration.syncproc import wait_for
from tests.original_examples import (
    BREAKFAST_JOB,
    CONSUMER_POD,
    HELLO_WORLD_CACHE,
    PRODUCER_PODS,
    docs,
)

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "dist" / "install"
INSTALL_GIT = REPO / "dist" / "install-git"
SYSTEM = "oras-cache-system"
DEPLOYMENT = "oras-cache-sync"
LEASE = "oras-cache-sync"
LEASE_DURATION_S = 15  # the service's --lease-duration default
PART_OF = "app.kubernetes.io/part-of=oras-cache"
TIMEOUT_S = 180.0
# The kubelet's own files in every container, writable whatever the root filesystem is.
KUBELET_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log")

pytestmark = pytest.mark.timeout(900)


def kubectl(cluster: LocalCluster, *args: str, input: str | None = None,
            timeout: float = TIMEOUT_S) -> str:
    return cluster.kubectl(*args, input=input, timeout=timeout).stdout


def sync_pods(api: ApiClient) -> list[Any]:
    pods = client.CoreV1Api(api).list_namespaced_pod(
        SYSTEM, label_selector="app.kubernetes.io/component=sync").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def lease_holder(api: ApiClient) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, SYSTEM)
    except ApiException:
        return None
    holder: str | None = lease.spec.holder_identity
    return holder


def wait_available(cluster: LocalCluster) -> None:
    kubectl(cluster, "-n", SYSTEM, "rollout", "status", f"deployment/{DEPLOYMENT}",
            f"--timeout={TIMEOUT_S:.0f}s")


def cache_ready(api: ApiClient, ns: str, name: str) -> bool:
    try:
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            schema.GROUP, schema.VERSION, ns, schema.PLURAL, name)
    except ApiException:
        return False
    conditions = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
    return conditions.get("Ready") == "True"


def pod_log(api: ApiClient, ns: str, pod: str, container: str) -> str:
    try:
        return str(client.CoreV1Api(api).read_namespaced_pod_log(pod, ns, container=container))
    except ApiException:
        return ""


@pytest.fixture(scope="module")
def admin(cluster: LocalCluster, node: Node) -> Iterator[ApiClient]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, admin: ApiClient) -> Iterator[float]:
    """`kubectl apply -f dist/install/`, Available; yields the seconds it took."""
    began = time.monotonic()
    kubectl(cluster, "apply", "-f", str(INSTALL))
    wait_available(cluster)
    took = time.monotonic() - began
    print(f"\ndist/install/ Available in {took:.1f} s")
    yield took
    cluster.kubectl("delete", "-f", str(INSTALL), "--ignore-not-found", "--wait=true",
                    check=False, timeout=TIMEOUT_S)
    install_crds(cluster, repo_crds())  # for the tests after this module


@pytest.fixture(scope="module")
def workflows(cluster: LocalCluster, installed: float, admin: ApiClient) -> Iterator[str]:
    """A namespace with the original operator's cache, Ready."""
    ns = f"e-install-{uuid.uuid4().hex[:6]}"
    kubectl(cluster, "create", "namespace", ns)
    began = time.monotonic()
    kubectl(cluster, "apply", "-n", ns, "-f", "-", input=HELLO_WORLD_CACHE)
    wait_for(lambda: cache_ready(admin, ns, "orascache-sample"), timeout=TIMEOUT_S,
             interval=0.5, what="orascache-sample Ready=True")
    print(f"\nOrasCache Ready in {time.monotonic() - began:.1f} s")
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_install_is_available_with_a_leader_under_restricted_pod_security(
    cluster: LocalCluster, admin: ApiClient, installed: float
) -> None:
    deployment = client.AppsV1Api(admin).read_namespaced_deployment(DEPLOYMENT, SYSTEM)
    assert deployment.status.available_replicas == 2
    assert deployment.status.ready_replicas == 2
    names = {p.metadata.name for p in sync_pods(admin)}
    assert len(names) == 2
    holder = wait_for(lambda: lease_holder(admin) in names and lease_holder(admin),
                      timeout=LEASE_DURATION_S, what="a replica holding the Lease")
    assert holder in names
    # The namespace enforces "restricted", and its Pods pass it: a server-side dry run of the
    # same label warns about every Pod that would violate it.
    labels = client.CoreV1Api(admin).read_namespace(SYSTEM).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    check = cluster.kubectl("label", "--dry-run=server", "--overwrite", "namespace", SYSTEM,
                            "pod-security.kubernetes.io/enforce=restricted")
    assert "violate" not in check.stderr and "Warning" not in check.stderr, check.stderr


MOUNTS_PY = ("import os; "
             "print(' '.join(l.split()[1] for l in open('/proc/self/mounts') "
             "if 'rw' in l.split()[3].split(',') and not l.split()[1].startswith("
             "('/proc', '/sys', '/dev/')) and l.split()[1] != '/dev')); "
             "print(os.statvfs('/').f_flag & os.ST_RDONLY, "
             "os.statvfs('/opt/orascache').f_flag & os.ST_RDONLY)")


def test_nothing_writes_outside_tmp(cluster: LocalCluster, admin: ApiClient,
                                    installed: float) -> None:
    """The root filesystem is read-only; the one writable mount the Pod declares is /tmp."""
    for pod in sync_pods(admin):
        name = pod.metadata.name
        out = kubectl(cluster, "-n", SYSTEM, "exec", name, "-c", "sync", "--",
                      "python3", "-c", MOUNTS_PY).split("\n")
        writable = set(out[0].split()) - set(KUBELET_FILES)
        assert writable == {"/tmp"}, out
        assert out[1].split() == ["1", "1"], out  # ST_RDONLY on / and the venv
        touch = cluster.kubectl("-n", SYSTEM, "exec", name, "-c", "sync", "--", "touch",
                                "/opt/orascache/x", check=False)
        assert touch.returncode != 0 and "Read-only file system" in touch.stderr, touch


def test_an_orascache_becomes_ready(admin: ApiClient, workflows: str) -> None:
    assert cache_ready(admin, workflows, "orascache-sample")
    sts = client.AppsV1Api(admin).read_namespaced_stateful_set("orascache-sample", workflows)
    container = sts.spec.template.spec.containers[0]
    assert container.image == "ghcr.io/oras-project/registry:latest"  # pulled by name
    assert sts.status.ready_replicas == 1


def test_original_examples_through_the_in_cluster_webhook(
    cluster: LocalCluster, admin: ApiClient, workflows: str
) -> None:
    """The original's hello-world Job (perl:5.34.0) and multiple-hello-world Pods (ubuntu),
    unchanged: wired by the service's webhook through its Service, they complete and the
    consumer lists both producers' files."""
    ns, core = workflows, client.CoreV1Api(admin)
    began = time.monotonic()
    kubectl(cluster, "apply", "-n", ns, "-f", "-", input=BREAKFAST_JOB)
    kubectl(cluster, "apply", "-n", ns, "-f", "-", input=PRODUCER_PODS)
    job = client.BatchV1Api(admin).read_namespaced_job("breakfast", ns)
    assert "oras-push" in [c.name for c in job.spec.template.spec.containers]
    wait_for(lambda: client.BatchV1Api(admin).read_namespaced_job(
        "breakfast", ns).status.succeeded, timeout=TIMEOUT_S, interval=0.5,
        what="the breakfast Job complete")
    for name in ("hello-world-1", "hello-world-2"):
        assert "oras-push" in [c.name for c in core.read_namespaced_pod(name, ns).spec.containers]
        wait_for(lambda n=name: "oras-push: done" in pod_log(admin, ns, n, "oras-push"),
                 timeout=TIMEOUT_S, interval=0.5, what=f"{name} pushed")
    kubectl(cluster, "apply", "-n", ns, "-f", "-", input=CONSUMER_POD)
    wait_for(lambda: "hello-world-2.txt" in pod_log(admin, ns, "hello-world-3", "my-container"),
             timeout=TIMEOUT_S, interval=0.5, what="the consumer's listing")
    listing = pod_log(admin, ns, "hello-world-3", "my-container")
    assert "hello-world-1.txt" in listing and "hello-world-2.txt" in listing, listing
    print(f"\noriginal examples done in {time.monotonic() - began:.1f} s")
    for doc in docs(PRODUCER_PODS) + docs(CONSUMER_POD):
        core.delete_namespaced_pod(doc["metadata"]["name"], ns, grace_period_seconds=0)


def test_leader_pod_deleted_another_replica_leads_and_reconciles(
    cluster: LocalCluster, admin: ApiClient, workflows: str, tmp_path: Path
) -> None:
    leader = lease_holder(admin)
    standby = [p.metadata.name for p in sync_pods(admin) if p.metadata.name != leader]
    assert leader and len(standby) == 1, (leader, standby)
    # The leader's log outlives its Pod only if followed from before the deletion.
    followed = tmp_path / "leader.log"
    with followed.open("w") as out:
        follow = subprocess.Popen(
            [str(cluster.kubectl_path), f"--kubeconfig={cluster.kubeconfig}", "-n", SYSTEM,
             "logs", "-f", "--tail=20", leader, "-c", "sync"], stdout=out, stderr=out)
    try:
        time.sleep(1)
        began = time.monotonic()
        client.CoreV1Api(admin).delete_namespaced_pod(leader, SYSTEM)
        # The leader hands the Lease over on SIGTERM, and whichever replica asks first takes
        # it: the standby (it asks every retry period) or the Pod replacing the deleted one
        # (it asks as it starts). Both are a failover; any other holder is not.
        new = wait_for(lambda: lease_holder(admin) not in (None, leader) and lease_holder(admin),
                       timeout=LEASE_DURATION_S, interval=0.1, what="another replica leading")
        replicas = [p.metadata.name for p in sync_pods(admin)]
        assert new in replicas, (new, replicas)
    except AssertionError as err:  # both replicas' account of why, and the Lease
        lease = client.CoordinationV1Api(admin).read_namespaced_lease(LEASE, SYSTEM).spec
        raise AssertionError(
            f"{err}\nthe Lease: {lease}\n{leader}'s log (deleted):\n{followed.read_text()}"
            f"\n{standby[0]}'s log:\n{pod_log(admin, SYSTEM, standby[0], 'sync')[-4000:]}"
        ) from None
    finally:
        follow.terminate()
    took = time.monotonic() - began
    print(f"\nnew leader after {took:.1f} s: the {'standby' if new == standby[0] else 'new Pod'}")
    body = yaml.safe_load(HELLO_WORLD_CACHE)
    body["metadata"]["name"] = "after-failover"
    kubectl(cluster, "apply", "-n", workflows, "-f", "-", input=json.dumps(body))
    wait_for(lambda: cache_ready(admin, workflows, "after-failover"), timeout=TIMEOUT_S,
             interval=0.5, what="a cache created after the failover Ready")
    wait_available(cluster)


def _annotated_pod(index: int) -> dict[str, Any]:
    prefix = annotations.PREFIX
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"during-rollout-{index}", "labels": {"e2e": "rollout"},
                     "annotations": {f"{prefix}oras-cache": "orascache-sample",
                                     f"{prefix}output-uri": f"e2e/rollout:{index}",
                                     f"{prefix}output-path": "/tmp/result.txt"}},
        # Never scheduled: created (and wired) only, so the node is not loaded with them.
        "spec": {"nodeSelector": {"oras-cache.test/no-such-node": "true"},
                 "containers": [{"name": "app", "image": "busybox", "command": ["true"]}]},
    }


def test_rollout_restart_refuses_no_pod_creation(
    cluster: LocalCluster, admin: ApiClient, workflows: str
) -> None:
    core = client.CoreV1Api(admin)
    refused: list[str] = []
    created: list[Any] = []
    stop = threading.Event()

    def create_every_200ms() -> None:
        index = 0
        while not stop.is_set():
            tick = time.monotonic()
            try:
                created.append(core.create_namespaced_pod(workflows, _annotated_pod(index)))
            except ApiException as err:
                refused.append(f"{index}: {err.status} {err.body}")
            index += 1
            stop.wait(max(0.0, 0.2 - (time.monotonic() - tick)))

    thread = threading.Thread(target=create_every_200ms, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        began = time.monotonic()
        kubectl(cluster, "-n", SYSTEM, "rollout", "restart", f"deployment/{DEPLOYMENT}")
        wait_available(cluster)
        print(f"\nrollout restart done in {time.monotonic() - began:.1f} s, "
              f"{len(created)} Pods created meanwhile")
        time.sleep(2.0)  # the old Pods' last moments
    finally:
        stop.set()
        thread.join(5)
    assert not refused, refused
    unwired = [p.metadata.name for p in created
               if "oras-push" not in [c.name for c in p.spec.containers]]
    assert not unwired, unwired
    assert len(created) >= 20
    core.delete_collection_namespaced_pod(workflows, label_selector="e2e=rollout",
                                          grace_period_seconds=0)


def test_delete_leaves_nothing_behind(cluster: LocalCluster, admin: ApiClient,
                                      installed: float, workflows: str) -> None:
    began = time.monotonic()
    kubectl(cluster, "delete", "-f", str(INSTALL), "--wait=true")
    print(f"\nkubectl delete -f dist/install/ took {time.monotonic() - began:.1f} s")
    wait_for(lambda: cluster.kubectl("get", "namespace", SYSTEM, check=False).returncode != 0,
             timeout=TIMEOUT_S, interval=0.5, what=f"namespace {SYSTEM} gone")
    kinds = ("clusterroles,clusterrolebindings,mutatingwebhookconfigurations,"
             "customresourcedefinitions,namespaces")
    left = kubectl(cluster, "get", kinds, "-l", PART_OF, "-o", "name")
    assert left.strip() == "", left
    for name in ("clusterrole/oras-cache-sync", "clusterrole/oras-cache-sync-webhook",
                 "mutatingwebhookconfiguration/oras-cache-sync",
                 f"customresourcedefinition/{schema.PLURAL}.{schema.GROUP}"):
        got = cluster.kubectl("get", name, check=False)
        assert got.returncode != 0 and "NotFound" in got.stderr, (name, got.stdout)
    # Pods are created without the webhook again (nothing refuses them).
    pod = _annotated_pod(0)
    pod["metadata"]["name"] = "after-uninstall"
    created = client.CoreV1Api(admin).create_namespaced_pod(workflows, pod)
    assert [c.name for c in created.spec.containers] == ["app"]


def test_install_git_follows_a_repository_on_the_bridge(
    cluster: LocalCluster, admin: ApiClient, node: Node, tmp_path: Path
) -> None:
    """Alone (after the uninstall above: its teardown deletes the shared namespace), as the
    README says: the namespace, the credentials Secret, an overlay naming the repository,
    then `kubectl apply -k`. The repository is served by `git http-backend` on the bridge
    address (the one more port the node opens to Pods)."""
    repo = WorkRepo(tmp_path / "remote" / "caches")
    body = yaml.safe_load(HELLO_WORLD_CACHE)
    body["metadata"]["name"] = "from-git"
    repo.write("caches/from-git.yaml", yaml.safe_dump(body)).commit("a cache")
    server = GitHttpServer(tmp_path / "remote", "git-user", uuid.uuid4().hex,
                           host=NETWORK.gateway).start()
    node.allow_port(server.port)
    user, password = tmp_path / "user", tmp_path / "password"
    user.write_text(server.username)
    password.write_text(server.password)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(INSTALL_GIT, overlay)],  # kustomize: relative only
        "patches": [{"patch": yaml.safe_dump({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "oras-cache-git-sync", "namespace": SYSTEM},
            "spec": {"template": {"spec": {"containers": [{"name": "sync", "env": [
                {"name": "ORASCACHE_GIT_REPO", "value": server.url("caches")},
                {"name": "ORASCACHE_GIT_REF", "value": "main"},
                {"name": "ORASCACHE_GIT_PATH", "value": "caches"}]}]}}},
        })}],
    }))
    began = time.monotonic()
    try:
        kubectl(cluster, "create", "namespace", SYSTEM)
        kubectl(cluster, "-n", SYSTEM, "create", "secret", "generic",
                "oras-cache-git-credentials", f"--from-file=username={user}",
                f"--from-file=password={password}")
        kubectl(cluster, "apply", "-k", str(overlay))
        kubectl(cluster, "-n", SYSTEM, "rollout", "status", "deployment/oras-cache-git-sync",
                f"--timeout={TIMEOUT_S:.0f}s")
        apps = client.AppsV1Api(admin)

        def applied() -> bool:
            try:
                sts = apps.read_namespaced_stateful_set("from-git", "default")
            except ApiException:
                return False
            return bool(sts.status.ready_replicas)

        try:
            wait_for(applied, timeout=TIMEOUT_S, interval=0.5,
                     what="the repository's cache applied and its registry Ready")
        except AssertionError as err:
            logs = cluster.kubectl("-n", SYSTEM, "logs", "deployment/oras-cache-git-sync",
                                   "--tail=30", check=False)
            raise AssertionError(f"{err}\n{logs.stdout}{logs.stderr}") from None
        print(f"\ndist/install-git/: the repository's cache Ready in "
              f"{time.monotonic() - began:.1f} s")
        assert server.requests > 0
    finally:
        cluster.kubectl("delete", "-k", str(overlay), "--ignore-not-found", "--wait=true",
                        check=False, timeout=TIMEOUT_S)
        cluster.kubectl("-n", SYSTEM, "delete", "secret", "oras-cache-git-credentials",
                        "--ignore-not-found", check=False)
        cluster.kubectl("delete", "statefulsets,services,persistentvolumeclaims,configmaps",
                        "-n", "default", "-l", "applyset.kubernetes.io/part-of",
                        "--ignore-not-found", check=False)
        cluster.kubectl("delete", "configmap", "orascache-git", "-n", "default",
                        "--ignore-not-found", check=False)
        server.stop()
