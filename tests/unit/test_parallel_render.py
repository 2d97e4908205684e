"""sync.render.parallel: helper processes render exactly what this process would."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from constructs_lib import OrasCache, OrasCacheSpec, render
from constructs_lib.render import CACHES_PER_CHART, batches
from sync.render import parallel as parallel_render
from sync.render.parallel import _Chunks, render_parallel

# Helpers start from 16 chunks (800 caches); 4 here keeps the tests fast.
MIN_CHUNKS = 4


@pytest.fixture(autouse=True)
def _fewer_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel_render, "MIN_CHUNKS", MIN_CHUNKS)


def caches(n: int) -> list[OrasCache]:
    return [OrasCache(f"c{i}", "ns", OrasCacheSpec(port=5000 + i)) for i in range(n)]


def children() -> set[int]:
    """By parent pid: /proc/PID/task/PID/children misses those started by other threads."""
    me, out = str(os.getpid()), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = stat.read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        if ppid == me:
            out.add(int(stat.parent.name))
    return out


def test_a_helper_renders_what_this_process_renders() -> None:
    """The helper alone (driven from this thread) takes every chunk, in order."""
    items = caches(3 * CACHES_PER_CHART)
    chunks = _Chunks(batches(items))
    chunks._helper()
    assert [chunks.done[i] for i in range(3)] == [render(c) for c in batches(items)]


def test_render_parallel_is_render_and_leaves_no_process() -> None:
    before = children()
    items = caches(MIN_CHUNKS * CACHES_PER_CHART + 3)
    together = render_parallel(items, workers=1)
    assert [r.cache for r in together] == items
    assert [r.manifests for r in together] == [r.manifests for r in render(items)]
    assert children() <= before


def test_a_failing_helper_costs_nothing_but_time(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(parallel_render.sys, "executable", "/bin/false")
    items = caches(MIN_CHUNKS * CACHES_PER_CHART)
    chunks = _Chunks(batches(items))
    with caplog.at_level(logging.WARNING):
        chunks._helper()
    assert chunks.done == {} and "render helper failed" in caplog.text
    assert [r.manifests for r in render_parallel(items, workers=2)] == [
        r.manifests for r in render(items)]


def test_a_render_error_in_a_helper_is_raised_here(caplog: pytest.LogCaptureFixture) -> None:
    """The helper reports and stops; the chunk is rendered again here, with its error."""
    broken = OrasCache("broken", "ns", None)  # type: ignore[arg-type]
    items = [*caches(CACHES_PER_CHART), broken, *caches(2 * CACHES_PER_CHART)]
    chunks = _Chunks(batches(items))
    with caplog.at_level(logging.WARNING):
        chunks._helper()
    assert list(chunks.done) == [0]
    assert "render helper failed on a chunk: AttributeError" in caplog.text
    before = children()
    with pytest.raises(AttributeError):
        render_parallel(items, workers=1)
    assert children() <= before


def test_a_stuck_helper_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    stuck = tmp_path / "python"
    stuck.write_text("#!/bin/sh\nexec sleep 600\n")
    stuck.chmod(0o755)
    monkeypatch.setattr(parallel_render.sys, "executable", str(stuck))
    monkeypatch.setattr(parallel_render, "STUCK_TIMEOUT", 1.0)
    items = caches(MIN_CHUNKS * CACHES_PER_CHART)
    before = children()
    with caplog.at_level(logging.WARNING):
        assert [r.manifests for r in render_parallel(items, workers=1)] == [
            r.manifests for r in render(items)]
    assert "render helper stuck for 1 s: killed" in caplog.text
    assert children() <= before


def test_small_renders_stay_in_this_process(monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(parallel_render.sys, "executable", "/nonexistent")
    items = caches((MIN_CHUNKS - 1) * CACHES_PER_CHART)
    with caplog.at_level(logging.WARNING):
        assert len(render_parallel(items, workers=3)) == len(items)
        assert len(render_parallel(caches(MIN_CHUNKS * CACHES_PER_CHART), workers=0)) == (
            MIN_CHUNKS * CACHES_PER_CHART)
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):  # the check above can fail: helpers are tried
        render_parallel(caches(MIN_CHUNKS * CACHES_PER_CHART), workers=1)
    assert "render helper not started" in caplog.text


def test_helpers_count_shapes_not_caches(monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Caches that differ only in name share one construct render: no helper for them."""
    monkeypatch.setattr(parallel_render.sys, "executable", "/nonexistent")
    items = [OrasCache(f"c{i}", "ns", OrasCacheSpec()) for i in range(
        MIN_CHUNKS * CACHES_PER_CHART)]
    with caplog.at_level(logging.WARNING):
        rendered = render_parallel(items, workers=1)
    assert caplog.text == ""
    assert [r.manifests for r in rendered] == [r.manifests for r in render(items)]
