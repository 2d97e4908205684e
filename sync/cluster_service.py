"""The sync service, cluster source: informers -> work queue -> reconciler, plus operations.

Threads: informers (one per watched kind and namespace) feed the queue; the main thread
takes batches of keys and parses + renders them (jsii is not thread-safe, so only this
thread touches it); a bounded pool runs the API half of each reconcile in parallel,
one reconcile per cache at a time.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from constructs_lib import schema
from sync.apply.applier import Applier
from sync.apply.kube import RESOURCES, ApiError, Kube, Obj, Unreachable
from sync.apply.leader import LeaderElector
from sync.cluster_reconcile import (
    CACHES,
    CHILD_KINDS,
    HEALTH_STATUS,
    OWNER_LABEL,
    Reconciler,
    Work,
    cache_selector,
    child_selector,
)
from sync.options import Options
from sync.report.events import EventRecorder
from sync.report.metrics import Metrics
from sync.serve.health import HealthServer
from sync.sources.informer import Informer, InformerSet, keep_status, key_of
from sync.sources.workqueue import WorkQueue
from sync.webhook.admission import NamespaceScope, make_mutator
from sync.webhook.certs import CertDir, CertDirError, CertRotator, CertSource
from sync.webhook.server import CaBundleKeeper, WebhookMetrics, WebhookServer

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A problem the user must fix before the service can run; the message says how."""


def preflight(kube: Kube, namespaces: Sequence[str] | None) -> None:
    """Fail fast, with the fix in the message, when the service cannot work at all."""
    server = kube.api.configuration.host
    try:
        kube.request("GET", f"/apis/{schema.API_VERSION}")
    except ApiError as err:
        if err.status == 404:
            raise StartupError(
                f"the OrasCache CRD is not installed on {server}: "
                "kubectl apply -f dist/install/crd.yaml") from err
        if err.status not in (401, 403):
            raise StartupError(f"{server}: {err.message}") from err
    except (Unreachable, OSError) as err:
        raise StartupError(f"cannot reach the API server at {server}: {err}") from err
    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    for namespace in scopes:
        try:
            kube.list(CACHES, namespace, limit=1)
        except ApiError as err:
            where = f"in namespace {namespace}" if namespace else "in all namespaces"
            if err.status in (401, 403):
                raise StartupError(
                    f"not allowed to list orascaches {where}: {err.message} "
                    "(check the ServiceAccount's RBAC in dist/install/)") from err
            raise StartupError(f"listing orascaches {where}: {err.message}") from err


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core) and
    keeps their freed memory: with ~25 threads parsing JSON that is tens of MB of RSS.
    Same as MALLOC_ARENA_MAX=2, set before the service starts its threads."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return
    m_arena_max = -8
    libc.mallopt(m_arena_max, arenas)


def release_free_memory() -> None:
    """Hand glibc's free heap memory back to the kernel (malloc_trim): the initial lists
    and the start-up's renders and requests leave tens of MB freed but still resident,
    which counts against the container's memory limit."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


# While there is work, release free heap memory at most this often.
TRIM_EVERY = 60.0


class SyncService:
    def __init__(self, kube: Kube, options: Options) -> None:
        self.kube = kube
        self.options = options
        self.metrics = Metrics()
        self.queue = WorkQueue()
        self.stopping = threading.Event()
        self.applier = Applier(kube, concurrency=options.workers, drift=options.drift)
        self.metrics.drifted.set_function(self.applier.drifted_count)
        namespaces: list[str | None] = list(options.namespaces) if options.namespaces else [None]
        # A shard lists and watches only its own caches and children (server-side label
        # selectors): a cache relabelled away leaves as a DELETED event.
        # Every store is compact JSON, and children keep only the status fields that
        # Ready reads (their spec stays: the applier compares the fields it set).
        self.caches = InformerSet([
            Informer(kube, CACHES, namespace=ns, label_selector=cache_selector(options.shard_key),
                     on_event=self._on_cache, compact=True)
            for ns in namespaces
        ])
        self.metrics.watch_stalled(self.caches.items)
        self.children = {
            kind: InformerSet([
                Informer(kube, RESOURCES[kind], namespace=ns,
                         label_selector=child_selector(options.shard_key),
                         index_label=OWNER_LABEL, on_event=self._on_child,
                         transform=keep_status(HEALTH_STATUS), compact=True)
                for ns in namespaces
            ])
            for kind in CHILD_KINDS
        }
        # The webhook is not sharded: a shard serving it also holds every cache a Pod may
        # name (its own informer, feeding no reconcile).
        self.webhook_caches = self.caches
        if options.shard_key is not None and options.webhook_addr:
            self.webhook_caches = InformerSet([
                Informer(kube, CACHES, namespace=ns, compact=True) for ns in namespaces])
        self.reconciler = Reconciler(
            kube=kube, applier=self.applier, caches=self.caches, children=self.children,
            events=EventRecorder(kube), metrics=self.metrics,
        )
        # Prepared works waiting for a worker, at most two batches: each holds its cache
        # and manifests decoded (~30 kB); unbounded, the main thread would render the
        # whole start-up's caches into the pool's queue (150 MB at 5000 caches).
        self._in_flight = threading.Semaphore(2 * options.batch + options.workers)
        self.elector: LeaderElector | None = None
        self.health = HealthServer(options.http_addr, self) if options.http_addr else None
        self.webhook: WebhookServer | None = None
        self.ca_keeper: CaBundleKeeper | None = None
        if options.webhook_addr:
            certs = self._webhook_certs(options)
            scope = NamespaceScope.of(options.namespaces, options.own_namespace)
            self.webhook = WebhookServer(options.webhook_addr, certs,
                                         make_mutator(kube, self.webhook_caches.get, scope),
                                         WebhookMetrics(self.metrics.registry))
            self.ca_keeper = CaBundleKeeper(kube, certs, options.webhook_config)

    @staticmethod
    def _webhook_certs(options: Options) -> CertSource:
        if options.webhook_cert_dir:
            try:
                return CertDir(Path(options.webhook_cert_dir))
            except CertDirError as err:
                raise StartupError(f"webhook serving certificate: {err}") from err
        validity = dt.timedelta(seconds=options.webhook_cert_validity)
        return CertRotator(list(options.webhook_hosts) or ["127.0.0.1"], validity)

    # ----- event handlers (informer threads) -------------------------------------------
    # Our own writes come back as watch events; reacting to them would reconcile every
    # cache once or twice more for nothing.
    def _on_cache(self, type_: str, obj: Obj) -> None:
        if type_ == "MODIFIED" and self.reconciler.is_status_echo(obj):
            return
        self.queue.add(key_of(obj))

    def _on_child(self, type_: str, obj: Obj) -> None:
        if type_ != "DELETED" and self.applier.is_echo(obj):
            return
        meta = obj["metadata"]
        owner = (meta.get("labels") or {}).get(OWNER_LABEL)
        if owner:
            self.queue.add(f"{meta.get('namespace', '')}/{owner}")

    # ----- readiness ----------------------------------------------------------------------
    def synced(self) -> bool:
        informers = [self.caches, *self.children.values()]
        return all(i.synced() for i in informers)

    def ready(self) -> tuple[bool, str]:
        if self.elector is not None and not self.elector.leading.is_set():
            return True, "standby"
        return (True, "synced") if self.synced() else (False, "caches not synced")

    # ----- run ------------------------------------------------------------------------------
    def run(self) -> int:
        """Blocks until SIGTERM/SIGINT or `stop()`; returns the exit code."""
        limit_malloc_arenas()
        for sig in (signal.SIGTERM, signal.SIGINT):
            if threading.current_thread() is threading.main_thread():
                signal.signal(sig, lambda *_: self.stop())
        if self.health:
            self.health.start()
        if self.webhook and self.ca_keeper:
            # Every replica admits, leader or not: it needs the caches in memory now.
            self.webhook_caches.start()
            self.ca_keeper.start()
            self.webhook.start()
        lost = threading.Event()
        if self.options.leader_elect:
            o = self.options
            self.elector = LeaderElector(self.kube.api, o.lease, on_started=lambda: None,
                                         on_stopped=lost.set)
            self.elector.start()
            log.info("waiting for leadership", extra={"identity": o.lease.identity})
            while not self.elector.leading.wait(0.2):
                if self.stopping.is_set():
                    return self._shutdown(0)
            self.metrics.leader.set(1)
            log.info("became leader", extra={"identity": o.lease.identity})
        if self.webhook_caches is not self.caches or not self.webhook:
            self.caches.start()
        for informer in self.children.values():
            informer.start()
        code = self._loop(lost)
        return self._shutdown(code)

    def stop(self) -> None:
        self.stopping.set()
        self.queue.shutdown()

    def _loop(self, lost: threading.Event) -> int:
        pool = ThreadPoolExecutor(max_workers=self.options.workers, thread_name_prefix="reconcile")
        next_resync = time.monotonic() + self.options.resync_period
        busy, trimmed = False, 0.0
        try:
            while not self.stopping.is_set():
                if lost.is_set():
                    log.error("leadership lost; exiting so a new leader takes over")
                    return 1
                if time.monotonic() >= next_resync:
                    for obj in self.caches.items():
                        self.queue.add(key_of(obj))
                    next_resync = time.monotonic() + self.options.resync_period
                if not self.synced():
                    time.sleep(0.05)
                    continue
                # Not only when the queue drains: with thousands of caches and a short
                # resync it never does, and the freed pages would stay resident for good.
                if busy and time.monotonic() - trimmed >= TRIM_EVERY:
                    release_free_memory()
                    busy, trimmed = False, time.monotonic()
                keys = self.queue.get_batch(self.options.batch, timeout=0.5)
                self.metrics.queue_depth.set(self.queue.depth())
                if not keys:
                    continue
                busy = True
                works = self.reconciler.prepare(keys)
                prepared = {w.key for w in works}
                for key in keys:
                    if key not in prepared:
                        self.queue.forget(key)
                        self.queue.done(key)
                for work in works:
                    self._in_flight.acquire()
                    pool.submit(self._finish, work)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return 0

    def _finish(self, work: Work) -> None:
        try:
            try:
                ok = self.reconciler.finish(work)
            except Exception:  # a bug must not kill the worker; retry with backoff
                log.exception("reconcile %s crashed", work.key)
                ok = False
            if ok:
                self.queue.forget(work.key)
            else:
                delay = self.queue.retry(work.key)
                log.info("retrying %s in %.2fs", work.key, delay)
            self.queue.done(work.key)
        finally:
            self._in_flight.release()

    def _shutdown(self, code: int) -> int:
        if self.elector is not None:  # first: a standby leads at once (no more reconciles here)
            self.elector.release()
            self.metrics.leader.set(0)
        if self.webhook:  # while the caches still answer admissions
            self.webhook.drain(self.options.webhook_drain)
        for informer in {id(i): i for i in [self.caches, self.webhook_caches,
                                            *self.children.values()]}.values():
            informer.stop()
        self.applier.close()
        self.reconciler.events.close()  # pending events still go out
        if self.webhook and self.ca_keeper:
            self.ca_keeper.stop()
            self.webhook.stop()
        if self.health:
            self.health.stop()
        log.info("stopped", extra={"exit_code": code})
        return code

