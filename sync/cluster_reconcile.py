"""Reconcile one OrasCache: parse -> render -> apply -> prune -> status, a straight line.

`prepare` parses and renders (jsii: call it from one thread only); `finish` talks to the
API server and is safe to run in parallel for different caches. Each failing step maps
to its own Ready reason; nothing is pruned unless parse, render and every apply worked.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any

from constructs_lib import OrasCache, SpecError, parse_oras_cache, render, schema
from constructs_lib.annotations import PREFIX
from sync.apply.applier import Applier, ChangeSet, ObjectRef
from sync.apply.kube import RESOURCES, ApiError, Kube, Obj
from sync.options import SHARD_LABEL
from sync.report.events import EventRecorder
from sync.report.metrics import Metrics
from sync.report.status import Outcome, desired_status, needs_write
from sync.sources.informer import InformerSet, key_of
from sync.steps import InvalidSpec, StepFailed, apply_all, prune_all

log = logging.getLogger(__name__)

OWNER_LABEL = "cache.converged-computing.github.io/cache"
CHILD_KINDS = (("v1", "Service"), ("apps/v1", "StatefulSet"), ("v1", "PersistentVolumeClaim"))
# The only status fields of a child that a decision reads (`_health`): the watch cache
# keeps these and drops the rest.
HEALTH_STATUS = ("observedGeneration", "readyReplicas")
CACHES = RESOURCES[(schema.API_VERSION, schema.KIND)]
# How long a watch event waits for the status write in flight to be recorded: the write
# is one request, its answer normally a few ms behind its own echo.
ECHO_WAIT = 1.0
# status.endpoint of a `deploy: false` cache without spec.registry: the address is each
# pod's own annotation, so the field says so in words no client can take for an address.
PODS_NAME_IT = f"(each pod's {PREFIX}registry annotation)"
PODS_NAME_IT_MESSAGE = (f"no registry runs in the cluster: workflow pods name their remote "
                        f"registry with the {PREFIX}registry annotation")


@dataclass
class Work:
    """A cache ready for the API-side half of its reconcile."""

    key: str
    obj: Obj
    cache: OrasCache | None = None
    manifests: list[Obj] | None = None
    errors: list[SpecError] | None = None


def _rv(obj: Obj) -> int:
    """resourceVersion as a number: etcd revisions, compared only to order our own write
    against the watch cache's copy of the same object."""
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def cache_selector(shard_key: str | None) -> str | None:
    """The server-side label selector of one shard's caches (None: every cache)."""
    if shard_key is None:
        return None
    return f"{SHARD_LABEL}={shard_key}" if shard_key else f"!{SHARD_LABEL}"


def child_selector(shard_key: str | None) -> str:
    """One shard's children: ours (owner label) and labelled with the shard's key, as
    `decorate` labels them; other shards' children never reach this process."""
    shard = cache_selector(shard_key)
    return f"{OWNER_LABEL},{shard}" if shard else OWNER_LABEL


def shard_of(obj: Obj) -> str | None:
    labels: dict[str, str] = obj["metadata"].get("labels") or {}
    return labels.get(SHARD_LABEL)


def decorate(manifest: Obj, cache_obj: Obj) -> Obj:
    """Owner label, the cache's shard label (if any) and controller ownerReference on a
    rendered child. A cache moved to another shard gets its children relabelled by the
    new shard's apply; one moved to the unlabelled shard loses the label (server-side
    apply removes a label this field manager set before and no longer sets)."""
    meta = cache_obj["metadata"]
    child_meta = dict(manifest["metadata"])
    child_meta["namespace"] = meta["namespace"]
    labels = {**child_meta.get("labels", {}), OWNER_LABEL: meta["name"]}
    shard = shard_of(cache_obj)
    if shard is not None:
        labels[SHARD_LABEL] = shard
    child_meta["labels"] = labels
    child_meta["ownerReferences"] = [{
        "apiVersion": schema.API_VERSION, "kind": schema.KIND, "name": meta["name"],
        "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
    }]
    return {**manifest, "metadata": child_meta}


def failure_outcome(generation: int, failed: StepFailed) -> Outcome:
    """A step's failure as the cluster source reports it: Ready=False with the step's name
    as reason, and Stalled when no retry can help."""
    return Outcome(generation, False, failed.reason, failed.message, stalled=not failed.retry)


class Reconciler:
    def __init__(
        self,
        *,
        kube: Kube,
        applier: Applier,
        caches: InformerSet,
        children: dict[tuple[str, str], InformerSet],
        events: EventRecorder,
        metrics: Metrics,
    ) -> None:
        self.kube = kube
        self.applier = applier
        self.caches = caches
        self.children = children
        self.events = events
        self.metrics = metrics
        self._lock = threading.Lock()
        # key -> (uid, generation, shard) and its decorated manifests as compact JSON,
        # zlib-compressed (level 1: microseconds per cache): less than half the memory
        # of the plain JSON, a tenth of the dictionaries' (docs/performance.md).
        self._rendered: dict[str, tuple[tuple[str, int, str | None], bytes]] = {}
        # key -> (resourceVersion, status) of our last status write: the watch cache may
        # still hold the object from before it, which must not look like a change. The
        # status is dropped (None) once its echo is in the watch cache.
        self._written: dict[str, tuple[int, Obj | None]] = {}
        # key -> set once the status write in flight for it is recorded in _written: its
        # watch event can arrive before the reconcile thread gets to record it.
        self._writing: dict[str, threading.Event] = {}

    # ----- thread of the caller: parse + render -----------------------------------------
    def prepare(self, keys: list[str]) -> list[Work]:
        works: list[Work] = []
        valid: list[tuple[Work, OrasCache]] = []
        for key in keys:
            obj = self.caches.get(key)
            # Deleted, moved to another shard, or being deleted: kube-controller-manager
            # collects the children of a deleted cache; a moved cache's new shard relabels
            # them. With foreground deletion (kubectl --cascade=foreground, Argo CD's
            # prune) the cache stays until they are gone: applying them again would keep
            # it forever.
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                self._forget(key)
                continue
            work = Work(key, obj)
            parsed = parse_oras_cache(obj, f"{CACHES.plural}/{key}")
            if isinstance(parsed, list):
                work.errors = parsed
            else:
                work.cache = parsed
                valid.append((work, parsed))
            works.append(work)
        fresh = [(w, c) for w, c in valid if self._cached_render(w) is None]
        for (work, _), rendered in zip(fresh, render(c for _, c in fresh), strict=True):
            manifests = [decorate(m, work.obj) for m in rendered.manifests]
            blob = zlib.compress(json.dumps(manifests, separators=(",", ":")).encode(), 1)
            with self._lock:
                self._rendered[work.key] = (self._render_key(work.obj), blob)
        for work, _ in valid:
            work.manifests = self._cached_render(work)
        return works

    def _forget(self, key: str) -> None:
        """Drop what this process holds for a cache it no longer reconciles, its
        children's apply records too: should the cache come back (moved back to this
        shard), they are checked afresh."""
        with self._lock:
            cached = self._rendered.pop(key, None)
            self._written.pop(key, None)
        if cached is not None:
            self.applier.forget(ObjectRef.of(m) for m in json.loads(zlib.decompress(cached[1])))

    @staticmethod
    def _render_key(obj: Obj) -> tuple[str, int, str | None]:
        """Labels are not in the generation: the shard label is part of the key, as the
        children carry it."""
        meta = obj["metadata"]
        return meta.get("uid", ""), int(meta.get("generation", 0)), shard_of(obj)

    def _cached_render(self, work: Work) -> list[Obj] | None:
        """Manifests depend only on the spec (generation) and owner (uid): render once.

        Most reconciles come from child events or resyncs; rendering again would cost jsii
        time and memory (the jsii kernel never frees objects) for identical output.
        """
        with self._lock:
            cached = self._rendered.get(work.key)
        if cached is None or cached[0] != self._render_key(work.obj):
            return None
        manifests: list[Obj] = json.loads(zlib.decompress(cached[1]))
        return manifests

    # ----- any thread: API calls ---------------------------------------------------------
    def finish(self, work: Work) -> bool:
        """Returns False when the reconcile should be retried with backoff."""
        started = time.monotonic()
        try:
            ok = self._finish(work)
        except ApiError as err:
            log.warning("reconcile %s failed: %s", work.key, err.message)
            ok = False
        self.metrics.reconciles.labels(result="ok" if ok else "error").inc()
        self.metrics.duration.observe(time.monotonic() - started)
        return ok

    def _finish(self, work: Work) -> bool:
        generation = int(work.obj["metadata"].get("generation", 0))
        try:
            if work.errors is not None:
                raise InvalidSpec([str(e.error) for e in work.errors])
            assert work.cache is not None and work.manifests is not None
            changes = apply_all(self.applier, self.metrics, work.manifests,
                                owner_labels={OWNER_LABEL: work.cache.name}, live=self._live,
                                absent=self._absent)
            rendered = {ObjectRef.of(m) for m in work.manifests}
            pruned = prune_all(self.applier, self.metrics, (
                o for o in self._children_of(work.cache) if ObjectRef.of(o) not in rendered),
                changes)
        except StepFailed as failed:
            return self.failed(work, generation, failed)
        outcome = replace(self._health(work.cache, generation, sorted(rendered)),
                          drift=changes.drift())
        summary = ChangeSet(changes.changes + pruned.changes)
        event = ("Normal", "Applied", summary.summary()) if summary.writes else None
        self._report(work, outcome, event=event)
        return True

    def failed(self, work: Work, generation: int, failed: StepFailed) -> bool:
        """Report a step's failure on the cache; False: retry with backoff (retrying
        cannot help a stalled cache: a new generation will come as an event)."""
        self._report(work, failure_outcome(generation, failed),
                     event=("Warning", failed.reason, failed.message))
        return not failed.retry

    # ----- helpers -------------------------------------------------------------------------
    def _live(self, ref: ObjectRef) -> Obj | None:
        informer = self.children.get((ref.api_version, ref.kind))
        if informer is None:
            return self.kube.get(RESOURCES[(ref.api_version, ref.kind)], ref.namespace, ref.name)
        return informer.get(f"{ref.namespace}/{ref.name}")

    def _absent(self, ref: ObjectRef) -> bool:
        """Not in the (synced) watch cache of our labelled children: almost always no such
        object, so the applier creates it without a GET first (two per cache at start-up).
        Should one exist after all (someone else's, or ours with the label edited away),
        that create fails without writing and the applier takes the GET path."""
        return (ref.api_version, ref.kind) in self.children

    def _children_of(self, cache: OrasCache) -> list[Obj]:
        return [o for informer in self.children.values()
                for o in informer.by_index(cache.namespace or "", cache.name)]

    def _health(self, cache: OrasCache, generation: int, inventory: list[ObjectRef]) -> Outcome:
        endpoint = cache.endpoint()
        if not cache.spec.deploy:
            if not endpoint:  # the original operator's form: each pod names its registry
                return Outcome(generation, True, "RemoteRegistry", PODS_NAME_IT_MESSAGE,
                               endpoint=PODS_NAME_IT, inventory=inventory)
            return Outcome(generation, True, "RemoteRegistry",
                           f"workflow pods use the remote registry {endpoint}",
                           endpoint=endpoint, inventory=inventory)
        sts = self.children[("apps/v1", "StatefulSet")].get(f"{cache.namespace}/{cache.name}")
        status: dict[str, Any] = (sts or {}).get("status") or {}
        ready = int(status.get("readyReplicas") or 0)
        want = cache.spec.replicas
        current = sts is not None and status.get("observedGeneration", 0) >= (
            sts["metadata"].get("generation", 0))
        if current and ready >= want:
            return Outcome(generation, True, "Available", f"{ready}/{want} replicas ready",
                           endpoint=endpoint, ready_replicas=ready, inventory=inventory)
        return Outcome(generation, False, "Progressing", f"{ready}/{want} replicas ready",
                       endpoint=endpoint, ready_replicas=ready, inventory=inventory)

    def _report(self, work: Work, outcome: Outcome,
                event: tuple[str, str, str] | None = None) -> None:
        """Write status only when it changes; warn once per new reason or message."""
        current = self._current_status(work)
        conditions = {c.get("type"): c for c in (current or {}).get("conditions", [])}
        old_ready = conditions.get("Ready", {})
        if outcome.drift and conditions.get("Drifted", {}).get("message") != outcome.drift:
            self.events.emit(work.obj, "Warning", "Drifted",
                             f"left as found (--drift=report): {outcome.drift}")
        if event and (event[0] == "Normal" or old_ready.get("reason") != outcome.reason
                      or old_ready.get("message") != outcome.message):
            self.events.emit(work.obj, *event)
        desired = desired_status(outcome, current)
        if not needs_write(desired, current):
            return
        cleared = {k: None for k in current or {} if k not in desired}
        meta = work.obj["metadata"]
        recorded = threading.Event()
        with self._lock:
            self._writing[work.key] = recorded
        try:
            written = self.kube.merge_patch(
                CACHES.path(meta["namespace"], meta["name"]) + "/status",
                {"status": {**cleared, **desired}})
            with self._lock:
                self._written[work.key] = (_rv(written), written.get("status") or desired)
        finally:
            with self._lock:
                self._writing.pop(work.key, None)
            recorded.set()
        self.metrics.status_writes.inc()

    def is_status_echo(self, obj: Obj) -> bool:
        """The watch event of exactly what our last status write produced. Waits (briefly)
        for a write in flight to be recorded: its echo may overtake its answer."""
        key = key_of(obj)
        with self._lock:
            recording = self._writing.get(key)
        if recording is not None:
            recording.wait(timeout=ECHO_WAIT)
        with self._lock:
            written = self._written.get(key)
            echo = written is not None and written[0] == _rv(obj)
            if echo and written is not None and written[1] is not None:
                # The watch cache holds our write now: the copy is no longer needed
                # (about 4 kB per cache), only its resourceVersion.
                self._written[key] = (written[0], None)
        return echo

    def _current_status(self, work: Work) -> Obj | None:
        """The cached object's status, unless our own later write is not in it yet."""
        status: Obj | None = work.obj.get("status")
        with self._lock:
            written = self._written.get(work.key)
        if written is None or written[0] <= _rv(work.obj):
            return status
        if written[1] is not None:
            return written[1]
        # The copy was dropped: the watch cache has our write by now (work.obj is older).
        latest = self.caches.get(work.key)
        return (latest or work.obj).get("status")

