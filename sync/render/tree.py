"""A tree of OrasCache files rendered to the labelled objects of one ApplySet, all or
nothing: what the revision sources (git, OCI) and `orascache diff` apply or compare."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from constructs_lib import Manifest, OrasCache
from sync.apply.applier import ObjectRef
from sync.apply.applyset import ApplySet
from sync.apply.kube import Obj, resource_for
from sync.render.parallel import render_parallel
from sync.sources.files import load


@dataclass
class Desired:
    objects: list[Obj] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    caches: int = 0


def render_tree(root: Path, path: str, applyset: ApplySet, default_namespace: str,
                memo: RenderMemo | None = None) -> Desired:
    """Parse every OrasCache under root/path and render them all (this thread only)."""
    rel = path.strip("/")
    target = root / rel if rel not in ("", ".") else root
    if not Path(os.path.realpath(target)).is_relative_to(os.path.realpath(root)):
        return Desired(errors=[f"path {path!r} is outside the repository"])
    return render_paths([target], applyset, default_namespace, root=root, memo=memo)


class RenderMemo:
    """Manifests of the caches rendered for the previous revision, keyed by the whole
    parsed cache: a commit that changes one file of 1000 renders one cache, not 1000.
    Holds only the last revision's caches, as zlib-compressed JSON (level 1: a few
    microseconds a cache; the cluster source's memo does the same)."""

    def __init__(self, workers: int | None = None) -> None:
        self._rendered: dict[bytes, bytes] = {}
        self._workers = workers

    def render(self, caches: Sequence[OrasCache]) -> list[list[Manifest]]:
        # The key: a digest of the whole parsed cache (its repr is ten times longer).
        keys = [hashlib.blake2b(repr(c).encode(), digest_size=16).digest() for c in caches]
        missing = {k: c for k, c in zip(keys, caches, strict=True) if k not in self._rendered}
        fresh = dict(zip(missing, render_parallel(missing.values(), self._workers),
                         strict=True))
        kept = {k: self._rendered.get(k) or zlib.compress(json.dumps(fresh[k].manifests)
                                                          .encode(), 1)
                for k in keys}
        self._rendered = kept
        # Fresh renders are new dictionaries already; kept ones are copied by the parse.
        return [fresh[k].manifests if k in fresh else json.loads(zlib.decompress(kept[k]))
                for k in keys]


def render_paths(paths: Sequence[Path], applyset: ApplySet, default_namespace: str,
                 root: Path | None = None, memo: RenderMemo | None = None) -> Desired:
    """Render the caches under `paths` to labelled objects, or every error (file, document
    and field path; relative to `root` when given)."""
    loaded = load(paths)
    prefix = f"{root}/" if root is not None else "\0"
    if loaded.errors:
        return Desired(errors=[str(e).replace(prefix, "") for e in loaded.errors])
    caches = [replace(c, namespace=c.namespace or default_namespace) for _, c in loaded.caches]
    desired = Desired(caches=len(caches))
    try:
        rendered = (memo or RenderMemo()).render(caches)
    except Exception as exc:  # a construct error must not stop the service
        return Desired(errors=[f"render failed: {exc}"])
    seen: dict[ObjectRef, str] = {}
    for (where, _), manifests in zip(loaded.caches, rendered, strict=True):
        source = where.replace(prefix, "")
        for manifest in manifests:
            obj = applyset.label(manifest)
            ref = ObjectRef.of(obj)
            try:
                resource_for(obj)
            except KeyError as exc:
                desired.errors.append(f"{source}: {exc.args[0]}")
                continue
            if ref in seen:
                desired.errors.append(f"{source}: renders {ref}, already rendered by "
                                      f"{seen[ref]}")
            seen[ref] = source
            desired.objects.append(obj)
    if desired.errors:
        desired.objects = []
    return desired
