"""Kubernetes Events about an OrasCache (core/v1, what `kubectl describe` shows)."""

from __future__ import annotations

import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from sync.apply.kube import RESOURCES, ApiError, Kube, Obj
from sync.report.status import now

log = logging.getLogger(__name__)
EVENTS = RESOURCES[("v1", "Event")]
COMPONENT = "orascache"
# The API server keeps at most this much of an Event message (events.k8s.io validation).
MAX_EVENT_MESSAGE = 1024


class EventRecorder:
    """Events are written in the background: a reconcile never waits for one."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.host = os.environ.get("POD_NAME") or os.uname().nodename
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="events")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def emit(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        log.info("event %s %s/%s: %s", reason, obj["metadata"].get("namespace"),
                 obj["metadata"]["name"], message)
        self._pool.submit(self._write, obj, type_, reason, message)

    def _write(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Best effort: an event that cannot be written is logged, never fatal."""
        try:
            self.kube.create(EVENTS, obj["metadata"]["namespace"],
                             self.build(obj, type_, reason, message))
        except ApiError as err:
            log.warning("could not record event: %s", err.message)

    def build(self, obj: Obj, type_: str, reason: str, message: str) -> Obj:
        meta = obj["metadata"]
        stamp = now()
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "type": type_,
            "reason": reason,
            "message": message[:MAX_EVENT_MESSAGE],
            "source": {"component": COMPONENT, "host": self.host},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.host,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
