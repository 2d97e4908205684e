"""The applier alone against the real API server: first sight after a restart (a new
Applier) checks by dry-run and writes nothing unless a field we set differs, whatever
the server normalises (quantities, defaults inside our items, key order)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kubernetes.client import ApiClient

from sync.apply.applier import Applier
from sync.apply.kube import Kube, Obj
from sync.options import DriftMode
from tests.harness import LocalCluster

OWNER = {"test.example.com/owner": "me"}


class CountingKube(Kube):
    """Counts the requests the applier sends, by kind of request."""

    def __init__(self, api: ApiClient) -> None:
        super().__init__(api)
        self.sent: Counter[str] = Counter()

    def apply(self, obj: Obj, *, field_manager: str, force: bool, dry_run: bool = False) -> Obj:
        self.sent["dry-run" if dry_run else "apply"] += 1
        return super().apply(obj, field_manager=field_manager, force=force, dry_run=dry_run)

    def get(self, res: Any, namespace: str | None, name: str) -> Obj | None:
        self.sent["get"] += 1
        return super().get(res, namespace, name)


def objects(ns: str) -> list[Obj]:
    """Keys in an order the server does not keep, quantities it rewrites (1024Mi -> 1Gi,
    1048576Ki -> 1Gi, 2000m -> 2, 0.5 -> 500m), items it completes with defaults
    (protocol, targetPort, imagePullPolicy, terminationMessagePath ...)."""
    meta = {"namespace": ns, "labels": OWNER}
    container = {"resources": {"limits": {"memory": "1048576Ki", "cpu": "2000m"},
                               "requests": {"memory": "1024Mi", "cpu": "0.5"}},
                 "ports": [{"containerPort": 5000, "name": "http"}],
                 "env": [{"value": "b", "name": "B"}, {"name": "A", "value": "a"}],
                 "image": "registry:3.0.0", "name": "registry"}
    return [
        {"spec": {"ports": [{"port": 5000, "name": "http"}], "clusterIP": "None",
                  "selector": {"app": "n"}},
         "metadata": {**meta, "name": "n"}, "kind": "Service", "apiVersion": "v1"},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "n", **meta},
         "spec": {"serviceName": "n", "selector": {"matchLabels": {"app": "n"}},
                  "template": {"metadata": {"labels": {"app": "n"}},
                               "spec": {"containers": [container]}}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {**meta, "name": "n"},
         "spec": {"resources": {"requests": {"storage": "1048576Ki"}},
                  "accessModes": ["ReadWriteOnce"]}},
    ]


def actions(applier: Applier, objs: list[Obj]) -> list[str]:
    return [c.action for c in applier.apply(objs, owner_labels=OWNER).changes]


def fresh(kube: Kube, drift: DriftMode = "correct") -> Applier:
    """A new applier: what a restarted service or a new leader has."""
    return Applier(kube, concurrency=2, drift=drift)


def test_first_sight_normalisation_is_no_drift(
    api_client: ApiClient, namespace: str, cluster: LocalCluster
) -> None:
    kube = CountingKube(api_client)
    objs = objects(namespace)
    first = fresh(kube)
    assert actions(first, objs) == ["created"] * 3
    first.close()
    sts = kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/n")
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}

    kube.sent.clear()
    restarted = fresh(kube)
    assert actions(restarted, objs) == ["unchanged"] * 3
    assert kube.sent == {"get": 3, "dry-run": 3}, "one dry-run per object, no write"
    kube.sent.clear()
    assert actions(restarted, objs) == ["unchanged"] * 3
    assert kube.sent == {"get": 3}, "then trusted from the record"

    # A hand edit of a field we set, inside an item the server completed with defaults.
    cluster.kubectl("-n", namespace, "set", "env", "statefulset/n", "A=edited")
    kube.sent.clear()
    assert actions(fresh(kube), objs) == ["unchanged", "configured", "unchanged"]
    assert kube.sent == {"get": 3, "dry-run": 3, "apply": 1}
    kube.sent.clear()
    assert actions(fresh(kube), objs) == ["unchanged"] * 3
    assert kube.sent == {"get": 3, "dry-run": 3}


def test_report_mode_names_paths_and_writes_nothing(
    api_client: ApiClient, namespace: str, cluster: LocalCluster
) -> None:
    kube = CountingKube(api_client)
    objs = objects(namespace)
    assert actions(fresh(kube), objs) == ["created"] * 3
    cluster.kubectl("-n", namespace, "set", "env", "statefulset/n", "B=edited")
    cluster.kubectl("-n", namespace, "scale", "statefulset", "n", "--replicas=2")
    kube.sent.clear()
    reporter = fresh(kube, "report")
    changes = reporter.apply(objs, owner_labels=OWNER)
    assert [c.action for c in changes.changes] == ["unchanged", "drifted", "unchanged"]
    assert changes.changes[1].paths == ("spec.template.spec.containers[0].env[0].value",)
    assert kube.sent == {"get": 3, "dry-run": 3}
    assert reporter.drifted_count() == 1
    sts = kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/n")
    assert sts["spec"]["replicas"] == 2  # not a field we set: nobody's drift
    assert sts["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "edited"
