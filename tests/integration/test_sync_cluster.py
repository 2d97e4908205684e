"""The sync service (cluster source) against the real control plane, as a real process."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from constructs_lib import schema
from constructs_lib.install import LEADER_ELECTION_RULES, WATCH_RULES
from sync.apply.kube import Kube
from tests.harness import LocalCluster
from tests.integration import syncproc
from tests.integration.syncproc import SyncProcess, sts, svc, wait_for

Start = Callable[..., SyncProcess]
LEASE = ["--leader-elect", "--lease-duration", "4", "--renew-deadline", "3",
         "--retry-period", "1"]


@pytest.fixture
def start_sync(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[Start]:
    procs: list[SyncProcess] = []

    def start(*args: str, kubeconfig: Path | None = None, ready: bool = True) -> SyncProcess:
        log = tmp_path / f"sync-{len(procs)}.log"
        proc = SyncProcess(kubeconfig or cluster.kubeconfig,
                           ["--namespace", namespace, "--log-format", "text", *args], log)
        procs.append(proc.start())
        return proc.wait_ready() if ready else proc

    yield start
    for proc in procs:
        if not proc.exited():
            proc.stop()


def cache_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": schema.API_VERSION, "kind": schema.KIND,
            "metadata": {"name": name}, "spec": spec}


def custom(api: ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_cache(api: ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    custom(api).create_namespaced_custom_object(schema.GROUP, schema.VERSION, ns,
                                                schema.PLURAL, cache_body(name, spec))


def patch_spec(api: ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    custom(api).patch_namespaced_custom_object(schema.GROUP, schema.VERSION, ns, schema.PLURAL,
                                               name, {"spec": spec})


def get_cache(api: ApiClient, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom(api).get_namespaced_custom_object(
        schema.GROUP, schema.VERSION, ns, schema.PLURAL, name)
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return {}





def converged(api: ApiClient, ns: str, name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        obj = get_cache(api, ns, name)
        gen = obj["metadata"]["generation"]
        if obj.get("status", {}).get("observedGeneration") == gen and condition(obj, "Ready"):
            return obj
        return None

    return check


def test_create_update_and_prune(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str
) -> None:
    start_sync()
    create_cache(api_client, namespace, "c1", {})
    obj = wait_for(converged(api_client, namespace, "c1"), what="first status")
    statefulset = wait_for(lambda: sts(kube, namespace, "c1"), what="StatefulSet")
    service = wait_for(lambda: svc(kube, namespace, "c1"), what="Service")
    uid = obj["metadata"]["uid"]
    for child in (statefulset, service):
        assert child["metadata"]["ownerReferences"] == [{
            "apiVersion": schema.API_VERSION, "kind": schema.KIND, "name": "c1", "uid": uid,
            "controller": True, "blockOwnerDeletion": True}]
        assert child["metadata"]["labels"]["cache.converged-computing.github.io/cache"] == "c1"
        managers = {m["manager"] for m in child["metadata"]["managedFields"]}
        assert "orascache" in managers
    assert service["spec"]["clusterIP"] == "None"
    status = obj["status"]
    assert status["endpoint"] == f"c1-0.c1.{namespace}.svc.cluster.local:5000"
    assert condition(obj, "Ready")["status"] == "False"  # no kubelet: never ready here
    assert condition(obj, "Ready")["reason"] == "Progressing"
    assert condition(obj, "Reconciling")["status"] == "True"
    assert condition(obj, "Stalled")["status"] == "False"
    assert {(i["kind"], i["name"]) for i in status["inventory"]} == {
        ("StatefulSet", "c1"), ("Service", "c1")}
    events = client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector="involvedObject.name=c1").items
    assert any(e.reason == "Applied" and "created StatefulSet" in e.message for e in events)

    patch_spec(api_client, namespace, "c1", {"port": 6000})
    wait_for(lambda: get_cache(api_client, namespace, "c1")["status"].get(
        "observedGeneration") == 2, what="observedGeneration 2")
    container = sts(kube, namespace, "c1")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == 6000
    assert svc(kube, namespace, "c1")["spec"]["ports"][0]["port"] == 6000

    # An immutable StatefulSet field (volumeClaimTemplates) changes: recreated, Pods orphaned.
    patch_spec(api_client, namespace, "c1", {"storage": {"size": "1Gi"}})
    wait_for(lambda: (sts(kube, namespace, "c1") or {}).get("spec", {}).get(
        "volumeClaimTemplates"), timeout=30, what="StatefulSet recreated with a claim")

    patch_spec(api_client, namespace, "c1", {"deploy": False, "registry": "r.example.com",
                                             "storage": None})
    wait_for(lambda: sts(kube, namespace, "c1") is None and svc(kube, namespace, "c1") is None,
             what="children pruned")
    obj = wait_for(converged(api_client, namespace, "c1"), what="remote status")
    assert condition(obj, "Ready") | {"lastTransitionTime": ""} == {
        "type": "Ready", "status": "True", "reason": "RemoteRegistry", "lastTransitionTime": "",
        "observedGeneration": obj["metadata"]["generation"],
        "message": "workflow pods use the remote registry r.example.com"}
    assert obj["status"]["inventory"] == []
    assert obj["status"]["endpoint"] == "r.example.com"

    # The original operator's remote cache: `deploy: false` alone, pods name the registry.
    patch_spec(api_client, namespace, "c1", {"registry": None})
    obj = wait_for(converged(api_client, namespace, "c1"), what="status without a registry")
    assert condition(obj, "Ready") | {"lastTransitionTime": ""} == {
        "type": "Ready", "status": "True", "reason": "RemoteRegistry", "lastTransitionTime": "",
        "observedGeneration": obj["metadata"]["generation"],
        "message": "no registry runs in the cluster: workflow pods name their remote registry "
                   "with the oras.converged-computing.github.io/registry annotation"}
    assert obj["status"]["endpoint"] == (
        "(each pod's oras.converged-computing.github.io/registry annotation)")


def test_drift_is_corrected(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    start_sync()
    create_cache(api_client, namespace, "d", {})
    first = wait_for(lambda: sts(kube, namespace, "d"), what="StatefulSet")
    cluster.kubectl("-n", namespace, "delete", "statefulset", "d", "--wait=false")
    wait_for(lambda: (sts(kube, namespace, "d") or {}).get("metadata", {}).get("uid")
             not in (None, first["metadata"]["uid"]), what="StatefulSet recreated")
    cluster.kubectl("-n", namespace, "scale", "statefulset", "d", "--replicas=3")
    cluster.kubectl("-n", namespace, "set", "image", "statefulset/d", "registry=evil:1")
    wait_for(lambda: (s := sts(kube, namespace, "d")) and s["spec"]["replicas"] == 1
             and s["spec"]["template"]["spec"]["containers"][0]["image"] == schema.DEFAULT_IMAGE,
             what="hand edits reverted")
    cluster.kubectl("-n", namespace, "delete", "service", "d", "--wait=false")
    wait_for(lambda: svc(kube, namespace, "d"), what="Service recreated")


def test_invalid_spec_stalls_and_keeps_children(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    """An older, looser CRD lets an invalid spec in: reported, nothing deleted or changed."""
    start_sync()
    create_cache(api_client, namespace, "v", {})
    before = wait_for(lambda: sts(kube, namespace, "v"), what="StatefulSet")
    wait_for(converged(api_client, namespace, "v"))
    loose = [{"op": "replace", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec",
              "value": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}]
    crd = f"crd/{schema.PLURAL}.{schema.GROUP}"
    cluster.kubectl("patch", crd, "--type=json", "-p", json.dumps(loose))
    try:
        wait_for(lambda: _try_patch(api_client, namespace, "v", {"replicas": 0}),
                 what="loose CRD in effect")
        obj = wait_for(lambda: (o := get_cache(api_client, namespace, "v")) and condition(
            o, "Stalled").get("status") == "True" and o, what="Stalled")
    finally:
        cluster.kubectl("apply", "--server-side", "--force-conflicts",
                        "--field-manager=oras-cache-harness", "-f", "crds/orascache.yaml")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.replicas: must be >= 1" in stalled["message"]
    assert condition(obj, "Ready")["status"] == "False"
    after = sts(kube, namespace, "v")
    assert after is not None
    # kube-controller-manager writes status (resourceVersion moves); spec stays ours.
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    events = client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector="involvedObject.name=v").items
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in events)


def _try_patch(api: ApiClient, ns: str, name: str, spec: dict[str, Any]) -> bool:
    try:
        patch_spec(api, ns, name, spec)
    except ApiException:
        return False
    return True


def test_object_owned_by_someone_else_is_a_conflict(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "taken"}, "spec": {"ports": [{"port": 80}]}})
    start_sync()
    create_cache(api_client, namespace, "taken", {})
    obj = wait_for(lambda: (o := get_cache(api_client, namespace, "taken")) and condition(
        o, "Ready").get("reason") == "Conflict" and o, what="Conflict")
    assert condition(obj, "Stalled")["status"] == "True"
    assert "Service/" in condition(obj, "Ready")["message"]
    service = svc(kube, namespace, "taken")
    assert service is not None and "ownerReferences" not in service["metadata"]
    assert service["spec"]["ports"][0]["port"] == 80


def test_deleting_the_cache_garbage_collects_children(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str
) -> None:
    start_sync()
    create_cache(api_client, namespace, "gc", {})
    wait_for(lambda: sts(kube, namespace, "gc") and svc(kube, namespace, "gc"))
    custom(api_client).delete_namespaced_custom_object(
        schema.GROUP, schema.VERSION, namespace, schema.PLURAL, "gc")
    wait_for(lambda: sts(kube, namespace, "gc") is None and svc(kube, namespace, "gc") is None,
             timeout=30, what="garbage collection by kube-controller-manager")


def test_foreground_deletion_of_the_cache_completes(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str
) -> None:
    """The cache stays, with a deletionTimestamp, until its children are gone: the
    service must not apply them again meanwhile (else the deletion never ends)."""
    start_sync()
    create_cache(api_client, namespace, "fg", {"storage": {"size": "1Gi"}})
    wait_for(lambda: sts(kube, namespace, "fg") and svc(kube, namespace, "fg"))
    custom(api_client).delete_namespaced_custom_object(
        schema.GROUP, schema.VERSION, namespace, schema.PLURAL, "fg",
        body={"propagationPolicy": "Foreground"})

    def gone() -> bool:
        try:
            get_cache(api_client, namespace, "fg")
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=60, what="foreground deletion of the cache")
    assert sts(kube, namespace, "fg") is None and svc(kube, namespace, "fg") is None


def test_start_up_creates_children_without_reading_them_first(
    start_sync: Start, api_client: ApiClient, namespace: str, cluster: LocalCluster
) -> None:
    """Children missing from the watch cache are created straight away (create-only), not
    GET first: two requests less per cache when the service starts on new caches."""
    for name in ("n1", "n2"):
        create_cache(api_client, namespace, name, {})

    start_sync()
    for name in ("n1", "n2"):
        wait_for(converged(api_client, namespace, name))
    requests = syncproc.service_requests(cluster, namespace, {"statefulsets", "services"},
                                         verbs=("get", "patch"))
    assert requests == {"patch statefulsets/": 2, "patch services/": 2}  # apply creates


def test_own_writes_do_not_trigger_reconciles(
    start_sync: Start, api_client: ApiClient, namespace: str
) -> None:
    """The watch events of our own status write and applies are echoes, not work: a cache
    whose children nobody else touches converges in exactly one reconcile."""
    proc = start_sync()
    create_cache(api_client, namespace, "quiet",
                 {"deploy": False, "registry": "r.example.com", "port": 443})
    wait_for(converged(api_client, namespace, "quiet"))
    time.sleep(1.5)  # the echo of the status write has arrived by now
    assert proc.metric("orascache_reconciles_total") == 1


def write_requests(cluster: LocalCluster, namespace: str) -> dict[str, int]:
    """The service's writes to the kinds it manages (its prunes are counted separately)."""
    return syncproc.service_requests(cluster, namespace,
                                     {"statefulsets", "services", "orascaches"})


def test_idle_resync_makes_zero_writes(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    proc = start_sync("--resync-period", "0.5")
    for name in ("i1", "i2", "i3"):
        create_cache(api_client, namespace, name, {"storage": {"size": "1Gi"}} if name == "i3"
                     else {})
    for name in ("i1", "i2", "i3"):
        wait_for(converged(api_client, namespace, name))
    time.sleep(1.5)  # let follow-up events settle
    before = write_requests(cluster, namespace)
    reconciles = proc.metric("orascache_reconciles_total")
    deletes = proc.metric('orascache_objects_total{action="deleted"}')
    time.sleep(3)
    after = write_requests(cluster, namespace)
    assert proc.metric('orascache_objects_total{action="deleted"}') == deletes
    assert proc.metric("orascache_reconciles_total") >= reconciles + 9, "no resync happened"
    assert after == before, {k: after[k] - before.get(k, 0) for k in after}


def test_survives_an_apiserver_restart(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str,
    restart_apiserver: Callable[[], float], cluster: LocalCluster,
) -> None:
    start_sync()
    create_cache(api_client, namespace, "before", {})
    wait_for(converged(api_client, namespace, "before"))
    restart_apiserver()
    with cluster.api_client() as api:
        create_cache(api, namespace, "after", {})
        wait_for(converged(api, namespace, "after"), timeout=40, what="converged after restart")
        assert sts(Kube(api), namespace, "after") is not None
        assert get_cache(api, namespace, "before")["status"]["observedGeneration"] == 1


def lease_holder(api: ApiClient, ns: str, name: str = "oras-cache-sync") -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, ns)
    except ApiException:
        return None
    return lease.spec.holder_identity if lease.spec else None


def test_leader_election_failover_and_release(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str
) -> None:
    lease = [*LEASE, "--lease-namespace", namespace]
    a = start_sync(*lease, "--identity", "a")
    b = start_sync(*lease, "--identity", "b")
    leader_id = wait_for(lambda: lease_holder(api_client, namespace), what="a leader")
    leader, standby = (a, b) if leader_id == "a" else (b, a)
    assert standby.get("/readyz") == (200, "standby\n")
    create_cache(api_client, namespace, "l1", {})
    wait_for(converged(api_client, namespace, "l1"))
    assert standby.metric("orascache_reconciles_total") == 0, "only the leader writes"

    leader.signal(signal.SIGKILL)
    started = time.monotonic()
    wait_for(lambda: lease_holder(api_client, namespace) == ("b" if leader_id == "a" else "a"),
             timeout=15, what="failover")
    failover = time.monotonic() - started
    assert failover < 4 + 3, f"failover took {failover:.1f}s for a 4 s lease"
    create_cache(api_client, namespace, "l2", {})
    wait_for(converged(api_client, namespace, "l2"), what="new leader reconciles")

    assert standby.stop() == 0
    assert lease_holder(api_client, namespace) in (None, ""), "lease released on SIGTERM"


def test_runs_as_the_install_service_account(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str,
    sa_kubeconfig: Callable[[str, str], Path], cluster: LocalCluster,
) -> None:
    rbac = client.RbacAuthorizationV1Api(api_client)
    rules = [*WATCH_RULES, *LEADER_ELECTION_RULES]
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "sync"}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "sync"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sync"},
        "subjects": [{"kind": "ServiceAccount", "name": "oras-cache-sync",
                      "namespace": namespace}]})
    kubeconfig = sa_kubeconfig(namespace, "oras-cache-sync")
    start_sync(*LEASE, "--lease-namespace", namespace, kubeconfig=kubeconfig)
    create_cache(api_client, namespace, "sa", {})
    obj = wait_for(converged(api_client, namespace, "sa"), what="converged as the SA")
    assert sts(kube, namespace, "sa") is not None
    assert lease_holder(api_client, namespace)
    assert condition(obj, "Stalled")["status"] == "False"
    denied = cluster.kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig,
                             check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr


def test_start_up_errors_are_clear(
    start_sync: Start, namespace: str, sa_kubeconfig: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    nobody = start_sync(kubeconfig=sa_kubeconfig(namespace, "nobody"), ready=False)
    wait_for(nobody.exited, what="exit without permission")
    assert nobody.proc is not None and nobody.proc.returncode == 1
    assert "not allowed to list orascaches in namespace" in nobody.output()

    unreachable = tmp_path / "unreachable.kubeconfig"
    unreachable.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    gone = start_sync(kubeconfig=unreachable, ready=False)
    wait_for(gone.exited, timeout=60, what="exit when unreachable")
    assert gone.proc is not None and gone.proc.returncode == 1
    assert "cannot reach the API server at https://127.0.0.1:1" in gone.output()


def image_and_replicas(kube: Kube, ns: str, name: str) -> tuple[str, int]:
    obj = sts(kube, ns, name)
    assert obj is not None
    return obj["spec"]["template"]["spec"]["containers"][0]["image"], obj["spec"]["replicas"]


def edit_by_hand(cluster: LocalCluster, ns: str, name: str) -> None:
    """The issue's reproduction: `kubectl scale` and `kubectl set image`."""
    cluster.kubectl("-n", ns, "scale", "statefulset", name, "--replicas=4")
    cluster.kubectl("-n", ns, "set", "image", f"statefulset/{name}", "registry=evil:1")


def test_hand_edits_made_while_stopped_are_corrected_on_start(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    """Fault 7 (cluster source): the hash annotation of a child edited while the service
    was down still matches; the first sight after start-up must not trust it."""
    proc = start_sync()
    for name in ("edited", "untouched"):
        create_cache(api_client, namespace, name, {})
    for name in ("edited", "untouched"):
        wait_for(converged(api_client, namespace, name))
    assert proc.stop() == 0
    edit_by_hand(cluster, namespace, "edited")
    assert image_and_replicas(kube, namespace, "edited") == ("evil:1", 4)
    untouched = sts(kube, namespace, "untouched")
    assert untouched is not None
    generation = untouched["metadata"]["generation"]

    started = time.monotonic()
    proc = start_sync()
    wait_for(lambda: image_and_replicas(kube, namespace, "edited") == (
        schema.DEFAULT_IMAGE, 1), what="hand edits made while stopped reverted")
    took = time.monotonic() - started
    wait_for(lambda: proc.metric("orascache_reconciles_total") >= 2, what="both reconciled")
    assert proc.metric('orascache_objects_total{action="configured"}') == 1, took
    after = sts(kube, namespace, "untouched")
    assert after is not None and after["metadata"]["generation"] == generation
    syncproc.report_fault(
        "7. hand edits while the service is down (cluster source: scale + set image)",
        "first sight checked by dry-run: the edited StatefulSet re-applied, the other "
        "left alone", took, "1 apply (+ 1 dry-run per child)", 0)


def test_restart_with_nothing_drifted_makes_zero_writes(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    """One dry-run per child at start-up, and no write: quantities that the server
    normalises (1024Mi -> 1Gi, 2000m -> 2, 0.5 -> 500m), fields it defaults inside
    the containers and ports we set, and its own key order all cancel out."""
    specs: dict[str, dict[str, Any]] = {
        "plain": {},
        "normalised": {"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"},
                                     "limits": {"cpu": "2000m", "memory": "1048576Ki"}},
                       "storage": {"size": "1024Mi"}},
        "remote": {"deploy": False, "registry": "r.example.com"},
    }
    proc = start_sync()
    for name, spec in specs.items():
        create_cache(api_client, namespace, name, spec)
    for name in specs:
        wait_for(converged(api_client, namespace, name))
    live = sts(kube, namespace, "normalised")
    assert live is not None
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}  # normalised
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "1Gi"}
    assert container["imagePullPolicy"] and container["ports"][0]["protocol"] == "TCP"
    assert proc.stop() == 0

    before = write_requests(cluster, namespace)
    dry_runs = syncproc.service_requests(cluster, namespace, {"statefulsets", "services"},
                                        dry_run=True)
    proc = start_sync()
    wait_for(lambda: proc.metric("orascache_reconciles_total") >= 3, what="three reconciles")
    time.sleep(1.5)  # anything the first pass would trigger has happened by now
    assert write_requests(cluster, namespace) == before
    assert proc.metric('orascache_objects_total{action="unchanged"}') == 4
    assert proc.metric("orascache_status_writes_total") == 0
    checked = syncproc.service_requests(cluster, namespace, {"statefulsets", "services"},
                                        dry_run=True)
    assert sum(checked.values()) - sum(dry_runs.values()) == 4, "one dry-run per child"


def test_drift_report_mode_names_the_paths_and_writes_nothing(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    """--drift=report: a hand edit (while running, and while stopped) is left as it is,
    shown as the condition Drifted with its field paths, an Event and a metric; editing
    it back clears the condition."""
    proc = start_sync("--drift", "report")
    create_cache(api_client, namespace, "r", {})
    wait_for(converged(api_client, namespace, "r"))
    cluster.kubectl("-n", namespace, "scale", "statefulset", "r", "--replicas=3")

    def drifted() -> dict[str, Any]:
        return condition(get_cache(api_client, namespace, "r"), "Drifted")

    cond = wait_for(lambda: drifted().get("status") == "True" and drifted(),
                    what="condition Drifted")
    assert cond["message"] == f"StatefulSet/{namespace}/r: spec.replicas"
    assert cond["reason"] == "DriftDetected"
    assert image_and_replicas(kube, namespace, "r") == (schema.DEFAULT_IMAGE, 3)
    assert proc.metric("orascache_drifted_objects") == 1
    assert proc.metric('orascache_objects_total{action="configured"}') == 0
    events = client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector="involvedObject.name=r").items
    assert any(e.reason == "Drifted" and e.type == "Warning" and "spec.replicas" in e.message
               for e in events)

    cluster.kubectl("-n", namespace, "scale", "statefulset", "r", "--replicas=1")
    wait_for(lambda: not drifted(), what="Drifted cleared")
    assert proc.metric("orascache_drifted_objects") == 0

    assert proc.stop() == 0
    edit_by_hand(cluster, namespace, "r")
    before = write_requests(cluster, namespace)
    proc = start_sync("--drift", "report")
    cond = wait_for(lambda: drifted().get("status") == "True" and drifted(),
                    what="Drifted after start-up")
    assert cond["message"] == (f"StatefulSet/{namespace}/r: spec.replicas, "
                               "spec.template.spec.containers[0].image")
    assert image_and_replicas(kube, namespace, "r") == ("evil:1", 4)
    after = write_requests(cluster, namespace)
    assert {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)} == {
        "patch orascaches/status": 1}, "only the status write"


def test_new_leader_corrects_edits_made_during_failover(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    """The standby has never seen the children: it checks them when it takes over."""
    lease = [*LEASE, "--lease-namespace", namespace]
    a = start_sync(*lease, "--identity", "a")
    b = start_sync(*lease, "--identity", "b")
    leader_id = wait_for(lambda: lease_holder(api_client, namespace), what="a leader")
    leader = a if leader_id == "a" else b
    create_cache(api_client, namespace, "f", {})
    wait_for(converged(api_client, namespace, "f"))
    leader.signal(signal.SIGKILL)
    edit_by_hand(cluster, namespace, "f")  # before the standby's lease is up
    wait_for(lambda: lease_holder(api_client, namespace) not in (None, leader_id),
             timeout=15, what="failover")
    wait_for(lambda: image_and_replicas(kube, namespace, "f") == (schema.DEFAULT_IMAGE, 1),
             what="edits reverted by the new leader")


def compact_etcd(cluster: LocalCluster) -> int:
    """Compact etcd's whole history up to its current revision (etcd's own JSON gateway);
    returns that revision."""
    base = f"http://127.0.0.1:{cluster.components['etcd'].ports[0]}/v3/kv"

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{base}/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            out: dict[str, Any] = json.loads(resp.read())
            return out

    revision = int(post("range", {"key": "Lw=="})["header"]["revision"])  # key "/"
    post("compaction", {"revision": str(revision), "physical": True})
    return revision


def test_watch_expired_by_compaction_relists_and_converges(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str,
    restart_apiserver: Callable[[], float], cluster: LocalCluster,
) -> None:
    """Fault 6: the service's watches resume from resourceVersions that etcd compacted
    away (kube-apiserver restarted, so its watch cache cannot serve them either): 410
    Gone, a relist, and changes made in between are not lost."""
    proc = start_sync()
    create_cache(api_client, namespace, "w1", {})
    wait_for(converged(api_client, namespace, "w1"))
    for i in range(20):  # history to compact away
        client.CoreV1Api(api_client).create_namespaced_config_map(
            namespace, {"metadata": {"name": f"filler-{i}"}})
    compact_etcd(cluster)
    restart_apiserver()
    began = time.monotonic()
    with cluster.api_client() as api:
        fresh = Kube(api)
        patch_spec(api, namespace, "w1", {"port": 6000})
        create_cache(api, namespace, "w2", {})
        wait_for(lambda: "watch expired, relisting" in proc.output(), timeout=30,
                 what="a 410 Gone and a relist")
        wait_for(converged(api, namespace, "w2"), timeout=40, what="w2 converged")
        wait_for(lambda: (svc(fresh, namespace, "w1") or {}).get("spec", {}).get(
            "ports", [{}])[0].get("port") == 6000, timeout=40, what="w1 on port 6000")
        # The status write follows the applies: seeing the Service first is no failure.
        wait_for(lambda: get_cache(api, namespace, "w1")["status"]["observedGeneration"] == 2,
                 timeout=10, what="w1's status for generation 2")
        syncproc.report_fault(
            "6. watch expired: etcd compacted to its current revision, kube-apiserver "
            "restarted, changes made meanwhile", "410 Gone on resume, relisted, reconciled "
            "the edited and the new cache", time.monotonic() - began,
            "the changes' own", 0)


SHARD = "sharding.cache.converged-computing.github.io/key"


def label_cache(api: ApiClient, ns: str, name: str, shard: str | None) -> None:
    """`kubectl label orascache NAME KEY=SHARD --overwrite` (or `KEY-` for None)."""
    custom(api).patch_namespaced_custom_object(
        schema.GROUP, schema.VERSION, ns, schema.PLURAL, name,
        {"metadata": {"labels": {SHARD: shard}}})


def children_of(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    """Every StatefulSet and Service labelled as `name`'s, whoever applied it."""
    query = {"labelSelector": f"cache.converged-computing.github.io/cache={name}"}
    return [o for path in (f"/apis/apps/v1/namespaces/{ns}/statefulsets",
                           f"/api/v1/namespaces/{ns}/services")
            for o in kube.request("GET", path, query=query)["items"]]


def moved(api: ApiClient, kube: Kube, ns: str, name: str, shard: str | None,
          ) -> Callable[[], bool]:
    """The cache's two children carry its shard label (or none) and exactly one owner,
    the cache itself."""
    def check() -> bool:
        uid = get_cache(api, ns, name)["metadata"]["uid"]
        children = children_of(kube, ns, name)
        return len(children) == 2 and all(
            (c["metadata"].get("labels") or {}).get(SHARD) == shard
            and [(r["uid"], r.get("controller")) for r in c["metadata"]["ownerReferences"]]
            == [(uid, True)] for c in children)
    return check


def test_shards_reconcile_their_own_caches_and_take_over_moved_ones(
    start_sync: Start, api_client: ApiClient, kube: Kube, namespace: str
) -> None:
    """Two shards (Flux style): `--shard-key a` and `--shard-key ''` (unlabelled caches),
    each with its own Lease. Caches moved between them with a label change keep their
    children (same uids, one owner), and only the new shard acts on them afterwards."""
    lease = [*LEASE, "--lease-namespace", namespace]
    shard_a = start_sync("--shard-key", "a", *lease, "--identity", "a")
    rest = start_sync("--shard-key", "", *lease, "--identity", "rest")
    wait_for(lambda: lease_holder(api_client, namespace, "oras-cache-sync-a") == "a",
             what="shard a's own Lease")
    wait_for(lambda: lease_holder(api_client, namespace) == "rest",
             what="the unlabelled shard's Lease")
    custom(api_client).create_namespaced_custom_object(
        schema.GROUP, schema.VERSION, namespace, schema.PLURAL,
        {**cache_body("ca", {}), "metadata": {"name": "ca", "labels": {SHARD: "a"}}})
    create_cache(api_client, namespace, "cu", {})
    for name, shard in (("ca", "a"), ("cu", None)):
        wait_for(converged(api_client, namespace, name), what=f"{name} converged")
        wait_for(moved(api_client, kube, namespace, name, shard), what=f"{name}'s children")
    uids = {c["metadata"]["uid"] for name in ("ca", "cu")
            for c in children_of(kube, namespace, name)}
    assert len(uids) == 4
    a_first = syncproc.settled(lambda: shard_a.metric("orascache_reconciles_total"))
    assert syncproc.settled(lambda: rest.metric("orascache_reconciles_total")) > 0
    assert a_first > 0

    # Swap them: ca to the unlabelled shard, cu to shard a.
    label_cache(api_client, namespace, "ca", None)
    label_cache(api_client, namespace, "cu", "a")
    wait_for(moved(api_client, kube, namespace, "ca", None), what="ca's children relabelled")
    wait_for(moved(api_client, kube, namespace, "cu", "a"), what="cu's children relabelled")
    assert {c["metadata"]["uid"] for name in ("ca", "cu")
            for c in children_of(kube, namespace, name)} == uids, \
        "children kept, not recreated or pruned"
    assert shard_a.metric("orascache_reconciles_total") > a_first, "shard a took cu"

    # The new owner applies the next generation and writes its status.
    for name, port, owner in (("cu", 6000, shard_a), ("ca", 7000, rest)):
        writes = owner.metric("orascache_status_writes_total")
        patch_spec(api_client, namespace, name, {"port": port})
        wait_for(lambda n=name: get_cache(api_client, namespace, n)["status"].get(
            "observedGeneration") == 2, what=f"{name} observedGeneration 2")
        obj = get_cache(api_client, namespace, name)
        assert condition(obj, "Ready")["observedGeneration"] == 2
        assert condition(obj, "Ready")["reason"] == "Progressing"
        assert svc(kube, namespace, name)["spec"]["ports"][0]["port"] == port
        assert owner.metric("orascache_status_writes_total") > writes

    # The new owner holds the moved children: it prunes them.
    for name in ("cu", "ca"):
        patch_spec(api_client, namespace, name, {"deploy": False, "registry": "r.example.com"})
    for name in ("cu", "ca"):
        wait_for(lambda n=name: children_of(kube, namespace, n) == [],
                 what=f"{name}'s children pruned")

    # Without children (whose status kube-controller-manager keeps updating), reconciles
    # can be counted exactly: a change to one shard's cache is no work for the other.
    for name, owner, other in (("cu", shard_a, rest), ("ca", rest, shard_a)):
        before = syncproc.settled(lambda o=other: o.metric("orascache_reconciles_total"))
        writes = owner.metric("orascache_status_writes_total")
        patch_spec(api_client, namespace, name, {"registry": f"{name}.example.com"})
        wait_for(lambda n=name: get_cache(api_client, namespace, n)["status"].get(
            "endpoint") == f"{n}.example.com", what=f"{name}'s new endpoint")
        assert owner.metric("orascache_status_writes_total") == writes + 1
        time.sleep(1.0)
        assert other.metric("orascache_reconciles_total") == before, f"{name}: owner only"
    assert not shard_a.exited() and not rest.exited()
