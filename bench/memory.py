"""Where the sync service's memory goes (issue 24), at N caches, cluster source.

One fresh LocalCluster; N OrasCache objects (empty specs, as issue 24 measured: one
StatefulSet and one Service each) created before the service starts; the service then
runs in this process (SyncService, as `orascache sync` builds it) with tracemalloc on
until every cache has its status. Printed:

- the deep size of each of the service's stores (the informers' caches and children,
  the render memo, status and apply records), each counted on its own;
- tracemalloc's total and its biggest allocation sites;
- this process's RSS and jsii's Node kernel's RSS.

Usage: JSII_NODE=... .venv/bin/python -m bench.memory [--sizes 1000,5000]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterable
from typing import Any

from bench.sync import (
    CRD,
    cache_doc,
    comm,
    create_caches,
    descendants,
    log,
    memory_mb,
)
from sync.apply.kube import Kube
from sync.cluster_service import SyncService
from sync.options import Options
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
        thread = threading.Thread(target=service.run, daemon=True)
        started = time.monotonic()
        thread.start()
        while converged(service) < n:
            time.sleep(0.5)
        took = time.monotonic() - started
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
    args = parser.parse_args(argv)
    for n in (int(s) for s in args.sizes.split(",")):
        measure(n, args.top, args.trace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
