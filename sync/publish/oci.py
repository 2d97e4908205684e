"""Rendered manifests as an OCI artifact: `orascache render ... --push-oci REF`.

The layout is the one Flux's `OCIRepository` reads by default, as `flux push artifact`
makes it: an OCI image manifest whose config has the media type
`application/vnd.cncf.flux.config.v1+json` and whose one layer is the rendered tree as
tar+gzip (`application/vnd.cncf.flux.content.v1.tar+gzip`, files at the archive's root),
with the source recorded in the manifest's annotations (`org.opencontainers.image.source`,
`.revision` as `<ref>@sha1:<commit>`, `.created`).

The layer is reproducible (entries sorted, uid/gid 0, no user names, mtime 0, a gzip
header without name or time), so the same rendered tree always has the same layer
digest. As with `--push-branch`, nothing is pushed when the tag already names an artifact
with that layer: the tag, its digest and its `created` stay as they are.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sync.report.status import now
from sync.sources.oras import OciError, Oras, Reference

CONFIG_MEDIA_TYPE = "application/vnd.cncf.flux.config.v1+json"
CONTENT_MEDIA_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
CREATED = "org.opencontainers.image.created"
LAYER_FILE = "artifact.tgz"


@dataclass(frozen=True)
class Layer:
    data: bytes  # tar+gzip
    digest: str  # sha256 of `data`
    diff_id: str  # sha256 of the uncompressed tar


def build_layer(files: Mapping[str, str]) -> Layer:
    """The tar+gzip of `files` (relative POSIX path -> text), byte-identical for equal
    input: parent directories first, everything sorted, no owner, time or host data."""
    dirs: set[str] = set()
    for rel in files:
        path = PurePosixPath(rel)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise OciError(f"refusing to archive the path {rel!r}")
        dirs.update(str(p) for p in path.parents if str(p) != ".")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs | set(files)):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if name in files:
                data = files[name].encode("utf-8")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0,
                       compresslevel=9) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    return Layer(data, "sha256:" + hashlib.sha256(data).hexdigest(),
                 "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())


def config_blob(layer: Layer, created: str) -> bytes:
    """The config `flux push artifact` writes (go-containerregistry's empty image config
    with the layer's diff_id and the created time); Flux itself never reads it."""
    config = {"architecture": "", "created": created, "os": "",
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}, "config": {}}
    return json.dumps(config, separators=(",", ":")).encode()


def current_layer(oras: Oras, ref: Reference) -> str | None:
    """The layer digest of the Flux artifact the tag names now; None when the tag does
    not exist or names something else (then a push replaces it)."""
    try:
        manifest = oras.manifest(str(ref))
    except OciError:
        return None  # a missing tag; a real failure shows again, clearly, in the push
    layers = manifest.get("layers") or []
    config = manifest.get("config") or {}
    if config.get("mediaType") != CONFIG_MEDIA_TYPE or len(layers) != 1:
        return None
    if layers[0].get("mediaType") != CONTENT_MEDIA_TYPE:
        return None
    digest = layers[0].get("digest")
    return str(digest) if digest else None


@dataclass(frozen=True)
class Pushed:
    reference: str  # REPOSITORY@DIGEST of the manifest the tag names
    layer: str
    new: bool


def push_artifact(oras: Oras, ref: Reference, files: Mapping[str, str], *, source: str,
                  revision: str) -> Pushed:
    """Push `files` as a Flux artifact tagged `ref`, unless the tag already holds them."""
    if not ref.tag or ref.digest:
        raise OciError(f"--push-oci needs a tag and no digest: {ref}")
    layer = build_layer(files)
    if current_layer(oras, ref) == layer.digest:
        return Pushed(ref.at(oras.resolve(ref)), layer.digest, new=False)
    created = now()
    with tempfile.TemporaryDirectory(prefix="orascache-oci-") as tmp:
        work = Path(tmp)
        (work / LAYER_FILE).write_bytes(layer.data)
        (work / "config.json").write_bytes(config_blob(layer, created))
        out = oras.run(
            "push", "--no-tty", "--format", "json",
            "--config", f"config.json:{CONFIG_MEDIA_TYPE}",
            "--annotation", f"{SOURCE}={source}",
            "--annotation", f"{REVISION}={revision}",
            "--annotation", f"{CREATED}={created}",
            str(ref), f"{LAYER_FILE}:{CONTENT_MEDIA_TYPE}",
            cwd=work, what=f"pushing {ref}")
    try:
        digest = str(json.loads(out)["digest"])
    except (json.JSONDecodeError, KeyError, TypeError):
        digest = oras.resolve(ref)
    return Pushed(ref.at(digest), layer.digest, new=True)
