"""Pure parts of the git source's inventory: ApplySet id, labels, parent, prune set."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import yaml

from sync import revision_sync
from sync.apply.applier import ObjectRef
from sync.apply.applyset import (
    GROUP_KINDS_ANNOTATION,
    ID_LABEL,
    NAMESPACES_ANNOTATION,
    PART_OF_LABEL,
    TOOLING_ANNOTATION,
    ApplySet,
    MemberIndex,
    applyset_id,
    group_kind,
    group_kinds,
    parse_group_kind,
    split,
    stale,
)
from sync.apply.diff import exit_code, strip, unified


def test_id_is_the_kep_3659_formula() -> None:
    # kubectl: base64.RawURLEncoding(sha256("<name>.<namespace>.<Kind>.<group>"))
    digest = hashlib.sha256(b"orascache-git.team-a.ConfigMap.").digest()
    raw = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert applyset_id("orascache-git", "team-a") == f"applyset-{raw}-v1"
    assert "=" not in raw and "+" not in raw and "/" not in raw
    assert applyset_id("a", "b") != applyset_id("a", "c")
    # Within the 63-character limit of a label value.
    assert len(applyset_id("x" * 253, "y" * 63)) <= 63


def test_group_kinds_as_kubectl_writes_them() -> None:
    assert group_kind("v1", "Service") == "Service"
    assert group_kind("apps/v1", "StatefulSet") == "StatefulSet.apps"
    assert parse_group_kind("StatefulSet.apps") == ("StatefulSet", "apps")
    assert parse_group_kind("Service") == ("Service", "")
    refs = [ObjectRef("apps/v1", "StatefulSet", "a", "x"), ObjectRef("v1", "Service", "a", "x")]
    assert group_kinds(refs) == {"Service", "StatefulSet.apps"}
    assert split("") == set() and split("a,b") == {"a", "b"}


def test_parent_manifest_and_member_labels() -> None:
    aset = ApplySet("p", "home")
    parent = aset.parent_manifest({"StatefulSet.apps", "Service"}, {"home", "b", "a"},
                                  {"x/y": "z"})
    meta: dict[str, Any] = parent["metadata"]
    assert (parent["kind"], meta["name"], meta["namespace"]) == ("ConfigMap", "p", "home")
    assert meta["labels"] == {ID_LABEL: aset.id}
    assert meta["annotations"] == {
        TOOLING_ANNOTATION: "orascache/v0.1.0",
        GROUP_KINDS_ANNOTATION: "Service,StatefulSet.apps",
        NAMESPACES_ANNOTATION: "a,b",
        "x/y": "z",
    }
    only_home = aset.parent_manifest({"Service"}, {"home"})
    assert NAMESPACES_ANNOTATION not in only_home["metadata"]["annotations"]
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "s", "labels": {"keep": "me"}}}
    labelled = aset.label(obj)
    assert labelled["metadata"]["labels"] == {"keep": "me", PART_OF_LABEL: aset.id}
    assert obj["metadata"]["labels"] == {"keep": "me"}  # not mutated


def test_stale_is_previous_inventory_minus_new_render() -> None:
    a_sts = ObjectRef("apps/v1", "StatefulSet", "ns", "a")
    a_svc = ObjectRef("v1", "Service", "ns", "a")
    b_sts = ObjectRef("apps/v1", "StatefulSet", "ns", "b")
    other_ns = ObjectRef("apps/v1", "StatefulSet", "other", "a")
    assert stale([a_sts, a_svc, b_sts, other_ns], [b_sts, a_svc]) == [a_sts, other_ns]
    assert stale([], [a_sts]) == []
    assert stale([a_sts], []) == [a_sts]
    # The same group-kind under another API version is the same object.
    assert stale([ObjectRef("apps/v1beta2", "StatefulSet", "ns", "b")], [b_sts]) == []


def test_diff_strips_server_noise() -> None:
    live: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "uid": "u", "resourceVersion": "7", "generation": 1,
                         "creationTimestamp": "t", "managedFields": [{}],
                         "annotations": {"cache.converged-computing.github.io/rendered-hash":
                                         "h"}},
            "data": {"k": "v"}, "status": {"x": 1}}
    assert strip(live) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                           "data": {"k": "v"}}
    ref = ObjectRef("v1", "ConfigMap", "ns", "c")
    merged = {**live, "metadata": {**live["metadata"], "resourceVersion": "8"}}
    assert unified(ref, live, merged) == ""
    changed = {**merged, "data": {"k": "w"}}
    text = unified(ref, live, changed)
    assert "-  k: v\n+  k: w\n" in text and text.startswith("--- live/ConfigMap/ns/c")
    assert exit_code([], []) == 0 and exit_code([text], []) == 1 and exit_code([], ["e"]) == 2


def test_render_memo_renders_only_changed_caches(monkeypatch: Any) -> None:
    from constructs_lib import parse_oras_cache  # noqa: PLC0415
    from sync.render import tree  # noqa: PLC0415

    rendered: list[str] = []
    real = tree.render_parallel

    def counting(caches: Any, workers: int | None = None) -> Any:
        caches = list(caches)
        rendered.extend(c.name for c in caches)
        return real(caches, workers)

    monkeypatch.setattr(tree, "render_parallel", counting)

    def cache(name: str, port: int) -> Any:
        return parse_oras_cache({
            "apiVersion": "cache.converged-computing.github.io/v1alpha1", "kind": "OrasCache",
            "metadata": {"name": name, "namespace": "ns"}, "spec": {"port": port}}, name)

    memo = tree.RenderMemo()
    first = memo.render([cache("a", 5000), cache("b", 5000)])
    assert rendered == ["a", "b"]
    second = memo.render([cache("a", 5000), cache("b", 6000)])
    assert rendered == ["a", "b", "b"]  # only the changed cache again
    assert second[0] == first[0] and second[1] != first[1]
    assert second[1] == real([cache("b", 6000)])[0].manifests


def test_member_index_keeps_what_the_applier_and_prune_read() -> None:
    live = {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u-1",
                         "resourceVersion": "7", "labels": {PART_OF_LABEL: "x"},
                         "managedFields": [{"manager": "orascache"}]},
            "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    index = MemberIndex([live])
    ref = ObjectRef("apps/v1", "StatefulSet", "ns", "a")
    assert list(index) == [ref] and len(index) == 1
    got = index.get(ref)
    assert got == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": "a", "namespace": "ns", "uid": "u-1",
                                "resourceVersion": "7", "labels": {PART_OF_LABEL: "x"}},
                   "spec": {"replicas": 1}}
    assert index.get(ref) is not got  # decoded afresh: a caller may change its copy
    assert index.get(ObjectRef("v1", "Service", "ns", "a")) is None
    assert "managedFields" in live["metadata"] and "status" in live  # not changed


def test_render_compact_by_chunks_equals_render_tree(tmp_path: Path, monkeypatch: Any,
                                                     ) -> None:
    """Chunks of 2 caches, compressed by 3 objects: the same objects as render_tree, in
    order; a duplicate across chunks is found; the memo holds the whole revision."""
    from sync.render import tree  # noqa: PLC0415

    monkeypatch.setattr(tree, "RENDER_CHUNK", 2)
    monkeypatch.setattr(tree, "OBJECT_CHUNK", 3)
    (tmp_path / "caches").mkdir()
    for i in range(5):
        (tmp_path / "caches" / f"c{i}.yaml").write_text(yaml.safe_dump({
            "apiVersion": "cache.converged-computing.github.io/v1alpha1",
            "kind": "OrasCache", "metadata": {"name": f"c{i}"}, "spec": {"port": 5000 + i}}))
    aset = ApplySet("p", "ns")
    whole = tree.render_tree(tmp_path, "caches", aset, "ns")
    rendered: list[str] = []
    real = tree.render_parallel

    def counting(caches: Any, workers: int | None = None) -> Any:
        caches = list(caches)
        rendered.extend(c.name for c in caches)
        return real(caches, workers)

    monkeypatch.setattr(tree, "render_parallel", counting)
    memo = tree.RenderMemo()
    compact = tree.render_compact(tmp_path, "caches", aset, "ns", memo)
    assert not compact.errors and compact.caches == 5 and len(whole.objects) == 10
    assert [len(chunk) for chunk in compact.objects()] == [3, 1, 3, 1, 2]  # 4+4+2 by 3
    assert [o for chunk in compact.objects() for o in chunk] == whole.objects
    assert compact.refs == [ObjectRef.of(o) for o in whole.objects]
    assert rendered == [f"c{i}" for i in range(5)]
    again = tree.render_compact(tmp_path, "caches", aset, "ns", memo)
    assert rendered == [f"c{i}" for i in range(5)]  # the memo kept every chunk's caches
    assert again.chunks == compact.chunks

    (tmp_path / "caches" / "c9.yaml").write_text(yaml.safe_dump({
        "apiVersion": "cache.converged-computing.github.io/v1alpha1",
        "kind": "OrasCache", "metadata": {"name": "c0"}, "spec": {"port": 5000}}))
    dup = tree.render_compact(tmp_path, "caches", aset, "ns", memo)
    assert (dup.chunks, dup.refs) == ([], [])
    assert dup.errors == ["caches/c9.yaml[0]: metadata.name: duplicate of caches/c0.yaml[0]"]
    assert tree.render_compact(tmp_path, "../x", aset, "ns").errors == [
        "path '../x' is outside the repository"]


def test_kept_keeps_the_chunks_and_their_kinds_and_namespaces() -> None:
    from sync.render.tree import OBJECT_CHUNK, Compact  # noqa: PLC0415

    objects = [{"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": f"s{i}", "namespace": "a" if i % 2 else "b"}}
               for i in range(OBJECT_CHUNK + 1)]
    chunks = [zlib.compress(json.dumps(part).encode())
              for part in (objects[:OBJECT_CHUNK], objects[OBJECT_CHUNK:])]
    kept = revision_sync.Kept.of("c0ffee", Compact(chunks, [ObjectRef.of(o) for o in objects]))
    assert [o for chunk in kept.objects() for o in chunk] == objects
    assert (kept.gks, kept.namespaces, kept.errors) == ({"Service"}, {"a", "b"}, ())
