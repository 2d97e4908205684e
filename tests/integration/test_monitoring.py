"""dist/monitoring/ checked by the real tools: promtool (check and unit tests of every
alert), Prometheus's PromQL parser (every dashboard query), a real /metrics scrape of the
sync service (every metric and label value the rules and the dashboard read), and
prometheus-operator's CRDs on the real API server (the PrometheusRule and ServiceMonitor
are valid objects of their kinds). promtool and the parser are built from the Go module
proxy (tests/harness/prometheus_tools.py)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from prometheus_client.parser import text_string_to_metric_families

from constructs_lib import schema
from constructs_lib.monitoring import ALERTS, NAMESPACE_QUERY, dashboard_queries
from sync.render.synth import REPO_ROOT
from tests.harness import LocalCluster
from tests.harness.prometheus_tools import (
    PrometheusTools,
    ensure_prometheus_tools,
    operator_crds,
    promtool,
    selectors,
)
from tests.integration import syncproc
from tests.integration.gitserver import WorkRepo
from tests.integration.syncproc import SyncProcess, wait_for
from tests.integration.test_webhook import ANNOTATED, make_cache, pod

MONITORING = REPO_ROOT / "dist/monitoring"
UNIT_TESTS = Path(__file__).parent / "promtool/alerts_test.yaml"
# Labels Prometheus (through prometheus-operator's ServiceMonitor) adds to every scraped
# series: never in the service's own output.
TARGET_LABELS = {"namespace", "job", "pod", "service", "endpoint", "instance", "container"}
# Label values a selector asks for that no healthy run produces, with the reason; each
# must still be a literal of the code that records it.
WEBHOOK_SOURCE = (REPO_ROOT / "sync/webhook/server.py").read_text()
UNSEEN = {("orascache_admissions_total", "result"): (
    '"error"', "only a bug in the webhook answers with an error (sync/webhook/server.py, review)")}
# Grafana's variables, replaced by what Grafana would put there before the query is sent.
GRAFANA = {"$__rate_interval": "2m", "$namespace": "oras-cache-system"}


@pytest.fixture(scope="module")
def prom() -> PrometheusTools:
    return ensure_prometheus_tools()


def rule_groups() -> list[dict[str, Any]]:
    (rule,) = [d for d in yaml.safe_load_all((MONITORING / "prometheus-rule.yaml").read_text())
               if d]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def annotations(alert: str, labels: dict[str, str]) -> dict[str, str]:
    """The alert's annotations as Prometheus expands them (only `$labels.x` is used)."""
    (spec,) = [a for a in ALERTS if a.name == alert]
    return {key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""),
                        text) for key, text in spec.rule()["annotations"].items()}


def unit_test_dir(directory: Path, groups: list[dict[str, Any]]) -> Path:
    """rules.yaml (the PrometheusRule's groups) and the unit tests with their expected
    annotations filled in; returns the test file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    for test in tests["tests"]:
        for case in test["alert_rule_test"]:
            for expected in case.get("exp_alerts") or []:
                expected["exp_annotations"] = annotations(case["alertname"],
                                                          expected["exp_labels"])
    target = directory / "alerts_test.yaml"
    target.write_text(yaml.safe_dump(tests, sort_keys=False))
    return target


def test_promtool_checks_the_rules(prom: PrometheusTools, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))
    proc = promtool(prom, "check", "rules", str(rules))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_promtool_version_is_the_pinned_one(prom: PrometheusTools) -> None:
    proc = promtool(prom, "--version")
    assert f"promtool, version {prom.prometheus_version} " in proc.stdout + proc.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_must_not() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    cases = [c for t in tests for c in t["alert_rule_test"]]
    for alert in ALERTS:
        mine = [c for c in cases if c["alertname"] == alert.name]
        assert any(c.get("exp_alerts") for c in mine), f"{alert.name}: nothing fires it"
        assert any(not c.get("exp_alerts") for c in mine), f"{alert.name}: no silent case"


def test_promtool_unit_tests_pass(prom: PrometheusTools, tmp_path: Path) -> None:
    test_file = unit_test_dir(tmp_path, rule_groups())
    proc = promtool(prom, "test", "rules", test_file.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize("alert", [a.name for a in ALERTS])
@pytest.mark.parametrize("replacement", ["vector(1)", "vector(0) > 1"])
def test_unit_tests_catch_an_alert_that_always_or_never_fires(
    prom: PrometheusTools, tmp_path: Path, alert: str, replacement: str
) -> None:
    """The unit tests can fail: with one alert's expression replaced by one that always
    fires (`vector(1)`) or never does, promtool reports that alert's cases."""
    groups = rule_groups()
    for rule in groups[0]["rules"]:
        if rule["alert"] == alert:
            rule["expr"] = replacement
    test_file = unit_test_dir(tmp_path, groups)
    proc = promtool(prom, "test", "rules", test_file.name, cwd=tmp_path)
    assert proc.returncode != 0
    assert f"alertname: {alert}" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return loaded


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    assert exprs == dashboard_queries()
    return [grafana_to_promql(e) for e in exprs]


def test_dashboard_queries_parse(prom: PrometheusTools, tmp_path: Path) -> None:
    """Prometheus's parser (promql-selectors), and promtool on the same queries as
    recording rules: both must accept every one."""
    exprs = dashboard_exprs()
    results = selectors(prom, exprs)
    assert [r.get("error") for r in results] == [None] * len(exprs)
    assert selectors(prom, ["sum(rate(x[5m])"])[0].get("error")  # the parser can refuse
    rules = tmp_path / "dashboard-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"oras_cache:dashboard:{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
    proc = promtool(prom, "check", "rules", str(rules))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def used_selectors(prom: PrometheusTools) -> list[tuple[str, dict[str, str], str]]:
    """(metric, matchers, where) of every selector in the rules and the dashboard."""
    exprs = {f"alert {r['alert']}": r["expr"] for r in rule_groups()[0]["rules"]}
    exprs.update({f"dashboard query {i}": e for i, e in enumerate(dashboard_exprs())})
    inner = re.fullmatch(r"label_values\((\w+), (\w+)\)", NAMESPACE_QUERY)
    assert inner is not None
    exprs["dashboard variable namespace"] = inner.group(1)
    results = selectors(prom, list(exprs.values()))
    out = []
    for where, result in zip(exprs, results, strict=True):
        assert "error" not in result, (where, result)
        out += [(s["metric"], s["matchers"], where) for s in result["selectors"]]
    return out


def scrape(proc: SyncProcess) -> dict[str, list[dict[str, str]]]:
    """sample name -> the label sets of its samples, from a real /metrics answer."""
    status, text = proc.get("/metrics")
    assert status == 200
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def test_every_metric_used_exists_in_a_real_scrape(
    prom: PrometheusTools, cluster: LocalCluster, api_client: ApiClient,
    webhook: Callable[..., SyncProcess], namespace: str, tmp_path: Path,
) -> None:
    """The cluster source (with its webhook) and the git source run as processes; each
    is driven until the series the rules read are written: reconciles, a Stalled cache (a
    Service of that name that is not ours: Conflict), an admission review, failed git
    passes. Every metric of every selector must be a sample name of a scrape, and every
    label a selector matches on must be on those samples, with the value it asks for."""
    cluster_source = webhook()
    make_cache(api_client, namespace)  # "oras", the annotated Pod's default cache
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service(namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "someone-else"}}})
    make_cache(api_client, namespace, "taken")
    # No claims allowed here: the shared claim of a ReadWriteMany cache is refused (403),
    # an ApplyFailed reconcile, retried: orascache_reconciles_total{result="error"}.
    core.create_namespaced_resource_quota(namespace, {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-claims"},
        "spec": {"hard": {"persistentvolumeclaims": "0"}}})
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        schema.GROUP, schema.VERSION, namespace, schema.PLURAL,
        {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": "claims"},
         "spec": {"storage": {"size": "1Gi", "accessModes": ["ReadWriteMany"]}}})
    core.create_namespaced_pod(namespace, pod("wired", ANNOTATED))
    stalled = 'orascache_cache_stalled{cache_name="taken"'
    wait_for(lambda: stalled in cluster_source.get("/metrics")[1], timeout=30,
             what="the Conflict reported as a stalled cache")
    wait_for(lambda: cluster_source.metric('orascache_reconciles_total{result="error"}') > 0,
             timeout=30, what="a failed reconcile")

    remote = WorkRepo(tmp_path / "remote" / "caches.git")
    remote.write("caches/a.yaml", yaml.safe_dump({
        "apiVersion": "cache.converged-computing.github.io/v1alpha1", "kind": "OrasCache",
        "metadata": {"name": "from-git"}, "spec": {}})).commit()
    git_source = SyncProcess(cluster.kubeconfig, [
        "--source", "git", "--repo", remote.url, "--ref", "main", "--path", "caches",
        "--namespace", namespace, "--interval", "1h", "--log-format", "text",
        "--git-dir", str(tmp_path / "clone"),
        "--trigger-token-file", str(syncproc.trigger_token_file(tmp_path))],
        tmp_path / "sync-git.log").start()
    try:
        git_source.wait_ready(60)
        wait_for(lambda: git_source.metric("orascache_git_last_sync_ok") == 1,
                 what="the first revision applied")
        assert git_source.metric("orascache_git_consecutive_failures") == 0
        # The remote goes away: each pass fails, one more in a row each time.
        shutil.move(remote.path, tmp_path / "moved-away")
        for passes in (1, 2, 3):
            assert syncproc.post_trigger(git_source.port) in (200, 202)
            wait_for(lambda n=passes: git_source.metric(
                "orascache_git_consecutive_failures") == n, what=f"{passes} failed passes")
        assert git_source.metric("orascache_git_last_sync_ok") == 0
        shutil.move(tmp_path / "moved-away", remote.path)
        assert syncproc.post_trigger(git_source.port) in (200, 202)
        wait_for(lambda: git_source.metric("orascache_git_consecutive_failures") == 0,
                 what="a good pass resetting the count")
        samples = scrape(cluster_source)
        for name, labelsets in scrape(git_source).items():
            samples.setdefault(name, []).extend(labelsets)
    finally:
        git_source.stop()

    missing = []
    for (_, label), (value, reason) in UNSEEN.items():
        assert reason and f"{label} = {value}" in WEBHOOK_SOURCE, (label, value)
    for metric, matchers, where in used_selectors(prom):
        if metric not in samples:
            missing.append(f"{where}: {metric} is in no scrape")
            continue
        for label, matcher in matchers.items():
            if label in TARGET_LABELS:
                continue
            values = {s.get(label) for s in samples[metric]}
            if matcher.startswith("=") and not matcher.startswith("=~"):
                if matcher[1:] not in values and UNSEEN.get((metric, label), ("",))[0] != (
                        f'"{matcher[1:]}"'):
                    missing.append(f"{where}: {metric}{{{label}{matcher}}}: values {values}")
            elif values == {None}:
                missing.append(f"{where}: {metric} has no label {label}")
    assert not missing, "\n".join(missing)


def test_prometheus_operator_accepts_the_objects(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """prometheus-operator's own CRDs (their OpenAPI schemas) on the real API server, then
    `kubectl kustomize dist/monitoring` applied as a server-side dry run: the
    PrometheusRule, the ServiceMonitor and the dashboard's ConfigMap are accepted."""
    for crd in operator_crds():
        cluster.kubectl("apply", "--server-side", "-f", str(crd))
    for crd in ("prometheusrules", "servicemonitors"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        f"crd/{crd}.monitoring.coreos.com")
    built = cluster.kubectl("kustomize", str(MONITORING)).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "PrometheusRule", "ServiceMonitor"]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["oras-cache.json"]) == dashboard()
    cluster.kubectl("create", "namespace", "oras-cache-system", check=False)

    def accepted() -> Any:
        proc = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-oname",
                               "-f", "-", input=built, check=False)
        return proc if proc.returncode == 0 else None

    # A freshly established CRD can still answer 404 for a moment (FACTS.md).
    proc = wait_for(accepted, timeout=30, what="the dry run accepted")
    assert sorted(proc.stdout.split()) == sorted([
        "configmap/oras-cache-dashboard", "prometheusrule.monitoring.coreos.com/oras-cache",
        "servicemonitor.monitoring.coreos.com/oras-cache"])
    broken = built.replace("for: 15m", "for: fifteen minutes")
    proc = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-",
                           input=broken, check=False)
    assert proc.returncode != 0 and "for" in proc.stderr, proc.stderr
