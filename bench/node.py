"""Benchmarks on the real node (issue 18, part 5): the workflow data path and the sync
service in a Pod. Not tests: numbers for docs/performance.md.

One run, one fresh control plane plus the real node (root; ``tests/e2e/README.md``), with
``kubectl apply -f dist/install/`` as users run it:

1. ``readyz``: the sync service in a Pod, container start to ``/readyz`` 200. A replica's
   Pod is deleted, the ReplicaSet makes a new one (image already on the node); the clock
   starts at its first process's start (``/proc/PID/stat``, found through the container's
   cgroup) and stops at the first 200 of ``GET http://POD_IP:8080/readyz``, polled from the
   host every 20 ms. Also: Pod created to the kubelet's Ready (its probe runs every 5 s).
2. ``step``: the wall time a wired workflow step adds. The same busybox Pod (the app writes
   a small file) created alternately unannotated and annotated (the webhook wires it: pull a
   1 KiB artifact before the app, push the file after it), from the create call to phase
   Succeeded seen by polling every 50 ms; median of ``--runs`` each, after one warm-up each.
3. ``throughput``: one Pod of the oras image pushes and pulls a fresh random artifact of
   each ``--sizes`` MiB through the cache's registry (a Pod of the same node, its storage an
   emptyDir on the same disk as the client's), against ``cp`` of the same bytes in the
   client's emptyDir, in the same Pod, one after the other, ``--rounds`` times. Each timed
   operation ends with ``sync`` (the data on disk) and starts after one (nothing of the
   previous one pending); reads come from the page cache in all three (the file was just
   written). Clock: ``/proc/uptime`` (10 ms).
4. ``rss``: ``--caches`` OrasCaches (bench/sync.py's mix, pinned to a node label nobody has:
   StatefulSets and Services are made, their Pods stay Pending) created in one namespace, 8
   at a time; each sync Pod's memory against its 384Mi limit, sampled every second from its
   cgroup (working set = usage - inactive file, what the kubelet evicts on; anonymous =
   ``total_rss``, what reclaim cannot drop; the processes' VmRSS, Python and jsii's Node,
   shared file pages included), peak until ``--settle`` seconds after every cache has its
   status. Then the leader's Pod is deleted and the standby takes over all the caches at
   once (the first pass after a failover or restart): its peak over ``--settle`` seconds.

Usage (root): make bench-node   (or: .venv/bin/python -m bench.node [--only readyz,step,...])
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from bench.sync import spec_for
from constructs_lib import schema
from constructs_lib.annotations import PREFIX
from tests.harness import LocalCluster, ensure_binaries
from tests.harness.images import BUSYBOX_IMAGE, ORAS_IMAGE
from tests.harness.node import CGROUP_ROOT, Node
from tests.integration.conftest import repo_crds

REPO = Path(__file__).resolve().parent.parent
SYSTEM = "oras-cache-system"
NS = "bench"
CACHE = "bench"
SMALL = "bench/small:v1"
TIMEOUT_S = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
MEMORY_CGROUP = Path("/sys/fs/cgroup/memory") / CGROUP_ROOT.strip("/")
NOWHERE = {"oras-cache.bench/no-such-node": "true"}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# ----- containers seen from the host ----------------------------------------------------
def container_cgroup(container_id: str) -> Path | None:
    """The memory cgroup directory of a container (cgroupfs driver: named by its id)."""
    cid = container_id.split("://", 1)[-1]
    for directory, dirs, _ in os.walk(MEMORY_CGROUP):
        if cid in dirs:
            return Path(directory) / cid
    return None


def cgroup_pids(cgroup: Path) -> list[int]:
    try:
        return [int(x) for x in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def process_start(pid: int) -> float:
    """Seconds since boot at which ``pid`` started (field 22 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19]) / CLK_TCK


def vm_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_sample(cgroup: Path) -> dict[str, float]:
    """MiB: working set (usage - total_inactive_file), RSS of the processes, the limit."""
    stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
    usage = int((cgroup / "memory.usage_in_bytes").read_text())
    limit = int((cgroup / "memory.limit_in_bytes").read_text())
    working = usage - int(stat.get("total_inactive_file", 0))
    rss = sum(vm_rss_kib(p) for p in cgroup_pids(cgroup)) * 1024
    return {"working_set": working / 2**20, "rss": rss / 2**20, "limit": limit / 2**20,
            "cgroup_rss": int(stat.get("total_rss", 0)) / 2**20}


# ----- the cluster ----------------------------------------------------------------------
@contextmanager
def node_cluster() -> Iterator[LocalCluster]:
    began = time.monotonic()
    with LocalCluster(crds=repo_crds(), binaries=ensure_binaries()) as cluster:
        node = Node(cluster).start()
        try:
            log(f"control plane and node ready in {time.monotonic() - began:.1f} s")
            yield cluster
        finally:
            node.stop(check=False)


def install(cluster: LocalCluster) -> None:
    began = time.monotonic()
    cluster.kubectl("apply", "-f", str(REPO / "dist" / "install"))
    cluster.kubectl("-n", SYSTEM, "rollout", "status", "deployment/oras-cache-sync",
                    "--timeout=300s", timeout=320)
    log(f"dist/install/ Available in {time.monotonic() - began:.1f} s")


def sync_pods(core: client.CoreV1Api) -> list[Any]:
    pods = core.list_namespaced_pod(
        SYSTEM, label_selector="app.kubernetes.io/component=sync").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


# ----- 1. container start to /readyz ----------------------------------------------------
def bench_readyz(api: ApiClient, runs: int) -> dict[str, Any]:
    core = client.CoreV1Api(api)
    to_ready, to_kubelet_ready = [], []
    for run in range(runs):
        before = {p.metadata.name for p in sync_pods(core)}
        victim = sorted(before)[run % len(before)]
        core.delete_namespaced_pod(victim, SYSTEM)
        created = time.monotonic()

        def new_pod(before: set[str] = before) -> Any:
            fresh = [p for p in sync_pods(core) if p.metadata.name not in before]
            if fresh and fresh[0].status.pod_ip and fresh[0].status.container_statuses \
                    and fresh[0].status.container_statuses[0].container_id:
                return fresh[0]
            return None

        pod = wait_for(new_pod, TIMEOUT_S, "the new sync Pod's container")
        url = f"http://{pod.status.pod_ip}:8080/readyz"
        wait_for(lambda u=url: http_status(u) == 200, TIMEOUT_S, "/readyz 200", interval=0.02)
        ready_at = boottime()
        cgroup = container_cgroup(pod.status.container_statuses[0].container_id)
        if cgroup is None:
            raise RuntimeError(f"no cgroup for {pod.metadata.name}")
        started = min(process_start(p) for p in cgroup_pids(cgroup))
        to_ready.append(ready_at - started)
        name = pod.metadata.name

        def kubelet_ready(name: str = name) -> bool:
            status = core.read_namespaced_pod(name, SYSTEM).status
            return any(c.type == "Ready" and c.status == "True"
                       for c in status.conditions or [])

        wait_for(kubelet_ready, TIMEOUT_S, "the kubelet's Ready", interval=0.1)
        to_kubelet_ready.append(time.monotonic() - created)
        log(f"readyz run {run}: container start -> /readyz {to_ready[-1]:.2f} s, "
            f"delete -> Pod Ready {to_kubelet_ready[-1]:.1f} s")
        wait_for(lambda: len([p for p in sync_pods(core) if p.status.container_statuses
                              and p.status.container_statuses[0].ready]) == 2,
                 TIMEOUT_S, "2 ready replicas", interval=0.2)
    return {"start_to_readyz_s": to_ready, "delete_to_pod_ready_s": to_kubelet_ready}


# ----- 2. the wall time a wired step adds ----------------------------------------------
def create_cache(api: ApiClient) -> str:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    wait_for(lambda: _has_sa(api), 30, "the default ServiceAccount")
    objects = client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(schema.GROUP, schema.VERSION, NS, schema.PLURAL, {
        "apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": CACHE},
        "spec": {}})

    def ready() -> str | None:
        obj = objects.get_namespaced_custom_object(schema.GROUP, schema.VERSION, NS,
                                                   schema.PLURAL, CACHE)
        conditions = {c["type"]: c["status"] for c in obj.get("status", {}).get(
            "conditions", [])}
        endpoint: str | None = obj["status"].get("endpoint")
        return endpoint if conditions.get("Ready") == "True" else None

    endpoint: str = wait_for(ready, TIMEOUT_S, "the cache Ready", interval=0.2)
    return endpoint


def _has_sa(api: ApiClient) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_service_account("default", NS)
    except ApiException:
        return False
    return True


def step_pod(name: str, *, wired: bool, tag: str) -> dict[str, Any]:
    annotations = {f"{PREFIX}oras-cache": CACHE, f"{PREFIX}input-uri": SMALL,
                   f"{PREFIX}input-path": "/in", f"{PREFIX}output-uri": f"bench/out:{tag}",
                   f"{PREFIX}output-path": "/out/result.txt"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations if wired else {}},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "app", "image": BUSYBOX_IMAGE,
                                     "command": ["sh", "-c",
                                                 "mkdir -p /out && echo done > /out/result.txt"]
                                     }]}}


def run_to_completion(core: client.CoreV1Api, body: dict[str, Any]) -> float:
    name = body["metadata"]["name"]
    began = time.monotonic()
    core.create_namespaced_pod(NS, body)

    def finished() -> str | None:
        phase: str | None = core.read_namespaced_pod(name, NS).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, TIMEOUT_S, f"Pod {name} finished")
    took = time.monotonic() - began
    if phase != "Succeeded":
        raise RuntimeError(f"Pod {name} {phase}")
    core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
    return took


def push_small(core: client.CoreV1Api, endpoint: str) -> None:
    script = (f"cd /tmp && head -c 1024 /dev/urandom > small.bin && "
              f"oras push --no-tty --plain-http {endpoint}/{SMALL} small.bin")
    run_to_completion(core, oras_pod("push-small", script))


def oras_pod(name: str, script: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False,
                     "volumes": [{"name": "data", "emptyDir": {}}],
                     "containers": [{"name": "main", "image": ORAS_IMAGE,
                                     "command": ["sh", "-c", script],
                                     "volumeMounts": [{"name": "data",
                                                       "mountPath": "/data"}]}]}}


def bench_step(api: ApiClient, endpoint: str, runs: int) -> dict[str, Any]:
    core = client.CoreV1Api(api)
    push_small(core, endpoint)
    run_to_completion(core, step_pod("warm-plain", wired=False, tag="warm"))
    run_to_completion(core, step_pod("warm-wired", wired=True, tag="warm"))
    plain, wired = [], []
    for run in range(runs):
        plain.append(run_to_completion(core, step_pod(f"plain-{run}", wired=False,
                                                      tag=str(run))))
        wired.append(run_to_completion(core, step_pod(f"wired-{run}", wired=True,
                                                      tag=str(run))))
        log(f"step run {run}: unwired {plain[-1]:.2f} s, wired {wired[-1]:.2f} s")
    return {"unwired_s": plain, "wired_s": wired}


# ----- 3. push + pull throughput against a plain copy -----------------------------------
THROUGHPUT_SCRIPT = r"""
set -eu
t() { cut -d' ' -f1 /proc/uptime; }
cd /data
for round in $(seq 1 "$ROUNDS"); do
  for mib in $SIZES; do
    rm -rf blob copy pulled; mkdir pulled
    head -c "$((mib * 1048576))" /dev/urandom > blob
    sync; a=$(t); cp blob copy; sync; b=$(t)
    rm -f copy; sync
    a2=$(t); oras push --no-tty --plain-http "$REGISTRY/bench/blob:$mib-$round" blob >/dev/null
    sync; b2=$(t)
    a3=$(t); oras pull --no-tty --plain-http -o pulled "$REGISTRY/bench/blob:$mib-$round" >/dev/null
    sync; b3=$(t)
    cmp blob pulled/blob
    echo "RESULT $mib $round $(awk "BEGIN{print $b-$a}") $(awk "BEGIN{print $b2-$a2}") \
$(awk "BEGIN{print $b3-$a3}")"
  done
done
"""


def bench_throughput(api: ApiClient, endpoint: str, sizes: list[int],
                     rounds: int) -> dict[str, Any]:
    core = client.CoreV1Api(api)
    body = oras_pod("throughput", THROUGHPUT_SCRIPT)
    body["spec"]["containers"][0]["env"] = [
        {"name": "REGISTRY", "value": endpoint}, {"name": "ROUNDS", "value": str(rounds)},
        {"name": "SIZES", "value": " ".join(str(s) for s in sizes)}]
    name = body["metadata"]["name"]
    core.create_namespaced_pod(NS, body)

    def finished() -> str | None:
        phase: str | None = core.read_namespaced_pod(name, NS).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, 3600, "the throughput Pod", interval=1.0)
    logs = core.read_namespaced_pod_log(name, NS)
    if phase != "Succeeded":
        raise RuntimeError(f"throughput Pod {phase}:\n{logs[-3000:]}")
    results: dict[str, dict[str, list[float]]] = {}
    for line in logs.splitlines():
        if line.startswith("RESULT "):
            _, mib, _round, copy, push, pull = line.split()
            entry = results.setdefault(mib, {"copy_s": [], "push_s": [], "pull_s": []})
            entry["copy_s"].append(float(copy))
            entry["push_s"].append(float(push))
            entry["pull_s"].append(float(pull))
            log(f"throughput {mib} MiB: copy {copy} s, push {push} s, pull {pull} s")
    return results


# ----- 4. memory at N caches --------------------------------------------------------------
class Sampler:
    """Every second, each sync container's memory; keeps the peaks (a thread)."""

    def __init__(self, cgroups: dict[str, Path]) -> None:
        self.cgroups = cgroups
        self.peak: dict[str, dict[str, float]] = {k: {} for k in cgroups}
        self.last: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, dict[str, float]]:
        now = {}
        for name, cgroup in self.cgroups.items():
            try:
                now[name] = memory_sample(cgroup)
            except OSError:  # the container is gone (deleted)
                continue
            for field, value in now[name].items():
                self.peak[name][field] = max(self.peak[name].get(field, 0.0), value)
        self.last = now
        return now

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def sync_cgroups(core: client.CoreV1Api) -> dict[str, Path]:
    found = {p.metadata.name: container_cgroup(p.status.container_statuses[0].container_id)
             for p in sync_pods(core) if p.status.container_statuses
             and p.status.container_statuses[0].container_id}
    return {k: v for k, v in found.items() if v is not None}


def leader(api: ApiClient) -> str:
    lease = client.CoordinationV1Api(api).read_namespaced_lease("oras-cache-sync", SYSTEM)
    return str(lease.spec.holder_identity) if lease.spec else ""


def reconciles(pod_ip: str) -> float:
    """orascache_reconciles_total of a sync Pod, all results (from its /metrics)."""
    try:
        with urllib.request.urlopen(f"http://{pod_ip}:8080/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("orascache_reconciles_total"))


def bench_rss(api: ApiClient, caches: int, settle: float) -> dict[str, Any]:
    """N caches created (8 at a time) while both replicas are sampled; then the leader's
    Pod deleted: the standby takes over all N at once (the first pass after a failover or
    a restart, the peak that matters for the limit)."""
    core = client.CoreV1Api(api)
    objects = client.CustomObjectsApi(api)
    ns = "bench-rss"
    core.create_namespace({"metadata": {"name": ns}})
    results: dict[str, Any] = {"caches": caches}

    def create(i: int) -> None:
        objects.create_namespaced_custom_object(schema.GROUP, schema.VERSION, ns,
                                                schema.PLURAL, {
            "apiVersion": schema.API_VERSION, "kind": schema.KIND,
            "metadata": {"name": f"c{i:05d}"}, "spec": {**spec_for(i), "nodeSelector": NOWHERE}})

    def converged() -> bool:
        items = objects.list_namespaced_custom_object(schema.GROUP, schema.VERSION, ns,
                                                      schema.PLURAL)["items"]
        return sum(1 for c in items if c.get("status", {}).get("observedGeneration")
                   == c["metadata"]["generation"]) == caches

    with Sampler(sync_cgroups(core)) as sampler:
        idle = sampler.sample()
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, range(caches)))
        log(f"{caches} caches created in {time.monotonic() - began:.1f} s")
        wait_for(converged, 1800, f"{caches} caches with a status", interval=2.0)
        results["converged_s"] = time.monotonic() - began
        log(f"{caches} caches reconciled in {results['converged_s']:.1f} s after the first "
            "create")
        time.sleep(settle)
        results["created"] = {"leader": leader(api), "idle": idle, "peak": sampler.peak,
                              "settled": sampler.sample()}

    old_leader = results["created"]["leader"]
    standby = next(k for k in sampler.cgroups if k != old_leader)
    with Sampler({standby: sampler.cgroups[standby]}) as after:
        before = after.sample()
        core.delete_namespaced_pod(old_leader, SYSTEM)
        took_over = time.monotonic()
        wait_for(lambda: leader(api) == standby, TIMEOUT_S, f"{standby} leading", 0.2)
        ip = core.read_namespaced_pod(standby, SYSTEM).status.pod_ip
        wait_for(lambda: reconciles(ip) >= caches, 1800, f"{standby}'s first pass", 1.0)
        first_pass = time.monotonic() - took_over
        log(f"{standby} leads, first pass over {caches} caches done {first_pass:.1f} s after "
            f"the leader's deletion; sampling for {settle:.0f} s")
        time.sleep(settle)
        results["failover"] = {"leader": standby, "idle": before, "peak": after.peak,
                               "settled": after.sample(), "first_pass_s": first_pass}
    return results


# ----- report ---------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: dict[str, Any]) -> str:
    lines = []
    if "readyz" in results:
        r = results["readyz"]
        lines.append(f"sync Pod: container start -> /readyz 200: median "
                     f"{median(r['start_to_readyz_s']):.2f} s (min "
                     f"{min(r['start_to_readyz_s']):.2f}, max {max(r['start_to_readyz_s']):.2f}, "
                     f"n={len(r['start_to_readyz_s'])}); Pod deleted -> new Pod Ready "
                     "(kubelet probe, 5 s period) median "
                     f"{median(r['delete_to_pod_ready_s']):.1f} s")
    if "step" in results:
        r = results["step"]
        plain, wired = median(r["unwired_s"]), median(r["wired_s"])
        lines.append(f"workflow step (create -> Succeeded), median of {len(r['wired_s'])}: "
                     f"unwired {plain:.2f} s, wired {wired:.2f} s: +{wired - plain:.2f} s")
    if "throughput" in results:
        for mib, r in results["throughput"].items():
            copy, push, pull = median(r["copy_s"]), median(r["push_s"]), median(r["pull_s"])
            mb = float(mib)
            # each round's ratio: its copy ran right before its push and pull
            ratios = [(u + d) / c for c, u, d in zip(r["copy_s"], r["push_s"], r["pull_s"],
                                                     strict=True)]
            lines.append(
                f"{mib} MiB (median of {len(r['copy_s'])}): cp {copy:.2f} s "
                f"({mb / copy:.0f} MiB/s), push {push:.2f} s ({mb / push:.0f} MiB/s), "
                f"pull {pull:.2f} s ({mb / pull:.0f} MiB/s); push+pull / cp: median of the "
                f"rounds {median(ratios):.1f}x ({', '.join(f'{x:.1f}' for x in ratios)}), "
                f"of the medians {(push + pull) / copy:.1f}x; push / cp {push / copy:.1f}x, "
                f"pull / cp {pull / copy:.1f}x")
    if "rss" in results:
        r = results["rss"]
        for phase, what in (("created", "created 8 at a time"),
                            ("failover", "the standby taking over all of them")):
            if phase not in r:
                continue
            got = r[phase]
            for pod, peak in got["peak"].items():
                if pod not in got["settled"]:
                    continue
                role = "leader" if pod == got["leader"] else "standby"
                settled, idle = got["settled"][pod], got["idle"][pod]
                lines.append(
                    f"{r['caches']} caches {what}, {role} {pod}: working set before "
                    f"{idle['working_set']:.0f} MiB, peak {peak['working_set']:.0f}, settled "
                    f"{settled['working_set']:.0f}; anonymous (cgroup total_rss) before "
                    f"{idle['cgroup_rss']:.0f}, peak {peak['cgroup_rss']:.0f}, settled "
                    f"{settled['cgroup_rss']:.0f}; processes' VmRSS peak {peak['rss']:.0f}; "
                    f"limit {settled['limit']:.0f} MiB (peak working set "
                    f"{peak['working_set'] / settled['limit']:.0%} of it)")
        lines.append(f"  converged in {r['converged_s']:.1f} s after the first create")
        if "first_pass_s" in r.get("failover", {}):
            lines.append(f"  after the leader's deletion, the standby's first pass done in "
                         f"{r['failover']['first_pass_s']:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.node", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="readyz,step,throughput,rss",
                        help="comma-separated parts (default: all, in this order)")
    parser.add_argument("--runs", type=int, default=10, help="step runs each way")
    parser.add_argument("--readyz-runs", type=int, default=5)
    parser.add_argument("--sizes", default="256,1024", help="artifact sizes in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per size")
    parser.add_argument("--caches", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds of sampling after the caches converged")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--report", type=Path, help="only print the report of a --json file")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    if os.geteuid() != 0:
        print("bench.node needs root (a real node)", file=sys.stderr)
        return 2
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    results: dict[str, Any] = {}
    with node_cluster() as cluster, cluster.api_client() as api:
        install(cluster)
        if "readyz" in parts:
            results["readyz"] = bench_readyz(api, args.readyz_runs)
        endpoint = ""
        if {"step", "throughput"} & set(parts):
            endpoint = create_cache(api)
        if "step" in parts:
            results["step"] = bench_step(api, endpoint, args.runs)
        if "throughput" in parts:
            results["throughput"] = bench_throughput(
                api, endpoint, [int(s) for s in re.split(r"[, ]+", args.sizes) if s],
                args.rounds)
        if "rss" in parts:
            results["rss"] = bench_rss(api, args.caches, args.settle)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
