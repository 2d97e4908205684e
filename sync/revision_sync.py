"""The sync service, git source: fetch -> parse all -> render all -> apply all -> prune.

One revision at a time, all or nothing before any write: if any file fails to parse or
render, nothing is applied and nothing is pruned, the last good revision stays, and the
error (file, document and field path) is reported in the log, as an Event on the ApplySet
parent, in its annotations and in metrics. Pruning removes the members of the previous
inventory (the ApplySet, found by label) that the new render no longer has, and only
after every apply succeeded. A revision with no caches prunes nothing unless
`allow_empty`. The rendered children are applied directly: no OrasCache CRD is needed.

Drift correction: at every interval whose fetch finds the commit already applied, the
objects rendered for it (kept in memory, never rendered again) are applied again through
the applier, which skips every object whose hash annotation and set fields still hold: a
pass with no drift makes zero write requests, while a hand-deleted or hand-edited member
is restored (as Flux's kustomize-controller re-applies at every interval). After a
restart the applier checks each member once by a dry-run apply (an edit made while the
service was down is found too). With `drift="report"` drifted members are left as they are
and named, with their field paths, in a Warning Event on the parent. A drift pass never
prunes and never rewrites the ApplySet parent unless the parent itself is gone.

Threads: the main thread fetches, parses and renders (jsii is not thread-safe); the
applier's pool talks to the API server; the HTTP thread only sets the trigger event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sync.apply.applier import AbsentCheck, Applier, ChangeSet, ObjectRef
from sync.apply.applyset import GROUP_KINDS_ANNOTATION as GKS
from sync.apply.applyset import (
    LAST_ATTEMPT,
    LAST_COMMIT,
    LAST_MESSAGE,
    LAST_RESULT,
    LAST_TIME,
    LIST_PAGE,
    SOURCE,
    ApplySet,
    ApplySetError,
    group_kinds,
    namespaces_of,
    split,
    stale,
)
from sync.apply.applyset import NAMESPACES_ANNOTATION as NSS
from sync.apply.kube import RESOURCES, ApiError, Kube, KubeError, Obj, Unreachable
from sync.options import RevisionOptions
from sync.render.tree import Compact, RenderMemo, render_compact
from sync.report.events import EventRecorder
from sync.report.metrics import Metrics, RevisionMetrics
from sync.report.status import now
from sync.sources.git import GitSourceError, UnsafeRevision, redact
from sync.sources.revision import RevisionSource
from sync.steps import (
    EmptyRefused,
    FetchFailed,
    InvalidSpec,
    PruneFailed,
    StepFailed,
    apply_chunks,
    prune_all,
)

log = logging.getLogger(__name__)

APPLIED, INVALID, EMPTY, FAILED, FETCH_FAILED, UP_TO_DATE = (
    "Applied", "Invalid", "EmptyRefused", "Failed", "FetchFailed", "UpToDate")
# Outcomes of a drift pass (the parent keeps recording the revision's own result).
DRIFT_CORRECTED, DRIFT_FAILED = "DriftCorrected", "DriftCorrectionFailed"
DRIFTED = "Drifted"  # --drift=report: members left as found, reported
# An annotation on the parent: enough for every error of a broken revision, far below
# the 256 KiB all annotations of an object may hold.
MAX_PARENT_MESSAGE = 2000


@dataclass
class Result:
    outcome: str
    commit: str | None = None
    message: str = ""
    changes: ChangeSet = field(default_factory=ChangeSet)
    pruned: ChangeSet = field(default_factory=ChangeSet)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    @property
    def writes(self) -> int:
        return self.changes.writes + self.pruned.writes


def failure_result(commit: str, failed: StepFailed, keeping: str) -> Result:
    """A step's failure as the revision sources report it: the outcome on the ApplySet
    parent, in the Event reason and in the metrics' result label."""
    if isinstance(failed, InvalidSpec):
        return Result(INVALID, commit, f"{len(failed.failures)} error(s), nothing applied or "
                      f"pruned, {keeping}: {failed.message}")
    if isinstance(failed, EmptyRefused):
        return Result(EMPTY, commit, f"{failed.message}; {keeping}")
    if isinstance(failed, PruneFailed):
        return Result(FAILED, commit, f"prune failed: {failed.message}", failed.changes,
                      failed.pruned)
    failures = failed.changes.of("conflict", "failed")  # Conflict, ApplyFailed
    return Result(FAILED, commit, f"{len(failures)} object(s) not applied, nothing pruned: "
                  + "; ".join(c.message for c in failures), failed.changes)


class Stopwatch:
    """Seconds per stage of a revision (logged, and read by the benchmark)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._clock = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.laps[stage] = now - self._clock
        self._clock = now


@dataclass(frozen=True)
class Kept:
    """The objects rendered for the applied commit, for drift passes: compressed chunks
    (see `Compact`), their kinds and namespaces apart."""

    commit: str
    chunks: tuple[bytes, ...]
    gks: frozenset[str]
    namespaces: frozenset[str]
    errors: tuple[str, ...] = ()

    @classmethod
    def of(cls, commit: str, compact: Compact) -> Kept:
        return cls(commit, tuple(compact.chunks), frozenset(group_kinds(compact.refs)),
                   frozenset(namespaces_of(compact.refs)), tuple(compact.errors))

    def objects(self) -> Iterator[list[Obj]]:
        return Compact(list(self.chunks)).objects()


@dataclass
class RevisionState:
    """What the pipeline remembers between passes."""

    last: Result | None = None  # the last revision's result
    last_good: str | None = None  # the last revision applied
    fetch_error: Result | None = None  # while fetches fail: reported once per outage
    recorded: tuple[str | None, str, str] | None = None  # last result written on the parent
    rendered: Kept | None = None  # the applied revision's objects, for drift
    drift_reported: str | None = None  # one Warning per distinct drift-pass failure
    drift_seen: str = ""  # report mode: one Warning per distinct set of drifted paths


class RevisionSync:
    """One ApplySet kept equal to the rendered caches of one git ref and path."""

    def __init__(self, kube: Kube, source: RevisionSource, options: RevisionOptions, *,
                 applier: Applier | None = None, metrics: Metrics | None = None) -> None:
        self.kube = kube
        self.source = source
        self.options = options
        self.applyset = ApplySet(options.applyset_name, options.namespace)
        self.applier = applier or Applier(kube, drift=options.drift)
        self.metrics = metrics or Metrics()
        self.metrics.drifted.set_function(self.applier.drifted_count)
        self.revision_metrics = RevisionMetrics(self.metrics)
        self.events = EventRecorder(kube)
        self.source_id = f"{source.display_url}#{source.ref}:{options.path}"
        self.state = RevisionState()
        self._memo = RenderMemo(options.render_workers)

    # ----- state kept on the parent ----------------------------------------------------
    def restore(self) -> None:
        """Resume from the parent's record: the same commit is not applied again."""
        try:
            parent = self.applyset.read_parent(self.kube)
        except (KubeError, ApplySetError) as exc:
            log.warning("cannot read the ApplySet parent: %s", exc)
            return
        ann = (parent or {}).get("metadata", {}).get("annotations") or {}
        if ann.get(SOURCE) == self.source_id and ann.get(LAST_COMMIT):
            self.state.last_good = ann[LAST_COMMIT]
            if ann.get(LAST_RESULT) == APPLIED and ann.get(LAST_ATTEMPT) == self.state.last_good:
                self.state.last = Result(APPLIED, self.state.last_good, "restored from the parent")

    def _record(self, result: Result, parent: Obj | None, gks: set[str],
                namespaces: set[str]) -> None:
        """Write the result on the parent (only when it changed) and emit an Event."""
        key = (result.commit, result.outcome, result.message)
        if self.state.recorded == key:
            return
        ann = (parent or {}).get("metadata", {}).get("annotations") or {}
        status = {SOURCE: self.source_id, LAST_RESULT: result.outcome,
                  LAST_MESSAGE: result.message[:MAX_PARENT_MESSAGE]}
        if result.commit:
            status[LAST_ATTEMPT] = result.commit
        if result.outcome == APPLIED and result.commit:
            status[LAST_COMMIT] = result.commit
            status[LAST_TIME] = now()
        else:
            for key_ in (LAST_COMMIT, LAST_TIME, LAST_ATTEMPT):
                if key_ in status:
                    continue
                if ann.get(key_):
                    status[key_] = ann[key_]
        try:
            written = self.applyset.write_parent(self.kube, gks, namespaces, status)
        except ApiError as err:
            log.warning("cannot record the result on the ApplySet parent: %s",
                        err.message)
            return
        self.state.recorded = key
        type_ = "Normal" if result.outcome == APPLIED else "Warning"
        short = (result.commit or "")[:12]
        self.events.emit(written, type_, result.outcome,
                         f"{short} {result.message}".strip())

    # ----- one pass ----------------------------------------------------------------------
    def sync_once(self) -> Result:
        started = time.monotonic()
        try:
            commit = self._fetch()
        except FetchFailed:
            assert self.state.fetch_error is not None
            return self.state.fetch_error
        fetched = time.monotonic() - started
        last = self.state.last
        if last is not None and last.commit == commit and last.outcome in (
                APPLIED, INVALID, EMPTY):
            if last.outcome == APPLIED and self.options.drift_correction:
                return self._drift_safely(commit, started)
            self.revision_metrics.healthy.set(1 if last.outcome == APPLIED else 0)
            return Result(UP_TO_DATE, commit, f"{commit[:12]} already {last.outcome}")
        try:
            result = self._revision(commit)
        except Exception as exc:  # every failure of a revision is reported
            result = Result(FAILED, commit, f"{self._failure(exc)}; nothing pruned, "
                            f"keeping {self._keeping()}")
            self._record_safely(result)
        result.timings = {"fetch": fetched, **result.timings}
        self.state.last = result
        self.revision_metrics.revisions.labels(result=result.outcome).inc()
        self.revision_metrics.healthy.set(1 if result.outcome == APPLIED else 0)
        if result.outcome == APPLIED:
            self.state.last_good = commit
            self.revision_metrics.last_applied.set(time.time())
            self.revision_metrics.commit.clear()
            self.revision_metrics.commit.labels(commit=commit).set(1)
            self.revision_metrics.duration.set(time.monotonic() - started)
            stages = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
            log.info("applied %s (%s): %s", commit[:12], stages, result.message)
        else:
            log.error("revision %s %s: %s", commit[:12], result.outcome, result.message)
        return result

    def _fetch(self) -> str:
        """The source's current revision; a failure is reported once per outage, kept as
        state.fetch_error and raised as FetchFailed."""
        try:
            commit = self.source.fetch()
        except Exception as exc:  # any failure to fetch is reported, as a revision's is
            self.revision_metrics.fetches.labels(result="failed").inc()
            self.revision_metrics.healthy.set(0)
            result = Result(FETCH_FAILED, None, f"{self._failure(exc)}; keeping "
                            f"{self._keeping()}")
            log.error("fetch failed: %s", result.message)
            if self.state.fetch_error is None:
                self._record_safely(result)
            self.state.fetch_error = result
            raise FetchFailed([result.message]) from exc
        self.revision_metrics.fetches.labels(result="ok").inc()
        if self.state.fetch_error is not None:
            log.info("fetch of %s works again", self.source.display_url)
            self.state.fetch_error = None
            if self.state.last is not None:
                self._record_safely(self.state.last)
        return commit

    def _failure(self, exc: Exception) -> str:
        """The message of any exception out of a revision's processing (a bug or input
        the parser did not expect included), redacted; a traceback for the unexpected."""
        if isinstance(exc, ApiError):
            message = exc.message
        elif isinstance(exc, (Unreachable, OSError, ApplySetError, GitSourceError)):
            message = str(exc)
        else:
            log.error("unexpected error in a revision", exc_info=exc)
            message = f"unexpected {type(exc).__name__}: {exc}"
        return redact(message, self.source.secrets())

    def _keeping(self) -> str:
        last_good = self.state.last_good
        return f"last good revision {last_good[:12]}" if last_good else (
            "the cluster as it is (no good revision yet)")

    def _record_safely(self, result: Result) -> None:
        try:
            parent = self.applyset.read_parent(self.kube)
            ann = (parent or {}).get("metadata", {}).get("annotations") or {}
            self._record(result, parent, split(ann.get(GKS)), split(ann.get(NSS)))
        except (KubeError, ApplySetError) as exc:
            log.warning("cannot record the result: %s", exc)

    def _read_revision(self, commit: str, lap: Callable[[str], None]) -> Compact:
        """Check out, parse and render `commit`; raises InvalidSpec or EmptyRefused.
        Nothing is written before this returns."""
        opts = self.options
        try:
            revision = self.source.checkout(commit)
        except UnsafeRevision as exc:  # reported as a parse error is: nothing was read
            raise InvalidSpec([str(exc)]) from None
        if not self.source.path_exists(commit, opts.path):
            raise InvalidSpec([f"path {opts.path!r} does not exist in {commit[:12]}"])
        lap("checkout")
        desired = render_compact(revision.worktree, opts.path, self.applyset, opts.namespace,
                                 self._memo)
        lap("render")
        if desired.errors:
            raise InvalidSpec(desired.errors)
        if not desired.refs and not opts.allow_empty:
            raise EmptyRefused([f"no OrasCache under {opts.path!r}: refusing to prune "
                                "everything (use --allow-empty)"])
        return desired

    def _revision(self, commit: str) -> Result:
        watch = Stopwatch()
        opts = self.options
        parent = self.applyset.read_parent(self.kube)
        ann = (parent or {}).get("metadata", {}).get("annotations") or {}
        gks, namespaces = split(ann.get(GKS)), split(ann.get(NSS))
        try:
            desired = self._read_revision(commit, watch.lap)
            refs = desired.refs
            new_gks, new_ns = group_kinds(refs), namespaces_of(refs)
            live = self.applyset.member_index(self.kube, parent, new_gks, new_ns)
            if not (new_gks <= gks and new_ns - {opts.namespace} <= namespaces) or (
                    parent is None):
                # KEP-3659: the parent lists a superset of the kinds before members are
                # applied.
                status = {k: v for k, v in ann.items() if k.startswith("orascache.")}
                parent = self.applyset.write_parent(self.kube, gks | new_gks,
                                                    namespaces | new_ns, status)
            gks, namespaces = gks | new_gks, namespaces | new_ns
            watch.lap("inventory")
            changes = apply_chunks(self.applier, self.metrics, desired.objects(),
                                   owner_labels=self.applyset.member_labels, live=live.get,
                                   absent=absence_check(self.kube, refs))
            watch.lap("apply")
            doomed = set(stale(live, refs))
            pruned = prune_all(self.applier, self.metrics,
                               [m for ref in live if ref in doomed
                                if (m := live.get(ref)) is not None], changes)
            watch.lap("prune")
        except StepFailed as failed:
            result = failure_result(commit, failed, f"keeping {self._keeping()}")
            self._record(result, parent, gks, namespaces)
            return result
        self._report_drift(parent, commit, changes)
        summary = (f"{desired.caches} cache(s), {len(refs)} object(s): "
                   f"{changes.summary()}; pruned: {pruned.summary()}")
        result = Result(APPLIED, commit, summary, changes, pruned, watch.laps)
        self.state.rendered = Kept.of(commit, desired)
        self._record(result, parent, new_gks, new_ns)
        watch.lap("record")
        return result

    # ----- drift correction ----------------------------------------------------------------
    def _drift_safely(self, commit: str, started: float) -> Result:
        try:
            result = self._drift(commit)
        except Exception as exc:  # reported as a failed drift pass
            result = Result(DRIFT_FAILED, commit,
                            f"drift check of {commit[:12]}: {self._failure(exc)}")
        result.timings["drift"] = time.monotonic() - started
        if result.outcome == DRIFT_FAILED:
            self.revision_metrics.drift_checks.labels(result="failed").inc()
            self.revision_metrics.healthy.set(0)
            log.error("%s", result.message)
        else:
            self.revision_metrics.healthy.set(1)
            label = {DRIFT_CORRECTED: "corrected", DRIFTED: "drifted"}.get(result.outcome,
                                                                             "clean")
            self.revision_metrics.drift_checks.labels(result=label).inc()
        return result

    def _desired_of(self, commit: str) -> Kept:
        """The objects rendered for the applied `commit`: kept from its revision, or
        rendered once after a restart (the parent said it was applied)."""
        if self.state.rendered is None or self.state.rendered.commit != commit:
            revision = self.source.checkout(commit)
            self.state.rendered = Kept.of(commit, render_compact(
                revision.worktree, self.options.path, self.applyset, self.options.namespace,
                self._memo))
        kept = self.state.rendered
        if kept.errors:  # e.g. a newer orascache rejects what an older one applied
            raise GitSourceError(f"{commit[:12]} no longer renders: " + "; ".join(kept.errors))
        return kept

    def _drift(self, commit: str) -> Result:
        """Apply the applied commit's objects again: no write unless a member drifted;
        no prune; the parent is only written when it is gone or misses a kind."""
        kept = self._desired_of(commit)
        parent = self.applyset.read_parent(self.kube)
        ann = (parent or {}).get("metadata", {}).get("annotations") or {}
        old_gks, old_ns = split(ann.get(GKS)), split(ann.get(NSS))
        gks, namespaces = set(kept.gks), set(kept.namespaces)
        repaired: list[str] = []
        if parent is None or not (gks <= old_gks
                                  and namespaces - {self.options.namespace} <= old_ns):
            # The parent was deleted or edited: it must list the kinds before members are
            # applied (KEP-3659); a new one records the applied commit again.
            if parent is None:
                self.state.recorded = None
                self._record(self.state.last or Result(APPLIED, commit, "drift correction"),
                             None, gks, namespaces)
                parent = self.applyset.read_parent(self.kube)
            else:
                status = {k: v for k, v in ann.items() if k.startswith("orascache.")}
                parent = self.applyset.write_parent(self.kube, old_gks | gks,
                                                    old_ns | namespaces, status)
            if parent is not None:
                repaired.append(f"restored the ApplySet parent {self.applyset.namespace}/"
                                f"{self.applyset.name}")
        live = self.applyset.member_index(self.kube, parent, gks, namespaces)
        # No absence_check: drifted members are few, a GET each is cheaper than LISTs of
        # every object at every interval. One chunk of objects decoded at a time.
        changes = ChangeSet()
        for objects in kept.objects():
            changes.changes += self.applier.apply(
                objects, owner_labels=self.applyset.member_labels, live=live.get).changes
        self.metrics.record(changes)
        corrected = changes.of("created", "configured")
        self.revision_metrics.drift_corrected.inc(len(corrected))
        if not changes.ok:
            failures = [c.message for c in changes.of("conflict", "failed")]
            message = (f"drift check of {commit[:12]}: {len(failures)} object(s) not "
                       "restored: " + "; ".join(failures))
            if parent is not None and self.state.drift_reported != message:
                self.events.emit(parent, "Warning", DRIFT_FAILED, message)
                self.state.drift_reported = message
            return Result(DRIFT_FAILED, commit, message, changes)
        self.state.drift_reported = None
        drifted = self._report_drift(parent, commit, changes)
        if not corrected and not repaired:
            if drifted:
                return Result(DRIFTED, commit, f"{commit[:12]} drifted, left as found: "
                              f"{drifted}", changes)
            return Result(UP_TO_DATE, commit, f"{commit[:12]} already {APPLIED}, no drift",
                          changes)
        message = (f"{commit[:12]} drift corrected: "
                   + "; ".join([*repaired, changes.summary()] if corrected else repaired))
        log.warning("%s", message)
        if parent is not None:
            self.events.emit(parent, "Normal", DRIFT_CORRECTED, message)
        return Result(DRIFT_CORRECTED, commit, message, changes)

    def _report_drift(self, parent: Obj | None, commit: str, changes: ChangeSet) -> str:
        """--drift=report: a Warning Event on the parent naming the drifted members and
        field paths, once per distinct drift; the drift text ("" when none)."""
        drifted = changes.drift()
        if drifted and drifted != self.state.drift_seen:
            log.warning("%s drifted, left as found: %s", commit[:12], drifted)
            if parent is not None:
                self.events.emit(parent, "Warning", DRIFTED,
                                 f"{commit[:12]} left as found (--drift=report): {drifted}")
        self.state.drift_seen = drifted
        return drifted


def absence_check(kube: Kube, refs: Sequence[ObjectRef]) -> AbsentCheck | None:
    """Which of `refs` do not exist at all, from one metadata-only LIST per kind and
    namespace (labelled or not: the member list alone cannot tell a missing object from
    someone else's), so the applier creates those without a GET each. None (GET each)
    when the objects are spread so thin that the LISTs would outnumber the GETs."""
    scopes = sorted({(r.api_version, r.kind, r.namespace) for r in refs})
    if not refs or len(scopes) * 4 > len(refs):
        return None
    existing: set[ObjectRef] = set()
    for api_version, kind, namespace in scopes:
        res = RESOURCES[(api_version, kind)]
        list_fn = kube.list_function(res, namespace or None, metadata_only=True)
        token: str | None = None
        while True:  # by pages, as the members are listed
            listing = list_fn(limit=LIST_PAGE, **{"continue": token})
            existing.update(ObjectRef(api_version, kind, namespace, item["metadata"]["name"])
                            for item in listing.get("items") or [])
            token = (listing.get("metadata") or {}).get("continue")
            if not token:
                break
    return lambda ref: ref not in existing
