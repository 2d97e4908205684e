"""Source stage for OCI: follow an artifact of OrasCache files by tag.

Each fetch resolves the tag to a manifest digest: a new digest is a new revision, and the
digest is what the pipeline records (the ApplySet parent's last-applied annotation, the
Events, the metrics), as a commit is for git. `checkout` downloads the artifact's content
layer once per digest and unpacks it into a fresh directory; the rest of the pipeline
(parse all, render all, apply all, prune, drift correction) is the git source's
(sync/revision_sync.py), unchanged.

The artifact is the layout `orascache render --push-oci` and `flux push artifact` write:
the layer with Flux's content media type, or else the only tar+gzip layer (as `oras push`
of a single archive makes it). A broken artifact (no such layer, not tar+gzip, an entry
that is a link or leaves the tree, over `MAX_BYTES`) is an error of that revision:
nothing is applied and nothing is pruned, and the same digest is tried again at the
next interval.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sync.publish.oci import CONTENT_MEDIA_TYPE
from sync.sources.git import GitSourceError, Revision
from sync.sources.oras import OciError, Oras, Reference

MAX_BYTES = 64 * 1024 * 1024  # compressed layer and unpacked files, each
_MANIFESTS = ("application/vnd.oci.image.manifest.v1+json",
              "application/vnd.docker.distribution.manifest.v2+json")


class OciSourceError(GitSourceError):
    """A resolve, download or unpack failed (a source error for the pipeline)."""


@contextmanager
def _source_errors() -> Iterator[None]:
    try:
        yield
    except OciError as exc:
        raise OciSourceError(str(exc)) from None


def content_layer(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """The layer holding the files: Flux's content layer, else the only tar+gzip one."""
    media = manifest.get("mediaType")
    if media not in _MANIFESTS:
        raise OciSourceError(f"{where} is not an image manifest (mediaType {media!r}); "
                             "an index or another kind of artifact cannot be followed")
    layers = [x for x in manifest.get("layers") or [] if isinstance(x, dict)]
    flux = [x for x in layers if x.get("mediaType") == CONTENT_MEDIA_TYPE]
    gzipped = [x for x in layers if str(x.get("mediaType", "")).endswith("tar+gzip")]
    chosen = flux[:1] or (gzipped if len(gzipped) == 1 else [])
    if not chosen:
        raise OciSourceError(f"{where} has no {CONTENT_MEDIA_TYPE} layer nor exactly one "
                             f"tar+gzip layer (layers: {[x.get('mediaType') for x in layers]})")
    layer = chosen[0]
    if int(layer.get("size") or 0) > MAX_BYTES:
        raise OciSourceError(f"{where}: the content layer is {layer.get('size')} bytes, "
                             f"over the {MAX_BYTES} limit")
    return layer


def unpack(archive: Path, target: Path, where: str) -> None:
    """Unpack a tar+gzip of regular files and directories into the new dir `target`."""
    target.mkdir(parents=True)
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise OciSourceError(f"{where}: entry {member.name!r} leaves the tree")
                if not (member.isfile() or member.isdir()):
                    raise OciSourceError(f"{where}: entry {member.name!r} is not a regular "
                                         "file or directory")
                total += member.size
                if total > MAX_BYTES:
                    raise OciSourceError(f"{where}: the files are over {MAX_BYTES} bytes")
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise OciSourceError(f"{where}: the content layer is not a valid tar+gzip "
                             f"archive ({type(exc).__name__}: {exc})") from None


@dataclass
class OciSource:
    """One artifact reference (a tag, or a digest), unpacked under `workdir`."""

    reference: Reference
    oras: Oras
    workdir: Path
    _tree: tuple[str, Path] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def ref(self) -> str:
        return self.reference.tag or self.reference.digest or ""

    @property
    def display_url(self) -> str:
        return f"oci://{self.reference.name}"

    def secrets(self) -> list[str]:
        return self.oras.secrets()

    def fetch(self) -> str:
        """The digest the tag names now (a pinned digest is checked to exist)."""
        with _source_errors():
            return self.oras.resolve(self.reference)

    def checkout(self, commit: str) -> Revision:
        """The artifact `commit` (a manifest digest) unpacked; reused while unchanged."""
        if self._tree is not None and self._tree[0] == commit and self._tree[1].is_dir():
            return Revision(commit, self.ref, "tag", self._tree[1])
        where = self.reference.at(commit)
        with _source_errors():
            layer = content_layer(self.oras.manifest(where), where)
            digest = str(layer.get("digest", ""))
            with tempfile.TemporaryDirectory(dir=self.workdir, prefix=".layer-") as tmp:
                archive = Path(tmp) / "layer.tgz"
                self.oras.blob(self.reference, digest, archive)
                got = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
                if got != digest:
                    raise OciSourceError(f"{where}: layer digest {got} is not {digest}")
                tree = self.workdir / f"tree-{commit.removeprefix('sha256:')[:16]}"
                shutil.rmtree(tree, ignore_errors=True)
                try:
                    unpack(archive, tree, where)
                except OciSourceError:
                    shutil.rmtree(tree, ignore_errors=True)
                    raise
        if self._tree is not None and self._tree[1] != tree:
            shutil.rmtree(self._tree[1], ignore_errors=True)
        self._tree = (commit, tree)
        return Revision(commit, self.ref, "tag", tree)

    def path_exists(self, commit: str, path: str) -> bool:
        rel = path.strip("/")
        if not rel or rel == ".":
            return True
        tree = self.checkout(commit).worktree
        target = (tree / rel).resolve()
        return target.is_relative_to(tree.resolve()) and target.exists()

    def close(self) -> None:
        self.oras.close()
