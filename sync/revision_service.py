"""The revision sources' runner: sync, then wait for the interval or a POST /trigger.

The main thread runs every pass (jsii is not thread-safe); the HTTP thread only sets the
trigger event.
"""

from __future__ import annotations

import logging
import signal
import threading

from sync.cluster_service import limit_malloc_arenas, release_free_memory
from sync.options import RevisionOptions
from sync.revision_sync import RevisionSync
from sync.serve.health import HealthServer
from sync.serve.trigger import Trigger, TriggerAuth

log = logging.getLogger(__name__)


class RevisionService:
    """The loop: sync, then wait for the interval or a POST /trigger; health and metrics."""

    def __init__(self, sync: RevisionSync, options: RevisionOptions,
                 trigger: TriggerAuth | None = None) -> None:
        """`trigger`: serve POST /trigger, for callers that show its token."""
        self.sync = sync
        self.options = options
        self.metrics = sync.metrics
        self._trigger = threading.Event()
        self._stop = threading.Event()
        self._first_done = threading.Event()
        self.health = HealthServer(
            options.http_addr, self,
            Trigger(trigger, self.trigger) if trigger is not None else None,
        ) if options.http_addr else None

    def ready(self) -> tuple[bool, str]:
        if not self._first_done.is_set():
            return False, "first fetch not done yet"
        last = self.sync.state.fetch_error or self.sync.state.last
        return True, f"last: {last.outcome} {last.commit or ''}".strip() if last else "ok"

    def trigger(self) -> None:
        self._trigger.set()

    def stop(self) -> None:
        self._stop.set()
        self._trigger.set()

    def run(self) -> int:
        limit_malloc_arenas()  # before the HTTP and apply threads start
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        if self.health:
            self.health.start()
        log.info("following %s ref %s path %s every %ss", self.sync.source.display_url,
                 self.sync.source.ref, self.options.path, self.options.interval)
        self.sync.restore()
        try:
            while not self._stop.is_set():
                self._trigger.clear()
                try:
                    self.sync.sync_once()
                except Exception:  # a bug in one pass must not end the service
                    log.exception("sync pass failed")
                # A pass decodes its members and (a new revision) every render: the freed
                # heap goes back to the kernel, not counted against the Pod's limit.
                release_free_memory()
                self._first_done.set()
                self._trigger.wait(self.options.interval)
        finally:
            if self.health:
                self.health.stop()
            self.sync.applier.close()
            self.sync.source.close()
        return 0
