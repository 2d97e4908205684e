"""OrasWorkflowStep: a typed Job wired exactly like wire_pod_spec, and the example pipeline."""

from __future__ import annotations

from typing import Any

import cdk8s
import kubernetes_validate
import pytest

from constructs_lib import OrasCache, OrasWorkflowStep, Output, WiringError, parse_oras_cache
from constructs_lib.workflow import wire_pod_spec
from constructs_lib.workflow_example import ARTIFACT, render_pipeline
from constructs_lib.workflow_params import PULL_CONTAINER, PUSH_CONTAINER, WorkflowParams


def cache(spec: dict[str, Any]) -> OrasCache:
    doc = {"apiVersion": "cache.converged-computing.github.io/v1alpha1", "kind": "OrasCache",
           "metadata": {"name": "shared", "namespace": "workflows"}, "spec": spec}
    parsed = parse_oras_cache(doc, "test")
    assert isinstance(parsed, OrasCache), parsed
    return parsed


def synth(**kwargs: Any) -> tuple[OrasWorkflowStep, list[dict[str, Any]]]:
    chart = cdk8s.Chart(cdk8s.App(), "t", disable_resource_name_hashes=True)
    step = OrasWorkflowStep(chart, "Step", **kwargs)
    return step, list(chart.to_json())


def test_step_renders_a_valid_job_with_the_wired_pod_spec() -> None:
    step, (job,) = synth(
        name="s1", namespace="workflows", cache=cache({"port": 8080, "secrets": {"orasEnv": "e"}}),
        image="busybox:1.37.0", command=["/bin/sh", "-c"], args=["echo 'a  b' > out.txt"],
        working_dir="/work", inputs=["x/in:1"], outputs=[Output("x/out:1", "out.txt")],
        env={"B": "2", "A": "1"},
    )
    kubernetes_validate.validate(job, "1.37.0", strict=True)
    assert job["kind"] == "Job" and job["metadata"]["name"] == "s1"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert [c["name"] for c in pod["initContainers"]] == [PULL_CONTAINER]
    assert [c["name"] for c in pod["containers"]] == ["step", PUSH_CONTAINER]
    step_c = pod["containers"][0]
    assert step_c["command"][3:] == ["oras-wrapper", "/bin/sh", "-c", "echo 'a  b' > out.txt"]
    assert step_c["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert "shared-0.shared.workflows.svc.cluster.local:8080/x/in:1" in (
        pod["initContainers"][0]["command"][2])
    assert pod["containers"][1]["envFrom"] == [{"secretRef": {"name": "e"}}]
    # The typed rendering holds exactly what the wiring returned.
    assert step.pod_spec == wire_pod_spec(
        {"restartPolicy": "Never", "containers": [{
            "name": "step", "image": "busybox:1.37.0", "command": ["/bin/sh", "-c"],
            "args": ["echo 'a  b' > out.txt"], "workingDir": "/work",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]},
        step.params, namespace="workflows")
    assert step.params == WorkflowParams.for_cache(
        cache({"port": 8080, "secrets": {"orasEnv": "e"}}), inputs=("x/in:1",),
        outputs=(Output("x/out:1", "out.txt"),), container="step")


def test_step_with_a_cache_name_uses_the_port_given() -> None:
    _, (job,) = synth(name="s", namespace="ns", cache="c", port=9000, image="i",
                      command=["run"], working_dir="/w", inputs=["a:1"])
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    assert "c-0.c.ns.svc.cluster.local:9000/a:1" in init["command"][2]


def test_step_errors_are_wiring_errors() -> None:
    with pytest.raises(WiringError, match="command is empty"):
        synth(name="s", image="i", command=[], outputs=[Output("o:1", "/o/f")])
    with pytest.raises(WiringError, match="has no workingDir"):
        synth(name="s", image="i", command=["run"], outputs=[Output("o:1")])


def test_example_pipeline_shares_one_artifact() -> None:
    produce, consume = render_pipeline(cache({}))
    for job in (produce, consume):
        kubernetes_validate.validate(job, "1.37.0", strict=True)
    push = produce["spec"]["template"]["spec"]["containers"][1]["command"][2]
    pull = consume["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
    ref = f"shared-0.shared.workflows.svc.cluster.local:5000/{ARTIFACT}"
    assert f"oras push --no-tty --plain-http {ref} results step1.log" in push
    assert f"oras pull --no-tty --plain-http -o \"$out\" {ref}" in pull
