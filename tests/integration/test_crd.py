"""The CRD on a real API server: explain texts, validation oracle, dist/ dry-run."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from constructs_lib import OrasCache, parse_oras_cache, schema
from constructs_lib.validation import validate_spec
from sync.render.synth import REPO_ROOT
from tests.harness import LocalCluster
from tests.unit.strategies import BREAKERS, document, valid_specs
from tests.unit.test_validation import JUNK

ORACLE_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def server_verdict(api: ApiClient, namespace: str, doc: dict[str, Any]) -> tuple[bool, str, Any]:
    """Dry-run create with strict field validation: (accepted, message, stored spec)."""
    body = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    try:
        stored = client.CustomObjectsApi(api).create_namespaced_custom_object(
            schema.GROUP,
            schema.VERSION,
            namespace,
            schema.PLURAL,
            body,
            dry_run="All",
            field_validation="Strict",
        )
    except ApiException as err:
        if err.status not in (400, 422):
            raise
        return False, json.loads(err.body).get("message", ""), None
    return True, "", stored["spec"]


def python_verdict(doc: dict[str, Any]) -> tuple[bool, list[str], Any]:
    parsed = parse_oras_cache(doc, "oracle")
    if isinstance(parsed, OrasCache):
        return True, [], validate_spec(doc["spec"])[0]
    return False, [str(e.error) for e in parsed], None


def check_agreement(api: ApiClient, namespace: str, doc: dict[str, Any]) -> None:
    ok_server, message, stored = server_verdict(api, namespace, doc)
    ok_python, errors, defaulted = python_verdict(doc)
    assert ok_server == ok_python, f"server={ok_server} {message!r}, python={errors}"
    if ok_server:
        assert stored == defaulted, "defaults differ between the API server and schema.py"
    else:
        assert errors and message


def wait_for_explain(cluster: LocalCluster, what: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        proc = cluster.kubectl("explain", what, check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            assert proc.returncode == 0, proc.stderr
            return proc.stdout
        time.sleep(0.3)


def test_kubectl_explain_shows_field_descriptions(cluster: LocalCluster) -> None:
    # OpenAPI publication is asynchronous; the harness waits for it, a short retry covers
    # the last moment of lag (seen once in about twenty runs).
    out = wait_for_explain(cluster, "orascache.spec")
    for field, node in schema.SPEC_SCHEMA["properties"].items():
        assert field in out
        assert node["description"].split()[0] in out
    storage = cluster.kubectl("explain", "orascaches.spec.storage.accessModes").stdout
    assert "ReadWriteMany" in storage


@pytest.mark.parametrize(("path", "spec"), BREAKERS, ids=[str(s) for _, s in BREAKERS])
def test_oracle_rejects_the_same_broken_specs(
    api_client: ApiClient, namespace: str, path: str, spec: dict[str, Any]
) -> None:
    doc = document("c", spec)
    ok, message, _ = server_verdict(api_client, namespace, doc)
    assert not ok
    check_agreement(api_client, namespace, doc)
    leaf = path.rsplit(".", maxsplit=1)[-1].split("[", maxsplit=1)[0]
    assert leaf in message, f"server message does not name {leaf}: {message}"


@pytest.mark.parametrize(
    "name",
    ["a" * 52, "a" * 53, "a" * 60, "Upper", "1abc", "a.b", "ok-1", "foo\n", "a" * 51 + "\n"],
)
def test_oracle_name_rules(api_client: ApiClient, namespace: str, name: str) -> None:
    check_agreement(api_client, namespace, document(name, {}))


@pytest.mark.parametrize("spec", [
    {"deploy": False},  # the original operator's remote cache: pods name the registry
    {"deploy": False, "registry": "ghcr.io/team"},
    {"deploy": True, "registry": "ghcr.io/team"},  # refused: only used with deploy: false
])
def test_oracle_remote_cache_forms(
    api_client: ApiClient, namespace: str, spec: dict[str, Any]
) -> None:
    ok, _, _ = server_verdict(api_client, namespace, document("c", spec))
    assert ok == (not spec["deploy"])
    check_agreement(api_client, namespace, document("c", spec))


@ORACLE_SETTINGS
@given(valid_specs())
def test_oracle_valid_specs_and_defaults(
    api_client: ApiClient, namespace: str, spec: dict[str, Any]
) -> None:
    check_agreement(api_client, namespace, document("c", spec))


@ORACLE_SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(schema.SPEC_SCHEMA["properties"])), JUNK))
def test_oracle_junk_specs(api_client: ApiClient, namespace: str, spec: dict[str, Any]) -> None:
    check_agreement(api_client, namespace, document("c", spec))


def test_every_dist_object_passes_server_side_dry_run(
    cluster: LocalCluster, api_client: ApiClient
) -> None:
    core = client.CoreV1Api(api_client)
    # A server-side dry run creates no Namespace: the ones dist/ objects live in must exist.
    for name in ("workflows", "oras-cache-system"):
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        except ApiException as err:
            if err.status != 409:
                raise
    apply = ("apply", "--server-side", "--dry-run=server", "--field-manager=orascache", "-oname")
    out = cluster.kubectl(*apply, "-f", str(REPO_ROOT / "dist/install")).stdout.split()
    assert out[0] == (
        "customresourcedefinition.apiextensions.k8s.io/orascaches.cache.converged-computing.github.io"
    )
    assert "deployment.apps/oras-cache-sync" in out, out
    install = [p.read_text() for p in (REPO_ROOT / "dist/install").glob("*.yaml")]
    assert len(out) == sum(text.count("\nkind: ") for text in install), out
    # Namespace-less objects land in the kubeconfig's namespace, as with `kubectl apply -k`.
    out = cluster.kubectl(*apply, "-k", str(REPO_ROOT / "dist/examples")).stdout.split()
    assert "statefulset.apps/shared" in out, out
    assert "persistentvolumeclaim/shared-data" in out, out
    examples = REPO_ROOT / "dist/examples"
    listed = yaml.safe_load((examples / "kustomization.yaml").read_text())["resources"]
    rendered = [(examples / rel).read_text() for rel in listed]
    assert len(out) == sum(text.count("\nkind: ") for text in rendered), out
    # The example pipeline (left out of the kustomization: applying it starts Jobs).
    out = cluster.kubectl(*apply, "-f", str(examples / "pipelines")).stdout.split()
    assert out == ["job.batch/pipeline-produce", "job.batch/pipeline-consume"], out
