"""The work queue: coalescing, one run per key at a time, backoff, delays."""

from __future__ import annotations

import threading
import time

from sync.sources.workqueue import WorkQueue


def test_queue_coalesces_duplicates() -> None:
    q = WorkQueue()
    for _ in range(5):
        q.add("ns/a")
    q.add("ns/b")
    assert q.get_batch(10, timeout=0.1) == ["ns/a", "ns/b"]
    assert q.get_batch(10, timeout=0.05) == []


def test_key_in_flight_runs_again_after_done_not_concurrently() -> None:
    q = WorkQueue()
    q.add("k")
    assert q.get_batch(1, 0.1) == ["k"]
    q.add("k")  # event while processing
    assert q.get_batch(1, 0.05) == [], "never handed out twice at once"
    q.done("k")
    assert q.get_batch(1, 0.1) == ["k"]


def test_backoff_grows_per_key_and_resets_on_success() -> None:
    q = WorkQueue(base_delay=0.01)
    delays = [q.retry("bad") for _ in range(4)]
    assert delays == [0.01, 0.02, 0.04, 0.08]
    q.add("good")
    assert q.get_batch(10, 0.1)[0] == "good", "a failing key does not delay others"
    q.forget("bad")
    assert q.retry("bad") == 0.01


def test_delayed_key_arrives_after_its_delay() -> None:
    q = WorkQueue()
    q.add_after("later", 0.1)
    started = time.monotonic()
    assert q.get_batch(1, timeout=2) == ["later"]
    assert time.monotonic() - started >= 0.09


def test_shutdown_wakes_waiters() -> None:
    q = WorkQueue()
    got: list[list[str]] = []
    t = threading.Thread(target=lambda: got.append(q.get_batch(1, timeout=10)))
    t.start()
    q.shutdown()
    t.join(2)
    assert got == [[]]
