"""Render a big batch of caches in helper processes as well as in this one.

jsii calls are synchronous round trips: while Node works, Python waits, and the other
way round, so one process and its Node kernel keep about one core busy. A render of
some 800 caches of distinct shapes or more (caches that differ only in name and
namespace share one construct render: see `constructs_lib.render`) also starts helper
processes (`python -m sync.render.parallel`, each with its own kernel) that take chunks
of caches from the same list as this process until none is left, then exit: no memory
is kept between renders. Helpers join when they are ready, so a slow or
failing helper costs at most its own chunks, which this process then renders itself.
The output is the same as `constructs_lib.render`, in the same order; a chunk whose
render fails in a helper is rendered again here, so that errors are raised here.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

from constructs_lib import OrasCache, OrasCacheSpec, RenderedCache, render
from constructs_lib.render import batches, render_each

log = logging.getLogger(__name__)

# Below this many chunks a helper's start-up costs more CPU than it saves (the crossover
# is measured in docs/performance.md, "Design choices").
MIN_CHUNKS = 16
STOP_TIMEOUT = 10.0
# A helper still busy this long after this process ran out of chunks is stuck: killed,
# and its chunk rendered here (a chunk takes a fraction of a second).
STUCK_TIMEOUT = 30.0
_HEADER = struct.Struct("!Q")


def default_workers() -> int:
    """One helper per usable CPU beyond the first, at most 3."""
    return max(0, min(len(os.sched_getaffinity(0)) - 1, 3))


def render_parallel(caches: Iterable[OrasCache], workers: int | None = None,
                    ) -> list[RenderedCache]:
    """`render`, with helpers when its caches of distinct shapes are many."""
    workers = default_workers() if workers is None else workers
    return render(caches, lambda distinct: _render_each(distinct, workers))


def _render_each(caches: list[OrasCache], workers: int) -> list[RenderedCache]:
    chunks = batches(caches)
    if workers < 1 or len(chunks) < MIN_CHUNKS:
        return render_each(caches)
    return list(itertools.chain.from_iterable(_Chunks(chunks).render(workers)))


class _Chunks:
    """Chunks handed out in order to whoever asks first: this thread or a helper."""

    def __init__(self, chunks: list[list[OrasCache]]) -> None:
        self.chunks = chunks
        self.done: dict[int, list[RenderedCache]] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen[bytes]] = []

    def claim(self) -> int | None:
        with self._lock:
            if self._next >= len(self.chunks):
                return None
            self._next += 1
            return self._next - 1

    def render(self, workers: int) -> list[list[RenderedCache]]:
        threads = [threading.Thread(target=self._helper, name=f"render-helper-{n}",
                                    daemon=True) for n in range(workers)]
        for thread in threads:
            thread.start()
        try:
            while (index := self.claim()) is not None:
                self.done[index] = render_each(self.chunks[index])
        finally:
            with self._lock:  # after an error here: hand out nothing more
                self._next = len(self.chunks)
            self._join(threads)
        for index, chunk in enumerate(self.chunks):
            if index not in self.done:  # a helper failed on it: render here, raise here
                self.done[index] = render_each(chunk)
        return [self.done[i] for i in range(len(self.chunks))]

    def _join(self, threads: list[threading.Thread]) -> None:
        deadline = time.monotonic() + STUCK_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            log.warning("render helper stuck for %.0f s: killed", STUCK_TIMEOUT)
            with self._lock:
                for proc in self._procs:
                    proc.kill()
            for thread in threads:
                thread.join()

    def _helper(self) -> None:
        """Drive one helper process; its chunks' results go to `done` (thread-safe:
        distinct keys). Any failure ends the helper: its chunk is rendered here."""
        try:
            proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE)
        except OSError as exc:
            log.warning("render helper not started: %s", exc)
            return
        with self._lock:
            self._procs.append(proc)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if _read(proc.stdout) != "ready":
                return
            while (index := self.claim()) is not None:
                _write(proc.stdin, self.chunks[index])
                result = _read(proc.stdout)
                if not isinstance(result, list):
                    log.warning("render helper failed on a chunk: %s", result)
                    return
                self.done[index] = result
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            log.warning("render helper failed: %s", exc)
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End of input: the helper exits by itself and cleans up (its kernel's files)."""
    assert proc.stdin is not None and proc.stdout is not None
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def _write(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("render helper exited")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("render helper exited")
    return pickle.loads(data)  # our own child process, over its own pipe


def _serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    render_each([OrasCache("warm-up", None, OrasCacheSpec())])  # jsii and cdk8s loaded: ready
    _write(answers, "ready")
    while True:
        try:
            chunk: Sequence[OrasCache] = _read(requests)
        except EOFError:
            return
        try:
            _write(answers, render_each(chunk))
        except Exception as exc:  # reported, then rendered again by the parent
            _write(answers, f"{type(exc).__name__}: {exc}")
            return


if __name__ == "__main__":
    # The protocol owns stdout; whatever else prints goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin.buffer, answers)
