"""The informer's owner index, its transform and its compact store."""

from __future__ import annotations

import pytest

from sync.apply.kube import RESOURCES, Kube
from sync.sources.informer import Informer, keep_status


@pytest.mark.parametrize("compact", [False, True])
def test_informer_index_follows_label_changes_and_deletes(compact: bool) -> None:
    label = "cache.converged-computing.github.io/cache"
    informer = Informer(Kube(None), RESOURCES[("v1", "Service")],  # type: ignore[arg-type]
                        index_label=label, on_event=lambda *_: None, compact=compact)

    def svc(name: str, owner: str | None) -> dict[str, object]:
        labels = {label: owner} if owner else {}
        return {"metadata": {"name": name, "namespace": "ns", "labels": labels}}

    informer._put("ns/a", svc("a", "c1"))
    informer._put("ns/b", svc("b", "c1"))
    assert [o["metadata"]["name"] for o in informer.by_index("ns", "c1")] == ["a", "b"]
    informer._put("ns/b", svc("b", "c2"))  # relabelled
    assert [o["metadata"]["name"] for o in informer.by_index("ns", "c1")] == ["a"]
    assert [o["metadata"]["name"] for o in informer.by_index("ns", "c2")] == ["b"]
    informer._put("ns/a", None)  # deleted
    assert informer.by_index("ns", "c1") == []
    assert informer.by_index("other", "c2") == []
    assert [o["metadata"]["name"] for o in informer.items()] == ["b"]


def test_children_keep_metadata_spec_and_the_status_ready_reads() -> None:
    informer = Informer(Kube(None), RESOURCES[("apps/v1", "StatefulSet")],  # type: ignore[arg-type]
                        transform=keep_status(("observedGeneration", "readyReplicas")),
                        compact=True)
    sts = {"metadata": {"name": "c", "namespace": "ns", "managedFields": [{"manager": "x"}]},
           "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "r"}]}}},
           "status": {"observedGeneration": 3, "readyReplicas": 1, "replicas": 2,
                      "currentRevision": "c-7d", "conditions": []}}
    stored = informer._shaped(sts)
    informer._put("ns/c", stored)
    assert isinstance(informer._store["ns/c"], bytes)
    assert informer.get("ns/c") == {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "c", "namespace": "ns"}, "spec": sts["spec"],
        "status": {"observedGeneration": 3, "readyReplicas": 1}}
    assert informer.get("ns/c") is not informer.get("ns/c"), "a copy per read"
    assert "status" not in informer._shaped({"metadata": {"name": "s"}, "status": {"x": 1}})


def test_list_is_read_by_pages_and_replaces_the_store() -> None:
    seen: list[tuple[str, str]] = []
    informer = Informer(Kube(None), RESOURCES[("v1", "Service")],  # type: ignore[arg-type]
                        index_label="owner", on_event=lambda t, o: seen.append(
                            (t, o["metadata"]["name"])), compact=True)
    informer._put("ns/old", {"metadata": {"name": "old", "namespace": "ns"}})
    pages = {None: (["a", "b"], "t1"), "t1": (["c"], None)}
    asked: list[dict[str, object]] = []

    def list_fn(**query: object) -> dict[str, object]:
        asked.append(query)
        names, token = pages[query["continue"]]  # type: ignore[index]
        return {"metadata": {"resourceVersion": "7", "continue": token},
                "items": [{"metadata": {"name": n, "namespace": "ns",
                                        "labels": {"owner": "x"}}} for n in names]}

    informer._list_fn = list_fn
    assert informer.list_now() == "7"
    assert [q["limit"] for q in asked] == [500, 500]
    assert seen == [("DELETED", "old"), ("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert [o["metadata"]["name"] for o in informer.by_index("ns", "x")] == ["a", "b", "c"]
    assert informer.get("ns/old") is None
