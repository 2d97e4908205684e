"""An OrasCache applied with the sync service running becomes a registry that serves."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib import schema
from tests.e2e.test_node import run_pod
from tests.harness.images import ORAS_IMAGE, REGISTRY_IMAGE
from tests.integration.syncproc import SyncProcess, wait_for


def _ready(api: ApiClient, ns: str, name: str) -> dict[str, Any] | None:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        schema.GROUP, schema.VERSION, ns, schema.PLURAL, name)
    conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
    ready = conditions.get("Ready", {}).get("status") == "True"
    return obj if ready and obj["status"].get("endpoint") else None


def create_ready_cache(api: ApiClient, namespace: str, name: str = "cache") -> str:
    """Create an OrasCache of the locally built registry image; wait for Ready; endpoint."""
    began = time.monotonic()
    body = {"apiVersion": schema.API_VERSION, "kind": schema.KIND,
            "metadata": {"name": name}, "spec": {"image": REGISTRY_IMAGE}}
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        schema.GROUP, schema.VERSION, namespace, schema.PLURAL, body)
    obj = wait_for(lambda: _ready(api, namespace, name), timeout=90,
                   interval=0.2, what="OrasCache Ready=True with an endpoint")
    print(f"OrasCache Ready in {time.monotonic() - began:.1f} s")
    endpoint: str = obj["status"]["endpoint"]
    return endpoint


def test_registry_becomes_ready_and_serves(
    api_client: ApiClient, namespace: str, sync: SyncProcess
) -> None:
    endpoint = create_ready_cache(api_client, namespace)
    assert endpoint == f"cache-0.cache.{namespace}.svc.cluster.local:5000"

    pod = client.CoreV1Api(api_client).read_namespaced_pod("cache-0", namespace)
    assert pod.status.container_statuses[0].ready
    host = endpoint.rsplit(":", 1)[0]
    # busybox 1.35 `wget -T` segfaults: bound it with `timeout` instead.
    script = (f"nslookup {host} | grep -q '{pod.status.pod_ip}' || exit 20; "
              f"timeout 10 wget -q -O - http://{endpoint}/v2/ || exit 21; echo; "
              "echo served")
    result = run_pod(api_client, namespace, "client", script)
    assert result.exit_code == 0, result.message

    # The real oras CLI in a Pod pushes to and pulls from the cache.
    script = (
        "cd /tmp && echo payload > in.txt && "
        f"oras push --plain-http {endpoint}/e2e/hello:v1 in.txt || exit 30; "
        f"mkdir out && cd out && oras pull --plain-http {endpoint}/e2e/hello:v1 || exit 31; "
        "grep -q payload in.txt || exit 32"
    )
    result = run_pod(api_client, namespace, "oras", script, image=ORAS_IMAGE)
    assert result.exit_code == 0, result.message
