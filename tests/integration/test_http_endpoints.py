"""The service's HTTP server (/healthz, /readyz, /metrics) against clients that hold
connections open: the real `orascache sync` process on the test cluster."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import LocalCluster
from tests.integration.syncproc import SyncProcess, wait_for

IDLE = 200


@pytest.fixture
def service(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[SyncProcess]:
    proc = SyncProcess(cluster.kubeconfig, ["--namespace", namespace, "--log-format", "text"],
                       tmp_path / "sync.log").start()
    proc.wait_ready()
    yield proc
    proc.stop()


def threads(proc: SyncProcess) -> int:
    assert proc.proc is not None
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("Threads:")))


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_healthz_keeps_answering_under_200_idle_connections(service: SyncProcess) -> None:
    """Issue 19, fault 9: each idle connection held a thread, without a timeout."""
    before = threads(service)
    idle = [socket.create_connection(("127.0.0.1", service.port), timeout=5)
            for _ in range(IDLE)]
    try:
        for _ in range(10):
            started = time.monotonic()
            assert service.get("/healthz") == (200, "ok\n")
            assert time.monotonic() - started < 1.0
        assert service.get("/readyz")[0] == 200
        assert threads(service) - before <= 32, "at most 32 connections hold a thread"
        # Those not already evicted by newer connections are closed at the read deadline.
        wait_for(lambda: all(closed_by_server(s) for s in idle), timeout=15,
                 what="idle connections closed by the service")
        assert threads(service) - before <= 4
    finally:
        for sock in idle:
            sock.close()
