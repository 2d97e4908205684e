"""A tree of OrasCache files rendered to the labelled objects of one ApplySet, all or
nothing: what the revision sources (git, OCI) and `orascache diff` apply or compare."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from constructs_lib import Manifest, OrasCache
from sync.apply.applier import ObjectRef
from sync.apply.applyset import ApplySet
from sync.apply.kube import Obj, resource_for
from sync.render.parallel import render_parallel
from sync.sources.files import load

# render_compact: caches rendered at a time (at or above the ~800 caches where render
# helpers start, so a big revision of distinct specs still gets them), and objects per
# compressed chunk (what an apply pass decodes at a time).
RENDER_CHUNK = 1000
OBJECT_CHUNK = 500


@dataclass
class Desired:
    objects: list[Obj] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    caches: int = 0


@dataclass
class Compact:
    """`Desired`, with the objects as zlib-compressed JSON chunks decoded one at a time:
    at thousands of caches the rendered objects as dictionaries would be most of what a
    revision source holds (docs/performance.md)."""

    chunks: list[bytes] = field(default_factory=list)
    refs: list[ObjectRef] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    caches: int = 0

    def objects(self) -> Iterator[list[Obj]]:
        for chunk in self.chunks:
            objs: list[Obj] = json.loads(zlib.decompress(chunk))
            yield objs


def _target(root: Path, path: str) -> Path | None:
    rel = path.strip("/")
    target = root / rel if rel not in ("", ".") else root
    if not Path(os.path.realpath(target)).is_relative_to(os.path.realpath(root)):
        return None
    return target


def render_tree(root: Path, path: str, applyset: ApplySet, default_namespace: str,
                memo: RenderMemo | None = None) -> Desired:
    """Parse every OrasCache under root/path and render them all (this thread only)."""
    target = _target(root, path)
    if target is None:
        return Desired(errors=[f"path {path!r} is outside the repository"])
    return render_paths([target], applyset, default_namespace, root=root, memo=memo)


def render_compact(root: Path, path: str, applyset: ApplySet, default_namespace: str,
                   memo: RenderMemo | None = None) -> Compact:
    """`render_tree`, RENDER_CHUNK caches at a time, each chunk compressed before the next
    is rendered: the decoded objects of a whole revision are never in memory at once."""
    target = _target(root, path)
    if target is None:
        return Compact(errors=[f"path {path!r} is outside the repository"])
    out, report = Compact(), Desired()
    for objects in _rendered([target], applyset, default_namespace, root=root, memo=memo,
                             report=report, size=RENDER_CHUNK):
        out.refs += [ObjectRef.of(o) for o in objects]
        out.chunks += [zlib.compress(json.dumps(objects[i:i + OBJECT_CHUNK]).encode(), 1)
                       for i in range(0, len(objects), OBJECT_CHUNK)]
    if report.errors:
        return Compact(errors=report.errors)
    out.caches = report.caches
    return out


class RenderMemo:
    """Manifests of the caches rendered for the previous revision, keyed by the whole
    parsed cache: a commit that changes one file of 1000 renders one cache, not 1000.
    Holds only the last revision's caches, as zlib-compressed JSON (level 1: a few
    microseconds a cache; the cluster source's memo does the same)."""

    def __init__(self, workers: int | None = None) -> None:
        self._rendered: dict[bytes, bytes] = {}
        self._workers = workers

    def render(self, caches: Sequence[OrasCache]) -> list[list[Manifest]]:
        (out,) = self.render_chunks([caches])  # run to its end: the memo is updated
        return out

    def render_chunks(self, chunks: Iterable[Sequence[OrasCache]],
                      ) -> Iterator[list[list[Manifest]]]:
        """`render` of one revision's caches, one chunk after the other; the memo then
        holds that revision's caches (once every chunk is rendered)."""
        kept_all: dict[bytes, bytes] = {}
        for caches in chunks:
            # The key: a digest of the whole parsed cache (its repr is ten times longer).
            keys = [hashlib.blake2b(repr(c).encode(), digest_size=16).digest()
                    for c in caches]
            missing = {k: c for k, c in zip(keys, caches, strict=True)
                       if k not in self._rendered}
            fresh = dict(zip(missing, render_parallel(missing.values(), self._workers),
                             strict=True))
            kept = {k: self._rendered.get(k) or zlib.compress(json.dumps(fresh[k].manifests)
                                                              .encode(), 1)
                    for k in keys}
            kept_all.update(kept)
            # Fresh renders are new dictionaries already; kept ones are copied by the parse.
            out = [fresh[k].manifests if k in fresh else json.loads(zlib.decompress(kept[k]))
                   for k in keys]
            del fresh
            yield out
        self._rendered = kept_all


def render_paths(paths: Sequence[Path], applyset: ApplySet, default_namespace: str,
                 root: Path | None = None, memo: RenderMemo | None = None) -> Desired:
    """Render the caches under `paths` to labelled objects, or every error (file, document
    and field path; relative to `root` when given)."""
    desired = Desired()
    for objects in _rendered(paths, applyset, default_namespace, root=root, memo=memo,
                             report=desired, size=None):
        desired.objects += objects
    if desired.errors:
        desired.objects = []
    return desired


def _rendered(paths: Sequence[Path], applyset: ApplySet, default_namespace: str, *,
              root: Path | None, memo: RenderMemo | None, report: Desired,
              size: int | None) -> Iterator[list[Obj]]:
    """The labelled objects of the caches under `paths`, `size` caches at a time (None:
    all at once). Every error goes to report.errors (then the objects count for nothing);
    report.caches is set once all rendered."""
    loaded = load(paths)
    prefix = f"{root}/" if root is not None else "\0"
    if loaded.errors:
        report.errors += [str(e).replace(prefix, "") for e in loaded.errors]
        return
    caches = [replace(c, namespace=c.namespace or default_namespace) for _, c in loaded.caches]
    step = size or max(len(caches), 1)
    starts = range(0, len(caches), step)
    chunks = (memo or RenderMemo()).render_chunks(caches[i:i + step] for i in starts)
    seen: dict[ObjectRef, str] = {}
    for start in starts:
        try:
            rendered = next(chunks)
        except Exception as exc:  # a construct error must not stop the service
            report.errors = [f"render failed: {exc}"]
            return
        objects: list[Obj] = []
        for (where, _), manifests in zip(loaded.caches[start:start + step], rendered,
                                         strict=True):
            source = where.replace(prefix, "")
            for manifest in manifests:
                obj = applyset.label(manifest)
                ref = ObjectRef.of(obj)
                try:
                    resource_for(obj)
                except KeyError as exc:
                    report.errors.append(f"{source}: {exc.args[0]}")
                    continue
                if ref in seen:
                    report.errors.append(f"{source}: renders {ref}, already rendered by "
                                         f"{seen[ref]}")
                seen[ref] = source
                objects.append(obj)
        del rendered
        yield objects
    for _ in chunks:  # (none left) the memo now holds this revision
        pass
    report.caches = len(caches)
