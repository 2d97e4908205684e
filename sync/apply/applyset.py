"""The inventory of the git source: a Kubernetes ApplySet (KEP-3659).

The parent is a ConfigMap labelled `applyset.kubernetes.io/id`; every member carries
`applyset.kubernetes.io/part-of: <id>`. The parent's annotations list the group-kinds
and the other namespaces the members live in, so `kubectl` (and this service) find
every member with one label selector per kind and namespace. The parent also records
the last applied commit, its time and result.

Pure helpers (id, annotation values, inventory difference) are here with no I/O; the
few API calls (read/apply the parent, list members) take a `Kube`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from sync.apply.applier import FIELD_MANAGER, ObjectRef
from sync.apply.kube import RESOURCES, ApiError, Kube, Obj

ID_LABEL = "applyset.kubernetes.io/id"
PART_OF_LABEL = "applyset.kubernetes.io/part-of"
TOOLING_ANNOTATION = "applyset.kubernetes.io/tooling"
GROUP_KINDS_ANNOTATION = "applyset.kubernetes.io/contains-group-kinds"
NAMESPACES_ANNOTATION = "applyset.kubernetes.io/additional-namespaces"
TOOLING = "orascache/v0.1.0"

STATUS_PREFIX = "orascache.converged-computing.github.io/"
LAST_COMMIT = STATUS_PREFIX + "last-applied-commit"
LAST_TIME = STATUS_PREFIX + "last-applied-time"
LAST_RESULT = STATUS_PREFIX + "last-result"
LAST_ATTEMPT = STATUS_PREFIX + "last-attempted-commit"
LAST_MESSAGE = STATUS_PREFIX + "last-message"
SOURCE = STATUS_PREFIX + "source"

CONFIGMAPS = RESOURCES[("v1", "ConfigMap")]
# Members per list request, as client-go's pager (and the informers): the list of ten
# thousand members is never in memory whole, as JSON text and decoded, at once.
LIST_PAGE = 500


class ApplySetError(Exception):
    """The parent cannot be used (e.g. a ConfigMap of that name belongs to someone else)."""


def applyset_id(name: str, namespace: str, kind: str = "ConfigMap", group: str = "") -> str:
    """KEP-3659: `applyset-` + base64url(sha256(<name>.<namespace>.<kind>.<group>)) + `-v1`."""
    digest = hashlib.sha256(f"{name}.{namespace}.{kind}.{group}".encode()).digest()
    return f"applyset-{base64.urlsafe_b64encode(digest).decode().rstrip('=')}-v1"


def group_kind(api_version: str, kind: str) -> str:
    """`Kind.group` as kubectl writes it (`Service`, `StatefulSet.apps`)."""
    group = api_version.rpartition("/")[0]
    return f"{kind}.{group}" if group else kind


def parse_group_kind(value: str) -> tuple[str, str]:
    """Inverse of `group_kind`: (kind, group)."""
    kind, _, group = value.partition(".")
    return kind, group


def group_kinds(refs: Iterable[ObjectRef]) -> set[str]:
    return {group_kind(r.api_version, r.kind) for r in refs}


def namespaces_of(refs: Iterable[ObjectRef]) -> set[str]:
    return {r.namespace for r in refs if r.namespace}


def join(values: Iterable[str]) -> str:
    return ",".join(sorted(set(values)))


def split(value: str | None) -> set[str]:
    return {v for v in (value or "").split(",") if v}


class MemberIndex:
    """The live members by ref, each kept as compact JSON without `managedFields` and
    `status`, decoded on each read: what a pass over thousands of members holds.

    The applier compares only the fields it sets (never status), reports a conflict from
    a fresh GET (managedFields), and a prune needs the uid.
    """

    def __init__(self, members: Iterable[Obj] = ()) -> None:
        self._by_ref: dict[ObjectRef, bytes] = {}
        for obj in members:
            slim = {k: v for k, v in obj.items() if k != "status"}
            slim["metadata"] = {k: v for k, v in obj["metadata"].items()
                                if k != "managedFields"}
            self._by_ref[ObjectRef.of(slim)] = json.dumps(slim, separators=(",", ":")).encode()

    def get(self, ref: ObjectRef) -> Obj | None:
        blob = self._by_ref.get(ref)
        if blob is None:
            return None
        obj: Obj = json.loads(blob)
        return obj

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._by_ref)

    def __len__(self) -> int:
        return len(self._by_ref)


def stale(previous: Iterable[ObjectRef], rendered: Iterable[ObjectRef]) -> list[ObjectRef]:
    """What to prune: members of the previous inventory the new render no longer has."""
    keep = {(group_kind(r.api_version, r.kind), r.namespace, r.name) for r in rendered}
    return sorted(r for r in previous
                  if (group_kind(r.api_version, r.kind), r.namespace, r.name) not in keep)


@dataclass(frozen=True)
class ApplySet:
    name: str
    namespace: str

    @property
    def id(self) -> str:
        return applyset_id(self.name, self.namespace)

    @property
    def member_labels(self) -> dict[str, str]:
        return {PART_OF_LABEL: self.id}

    def label(self, obj: Obj) -> Obj:
        """A copy of a rendered object carrying the part-of label."""
        meta = dict(obj["metadata"])
        meta["labels"] = {**(meta.get("labels") or {}), **self.member_labels}
        return {**obj, "metadata": meta}

    def parent_manifest(self, gks: Iterable[str], namespaces: Iterable[str],
                        extra: Mapping[str, str] | None = None) -> Obj:
        annotations = {
            TOOLING_ANNOTATION: TOOLING,
            GROUP_KINDS_ANNOTATION: join(gks),
            **(extra or {}),
        }
        others = set(namespaces) - {self.namespace}
        if others:
            annotations[NAMESPACES_ANNOTATION] = join(others)
        return {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "labels": {ID_LABEL: self.id}, "annotations": annotations},
        }

    # ----- API ---------------------------------------------------------------------------
    def read_parent(self, kube: Kube) -> Obj | None:
        """The live parent; ApplySetError when the ConfigMap exists but is not ours."""
        live = kube.get(CONFIGMAPS, self.namespace, self.name)
        if live is None:
            return None
        labels = live["metadata"].get("labels") or {}
        if labels.get(ID_LABEL) != self.id:
            raise ApplySetError(f"ConfigMap {self.namespace}/{self.name} exists without the "
                                f"label {ID_LABEL}={self.id}: refusing to use it as the "
                                "ApplySet parent (choose another --applyset-name)")
        return live

    def write_parent(self, kube: Kube, gks: Iterable[str], namespaces: Iterable[str],
                     status: Mapping[str, str]) -> Obj:
        """Server-side apply of the parent with its member metadata and status."""
        return kube.apply(self.parent_manifest(gks, namespaces, status),
                          field_manager=FIELD_MANAGER, force=True)

    def members(self, kube: Kube, parent: Obj | None, extra_gks: Iterable[str] = (),
                extra_namespaces: Iterable[str] = ()) -> list[Obj]:
        """Every live member: objects of the recorded kinds, in the recorded namespaces,
        carrying our part-of label."""
        return list(self.listed(kube, parent, extra_gks, extra_namespaces))

    def member_index(self, kube: Kube, parent: Obj | None, extra_gks: Iterable[str] = (),
                     extra_namespaces: Iterable[str] = ()) -> MemberIndex:
        """`members`, compact (see MemberIndex)."""
        return MemberIndex(self.listed(kube, parent, extra_gks, extra_namespaces))

    def listed(self, kube: Kube, parent: Obj | None, extra_gks: Iterable[str] = (),
               extra_namespaces: Iterable[str] = ()) -> Iterator[Obj]:
        """`members`, one page of LIST_PAGE at a time."""
        annotations = (parent or {}).get("metadata", {}).get("annotations") or {}
        gks = split(annotations.get(GROUP_KINDS_ANNOTATION)) | set(extra_gks)
        namespaces = (split(annotations.get(NAMESPACES_ANNOTATION)) | set(extra_namespaces)
                      | {self.namespace})
        by_gk = {group_kind(r.api_version, r.kind): r for r in RESOURCES.values()}
        for gk in sorted(gks):
            res = by_gk.get(gk)
            if res is None:
                raise ApplySetError(f"unsupported kind {gk} in the ApplySet parent")
            scopes: list[str | None] = [*sorted(namespaces)] if res.namespaced else [None]
            for ns in scopes:
                token: str | None = None
                while True:
                    try:
                        listed = kube.list(res, ns, label_selector=f"{PART_OF_LABEL}={self.id}",
                                           limit=LIST_PAGE, **{"continue": token})
                    except ApiError as err:
                        if err.status == 404:  # namespace or kind gone
                            break
                        raise
                    for item in listed.get("items", []):
                        item.setdefault("apiVersion", res.api_version)
                        item.setdefault("kind", res.kind)
                        yield item
                    token = listed.get("metadata", {}).get("continue")
                    if not token:
                        break
