"""Prometheus metrics of the sync service (prometheus-client, one registry per service)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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

    def watch_stalled(self, caches: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """Export `orascache_cache_stalled` from the caches' watch cache at each scrape."""
        self.registry.register(StalledCaches(caches))


class StalledCaches(Collector):
    """`orascache_cache_stalled{cache_namespace, cache_name, reason}`: 1 for each cache whose
    status has Stalled=True, read from the watch cache at scrape time (the status the leader
    wrote, so every replica with the caches in memory agrees). Only stalled caches have a
    series: a deleted or recovered cache leaves none behind. `cache_` labels, because
    Prometheus's own `namespace` label names where the service runs."""

    NAME = "orascache_cache_stalled"
    HELP = "1 for each OrasCache whose Stalled condition is True, by its reason."
    LABELS = ("cache_namespace", "cache_name", "reason")

    def __init__(self, caches: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self.caches = caches

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=self.LABELS)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=self.LABELS)
        for obj in self.caches():
            for condition in (obj.get("status") or {}).get("conditions") or ():
                if condition.get("type") == "Stalled" and condition.get("status") == "True":
                    meta = obj["metadata"]
                    family.add_metric([meta.get("namespace", ""), meta["name"],
                                       str(condition.get("reason", ""))], 1)
        yield family


class PassHealth:
    """`orascache_git_last_sync_ok` and the failed passes in a row, set together: every
    pass ends with one `set` (1 ok, 0 failed), which alerting reads as "failing for N
    intervals" without knowing the interval."""

    def __init__(self, ok: Gauge, failures: Gauge) -> None:
        self.ok, self.failures = ok, failures

    def set(self, value: int) -> None:
        self.ok.set(value)
        if value:
            self.failures.set(0)
        else:
            self.failures.inc()


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
        self.healthy = PassHealth(
            Gauge("orascache_git_last_sync_ok",
                  "1 when the last fetch and revision succeeded.", registry=r),
            Gauge("orascache_git_consecutive_failures", "Passes in a row (fetch, revision "
                  "or drift pass) that failed; 0 after one that succeeded.", registry=r))
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
