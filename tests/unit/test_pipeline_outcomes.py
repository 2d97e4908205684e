"""The pipelines' decisions: which step failure becomes which condition, outcome and retry.
The steps themselves (apply, prune) run against a real API server in the integration
tests; here, only the mapping each source keeps in one place."""

from __future__ import annotations

import pytest

from sync.apply.applier import Change, ChangeSet, ObjectRef
from sync.cluster_reconcile import failure_outcome
from sync.report.status import desired_status
from sync.revision_sync import EMPTY, FAILED, INVALID, failure_result
from sync.steps import (
    ApplyFailed,
    Conflict,
    EmptyRefused,
    FetchFailed,
    InvalidSpec,
    PruneFailed,
    StepFailed,
)

REF = ObjectRef("apps/v1", "StatefulSet", "ns", "a")
OTHER = ObjectRef("v1", "Service", "ns", "a")
APPLIED = ChangeSet([Change(OTHER, "created")])
CONFLICTED = ChangeSet([Change(REF, "conflict", "StatefulSet/ns/a: conflict with kubectl"),
                        Change(OTHER, "failed", "Service/ns/a: 500 boom")])
PRUNE_FAILED = ChangeSet([Change(REF, "failed", "delete StatefulSet/ns/a: 403")])
KEEPING = "keeping last good revision abc"


@pytest.mark.parametrize(("failed", "reason", "retry"), [
    (InvalidSpec(["spec.replicas: must be >= 1"]), "InvalidSpec", False),
    (Conflict(["c"], CONFLICTED), "Conflict", False),
    (EmptyRefused(["no caches"]), "EmptyRefused", False),
    (ApplyFailed(["f"], CONFLICTED), "ApplyFailed", True),
    (PruneFailed(["p"], APPLIED, PRUNE_FAILED), "PruneFailed", True),
    (FetchFailed(["unreachable"]), "FetchFailed", True),
])
def test_every_step_failure_names_itself_and_says_whether_a_retry_can_help(
        failed: StepFailed, reason: str, retry: bool) -> None:
    assert (failed.reason, failed.retry) == (reason, retry)
    assert failed.message == "; ".join(failed.failures) == str(failed)


@pytest.mark.parametrize(("failed", "stalled"), [
    (InvalidSpec(["spec.replicas: must be >= 1", "spec.port: too big"]), True),
    (Conflict(["StatefulSet/ns/a: conflict with kubectl"], CONFLICTED), True),
    (ApplyFailed(["Service/ns/a: 500 boom"], CONFLICTED), False),
    (PruneFailed(["delete StatefulSet/ns/a: 403"], APPLIED, PRUNE_FAILED), False),
])
def test_cluster_source_reports_a_failure_as_ready_false_and_stalled_when_final(
        failed: StepFailed, stalled: bool) -> None:
    outcome = failure_outcome(7, failed)
    assert (outcome.ready, outcome.reason, outcome.message) == (
        False, failed.reason, failed.message)
    status = desired_status(outcome, None)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == failed.reason
    assert conditions["Stalled"]["status"] == ("True" if stalled else "False")
    assert status["observedGeneration"] == 7


def test_revision_source_invalid_input_keeps_the_last_good_revision() -> None:
    result = failure_result("c0ffee", InvalidSpec(["a.yaml: spec.port: bad", "b.yaml: x"]),
                            KEEPING)
    assert (result.outcome, result.commit) == (INVALID, "c0ffee")
    assert result.message.startswith(f"2 error(s), nothing applied or pruned, {KEEPING}: ")
    assert result.message.endswith("a.yaml: spec.port: bad; b.yaml: x")
    assert result.writes == 0


def test_revision_source_refuses_an_empty_revision() -> None:
    result = failure_result("c0ffee", EmptyRefused(["no OrasCache under '.'"]), KEEPING)
    assert (result.outcome, result.message) == (EMPTY, f"no OrasCache under '.'; {KEEPING}")


@pytest.mark.parametrize("kind", [Conflict, ApplyFailed])
def test_revision_source_names_every_object_not_applied(kind: type[StepFailed]) -> None:
    result = failure_result("c0ffee", kind(["only one"], CONFLICTED), KEEPING)
    assert result.outcome == FAILED
    assert result.message == ("2 object(s) not applied, nothing pruned: StatefulSet/ns/a: "
                              "conflict with kubectl; Service/ns/a: 500 boom")
    assert result.changes is CONFLICTED and not result.pruned.changes


def test_revision_source_prune_failure_keeps_what_was_applied() -> None:
    failed = PruneFailed(["delete StatefulSet/ns/a: 403"], APPLIED, PRUNE_FAILED)
    result = failure_result("c0ffee", failed, KEEPING)
    assert (result.outcome, result.message) == (FAILED, "prune failed: delete "
                                                "StatefulSet/ns/a: 403")
    assert (result.changes, result.pruned) == (APPLIED, PRUNE_FAILED)
    assert result.writes == 1  # the create; the failed delete wrote nothing
