"""A work queue keyed by namespace/name, after client-go's workqueue.

Duplicate events for a key coalesce; a key is processed by one worker at a time (an
event arriving meanwhile marks it dirty and it runs again afterwards); failures retry
with per-key exponential backoff; one failing key never delays the others.
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass, field


@dataclass
class WorkQueue:
    base_delay: float = 0.05
    max_delay: float = 300.0
    _queue: list[str] = field(default_factory=list)
    _queued: set[str] = field(default_factory=set)
    _processing: set[str] = field(default_factory=set)
    _dirty: set[str] = field(default_factory=set)
    _delayed: list[tuple[float, str]] = field(default_factory=list)
    _failures: dict[str, int] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _shutdown: bool = False

    def add(self, key: str) -> None:
        with self._cond:
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay, key))
            self._cond.notify()

    def retry(self, key: str) -> float:
        """Requeue a failed key with exponential backoff; returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay: float = min(self.base_delay * 2.0**failures, self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """The key succeeded: its next failure starts the backoff afresh."""
        with self._cond:
            self._failures.pop(key, None)

    def get_batch(self, limit: int, timeout: float) -> list[str]:
        """Up to `limit` keys, waiting at most `timeout` for the first one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_due()
                if self._queue or self._shutdown:
                    break
                wait = deadline - time.monotonic()
                if self._delayed:
                    wait = min(wait, self._delayed[0][0] - time.monotonic())
                if deadline <= time.monotonic():
                    return []
                self._cond.wait(max(wait, 0.001))
            batch = self._queue[:limit]
            del self._queue[:limit]
            for key in batch:
                self._queued.discard(key)
                self._processing.add(key)
            return batch

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._queue.append(key)
                    self._cond.notify()

    def depth(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._delayed)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, key = heapq.heappop(self._delayed)
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
