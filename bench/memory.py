"""Where the sync service's memory goes (issue 24), at N caches, cluster source.

One fresh LocalCluster; N OrasCache objects (empty specs, as issue 24 measured: one
StatefulSet and one Service each) created before the service starts; the service then
runs in this process (SyncService, as `orascache sync` builds it) with tracemalloc on
until every cache has its status. Printed:

- the deep size of each of the service's stores (the informers' caches and children,
  the render memo, status and apply records), each counted on its own;
- tracemalloc's total and its biggest allocation sites;
- this process's RSS and jsii's Node kernel's RSS.

`--soak SECONDS`: instead, N caches of the benchmark's mix (`bench.sync.spec_for`), the
service (`orascache sync`, its own process) converged, then left running with `--resync`
(default 5 s) for SECONDS while its RSS (Python and Node) is sampled every `--sample`
seconds: is memory flat over many resync rounds? Printed: the samples, first / last / max
and the least-squares slope, with the reconciles and writes made meanwhile (resyncs of
converged caches write nothing).
A benchmark, never a test: 10,000 caches for 30 minutes.

Usage: JSII_NODE=... .venv/bin/python -m bench.memory [--sizes 1000,5000]
       JSII_NODE=... .venv/bin/python -m bench.memory --sizes 10000 --soak 1800 --resync 5
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.sync import (
    CRD,
    NS_SYNC,
    Service,
    cache_doc,
    comm,
    create_caches,
    descendants,
    log,
    memory_mb,
    spec_for,
)
from sync.apply.kube import Kube
from sync.cluster_reconcile import CACHES
from sync.cluster_service import SyncService
from sync.options import Options
from sync.sources.informer import Informer
from tests.harness import LocalCluster

NS = "bench-memory"


def deep_size(root: Any, seen: set[int] | None = None) -> int:
    """Bytes of `root` and everything it holds (containers and scalars), each once."""
    seen = set() if seen is None else seen
    total, stack = 0, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.append(vars(obj))
    return total


def stores(service: SyncService) -> dict[str, Iterable[Any]]:
    r, a = service.reconciler, service.applier
    out: dict[str, Iterable[Any]] = {
        "informer: OrasCaches": [i._store for i in service.caches.informers]}
    for (_, kind), informers in service.children.items():
        out[f"informer: {kind}s"] = [i._store for i in informers.informers]
        out[f"informer: {kind} index"] = [i._index for i in informers.informers]
    out["render memo"] = [r._rendered]
    out["status records"] = [r._written]
    out["apply records"] = [a._applied, a._written_rv, a._drifted]
    out["queue"] = [vars(service.queue)]
    return out


def node_mb() -> float:
    """jsii's Node kernel (and relay) below this process: not the control plane's."""
    return sum(memory_mb(pid)[0] for pid, _ in descendants(os.getpid())
               if comm(pid) == "node")


def converged(service: SyncService) -> int:
    """Caches whose status is written for their generation, from the service's own
    watch cache (no request while the clock runs)."""
    return sum(1 for o in service.caches.items()
               if (o.get("status") or {}).get("observedGeneration")
               == o["metadata"].get("generation"))


def run_until_converged(service: SyncService, n: int) -> tuple[threading.Thread, float]:
    """`service` started in a thread, and the seconds until `n` caches converged."""
    thread = threading.Thread(target=service.run, daemon=True)
    started = time.monotonic()
    thread.start()
    while converged(service) < n:
        time.sleep(0.5)
    return thread, time.monotonic() - started


def measure(n: int, top: int, trace: bool) -> None:
    with LocalCluster(crds=[CRD]) as cluster:
        kube = Kube(cluster.api_client())
        kube.request("POST", "/api/v1/namespaces",
                     body={"metadata": {"name": NS}})
        log(f"creating {n} caches")
        create_caches(kube, NS, [cache_doc(NS, f"c{i:05d}", {}) for i in range(n)], 8)
        gc.collect()
        base = memory_mb(os.getpid())[0]
        if trace:
            tracemalloc.start(1)
        service = SyncService(kube, Options(namespaces=[NS], http_addr=None))
        thread, took = run_until_converged(service, n)
        time.sleep(2.0)  # echoes and controller-manager's status updates settle
        gc.collect()
        rss, hwm = memory_mb(os.getpid())
        print(f"\n## {n} caches: converged in {took:.1f} s; Python RSS {rss:.0f} MB "
              f"(peak {hwm:.0f}; {base:.0f} before the service started), "
              f"Node {node_mb():.0f} MB, load {os.getloadavg()[0]:.1f}"
              f"{' (tracemalloc on: slower, more RSS)' if trace else ''}\n")
        print("| store | MB | KB per cache |\n|---|---|---|")
        for name, parts in stores(service).items():
            size = deep_size(list(parts))
            print(f"| {name} | {size / 2**20:.1f} | {size / n / 1024:.2f} |")
        if trace:
            traced, peak = tracemalloc.get_traced_memory()
            print(f"\ntracemalloc: {traced / 2**20:.1f} MB held (peak {peak / 2**20:.1f} MB)")
            top_sites(tracemalloc.take_snapshot(), top)
            tracemalloc.stop()
        service.stop()
        thread.join(30)


WRITES = frozenset({"created", "configured", "deleted"})


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if var == 0 else sum((t - mt) * (v - mv) for t, v in points) / var * 3600


def converged_in(informer: Informer) -> int:
    """As `converged`, from this process's own informer on the service's namespace."""
    return sum(1 for o in informer.items()
               if (o.get("status") or {}).get("observedGeneration")
               == o["metadata"].get("generation"))


def soak(n: int, seconds: float, resync: float, sample: float) -> None:
    """N caches converged, then `seconds` of `resync` s resyncs with RSS sampled. The
    service runs as its own process (`orascache sync`, as `bench.sync` starts it), so its
    RSS is what a container's limit sees, with none of this process's objects in it."""
    with LocalCluster(crds=[CRD]) as cluster, tempfile.TemporaryDirectory(
            prefix="bench-memory-") as logdir:
        kube = Kube(cluster.api_client())
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NS_SYNC}})
        log(f"creating {n} caches (the benchmark's mix)")
        create_caches(kube, NS_SYNC,
                      [cache_doc(NS_SYNC, f"c{i:05d}", spec_for(i)) for i in range(n)], 8)
        caches = Informer(kube, CACHES, namespace=NS_SYNC, compact=True)
        caches.start()
        svc = Service(cluster, workers=Options().workers, resync=resync, logdir=Path(logdir),
                      tag="soak")
        try:
            while converged_in(caches) < n:
                svc.check()
                time.sleep(0.5)
            took = time.monotonic() - svc.started
            caches.stop()
            log(f"{n} caches converged in {took:.1f} s; soaking {seconds:.0f} s with "
                f"{resync:g} s resyncs")
            rows, writes = sample_rss(svc, seconds, sample)
        finally:
            svc.stop()
        print(f"\n## soak: {n} caches, resync every {resync:g} s, {seconds:.0f} s "
              f"(converged in {took:.1f} s; `orascache sync` in its own process)\n")
        print("| t (s) | Python RSS (MB) | Node RSS (MB) | total (MB) | reconciles since "
              "t=0 | load (1 min) |\n|---|---|---|---|---|---|")
        for t, python, node, reconciles, load in rows:
            print(f"| {t:.0f} | {python:.0f} | {node:.0f} | {python + node:.0f} | "
                  f"{reconciles:.0f} | {load:.1f} |")
        totals = [(t, python + node) for t, python, node, _, _ in rows]
        print(f"\ntotal RSS: first {totals[0][1]:.0f} MB, last {totals[-1][1]:.0f} MB, "
              f"max {max(v for _, v in totals):.0f} MB; slope "
              f"{slope_per_hour(totals):+.1f} MB/hour (Python alone "
              f"{slope_per_hour([(t, p) for t, p, _, _, _ in rows]):+.1f}); "
              f"{rows[-1][3]:.0f} reconciles ({rows[-1][3] / n:.1f} per cache), "
              f"child writes +{writes[0]:.0f}, status writes +{writes[1]:.0f}")


def sample_rss(svc: Service, seconds: float, sample: float,
               ) -> tuple[list[tuple[float, float, float, float, float]], tuple[float, float]]:
    """(t, Python MB, Node MB, reconciles since t=0, load) every `sample` s, and the child
    and status writes made meanwhile (none expected: the caches are converged)."""
    def counts(m: Counter[str]) -> tuple[float, float, float]:
        return (m["reconciles:ok"] + m["reconciles:error"],
                sum(m[f"objects:{a}"] for a in WRITES), m["status_writes"])

    first = counts(svc.metrics())
    rows: list[tuple[float, float, float, float, float]] = []
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        memory, now = svc.memory(), counts(svc.metrics())
        python = memory.get("python", (0.0, 0.0))[0]
        rows.append((elapsed, python, memory["total"][0] - python, now[0] - first[0],
                     os.getloadavg()[0]))
        log(f"t={elapsed:6.0f} s  Python {python:.0f} MB  Node {rows[-1][2]:.0f} MB  "
            f"reconciles {rows[-1][3]:.0f}  load {rows[-1][4]:.1f}")
        if elapsed >= seconds:
            return rows, (now[1] - first[1], now[2] - first[2])
        time.sleep(min(sample, max(0.0, seconds - elapsed)))


def top_sites(snapshot: tracemalloc.Snapshot, top: int) -> None:
    print("\n| allocated at (tracemalloc) | MB |\n|---|---|")
    for stat in snapshot.statistics("lineno")[:top]:
        frame = stat.traceback[0]
        where = f"{frame.filename.rsplit('site-packages/', 1)[-1]}:{frame.lineno}"
        print(f"| {where.replace(str(CRD.parent.parent) + '/', '')} | "
              f"{stat.size / 2**20:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--trace", action="store_true",
                        help="tracemalloc's allocation sites too (slower, inflates RSS)")
    parser.add_argument("--soak", type=float, metavar="SECONDS",
                        help="run the converged service this long and sample its RSS "
                        "(one size: the first of --sizes)")
    parser.add_argument("--resync", type=float, default=5.0,
                        help="--soak: the service's resync period (s)")
    parser.add_argument("--sample", type=float, default=30.0,
                        help="--soak: seconds between RSS samples")
    args = parser.parse_args(argv)
    if args.soak is not None:
        soak(int(args.sizes.split(",")[0]), args.soak, args.resync, args.sample)
        return 0
    for n in (int(s) for s in args.sizes.split(",")):
        measure(n, args.top, args.trace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
