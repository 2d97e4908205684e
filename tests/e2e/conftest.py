"""End-to-end fixtures: the local control plane plus a real node (kubelet + containerd).

The node needs root, Debian's containerd/runc/CNI packages (installed by the set-up when
missing) and the kubelet built from the Go module proxy. When it cannot start, every
test here is skipped with the reason. One node per machine at a time.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.harness import LocalCluster, ensure_binaries
from tests.harness.build import BuildError
from tests.harness.flux import ensure_flux
from tests.harness.helm_tool import ensure_helm
from tests.harness.node import Node, NodeError, ensure_all
from tests.integration.conftest import repo_crds
from tests.integration.syncproc import SyncProcess

HERE = Path(__file__).resolve().parent
_SETUP_ERROR: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs a real node (kubelet + containerd), as root")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build/install everything (minutes when cold) outside every test's timeout."""
    if not any(HERE in item.path.parents for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        try:
            ensure_binaries()
            ensure_all()
            if any("flux" in getattr(item, "fixturenames", ()) for item in session.items):
                ensure_flux()
            if any("helm" in getattr(item, "fixturenames", ()) for item in session.items):
                ensure_helm()
        except (BuildError, NodeError, OSError) as err:
            _SETUP_ERROR.append(f"node set-up failed: {err}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(crds=repo_crds(), binaries=ensure_binaries()) as local:
        yield local


@pytest.fixture(scope="session")
def node(cluster: LocalCluster) -> Iterator[Node]:
    if _SETUP_ERROR:
        pytest.skip(_SETUP_ERROR[0])
    began = time.monotonic()
    try:
        started = Node(cluster).start()
    except NodeError as err:
        pytest.skip(f"the test node cannot start here: {err}")
    print(f"\n[node] ready in {time.monotonic() - began:.1f} s: {started.timings}")
    yield started
    started.stop()


@pytest.fixture
def api_client(cluster: LocalCluster, node: Node) -> Iterator[ApiClient]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: ApiClient) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e-{slug}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The ServiceAccount controller adds "default" asynchronously; Pods need it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException:
            time.sleep(0.1)
    yield name
    with contextlib.suppress(ApiException):
        core.delete_namespace(name, grace_period_seconds=0)


@pytest.fixture
def sync(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[SyncProcess]:
    """``orascache sync`` (cluster source) for the test's namespace, as a real process."""
    proc = SyncProcess(cluster.kubeconfig, ["--namespace", namespace, "--log-format", "text"],
                       tmp_path / "sync.log").start().wait_ready()
    yield proc
    proc.stop()
