"""examples/pipeline/ (what `make demo` runs): its Jobs name a cache of examples/, and the
webhook's wiring of them pushes the producer's file and pulls it where the consumer reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from constructs_lib.annotations import parse_annotations
from constructs_lib.workflow import PULL_CONTAINER, PUSH_CONTAINER, restart_warning, wire_pod_spec
from sync.sources.files import load

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "examples" / "pipeline"


def job(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((PIPELINE / f"{name}.yaml").read_text())
    return doc


def wired(doc: dict[str, Any]) -> dict[str, Any]:
    caches = {(c.namespace, c.name): c for _, c in load([REPO / "examples"]).caches}
    parsed = parse_annotations(doc["metadata"]["annotations"])
    assert parsed is not None and not parsed.ignored
    cache = caches[(doc["metadata"]["namespace"], parsed.params.cache)]
    spec = doc["spec"]["template"]["spec"]
    assert restart_warning(spec, parsed.params) is None
    out: dict[str, Any] = wire_pod_spec(spec, parsed.params.with_cache(cache),
                                        namespace=doc["metadata"]["namespace"])
    return out


def test_the_consumer_pulls_what_the_producer_pushes() -> None:
    producer, consumer = job("producer"), job("consumer")
    assert (producer["metadata"]["namespace"], consumer["metadata"]["namespace"]) == (
        "workflows", "workflows")
    pushing, pulling = wired(producer), wired(consumer)
    push = next(c for c in pushing["containers"] if c["name"] == PUSH_CONTAINER)
    artifact = "shared-0.shared.workflows.svc.cluster.local:5000/pipeline/greeting:v1"
    assert artifact in "\n".join(push["command"] + push.get("args", []))
    (pull,) = pulling["initContainers"]
    assert pull["name"] == PULL_CONTAINER
    assert artifact in "\n".join(pull["command"] + pull.get("args", []))
    # the producer writes the file it pushes; the consumer reads it where it is pulled to
    assert "/data/greeting.txt" in producer["spec"]["template"]["spec"]["containers"][0][
        "args"][0]
    assert producer["metadata"]["annotations"][
        "oras.converged-computing.github.io/output-path"] == "/data/greeting.txt"
    assert consumer["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "cat /inputs/greeting.txt"]
