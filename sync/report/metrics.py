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


class RevisionMetrics:
    """The revision sources' own metrics (named orascache_git_* for both git and OCI)."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.revisions = Counter("orascache_git_revisions", "Revisions processed by result "
                                 "(Applied, Invalid, EmptyRefused, Failed).", ["result"],
                                 registry=r)
        self.fetches = Counter("orascache_git_fetches", "Fetches by result (ok, failed).",
                               ["result"], registry=r)
        self.last_applied = Gauge("orascache_git_last_applied_timestamp_seconds",
                                  "When the last good revision was applied.", registry=r)
        self.healthy = Gauge("orascache_git_last_sync_ok",
                             "1 when the last fetch and revision succeeded.", registry=r)
        self.commit = Gauge("orascache_git_last_applied_commit_info",
                            "1, labelled with the commit last applied.", ["commit"], registry=r)
        self.duration = Gauge("orascache_git_last_sync_duration_seconds",
                              "Fetch to applied time of the last new revision.", registry=r)
        self.drift_checks = Counter("orascache_git_drift_checks", "Drift passes over the "
                                    "applied commit by result (clean, corrected, drifted, "
                                    "failed).",
                                    ["result"], registry=r)
        self.drift_corrected = Counter("orascache_git_drift_corrected_objects",
                                       "Members re-created or re-applied by drift passes.",
                                       registry=r)
