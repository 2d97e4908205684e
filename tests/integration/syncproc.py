"""Run `orascache sync` as a real subprocess against the test cluster, and wait on things."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any, TypeVar

from sync.apply.kube import ApiError, Kube
from tests.harness import LocalCluster
from tests.harness.ports import free_ports

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
TRIGGER_TOKEN = "integration-trigger-token-2f1c"


def trigger_token_file(directory: Path) -> Path:
    """A token file for `--trigger-token-file`, as a mounted Secret key would be."""
    path = directory / "trigger-token"
    path.write_text(TRIGGER_TOKEN + "\n")
    path.chmod(0o400)
    return path


def post_trigger(port: int, headers: dict[str, str] | None = None,
                 body: bytes = b"{}") -> int:
    """POST /trigger (with the bearer token unless `headers` are given); the status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/trigger", data=body, method="POST",
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"} if headers is None else headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.1,
             what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def settled(read: Callable[[], T], quiet: float = 2.0, timeout: float = 30.0) -> T:
    """`read()` once its value has not changed for `quiet` seconds (e.g. request counters,
    while kube-controller-manager still cleans up after earlier tests)."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {timeout}s (last: {last!r})")
        time.sleep(0.25)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
    return last


class SyncProcess:
    def __init__(self, kubeconfig: Path, args: list[str], log: Path) -> None:
        self.port = free_ports(1)[0]
        self.argv = [
            sys.executable, "-m", "sync.cli", "sync", "--kubeconfig", str(kubeconfig),
            "--http-addr", f"127.0.0.1:{self.port}", *args,
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SyncProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 30.0) -> SyncProcess:
        wait_for(lambda: self.get("/readyz")[0] == 200 or self.exited(), timeout,
                 what=f"/readyz of {self.argv}")
        assert not self.exited(), self.output()
        return self

    def metric(self, name: str) -> float:
        """Sum of every sample of a metric (all label values)."""
        _, text = self.get("/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            tail = self.output()[-3000:]
            raise AssertionError(f"sync did not stop on SIGTERM:\n{tail}") from None


def get(kube: Kube, path: str) -> dict[str, Any] | None:
    """GET a path as JSON; None when it is not there."""
    try:
        return kube.request("GET", path)
    except ApiError as err:
        if err.status == 404:
            return None
        raise


def sts(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return get(kube, f"/apis/apps/v1/namespaces/{ns}/statefulsets/{name}")


def svc(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return get(kube, f"/api/v1/namespaces/{ns}/services/{name}")


WRITE_VERBS = ("create", "update", "patch")


def service_requests(cluster: LocalCluster, namespace: str, resources: Container[str],
                     ignore: Callable[[str, str], bool] = lambda r, s: False,
                     verbs: Container[str] = WRITE_VERBS, dry_run: bool = False,
                     ) -> dict[str, int]:
    """The sync service's requests (writes, or `verbs`) to `resources` in `namespace`, by
    verb and resource/subresource, from kube-apiserver's audit log; leaving out those
    `ignore(resource, subresource)` names. Dry-run requests write nothing and are left out,
    or (`dry_run`) counted alone. Only the service's own requests count (its User-Agent), so
    kube-controller-manager cleaning up after earlier tests never shows, and the log
    outlives kube-apiserver restarts."""
    counts: dict[str, int] = {}
    with cluster.audit_log.open() as lines:
        for line in lines:
            if f'"{namespace}"' not in line or '"userAgent":"orascache/' not in line:
                continue
            event = json.loads(line)
            ref = event.get("objectRef", {})
            if ref.get("namespace") != namespace or event["verb"] not in verbs:
                continue
            if ("dryRun=All" in event["requestURI"]) != dry_run:
                continue
            resource, subresource = ref.get("resource", ""), ref.get("subresource", "")
            if resource not in resources or ignore(resource, subresource):
                continue
            key = f"{event['verb']} {resource}/{subresource}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def report_fault(fault: str, did: str, converge_s: float, writes: str, lost: int) -> None:
    """A row for docs/reliability.md, appended as a JSON line to $ORAS_CACHE_CHAOS_REPORT
    when set (as `make chaos` does for the long faults); nothing otherwise."""
    target = os.environ.get("ORAS_CACHE_CHAOS_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"fault": fault, "did": did, "converge_s": converge_s,
                                  "writes": writes, "lost": lost}) + "\n")
