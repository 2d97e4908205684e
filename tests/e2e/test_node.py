"""Pods really run on the test node: images pulled by name from the mirror, exit codes,
output, DNS, ClusterIP Services (kube-proxy), the API server through its Service."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from tests.harness import LocalCluster, sync_image
from tests.harness.images import BUSYBOX_IMAGE
from tests.harness.node import NETWORK, NODE_NAME, Node
from tests.integration.syncproc import wait_for

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
                "name": "main", "image": image,
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
        # nor the mirror registry (containerd on the host pulls from it, Pods never do)
        f"if timeout 3 nc {NETWORK.gateway} {NETWORK.mirror_port} </dev/null; then exit 14; fi; "
        "exit 0"
    )
    result = run_pod(api_client, namespace, "net", script)
    assert result.exit_code == 0, result.message


def _wait_pod_ready(api: ApiClient, ns: str, name: str, timeout: float = POD_TIMEOUT_S) -> Any:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, ns)
        if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
            return pod
        time.sleep(0.2)
    raise AssertionError(f"pod {ns}/{name} not Ready in {timeout:.0f}s")


def test_cluster_ip_service_from_a_pod_and_from_the_host(
    node: Node, api_client: ApiClient, namespace: str
) -> None:
    """kube-proxy (iptables mode): a ClusterIP Service answers Pods (by name and address)
    and host processes."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
                 "containers": [{
                     "name": "httpd", "image": BUSYBOX_IMAGE,  # pulled from the mirror
                     "command": ["sh", "-c", "mkdir /tmp/www && echo served-by-web > "
                                 "/tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"],
                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                 }]},
    })
    service = core.create_namespaced_service(namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })
    ip = service.spec.cluster_ip
    _wait_pod_ready(api_client, namespace, "web")
    script = (f"timeout 10 wget -q -O - http://{ip}/ | grep -qx served-by-web || exit 20; "
              "timeout 10 wget -q -O - http://web/ | grep -qx served-by-web || exit 21")
    result = run_pod(api_client, namespace, "client", script)
    assert result.exit_code == 0, result.message
    body = wait_for(lambda: _http_body(f"http://{ip}/"), timeout=10, interval=0.2,
                    what="the ClusterIP from the host")
    assert body == "served-by-web\n"


def _http_body(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    api_client: ApiClient, namespace: str
) -> None:
    """As in-cluster clients do: KUBERNETES_SERVICE_HOST:PORT (10.0.0.1:443, kube-proxy to
    the API server's listener on the bridge), the ServiceAccount's token, its CA and the
    name kubernetes.default.svc checked against the serving certificate."""
    code = (
        "import json, os, ssl, urllib.request; "
        "d = '/var/run/secrets/kubernetes.io/serviceaccount'; "
        "ctx = ssl.create_default_context(cafile=d + '/ca.crt'); "
        "token = open(d + '/token').read(); "
        "env = os.environ; "
        "host = env['KUBERNETES_SERVICE_HOST'] + ':' + env['KUBERNETES_SERVICE_PORT']; "
        "hdr = {'Authorization': 'Bearer ' + token}; "
        "[urllib.request.urlopen(urllib.request.Request(f'https://{h}/api', headers=hdr), "
        "context=ctx, timeout=10).read() for h in (host, 'kubernetes.default.svc')]; "
        "print('api reached')"
    )
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "in-cluster"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": sync_image.image_name(),
                                 "command": ["python3", "-c", code],
                                 "terminationMessagePolicy": "FallbackToLogsOnError"}]},
    })
    deadline = time.monotonic() + 120  # the first pull of the sync image: ~500 MiB
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod("in-cluster", namespace)
        if pod.status.phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.3)
    state = pod.status.container_statuses[0].state
    assert pod.status.phase == "Succeeded", state
    log = core.read_namespaced_pod_log("in-cluster", namespace)
    assert "api reached" in log


def test_the_node_listens_only_on_loopback_and_the_bridge(node: Node) -> None:
    """Every TCP/UDP socket of the node's processes (containerd, kubelet, kube-scheduler,
    kube-proxy, CoreDNS, the mirror, the API server's second listener) is bound to
    127.0.0.1 or the bridge's address."""
    pids = {c.pid for c in node.components.values()}
    out = subprocess.run(["ss", "-ltunpH"], capture_output=True, text=True, check=True).stdout
    seen, wrong = set(), []
    for line in out.splitlines():
        fields = line.split()
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if not owners & pids:
            continue
        host = fields[4].rsplit(":", 1)[0].strip("[]")
        seen.add(host)
        if host not in ("127.0.0.1", NETWORK.gateway):
            wrong.append(line)
    assert not wrong, wrong
    assert seen == {"127.0.0.1", NETWORK.gateway}
