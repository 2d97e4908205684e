"""`orascache diff`: what applying would change, per object, as unified diffs.

Each rendered object (labelled exactly as the git source applies it) goes through a
server-side *dry-run* apply with the service's field manager, so defaults, admission and
other managers' fields are accounted for; the result is compared with the live object
after removing bookkeeping noise (managedFields, resourceVersion, uid, generation,
creationTimestamp, status, the rendered-hash annotation). Members of the ApplySet that
would be pruned appear as removals. Exit status: 0 no difference, 1 differences,
2 errors.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from sync.apply.applier import FIELD_MANAGER, HASH_ANNOTATION, ObjectRef, with_hash
from sync.apply.applyset import ApplySet, ApplySetError, stale
from sync.apply.kube import ApiError, Kube, Obj, resource_for

NOISE = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp")


@dataclass
class ObjectDiff:
    ref: ObjectRef
    text: str  # unified diff; empty when equal


def strip(obj: Obj | None) -> Obj | None:
    """The object without fields the server keeps for itself."""
    if obj is None:
        return None
    out: Obj = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata", {})
    for key in NOISE:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    annotations.pop(HASH_ANNOTATION, None)
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if not annotations:
        meta.pop("annotations", None)
    return out


def _lines(obj: Obj | None) -> list[str]:
    if obj is None:
        return []
    text: str = yaml.safe_dump(obj, sort_keys=True, default_flow_style=False)
    return text.splitlines(keepends=True)


def unified(ref: ObjectRef, live: Obj | None, merged: Obj | None) -> str:
    name = str(ref)
    return "".join(difflib.unified_diff(
        _lines(strip(live)), _lines(strip(merged)),
        fromfile=f"live/{name}" if live is not None else "/dev/null",
        tofile=f"merged/{name}" if merged is not None else "/dev/null"))


def diff_objects(kube: Kube, objects: Sequence[Obj], applyset: ApplySet | None = None,
                 ) -> tuple[list[ObjectDiff], list[str]]:
    """(diffs of every object that would change, errors)."""
    diffs: list[ObjectDiff] = []
    errors: list[str] = []
    for obj in objects:
        ref = ObjectRef.of(obj)
        res = resource_for(obj)
        try:
            live = kube.get(res, ref.namespace or None, ref.name)
            merged = kube.apply(with_hash(obj), field_manager=FIELD_MANAGER, force=True,
                                dry_run=True)
        except ApiError as err:
            errors.append(f"{ref}: {err.message}")
            continue
        text = unified(ref, live, merged)
        if text:
            diffs.append(ObjectDiff(ref, text))
    if applyset is not None:
        try:
            parent = applyset.read_parent(kube)
            members = {ObjectRef.of(m): m for m in applyset.members(kube, parent)}
        except (ApiError, ApplySetError) as exc:
            text = exc.message if isinstance(exc, ApiError) else str(exc)
            errors.append(f"ApplySet {applyset.namespace}/{applyset.name}: {text}")
            members = {}
        for ref in stale(members, (ObjectRef.of(o) for o in objects)):
            diffs.append(ObjectDiff(ref, unified(ref, members[ref], None)))
    return diffs, errors


def report(diffs: Iterable[ObjectDiff]) -> str:
    return "".join(d.text for d in diffs)


def exit_code(diffs: Sequence[Any], errors: Sequence[str]) -> int:
    if errors:
        return 2
    return 1 if diffs else 0
