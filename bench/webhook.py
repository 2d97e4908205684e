"""Admission latency of the webhook at a steady rate of Pod creations.

One run, one fresh local control plane: annotated Pods (through the webhook) and, as the
baseline measured in the same run, unannotated Pods (which matchConditions keep away from
the webhook), both created at RATE per second. Reports client-side create latency p50/p99
for each, the difference, and the webhook's own answer time (its histogram) p99.
Usage: make bench-webhook   (or: .venv/bin/python -m bench.webhook [RATE] [SECONDS])
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client

from constructs_lib import schema
from constructs_lib.annotations import PREFIX
from constructs_lib.install import webhook_configuration
from tests.harness import LocalCluster, ensure_binaries
from tests.harness.ports import free_ports
from tests.integration.syncproc import SyncProcess, wait_for

REPO = Path(__file__).resolve().parent.parent


def pod(name: str, annotated: bool) -> dict[str, object]:
    annotations = {f"{PREFIX}input-uri": "data/in:1", f"{PREFIX}output-uri": "data/out:1"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations if annotated else {}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "app", "image": "busybox", "workingDir": "/work",
                "command": ["sh", "-c", "echo hi > out.txt"]}]}}


def run_rate(core: client.CoreV1Api, ns: str, prefix: str, *, annotated: bool, rate: float,
             seconds: float) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        started = time.perf_counter()
        core.create_namespaced_pod(ns, pod(f"{prefix}-{i}", annotated))
        with lock:
            latencies.append(time.perf_counter() - started)

    total = int(rate * seconds)
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(total):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(create, i)
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 50.0
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    with LocalCluster(crds=[REPO / "crds/orascache.yaml"], binaries=ensure_binaries()) as c, \
            c.api_client() as api, tempfile.TemporaryDirectory() as tmp:
        ns = "bench"
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": ns}})
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            schema.GROUP, schema.VERSION, ns, schema.PLURAL,
            {"apiVersion": schema.API_VERSION, "kind": schema.KIND,
             "metadata": {"name": "oras"}, "spec": {}})
        port = free_ports(1)[0]
        client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration(
            webhook_configuration("bench", {"url": f"https://127.0.0.1:{port}/mutate"},
                                  {"matchLabels": {"kubernetes.io/metadata.name": ns}}))
        proc = SyncProcess(c.kubeconfig, [
            "--namespace", ns, "--webhook-addr", f"127.0.0.1:{port}", "--webhook-host",
            "127.0.0.1", "--webhook-config", "bench", "--log-level", "warning"],
            Path(tmp) / "sync.log").start()
        try:
            proc.wait_ready()
            wait_for(lambda: client.AdmissionregistrationV1Api(api)
                     .read_mutating_webhook_configuration("bench").webhooks[0]
                     .client_config.ca_bundle, what="caBundle")
            # warm-up: connections, first calls
            run_rate(core, ns, "warm", annotated=True, rate=10, seconds=1)
            base = run_rate(core, ns, "plain", annotated=False, rate=rate, seconds=seconds)
            hooked = run_rate(core, ns, "wired", annotated=True, rate=rate, seconds=seconds)
            _, metrics = proc.get("/metrics")
        finally:
            proc.stop()
    answer = [line for line in metrics.splitlines()
              if line.startswith("orascache_admission_duration_seconds_bucket")]
    count = sum(float(x.rsplit(" ", 1)[1]) for x in metrics.splitlines()
                if x.startswith("orascache_admission_duration_seconds_count"))
    p99_bucket = next((b.split('le="')[1].split('"')[0] for b in answer
                       if float(b.rsplit(" ", 1)[1]) >= 0.99 * count), "?")
    print(f"rate {rate:.0f}/s for {seconds:.0f} s: {len(base)} plain, {len(hooked)} wired Pods")
    print(f"create latency, no webhook (baseline): p50 {pct(base, 50):6.1f} ms  "
          f"p99 {pct(base, 99):6.1f} ms")
    print(f"create latency, through the webhook:   p50 {pct(hooked, 50):6.1f} ms  "
          f"p99 {pct(hooked, 99):6.1f} ms")
    print(f"added by admission (p99 difference):        {pct(hooked, 99) - pct(base, 99):6.1f} ms")
    print(f"webhook answer time p99 <= {p99_bucket} s (its histogram); target p99 <= 20 ms")


if __name__ == "__main__":
    main()
