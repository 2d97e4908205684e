"""webhook.review's decisions: one AdmissionReview in, the answer the API server gets out.
The mutation itself runs against a real API server in tests/integration/test_webhook.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sync.webhook.server import (
    AdmissionDenied,
    BadReview,
    Mutation,
    NamespaceNotServed,
    WebhookMetrics,
    review,
)

POD: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "p", "annotations": {"a": "b"}},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def body(obj: dict[str, Any] | None = None, namespace: str = "ns") -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u-1", "kind": {"kind": "Pod"},
                                   "namespace": namespace, "object": obj or POD}}).encode()


@pytest.fixture
def metrics() -> WebhookMetrics:
    return WebhookMetrics(CollectorRegistry())


def count(metrics: WebhookMetrics, result: str) -> float:
    return metrics.admissions.labels(result=result)._value.get()  # type: ignore[no-any-return]


def test_a_mutation_is_answered_as_a_json_patch_of_spec_and_metadata(
        metrics: WebhookMetrics) -> None:
    mutated = {**POD, "metadata": {**POD["metadata"], "labels": {"wired": "1"}},
               "spec": {"containers": [], "initContainers": []}}
    answer = review(body(), lambda obj, kind, ns: Mutation(mutated, ("note",)), metrics)
    response = answer["response"]
    assert (answer["kind"], response["uid"], response["allowed"]) == (
        "AdmissionReview", "u-1", True)
    assert response["patchType"] == "JSONPatch" and response["warnings"] == ["note"]
    patch = json.loads(base64.b64decode(response["patch"]))
    assert patch == [{"op": "replace", "path": "/spec", "value": mutated["spec"]},
                     {"op": "replace", "path": "/metadata", "value": mutated["metadata"]}]
    assert count(metrics, "wired") == 1


def test_an_unchanged_object_gets_no_patch(metrics: WebhookMetrics) -> None:
    for mutation in (Mutation(), Mutation(dict(POD))):
        response = review(body(), lambda obj, kind, ns, m=mutation: m, metrics)["response"]
        assert response == {"uid": "u-1", "allowed": True}
    assert count(metrics, "unchanged") == 2


def test_the_mutator_sees_the_kind_and_namespace(metrics: WebhookMetrics) -> None:
    seen: list[tuple[str, str]] = []

    def mutate(obj: dict[str, Any], kind: str, namespace: str) -> Mutation:
        seen.append((kind, namespace))
        return Mutation()

    review(body(namespace="team"), mutate, metrics)
    review(body(namespace=""), mutate, metrics)
    assert seen == [("Pod", "team"), ("Pod", "")]


@pytest.mark.parametrize(("error", "code", "reason"), [
    (AdmissionDenied("no cache named c"), 400, "BadRequest"),
    (NamespaceNotServed("kube-system"), 403, "Forbidden"),
])
def test_a_denial_reaches_the_user_with_its_code(
        metrics: WebhookMetrics, error: AdmissionDenied, code: int, reason: str) -> None:
    def mutate(obj: dict[str, Any], kind: str, namespace: str) -> Mutation:
        raise error

    response = review(body(), mutate, metrics)["response"]
    assert response == {"uid": "u-1", "allowed": False,
                        "status": {"code": code, "reason": reason, "message": str(error)}}
    assert count(metrics, "denied") == 1


def test_a_bug_in_the_mutator_is_a_denial_not_a_failed_call(metrics: WebhookMetrics) -> None:
    def mutate(obj: dict[str, Any], kind: str, namespace: str) -> Mutation:
        raise KeyError("spec")

    response = review(body(), mutate, metrics)["response"]
    assert response["allowed"] is False and response["status"]["code"] == 500
    assert "orascache webhook error" in response["status"]["message"]
    assert count(metrics, "error") == 1


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "empty body"),
    (b"{", "body is not JSON"),
    (b"[]", "got a JSON list"),
    (b'{"request": 1}', "request: expected an object"),
    (b'{"request": {"uid": 1}}', "request.uid: expected a string"),
    (b'{"request": {"uid": "u", "kind": {"kind": 1}, "object": {}}}',
     "request.kind.kind: expected a string"),
])
def test_what_is_not_an_admission_review_is_refused_before_any_mutation(
        metrics: WebhookMetrics, raw: bytes, message: str) -> None:
    def mutate(obj: dict[str, Any], kind: str, namespace: str) -> Mutation:
        raise AssertionError("not called")

    with pytest.raises(BadReview, match=message):
        review(raw, mutate, metrics)
