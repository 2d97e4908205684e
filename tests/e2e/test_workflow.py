"""A two-step workflow wired by the workflow construct, against a real in-cluster cache.

Job 1 writes a file that its oras-push container pushes; Job 2's oras-pull init container
pulls it before the app reads it. A failing step keeps the app's exit code and pushes
nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.e2e.test_node import run_pod
from tests.e2e.test_registry import create_ready_cache
from tests.harness.images import BUSYBOX_IMAGE, ORAS_IMAGE
from tests.integration.syncproc import SyncProcess

workflow = pytest.importorskip("constructs_lib.workflow")
JOB_TIMEOUT_S = 90.0


def run_job(api: ApiClient, ns: str, name: str, script: str, **params: Any) -> dict[str, Any]:
    """Run a one-container busybox Job wired for the cache "cache"; return its Pod's status."""
    spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "app", "image": BUSYBOX_IMAGE,
                        "command": ["sh", "-c", script]}],
    }
    wired = workflow.wire_pod_spec(spec, workflow.WorkflowParams(
        cache="cache", namespace=ns, oras_image=ORAS_IMAGE, **params))
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"backoffLimit": 0, "template": {"spec": wired}}}
    client.BatchV1Api(api).create_namespaced_job(ns, job)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
        if pods and pods[0].status.phase in ("Succeeded", "Failed"):
            status: dict[str, Any] = api.sanitize_for_serialization(pods[0].status)
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {ns}/{name} did not finish in {JOB_TIMEOUT_S}s")


def _exit_codes(status: dict[str, Any]) -> dict[str, int]:
    return {c["name"]: c["state"]["terminated"]["exitCode"]
            for c in [*status.get("initContainerStatuses", []), *status["containerStatuses"]]}


def test_two_step_workflow_and_a_failing_step(
    api_client: ApiClient, namespace: str, sync: SyncProcess
) -> None:
    endpoint = create_ready_cache(api_client, namespace)
    began = time.monotonic()
    first = run_job(api_client, namespace, "step1",
                    "echo payload-from-step1 > /tmp/out/result.txt",
                    outputs=(workflow.Output("e2e/result:v1", "/tmp/out/result.txt"),))
    assert first["phase"] == "Succeeded", first
    second = run_job(api_client, namespace, "step2",
                     "grep -q payload-from-step1 /tmp/in/result.txt",
                     inputs=("e2e/result:v1",), input_path="/tmp/in")
    assert second["phase"] == "Succeeded", second
    print(f"two-step workflow done in {time.monotonic() - began:.1f} s")

    failing = run_job(api_client, namespace, "fails",
                      "echo partial > /tmp/out/result.txt; exit 7",
                      outputs=(workflow.Output("e2e/failed:v1", "/tmp/out/result.txt"),))
    assert failing["phase"] == "Failed"
    assert _exit_codes(failing)["app"] == 7
    # nothing was pushed: pulling the failed step's artifact fails
    check = run_pod(api_client, namespace, "nothing-pushed",
                    f"oras pull --plain-http {endpoint}/e2e/failed:v1 && exit 40; exit 0",
                    image=ORAS_IMAGE)
    assert check.exit_code == 0, check.message
