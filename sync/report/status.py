"""Status stage, pure: from what happened in a reconcile to the OrasCache status.

Conditions follow the kstatus convention (Ready, Reconciling, Stalled). Transition times
are kept when a condition's status does not change, so an unchanged outcome produces an
identical status and no write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.apply.applier import ObjectRef

Obj = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found out, in the terms status reports."""

    generation: int
    ready: bool
    reason: str
    message: str
    stalled: bool = False
    endpoint: str | None = None
    ready_replicas: int | None = None
    inventory: Sequence[ObjectRef] | None = None  # None: keep what status has
    drift: str = ""  # report mode: the drifted objects and field paths; "" none


def now() -> str:
    """RFC 3339 in UTC to the second: condition times, Events, annotations, OCI created."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    type_: str, status: bool, *, reason: str, message: str, generation: int,
    previous: Mapping[str, Obj],
) -> Obj:
    value = "True" if status else "False"
    old = previous.get(type_)
    changed = old is None or old.get("status") != value
    return {
        "type": type_,
        "status": value,
        "observedGeneration": generation,
        "lastTransitionTime": now() if changed or old is None else old["lastTransitionTime"],
        "reason": reason,
        "message": message,
    }


def desired_status(outcome: Outcome, current: Mapping[str, Any] | None) -> Obj:
    current = current or {}
    previous = {c["type"]: c for c in current.get("conditions", []) if "type" in c}
    g = outcome.generation
    reconciling = not outcome.ready and not outcome.stalled
    status: Obj = {
        "observedGeneration": g,
        "conditions": [
            _condition("Ready", outcome.ready, reason=outcome.reason, message=outcome.message,
                       generation=g, previous=previous),
            _condition("Reconciling", reconciling,
                       reason="Progressing" if reconciling else "Idle",
                       message=outcome.message if reconciling else "",
                       generation=g, previous=previous),
            _condition("Stalled", outcome.stalled,
                       reason=outcome.reason if outcome.stalled else "Idle",
                       message=outcome.message if outcome.stalled else "",
                       generation=g, previous=previous),
        ],
    }
    if outcome.drift:  # abnormal-true (kstatus): present only while something drifted
        status["conditions"].append(_condition(
            "Drifted", True, reason="DriftDetected", message=outcome.drift, generation=g,
            previous=previous))
    endpoint = outcome.endpoint if outcome.endpoint is not None else current.get("endpoint")
    if endpoint:
        status["endpoint"] = endpoint
    if outcome.ready_replicas is not None:
        status["readyReplicas"] = outcome.ready_replicas
    if outcome.inventory is not None:
        status["inventory"] = [r.to_dict() for r in sorted(outcome.inventory)]
    elif "inventory" in current:
        status["inventory"] = current["inventory"]
    return status


def needs_write(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    return dict(desired) != dict(current or {})
