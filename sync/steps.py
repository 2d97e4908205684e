"""The steps both pipelines share, and the typed errors that end a pipeline early.

A step raises a `StepFailed` subclass; each source maps it to its own condition reason,
Event and metrics in one place (cluster_reconcile.Reconciler.failed,
revision_sync.RevisionSync.failed), so the pipelines stay a straight line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from sync.apply.applier import AbsentCheck, Applier, ChangeSet, ObjectRef
from sync.apply.kube import Obj
from sync.report.metrics import Metrics


class StepFailed(Exception):
    """`failures`: one message per error or per object not written. `retry`: whether the
    same input can succeed later (an API error can pass; an invalid spec cannot)."""

    retry: ClassVar[bool] = True

    def __init__(self, failures: Sequence[str], changes: ChangeSet | None = None,
                 pruned: ChangeSet | None = None) -> None:
        self.failures = list(failures)
        self.changes = changes or ChangeSet()
        self.pruned = pruned or ChangeSet()
        super().__init__(self.message)

    @property
    def reason(self) -> str:
        return type(self).__name__

    @property
    def message(self) -> str:
        return "; ".join(self.failures)


class FetchFailed(StepFailed):
    """The source could not be read (git, registry, API server)."""


class InvalidSpec(StepFailed):
    """Input that no retry can fix: a spec, file or revision that does not parse or render."""

    retry = False


class EmptyRefused(StepFailed):
    """A revision with no caches, which would prune everything (allow_empty is off)."""

    retry = False


class Conflict(StepFailed):
    """Another field manager owns a field we set: a person must decide."""

    retry = False


class ApplyFailed(StepFailed):
    """The API server refused or failed a write; nothing was pruned."""


class PruneFailed(StepFailed):
    """Every object was applied, but a stale one could not be deleted."""


def apply_all(applier: Applier, metrics: Metrics, objects: Sequence[Obj], *,
              owner_labels: dict[str, str], live: Callable[[ObjectRef], Obj | None],
              absent: AbsentCheck | None = None) -> ChangeSet:
    """Server-side apply every object; raises Conflict or ApplyFailed (nothing pruned)."""
    return apply_chunks(applier, metrics, [objects], owner_labels=owner_labels, live=live,
                        absent=absent)


def apply_chunks(applier: Applier, metrics: Metrics, chunks: Iterable[Sequence[Obj]], *,
                 owner_labels: dict[str, str], live: Callable[[ObjectRef], Obj | None],
                 absent: AbsentCheck | None = None) -> ChangeSet:
    """`apply_all` of every chunk in turn (each decoded only for its turn): every object
    is tried before a Conflict or ApplyFailed is raised."""
    changes = ChangeSet()
    for objects in chunks:
        changes.changes += applier.apply(objects, owner_labels=owner_labels, live=live,
                                         absent=absent).changes
    metrics.record(changes)
    if conflicts := changes.of("conflict"):
        raise Conflict([c.message for c in conflicts], changes)
    if failures := changes.of("failed"):
        raise ApplyFailed([c.message for c in failures], changes)
    return changes


def prune_all(applier: Applier, metrics: Metrics, stale: Iterable[Obj],
              applied: ChangeSet) -> ChangeSet:
    """Delete what the render no longer has: only after apply_all succeeded."""
    pruned = applier.prune(stale)
    metrics.record(pruned)
    if failures := pruned.of("failed"):
        raise PruneFailed([c.message for c in failures], applied, pruned)
    return pruned
