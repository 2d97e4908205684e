"""The original ORAS Operator's examples parse and wire as its users expect."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from constructs_lib import OrasCache, parse_oras_cache
from constructs_lib.annotations import parse_annotations
from constructs_lib.workflow import WiringError, WorkflowParams, restart_warning, wire_pod_spec
from constructs_lib.workflow_params import PULL_CONTAINER, PUSH_CONTAINER
from sync.webhook.server import Mutation, WebhookMetrics, review
from tests.original_examples import (
    BREAKFAST_JOB,
    CONSUMER_POD,
    HELLO_WORLD_CACHE,
    PRODUCER_PODS,
    REMOTE_CACHE,
    REMOTE_POD,
    docs,
)


def cache_of(text: str) -> OrasCache:
    (doc,) = docs(text)
    parsed = parse_oras_cache(doc, "original")
    assert isinstance(parsed, OrasCache), parsed
    return parsed


def wire(obj: dict[str, Any], cache: OrasCache) -> tuple[dict[str, Any], str | None]:
    parsed = parse_annotations(obj["metadata"]["annotations"])
    assert parsed is not None and not parsed.ignored
    params = parsed.params if parsed.params.registry else parsed.params.with_cache(cache)
    spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Job" else obj["spec"]
    return wire_pod_spec(spec, params, namespace="ns"), restart_warning(spec, params)


def names(spec: dict[str, Any], field: str = "containers") -> list[str]:
    return [c["name"] for c in spec.get(field) or []]


def test_both_caches_are_valid_as_written() -> None:
    assert cache_of(HELLO_WORLD_CACHE).spec.deploy
    remote = cache_of(REMOTE_CACHE)
    assert not remote.spec.deploy and remote.spec.registry is None
    assert remote.endpoint() == ""  # the sync service reports that the pods name it


def test_breakfast_job_is_wired_without_a_warning() -> None:
    (job,) = docs(BREAKFAST_JOB)
    wired, warning = wire(job, cache_of(HELLO_WORLD_CACHE))
    assert names(wired) == ["breakfast", PUSH_CONTAINER] and warning is None


@pytest.mark.parametrize("index", [0, 1])
def test_producers_with_the_default_restart_policy_are_wired_with_a_warning(index: int) -> None:
    pod = docs(PRODUCER_PODS)[index]
    assert "restartPolicy" not in pod["spec"]
    wired, warning = wire(pod, cache_of(HELLO_WORLD_CACHE))
    assert names(wired) == ["my-container", PUSH_CONTAINER]
    assert warning is not None and "restartPolicy is Always" in warning
    push = wired["containers"][1]["command"][2]
    assert f"dinosaur/hello-world:{['one', 'two'][index]}" in push
    assert "exit 0" not in push, "under Always the push container waits for the next run"


def test_consumer_pulls_both_inputs_in_order() -> None:
    (pod,) = docs(CONSUMER_POD)
    wired, warning = wire(pod, cache_of(HELLO_WORLD_CACHE))
    assert warning is None and names(wired, "initContainers") == [PULL_CONTAINER]
    pull = wired["initContainers"][0]["command"][2]
    assert pull.index("dinosaur/hello-world:one") < pull.index("dinosaur/hello-world:two")
    assert wired["containers"][0]["command"][3:] == ["oras-wrapper", "ls", "inputs"]


def test_remote_pod_names_its_registry_and_secret() -> None:
    (pod,) = docs(REMOTE_POD)
    wired, warning = wire(pod, cache_of(REMOTE_CACHE))
    push = wired["containers"][1]
    assert "ghcr.io/manbat/metrics-operator-results:test" in push["command"][2]
    assert "--plain-http" not in push["command"][2], "a remote registry is reached over TLS"
    assert push["envFrom"] == [{"secretRef": {"name": "oras-env"}}]
    assert warning is not None  # a bare Pod with an output, as the producers


def test_a_remote_cache_without_an_address_needs_the_pods_registry() -> None:
    with pytest.raises(WiringError, match="runs no registry \\(deploy: false\\)"):
        WorkflowParams(inputs=("a:1",)).with_cache(cache_of(REMOTE_CACHE))
    with pytest.raises(WiringError, match="names none"):
        WorkflowParams.for_cache(cache_of(REMOTE_CACHE))
    assert WorkflowParams.for_cache(cache_of(REMOTE_CACHE), registry="r.io").endpoint() == "r.io"


def test_review_returns_warnings_whether_or_not_the_object_changed() -> None:
    body = json.dumps({"request": {"uid": "u", "kind": {"kind": "Pod"}, "namespace": "ns",
                                   "object": {"metadata": {}, "spec": {}}}}).encode()
    metrics = WebhookMetrics(CollectorRegistry())
    answer = review(body, lambda obj, kind, ns: Mutation(None, ("careful",)), metrics)
    assert answer["response"] == {"uid": "u", "allowed": True, "warnings": ["careful"]}
    answer = review(body, lambda obj, kind, ns: Mutation(), metrics)
    assert "warnings" not in answer["response"]
