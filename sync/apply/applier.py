"""Apply stage: server-side apply of rendered objects, no-op skipping, and pruning.

One applier for every source (cluster watch, git). Each object carries a hash of what
was rendered; when the live object still has that hash and the fields we set still hold
the values the server returned after our last apply, nothing is sent: an idle resync
makes zero write requests. Objects that exist but belong to someone else are never
taken over (a conflict is reported); objects that are ours are applied with force, so a
hand edit of a field we own is corrected (drift correction), as Flux does.

An object met for the first time by this process (after start-up or a leader failover)
has no such record: its hash annotation only says what was rendered, not that nobody
edited it since. It is checked with one server-side dry-run apply, whose result is
compared with the live object on the fields we set (as fluxcd/pkg/ssa does): both come
from the server, so its normalisation (quantities, defaults, key order) cancels out and
a restart with nothing drifted writes nothing. In `report` mode a drifted object is not
written: the change names its drifted field paths.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from sync.apply.kube import ApiError, Kube, Obj, resource_for
from sync.options import DriftMode

HASH_ANNOTATION = "cache.converged-computing.github.io/rendered-hash"
FIELD_MANAGER = "orascache"

Action = Literal["created", "configured", "unchanged", "drifted", "deleted", "conflict",
                 "failed"]
LiveLookup = Callable[["ObjectRef"], Obj | None]
AbsentCheck = Callable[["ObjectRef"], bool]


@dataclass(frozen=True, order=True, slots=True)
class ObjectRef:
    """One object's identity; slots: the applier holds two records per child."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])

    def to_dict(self) -> dict[str, str]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


@dataclass(frozen=True)
class Change:
    ref: ObjectRef
    action: Action
    message: str = ""
    paths: tuple[str, ...] = ()  # drifted: the field paths that differ


@dataclass
class ChangeSet:
    changes: list[Change] = field(default_factory=list)

    def of(self, *actions: Action) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    @property
    def writes(self) -> int:
        return len(self.of("created", "configured", "deleted"))

    @property
    def ok(self) -> bool:
        return not self.of("conflict", "failed")

    def summary(self) -> str:
        parts = [f"{c.action} {c.ref}" for c in self.changes if c.action != "unchanged"]
        return "; ".join(parts) or "no changes"

    def drift(self) -> str:
        """`Kind/ns/name: path, path; ...` of every drifted object (report mode)."""
        return "; ".join(f"{c.ref}: {', '.join(c.paths)}" for c in self.of("drifted"))


def content_hash(obj: Mapping[str, Any]) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def project(rendered: Any, live: Any) -> Any:
    """The part of `live` at the paths `rendered` sets: what our apply controls."""
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            return None
        return {k: project(v, live.get(k)) for k, v in rendered.items()}
    if isinstance(rendered, list) and isinstance(live, list):
        if len(rendered) != len(live):
            return live
        return [project(r, v) for r, v in zip(rendered, live, strict=True)]
    return live


def differing_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Field paths (`spec.replicas`, `spec.template.spec.containers[0].image`) where two
    projections differ, the shortest that covers each difference."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(before.keys() | after.keys()):
            out += differing_paths(before.get(key), after.get(key),
                                   f"{prefix}.{key}" if prefix else str(key))
        return out
    if (isinstance(before, list) and isinstance(after, list)
            and len(before) == len(after)):
        return [p for i, (b, a) in enumerate(zip(before, after, strict=True))
                for p in differing_paths(b, a, f"{prefix}[{i}]")]
    return [] if before == after else [prefix or "."]


def with_hash(obj: Obj) -> Obj:
    """A copy of `obj` annotated with the hash of its own content."""
    digest = content_hash(obj)
    meta = dict(obj["metadata"])
    meta["annotations"] = {**meta.get("annotations", {}), HASH_ANNOTATION: digest}
    return {**obj, "metadata": meta}


def _drift_change(ref: ObjectRef, paths: tuple[str, ...]) -> Change:
    return Change(ref, "drifted", f"{ref} drifted: {', '.join(paths)}", paths)


def _immutable(message: str) -> bool:
    return "field is immutable" in message or "Forbidden: updates to" in message


def is_ours(live: Mapping[str, Any], owner_labels: Mapping[str, str]) -> bool:
    labels = live.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in owner_labels.items())


class _Stale:
    """A check made on a cached copy that cannot tell: read the object afresh."""


STALE = _Stale()


class Applier:
    """Server-side apply with one field manager; thread-safe, bounded concurrency."""

    def __init__(self, kube: Kube, *, concurrency: int = 8, drift: DriftMode = "correct") -> None:
        self.kube = kube
        self.drift = drift
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="apply")
        self._lock = threading.Lock()
        # ref -> (rendered hash, digest of the live projection right after our last apply,
        # or when a dry-run showed that applying would change nothing)
        self._applied: dict[ObjectRef, tuple[str, str]] = {}
        # ref -> (rendered hash, digest of the drifted live projection, drifted paths):
        # objects left as they are in report mode, reported again without a request
        self._drifted: dict[ObjectRef, tuple[str, str, tuple[str, ...]]] = {}
        # ref -> resourceVersion our last write returned: its watch event is our own echo
        self._written_rv: dict[ObjectRef, str] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def apply(
        self,
        objects: Sequence[Obj],
        *,
        owner_labels: Mapping[str, str],
        live: LiveLookup | None = None,
        absent: AbsentCheck | None = None,
    ) -> ChangeSet:
        """Apply every object (in parallel); `owner_labels` must already be on them.

        `live` reads a (watch) cache instead of GETting each object; `absent` says when
        the caller believes an object does not exist at all, so it is created without a
        GET (unless this process applied or saw it before: then it was deleted since, or
        the caller's cache lags, and a GET tells which).
        """
        lookup = live or self._get_live
        futures = [self._pool.submit(self._apply_one, o, owner_labels, lookup, absent)
                   for o in objects]
        return ChangeSet([f.result() for f in futures])

    def prune(self, objects: Iterable[Obj]) -> ChangeSet:
        """Delete live objects (uid precondition, so a recreated namesake survives)."""
        futures = [self._pool.submit(self._delete_one, o) for o in objects]
        return ChangeSet([f.result() for f in futures])

    def forget(self, refs: Iterable[ObjectRef]) -> None:
        with self._lock:
            for ref in refs:
                self._applied.pop(ref, None)
                self._drifted.pop(ref, None)
                self._written_rv.pop(ref, None)

    def drifted_count(self) -> int:
        """Objects left drifted (report mode), for a gauge."""
        with self._lock:
            return len(self._drifted)

    def _get_live(self, ref: ObjectRef) -> Obj | None:
        res = resource_for({"apiVersion": ref.api_version, "kind": ref.kind})
        return self.kube.get(res, ref.namespace or None, ref.name)

    def is_echo(self, live: Mapping[str, Any]) -> bool:
        """The watch event of exactly what our last write produced (nothing to react to)."""
        rv = live["metadata"].get("resourceVersion")
        with self._lock:
            return rv is not None and self._written_rv.get(ObjectRef.of(live)) == rv

    def _seen(self, ref: ObjectRef) -> bool:
        """Applied, checked or found drifted by this process: the object existed, so a
        cache without it is no proof of absence."""
        with self._lock:
            return ref in self._applied or ref in self._drifted

    def _known(self, ref: ObjectRef, obj: Obj, live: Obj) -> Change | None:
        """The verdict from what this process recorded, without a request: unchanged,
        still drifted in the same way (report mode), or None: it cannot tell."""
        digest = obj["metadata"]["annotations"][HASH_ANNOTATION]
        live_hash = (live["metadata"].get("annotations") or {}).get(HASH_ANNOTATION)
        seen = content_hash(project(obj, live))
        with self._lock:
            if live_hash == digest and self._applied.get(ref) == (digest, seen):
                self._drifted.pop(ref, None)  # e.g. a drifted field edited back by hand
                return Change(ref, "unchanged")
            drifted = self._drifted.get(ref)
        if drifted is not None and drifted[:2] == (digest, seen):
            return _drift_change(ref, drifted[2])
        return None

    def _check(self, ref: ObjectRef, obj: Obj, live: Obj, *, fresh: bool,
               ) -> Change | _Stale | None:
        """Whether `live` (ours) needs the apply: a Change (unchanged, or drifted in report
        mode), None (apply), or STALE when `live` is a cached copy that may lag behind.

        Without a record of this object (first sight) or in report mode, one dry-run
        apply tells what applying would make of the fields we set; no write follows
        when they already hold those values."""
        known = self._known(ref, obj, live)
        if known is not None:
            return known
        digest = obj["metadata"]["annotations"][HASH_ANNOTATION]
        live_hash = (live["metadata"].get("annotations") or {}).get(HASH_ANNOTATION)
        with self._lock:
            recorded = self._applied.get(ref)
        report = self.drift == "report" and recorded is not None and recorded[0] == digest
        if live_hash != digest and not report:
            # A new render (or the cache has not seen our last apply yet): apply.
            return None if fresh else STALE
        if self.drift == "correct" and recorded is not None:
            # A field we set changed since we applied or checked it: apply (unless the
            # cache still holds a copy from before our last write).
            return None if fresh else STALE
        dry = self.kube.apply(obj, field_manager=FIELD_MANAGER, force=True, dry_run=True)
        want, have = project(obj, dry), project(obj, live)
        if want == have:
            with self._lock:
                self._applied[ref] = (digest, content_hash(have))
                self._drifted.pop(ref, None)
            return Change(ref, "unchanged")
        rv = live["metadata"].get("resourceVersion")
        if not fresh and dry["metadata"].get("resourceVersion") != rv:
            return STALE  # the dry-run saw a newer object than the cached copy
        if self.drift == "correct":
            return None
        paths = tuple(differing_paths(have, want))
        with self._lock:
            self._drifted[ref] = (digest, content_hash(have), paths)
        return _drift_change(ref, paths)

    def _apply_one(self, obj: Obj, owner_labels: Mapping[str, str], lookup: LiveLookup,
                   absent: AbsentCheck | None) -> Change:
        obj = with_hash(obj)
        ref = ObjectRef.of(obj)
        live: Obj | None = None
        try:
            live = lookup(ref)
            fresh = lookup == self._get_live  # bound methods: equal, never identical
            if not fresh:
                verdict: Change | _Stale | None = STALE
                if live is not None and is_ours(live, owner_labels):
                    verdict = self._check(ref, obj, live, fresh=False)
                elif live is None and absent is not None and not self._seen(ref) and absent(
                        ref):
                    created = self._create(ref, obj)
                    if created is not None:
                        return created
                if isinstance(verdict, Change):
                    return verdict
                if verdict is STALE:
                    live = self._get_live(ref)  # the cache may lag behind our last write
                    fresh = True
            if fresh and live is not None:
                if not is_ours(live, owner_labels):
                    managers = sorted({m.get("manager", "?") for m in
                                       live["metadata"].get("managedFields") or []})
                    return Change(ref, "conflict", f"{ref} exists and is not managed by this "
                                  f"cache (managers: {', '.join(managers) or 'unknown'})")
                verdict = self._check(ref, obj, live, fresh=True)
                if isinstance(verdict, Change):
                    return verdict
            result = self.kube.apply(obj, field_manager=FIELD_MANAGER, force=True)
        except ApiError as err:
            message = err.message
            if live is not None and err.status == 422 and _immutable(message):
                return self._recreate(ref, live, message)
            return Change(ref, "failed", f"{ref}: {message}")
        self._remember(ref, obj, result)
        return Change(ref, "created" if live is None else "configured")

    def _create(self, ref: ObjectRef, obj: Obj) -> Change | None:
        """Apply an object believed absent, without a GET first: create-only.

        The resourceVersion "1" precondition (etcd's first revision, which no object of
        ours can carry) makes the server answer 409 without writing if the object exists
        after all: someone else's is never merged into or adopted, even where no field
        conflicts. On create the server ignores it. None sends the caller down the GET
        path, which reports what is there.
        """
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "1"}}
        try:
            result = self.kube.apply(body, field_manager=FIELD_MANAGER, force=False)
        except ApiError as err:
            if err.status == 409:
                return None
            raise
        self._remember(ref, obj, result)
        return Change(ref, "created")

    def _remember(self, ref: ObjectRef, obj: Obj, result: Obj) -> None:
        """The hash we applied and a digest of what the server made of the fields we set:
        a digest, not the projection itself, keeps memory flat at thousands of objects."""
        digest = obj["metadata"]["annotations"][HASH_ANNOTATION]
        seen = content_hash(project(obj, result))
        with self._lock:
            self._applied[ref] = (digest, seen)
            self._drifted.pop(ref, None)
            rv = result["metadata"].get("resourceVersion")
            if rv is not None:
                self._written_rv[ref] = rv

    def _recreate(self, ref: ObjectRef, live: Obj, message: str) -> Change:
        """An immutable field changed (e.g. a StatefulSet's volumeClaimTemplates): delete
        the object, orphaning its Pods so the new one adopts them without downtime, and
        report a failure so the caller retries and creates it afresh."""
        res = resource_for(live)
        try:
            self.kube.delete(res, ref.namespace or None, ref.name, live["metadata"].get("uid"),
                             propagation="Orphan")
        except ApiError as err:
            return Change(ref, "failed", f"recreate {ref}: {err.message}")
        self.forget([ref])
        return Change(ref, "failed", f"{ref}: recreating, an immutable field changed ({message})")

    def _delete_one(self, live: Obj) -> Change:
        ref = ObjectRef.of(live)
        res = resource_for(live)
        try:
            self.kube.delete(res, ref.namespace or None, ref.name, live["metadata"].get("uid"))
        except ApiError as err:
            return Change(ref, "failed", f"delete {ref}: {err.message}")
        self.forget([ref])
        return Change(ref, "deleted")
