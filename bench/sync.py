"""Sync service benchmark (issue 5, "Performance"): N caches stored, then the service starts.

One run on one fresh LocalCluster (etcd + kube-apiserver + kube-controller-manager):

1. baseline: N OrasCache objects in namespace A (so ownerReferences point at real
   owners), their children rendered and decorated exactly as the service does
   (`render` + `decorate` + `with_hash`), then a raw server-side-apply loop of those
   objects with `Kube.apply` on a pool of `--workers` threads: the time to beat.
2. service: the same N caches (same names and specs) created in namespace B in parallel,
   then `orascache sync --namespace B` started as a subprocess; the time from process
   start until every child exists and every cache has status.observedGeneration =
   generation and a complete inventory (seen by list+watch informers in this process,
   so nothing polls the API server while the clock runs).
3. latency at idle: caches created one at a time; creation response -> StatefulSet
   watch event, and -> status written.
4. RSS of the service: Python plus jsii's Node process (the kernel, started directly by
   sync/render/node_runtime.py; with JSII_RUNTIME set, jsii's relay and the kernel under it), at
   N caches (/proc VmRSS, peak VmHWM).
4b. with --before REV: restarts on the converged caches, the service of git revision REV
   (from `git archive`) and of this tree alternately, two rounds: start -> first pass
   done, dry-run applies, writes, CPU (e.g. the cost of checking children on first sight).
5. idle resync: the service restarted with --resync-period 5 (phases 2-4 use the
   default 600 s: a 5 s resync would re-render every cache several times during the
   initial sync); the writes of the restart itself, then of a quiet window, counted by
   the service's /metrics and by the API server's apiserver_request_total; then
   latency again, while every cache is re-reconciled each 5 s.

kube-controller-manager creates each StatefulSet's Pods (they stay Pending: no kubelet)
at its default 20 QPS; the bench waits for it to finish between phases so that one
phase's background work does not land in the next one's measurement.

Wall times are only comparable on an otherwise idle machine. Before each timed phase the
bench waits (--quiet-timeout) until processes outside it use at most --quiet-limit of
the CPUs; every phase's table says how much CPU others took meanwhile. The CPU-seconds
spent by client + kube-apiserver + etcd, service against baseline, hardly depend on
that load: that ratio is printed too.

Usage: make bench-sync   (or: JSII_NODE=... .venv/bin/python -m bench.sync [N] [--help])
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# jsii must run on the supported Node that `make bootstrap` installs (as in tests/conftest).
os.environ.setdefault("JSII_NODE", str(REPO / ".tools" / "node_modules" / ".bin" / "node"))
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from sync.render import node_runtime  # noqa: E402

node_runtime.prepare()  # before anything imports cdk8s

from constructs_lib import parse_oras_cache, render, schema  # noqa: E402
from sync.apply.applier import FIELD_MANAGER, ObjectRef, with_hash  # noqa: E402
from sync.apply.kube import RESOURCES, Kube, Obj  # noqa: E402
from sync.cluster_reconcile import CACHES, OWNER_LABEL, decorate  # noqa: E402
from sync.report.events import EventRecorder  # noqa: E402
from sync.report.status import Outcome, desired_status  # noqa: E402
from sync.sources.informer import Informer  # noqa: E402
from tests.harness import LocalCluster  # noqa: E402
from tests.harness.ports import free_ports  # noqa: E402
from tests.harness.procs import log_tail  # noqa: E402

CRD = REPO / "crds" / "orascache.yaml"
NS_BASE, NS_SYNC = "bench-baseline", "bench-sync"
GO_OPERATOR_S = 50.0  # the original controller-runtime operator, this machine size
CHILD_KINDS = ("Service", "StatefulSet", "PersistentVolumeClaim")
WRITE_VERBS = frozenset({"APPLY", "PATCH", "POST", "PUT", "DELETE", "DELETECOLLECTION"})
SHOWN_RESOURCES = ("services", "statefulsets", "persistentvolumeclaims", "orascaches",
                   "events", "pods", "endpointslices")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Before each timed phase: at most this share of the CPUs busy, waited for at most this long.
QUIET_LIMIT, QUIET_TIMEOUT = 0.15, 300.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----- workload --------------------------------------------------------------------------
def spec_for(i: int) -> Obj:
    """A realistic mix: mostly defaults, some with storage, resources, two replicas."""
    if i % 20 == 0:  # HA: two replicas on one shared ReadWriteMany claim (a PVC child)
        return {"replicas": 2, "secrets": {"registryHttp": "oras-http-secret"},
                "storage": {"size": "1Gi", "accessModes": ["ReadWriteMany"]}}
    if i % 10 == 5:  # one replica with a volumeClaimTemplate
        return {"image": "registry:3.0.0", "storage": {"size": "1Gi"}}
    if i % 10 == 3:
        return {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"memory": "512Mi"}}}
    return {}


def cache_doc(namespace: str, name: str, spec: Obj) -> Obj:
    return {"apiVersion": schema.API_VERSION, "kind": schema.KIND,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def create_caches(kube: Kube, namespace: str, docs: list[Obj], workers: int) -> list[Obj]:
    with ThreadPoolExecutor(workers, thread_name_prefix="create") as pool:
        return list(pool.map(lambda d: kube.create(CACHES, namespace, d), docs))


def count(kube: Kube, plural_path: str) -> int:
    """Objects in a collection from a one-item page (remainingItemCount), cheap at any N."""
    page = kube.request("GET", plural_path, query={"limit": 1})
    return len(page.get("items", [])) + int(page["metadata"].get("remainingItemCount") or 0)


def wait_pods(kube: Kube, namespace: str, expected: int, timeout: float = 600.0) -> float:
    """Wait for kube-controller-manager to create every StatefulSet Pod (20 QPS)."""
    start = time.monotonic()
    path = f"/api/v1/namespaces/{namespace}/pods"
    while (have := count(kube, path)) < expected:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{have}/{expected} pods in {namespace} after {timeout:.0f} s")
        time.sleep(1.0)
    time.sleep(2.0)  # the StatefulSet status updates that follow the last Pod
    return time.monotonic() - start


# ----- /proc -------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, depth) of every process below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [(pid, 0)]
    while todo:
        parent, depth = todo.pop()
        for child in children.get(parent, []):
            out.append((child, depth + 1))
            todo.append((child, depth + 1))
    return out


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def comm(pid: int) -> str:
    """The executable's name (Node renames its main thread, so not /proc/PID/comm)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name.removesuffix(" (deleted)")
    except OSError:
        return "?"


# ----- Prometheus text -------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Labels = tuple[tuple[str, str], ...]


def parse_prometheus(text: str, prefix: str) -> dict[tuple[str, Labels], float]:
    out: dict[tuple[str, Labels], float] = {}
    for line in text.splitlines():
        if not line.startswith(prefix) or not (m := _SAMPLE.match(line)):
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        with contextlib.suppress(ValueError):
            out[(m.group(1), labels)] = float(m.group(3))
    return out


Key = tuple[str, str, str]  # (verb, resource, subresource)


@dataclass
class ApiStats:
    """apiserver_request_total and apiserver_request_duration_seconds by Key."""

    requests: Counter[Key] = field(default_factory=Counter)
    seconds: Counter[Key] = field(default_factory=Counter)  # duration histogram _sum
    timed: Counter[Key] = field(default_factory=Counter)  # duration histogram _count

    def __sub__(self, other: ApiStats) -> ApiStats:
        return ApiStats(*(delta(getattr(self, f), getattr(other, f))
                          for f in ("requests", "seconds", "timed")))

    def mean_ms(self, key: Key) -> float:
        return self.seconds[key] / self.timed[key] * 1000 if self.timed[key] else 0.0


def apiserver_stats(cluster: LocalCluster) -> ApiStats:
    status, body = cluster.admin_get("/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics on kube-apiserver: {status}")
    out = ApiStats()
    for (name, labels), value in parse_prometheus(body, "apiserver_request_").items():
        d = dict(labels)
        # A dry-run writes nothing: counted apart ("APPLY dry-run"), never as a write.
        verb = d.get("verb", "") + (" dry-run" if d.get("dry_run") else "")
        key = (verb, d.get("resource", ""), d.get("subresource", ""))
        if name == "apiserver_request_total":
            out.requests[key] += int(value)
        elif name == "apiserver_request_duration_seconds_sum":
            out.seconds[key] += value
        elif name == "apiserver_request_duration_seconds_count":
            out.timed[key] += int(value)
    return out


def delta(after: Counter[Any], before: Counter[Any]) -> Counter[Any]:
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)})


def machine_cpu() -> float:
    """Busy CPU-seconds of the whole machine since boot (/proc/stat), every process."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # minus idle and iowait


def wait_quiet(limit: float, timeout: float, *, excluded: Callable[[], float] = lambda: 0.0,
               who: str = "all processes") -> None:
    """Wait (up to `timeout` s) until the machine's busy CPU, minus `excluded()` CPU-seconds,
    is at most `limit` of its CPUs over 3 s."""
    cpus, began = os.cpu_count() or 1, time.monotonic()
    while True:
        t0, m0, c0 = time.monotonic(), machine_cpu(), excluded()
        time.sleep(3.0)
        t1, m1, c1 = time.monotonic(), machine_cpu(), excluded()
        share = ((m1 - m0) - (c1 - c0)) / ((t1 - t0) * cpus)
        if share <= limit:
            return
        if t1 - began > timeout:
            log(f"WARNING: {who} still use {share * 100:.0f}% of the CPUs; measuring anyway")
            return
        log(f"{who} use {share * 100:.0f}% of the CPUs; waiting for quiet")


@dataclass
class Snapshot:
    at: float
    api: ApiStats
    cpu: dict[str, float]  # our processes: control plane, bench, service
    machine: float


# ----- watching the result from the outside ------------------------------------------------
@dataclass
class Tracker:
    """First time (monotonic, in this process) each child appeared and each status landed."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    child_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    status_seen: dict[str, float] = field(default_factory=dict)
    inventory: dict[str, int] = field(default_factory=dict)  # expected children per cache

    def on_child(self, _type: str, obj: Obj) -> None:
        now = time.monotonic()
        if _type in ("ADDED", "MODIFIED"):
            with self.cond:
                self.child_seen.setdefault((obj["kind"], obj["metadata"]["name"]), now)
                self.cond.notify_all()

    def on_cache(self, _type: str, obj: Obj) -> None:
        now = time.monotonic()
        meta, status = obj["metadata"], obj.get("status") or {}
        want = self.inventory.get(meta["name"], 1)
        if (status.get("observedGeneration") == meta.get("generation")
                and len(status.get("inventory") or []) >= want):
            with self.cond:
                self.status_seen.setdefault(meta["name"], now)
                self.cond.notify_all()

    def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(ready, timeout)

    def done_at(self, children: Iterable[tuple[str, str]], caches: Iterable[str],
                ) -> tuple[float, float] | None:
        """(last child seen, last status seen), or None while something is missing."""
        with self.cond:
            try:
                last_child = max(self.child_seen[c] for c in children)
                last_status = max(self.status_seen[n] for n in caches)
            except KeyError:
                return None
        return last_child, last_status


def start_informers(kube: Kube, tracker: Tracker, namespace: str) -> list[Informer]:
    informers = [Informer(kube, CACHES, namespace=namespace, on_event=tracker.on_cache)]
    informers += [
        Informer(kube, r, namespace=namespace, label_selector=OWNER_LABEL,
                 on_event=tracker.on_child)
        for r in RESOURCES.values() if r.kind in CHILD_KINDS
    ]
    for informer in informers:
        informer.start()
    for informer in informers:
        if not informer.synced.wait(60):
            raise TimeoutError(f"bench informer for {informer.resource.plural} never synced")
    return informers


# ----- the service under test --------------------------------------------------------------
def _die_with_parent() -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: a killed bench leaves no service
        if os.getppid() != parent:
            os._exit(1)

    return hook


class Service:
    """`orascache sync` as a subprocess in its own process group."""

    def __init__(self, cluster: LocalCluster, *, workers: int, resync: float, logdir: Path,
                 tag: str, tree: Path | None = None) -> None:
        """`tree`: run the service from that source tree (another revision) instead."""
        self.port = free_ports(1)[0]
        exe = REPO / ".venv" / "bin" / "orascache"
        cmd = [str(exe)] if exe.exists() and tree is None else [sys.executable, "-m",
                                                                 "sync.cli"]
        argv = [*cmd, "sync", "--kubeconfig", str(cluster.kubeconfig), "--namespace", NS_SYNC,
                "--http-addr", f"127.0.0.1:{self.port}", "--log-format", "text",
                "--workers", str(workers), "--resync-period", str(resync)]
        env = dict(os.environ)
        self.log = logdir / f"sync-{tag}.log"
        hook = _die_with_parent()
        with open(self.log, "wb") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=tree or REPO,
                env=env, start_new_session=True, preexec_fn=hook)  # noqa: PLW1509
        self.known: dict[int, str] = {}

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, ""
        except OSError:
            return 0, ""

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the sync service exited with {self.proc.returncode}; log:\n"
                               f"{log_tail(self.log)}")

    def wait_ready(self, timeout: float = 120.0) -> float:
        while self._get("/readyz")[0] != 200:
            self.check()
            if time.monotonic() - self.started > timeout:
                raise TimeoutError(f"service not ready; log:\n{log_tail(self.log)}")
            time.sleep(0.05)
        return time.monotonic() - self.started

    def metrics(self) -> Counter[str]:
        """orascache_* samples as flat names, e.g. objects:created, status_writes."""
        status, text = self._get("/metrics")
        if status != 200:
            self.check()
            raise RuntimeError(f"/metrics answered {status}")
        out: Counter[str] = Counter()
        for (name, labels), value in parse_prometheus(text, "orascache_").items():
            short = name.removeprefix("orascache_").removesuffix("_total")
            out[":".join([short, *(v for _, v in labels)])] = value
        return out

    def pids(self) -> dict[int, str]:
        """The service and its descendants, named: python, then jsii's Node kernel (and
        the relay above it when jsii's own jsii-runtime.js is used)."""
        names = {1: {"node": "node"}, 2: {"node": "node-kernel"}}
        found = {self.proc.pid: "python"}
        for pid, depth in descendants(self.proc.pid):
            exe = comm(pid)
            found[pid] = names.get(depth, {}).get(exe, exe)
            self.known.setdefault(pid, exe)
        return found

    def memory(self) -> dict[str, tuple[float, float]]:
        """{'python': (rss, hwm), 'node': ..., 'total': ...}, MB."""
        out: dict[str, tuple[float, float]] = {}
        for pid, name in self.pids().items():
            rss, hwm = memory_mb(pid)
            old = out.get(name, (0.0, 0.0))
            out[name] = (old[0] + rss, old[1] + hwm)
        out["total"] = (sum(v[0] for v in out.values()), sum(v[1] for v in out.values()))
        return out

    def cpu(self) -> dict[str, float]:
        out: Counter[str] = Counter()
        for pid, name in self.pids().items():
            out[name] += cpu_seconds(pid)
        return dict(out)

    def wait_quiet(self, *, minimum: int, still: float | None = 2.0,
                   timeout: float = 600.0) -> float:
        """Seconds since start when >= `minimum` reconciles ran and, unless `still` is
        None, the queue is empty and the reconcile counter has not moved for `still` s."""
        last, since = -1.0, time.monotonic()
        while True:
            self.check()
            m = self.metrics()
            total = m["reconciles:ok"] + m["reconciles:error"]
            now = time.monotonic()
            if total != last:
                last, since = total, now
            if total >= minimum and (still is None or (
                    m["queue_depth"] == 0 and now - since >= still)):
                return since - self.started
            if now - self.started > timeout:
                raise TimeoutError(f"service never went quiet; log:\n{log_tail(self.log)}")
            time.sleep(0.25)

    def stop(self) -> tuple[float, int | None]:
        """SIGTERM, then SIGKILL the group after 20 s; (seconds, exit code)."""
        began = time.monotonic()
        self.pids()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid, name in self.known.items():  # e.g. jsii's node, if it outlived Python
            if pid != self.proc.pid and comm(pid) == name:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        return time.monotonic() - began, self.proc.returncode


class Sampler:
    """Every second: the service's counters, its CPU and the machine's, kept as a timeline
    (in --json); a progress line every 10 s."""

    def __init__(self, svc: Service, name: str, period: float = 1.0) -> None:
        self.svc = svc
        self.period = period
        self.rows: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cpus = os.cpu_count() or 1
        mark = (time.monotonic(), machine_cpu())
        while not self._stop.wait(self.period):
            try:
                m = self.svc.metrics()
            except (RuntimeError, OSError):
                continue  # not serving yet, or gone (the main thread reports that)
            now, busy = time.monotonic(), machine_cpu()
            row = {"t": round(now - self.svc.started, 2),
                   "reconciles": m["reconciles:ok"] + m["reconciles:error"],
                   "created": m["objects:created"], "unchanged": m["objects:unchanged"],
                   "status_writes": m["status_writes"], "queue_depth": m["queue_depth"],
                   "machine_cpu_s": busy,
                   **{f"cpu_{k}_s": v for k, v in self.svc.cpu().items()}}
            self.rows.append(row)
            if now - mark[0] >= 10:
                log(f"  t={row['t']:.0f}s reconciles {row['reconciles']:.0f}, children "
                    f"created {row['created']:.0f}, status writes {row['status_writes']:.0f}, "
                    f"queue {row['queue_depth']:.0f}; machine CPU "
                    f"{(busy - mark[1]) / (now - mark[0]) / cpus * 100:.0f}% busy")
                mark = (now, busy)

    def stop(self) -> list[dict[str, float]]:
        self._stop.set()
        self._thread.join(10)
        return self.rows


# ----- the benchmark ---------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


@dataclass
class Results:
    n: int
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)

    def row(self, what: str, value: str, target: str = "", verdict: str = "") -> None:
        self.rows.append((what, value, target, verdict))
        log(f"{what}: {value}" + (f"  (target {target}: {verdict})" if target else ""))


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


class Bench:
    def __init__(self, cluster: LocalCluster, args: argparse.Namespace, logdir: Path,
                 stack: contextlib.ExitStack) -> None:
        self.cluster = cluster
        self.args = args
        self.n: int = args.n
        self.logdir = logdir
        self.stack = stack
        self.kube = Kube(cluster.api_client())
        self.res = Results(args.n)
        self.names = [f"c{i:05d}" for i in range(self.n)]
        self.specs = [spec_for(i) for i in range(self.n)]
        self.expected: dict[str, list[tuple[str, str]]] = {}  # cache -> [(kind, name)]
        self.pods = sum(int(s.get("replicas", 1)) for s in self.specs)
        self.tracker = Tracker()
        self.floor_s = 0.0

    # 1 ----------------------------------------------------------------------------------
    def baseline(self) -> float:
        for ns in (NS_BASE, NS_SYNC):
            self.kube.create(RESOURCES[("v1", "Namespace")], None,
                             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        began = time.monotonic()
        owners = create_caches(self.kube, NS_BASE, [
            cache_doc(NS_BASE, n, s) for n, s in zip(self.names, self.specs, strict=True)
        ], self.args.create_workers)
        log(f"created {self.n} caches in {NS_BASE} in {time.monotonic() - began:.1f} s")
        parsed = []
        for obj in owners:
            cache = parse_oras_cache(obj, obj["metadata"]["name"])
            assert not isinstance(cache, list), cache
            parsed.append(cache)
        began = time.perf_counter()
        rendered = render(parsed)
        render_s = time.perf_counter() - began
        objects = []
        for obj, r in zip(owners, rendered, strict=True):
            self.expected[obj["metadata"]["name"]] = [
                (m["kind"], m["metadata"]["name"]) for m in r.manifests]
            objects += [with_hash(decorate(m, obj)) for m in r.manifests]
        self.res.row(f"render {self.n} caches (jsii, one thread, informational)",
                     f"{render_s:.2f} s = {render_s / self.n * 1000:.2f} ms/cache")
        # The same watchers as in phase 2, so that both phases carry their load.
        tracker = Tracker()
        informers = start_informers(self.kube, tracker, NS_BASE)
        try:
            self.wait_machine_quiet()
            s0 = self.snap()
            began = time.monotonic()
            with ThreadPoolExecutor(self.args.workers, thread_name_prefix="ssa") as pool:
                for _ in pool.map(lambda o: self.kube.apply(o, field_manager=FIELD_MANAGER,
                                                            force=True), objects):
                    pass
            base_s = time.monotonic() - began
            s1 = self.snap()
            children = [c for v in self.expected.values() for c in v]
            tracker.wait(lambda: all(c in tracker.child_seen for c in children), 60)
            seen_s = max(tracker.child_seen[c] for c in children) - began
            self.res.data["baseline"] = {"objects": len(objects), "seconds": base_s,
                                         "seen_s": seen_s, "render_s": render_s}
            self.res.row(f"baseline: raw SSA loop, {len(objects)} objects, "
                         f"{self.args.workers} threads", f"{base_s:.2f} s "
                         f"({len(objects) / base_s:.0f} objects/s; last watch event "
                         f"{seen_s:.2f} s)")
            self.table("baseline SSA loop", s0, s1)
            self.required_writes(owners, rendered)
            if self.args.pod_wait:
                log(f"waiting for kube-controller-manager to create {self.pods} Pods in "
                    f"{NS_BASE}")
                log(f"... done in {wait_pods(self.kube, NS_BASE, self.pods):.0f} s")
        finally:
            for informer in informers:
                informer.stop()
        return base_s

    def required_writes(self, owners: list[Obj], rendered: list[Any]) -> None:
        """What the issue asks of the service beyond the applies, measured the same way:
        one status write (the service's own body) and one Event per cache. The SSA loop
        plus these is the floor a service doing the required work can reach."""
        events = EventRecorder(self.kube)

        def write(pair: tuple[Obj, Any]) -> None:
            obj, r = pair
            cache = r.cache
            outcome = Outcome(1, False, "Progressing", f"0/{cache.spec.replicas} replicas ready",
                              endpoint=cache.endpoint(), ready_replicas=0,
                              inventory=sorted(ObjectRef.of(m) for m in r.manifests))
            meta = obj["metadata"]
            self.kube.merge_patch(CACHES.path(meta["namespace"], meta["name"]) + "/status",
                                  {"status": desired_status(outcome, None)})
            self.kube.create(RESOURCES[("v1", "Event")], meta["namespace"],
                             events.build(obj, "Normal", "Applied", "created 2 objects"))

        self.wait_machine_quiet()
        began = time.monotonic()
        with ThreadPoolExecutor(self.args.workers, thread_name_prefix="req") as pool:
            for _ in pool.map(write, zip(owners, rendered, strict=True)):
                pass
        extra_s = time.monotonic() - began
        events.close()
        self.floor_s = self.res.data["baseline"]["seconds"] + extra_s
        self.res.data["baseline"]["required_writes_s"] = extra_s
        self.res.row(f"baseline + required writes: {self.n} status writes + {self.n} Events, "
                     f"{self.args.workers} threads", f"+{extra_s:.2f} s = {self.floor_s:.2f} s")

    # 2 ----------------------------------------------------------------------------------
    def service_start(self, base_s: float) -> Service:
        began = time.monotonic()
        create_caches(self.kube, NS_SYNC, [
            cache_doc(NS_SYNC, n, s) for n, s in zip(self.names, self.specs, strict=True)
        ], self.args.create_workers)
        log(f"created {self.n} caches in {NS_SYNC} in {time.monotonic() - began:.1f} s")
        self.tracker.inventory.update({k: len(v) for k, v in self.expected.items()})
        informers = start_informers(self.kube, self.tracker, NS_SYNC)
        def stop_informers() -> None:
            # the cluster goes next
            logging.getLogger("sync.sources.informer").setLevel(logging.ERROR)
            for informer in informers:
                informer.stop()

        self.stack.callback(stop_informers)
        children = [c for v in self.expected.values() for c in v]
        self.wait_machine_quiet()
        s0 = self.snap()
        svc = Service(self.cluster, workers=self.args.workers, resync=600, logdir=self.logdir,
                      tag="start")
        self.stack.callback(svc.stop)
        sampler = Sampler(svc, "start")
        self.stack.callback(sampler.stop)
        profiler = self.profile(svc)
        ready_s = svc.wait_ready()
        while (done := self.tracker.done_at(children, self.names)) is None:
            svc.check()
            if time.monotonic() - svc.started > self.args.timeout:
                raise TimeoutError(self.progress(children))
            time.sleep(0.1)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
        children_s, status_s = (t - svc.started for t in done)
        total_s = max(children_s, status_s)
        at_done = svc.metrics()
        mem = svc.memory()
        s1 = self.snap(svc)
        s0.cpu.update({k: 0.0 for k in s1.cpu if k.startswith("sync ")})  # born after s0
        quiet_s = svc.wait_quiet(minimum=self.n)
        m = svc.metrics()
        self.res.data.setdefault("timeline", {})["start"] = sampler.stop()
        first = min(self.tracker.child_seen.values()) - svc.started
        self.res.data["service"] = {
            "ready_s": ready_s, "first_child_s": first, "children_s": children_s,
            "status_s": status_s, "total_s": total_s, "quiet_s": quiet_s,
            "metrics": dict(m), "metrics_at_convergence": dict(at_done), "memory_mb": mem}
        self.res.row("service: start -> /readyz 200 (imports, jsii, informers synced)",
                     f"{ready_s:.2f} s")
        self.res.row("service: start -> first child seen", f"{first:.2f} s")
        self.res.row("service: start -> every child exists", f"{children_s:.2f} s")
        self.res.row("service: start -> every status written", f"{status_s:.2f} s")
        self.res.row("service: start -> converged (children + status)", f"{total_s:.2f} s",
                     f"<= 1.3x baseline = {1.3 * base_s:.1f} s",
                     f"{total_s / base_s:.2f}x {verdict(total_s <= 1.3 * base_s)}")
        self.res.row("service vs the floor: SSA loop + required writes (informational)",
                     f"{total_s:.2f} s", f"floor {self.floor_s:.1f} s",
                     f"{total_s / self.floor_s:.2f}x")
        self.res.row("service vs Go operator (50 s, children only)", f"{total_s:.2f} s",
                     f"<= 1/3 of 50 s = {GO_OPERATOR_S / 3:.1f} s",
                     f"{total_s / GO_OPERATOR_S:.2f}x of 50 s "
                     f"{verdict(total_s <= GO_OPERATOR_S / 3)}")
        self.work_rows(at_done, m, quiet_s, svc)
        self.table("service start-up, until converged", s0, s1, total_s)
        self.cost_row()
        self.memory_row("RSS at N caches, converged", mem)
        return svc

    def work_rows(self, at_done: Counter[str], m: Counter[str], quiet_s: float,
                  svc: Service) -> None:
        recs = at_done["reconciles:ok"] + at_done["reconciles:error"]
        self.res.row("service work by convergence (each reconcile renders)",
                     f"{recs:.0f} reconciles = {recs / self.n:.2f}/cache, "
                     f"{at_done['status_writes']:.0f} status writes = "
                     f"{at_done['status_writes'] / self.n:.2f}/cache, "
                     f"{at_done['objects:unchanged']:.0f} no-op applies skipped")
        self.res.row("service: last reconcile of the start-up (kube-controller-manager's "
                     "StatefulSet status updates keep it busy)", f"{quiet_s:.2f} s")
        self.res.row("service work until quiet",
                     f"{m['reconciles:ok']:.0f} reconciles ok, {m['reconciles:error']:.0f} "
                     f"errors, {m['status_writes']:.0f} status writes, objects "
                     + ", ".join(f"{k.split(':')[1]} {v:.0f}" for k, v in sorted(m.items())
                                 if k.startswith("objects:")))
        pool_full = svc.log.read_text(errors="replace").count("Connection pool is full")
        self.res.row("service log: urllib3 'Connection pool is full, discarding connection'",
                     f"{pool_full} times")

    def profile(self, svc: Service) -> subprocess.Popen[bytes] | None:
        """py-spy on the service until it converges: collapsed stacks of the threads that
        hold the GIL (where its Python CPU goes; waiting on the API server is left out)."""
        if self.args.profile is None:
            return None
        spy = REPO / ".venv" / "bin" / "py-spy"
        return subprocess.Popen(
            [str(spy), "record", "--pid", str(svc.proc.pid), "--format", "raw", "--threads",
             "--nonblocking", "--gil", "--rate", "100", "--output", str(self.args.profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cost_row(self) -> None:
        """CPU-seconds of the client plus kube-apiserver and etcd: unlike wall time, this
        hardly depends on what else runs on the machine."""
        base = self.res.data["cpu"]["baseline SSA loop"]
        svc = self.res.data["cpu"]["service start-up, until converged"]
        server = ("kube-apiserver", "etcd")
        b_server, s_server = sum(base[k] for k in server), sum(svc[k] for k in server)
        b_client = base["bench"]
        s_client = sum(v for k, v in svc.items() if k.startswith("sync "))
        self.res.row("CPU-s: client + kube-apiserver + etcd (robust to other load)",
                     f"service {s_client:.1f} + {s_server:.1f}, baseline {b_client:.1f} + "
                     f"{b_server:.1f}", "", f"{(s_client + s_server) / (b_client + b_server):.2f}x")
        self.res.row("CPU-s of kube-apiserver + etcd alone", f"{s_server:.1f} vs {b_server:.1f}",
                     "", f"{s_server / b_server:.2f}x")

    def progress(self, children: list[tuple[str, str]]) -> str:
        seen = sum(c in self.tracker.child_seen for c in children)
        return (f"timed out: {seen}/{len(children)} children, "
                f"{len(self.tracker.status_seen)}/{self.n} statuses")

    def memory_row(self, what: str, mem: dict[str, tuple[float, float]]) -> None:
        rss, hwm = mem["total"]
        parts = ", ".join(f"{k} {v[0]:.0f}" for k, v in mem.items() if k != "total")
        self.res.row(f"{what} (VmRSS; peak VmHWM {hwm:.0f} MB)", f"{rss:.0f} MB ({parts})",
                     "<= 250 MB", verdict(rss <= 250 and hwm <= 250))

    # 3 ----------------------------------------------------------------------------------
    def latency(self, prefix: str, samples: int, pause: float,
                limit: float = 30.0) -> tuple[list[float], list[float]]:
        """Create caches one at a time: creation response -> StatefulSet event, -> status.
        A sample that takes longer than `limit` seconds counts as `limit`."""
        to_sts, to_status = [], []
        for i in range(samples):
            name = f"{prefix}{i:03d}"
            self.tracker.inventory[name] = 2
            self.kube.create(CACHES, NS_SYNC, cache_doc(NS_SYNC, name, {}))
            done = time.monotonic()
            key = ("StatefulSet", name)
            if not self.tracker.wait(lambda k=key: k in self.tracker.child_seen, limit):
                log(f"no StatefulSet for {name} after {limit:.0f} s")
            self.tracker.wait(lambda n=name: n in self.tracker.status_seen,
                              max(0.0, done + limit - time.monotonic()))
            to_sts.append((self.tracker.child_seen.get(key, done + limit) - done) * 1000)
            to_status.append((self.tracker.status_seen.get(name, done + limit) - done) * 1000)
            time.sleep(pause)
        return to_sts, to_status

    def latency_rows(self, what: str, to_sts: list[float], to_status: list[float],
                     targets: bool) -> None:
        p50, p99 = pct(to_sts, 50), pct(to_sts, 99)
        self.res.data.setdefault("latency", {})[what] = {"sts_ms": to_sts,
                                                         "status_ms": to_status}
        self.res.row(f"{what}: create -> StatefulSet p50 ({len(to_sts)} samples)",
                     f"{p50:.0f} ms", "<= 100 ms" if targets else "",
                     verdict(p50 <= 100) if targets else "")
        late = sum(v >= 30_000 for v in to_sts)
        self.res.row(f"{what}: create -> StatefulSet p99 (max {max(to_sts):.0f} ms"
                     + (f"; {late} took >= 30 s" if late else "") + ")",
                     f"{p99:.0f} ms", "<= 500 ms" if targets else "",
                     verdict(p99 <= 500) if targets else "")
        self.res.row(f"{what}: create -> status written p50 / p99",
                     f"{pct(to_status, 50):.0f} / {pct(to_status, 99):.0f} ms "
                     f"(mean {statistics.fmean(to_status):.0f})")

    # 4b ---------------------------------------------------------------------------------
    def restart_against(self, before: Path, total_caches: int, rounds: int = 2) -> None:
        """Start-up on converged caches (every child exists), the service of --before REV
        and of this tree alternately, same cluster: the first sight of each child costs
        this tree one dry-run apply, the old one trusted the hash annotation."""
        for i in range(rounds):
            for tag, tree in (("before", before), ("after", None)):
                self.wait_machine_quiet()
                s0 = self.snap()
                svc = Service(self.cluster, workers=self.args.workers, resync=600,
                              logdir=self.logdir, tag=f"restart-{tag}-{i}", tree=tree)
                ready_s = svc.wait_ready()
                first_pass_s = svc.wait_quiet(minimum=total_caches, still=None)
                m, s1 = svc.metrics(), self.snap(svc)
                svc.stop()
                d = (s1.api - s0.api).requests
                writes = m["objects:created"] + m["objects:configured"] + m["objects:deleted"]
                dry = sum(v for k, v in d.items() if k[0].endswith("dry-run"))
                cpu = sum(v - s0.cpu.get(k, 0.0) for k, v in s1.cpu.items()
                          if k in ("kube-apiserver", "etcd") or k.startswith("sync "))
                self.res.data.setdefault("restart_against", []).append({
                    "tag": tag, "round": i, "ready_s": ready_s, "first_pass_s": first_pass_s,
                    "dry_runs": dry, "writes": writes, "cpu_s": cpu})
                self.res.row(f"restart at {total_caches} converged caches, {tag} "
                             f"(round {i + 1}): start -> {total_caches} reconciles done",
                             f"{first_pass_s:.2f} s (ready {ready_s:.2f} s; {dry} dry-runs, "
                             f"{writes:.0f} writes; service + apiserver + etcd CPU "
                             f"{cpu:.1f} s)")
                self.table(f"restart {tag} round {i + 1}", s0, s1)

    # 5 ----------------------------------------------------------------------------------
    def idle(self, total_caches: int) -> Service:
        svc = Service(self.cluster, workers=self.args.workers, resync=5, logdir=self.logdir,
                      tag="resync")
        self.stack.callback(svc.stop)
        sampler = Sampler(svc, "restart")
        self.stack.callback(sampler.stop)
        s0 = self.snap()
        ready_s = svc.wait_ready()
        first_pass_s = svc.wait_quiet(minimum=total_caches, still=None)
        m0, s1 = svc.metrics(), self.snap(svc)
        s0.cpu.update({k: 0.0 for k in s1.cpu if k.startswith("sync ")})
        writes = m0["objects:created"] + m0["objects:configured"] + m0["objects:deleted"]
        self.res.row(f"restart at {total_caches} converged caches: start -> "
                     f"{total_caches} reconciles done",
                     f"{first_pass_s:.2f} s (ready {ready_s:.2f} s)")
        self.res.row("restart: child writes / status writes (service metrics)",
                     f"{writes:.0f} / {m0['status_writes']:.0f}", "0 / 0",
                     verdict(writes == 0 and m0["status_writes"] == 0))
        ours, others = self.writes_summary((s1.api - s0.api).requests, split=True)
        self.res.row("restart: API writes to children + orascaches (apiserver_request_total)",
                     ours, "0", verdict(ours == "none"))
        self.res.row("restart: other API writes (kube-controller-manager)", others)
        self.table("restart, until the first pass is done", s0, s1)
        window = self.args.idle_window
        time.sleep(window)
        m1, s2 = svc.metrics(), self.snap(svc)
        self.res.data.setdefault("timeline", {})["restart"] = sampler.stop()
        elapsed = s2.at - s1.at
        api_delta = (s2.api - s1.api).requests
        d = m1 - m0
        writes = d["objects:created"] + d["objects:configured"] + d["objects:deleted"]
        recs = d["reconciles:ok"] + d["reconciles:error"]
        cpu = {k.removeprefix("sync "): v - s1.cpu.get(k, 0.0) for k, v in s2.cpu.items()
               if k.startswith("sync ")}
        self.res.data["idle"] = {"window_s": elapsed, "metrics_delta": dict(d)}
        self.table(f"idle window, resync every 5 s, {total_caches} caches", s1, s2)
        self.res.row(f"idle window {elapsed:.1f} s, --resync-period 5: reconciles",
                     f"{recs:.0f} ({recs / max(1, total_caches):.1f} rounds of "
                     f"{total_caches}), unchanged objects {d['objects:unchanged']:.0f}")
        self.res.row("idle: child writes / status writes (service metrics)",
                     f"{writes:.0f} / {d['status_writes']:.0f}", "0 / 0",
                     verdict(writes == 0 and d["status_writes"] == 0))
        ours, others = self.writes_summary(api_delta, split=True)
        self.res.row("idle: API writes to children + orascaches (apiserver_request_total)",
                     ours, "0", verdict(ours == "none"))
        self.res.row("idle: other API writes (kube-controller-manager: Events, Pods ...)",
                     others)
        self.res.row("idle: service CPU in the window",
                     ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items())
                     + f" = {sum(cpu.values()) / elapsed * 100:.0f}% of one core")
        return svc

    @staticmethod
    def writes_summary(d: Counter[Key], split: bool = False) -> Any:
        """Write requests; with `split`, (to the service's objects, to anything else):
        the service writes children and OrasCache status, kube-controller-manager writes
        StatefulSet status, Pods, EndpointSlices and Events too."""
        def text(keys: Iterable[Key]) -> str:
            return ", ".join(f"{d[k]} {k[0]} {k[1]}{'/' + k[2] if k[2] else ''}"
                             for k in sorted(keys)) or "none"

        writes = [k for k in d if k[0] in WRITE_VERBS]
        ours = [k for k in writes if k[1] == "orascaches" or (
            k[1] in ("services", "statefulsets", "persistentvolumeclaims") and not k[2])]
        if not split:
            return text(writes)
        return text(ours), text(k for k in writes if k not in ours)

    def our_cpu(self, svc: Service | None = None) -> dict[str, float]:
        cpu = {name: cpu_seconds(c.pid) for name, c in self.cluster.components.items()}
        cpu["bench"] = cpu_seconds(os.getpid())
        if svc is not None:
            cpu.update({f"sync {k}": v for k, v in svc.cpu().items()})
        return cpu

    def snap(self, svc: Service | None = None) -> Snapshot:
        api = apiserver_stats(self.cluster)
        return Snapshot(time.monotonic(), api, self.our_cpu(svc), machine_cpu())

    def wait_machine_quiet(self, svc: Service | None = None) -> None:
        """Before a timed phase: wait (up to --quiet-timeout) until processes outside
        this benchmark use less than --quiet-limit of the CPUs, as measured over 3 s."""
        wait_quiet(self.args.quiet_limit, self.args.quiet_timeout,
                   excluded=lambda: sum(self.our_cpu(svc).values()), who="other processes")

    def table(self, title: str, s0: Snapshot, s1: Snapshot, seconds: float | None = None,
              ) -> None:
        """Requests (count, per cache, mean server-side latency) and CPU between s0, s1."""
        wall = seconds if seconds is not None else s1.at - s0.at
        d = s1.api - s0.api
        lines = [f"{title} ({wall:.1f} s): API requests by every client "
                 "(apiserver_request_total; server-side mean latency)"]
        for key, v in sorted(d.requests.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            verb, res, sub = key
            if res in SHOWN_RESOURCES and verb != "WATCH":
                lines.append(f"  {verb:14} {res + ('/' + sub if sub else ''):28} {v:6d}"
                             f"  {v / self.n:5.2f}/cache  {d.mean_ms(key):7.1f} ms")
        cpu = {k: v - s0.cpu.get(k, 0.0) for k, v in s1.cpu.items()}
        busy = s1.machine - s0.machine
        foreign = busy - sum(cpu.values())
        cpus = os.cpu_count() or 1
        lines.append("  CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
        lines.append(f"  machine: {busy:.1f} CPU-s busy of {(s1.at - s0.at) * cpus:.1f} "
                     f"({cpus} CPUs); processes outside this benchmark: {foreign:.1f} CPU-s")
        if foreign > 0.1 * (s1.at - s0.at) * cpus:
            lines.append("  WARNING: other processes used this machine's CPUs during the "
                         "measurement; its times are inflated")
        self.res.tables.append("\n".join(lines))
        self.res.data.setdefault("api", {})[title] = {
            "/".join(k): [v, round(d.mean_ms(k), 1)] for k, v in d.requests.items()}
        self.res.data.setdefault("cpu", {})[title] = {**cpu, "machine_busy": busy,
                                                      "foreign": foreign}

    def run(self) -> Results:
        base_s = self.baseline()
        svc = self.service_start(base_s)
        if self.args.startup_only:
            svc.stop()
            return self.res
        log(f"waiting for kube-controller-manager to create {self.pods} Pods in {NS_SYNC}")
        log(f"... done in {wait_pods(self.kube, NS_SYNC, self.pods):.0f} s")
        samples = self.args.latency_samples
        self.wait_machine_quiet(svc)
        to_sts, to_status = self.latency("lat", samples, self.args.pause)
        self.latency_rows("idle latency", to_sts, to_status, targets=True)
        self.memory_row(f"RSS after {self.n + samples} caches", svc.memory())
        stop_s, code = svc.stop()
        self.res.row("SIGTERM -> exit", f"{stop_s:.2f} s, exit code {code}")
        wait_pods(self.kube, NS_SYNC, self.pods + samples)
        if self.args.before:
            with tempfile.TemporaryDirectory(prefix="bench-before-") as tree:
                archive = subprocess.run(["git", "-C", str(REPO), "archive", self.args.before],
                                         check=True, capture_output=True).stdout
                subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
                self.restart_against(Path(tree), self.n + samples)
        self.wait_machine_quiet()
        svc = self.idle(self.n + samples)
        if self.args.resync_latency_samples:
            to_sts, to_status = self.latency("rsl", self.args.resync_latency_samples,
                                             self.args.pause)
            self.latency_rows("latency during 5 s resyncs", to_sts, to_status, targets=False)
        self.memory_row("RSS, resync every 5 s", svc.memory())
        svc.stop()
        return self.res


def report(res: Results) -> str:
    width = [max((len(r[i]) for r in res.rows), default=0) for i in range(4)]
    head = ("measure", "value", "target", "ratio / verdict")
    width = [max(w, len(h)) for w, h in zip(width, head, strict=True)]
    fmt = "  ".join(f"{{:{w}}}" for w in width)
    lines = [f"sync service benchmark, N = {res.n} caches, {os.cpu_count()} CPUs", "",
             fmt.format(*head), fmt.format(*("-" * w for w in width))]
    lines += [fmt.format(*r).rstrip() for r in res.rows]
    return "\n".join([*lines, "", *res.tables, ""])


def sizes(text: str) -> list[int]:
    return sorted(int(n) for n in text.split(","))


def run_one(args: argparse.Namespace) -> Results:
    """One fresh control plane, one Bench at args.n; the report printed as it ends."""
    with contextlib.ExitStack() as stack:
        logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sync-")))
        if args.keep_logs:
            def keep() -> None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for f in logdir.glob("*.log"):
                    (args.keep_logs / f"{args.n}-{f.name}").write_bytes(f.read_bytes())
            stack.callback(keep)
        log("starting a local control plane")
        cluster = stack.enter_context(LocalCluster(crds=[CRD]))
        log(f"control plane up in {cluster.timings.get('start_total', 0):.1f} s")
        bench = Bench(cluster, args, logdir, stack)
        try:
            bench.run()
        except BaseException as err:
            bench.res.row("BENCHMARK FAILED", f"{type(err).__name__}: {err}"[:300])
            raise
        finally:
            print(report(bench.res), flush=True)
        return bench.res


def size_table(results: list[Results], loads: list[float]) -> str:
    """Start-up at each N: time, ratio to the floor, RSS, and the slope per cache from
    the previous size (what one more cache costs in time and memory)."""
    lines = ["| caches | start-up (children + status) | floor (SSA loop + status + Event) "
             "| ratio | CPU-s ratio to the SSA loop (client + kube-apiserver + etcd) "
             "| RSS Python + Node (MB) | peak RSS (VmHWM) Python + Node (MB) | ms per "
             "cache | slope ms/cache | slope KB/cache | load (1 min) |", "|" + "---|" * 11]
    prev: tuple[int, float, float] | None = None
    for res, load in zip(results, loads, strict=True):
        svc, base = res.data["service"], res.data["baseline"]
        floor = base["seconds"] + base.get("required_writes_s", 0.0)
        mem = svc["memory_mb"]
        rss = mem["total"][0]
        parts = " + ".join(f"{v[0]:.0f}" for k, v in mem.items() if k != "total")
        slope = ("" if prev is None else
                 f"{(svc['total_s'] - prev[1]) / (res.n - prev[0]) * 1000:.2f} | "
                 f"{(rss - prev[2]) * 1024 / (res.n - prev[0]):.1f}")
        cpu = next((r[3] for r in res.rows if r[0].startswith("CPU-s: client")), "?")
        lines.append(f"| {res.n:,} | {svc['total_s']:.1f} s | {floor:.1f} s | "
                     f"{svc['total_s'] / floor:.2f}x | {cpu} | {rss:.0f} ({parts}) | "
                     f"{mem['total'][1]:.0f} | {svc['total_s'] / res.n * 1000:.2f} | "
                     f"{slope or '- | -'} | {load:.1f} |")
        prev = (res.n, svc["total_s"], rss)
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("n", nargs="?", type=int, default=1000, help="caches (default 1000)")
    p.add_argument("--sizes", metavar="N,N,...", type=sizes,
                   help="start-up only (phases 1-2) at each N, each on a fresh control "
                   "plane, then one table: time, ratio to the floor, RSS, per-cache slope")
    p.add_argument("--workers", type=int, default=8,
                   help="service --workers and baseline threads (default 8)")
    p.add_argument("--create-workers", type=int, default=8,
                   help="threads creating the OrasCache objects (default 8)")
    p.add_argument("--latency-samples", type=int, default=50)
    p.add_argument("--resync-latency-samples", type=int, default=10,
                   help="latency samples while resyncing every 5 s (default 10)")
    p.add_argument("--pause", type=float, default=0.2, help="between latency samples (s)")
    p.add_argument("--idle-window", type=float, default=12.0, help="seconds (default 12)")
    p.add_argument("--timeout", type=float, default=600.0, help="per phase (s)")
    p.add_argument("--quiet-limit", type=float, default=QUIET_LIMIT,
                   help="before each timed phase, wait until other processes use at most "
                   "this share of the CPUs (default 0.15)")
    p.add_argument("--quiet-timeout", type=float, default=QUIET_TIMEOUT,
                   help="... but at most this long (s, default 300)")
    p.add_argument("--json", type=Path, help="also write every number here")
    p.add_argument("--startup-only", action="store_true",
                   help="stop after the start-up phase (2) and its RSS")
    p.add_argument("--profile", type=Path,
                   help="py-spy the service's start-up into this file (collapsed stacks; "
                   "needs py-spy in .venv)")
    p.add_argument("--keep-logs", type=Path, help="copy the service logs to this directory")
    p.add_argument("--no-pod-wait", dest="pod_wait", action="store_false",
                   help="do not wait for the baseline's Pods before the service starts "
                   "(on a loaded machine kube-controller-manager may take half an hour for "
                   "10,000; its work then lands in the service's phase: a pessimistic ratio)")
    p.add_argument("--before", metavar="REV",
                   help="also restart the service of git revision REV and of this tree "
                   "alternately on the converged caches (start-up cost of a change)")
    return p.parse_args(argv)


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so the cluster and the service are stopped."""
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with terminate_as_exit():
        if not args.sizes:
            res = run_one(args)
            if args.json:
                args.json.write_text(json.dumps(
                    {"n": res.n, "rows": res.rows, **res.data}, indent=1, default=str))
            return 0
        results, loads = [], []
        for n in args.sizes:
            results.append(run_one(argparse.Namespace(**{**vars(args), "n": n,
                                                         "startup_only": True})))
            loads.append(os.getloadavg()[0])
        print(f"sync service start-up by size, {os.cpu_count()} CPUs\n\n"
              f"{size_table(results, loads)}\n", flush=True)
        if args.json:
            args.json.write_text(json.dumps([{"n": r.n, "rows": r.rows, **r.data}
                                             for r in results], indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
