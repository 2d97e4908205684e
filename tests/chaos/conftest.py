"""`make chaos`: the long fault-injection runs (docs/reliability.md), not part of `make test`.

They use the integration tests' cluster and fixtures, and run only with ORAS_CACHE_CHAOS=1
(set by `make chaos`), so a bare `pytest` never starts them by accident. Each test adds a
row (fault, what the service did, time to converge, writes, lost) to the table printed at
the end, and to the JSON lines file $ORAS_CACHE_CHAOS_REPORT when set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import api_client, cluster, kube, namespace  # noqa: F401

HERE = Path(__file__).resolve().parent
ROWS: list[dict[str, Any]] = []
Record = Callable[..., None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("ORAS_CACHE_CHAOS") == "1":
        return
    skip = pytest.mark.skip(reason="chaos runs only with ORAS_CACHE_CHAOS=1 (make chaos)")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture
def record() -> Record:
    """record(fault=..., did=..., converge_s=..., writes=..., lost=..., **extra)."""

    def add(**row: Any) -> None:
        ROWS.append(row)
        target = os.environ.get("ORAS_CACHE_CHAOS_REPORT")
        if target:
            with open(target, "a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")

    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    terminalreporter.section("chaos results")
    terminalreporter.write_line("| fault | what the service did | converge (s) | writes | lost |")
    terminalreporter.write_line("|---|---|---|---|---|")
    for r in ROWS:
        terminalreporter.write_line(
            f"| {r['fault']} | {r['did']} | {r['converge_s']:.1f} | {r['writes']} | "
            f"{r['lost']} |")
