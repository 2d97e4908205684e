"""The applier's decisions: projection, hashes, ownership, and its request plan.

`_RecordingKube` answers in memory and records each request: these tests check the plan
(which requests, in which order, forced or not), which a real API server does not show:
its request counters are shared by every client of the test cluster. The outcomes of the
same cases against a real server are in tests/integration/test_applier.py."""

from __future__ import annotations

from typing import Any

import pytest

from sync.apply.applier import (
    HASH_ANNOTATION,
    Applier,
    Change,
    ChangeSet,
    ObjectRef,
    content_hash,
    differing_paths,
    is_ours,
    project,
    with_hash,
)
from sync.apply.kube import ApiError
from sync.options import DriftMode

REF = ObjectRef("apps/v1", "StatefulSet", "ns", "c")


def test_projection_follows_rendered_paths_only() -> None:
    rendered = {"spec": {"replicas": 1, "template": {"containers": [{"image": "a"}]}}}
    live = {"spec": {"replicas": 3, "extra": 1, "template": {"containers": [
        {"image": "a", "imagePullPolicy": "Always"}]}}, "status": {"x": 1}}
    assert project(rendered, live) == {
        "spec": {"replicas": 3, "template": {"containers": [{"image": "a"}]}}}


def test_hash_is_stable_and_changes_with_content() -> None:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"x": 1}}
    assert content_hash(obj) == content_hash(dict(reversed(list(obj.items()))))
    assert with_hash(obj)["metadata"]["annotations"] != with_hash(
        {**obj, "spec": {"x": 2}})["metadata"]["annotations"]
    assert "annotations" not in obj["metadata"], "input not mutated"


def test_ownership_is_by_label() -> None:
    labels = {"cache.converged-computing.github.io/cache": "c"}
    assert is_ours({"metadata": {"labels": {**labels, "x": "y"}}}, labels)
    assert not is_ours({"metadata": {}}, labels)


def test_changeset_summary() -> None:
    changes = ChangeSet([Change(REF, "created"), Change(REF, "unchanged")])
    assert changes.writes == 1 and changes.ok
    assert changes.summary() == "created StatefulSet/ns/c"
    assert not ChangeSet([Change(REF, "conflict", "x")]).ok


class _RecordingKube:
    """Answers apply/get in memory and records the calls: the applier's request plan.

    Kept on purpose: a real API server produces these cases (tests/integration/
    test_applier.py), but not the plan (no GET before a create, never a forced apply over a
    foreign object): its request counters are shared by every client of the test cluster."""

    def __init__(self, existing: dict[str, object] | None = None, conflict: bool = False):
        self.calls: list[tuple[str, bool | None]] = []
        self.preconditions: list[str | None] = []  # metadata.resourceVersion of each apply
        self.existing = existing
        self.conflict = conflict

    def apply(self, obj: dict[str, Any], *, field_manager: str, force: bool,
              dry_run: bool = False) -> object:
        if dry_run:
            self.calls.append(("dry-run", force))
            return {**obj, "metadata": {**obj["metadata"], "resourceVersion": "7"}}
        self.calls.append(("apply", force))
        self.preconditions.append(obj["metadata"].get("resourceVersion"))
        if self.conflict and not force:
            raise ApiError(409, "Conflict", None)
        return obj

    def get(self, _res: object, _ns: object, _name: str) -> object:
        self.calls.append(("get", None))
        return self.existing


def _svc() -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"owner": "x"}},
            "spec": {"clusterIP": "None"}}


def test_known_absent_object_is_created_without_a_get_and_without_force() -> None:
    kube = _RecordingKube()
    applier = Applier(kube)  # type: ignore[arg-type]
    changes = applier.apply([_svc()], owner_labels={"owner": "x"}, live=lambda _r: None,
                            absent=lambda _r: True)
    applier.close()
    assert [c.action for c in changes.changes] == ["created"]
    assert kube.calls == [("apply", False)]
    assert kube.preconditions == ["1"]  # create-only: an existing object fails with 409


def test_absent_from_a_cache_but_applied_by_us_gets_first() -> None:
    """The caller's cache lags behind our own create: no second blind create."""
    kube = _RecordingKube()
    applier = Applier(kube)  # type: ignore[arg-type]
    for _ in range(2):
        applier.apply([_svc()], owner_labels={"owner": "x"}, live=lambda _r: None,
                      absent=lambda _r: True)
    applier.close()
    assert kube.calls == [("apply", False), ("get", None), ("apply", True)]
    assert kube.preconditions == ["1", None]


def test_foreign_object_appearing_before_a_create_is_a_conflict_not_a_takeover() -> None:
    foreign = {**_svc(), "metadata": {"name": "a", "namespace": "ns", "managedFields": [
        {"manager": "kubectl"}]}}
    kube = _RecordingKube(existing=foreign, conflict=True)
    applier = Applier(kube)  # type: ignore[arg-type]
    changes = applier.apply([_svc()], owner_labels={"owner": "x"}, live=lambda _r: None,
                            absent=lambda _r: True)
    applier.close()
    assert [c.action for c in changes.changes] == ["conflict"]
    assert "kubectl" in changes.changes[0].message
    assert kube.calls == [("apply", False), ("get", None)]  # never a forced apply


def test_unknown_absence_gets_first() -> None:
    kube = _RecordingKube()
    applier = Applier(kube)  # type: ignore[arg-type]
    applier.apply([_svc()], owner_labels={"owner": "x"}, live=lambda _r: None,
                  absent=lambda _r: False)
    applier.close()
    assert kube.calls == [("get", None), ("apply", True)]


def _live_svc(cluster_ip: str = "None") -> dict[str, Any]:
    """What the server holds for `_svc()` as applied, with its normalisation: the hash
    annotation, a resourceVersion, and a defaulted field beside the ones we set."""
    obj = with_hash(_svc())
    meta = {**obj["metadata"], "resourceVersion": "7"}
    return {**obj, "metadata": meta, "spec": {"clusterIP": cluster_ip, "type": "ClusterIP"}}


def test_first_sight_is_checked_by_a_dry_run_and_not_written_when_nothing_drifted() -> None:
    kube = _RecordingKube()
    applier = Applier(kube)  # type: ignore[arg-type]
    for _ in range(2):
        changes = applier.apply([_svc()], owner_labels={"owner": "x"},
                                live=lambda _r: _live_svc())
        assert [c.action for c in changes.changes] == ["unchanged"]
    applier.close()
    assert kube.calls == [("dry-run", True)]  # once: the second pass trusts the record


@pytest.mark.parametrize("mode", ["correct", "report"])
def test_first_sight_of_a_hand_edit(mode: DriftMode) -> None:
    """The hash annotation still matches, a field we set does not: corrected, or reported
    with its path and left alone (then reported again without a request)."""
    kube = _RecordingKube()
    applier = Applier(kube, drift=mode)  # type: ignore[arg-type]
    edited = _live_svc("10.0.0.9")
    first = applier.apply([_svc()], owner_labels={"owner": "x"}, live=lambda _r: edited)
    second = applier.apply([_svc()], owner_labels={"owner": "x"}, live=lambda _r: edited)
    applier.close()
    if mode == "correct":
        assert [c.action for c in first.changes] == ["configured"]
        assert kube.calls[:2] == [("dry-run", True), ("apply", True)]
        return
    assert [c.action for c in first.changes + second.changes] == ["drifted", "drifted"]
    assert first.changes[0].paths == ("spec.clusterIP",)
    assert first.drift() == "Service/ns/a: spec.clusterIP"
    assert first.writes == 0 and first.ok
    assert kube.calls == [("dry-run", True)]
    assert applier.drifted_count() == 1


def test_a_new_render_is_applied_without_a_dry_run() -> None:
    old = _live_svc()
    old["metadata"]["annotations"] = {HASH_ANNOTATION: "older"}
    kube = _RecordingKube(existing=old)
    applier = Applier(kube, drift="report")  # type: ignore[arg-type]
    changes = applier.apply([_svc()], owner_labels={"owner": "x"}, live=lambda _r: old)
    applier.close()
    assert [c.action for c in changes.changes] == ["configured"]
    assert kube.calls == [("get", None), ("apply", True)]


def test_differing_paths() -> None:
    before = {"spec": {"replicas": 4, "template": {"spec": {"containers": [
        {"name": "registry", "image": "evil:1"}]}}}, "metadata": {"labels": {"a": "1"}}}
    after = {"spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "registry", "image": "registry:3"}]}}}, "metadata": {"labels": {"a": "1"}}}
    assert differing_paths(before, after) == [
        "spec.replicas", "spec.template.spec.containers[0].image"]
    assert differing_paths({"x": [1, 2]}, {"x": [1]}) == ["x"]
    assert differing_paths({"x": None}, {"x": {"y": 1}}) == ["x"]
    assert differing_paths({"a": {"b": 1}}, {"a": {"b": 1}}) == []
