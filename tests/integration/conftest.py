"""Fixtures for tests against a real local control plane (see tests/harness).

One cluster per test session, i.e. one per xdist worker (each worker is its own
process with its own ports and temp dir). The repo's CRDs are installed before
kube-controller-manager starts, so garbage collection knows their kinds at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from sync.apply.kube import Kube
from tests.harness import LocalCluster, ensure_binaries
from tests.harness.flux import ensure_flux
from tests.harness.helm_tool import ensure_helm
from tests.harness.oras_tools import LocalRegistry, OrasTools, ensure_oras_tools
from tests.harness.ports import free_ports
from tests.harness.prometheus_tools import ensure_prometheus_tools
from tests.integration.syncproc import SyncProcess, wait_for
from tests.integration.webhookproc import WebhookConfig, bundle, local_webhook_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CRD_DIR = REPO / "crds"

SaKubeconfig = Callable[[str, str], Path]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs the control plane: mark it `integration`."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries (minutes when cold) before any test runs, when integration tests
    are selected: outside every test's pytest-timeout, with the progress visible."""
    if not any(HERE in item.path.parents for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        ensure_binaries()
        if any(item.path.name == "test_monitoring.py" for item in session.items):
            ensure_prometheus_tools()  # promtool: about 13 minutes when cold
        if any("flux" in getattr(item, "fixturenames", ()) for item in session.items):
            ensure_flux()
        if any("helm" in getattr(item, "fixturenames", ()) for item in session.items):
            ensure_helm()  # about 4 minutes when cold


def _yaml_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def repo_crds() -> list[Path]:
    """``crds/*.yaml``, or ``ORAS_CACHE_TEST_CRDS`` (files/dirs joined by ``:``; empty: none)."""
    override = os.environ.get("ORAS_CACHE_TEST_CRDS")
    if override is None:
        return _yaml_files(CRD_DIR) if CRD_DIR.is_dir() else []
    paths = [Path(p) for p in override.split(os.pathsep) if p]
    return [f for p in paths for f in (_yaml_files(p) if p.is_dir() else [p])]


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """The session's cluster (binaries were built at collection time)."""
    with LocalCluster(crds=repo_crds(), binaries=ensure_binaries()) as local:
        yield local


@pytest.fixture
def api_client(cluster: LocalCluster) -> Iterator[ApiClient]:
    """An admin ApiClient, closed after the test."""
    with cluster.api_client() as api:
        yield api


@pytest.fixture
def kube(api_client: ApiClient) -> Kube:
    """The sync service's own JSON client, on the test cluster."""
    return Kube(api_client)


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: ApiClient) -> Iterator[str]:
    """A fresh namespace named after the test, deleted afterwards (deletion is async)."""
    name = _namespace_name(request.node.name)
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as err:
        if err.status != 404:
            raise


@pytest.fixture
def sa_kubeconfig(cluster: LocalCluster, api_client: ApiClient) -> SaKubeconfig:
    """``sa_kubeconfig(namespace, name) -> Path``: act as that ServiceAccount (made if missing)."""

    def make(namespace: str, name: str) -> Path:
        core = client.CoreV1Api(api_client)
        account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        try:
            core.create_namespaced_service_account(namespace, account)
        except ApiException as err:
            if err.status != 409:
                raise
        return cluster.kubeconfig_for_service_account(namespace, name)

    return make


@pytest.fixture
def restart_apiserver(cluster: LocalCluster) -> Callable[[], float]:
    """``restart_apiserver() -> seconds``: SIGTERM kube-apiserver, start it on the same port."""
    return cluster.restart_apiserver


@pytest.fixture
def webhook_config() -> WebhookConfig:
    """How `webhook` configures admission; a test module overrides it to try another."""
    return local_webhook_config


@pytest.fixture
def webhook(cluster: LocalCluster, api_client: ApiClient, namespace: str, tmp_path: Path,
            webhook_config: WebhookConfig) -> Iterator[Callable[..., SyncProcess]]:
    """Starts `orascache sync` with the webhook; the configuration points at it."""
    port = free_ports(1)[0]
    name = f"orascache-{namespace}"
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.create_mutating_webhook_configuration(webhook_config(name, port, namespace))
    procs: list[SyncProcess] = []

    def start(*extra: str) -> SyncProcess:
        proc = SyncProcess(cluster.kubeconfig, [
            "--namespace", namespace, "--log-format", "text", "--webhook-addr",
            f"127.0.0.1:{port}", "--webhook-host", "127.0.0.1", "--webhook-config", name,
            # No Service in front of it here: nothing to drain (each stop would wait 5 s).
            "--webhook-drain", "0", *extra], tmp_path / f"sync-{len(procs)}.log")
        procs.append(proc.start())
        proc.wait_ready()
        wait_for(lambda: bundle(api_client, name), what="caBundle published")
        return proc

    yield start
    for proc in procs:
        if not proc.exited():
            proc.stop()
    admission.delete_mutating_webhook_configuration(name)


@pytest.fixture(scope="module")
def tools() -> OrasTools:
    """The registry (distribution) and the oras CLI, built from the Go proxy (cached)."""
    return ensure_oras_tools()


@pytest.fixture
def registry(tools: OrasTools) -> Iterator[LocalRegistry]:
    """A fresh local registry on 127.0.0.1 for one test."""
    with LocalRegistry(tools.registry) as reg:
        yield reg
