"""The original ORAS Operator's example files, applied unchanged with kubectl, through the
MutatingWebhookConfiguration exactly as dist/install/ ships it (only its clientConfig
points at the local service): stored wired, with the warnings kubectl prints."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib import schema
from sync.render.synth import REPO_ROOT
from tests.harness import LocalCluster
from tests.integration.syncproc import SyncProcess, wait_for
from tests.integration.webhookproc import WebhookConfig
from tests.original_examples import (
    BREAKFAST_JOB,
    CONSUMER_POD,
    HELLO_WORLD_CACHE,
    PRODUCER_PODS,
    REMOTE_CACHE,
    REMOTE_POD,
)

ALWAYS_WARNING = "restartPolicy is Always (the default for Pods)"


def shipped_webhook_config(name: str, port: int, namespace: str) -> dict[str, Any]:
    """dist/install/'s configuration as committed, renamed, with a local URL."""
    (shipped,) = [d for d in yaml.safe_load_all(
        (REPO_ROOT / "dist/install/sync-service.yaml").read_text())
        if d and d["kind"] == "MutatingWebhookConfiguration"]
    config = copy.deepcopy(shipped)
    config["metadata"]["name"] = name
    for hook in config["webhooks"]:
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}/mutate"}
    return config


@pytest.fixture
def webhook_config() -> WebhookConfig:
    return shipped_webhook_config


def apply(cluster: LocalCluster, namespace: str, text: str) -> str:
    """`kubectl apply -n NS -f -`, as the original's README does; returns kubectl's stderr
    (where it prints admission warnings)."""
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text).stderr


def containers(obj: Any, field: str = "containers") -> list[str]:
    return [c.name for c in getattr(obj, field) or []]


def test_original_examples_are_stored_wired_with_warnings(
    webhook: Callable[..., SyncProcess], cluster: LocalCluster, api_client: ApiClient,
    namespace: str,
) -> None:
    webhook()
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    assert apply(cluster, namespace, HELLO_WORLD_CACHE) == ""

    stderr = apply(cluster, namespace, BREAKFAST_JOB)
    assert "Warning" not in stderr, stderr
    template = batch.read_namespaced_job("breakfast", namespace).spec.template.spec
    assert containers(template) == ["breakfast", "oras-push"]

    # One kubectl call prints a repeated warning once: apply the two Pods one by one.
    for producer in PRODUCER_PODS.split("---\n"):
        stderr = apply(cluster, namespace, producer)
        assert ALWAYS_WARNING in stderr, stderr
    for name in ("hello-world-1", "hello-world-2"):
        stored = core.read_namespaced_pod(name, namespace)
        assert stored.spec.restart_policy == "Always"
        assert containers(stored.spec) == ["my-container", "oras-push"]

    assert "Warning" not in apply(cluster, namespace, CONSUMER_POD)
    consumer = core.read_namespaced_pod("hello-world-3", namespace)
    assert containers(consumer.spec, "init_containers") == ["oras-pull"]

    # The remote form: a cache with `deploy: false` alone, and a Pod naming its registry.
    assert apply(cluster, namespace, REMOTE_CACHE) == ""
    stderr = apply(cluster, namespace, REMOTE_POD)
    assert ALWAYS_WARNING in stderr, stderr
    turkey = core.read_namespaced_pod("turkey-pod", namespace)
    push = turkey.spec.containers[1]
    assert "ghcr.io/manbat/metrics-operator-results:test" in push.command[2]
    assert push.env_from[0].secret_ref.name == "oras-env"

    def remote_ready() -> dict[str, Any] | None:
        obj: dict[str, Any] = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            schema.GROUP, schema.VERSION, namespace, schema.PLURAL, "oras")
        ready = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return obj if ready and ready[0]["status"] == "True" else None

    status = wait_for(remote_ready, what="the remote cache Ready")["status"]
    assert status["conditions"][0]["reason"] == "RemoteRegistry"
    assert "registry annotation" in status["endpoint"]


def test_a_pod_of_a_remote_cache_without_a_registry_is_denied_naming_both(
    webhook: Callable[..., SyncProcess], cluster: LocalCluster, namespace: str,
) -> None:
    webhook()
    apply(cluster, namespace, REMOTE_CACHE)
    pod = REMOTE_POD.replace("orascache-sample", "oras").replace(
        "     oras.converged-computing.github.io/registry: ghcr.io\n", "")
    denied = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=pod, check=False)
    assert denied.returncode != 0
    assert "OrasCache 'oras'" in denied.stderr, denied.stderr
    assert "runs no registry (deploy: false)" in denied.stderr
    assert "oras.converged-computing.github.io/registry annotation" in denied.stderr


def test_script_urls_are_admitted_with_a_warning(
    webhook: Callable[..., SyncProcess], cluster: LocalCluster, namespace: str,
) -> None:
    webhook()
    apply(cluster, namespace, HELLO_WORLD_CACHE)
    job = BREAKFAST_JOB.replace(
        "    oras.converged-computing.github.io/debug: \"true\"\n",
        "    oras.converged-computing.github.io/debug: \"true\"\n"
        "    oras.converged-computing.github.io/entrypoint: https://example.com/e.sh\n")
    stderr = apply(cluster, namespace, job)
    assert "entrypoint is ignored: a script URL (nothing is downloaded" in stderr, stderr
