"""The informer's owner index."""

from __future__ import annotations

from sync.apply.kube import RESOURCES, Kube
from sync.sources.informer import Informer


def test_informer_index_follows_label_changes_and_deletes() -> None:
    label = "cache.converged-computing.github.io/cache"
    informer = Informer(Kube(None), RESOURCES[("v1", "Service")],  # type: ignore[arg-type]
                        index_label=label, on_event=lambda *_: None)

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
