"""Render N caches in one process: import time, first synth, warm ms per cache.

Baseline, measured in the same run: the same Service + StatefulSet built with the
cdk8s-plus-34 high-level constructs (what a straightforward cdk8s app would write).
Ours twice: N distinct specs (each cache through the construct: the ratio) and N caches
of one spec (one construct render, the others by name: see `render.render`).
Usage: make bench   (or: JSII_NODE=... .venv/bin/python -m bench.render [N])
"""

from __future__ import annotations

import sys
import time

T0 = time.perf_counter()
import cdk8s  # noqa: E402
import cdk8s_plus_34 as plus  # noqa: E402

from constructs_lib import OrasCache, OrasCacheSpec, render  # noqa: E402

IMPORT_S = time.perf_counter() - T0


def caches(n: int, offset: int = 0, distinct: bool = True) -> list[OrasCache]:
    return [OrasCache(f"c{offset + i}", "bench", OrasCacheSpec(
        port=5000 + (offset + i) % 60000 if distinct else 5000)) for i in range(n)]


def ours(n: int, offset: int, distinct: bool = True) -> float:
    items = caches(n, offset, distinct)
    start = time.perf_counter()
    for rendered in render(items):
        assert len(rendered.manifests) == 2
    return time.perf_counter() - start


def baseline(n: int, offset: int) -> float:
    start = time.perf_counter()
    app = cdk8s.App()
    for i in range(n):
        chart = cdk8s.Chart(app, f"b{offset + i}")
        sts = plus.StatefulSet(
            chart, "Registry", metadata=cdk8s.ApiObjectMetadata(name=f"c{offset + i}"),
            containers=[plus.ContainerProps(image="ghcr.io/oras-project/registry:latest",
                                            port_number=5000)],
        )
        sts.service  # noqa: B018 - the headless Service cdk8s-plus creates
        assert len(chart.to_json()) == 2
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    first = ours(1, 0)
    baseline(1, 0)
    warm = ours(n, 1) / n
    shared = ours(n, 1, distinct=False) / n
    base = baseline(n, 1) / n
    print(f"import cdk8s + cdk8s-plus-34 + constructs_lib: {IMPORT_S * 1000:8.1f} ms")
    print(f"first synth (jsii start-up included):          {first * 1000:8.1f} ms")
    print(f"warm, {n} caches of distinct specs:          {warm * 1000:8.2f} ms/cache")
    print(f"warm, {n} caches of one spec (one construct): {shared * 1000:8.2f} ms/cache")
    print(f"warm, {n} caches, cdk8s-plus baseline:        {base * 1000:8.2f} ms/cache")
    print(f"ratio orascache / baseline:                    {warm / base:8.2f}x")
    print("target: warm <= 5 ms/cache")


if __name__ == "__main__":
    main()
