"""Leader election when the API server cannot be reached: the elector's thread must live on.

The kubernetes client's lock catches only ApiException, so a refused connection used to end
the election thread: a standby then never led, and a leader kept working without renewing.
Each elector here talks to the real API server through a TCP forwarder the test can cut
(connections refused) or stall (bytes dropped, as on a dead route).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from sync.apply.leader import LeaderElector
from sync.options import LeaseOptions
from tests.integration.syncproc import wait_for

pytestmark = pytest.mark.integration
# Short, as the cluster source's tests run it: a lost lease shows within seconds.
LEASE = LeaseOptions(name="elect", duration=4, renew_deadline=3, retry_period=1)


class Forwarder:
    """127.0.0.1:port -> the API server, which the test can cut or stall."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.stalled = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [conn, upstream]
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.stalled.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                sock.close()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        with contextlib.suppress(OSError):  # already cut
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        with self._lock:
            for sock in self._conns:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._conns.clear()

    def restore(self) -> None:
        self._listener = self._listen(self.port)

    def close(self) -> None:
        self.stalled.clear()
        self.cut()


@pytest.fixture
def forwarder(api_client: ApiClient) -> Iterator[Forwarder]:
    url = urlparse(api_client.configuration.host)
    forward = Forwarder((url.hostname or "127.0.0.1", url.port or 443))
    yield forward
    forward.close()


@pytest.fixture
def forwarded(api_client: ApiClient, forwarder: Forwarder) -> Iterator[ApiClient]:
    """An admin client whose requests go through the forwarder."""
    config = client.Configuration()
    vars(config).update(vars(api_client.configuration))
    config.host = f"https://127.0.0.1:{forwarder.port}"
    with ApiClient(config) as api:
        yield api


class Candidate:
    def __init__(self, api: ApiClient, namespace: str, identity: str) -> None:
        self.stopped = threading.Event()
        lease = dataclasses.replace(LEASE, namespace=namespace, identity=identity)
        self.elector = LeaderElector(api, lease, on_started=lambda: None,
                                     on_stopped=self.stopped.set)
        self.elector.start()

    def __enter__(self) -> Candidate:
        return self

    def __exit__(self, *_: Any) -> None:
        self.elector.release()


def holder(api: ApiClient, namespace: str) -> str | None:
    lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE.name, namespace)
    return lease.spec.holder_identity if lease.spec else None


def test_a_standby_cut_off_from_the_api_server_still_takes_over(
    api_client: ApiClient, forwarded: ApiClient, forwarder: Forwarder, namespace: str
) -> None:
    with Candidate(api_client, namespace, "a") as leader:
        wait_for(leader.elector.leading.is_set, timeout=10, what="a leading")
        with Candidate(forwarded, namespace, "b") as standby:
            time.sleep(LEASE.retry_period * 2)  # b has read the Lease and waits
            forwarder.cut()
            time.sleep(LEASE.retry_period * 3)  # b's attempts are refused
            forwarder.restore()
            leader.elector.release()
            wait_for(standby.elector.leading.is_set, timeout=LEASE.duration * 2,
                     what="b leading once it reaches the API server again")
            assert holder(api_client, namespace) == "b"


@pytest.mark.parametrize("outage", ["refused", "stalled"])
def test_a_leader_cut_off_from_the_api_server_stops_leading(
    forwarded: ApiClient, forwarder: Forwarder, namespace: str, outage: str
) -> None:
    with Candidate(forwarded, namespace, "b") as leader:
        wait_for(leader.elector.leading.is_set, timeout=10, what="b leading")
        if outage == "refused":
            forwarder.cut()
        else:
            forwarder.stalled.set()
        began = time.monotonic()
        # The renew deadline, one bounded request in flight when it passed, and slack for load.
        wait_for(leader.stopped.is_set, timeout=LEASE.renew_deadline * 3,
                 what="on_stopped after the renew deadline")
        assert not leader.elector.leading.is_set()
        print(f"\nleadership given up {time.monotonic() - began:.1f} s into the outage")
