"""Leader election on a coordination.k8s.io Lease, with the kubernetes client's elector.

The client's elector neither stops nor releases; `release()` fences the lock (no more
renewals) and hands the Lease over at once, so a standby takes over without waiting
for the lease to expire (client-go's ReleaseOnCancel).

The client's lock only catches `ApiException`: a refused connection or a hung read would
end its thread silently, leaving a standby that never leads or a leader that keeps
working without renewing. The lock here bounds each call and turns transport errors
into a failed attempt, which the elector retries (standby) or counts against the renew
deadline (leader), as client-go does.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from sync.options import LeaseOptions

log = logging.getLogger(__name__)
# What a request can raise besides ApiException: refused or reset connections, timeouts.
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class _LeaseApi(client.CoordinationV1Api):
    """The Lease calls the lock makes, each bounded: a hung read must not stall the election.

    On its own client without urllib3's retries, which would repeat a timed-out read three
    times: the elector retries itself, every retry period, within the renew deadline.
    """

    def __init__(self, api: client.ApiClient, timeout: float) -> None:
        config = copy.deepcopy(api.configuration)
        config.retries = False
        own = client.ApiClient(config)
        own.user_agent = api.user_agent  # the audit log names the service, as for its other calls
        super().__init__(own)
        self.timeout = timeout

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        return super().read_namespaced_lease(*args, **kwargs)

    def create_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        return super().create_namespaced_lease(*args, **kwargs)

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        return super().replace_namespaced_lease(*args, **kwargs)


class _FencedLeaseLock(LeaseLock):
    """A LeaseLock on our ApiClient that refuses to write once released."""

    def __init__(self, api: client.ApiClient, lease: LeaseOptions) -> None:
        super().__init__(lease.name, lease.namespace, lease.identity)
        self.api_instance = _LeaseApi(api, timeout=lease.renew_deadline)
        self.fenced = threading.Event()

    def get(self, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        try:
            return super().get(*args, **kwargs)  # type: ignore[no-any-return]
        except TRANSPORT_ERRORS as err:
            # Shaped as the client's own failures: no status, so no "create the lock".
            return False, ApiException(status=0, reason=f"could not read lease: {err}")

    def create(self, *args: Any, **kwargs: Any) -> bool:
        return not self.fenced.is_set() and self._write(super().create, *args, **kwargs)

    def update(self, *args: Any, **kwargs: Any) -> bool:
        return not self.fenced.is_set() and self._write(super().update, *args, **kwargs)

    @staticmethod
    def _write(call: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        try:
            return bool(call(*args, **kwargs))
        except TRANSPORT_ERRORS as err:
            log.warning("could not write lease: %s", err)
            return False


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
        self.lock = _FencedLeaseLock(api, lease)
        self.retry_period = lease.retry_period
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
        threading.Thread(target=self._run, name="leader-election", daemon=True).start()

    def _run(self) -> None:
        """The client's loop, kept alive: whatever escapes it ends leadership, never the thread."""
        while not self.lock.fenced.is_set():
            try:
                self._election.run()  # returns after leading, once renewal failed
                return
            except Exception:
                log.exception("leader election failed")
                if self.leading.is_set():
                    self._election.election_config.onstopped_leading()
                    return
                time.sleep(self.retry_period)

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
        except TRANSPORT_ERRORS as err:
            log.warning("could not release lease: %s", err)
