"""Apply stage: server-side apply of rendered objects, no-op skipping, and pruning.

One applier for every source (cluster watch, git). Each object carries a hash of what
was rendered; when the live object still has that hash and the fields we set still hold
the values the server returned after our last apply, nothing is sent: an idle resync
makes zero write requests. Objects that exist but belong to someone else are never
taken over (a conflict is reported); objects that are ours are applied with force, so a
hand edit of a field we own is corrected (drift correction), as Flux does.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException

from sync.kube import Kube, Obj, api_error_message, resource_for

HASH_ANNOTATION = "cache.converged-computing.github.io/rendered-hash"
FIELD_MANAGER = "orascache"

Action = Literal["created", "configured", "unchanged", "deleted", "conflict", "failed"]
LiveLookup = Callable[["ObjectRef"], Obj | None]
AbsentCheck = Callable[["ObjectRef"], bool]


@dataclass(frozen=True, order=True)
class ObjectRef:
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


def with_hash(obj: Obj) -> Obj:
    """A copy of `obj` annotated with the hash of its own content."""
    digest = content_hash(obj)
    meta = dict(obj["metadata"])
    meta["annotations"] = {**meta.get("annotations", {}), HASH_ANNOTATION: digest}
    return {**obj, "metadata": meta}


def _immutable(message: str) -> bool:
    return "field is immutable" in message or "Forbidden: updates to" in message


def is_ours(live: Mapping[str, Any], owner_labels: Mapping[str, str]) -> bool:
    labels = live.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in owner_labels.items())


class Applier:
    """Server-side apply with one field manager; thread-safe, bounded concurrency."""

    def __init__(self, kube: Kube, *, concurrency: int = 8) -> None:
        self.kube = kube
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="apply")
        self._lock = threading.Lock()
        # ref -> (rendered hash, digest of the live projection right after our last apply)
        self._applied: dict[ObjectRef, tuple[str, str]] = {}
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
                self._written_rv.pop(ref, None)

    def _get_live(self, ref: ObjectRef) -> Obj | None:
        res = resource_for({"apiVersion": ref.api_version, "kind": ref.kind})
        return self.kube.get(res, ref.namespace or None, ref.name)

    def is_echo(self, live: Mapping[str, Any]) -> bool:
        """The watch event of exactly what our last write produced (nothing to react to)."""
        rv = live["metadata"].get("resourceVersion")
        with self._lock:
            return rv is not None and self._written_rv.get(ObjectRef.of(live)) == rv

    def _seen(self, ref: ObjectRef) -> bool:
        """Applied by this process, or seen live by it (`_unchanged` records first
        sightings too): the object existed, so a cache without it is no proof of absence."""
        with self._lock:
            return ref in self._applied

    def _unchanged(self, ref: ObjectRef, obj: Obj, live: Obj) -> bool:
        digest = obj["metadata"]["annotations"][HASH_ANNOTATION]
        live_hash = (live["metadata"].get("annotations") or {}).get(HASH_ANNOTATION)
        if live_hash != digest:
            return False
        seen = content_hash(project(obj, live))
        with self._lock:
            recorded = self._applied.get(ref)
            if recorded is None:
                # First sight since start-up: trust the hash annotation and remember the
                # live values, so later edits to fields we set are detected as drift.
                self._applied[ref] = (digest, seen)
                return True
        return recorded == (digest, seen)

    def _apply_one(self, obj: Obj, owner_labels: Mapping[str, str], lookup: LiveLookup,
                   absent: AbsentCheck | None) -> Change:
        obj = with_hash(obj)
        ref = ObjectRef.of(obj)
        live: Obj | None = None
        try:
            live = lookup(ref)
            if lookup is not self._get_live and (live is None or not self._unchanged(
                    ref, obj, live)):
                if live is None and absent is not None and not self._seen(ref) and absent(ref):
                    created = self._create(ref, obj)
                    if created is not None:
                        return created
                live = self._get_live(ref)  # the cache may lag behind our last write
            if live is not None:
                if not is_ours(live, owner_labels):
                    managers = sorted({m.get("manager", "?") for m in
                                       live["metadata"].get("managedFields") or []})
                    return Change(ref, "conflict", f"{ref} exists and is not managed by this "
                                  f"cache (managers: {', '.join(managers) or 'unknown'})")
                if self._unchanged(ref, obj, live):
                    return Change(ref, "unchanged")
            result = self.kube.apply(obj, field_manager=FIELD_MANAGER, force=True)
        except ApiException as err:
            message = api_error_message(err)
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
        except ApiException as err:
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
        except ApiException as err:
            return Change(ref, "failed", f"recreate {ref}: {api_error_message(err)}")
        self.forget([ref])
        return Change(ref, "failed", f"{ref}: recreating, an immutable field changed ({message})")

    def _delete_one(self, live: Obj) -> Change:
        ref = ObjectRef.of(live)
        res = resource_for(live)
        try:
            self.kube.delete(res, ref.namespace or None, ref.name, live["metadata"].get("uid"))
        except ApiException as err:
            return Change(ref, "failed", f"delete {ref}: {api_error_message(err)}")
        self.forget([ref])
        return Change(ref, "deleted")
