"""constructs_lib.monitoring and dist/monitoring/: the objects, the dashboard, the docs that
describe them, the JSON file's ownership in dist/, and the two metrics the alerts added
(`orascache_cache_stalled`, `orascache_git_consecutive_failures`). promtool, the PromQL
parser and the real scrape: tests/integration/test_monitoring.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from constructs_lib.install import DEFAULT_NAMESPACE, METRICS_SERVICE
from constructs_lib.monitoring import (
    ALERTS,
    CLUSTER_JOB,
    PANELS,
    SyncServiceMonitoring,
    dashboard_queries,
    grafana_dashboard,
    render_monitoring,
)
from sync.render import outdir
from sync.render.synth import HEADER, REPO_ROOT, monitoring_files
from sync.report.metrics import Metrics, PassHealth

DIST = REPO_ROOT / "dist/monitoring"
DOCS = (REPO_ROOT / "docs/monitoring.md").read_text()


def test_prometheus_rule_holds_every_alert() -> None:
    rule, monitor = render_monitoring()
    assert (rule["kind"], monitor["kind"]) == ("PrometheusRule", "ServiceMonitor")
    for obj in (rule, monitor):
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["metadata"]["namespace"] == DEFAULT_NAMESPACE
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "oras-cache"
    (group,) = rule["spec"]["groups"]
    assert [r["alert"] for r in group["rules"]] == [a.name for a in ALERTS]
    assert len({a.name for a in ALERTS}) == len(ALERTS)
    for alert, rule_ in zip(ALERTS, group["rules"], strict=True):
        assert rule_["expr"] == alert.expr
        assert rule_.get("for", "0m") == alert.for_
        assert rule_["labels"]["severity"] in ("warning", "critical")
        assert set(rule_["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule_["annotations"]["runbook_url"].endswith(f"#{alert.name.lower()}")


def test_the_leader_alert_reads_only_the_cluster_source() -> None:
    """The git and OCI installs export orascache_leader too (always 0)."""
    assert CLUSTER_JOB == METRICS_SERVICE
    (alert,) = [a for a in ALERTS if a.name == "OrasCacheNoLeader"]
    assert alert.expr.count(f'orascache_leader{{job="{CLUSTER_JOB}"}}') == 2


def test_service_monitor_scrapes_every_install_in_its_namespace() -> None:
    _, monitor = render_monitoring(labels={"release": "kube-prometheus-stack"},
                                   scrape_interval="15s")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"] == {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "oras-cache"}},
        "endpoints": [{"port": "http-metrics", "path": "/metrics", "interval": "15s"}]}
    # Every install's metrics Service carries that label and that port name.
    for install in ("install/sync-service.yaml", "install-git/git-sync-service.yaml",
                    "install-oci/oci-sync-service.yaml"):
        services = [d for d in yaml.safe_load_all((REPO_ROOT / "dist" / install).read_text())
                    if d and d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics")]
        (service,) = services
        assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "oras-cache"
        assert [p["name"] for p in service["spec"]["ports"]] == ["http-metrics"]


def test_construct_exposes_its_objects_as_escape_hatches() -> None:
    import cdk8s  # noqa: PLC0415

    chart = cdk8s.Chart(cdk8s.App(), "c", disable_resource_name_hashes=True)
    monitoring = SyncServiceMonitoring(chart, "m", namespace="ops")
    monitoring.service_monitor.add_json_patch(
        cdk8s.JsonPatch.add("/spec/namespaceSelector", {"any": True}))
    rule, monitor = chart.to_json()
    assert rule["metadata"]["namespace"] == monitor["metadata"]["namespace"] == "ops"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_docs_give_every_alert_its_threshold_and_reason() -> None:
    for alert in ALERTS:
        assert f"### {alert.name}" in DOCS, alert.name
        section = DOCS.split(f"### {alert.name}", 1)[1].split("\n### ", 1)[0]
        assert alert.expr in section, alert.name
        assert alert.threshold in section, alert.name
        assert " ".join(alert.why.split()) in " ".join(section.split()), alert.name


def test_docs_name_every_panel() -> None:
    for panel in PANELS:
        assert f"**{panel.title}**" in DOCS, panel.title


def test_dashboard_file_is_the_dashboard_with_our_marker() -> None:
    text = (DIST / "grafana-dashboard.json").read_text()
    assert text.startswith(outdir.json_marker(HEADER))
    loaded: dict[str, Any] = json.loads(text)
    assert loaded.pop("__comment") == HEADER.strip("# \n")
    assert loaded == grafana_dashboard()


def test_dashboard_panels() -> None:
    board = grafana_dashboard()
    panels = board["panels"]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}
    assert len(cells) == len(panels)  # no two panels in the same place
    assert [t["expr"] for p in panels for t in p["targets"]] == dashboard_queries()
    for panel in panels:
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "namespace"]
    wanted = {"Reconciles by result", "Reconcile duration", "Queue depth", "Objects by action",
              "Status writes", "Drift", "Webhook latency"}
    assert wanted <= {p["title"] for p in panels}
    durations = [t["legendFormat"] for p in panels if p["title"] == "Reconcile duration"
                 for t in p["targets"]]
    assert durations == ["p50", "p99"]


def test_kustomization_makes_the_dashboard_a_sidecar_configmap() -> None:
    files = monitoring_files()
    assert sorted(files) == ["grafana-dashboard.json", "kustomization.yaml",
                             "prometheus-rule.yaml", "service-monitor.yaml"]
    kustomization = yaml.safe_load(files["kustomization.yaml"])
    assert kustomization["resources"] == ["prometheus-rule.yaml", "service-monitor.yaml"]
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["oras-cache.json=grafana-dashboard.json"]
    assert generator["options"]["labels"]["grafana_dashboard"] == "1"
    assert generator["options"]["disableNameSuffixHash"] is True


# ----- a JSON file in dist/ is ours by its marker ------------------------------------------
def test_json_files_of_ours_are_replaced_and_others_never(tmp_path: Path) -> None:
    ours = outdir.json_marker(HEADER) + '  "a": 1\n}\n'
    assert json.loads(ours) == {"__comment": HEADER.strip("# \n"), "a": 1}
    outdir.write_tree({"d.json": ours, "old.json": ours}, tmp_path, HEADER)
    outdir.write_tree({"d.json": ours.replace("1", "2")}, tmp_path, HEADER)
    assert json.loads((tmp_path / "d.json").read_text())["a"] == 2
    assert not (tmp_path / "old.json").exists()  # stale, and ours: removed
    (tmp_path / "theirs.json").write_text('{"a": 1}\n')
    (tmp_path / "kept.json").write_text('{"a": 1}\n')
    with pytest.raises(outdir.OutputError, match="not written by orascache"):
        outdir.write_tree({"d.json": ours, "theirs.json": ours}, tmp_path, HEADER)
    outdir.write_tree({"d.json": ours}, tmp_path, HEADER)
    assert (tmp_path / "kept.json").read_text() == '{"a": 1}\n'  # not ours: never stale


# ----- the metrics the alerts need ---------------------------------------------------------
def cache(name: str, *conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team"},
            "status": {"conditions": [{"type": t, "status": s, "reason": r}
                                      for t, s, r in conditions]}}


def test_stalled_caches_are_read_at_each_scrape() -> None:
    caches = [cache("a", ("Ready", "False", "Conflict"), ("Stalled", "True", "Conflict")),
              cache("b", ("Ready", "True", "Available"), ("Stalled", "False", "Available")),
              {"metadata": {"name": "new", "namespace": "team"}}]
    metrics = Metrics()
    metrics.watch_stalled(lambda: caches)
    text = generate_latest(metrics.registry).decode()
    assert ('orascache_cache_stalled{cache_name="a",cache_namespace="team",reason="Conflict"}'
            " 1.0") in text
    assert 'cache_name="b"' not in text and 'cache_name="new"' not in text
    caches[0] = cache("a", ("Stalled", "False", "Available"))
    assert "orascache_cache_stalled{" not in generate_latest(metrics.registry).decode()


def test_pass_health_counts_failed_passes_in_a_row() -> None:
    registry = CollectorRegistry()
    health = PassHealth(Gauge("ok", "", registry=registry), Gauge("failures", "",
                                                                  registry=registry))
    seen = []
    for value in (1, 0, 0, 0, 1, 0):
        health.set(value)
        seen.append((registry.get_sample_value("ok"), registry.get_sample_value("failures")))
    assert seen == [(1, 0), (0, 1), (0, 2), (0, 3), (1, 0), (0, 1)]
