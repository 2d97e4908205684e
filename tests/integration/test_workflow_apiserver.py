"""Wired specs and the example pipeline, accepted by the real kube-apiserver (dry run).

The schema check in the unit tests cannot see API validation rules such as unique mount
paths per container, valid subPaths or container name clashes; the real apiserver does.
"""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib import OrasCache, parse_oras_cache
from constructs_lib.workflow import wire_pod_spec
from constructs_lib.workflow_example import render_pipeline
from tests.unit.test_workflow import CASES, load_case


@pytest.mark.parametrize("name", CASES)
def test_wired_pod_is_accepted(name: str, api_client: ApiClient, namespace: str) -> None:
    spec, params, pod_namespace = load_case(name)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"wired-{name}"},
           "spec": wire_pod_spec(spec, params, namespace=pod_namespace or namespace)}
    created = client.CoreV1Api(api_client).create_namespaced_pod(namespace, pod, dry_run="All")
    names = [c.name for c in created.spec.containers]
    assert "oras-push" in names or name.endswith("inputs-only")


def test_example_pipeline_jobs_are_accepted(api_client: ApiClient, namespace: str) -> None:
    doc = {"apiVersion": "cache.converged-computing.github.io/v1alpha1", "kind": "OrasCache",
           "metadata": {"name": "shared", "namespace": namespace}, "spec": {}}
    cache = parse_oras_cache(doc, "test")
    assert isinstance(cache, OrasCache)
    batch = client.BatchV1Api(api_client)
    for job in render_pipeline(cache):
        created = batch.create_namespaced_job(namespace, job, dry_run="All")
        assert created.spec.template.spec.restart_policy == "Never"
