"""The admission webhook, called by the real kube-apiserver through a `url` client config."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from constructs_lib import schema
from constructs_lib.annotations import PREFIX
from sync.apply.kube import ApiError, Kube
from tests.certdir import TestCA, kubelet_write, secret_files
from tests.integration.syncproc import SyncProcess, wait_for
from tests.integration.webhookproc import bundle


def make_cache(api: ApiClient, ns: str, name: str = "oras") -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        schema.GROUP, schema.VERSION, ns, schema.PLURAL,
        {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": name},
         "spec": {}})


def pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "app", "image": "busybox", "workingDir": "/work",
                                     "command": ["sh", "-c", "echo hi > out.txt"]}]}}


ANNOTATED = {f"{PREFIX}input-uri": "data/in:1", f"{PREFIX}output-uri": "data/out:1"}


def names(spec: Any, field: str) -> list[str]:
    return [c.name for c in getattr(spec, field) or []]


def test_annotated_pod_is_stored_wired_and_others_untouched(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str
) -> None:
    proc = webhook()
    make_cache(api_client, namespace)
    core = client.CoreV1Api(api_client)
    stored = core.create_namespaced_pod(namespace, pod("wired", ANNOTATED))
    assert names(stored.spec, "init_containers") == ["oras-pull"]
    assert names(stored.spec, "containers") == ["app", "oras-push"]
    admissions = proc.metric("orascache_admissions_total")
    plain = core.create_namespaced_pod(namespace, pod("plain"))
    assert names(plain.spec, "containers") == ["app"] and not plain.spec.init_containers
    assert proc.metric("orascache_admissions_total") == admissions, "never reached the webhook"


def test_job_annotated_at_job_level_is_wired_once(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str
) -> None:
    webhook()
    make_cache(api_client, namespace)
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "step", "annotations": ANNOTATED},
           "spec": {"template": {"spec": pod("x")["spec"]}}}
    stored = client.BatchV1Api(api_client).create_namespaced_job(namespace, job)
    template = stored.spec.template.spec
    assert names(template, "init_containers") == ["oras-pull"]
    core = client.CoreV1Api(api_client)
    pods = wait_for(lambda: core.list_namespaced_pod(
        namespace, label_selector="job-name=step").items, what="the Job's Pod (from KCM)")
    (created,) = pods
    assert names(created.spec, "init_containers") == ["oras-pull"]
    assert names(created.spec, "containers") == ["app", "oras-push"]


@pytest.mark.parametrize(("annotations", "fragment"), [
    ({f"{PREFIX}input-uri": "data/in:1", f"{PREFIX}bogus": "1"}, f"{PREFIX}bogus"),
    ({f"{PREFIX}unpack": "maybe", f"{PREFIX}input-uri": "a/b:1"}, f"{PREFIX}unpack"),
    ({f"{PREFIX}oras-cache": "missing", f"{PREFIX}input-uri": "a/b:1"},
     "OrasCache 'missing' not found"),
])
def test_bad_requests_are_denied_with_a_clear_message(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str,
    annotations: dict[str, str], fragment: str,
) -> None:
    webhook()
    make_cache(api_client, namespace)
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(api_client).create_namespaced_pod(namespace, pod("bad", annotations))
    assert denied.value.status == 400
    assert fragment in denied.value.body


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda b: b["spec"]["containers"][0].pop("name"), "containers[0] has no name"),
    (lambda b: b["spec"].update(volumes=[{"name": "oras-workflow", "emptyDir": {}}]),
     "already has a volume named 'oras-workflow'"),
    (lambda b: b["metadata"]["annotations"].update({f"{PREFIX}registry": "--help"}),
     "registry: '--help' is not host"),
    (lambda b: b["metadata"]["annotations"].update({f"{PREFIX}output-path": "-rf"}),
     "a name starting with '-'"),
    (lambda b: b["metadata"]["annotations"].update(
        {f"{PREFIX}input-path": "/data/../mnt/oras/state"}), "inside /mnt/oras"),
    (lambda b: b["metadata"]["annotations"].update({f"{PREFIX}oras-env": "Bad_Name"}),
     "is not a Secret name"),
    (lambda b: b["metadata"]["annotations"].update({f"{PREFIX}oras-container": "-x y"}),
     "is not an image reference"),
])
def test_hostile_pods_are_denied_with_the_reason_never_a_500_or_unwired(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, kube: Kube, namespace: str,
    change: Callable[[dict[str, Any]], object], fragment: str,
) -> None:
    proc = webhook()
    make_cache(api_client, namespace)
    body = pod("hostile", dict(ANNOTATED))
    change(body)
    # The raw client: the typed one refuses to send a container without a name.
    with pytest.raises(ApiError) as denied:
        kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=body)
    assert denied.value.status == 400, denied.value.body
    assert fragment in str(denied.value.body), denied.value.body
    assert proc.metric('orascache_admissions_total{result="error"}') == 0


def test_webhook_down_follows_failure_policy_fail(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str
) -> None:
    proc = webhook()
    make_cache(api_client, namespace)
    proc.stop()
    core = client.CoreV1Api(api_client)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, pod("no-webhook", ANNOTATED))
    assert "failed calling webhook" in refused.value.body
    assert core.create_namespaced_pod(namespace, pod("plain")).metadata.name == "plain"


def test_certificate_rotation_without_downtime(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str
) -> None:
    webhook("--webhook-cert-validity", "12")
    make_cache(api_client, namespace)
    first = bundle(api_client, f"orascache-{namespace}")[0]
    core = client.CoreV1Api(api_client)
    deadline, created = time.monotonic() + 14, 0
    while time.monotonic() < deadline:
        core.create_namespaced_pod(namespace, pod(f"p{created}", ANNOTATED))
        created += 1
        time.sleep(0.2)
    cas = bundle(api_client, f"orascache-{namespace}")
    assert len(cas) >= 2 and first in cas, "rotated, and the old CA kept for overlap"
    assert created > 40


# ----- serving certificates from a cert dir (cert-manager's Secret as a volume) ----------

def _webhook_port(proc: SyncProcess) -> int:
    return int(proc.argv[proc.argv.index("--webhook-addr") + 1].rsplit(":", 1)[1])


def _served_cert(port: int, ca: TestCA) -> bytes:
    """The certificate a new TLS handshake gets from the webhook, verified against `ca`."""
    ctx = ssl.create_default_context(cadata=ca.pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_cert_dir_is_served_and_reloaded_when_the_kubelet_swaps_it(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str,
    tmp_path: Path,
) -> None:
    ca = TestCA("cert-manager-ca")
    first, second = ca.issue(cn="first"), ca.issue(cn="second")
    certs = tmp_path / "webhook-tls"
    kubelet_write(certs, secret_files(first, ca))
    proc = webhook("--webhook-cert-dir", str(certs))
    config = f"orascache-{namespace}"
    assert bundle(api_client, config) == [ca.cert], "ca.crt published, no CA generated"
    make_cache(api_client, namespace)
    port = _webhook_port(proc)
    assert _served_cert(port, ca) == first.der
    core = client.CoreV1Api(api_client)
    stored = core.create_namespaced_pod(namespace, pod("before", ANNOTATED))
    assert names(stored.spec, "init_containers") == ["oras-pull"]

    kubelet_write(certs, secret_files(second, ca))  # cert-manager renewed: same CA
    deadline, created = time.monotonic() + 20, 0
    while _served_cert(port, ca) != second.der:
        assert time.monotonic() < deadline, "the renewed certificate was never served"
        stored = core.create_namespaced_pod(namespace, pod(f"during{created}", ANNOTATED))
        assert names(stored.spec, "init_containers") == ["oras-pull"]
        created += 1
    admissions = proc.metric("orascache_admissions_total")
    for i in range(5):
        stored = core.create_namespaced_pod(namespace, pod(f"after{i}", ANNOTATED))
        assert names(stored.spec, "containers") == ["app", "oras-push"]
    assert proc.metric("orascache_admissions_total") >= admissions + 5, "reached us"
    assert bundle(api_client, config) == [ca.cert]
    assert "reloading the webhook serving certificate" in proc.output()
    assert "PRIVATE KEY" not in proc.output()


def test_cert_dir_without_ca_crt_leaves_the_injected_ca_bundle_alone(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str,
    tmp_path: Path,
) -> None:
    ca = TestCA("cert-manager-ca")
    certs = tmp_path / "webhook-tls"
    kubelet_write(certs, secret_files(ca.issue(), None))
    config = f"orascache-{namespace}"
    admission = client.AdmissionregistrationV1Api(api_client)
    hooks = admission.read_mutating_webhook_configuration(config).webhooks
    injected = base64.b64encode(ca.pem).decode()  # what cert-manager's cainjector does
    admission.patch_mutating_webhook_configuration(config, [
        {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": injected}
        for i in range(len(hooks))])
    version = admission.read_mutating_webhook_configuration(config).metadata.resource_version
    webhook("--webhook-cert-dir", str(certs))
    make_cache(api_client, namespace)
    stored = client.CoreV1Api(api_client).create_namespaced_pod(
        namespace, pod("wired", ANNOTATED))
    assert names(stored.spec, "init_containers") == ["oras-pull"]
    time.sleep(3)  # a few reload polls
    after = admission.read_mutating_webhook_configuration(config)
    assert after.metadata.resource_version == version, "the service wrote the configuration"
    assert bundle(api_client, config) == [ca.cert]


# ----- the original operator's examples: relative paths and no workingDir (issue 8) -----

UPSTREAM_BREAKFAST = {  # examples/tests/hello-world/job.yaml, as published upstream
    f"{PREFIX}oras-cache": "orascache-sample",
    f"{PREFIX}output-uri": "dinosaur/hello-world:pancakes",
    f"{PREFIX}output-path": "pancakes.txt",
    f"{PREFIX}output-pipe": "pancakes.txt",
    f"{PREFIX}debug": "true",
}


def test_upstream_relative_paths_without_working_dir_are_admitted(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str
) -> None:
    webhook()
    make_cache(api_client, namespace, "orascache-sample")
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "breakfast", "annotations": UPSTREAM_BREAKFAST},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "pi", "image": "perl:5.34.0", "command": ["echo", "blueberry"]}]}}
    core = client.CoreV1Api(api_client)
    stored = core.create_namespaced_pod(namespace, body)
    assert names(stored.spec, "containers") == ["pi", "oras-push"]
    app = stored.spec.containers[0]
    assert app.working_dir is None, "nothing is mounted over the image's WORKDIR"
    assert app.command[3:] == ["oras-wrapper", "echo", "blueberry"]
    assert ">./pancakes.txt &" in app.command[2]
    assert 'cp -R ./pancakes.txt /mnt/oras/out/0/"$n"/' in app.command[2]
    assert "cd /mnt/oras/out/0/\"$n\"" in stored.spec.containers[1].command[2]

    # the Job form (annotations on the Job) and the inputs-only pod-2 example
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "breakfast", "annotations": UPSTREAM_BREAKFAST},
           "spec": {"backoffLimit": 4, "template": {"spec": body["spec"]}}}
    template = client.BatchV1Api(api_client).create_namespaced_job(
        namespace, job).spec.template.spec
    assert names(template, "containers") == ["pi", "oras-push"]
    inputs_only = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "hello-world-3", "annotations": {
            f"{PREFIX}oras-cache": "orascache-sample",
            f"{PREFIX}input-uri_1": "dinosaur/hello-world:one",
            f"{PREFIX}input-uri_2": "dinosaur/hello-world:two"}},
        "spec": {"containers": [{"name": "my-container", "image": "ubuntu",
                                 "command": ["ls", "inputs"]}]}}
    stored = core.create_namespaced_pod(namespace, inputs_only)
    assert names(stored.spec, "init_containers") == ["oras-pull"]
    assert stored.spec.containers[0].command[3:] == ["oras-wrapper", "ls", "inputs"]
    assert "cp -R /mnt/oras/inputs/. ." in stored.spec.containers[0].command[2]


# ----- direct callers: hostile bodies, other namespaces (issue 20) -------------------------

def _direct(port: int, body: bytes, headers: dict[str, str] | None = None,
            ) -> tuple[int, str]:
    """POST /mutate as a client that reached the webhook's port, not as the API server."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                       context=ssl._create_unverified_context())
    conn.request("POST", "/mutate", body=body, headers=headers or {})
    answer = conn.getresponse()
    return answer.status, answer.read().decode()


def _rss_kib(proc: SyncProcess) -> int:
    assert proc.proc is not None
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmRSS:")))


def _review(namespace: str, cache: str) -> bytes:
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "direct", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "namespace": namespace, "operation": "CREATE",
                    "object": pod("probe", {f"{PREFIX}oras-cache": cache,
                                            f"{PREFIX}input-uri": "a/b:1"})}}).encode()


def test_a_200_mb_post_is_refused_at_the_headers_and_the_process_does_not_grow(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str
) -> None:
    """The probe took the process from ~100 MB to 680 MB with one such POST."""
    proc = webhook()
    make_cache(api_client, namespace)
    port = _webhook_port(proc)
    before = _rss_kib(proc)
    raw = ssl._create_unverified_context().wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="x")
    raw.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 200000000\r\n\r\n" + b'{"request": "' + b"x" * 100_000)
    answer = http.client.HTTPResponse(raw)
    answer.begin()
    assert answer.status == 413
    assert "over the limit" in answer.read().decode()
    assert _rss_kib(proc) - before < 10 * 1024
    stored = client.CoreV1Api(api_client).create_namespaced_pod(
        namespace, pod("after", ANNOTATED))
    assert names(stored.spec, "init_containers") == ["oras-pull"], "admission goes on"


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "empty body"),
    (b"{not json", "body is not JSON"),
    (b"[]", "got a JSON list"),
    (b'{"request": "x"}', "request: expected an object"),
])
def test_malformed_bodies_get_400_with_a_reason_and_admission_goes_on(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str,
    body: bytes, reason: str,
) -> None:
    proc = webhook()
    make_cache(api_client, namespace)
    status, text = _direct(_webhook_port(proc), body)
    assert status == 400 and reason in text
    assert "Traceback" not in proc.output()
    stored = client.CoreV1Api(api_client).create_namespaced_pod(
        namespace, pod("after", ANNOTATED))
    assert names(stored.spec, "init_containers") == ["oras-pull"]


def test_namespaces_not_served_are_refused_without_saying_what_exists_there(
    webhook: Callable[..., SyncProcess], api_client: ApiClient, namespace: str
) -> None:
    """The probe learnt "OrasCache 'payroll' not found in namespace 'kube-system'"; now
    a cache that exists there and one that does not get the same answer."""
    proc = webhook()  # --namespace <namespace>
    make_cache(api_client, "kube-system", "payroll")
    try:
        port = _webhook_port(proc)
        answers = [_direct(port, _review("kube-system", cache))
                   for cache in ("payroll", "absent")]
        assert answers[0] == answers[1]
        status, text = answers[0]
        response = json.loads(text)["response"]
        assert status == 200 and response["allowed"] is False
        assert response["status"] == {
            "code": 403, "reason": "Forbidden",
            "message": "namespace 'kube-system' is not served by this webhook"}
        served = json.loads(_direct(port, _review(namespace, "absent"))[1])["response"]
        assert "OrasCache 'absent' not found" in served["status"]["message"]
    finally:
        client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
            schema.GROUP, schema.VERSION, "kube-system", schema.PLURAL, "payroll")
