"""dist/argocd's health check (run by gopher-lua as Argo CD runs it) and kstatus (cli-utils),
on OrasCache objects carrying each status the sync service writes (sync/report/status.py).

No cluster here: tests/integration/test_gitops_health.py feeds both the live objects of a
real API server. These cover every reason the reconciler can write, including those hard
to produce live (InvalidSpec, ApplyFailed, PruneFailed).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from constructs_lib import schema
from sync.apply.applier import ObjectRef
from sync.render.synth import ARGOCD_HEALTH_KEY, REPO_ROOT, argocd_health_lua
from sync.report.status import Outcome, desired_status
from tests.harness.gitops_checks import GitopsChecks, argocd_health, kstatus

ARGOCD_CM = REPO_ROOT / "dist" / "argocd" / "argocd-cm.yaml"
INVENTORY = [ObjectRef("apps/v1", "StatefulSet", "team", "c")]


def cache(generation: int, outcome: Outcome | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": schema.API_VERSION, "kind": schema.KIND,
        "metadata": {"name": "c", "namespace": "team", "generation": generation,
                     "uid": "0b0e2c8e-0000-4000-8000-000000000001"},
        "spec": {},
    }
    if outcome is not None:
        obj["status"] = desired_status(outcome, None)
    return obj


# name -> (object, Argo CD status, Argo CD message, kstatus)
CASES: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "available": (cache(1, Outcome(1, True, "Available", "1/1 replicas ready",
                                   endpoint="c-0.c.team.svc.cluster.local:5000",
                                   ready_replicas=1, inventory=INVENTORY)),
                  "Healthy", "1/1 replicas ready", "Current"),
    "remote-registry": (cache(1, Outcome(1, True, "RemoteRegistry",
                                         "workflow pods use the remote registry r.example:5000",
                                         endpoint="r.example:5000")),
                        "Healthy", "workflow pods use the remote registry r.example:5000",
                        "Current"),
    "progressing": (cache(1, Outcome(1, False, "Progressing", "0/1 replicas ready",
                                     ready_replicas=0, inventory=INVENTORY)),
                    "Progressing", "0/1 replicas ready", "InProgress"),
    "apply-failed": (cache(1, Outcome(1, False, "ApplyFailed", "StatefulSet/team/c: timeout")),
                     "Progressing", "StatefulSet/team/c: timeout", "InProgress"),
    "prune-failed": (cache(1, Outcome(1, False, "PruneFailed", "Service/team/c: forbidden")),
                     "Progressing", "Service/team/c: forbidden", "InProgress"),
    "invalid-spec": (cache(1, Outcome(1, False, "InvalidSpec", "spec.replicas: must be >= 1",
                                      stalled=True)),
                     "Degraded", "spec.replicas: must be >= 1", "Failed"),
    "conflict": (cache(1, Outcome(1, False, "Conflict", "Service/team/c exists, not ours",
                                  stalled=True)),
                 "Degraded", "Service/team/c exists, not ours", "Failed"),
    "stale-ready": (cache(2, Outcome(1, True, "Available", "1/1 replicas ready")),
                    "Progressing",
                    "Waiting for the sync service to observe generation 2 "
                    "(status is for generation 1)", "InProgress"),
    "stale-stalled": (cache(3, Outcome(2, False, "Conflict", "taken", stalled=True)),
                      "Progressing",
                      "Waiting for the sync service to observe generation 3 "
                      "(status is for generation 2)", "InProgress"),
}


def test_argocd_cm_holds_the_one_script_under_argo_cds_key() -> None:
    configmap = yaml.safe_load(ARGOCD_CM.read_text())
    assert configmap["metadata"] == {
        "name": "argocd-cm",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}}
    assert configmap["data"] == {
        "resource.customizations.health.cache.converged-computing.github.io_OrasCache":
            argocd_health_lua()}
    assert ARGOCD_HEALTH_KEY in configmap["data"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_argocd_health_and_kstatus_of_each_status(gitops_checks: GitopsChecks,
                                                   name: str) -> None:
    obj, argo_status, argo_message, kstatus_status = CASES[name]
    [argo] = argocd_health(gitops_checks, ARGOCD_CM, [obj])
    assert argo == {"status": argo_status, "message": argo_message}
    [kst] = kstatus(gitops_checks, [obj])
    assert kst["status"] == kstatus_status, kst


def test_not_reconciled_yet_is_progressing_and_in_progress(gitops_checks: GitopsChecks) -> None:
    """The CRD defaults status to {observedGeneration: -1}: both wait for the first write."""
    obj = {**cache(1), "status": {"observedGeneration": -1}}
    assert argocd_health(gitops_checks, ARGOCD_CM, [obj]) == [
        {"status": "Progressing", "message": "Waiting for the sync service to report status"}]
    assert kstatus(gitops_checks, [obj])[0]["status"] == "InProgress"


def test_no_status_at_all_is_progressing_for_argocd_but_current_for_kstatus(
        gitops_checks: GitopsChecks) -> None:
    """Without the CRD's status default (an object stored before it), kstatus cannot tell a
    cache nobody reconciled yet from a resource without status conventions: it says
    Current. Argo CD's check knows the sync service always writes status, so it waits."""
    obj = cache(1)
    assert argocd_health(gitops_checks, ARGOCD_CM, [obj]) == [
        {"status": "Progressing", "message": "Waiting for the sync service to report status"}]
    assert kstatus(gitops_checks, [obj])[0]["status"] == "Current"


def test_runner_withholds_the_string_library_like_argocd_cm(gitops_checks: GitopsChecks) -> None:
    """argocd-cm scripts run with base, table (and a safe os) only, unless useOpenLibs is
    set: the runner must fail a script that relies on more, as Argo CD would."""
    configmap = yaml.safe_load(ARGOCD_CM.read_text())
    uses_string = {ARGOCD_HEALTH_KEY: 'return {status = string.format("%s", "Healthy")}'}
    [result] = argocd_health(gitops_checks, {**configmap, "data": uses_string}, [cache(1)])
    assert result["status"] == "Unknown" and "string" in result["error"], result
    opened = {**uses_string, ARGOCD_HEALTH_KEY.replace(".health.", ".useOpenLibs."): "true"}
    [result] = argocd_health(gitops_checks, {**configmap, "data": opened}, [cache(1)])
    assert result == {"status": "Healthy"}


def test_runner_finds_the_check_only_under_group_underscore_kind(
        gitops_checks: GitopsChecks) -> None:
    configmap = copy.deepcopy(yaml.safe_load(ARGOCD_CM.read_text()))
    script = configmap["data"].pop(ARGOCD_HEALTH_KEY)
    configmap["data"][f"resource.customizations.health.{schema.KIND}"] = script
    [result] = argocd_health(gitops_checks, configmap, [cache(1)])
    assert result == {"error": 'argocd-cm has no health check for '
                               '"cache.converged-computing.github.io/OrasCache"'}


def test_a_cache_being_deleted(gitops_checks: GitopsChecks) -> None:
    """Argo CD decides this before any health check runs; kstatus says Terminating."""
    obj = cache(1, Outcome(1, True, "Available", "1/1 replicas ready"))
    obj["metadata"]["deletionTimestamp"] = "2026-12-04T17:00:00Z"
    assert argocd_health(gitops_checks, ARGOCD_CM, [obj]) == [
        {"status": "Progressing", "message": "Pending deletion"}]
    assert kstatus(gitops_checks, [obj])[0]["status"] == "Terminating"
