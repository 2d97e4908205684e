"""`make demo` on the test node: the same :class:`tests.harness.demo.Demo` steps, the same
kubectl commands (``kubectl apply -f dist/install/``, ``-f examples/``, the pipeline of
``examples/pipeline/``), then what the demo shows, checked: every OrasCache Ready, the
claims bound to the node's volumes, and the consumer's output being the producer's line,
carried by the cache (the producer's Pod name is in it; the consumer is another Pod).
The teardown undoes the demo and puts the repo's CRDs back for the tests that follow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib import schema
from tests.harness import LocalCluster
from tests.harness.crds import install_crds
from tests.harness.demo import CONSUMER, PRODUCER, WORKFLOWS, Demo
from tests.harness.node import STORAGE_CLASS, Node
from tests.integration.conftest import repo_crds

pytestmark = pytest.mark.timeout(900)
LINE = re.compile(r"^hello from (pipeline-producer-[a-z0-9]+), \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def demo(cluster: LocalCluster, node: Node) -> Iterator[Demo]:
    said: list[str] = []
    ran = Demo(cluster, say=said.append)
    yield ran
    print("\n".join(said))
    ran.clean()
    install_crds(cluster, repo_crds())


def job_pod(api: ApiClient, job: str) -> client.V1Pod:
    (pod,) = client.CoreV1Api(api).list_namespaced_pod(
        WORKFLOWS, label_selector=f"job-name={job}").items
    return pod


def test_the_demo_pipeline_carries_the_producers_line_through_the_cache(
    cluster: LocalCluster, demo: Demo
) -> None:
    output = demo.run().strip()
    print(f"\ndemo steps: {', '.join(f'{k} {v:.1f} s' for k, v in demo.timings.items())}")
    with cluster.api_client() as api:
        caches = client.CustomObjectsApi(api).list_cluster_custom_object(
            schema.GROUP, schema.VERSION, schema.PLURAL)["items"]
        ready = {(c["metadata"]["namespace"], c["metadata"]["name"]):
                 {x["type"]: x["status"] for x in c["status"]["conditions"]}["Ready"]
                 for c in caches}
        assert ready == {("default", "oras"): "True", (WORKFLOWS, "persistent"): "True",
                         (WORKFLOWS, "remote"): "True", (WORKFLOWS, "shared"): "True"}
        claims = client.CoreV1Api(api).list_namespaced_persistent_volume_claim(WORKFLOWS).items
        assert sorted((c.status.phase, c.spec.storage_class_name) for c in claims) == [
            ("Bound", STORAGE_CLASS), ("Bound", STORAGE_CLASS)]  # persistent's, shared's

        producer, consumer = job_pod(api, PRODUCER), job_pod(api, CONSUMER)
        # wired by the in-cluster webhook from the annotations
        assert "oras-push" in [c.name for c in producer.spec.containers]
        assert [c.name for c in consumer.spec.init_containers or []] == ["oras-pull"]
        match = LINE.match(output)
        assert match, output
        assert match.group(1) == producer.metadata.name != consumer.metadata.name
        pushed = client.CoreV1Api(api).read_namespaced_pod_log(
            producer.metadata.name, WORKFLOWS, container="oras-push")
        assert "oras-push: done" in pushed and "pipeline/greeting:v1" in pushed, pushed
