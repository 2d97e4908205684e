"""Monitoring that ships with the sync service: alerts, a scrape target, a dashboard.

`SyncServiceMonitoring` renders two prometheus-operator objects (`monitoring.coreos.com/v1`,
as plain `cdk8s.ApiObject`s: the CRDs are not Kubernetes' own, so there are no typed classes
to check them, and an integration test applies them to a real API server holding the
operator's CRDs instead): a `PrometheusRule` holding `ALERTS` and a `ServiceMonitor`
scraping the metrics Service of every install (`dist/install/`, `-git/`, `-oci/`: all
labelled `app.kubernetes.io/name: oras-cache`, all with a port `http-metrics`) in the
namespace it is applied to. `grafana_dashboard()` is the dashboard as a dictionary, written
to `dist/monitoring/grafana-dashboard.json` and shipped as a ConfigMap for Grafana's
dashboard sidecar by `dist/monitoring/kustomization.yaml`.

The metric names are plain strings here (constructs_lib never imports sync): a test reads
every selector of every rule and panel with Prometheus's own parser and finds each metric
in a real `/metrics` scrape of the service (`tests/integration/test_monitoring.py`).
Every alert has promtool unit tests: a series that fires it and one that must not
(`tests/integration/promtool/alerts_test.yaml`). Thresholds and their reasons:
docs/monitoring.md (a unit test keeps that table and `ALERTS` equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cdk8s
import constructs

from constructs_lib.install import DEFAULT_NAMESPACE, METRICS_SERVICE, sync_labels

MONITORING_API = "monitoring.coreos.com/v1"
NAME = "oras-cache"
METRICS_PORT_NAME = "http-metrics"  # the port name of every install's metrics Service
SCRAPE_INTERVAL = "30s"
# prometheus-operator names a ServiceMonitor's job after the Service: the cluster source's
# metrics come from this job (the git and OCI installs also export `orascache_leader`,
# always 0: they elect no leader, so the leader alert must not read them).
CLUSTER_JOB = METRICS_SERVICE
RULE_GROUP = "oras-cache"
DASHBOARD_UID = "oras-cache-sync"


@dataclass(frozen=True)
class Alert:
    """One alerting rule. `threshold` and `why` are for people (docs/monitoring.md and the
    rule's `description`); `expr` and `for_` are what Prometheus evaluates."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    threshold: str
    why: str

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0m":
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {
            "summary": self.summary,
            "description": f"{self.threshold}. {self.why}",
            "runbook_url": ("https://github.com/converged-computing/oras-cache/blob/main/"
                            f"docs/monitoring.md#{self.name.lower()}"),
        }
        return rule


ALERTS: tuple[Alert, ...] = (
    Alert(
        name="OrasCacheReconcileErrors",
        expr=(
            'sum by (namespace, job) (rate(orascache_reconciles_total{result="error"}[10m]))\n'
            "  / sum by (namespace, job) (rate(orascache_reconciles_total[10m]))\n"
            "  > 0.1"
        ),
        for_="15m",
        severity="warning",
        summary="More than 10% of the reconciles of {{ $labels.job }} in "
                "{{ $labels.namespace }} fail.",
        threshold="More than 10% of reconciles failed over 10 minutes, for 15 minutes",
        why=("Failed reconciles are retried with backoff (50 ms doubling to 5 min): a burst "
             "of transient API errors stays in the 10-minute window for 10 minutes at most, "
             "less than the 15 the alert waits. A share rather than a count keeps one "
             "broken cache among hundreds (named by the "
             "OrasCacheStalled alert or an ApplyFailed Event) from paging, while a systemic "
             "cause (RBAC, a quota, an API server in trouble) fails most reconciles."),
    ),
    Alert(
        name="OrasCacheStalled",
        expr=("max by (namespace, cache_namespace, cache_name, reason) "
              "(orascache_cache_stalled) > 0"),
        for_="10m",
        severity="warning",
        summary="OrasCache {{ $labels.cache_namespace }}/{{ $labels.cache_name }} is "
                "Stalled ({{ $labels.reason }}).",
        threshold="A cache has been Stalled=True for 10 minutes",
        why=("Stalled means retrying cannot help (InvalidSpec: the spec must change; "
             "Conflict: an object of the same name belongs to someone else). Ten minutes "
             "lets a GitOps tool apply a fix or a migration finish handing an object over "
             "before a person is asked to act."),
    ),
    Alert(
        name="OrasCacheQueueBacklog",
        expr=("max by (namespace, job) (min_over_time(orascache_queue_depth[15m])) > 100"),
        for_="0m",
        severity="warning",
        summary="The reconcile queue of {{ $labels.job }} in {{ $labels.namespace }} has "
                "held more than 100 caches for 15 minutes.",
        threshold="The queue never dropped to 100 keys or fewer during 15 minutes",
        why=("Keys coalesce, so the depth is at most the number of caches; a cold start "
             "of 1000 new caches drains in about 2 minutes on 2 cores and a resync of "
             "converged caches in seconds (docs/performance.md). A queue that never "
             "drains below 100 for 15 minutes is falling behind: a slow API server, too "
             "few workers, or a flood of events."),
    ),
    Alert(
        name="OrasCacheNoLeader",
        expr=(f'max by (namespace) (orascache_leader{{job="{CLUSTER_JOB}"}}) < 1\n'
              f'  or absent(orascache_leader{{job="{CLUSTER_JOB}"}})'),
        for_="2m",
        severity="critical",
        summary="No instance of the sync service leads: no OrasCache is reconciled.",
        threshold="No instance of the cluster source reported leading for 2 minutes",
        why=("A standby takes over when the Lease expires (15 s) or at once when the leader "
             "releases it on SIGTERM, and a rolling update restarts within a minute; 2 "
             "minutes without any leader means nothing reconciles (new caches wait, drift "
             "stays). `absent` covers every instance gone or unscraped."),
    ),
    Alert(
        name="OrasCacheSourceFailing",
        expr="max by (namespace, job) (orascache_git_consecutive_failures) >= 3",
        for_="0m",
        severity="warning",
        summary="The source of {{ $labels.job }} in {{ $labels.namespace }} failed "
                "3 passes or more in a row.",
        threshold="Three passes in a row of the git or OCI source failed",
        why=("A pass runs every --interval (and on /trigger): it fails when the fetch "
             "fails, the revision is Invalid, Failed or refused, or a drift pass fails; the "
             "last good revision stays applied meanwhile. One failure is often a network "
             "blip, three in a row are not, whatever the interval is."),
    ),
    Alert(
        name="OrasCacheWebhookErrors",
        expr=('sum by (namespace, job) '
              '(increase(orascache_admissions_total{result="error"}[5m])) > 0'),
        for_="0m",
        severity="warning",
        summary="The admission webhook of {{ $labels.job }} failed on Pods or Jobs.",
        threshold="Any admission review answered with an error in 5 minutes",
        why=("An error is a bug in the wiring of an annotated Pod or Job: it is refused "
             "with HTTP 500 (failurePolicy Fail), so a workflow step did not start. "
             "Denials of bad annotations are the user's to fix and are not counted here."),
    ),
    Alert(
        name="OrasCacheWebhookSlow",
        expr=(
            "(sum by (namespace, job) (rate(orascache_admission_duration_seconds_count[5m]))\n"
            "  - sum by (namespace, job) "
            '(rate(orascache_admission_duration_seconds_bucket{le="1.0"}[5m])))\n'
            "  / sum by (namespace, job) (rate(orascache_admission_duration_seconds_count[5m]))\n"
            "  > 0.01"
        ),
        for_="10m",
        severity="warning",
        summary="More than 1% of the admission reviews of {{ $labels.job }} take over 1 s.",
        threshold="More than 1% of admission reviews answered in over 1 s, for 10 minutes",
        why=("The webhook configuration's timeout is 5 s with failurePolicy Fail: slow "
             "answers become refused Pods. An answer takes milliseconds (docs/"
             "performance.md); a sustained share over a second is CPU starvation or a "
             "queue of reviews, seen before it reaches the timeout. Counted from the "
             "histogram's 1 s bucket (prometheus-client writes its bound `1.0`) rather "
             "than a p99, which a histogram whose top bucket is 1 s cannot place above "
             "1 s."),
    ),
)


class SyncServiceMonitoring(constructs.Construct):
    """The PrometheusRule (`ALERTS`) and the ServiceMonitor, in `namespace` (the sync
    service's: a ServiceMonitor without a namespaceSelector scrapes its own namespace, so
    a kustomize `namespace:` moves both together). `labels` are added to both objects'
    metadata: Prometheus instances select rules and monitors by label (kube-prometheus-
    stack's default selector is `release: <its release name>`)."""

    def __init__(self, scope: constructs.Construct, id: str, *,
                 namespace: str = DEFAULT_NAMESPACE,
                 labels: dict[str, str] | None = None,
                 scrape_interval: str = SCRAPE_INTERVAL) -> None:
        super().__init__(scope, id)
        meta_labels = {**sync_labels(), "app.kubernetes.io/component": "monitoring",
                       **(labels or {})}
        self.prometheus_rule = cdk8s.ApiObject(
            self, "PrometheusRule", api_version=MONITORING_API, kind="PrometheusRule",
            metadata=cdk8s.ApiObjectMetadata(name=NAME, namespace=namespace,
                                             labels=meta_labels))
        self.prometheus_rule.add_json_patch(cdk8s.JsonPatch.add("/spec", {
            "groups": [{"name": RULE_GROUP, "rules": [a.rule() for a in ALERTS]}]}))
        self.service_monitor = cdk8s.ApiObject(
            self, "ServiceMonitor", api_version=MONITORING_API, kind="ServiceMonitor",
            metadata=cdk8s.ApiObjectMetadata(name=NAME, namespace=namespace,
                                             labels=meta_labels))
        self.service_monitor.add_json_patch(cdk8s.JsonPatch.add("/spec", {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "oras-cache"}},
            "endpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics",
                           "interval": scrape_interval}],
        }))


def render_monitoring(**options: Any) -> list[dict[str, Any]]:
    """The manifests of one `SyncServiceMonitoring(**options)`: PrometheusRule first."""
    app = cdk8s.App()
    chart = cdk8s.Chart(app, "monitoring", disable_resource_name_hashes=True)
    SyncServiceMonitoring(chart, "Monitoring", **options)
    manifests: list[dict[str, Any]] = list(chart.to_json())
    return manifests


# ----- the Grafana dashboard ---------------------------------------------------------------
# Queries use Grafana's `$__rate_interval` and the dashboard's `$namespace`; the parse test
# substitutes both before handing each query to Prometheus's parser.
SEL = 'namespace=~"$namespace"'


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"


PANELS: tuple[Panel, ...] = (
    Panel("Reconciles by result", "Reconciles per second, ok and error.",
          ((f"sum by (result) (rate(orascache_reconciles_total{{{SEL}}}[$__rate_interval]))",
            "{{result}}"),), "ops"),
    Panel("Reconcile duration", "The API half of a reconcile (apply, prune, status).",
          tuple((f"histogram_quantile({q}, sum by (le) (rate("
                 f"orascache_reconcile_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                 f"p{int(q * 100)}") for q in (0.5, 0.99)), "s"),
    Panel("Queue depth", "Caches waiting to be reconciled, per instance (standbys hold 0).",
          ((f"max by (pod) (orascache_queue_depth{{{SEL}}})", "{{pod}}"),)),
    Panel("Objects by action", "Child objects per second: created, configured, unchanged "
          "(a skipped no-op apply), drifted, deleted, conflict, failed.",
          ((f"sum by (action) (rate(orascache_objects_total{{{SEL}}}[$__rate_interval]))",
            "{{action}}"),), "ops"),
    Panel("Status writes", "Writes to the status subresource of OrasCaches (only on change).",
          ((f"sum(rate(orascache_status_writes_total{{{SEL}}}[$__rate_interval]))",
            "writes"),), "ops"),
    Panel("Drift", "Git/OCI source: members restored by drift passes, and passes by result; "
          "both sources with --drift=report: objects left drifted.",
          ((f"sum(rate(orascache_git_drift_corrected_objects_total{{{SEL}}}"
            "[$__rate_interval]))", "corrected objects"),
           (f"sum by (result) (rate(orascache_git_drift_checks_total{{{SEL}}}"
            "[$__rate_interval]))", "passes {{result}}"),
           (f"sum by (job) (orascache_drifted_objects{{{SEL}}})", "left drifted {{job}}"))),
    Panel("Webhook latency", "Time to answer an admission review (p50, p99).",
          tuple((f"histogram_quantile({q}, sum by (le) (rate("
                 f"orascache_admission_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                 f"p{int(q * 100)}") for q in (0.5, 0.99)), "s"),
    Panel("Admissions by result", "wired, unchanged, denied (bad annotations), error (a bug: "
          "the Pod was refused), malformed.",
          ((f"sum by (result) (rate(orascache_admissions_total{{{SEL}}}[$__rate_interval]))",
            "{{result}}"),), "ops"),
    Panel("Leader", "1 for the instance that reconciles (cluster source).",
          ((f'max by (pod) (orascache_leader{{{SEL}, job="{CLUSTER_JOB}"}})', "{{pod}}"),)),
    Panel("Stalled caches", "Caches whose Stalled condition is True, by reason.",
          ((f"count by (reason) (max by (cache_namespace, cache_name, reason) "
            f"(orascache_cache_stalled{{{SEL}}}))", "{{reason}}"),)),
    Panel("Git/OCI source", "1 when the last pass succeeded; failed passes in a row.",
          ((f"max by (job) (orascache_git_last_sync_ok{{{SEL}}})", "ok {{job}}"),
           (f"max by (job) (orascache_git_consecutive_failures{{{SEL}}})",
            "failed in a row {{job}}"))),
)
NAMESPACE_QUERY = "label_values(orascache_reconcile_duration_seconds_count, namespace)"


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard, as written in it (with Grafana's variables)."""
    return [expr for panel in PANELS for expr, _ in panel.targets]


def grafana_dashboard() -> dict[str, Any]:
    """The dashboard (Grafana's JSON model, schemaVersion 39), with a Prometheus data
    source variable and a namespace variable; two panels per row."""
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels: list[dict[str, Any]] = []
    for index, panel in enumerate(PANELS):
        panels.append({
            "id": index + 1,
            "type": "timeseries",
            "title": panel.title,
            "description": panel.description,
            "datasource": datasource,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}},
            "targets": [{"datasource": datasource, "expr": expr, "legendFormat": legend,
                         "refId": chr(ord("A") + i)}
                        for i, (expr, legend) in enumerate(panel.targets)],
        })
    return {
        "uid": DASHBOARD_UID,
        "title": "oras-cache sync service",
        "tags": ["oras-cache"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            {"name": "namespace", "label": "Namespace", "type": "query",
             "datasource": datasource,
             "query": {"query": NAMESPACE_QUERY, "refId": "namespace"},
             "definition": NAMESPACE_QUERY, "refresh": 2, "includeAll": True,
             "multi": True, "allValue": ".*", "current": {}, "hide": 0, "sort": 1},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }
