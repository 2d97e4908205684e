"""Shared test set-up: jsii must run on the supported Node that `make` installs; the Go
programs that run Argo CD's health checks and kstatus are built before tests use them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.harness.gitops_checks import GitopsChecks

REPO = Path(__file__).resolve().parent.parent
_NODE = REPO / ".tools" / "node_modules" / ".bin" / "node"
if "JSII_NODE" not in os.environ and _NODE.exists():
    os.environ["JSII_NODE"] = str(_NODE)

from sync.render import node_runtime  # noqa: E402

# As the CLI does: before any test module imports cdk8s (through constructs_lib).
node_runtime.prepare()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build Argo CD's health check runner and kstatus (tests/harness/gitops_checks.py) before
    any test runs, when a selected test uses them: outside every test's timeout."""
    if not any("gitops_checks" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    from tests.harness.gitops_checks import ensure_gitops_checks  # noqa: PLC0415

    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        ensure_gitops_checks()


@pytest.fixture(scope="session")
def gitops_checks() -> GitopsChecks:
    """The built argocd-health and kstatus programs."""
    from tests.harness.gitops_checks import ensure_gitops_checks  # noqa: PLC0415

    return ensure_gitops_checks()
