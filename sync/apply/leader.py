"""Leader election on a coordination.k8s.io Lease, with the kubernetes client's elector.

The client's elector neither stops nor releases; `release()` fences the lock (no more
renewals) and hands the Lease over at once, so a standby takes over without waiting
for the lease to expire (client-go's ReleaseOnCancel).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from sync.options import LeaseOptions

log = logging.getLogger(__name__)


class _FencedLeaseLock(LeaseLock):
    """A LeaseLock on our ApiClient that refuses to write once released."""

    def __init__(self, api: client.ApiClient, name: str, namespace: str, identity: str) -> None:
        super().__init__(name, namespace, identity)
        self.api_instance = client.CoordinationV1Api(api)
        self.fenced = threading.Event()

    def create(self, *args: Any, **kwargs: Any) -> bool:
        return not self.fenced.is_set() and bool(super().create(*args, **kwargs))

    def update(self, *args: Any, **kwargs: Any) -> bool:
        return not self.fenced.is_set() and bool(super().update(*args, **kwargs))


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        lease: LeaseOptions,
        *,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None],
    ) -> None:
        self.identity = lease.identity
        self.lock = _FencedLeaseLock(api, lease.name, lease.namespace, lease.identity)
        self.leading = threading.Event()

        def started() -> None:
            self.leading.set()
            on_started()

        def stopped() -> None:
            self.leading.clear()
            on_stopped()

        self._election = leaderelection.LeaderElection(electionconfig.Config(
            self.lock, lease.duration, lease.renew_deadline, lease.retry_period, started, stopped))

    def start(self) -> None:
        threading.Thread(target=self._election.run, name="leader-election", daemon=True).start()

    def release(self) -> None:
        """Stop renewing; if we hold the Lease, hand it over immediately."""
        self.lock.fenced.set()
        if not self.leading.is_set():
            return
        self.leading.clear()
        api = self.lock.api_instance
        try:
            lease = api.read_namespaced_lease(self.lock.name, self.lock.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            api.replace_namespaced_lease(self.lock.name, self.lock.namespace, lease)
            log.info("released lease %s/%s", self.lock.namespace, self.lock.name)
        except ApiException as err:
            log.warning("could not release lease: %s %s", err.status, err.reason)
