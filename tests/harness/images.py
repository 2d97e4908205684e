"""OCI images built from local files, for the test node (no registry on the internet).

Each image is one uncompressed layer tar plus a config, a manifest and an index, written
as an OCI image-layout tarball; the test node's mirror registry serves them under the names
below (``tests/harness/mirror.py``), the way an air-gapped cluster's mirror does. Tarballs are
cached under ``~/.cache/oras-cache/images/`` keyed by a hash of every input (file
contents, entrypoint, name), so an image is rebuilt only when one of its inputs changes.

The binaries come from the Go module proxy (``go install``) or from Debian packages:

- ``pause``: a ten-line Go program that waits for SIGTERM/SIGINT (the sandbox image);
- ``busybox``: ``/bin/busybox`` of Debian's ``busybox-static`` plus one symlink per applet;
- ``registry``: the CNCF distribution binary with its default config;
- ``oras``: the oras CLI plus busybox (for ``sh`` in workflow steps).

Stand-ins: ``ubuntu:latest`` and ``perl:5.34.0`` (the images the original operator's
examples name) are the busybox image under those names; ``registry.k8s.io/pause`` is our
pause program. They do what the examples ask of them (``touch``, ``ls``, ``echo``), nothing
more. ``registry:3.0.0`` (Docker's official distribution image, which examples/ pin) is our
distribution v3.1.2 image under that name: same program, a newer patch release.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.build import BuildError, _go, _go_env, _log, _progress, cache_root

REGISTRY_VERSION = "v3.1.2"
ORAS_VERSION = "v1.3.6"
COREDNS_VERSION = "v1.15.0"
REGISTRY_MODULE = "github.com/distribution/distribution/v3/cmd/registry"
ORAS_MODULE = "oras.land/oras/cmd/oras"
COREDNS_MODULE = "github.com/coredns/coredns"
BUSYBOX_DEB_PATH = Path("/bin/busybox")

# Real names, fully qualified; the node pulls them from its mirror (tests/harness/mirror.py).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
BUSYBOX_IMAGE = "docker.io/library/busybox:1.35"
REGISTRY_IMAGE = f"ghcr.io/oras-project/registry:{REGISTRY_VERSION}"
ORAS_IMAGE = f"ghcr.io/oras-project/oras:{ORAS_VERSION}"
# More names for the same images: the defaults users write, and the stand-ins.
ALIASES: dict[str, tuple[str, ...]] = {
    BUSYBOX_IMAGE: ("docker.io/library/busybox:latest",
                    "docker.io/library/ubuntu:latest",  # stand-in
                    "docker.io/library/perl:5.34.0"),  # stand-in
    REGISTRY_IMAGE: ("ghcr.io/oras-project/registry:latest",  # OrasCache's spec.image default
                     "docker.io/library/registry:3.0.0"),  # stand-in: examples/ pin it
}

_PAUSE_GO = """package main

import (
\t"os"
\t"os/signal"
\t"syscall"
)

// The sandbox's PID 1: hold the namespaces until asked to stop.
func main() {
\tc := make(chan os.Signal, 1)
\tsignal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
\t<-c
}
"""

_REGISTRY_CONFIG = """version: 0.1
log:
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
"""


def tools_dir() -> Path:
    return cache_root() / "tools"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def go_install(name: str, module: str, version: str, binary: str | None = None) -> Path:
    """``GOBIN=<cache>/tools/<name>-<version>/bin go install module@version`` (cached)."""
    workdir = tools_dir() / f"{name}-{version}"
    path = workdir / "bin" / (binary or module.rsplit("/", 1)[-1])
    if path.is_file():
        return path
    with _lock(workdir / ".build.lock"):
        if path.is_file():
            return path
        tmp_bin = Path(tempfile.mkdtemp(prefix=".bin-", dir=workdir))
        env = _go_env(module_mode=False)
        env["GOBIN"] = str(tmp_bin)
        env["GOFLAGS"] = ""
        with _progress(f"go install {module}@{version}"):
            proc = subprocess.run(
                [_go(), "install", "-trimpath", "-ldflags", "-s -w", f"{module}@{version}"],
                env=env, capture_output=True, text=True, check=False, cwd=workdir,
            )
        if proc.returncode != 0:
            shutil.rmtree(tmp_bin, ignore_errors=True)
            raise BuildError(f"go install {module}@{version} failed:\n{proc.stderr[-3000:]}")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_bin / path.name, path)
        shutil.rmtree(tmp_bin, ignore_errors=True)
    return path


def registry_binary() -> Path:
    """The distribution binary: shared with the registry tests (``oras_tools``) if present."""
    try:
        from tests.harness import oras_tools  # noqa: PLC0415
    except ImportError:
        return go_install("registry", REGISTRY_MODULE, REGISTRY_VERSION)
    return oras_tools.ensure_tool(oras_tools.registry_tool(REGISTRY_VERSION))[0]


def oras_binary() -> Path:
    """The oras CLI: shared with the registry tests (``oras_tools``) if present."""
    try:
        from tests.harness import oras_tools  # noqa: PLC0415
    except ImportError:
        return go_install("oras", ORAS_MODULE, ORAS_VERSION)
    return oras_tools.ensure_tool(oras_tools.oras_tool(ORAS_VERSION))[0]


def coredns_binary() -> Path:
    return go_install("coredns", COREDNS_MODULE, COREDNS_VERSION)


def pause_binary() -> Path:
    """A static Go binary that waits for a signal (cached by the source's hash)."""
    digest = hashlib.sha256(_PAUSE_GO.encode()).hexdigest()[:12]
    workdir = tools_dir() / f"pause-{digest}"
    path = workdir / "bin" / "pause"
    if path.is_file():
        return path
    with _lock(workdir / ".build.lock"):
        if path.is_file():
            return path
        (workdir / "go.mod").write_text("module oras-cache.local/pause\n\ngo 1.22\n")
        (workdir / "main.go").write_text(_PAUSE_GO)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        env = _go_env(module_mode=False)
        env["GOFLAGS"] = ""
        proc = subprocess.run(
            [_go(), "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp), "."],
            cwd=workdir, env=env, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise BuildError(f"building pause failed:\n{proc.stderr[-3000:]}")
        os.replace(tmp, path)
    return path


def busybox_binary() -> Path:
    """Debian's statically linked busybox (package busybox-static, see node.ensure_node_deps)."""
    if not BUSYBOX_DEB_PATH.is_file():
        raise BuildError(
            f"{BUSYBOX_DEB_PATH} is missing: install the Debian package busybox-static "
            "(`make node-deps`)"
        )
    return BUSYBOX_DEB_PATH


# ----- image layout ------------------------------------------------------------------------
@dataclass
class ImageSpec:
    """What goes into one single-layer image."""

    name: str  # full reference, e.g. docker.io/library/busybox:1.35
    files: dict[str, Path] = field(default_factory=dict)  # path in image -> host file
    texts: dict[str, str] = field(default_factory=dict)  # path in image -> content
    symlinks: dict[str, str] = field(default_factory=dict)  # path in image -> target
    dirs: tuple[str, ...] = ("tmp", "etc", "var", "root")
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"])
    workdir: str = "/"

    def input_hash(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({
            "v": 1, "name": self.name, "texts": self.texts, "symlinks": self.symlinks,
            "dirs": self.dirs, "entrypoint": self.entrypoint, "cmd": self.cmd,
            "env": self.env, "workdir": self.workdir,
            "files": {k: str(v) for k, v in sorted(self.files.items())},
        }, sort_keys=True).encode())
        for dest, src in sorted(self.files.items()):
            h.update(dest.encode())
            h.update(_file_digest(src).encode())
        return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _layer(spec: ImageSpec, out: Path) -> None:
    """A deterministic tar: parents first, sorted, mtime 0, owned by root."""
    entries: dict[str, tuple[str, object]] = {}
    for d in spec.dirs:
        entries[d.strip("/")] = ("dir", None)
    for dest, src in spec.files.items():
        entries[dest.strip("/")] = ("file", src)
    for dest, text in spec.texts.items():
        entries[dest.strip("/")] = ("text", text)
    for dest, target in spec.symlinks.items():
        entries[dest.strip("/")] = ("link", target)
    for path in list(entries):
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), ("dir", None))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            kind, value = entries[path]
            if kind == "dir":
                tar.addfile(_tarinfo(path, tarfile.DIRTYPE, 0o1777 if path == "tmp" else 0o755))
            elif kind == "link":
                info = _tarinfo(path, tarfile.SYMTYPE, 0o777)
                info.linkname = str(value)
                tar.addfile(info)
            elif kind == "text":
                data = str(value).encode()
                tar.addfile(_tarinfo(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
            else:
                src = Path(str(value))
                with open(src, "rb") as handle:
                    info = _tarinfo(path, tarfile.REGTYPE, 0o755, src.stat().st_size)
                    tar.addfile(info, handle)


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    tar.addfile(_tarinfo(f"blobs/sha256/{digest}", tarfile.REGTYPE, 0o644, len(data)),
                io.BytesIO(data))
    return f"sha256:{digest}", len(data)


def build_image(spec: ImageSpec) -> Path:
    """The OCI layout tarball of ``spec`` (cached by input hash)."""
    out_dir = cache_root() / "images"
    slug = spec.name.rsplit("/", 1)[-1].replace(":", "-")
    out = out_dir / f"{slug}-{spec.input_hash()}.tar"
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oras-cache-img-", dir=out_dir) as tmp:
        layer = Path(tmp) / "layer.tar"
        _layer(spec, layer)
        config: dict[str, object] = {
            "architecture": "amd64", "os": "linux",
            "config": {"Env": spec.env, "Entrypoint": spec.entrypoint or None,
                       "Cmd": spec.cmd or None, "WorkingDir": spec.workdir},
            "rootfs": {},  # filled in by write_oci_archive
            "history": [{"created_by": "tests/harness/images.py"}],
        }
        tmp_out = Path(tmp) / "image.tar"
        write_oci_archive(tmp_out, spec.name, [layer], config)
        os.replace(tmp_out, out)
    _log(f"image {spec.name}: built {out.name} in {time.monotonic() - began:.1f} s")
    return out


def write_oci_archive(
    out: Path, name: str, layers: Sequence[Path], config: dict[str, object],
) -> None:
    """An OCI image-layout tarball: ``config`` (its ``rootfs`` set from ``layers``), the
    uncompressed layer tars, a manifest and an index naming the image ``name``. The same
    inputs give the same bytes (no timestamps, sorted JSON where the order is ours)."""
    digests = [f"sha256:{_file_digest(layer)}" for layer in layers]
    config = {**config, "rootfs": {"type": "layers", "diff_ids": digests}}
    with tarfile.open(out, "w") as tar:
        layout = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
        tar.addfile(_tarinfo("oci-layout", tarfile.REGTYPE, 0o644, len(layout)),
                    io.BytesIO(layout))
        descriptors = []
        for layer, digest in zip(layers, digests, strict=True):
            size = layer.stat().st_size
            with open(layer, "rb") as handle:
                tar.addfile(_tarinfo(f"blobs/sha256/{digest[7:]}", tarfile.REGTYPE, 0o644, size),
                            handle)
            descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": digest, "size": size})
        config_digest, config_size = _blob(tar, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": descriptors,
        }
        manifest_digest, manifest_size = _blob(tar, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }],
        }
        data = json.dumps(index).encode()
        tar.addfile(_tarinfo("index.json", tarfile.REGTYPE, 0o644, len(data)),
                    io.BytesIO(data))


# ----- the project's images ----------------------------------------------------------------
def busybox_applets(busybox: Path) -> list[str]:
    proc = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    return sorted(a for a in proc.stdout.split() if a and a != "busybox")


def _busybox_files(busybox: Path) -> tuple[dict[str, Path], dict[str, str]]:
    links = {f"bin/{a}": "busybox" for a in busybox_applets(busybox)}
    return {"bin/busybox": busybox}, links


_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def pause_spec() -> ImageSpec:
    return ImageSpec(PAUSE_IMAGE, files={"pause": pause_binary()}, entrypoint=["/pause"],
                     dirs=())


def busybox_spec() -> ImageSpec:
    files, links = _busybox_files(busybox_binary())
    return ImageSpec(BUSYBOX_IMAGE, files=files, symlinks=links,
                     texts={"etc/passwd": _PASSWD, "etc/group": _GROUP}, cmd=["sh"])


def registry_spec() -> ImageSpec:
    return ImageSpec(
        REGISTRY_IMAGE,
        files={"bin/registry": registry_binary()},
        texts={"etc/docker/registry/config.yml": _REGISTRY_CONFIG,
               "etc/passwd": _PASSWD, "etc/group": _GROUP},
        dirs=("tmp", "var/lib/registry"),
        entrypoint=["/bin/registry"],
        cmd=["serve", "/etc/docker/registry/config.yml"],
        env=["PATH=/bin", "OTEL_TRACES_EXPORTER=none"],
    )


def oras_spec() -> ImageSpec:
    files, links = _busybox_files(busybox_binary())
    files["bin/oras"] = oras_binary()
    return ImageSpec(ORAS_IMAGE, files=files, symlinks=links,
                     texts={"etc/passwd": _PASSWD, "etc/group": _GROUP},
                     env=["PATH=/bin", "HOME=/root"], cmd=["sh"])


def all_specs() -> list[ImageSpec]:
    return [pause_spec(), busybox_spec(), registry_spec(), oras_spec()]


def build_all() -> dict[str, Path]:
    """Every project image: reference -> tarball."""
    return {spec.name: build_image(spec) for spec in all_specs()}
