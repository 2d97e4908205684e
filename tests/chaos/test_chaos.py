"""Long faults against real processes: the sync service, kube-apiserver and etcd killed,
restarted or frozen while the service starts up on hundreds of caches. After each fault
every cache must converge, with each child existing once under the right owner and a
correct status: lost work is zero. Rows: docs/reliability.md."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.sync import spec_for
from constructs_lib import schema
from sync.apply.kube import RESOURCES, Kube
from sync.cluster_reconcile import CACHES, OWNER_LABEL
from tests.chaos.conftest import Record
from tests.harness import LocalCluster
from tests.integration import syncproc
from tests.integration.syncproc import SyncProcess, wait_for

Start = Callable[..., SyncProcess]
CHILD_KINDS = {"statefulsets": RESOURCES[("apps/v1", "StatefulSet")],
               "services": RESOURCES[("v1", "Service")],
               "persistentvolumeclaims": RESOURCES[("v1", "PersistentVolumeClaim")]}
CHILD_KINDS_KIND = [r.kind for r in CHILD_KINDS.values()]
LEASE = ["--leader-elect", "--lease-duration", "4", "--renew-deadline", "3",
         "--retry-period", "1"]



def create_caches(kube: Kube, ns: str, n: int) -> list[str]:
    names = [f"c{i:04d}" for i in range(n)]

    def create(i: int) -> None:
        kube.create(CACHES, ns, {"apiVersion": schema.API_VERSION, "kind": schema.KIND,
                                 "metadata": {"name": names[i]}, "spec": spec_for(i)})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n)))
    return names


@dataclass
class Audit:
    """What the cluster holds for the caches of one namespace."""

    converged: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.problems)


def audit(kube: Kube, ns: str, names: list[str]) -> Audit:
    """Per cache: status for its generation with an inventory, every inventory child live
    with exactly one controller reference to this cache's uid, and no labelled child the
    inventory lacks (a duplicate or an orphan)."""
    caches = {o["metadata"]["name"]: o for o in kube.list(CACHES, ns).get("items", [])}
    children: dict[tuple[str, str], dict[str, Any]] = {}
    per_owner: Counter[tuple[str, str]] = Counter()
    for res in CHILD_KINDS.values():
        for obj in kube.list(res, ns, label_selector=OWNER_LABEL).get("items", []):
            children[(res.kind, obj["metadata"]["name"])] = obj
            per_owner[(res.kind, obj["metadata"]["labels"][OWNER_LABEL])] += 1
    out = Audit()
    for name in names:
        cache = caches.get(name)
        if cache is None:
            out.problems.append(f"{name}: cache gone")
            continue
        status = cache.get("status") or {}
        inventory = status.get("inventory")
        if status.get("observedGeneration") != cache["metadata"]["generation"] or not inventory:
            out.problems.append(f"{name}: status not converged")
            continue
        bad = []
        for item in inventory:
            child = children.get((item["kind"], item["name"]))
            owners = [r for r in (child or {}).get("metadata", {}).get("ownerReferences", [])
                      if r.get("controller")]
            if child is None:
                bad.append(f"{item['kind']} missing")
            elif [r["uid"] for r in owners] != [cache["metadata"]["uid"]]:
                bad.append(f"{item['kind']} owned by {owners}")
        kinds = Counter(i["kind"] for i in inventory)
        bad += [f"{kind} x{per_owner[(kind, name)]}" for kind in CHILD_KINDS_KIND
                if per_owner[(kind, name)] != kinds.get(kind, 0)]
        if bad:
            out.problems.append(f"{name}: {', '.join(bad)}")
        else:
            out.converged += 1
    return out


def wait_converged(kube: Kube, ns: str, names: list[str], timeout: float = 300.0) -> float:
    """Seconds until every cache audits clean (AssertionError with the problems if not)."""
    began = time.monotonic()
    last = Audit()
    while time.monotonic() - began < timeout:
        last = audit(kube, ns, names)
        if not last.problems:
            return time.monotonic() - began
        time.sleep(1.0)
    raise AssertionError(f"{last.lost} of {len(names)} caches not converged after "
                         f"{timeout:.0f} s: {last.problems[:10]}")


def child_writes(cluster: LocalCluster, namespace: str) -> float:
    """The service's writes to children and OrasCache status (not dry-runs)."""
    return sum(syncproc.service_requests(cluster, namespace, {*CHILD_KINDS, "orascaches"})
               .values())


def service_writes(proc: SyncProcess) -> float:
    """The service's own count: child writes and status writes (survives API restarts)."""
    return sum(proc.metric(f'orascache_objects_total{{action="{a}"}}')
               for a in ("created", "configured", "deleted")) + proc.metric(
        "orascache_status_writes_total")


def minimum_writes(names: list[str]) -> int:
    """One apply per child and one status write per cache."""
    return sum(2 + (1 if i % 20 == 0 else 0) + 1 for i in range(len(names)))


@pytest.fixture
def start_sync(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[Start]:
    procs: list[SyncProcess] = []

    def start(*args: str, ready: bool = True) -> SyncProcess:
        log = tmp_path / f"sync-{len(procs)}.log"
        proc = SyncProcess(cluster.kubeconfig,
                           ["--namespace", namespace, "--log-format", "text", *args], log)
        procs.append(proc.start())
        return proc.wait_ready(60) if ready else proc

    yield start
    for proc in procs:
        if not proc.exited():
            proc.stop()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_service_sigkilled_during_start_up_of_300_caches(
    seed: int, start_sync: Start, kube: Kube, namespace: str, cluster: LocalCluster,
    record: Record,
) -> None:
    """Fault 1: SIGKILL at a random moment of the start-up, then a new process."""
    rng = random.Random(seed)
    names = create_caches(kube, namespace, 300)
    before = child_writes(cluster, namespace)
    first = start_sync(ready=False)
    kill_at = rng.uniform(1.0, 15.0)
    time.sleep(kill_at)
    first.signal(signal.SIGKILL)
    wait_for(first.exited, what="the killed service gone")
    at_kill = audit(kube, namespace, names)
    second = start_sync()
    took = wait_converged(kube, namespace, names)
    time.sleep(2.0)
    writes = child_writes(cluster, namespace) - before
    redone = {a: second.metric(f'orascache_objects_total{{action="{a}"}}')
              for a in ("created", "configured", "unchanged")}
    final = audit(kube, namespace, names)
    record(fault=f"1. service SIGKILL at {kill_at:.1f} s of a 300-cache start-up "
                 f"(seed {seed}; {at_kill.converged} converged at the kill)",
           did="new process: every cache converged; children checked on first sight",
           converge_s=took, writes=f"{writes:.0f} (minimum {minimum_writes(names)})",
           lost=final.lost, new_process=redone)
    assert final.lost == 0, final.problems


@pytest.mark.timeout(900)
def test_leader_sigkilled_during_start_up_standby_converges(
    start_sync: Start, kube: Kube, namespace: str, cluster: LocalCluster, record: Record,
) -> None:
    """Fault 2: two replicas with leader election; the leader killed mid start-up."""
    names = create_caches(kube, namespace, 300)
    before = child_writes(cluster, namespace)
    lease = [*LEASE, "--lease-namespace", namespace]
    a = start_sync(*lease, "--identity", "a")
    b = start_sync(*lease, "--identity", "b")
    wait_for(lambda: a.metric("orascache_leader") + b.metric("orascache_leader") == 1,
             what="a leader")
    leader, standby = (a, b) if a.metric("orascache_leader") == 1 else (b, a)
    wait_for(lambda: leader.metric("orascache_reconciles_total") >= 50, timeout=60,
             what="the start-up under way")
    leader.signal(signal.SIGKILL)
    killed = time.monotonic()
    at_kill = audit(kube, namespace, names)
    wait_for(lambda: standby.metric("orascache_leader") == 1, timeout=30, what="failover")
    failover = time.monotonic() - killed
    took = wait_converged(kube, namespace, names)
    time.sleep(2.0)
    writes = child_writes(cluster, namespace) - before
    final = audit(kube, namespace, names)
    record(fault=f"2. leader SIGKILL mid start-up of 300 caches ({at_kill.converged} "
                 "converged at the kill), 2 replicas, 4 s lease",
           did=f"standby took the lease after {failover:.1f} s and converged every cache",
           converge_s=time.monotonic() - killed - 2.0, writes=f"{writes:.0f} (minimum "
           f"{minimum_writes(names)})", lost=final.lost, converge_after_failover_s=took)
    assert final.lost == 0, final.problems


def _control_plane_fault(
    what: str, fault: Callable[[], str], start_sync: Start, kube: Kube, namespace: str,
    record: Record, n: int = 200,
) -> None:
    """Start the service on `n` new caches, apply `fault` two seconds in, and converge."""
    names = create_caches(kube, namespace, n)
    proc = start_sync()
    time.sleep(2.0)
    began = time.monotonic()
    did = fault()
    took = wait_converged(kube, namespace, names)
    time.sleep(2.0)
    final = audit(kube, namespace, names)
    record(fault=what, did=did, converge_s=time.monotonic() - began - 2.0,
           writes=f"{service_writes(proc):.0f} (minimum {minimum_writes(names)})",
           lost=final.lost, converge_after_fault_s=took)
    assert final.lost == 0, final.problems
    assert not proc.exited(), proc.output()[-3000:]


@pytest.mark.timeout(900)
def test_apiserver_sigkilled_and_restarted_during_reconciles(
    start_sync: Start, kube: Kube, namespace: str, cluster: LocalCluster, record: Record,
) -> None:
    """Fault 3."""
    def fault() -> str:
        down = cluster.restart_component("kube-apiserver", kill=True)
        return (f"requests failed and were retried with backoff; watches resumed or "
                f"relisted (kube-apiserver back after {down:.1f} s)")

    with cluster.api_client() as api:
        _control_plane_fault("3. kube-apiserver SIGKILL + restart, 200 caches starting up",
                             fault, start_sync, Kube(api), namespace, record)


@pytest.mark.timeout(900)
def test_etcd_sigkilled_and_restarted_during_reconciles(
    start_sync: Start, kube: Kube, namespace: str, cluster: LocalCluster, record: Record,
) -> None:
    """Fault 4."""
    def fault() -> str:
        down = cluster.restart_component("etcd", kill=True)
        return f"API errors while etcd was down ({down:.1f} s), retried with backoff"

    _control_plane_fault("4. etcd SIGKILL + restart, 200 caches starting up", fault,
                         start_sync, kube, namespace, record)


@pytest.mark.timeout(900)
def test_apiserver_frozen_for_30_seconds(
    start_sync: Start, kube: Kube, namespace: str, cluster: LocalCluster, record: Record,
) -> None:
    """Fault 5: SIGSTOP for 30 s, then SIGCONT."""
    def fault() -> str:
        pid = cluster.components["kube-apiserver"].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(30)
        finally:
            os.kill(pid, signal.SIGCONT)
        return ("requests hung until their 30 s client timeout, then were retried; "
                "watches resumed")

    _control_plane_fault("5. kube-apiserver SIGSTOP 30 s, 200 caches starting up", fault,
                         start_sync, kube, namespace, record)
