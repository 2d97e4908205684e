"""Upstream-style annotated Jobs, wired by the admission webhook, really run on the node.

The sync service serves the mutating webhook on 127.0.0.1 (the real kube-apiserver calls
it through a ``url`` client config); Job 1 pushes an artifact, Job 2 pulls it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib import annotations, install
from tests.e2e.test_node import run_pod
from tests.e2e.test_registry import create_ready_cache
from tests.harness import LocalCluster
from tests.harness.images import BUSYBOX_IMAGE, ORAS_IMAGE
from tests.harness.ports import free_ports
from tests.integration.syncproc import SyncProcess, wait_for
from tests.original_examples import CONSUMER_POD, PRODUCER_PODS, docs

JOB_TIMEOUT_S = 90.0


@pytest.fixture
def webhook_sync(cluster: LocalCluster, api_client: ApiClient, namespace: str,
                 tmp_path: Path) -> Iterator[SyncProcess]:
    """`orascache sync` serving the webhook; the configuration points at it."""
    port = free_ports(1)[0]
    name = f"orascache-{namespace}"
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.create_mutating_webhook_configuration(install.webhook_configuration(
        name, {"url": f"https://127.0.0.1:{port}/mutate"},
        {"matchLabels": {"kubernetes.io/metadata.name": namespace}}))

    def ca_bundle() -> bool:
        mwc = admission.read_mutating_webhook_configuration(name)
        return all(h.client_config.ca_bundle for h in mwc.webhooks)

    proc = SyncProcess(cluster.kubeconfig, [
        "--namespace", namespace, "--log-format", "text", "--webhook-addr",
        f"127.0.0.1:{port}", "--webhook-host", "127.0.0.1", "--webhook-config", name,
    ], tmp_path / "sync.log").start().wait_ready()
    wait_for(ca_bundle, what="caBundle published")
    yield proc
    proc.stop()
    admission.delete_mutating_webhook_configuration(name)


def run_annotated_job(api: ApiClient, ns: str, name: str, script: str,
                      notes: dict[str, str], command: list[str] | None = None,
                      ) -> dict[str, Any]:
    prefix = annotations.PREFIX
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "annotations": {
            f"{prefix}oras-cache": "cache", f"{prefix}oras-container": ORAS_IMAGE,
            **{prefix + k: v for k, v in notes.items()}}},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": BUSYBOX_IMAGE,
                            "command": command or ["sh", "-c", script]}],
        }}},
    }
    client.BatchV1Api(api).create_namespaced_job(ns, job)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
        if pods and pods[0].status.phase in ("Succeeded", "Failed"):
            status: dict[str, Any] = api.sanitize_for_serialization(pods[0])
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {ns}/{name} did not finish in {JOB_TIMEOUT_S}s")


def test_annotated_jobs_push_and_pull_through_the_webhook(
    api_client: ApiClient, namespace: str, webhook_sync: SyncProcess
) -> None:
    create_ready_cache(api_client, namespace)
    first = run_annotated_job(api_client, namespace, "producer",
                              "echo from-the-producer > /tmp/out/data.txt",
                              {"output-uri": "e2e/annotated:v1",
                               "output-path": "/tmp/out/data.txt"})
    assert first["status"]["phase"] == "Succeeded", first["status"]
    containers = [c["name"] for c in first["spec"]["containers"]]
    assert "oras-push" in containers  # wired by the webhook
    second = run_annotated_job(api_client, namespace, "consumer",
                               "grep -q from-the-producer /tmp/in/data.txt",
                               {"input-uri": "e2e/annotated:v1", "input-path": "/tmp/in"})
    assert second["status"]["phase"] == "Succeeded", second["status"]
    assert second["spec"]["initContainers"][0]["name"] == "oras-pull"


def test_upstream_relative_paths_without_working_dir_run_end_to_end(
    api_client: ApiClient, namespace: str, webhook_sync: SyncProcess
) -> None:
    """The original operator's breakfast Job (output-path = output-pipe = pancakes.txt, no
    workingDir), then a consumer with no input-path: both resolved in busybox's WORKDIR."""
    endpoint = create_ready_cache(api_client, namespace)
    first = run_annotated_job(api_client, namespace, "breakfast", "", {
        "output-uri": "dinosaur/hello-world:pancakes", "output-path": "pancakes.txt",
        "output-pipe": "pancakes.txt", "debug": "true"}, command=["echo", "blueberry"])
    assert first["status"]["phase"] == "Succeeded", first["status"]
    assert "workingDir" not in first["spec"]["containers"][0]
    check = run_pod(api_client, namespace, "pancakes-pushed",
                    f"oras pull --plain-http {endpoint}/dinosaur/hello-world:pancakes "
                    "-o /tmp/got && grep -qx blueberry /tmp/got/pancakes.txt", image=ORAS_IMAGE)
    assert check.exit_code == 0, check.message
    second = run_annotated_job(api_client, namespace, "eat", "grep -qx blueberry pancakes.txt",
                               {"input-uri": "dinosaur/hello-world:pancakes"})
    assert second["status"]["phase"] == "Succeeded", second["status"]


def _log(api: ApiClient, ns: str, pod: str, container: str) -> str:
    try:
        return str(client.CoreV1Api(api).read_namespaced_pod_log(pod, ns, container=container))
    except client.ApiException:
        return ""


def _status(api: ApiClient, ns: str, pod: str, container: str) -> Any:
    statuses = client.CoreV1Api(api).read_namespaced_pod(pod, ns).status.container_statuses
    return next(s for s in statuses or [] if s.name == container)


def test_original_multiple_hello_world_with_restart_policy_always(
    api_client: ApiClient, namespace: str, webhook_sync: SyncProcess
) -> None:
    """Two producers push (their apps restart, as the original's README says they do; the
    push containers keep running), then the consumer pulls both artifacts."""
    create_ready_cache(api_client, namespace, "orascache-sample")
    core = client.CoreV1Api(api_client)
    for pod in docs(PRODUCER_PODS):
        stored = core.create_namespaced_pod(namespace, pod)
        assert stored.spec.restart_policy == "Always"
    for name in ("hello-world-1", "hello-world-2"):
        wait_for(lambda n=name: "oras-push: done" in _log(api_client, namespace, n, "oras-push"),
                 timeout=JOB_TIMEOUT_S, interval=0.5, what=f"{name} pushed")
    # The app ran at least twice (restarted after exiting 0); the push container never did.
    for name in ("hello-world-1", "hello-world-2"):
        wait_for(lambda n=name: _status(api_client, namespace, n, "my-container").restart_count,
                 timeout=JOB_TIMEOUT_S, interval=0.5, what=f"{name}'s app restarted")
        push = _status(api_client, namespace, name, "oras-push")
        assert push.restart_count == 0 and push.state.running, push

    (consumer,) = docs(CONSUMER_POD)
    core.create_namespaced_pod(namespace, consumer)
    wait_for(lambda: "hello-world-2.txt" in _log(api_client, namespace, "hello-world-3",
                                                 "my-container"),
             timeout=JOB_TIMEOUT_S, interval=0.5, what="the consumer's log")
    log = _log(api_client, namespace, "hello-world-3", "my-container")
    assert "hello-world-1.txt" in log and "hello-world-2.txt" in log, log
    pulled = _log(api_client, namespace, "hello-world-3", "oras-pull")
    assert "dinosaur/hello-world:one" in pulled and "dinosaur/hello-world:two" in pulled
