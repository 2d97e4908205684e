"""OrasCache status from an outcome: kstatus conditions, written only on change."""

from __future__ import annotations

import time

from sync.apply.applier import (
    ObjectRef,
)
from sync.report.status import Outcome, desired_status, needs_write

REF = ObjectRef("apps/v1", "StatefulSet", "ns", "c")


def test_status_is_stable_when_nothing_changes() -> None:
    outcome = Outcome(2, False, "Progressing", "0/1 replicas ready", endpoint="e:5000",
                      ready_replicas=0, inventory=[REF])
    first = desired_status(outcome, None)
    time.sleep(1.1)
    assert not needs_write(desired_status(outcome, first), first), "no write when unchanged"
    ready = desired_status(Outcome(2, True, "Available", "1/1", endpoint="e:5000",
                                   inventory=[REF]), first)
    by_type = {c["type"]: c for c in ready["conditions"]}
    old = {c["type"]: c for c in first["conditions"]}
    assert by_type["Ready"]["status"] == "True"
    assert by_type["Ready"]["lastTransitionTime"] != old["Ready"]["lastTransitionTime"]
    assert by_type["Stalled"]["lastTransitionTime"] == old["Stalled"]["lastTransitionTime"]
    assert ready["inventory"] == [REF.to_dict()]


def test_stalled_is_not_reconciling() -> None:
    status = desired_status(Outcome(1, False, "InvalidSpec", "spec.port: bad", stalled=True),
                            None)
    by_type = {c["type"]: c["status"] for c in status["conditions"]}
    assert by_type == {"Ready": "False", "Reconciling": "False", "Stalled": "True"}


def test_drifted_condition_only_while_drifted() -> None:
    drifted = desired_status(Outcome(3, True, "Available", "1/1", drift="StatefulSet/ns/a: "
                                     "spec.replicas"), None)
    cond = [c for c in drifted["conditions"] if c["type"] == "Drifted"]
    assert [(c["status"], c["reason"], c["message"]) for c in cond] == [
        ("True", "DriftDetected", "StatefulSet/ns/a: spec.replicas")]
    clean = desired_status(Outcome(3, True, "Available", "1/1"), drifted)
    assert "Drifted" not in {c["type"] for c in clean["conditions"]}
    assert needs_write(clean, drifted)
