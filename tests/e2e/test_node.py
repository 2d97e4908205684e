"""Pods really run on the test node: exit codes, output, DNS, Pod-to-Pod on the bridge."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from tests.harness import LocalCluster
from tests.harness.images import BUSYBOX_IMAGE
from tests.harness.node import NETWORK, NODE_NAME, Node

POD_TIMEOUT_S = 60.0


def run_pod(api: ApiClient, ns: str, name: str, script: str,
            image: str = BUSYBOX_IMAGE) -> client.V1ContainerStateTerminated:
    """Run ``sh -c script`` to completion; return the terminated state of its container."""
    core = client.CoreV1Api(api)
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                # the last lines of output land in the status (no kubelet logs API needed)
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        },
    }
    core.create_namespaced_pod(ns, body)
    deadline = time.monotonic() + POD_TIMEOUT_S
    pod = None
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, ns)
        if pod.status.phase in ("Succeeded", "Failed"):
            state = pod.status.container_statuses[0].state
            assert state.terminated is not None
            return state.terminated
        time.sleep(0.2)
    raise AssertionError(f"pod {ns}/{name} did not finish in {POD_TIMEOUT_S}s: {pod}")


def test_node_is_ready(node: Node, api_client: ApiClient) -> None:
    found = client.CoreV1Api(api_client).read_node(NODE_NAME)
    ready = {c.type: c.status for c in found.status.conditions}["Ready"]
    assert ready == "True"
    assert found.status.node_info.container_runtime_version.startswith("containerd://")


def test_busybox_pod_runs_to_completion_with_its_exit_code(
    cluster: LocalCluster, api_client: ApiClient, namespace: str
) -> None:
    began = time.monotonic()
    ok = run_pod(api_client, namespace, "ok", "echo hello from a real node")
    print(f"busybox pod done in {time.monotonic() - began:.1f} s")
    assert ok.exit_code == 0
    failed = run_pod(api_client, namespace, "fails", "echo about to fail; exit 3")
    assert failed.exit_code == 3
    assert "about to fail" in (failed.message or "")
    # kubectl logs goes apiserver -> kubelet
    logs = cluster.kubectl("logs", "-n", namespace, "ok").stdout
    assert logs == "hello from a real node\n"


def _host_addresses() -> list[str]:
    """IPv4 addresses of the host outside the bridge (eth0's, ...), not loopback."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    found = [line.split()[3].split("/")[0] for line in out.splitlines()]
    return [a for a in found if not a.startswith(("127.", NETWORK.gateway))]


def test_pod_sees_only_the_bridge(node: Node, api_client: ApiClient, namespace: str) -> None:
    """The Pod's address is on the bridge subnet; the host's other addresses are unreachable."""
    others = _host_addresses()
    probes = "".join(
        f"if timeout 3 ping -c1 -W2 {a} >/dev/null 2>&1; then exit 12; fi; " for a in others)
    script = (
        f"ip -4 addr show eth0 | grep -q 'inet {NETWORK.gateway.rsplit('.', 1)[0]}.' || exit 10; "
        # the host side of the bridge answers ICMP ...
        f"ping -c1 -W2 {NETWORK.gateway} >/dev/null || exit 11; "
        # ... but the host's other addresses do not
        f"{probes}"
        # nor the kubelet's port on the bridge address (only DNS there)
        f"if timeout 3 nc {NETWORK.gateway} {node.kubelet_port} </dev/null; then exit 13; fi; "
        "exit 0"
    )
    result = run_pod(api_client, namespace, "net", script)
    assert result.exit_code == 0, result.message
