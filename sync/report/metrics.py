"""Prometheus metrics of the sync service (prometheus-client, one registry per service)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sync.apply.applier import ChangeSet


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter("orascache_reconciles", "Reconciles by result.",
                                  ["result"], registry=r)
        self.duration = Histogram(
            "orascache_reconcile_duration_seconds", "Time of the API half of a reconcile.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.queue_depth = Gauge("orascache_queue_depth", "Keys waiting.", registry=r)
        self.objects = Counter("orascache_objects", "Child objects by action "
                               "(created, configured, unchanged = skipped no-op, drifted = "
                               "left drifted by --drift=report, deleted, conflict, failed).",
                               ["action"], registry=r)
        self.drifted = Gauge("orascache_drifted_objects", "Objects whose fields we set differ "
                             "from the render, left as they are (--drift=report).",
                             registry=r)
        self.status_writes = Counter("orascache_status_writes", "Status subresource writes.",
                                     registry=r)
        self.leader = Gauge("orascache_leader", "1 while this instance leads.", registry=r)

    def record(self, changes: ChangeSet) -> None:
        for change in changes.changes:
            self.objects.labels(action=change.action).inc()
