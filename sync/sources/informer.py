"""List + watch into an in-memory store, with the kubernetes client's Watch.

Resumes from the last resourceVersion (bookmarks keep it fresh), relists on 410 Gone,
and backs off on other errors (e.g. an API server restart) without losing events: every
relist replaces the store and re-announces every key, so nothing is missed.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections.abc import Callable, Collection

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from sync.apply.kube import ApiError, Kube, Obj, Resource, Unreachable

log = logging.getLogger(__name__)

# Retry a failed list or watch after RETRY_FIRST seconds, doubling up to RETRY_MAX; ask the
# server to end each watch after WATCH_TIMEOUT seconds (it resumes from the last version).
RETRY_FIRST, RETRY_MAX = 0.2, 10.0
WATCH_TIMEOUT = 300
# Objects per list request, as client-go's pager: a list of thousands of objects is
# never in memory whole, as JSON text and decoded, at once.
LIST_PAGE = 500
# The fastest level already takes a child's compact JSON to less than half (keys repeat),
# for about 10 microseconds more per read; a higher level would cost each event more.
ZLIB_LEVEL = 1

OnEvent = Callable[[str, Obj], None]  # (event type, object)
Transform = Callable[[Obj], Obj]  # what the store keeps of each object (client-go's)


def keep_status(fields: Collection[str]) -> Transform:
    """A transform keeping only these status fields (e.g. the few that Ready reads):
    metadata and spec stay whole, as the applier compares the fields it set with them."""
    def transform(obj: Obj) -> Obj:
        status = obj.get("status")
        if status is None:
            return obj
        kept = {k: v for k, v in status.items() if k in fields}
        return {k: v for k, v in obj.items() if k != "status"} | ({"status": kept} if kept
                                                                    else {})
    return transform


def key_of(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class Informer:
    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        index_label: str | None = None,
        on_event: OnEvent | None = None,
        watch_timeout: int = WATCH_TIMEOUT,
        transform: Transform | None = None,
        compact: bool = False,
    ) -> None:
        """`transform` shapes each object before it is stored and announced; `compact`
        stores each as zlib-compressed compact JSON, decoded on every read: about a tenth of the
        memory of the dictionaries, for a few tens of microseconds per read."""
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.on_event = on_event or (lambda _type, _obj: None)
        self._list_fn = kube.list_function(resource, namespace)
        self.watch_timeout = watch_timeout
        self.synced = threading.Event()
        self.transform = transform
        self.compact = compact
        self._store: dict[str, Obj | bytes] = {}
        # "namespace/value of `index_label`" -> sorted keys: a cache's children without a
        # scan. Tuples, not sets: a cache has one to three children (48 bytes against 216).
        self.index_label = index_label
        self._index: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None

    # ----- store -------------------------------------------------------------------------
    def get(self, key: str) -> Obj | None:
        with self._lock:
            stored = self._store.get(key)
        return None if stored is None else _decoded(stored)

    def items(self) -> list[Obj]:
        with self._lock:
            stored = list(self._store.values())
        return [_decoded(s) for s in stored]

    def by_index(self, namespace: str, value: str) -> list[Obj]:
        with self._lock:
            keys = self._index.get(f"{namespace}/{value}", ())
            stored = [self._store[k] for k in keys]
        return [_decoded(s) for s in stored]

    def _shaped(self, obj: Obj) -> Obj:
        obj = _with_kind(obj, self.resource)
        return obj if self.transform is None else self.transform(obj)

    def _index_key(self, obj: Obj) -> str | None:
        value = (obj["metadata"].get("labels") or {}).get(self.index_label or "")
        return None if value is None else f"{obj['metadata'].get('namespace', '')}/{value}"

    def _stored(self, obj: Obj) -> Obj | bytes:
        if not self.compact:
            return obj
        return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), ZLIB_LEVEL)

    def _put(self, key: str, obj: Obj | None) -> None:
        """Replace (or, with None, remove) one stored object and its index entry."""
        old = self._store.pop(key, None)
        old_index = None
        if old is not None and self.index_label is not None:
            old_index = self._index_key(_decoded(old))
        if old_index is not None:
            kept = tuple(k for k in self._index.get(old_index, ()) if k != key)
            if kept:
                self._index[old_index] = kept
            else:
                self._index.pop(old_index, None)
        if obj is not None:
            self._store[key] = self._stored(obj)
            new_index = self._index_key(obj)
            if new_index is not None:
                self._index[new_index] = tuple(sorted({*self._index.get(new_index, ()), key}))

    # ----- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        name = f"informer-{self.resource.plural}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]

    def list_now(self) -> str:
        """List (by pages), replace the store, announce every object; returns the
        resourceVersion of the list."""
        fresh: dict[str, tuple[Obj | bytes, str | None]] = {}  # key -> (stored, index)
        token: str | None = None
        while True:
            listing = self._list_fn(label_selector=self.label_selector, limit=LIST_PAGE,
                                    **{"continue": token})
            for item in listing.get("items") or []:
                obj = self._shaped(item)
                fresh[key_of(obj)] = (self._stored(obj), self._index_key(obj))
            token = listing["metadata"].get("continue")
            if not token:
                break
        with self._lock:
            gone = [_decoded(o) for k, o in self._store.items() if k not in fresh]
            self._store = {key: stored for key, (stored, _) in fresh.items()}
            self._index = {}
            for key, (_, index) in fresh.items():
                if index is not None:
                    self._index[index] = (*self._index.get(index, ()), key)
            for index, keys in self._index.items():
                self._index[index] = tuple(sorted(keys))
        for obj in gone:
            self.on_event("DELETED", obj)
        for stored, _ in fresh.values():
            self.on_event("ADDED", _decoded(stored))
        self.synced.set()
        rv: str = listing["metadata"]["resourceVersion"]
        return rv

    def _run(self) -> None:
        delay = RETRY_FIRST
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self.list_now()
                rv = self._watch_from(rv)
                delay = RETRY_FIRST
            # ApiError from the list or the watch request; ApiException from an ERROR
            # event inside the stream (the client's watch raises it, e.g. 410 Gone).
            except (ApiError, ApiException) as err:
                if err.status == 410:
                    log.info("watch expired, relisting", extra={"kind": self.resource.kind})
                    rv = None
                    continue
                log.warning("watch failed: %s %s; retrying in %.1fs", err.status, err.reason,
                            delay, extra={"kind": self.resource.kind})
            except (Unreachable, HTTPError, OSError) as err:
                log.warning("watch connection failed: %s; retrying in %.1fs", err, delay,
                            extra={"kind": self.resource.kind})
            except Exception:  # never let the informer thread die: relist from scratch
                log.exception("watch crashed; relisting in %.1fs", delay,
                              extra={"kind": self.resource.kind})
                rv = None
            self._stop.wait(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _watch_from(self, rv: str) -> str | None:
        """Stream events until the server ends the watch; returns where to resume."""
        # return_type "object": raw dicts, as for custom objects (deserialize=False breaks
        # the client's handling of ERROR events).
        self._watch = watch.Watch(return_type="object")  # type: ignore[no-untyped-call]
        stream = self._watch.stream(  # type: ignore[no-untyped-call]
            self._list_fn,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            label_selector=self.label_selector,
        )
        for event in stream:
            if self._stop.is_set():
                break
            kind, obj = event["type"], event["object"]
            rv = obj.get("metadata", {}).get("resourceVersion") or rv
            if kind == "BOOKMARK":
                continue
            obj = self._shaped(obj)
            key = key_of(obj)
            with self._lock:
                self._put(key, None if kind == "DELETED" else obj)
            self.on_event(kind, obj)
        # Watch.stream retries a 410 once by itself and then ends with resource_version
        # reset; resume from what it saw last.
        seen: str | None = self._watch.resource_version
        return seen or rv


def _decoded(stored: Obj | bytes) -> Obj:
    if isinstance(stored, bytes):
        obj: Obj = json.loads(zlib.decompress(stored))
        return obj
    return stored


def _with_kind(obj: Obj, resource: Resource) -> Obj:
    """List items carry no apiVersion/kind; the applier and prune need them.

    managedFields are dropped from the store: about half of each object's memory, and
    nothing reads them from the watch cache (conflicts are reported from a fresh GET).
    """
    if "kind" not in obj:
        obj = {"apiVersion": resource.api_version, "kind": resource.kind, **obj}
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


class InformerSet:
    """Informers of one kind across several namespaces, read as one store."""

    def __init__(self, informers: list[Informer]) -> None:
        self.informers = informers

    def get(self, key: str) -> Obj | None:
        namespace = key.split("/", 1)[0]
        for informer in self.informers:
            if informer.namespace in (None, namespace):
                found = informer.get(key)
                if found is not None:
                    return found
        return None

    def items(self) -> list[Obj]:
        return [o for i in self.informers for o in i.items()]

    def by_index(self, namespace: str, value: str) -> list[Obj]:
        return [o for i in self.informers for o in i.by_index(namespace, value)]

    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

