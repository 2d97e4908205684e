"""Build etcd, kube-apiserver, kube-controller-manager and kubectl from the Go module proxy.

``k8s.io/kubernetes`` cannot be ``go install``ed: its go.mod replaces its staging modules
(``k8s.io/api``, ``k8s.io/client-go``, ...) with ``./staging/...`` paths. So we build it
through a small wrapper module that requires it and points every staging module at its
published ``v0.X.Y`` tag. etcd's server module has the same problem (``../api`` etc.).

Binaries are cached outside the repo, keyed by version, written atomically, guarded by
a file lock (two pytest workers, or make + pytest, may race) and checked with
``--version`` before use. When everything is present and verified this is a no-op.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.versions import K8sVersion, etcd_version, k8s_version

K8S_MODULE = "k8s.io/kubernetes"
ETCD_SERVER = "go.etcd.io/etcd/server/v3"
# etcd's server go.mod points these at "../<dir>"; pin them to the server's version.
ETCD_SIBLINGS = (
    "go.etcd.io/etcd/api/v3",
    "go.etcd.io/etcd/client/pkg/v3",
    "go.etcd.io/etcd/client/v3",
    "go.etcd.io/etcd/pkg/v3",
)
_STAGING_REPLACE = re.compile(r"(?m)^\s*(?:replace\s+)?(k8s\.io/\S+)\s+=>\s+\./staging/")
_GO_DIRECTIVE = re.compile(r"(?m)^go\s+(\S+)\s*$")
_GODEBUG = re.compile(r"(?m)^godebug\s+[^(\n]+$")
PROGRESS_EVERY_S = 30.0
# Listed in the k8s wrapper's tools.go (so `go mod tidy` keeps their dependencies) but only
# built on demand by tests/harness/node.py: the control plane alone does not need them.
KUBELET_PACKAGE = f"{K8S_MODULE}/cmd/kubelet"
KUBE_SCHEDULER_PACKAGE = f"{K8S_MODULE}/cmd/kube-scheduler"
KUBE_PROXY_PACKAGE = f"{K8S_MODULE}/cmd/kube-proxy"
NODE_PACKAGES = (KUBELET_PACKAGE, KUBE_SCHEDULER_PACKAGE, KUBE_PROXY_PACKAGE)


def build_command(module: str, what: str, ensure: Callable[[], Any],
                  paths: Callable[[Any], dict[str, object]],
                  argv: list[str] | None = None) -> int:
    """`python -m tests.harness.<module> build`, as make calls it: build (or verify) the
    tools, print NAME=path lines, exit 1 with the build's error."""
    parser = argparse.ArgumentParser(prog=f"python -m tests.harness.{module}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help=f"build (or verify) {what}")
    parser.parse_args(argv)
    try:
        tools = ensure()
    except BuildError as err:
        print(err, file=sys.stderr)
        return 1
    print("\n".join(f"{name}={value}" for name, value in paths(tools).items()))
    return 0


class BuildError(RuntimeError):
    """A go command failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the verified control-plane binaries and the versions they report."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    k8s_version: str
    etcd_version: str


@dataclass(frozen=True)
class _Target:
    """One binary: where it goes, how to build it, how to recognise the right version."""

    name: str
    workdir: Path
    package: str
    ldflags: str
    version_args: tuple[str, ...]
    expected: str  # substring of the --version output

    @property
    def path(self) -> Path:
        return self.workdir / "bin" / self.name


@dataclass
class BuildReport:
    """Seconds spent per step (for the progress log and for measuring)."""

    steps: dict[str, float] = field(default_factory=dict)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/oras-cache`` (default ``~/.cache/oras-cache``): outside the repo."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "oras-cache"


def module_dir(name: str, source: Path) -> Path:
    """``cache_root()/NAME-DIGEST``, the digest over a committed wrapper module's go.mod,
    go.sum and Go files: editing any of them builds into a new directory."""
    digest = hashlib.sha256()
    for path in sorted([source / "go.mod", source / "go.sum", *source.rglob("*.go")]):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return cache_root() / f"{name}-{digest.hexdigest()[:16]}"


def k8s_dir(version: K8sVersion | None = None) -> Path:
    return cache_root() / f"k8s-{(version or k8s_version()).version}"


def etcd_dir(version: str | None = None) -> Path:
    return cache_root() / f"etcd-{version or etcd_version()}"


def _log(message: str) -> None:
    print(f"[harness] {message}", file=sys.stderr, flush=True)


def _go() -> str:
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if not found:
        raise BuildError("the `go` toolchain is not on PATH (needed to build the control plane)")
    return found


def _go_env(*, module_mode: bool = True) -> dict[str, str]:
    """Keep GOPATH/GOCACHE defaults; add -mod=mod so the wrapper's go.mod may be updated."""
    env = dict(os.environ)
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
    if module_mode:
        flags.append("-mod=mod")
    env["GOFLAGS"] = " ".join(flags)
    env.setdefault("CGO_ENABLED", "0")  # static binaries, no C compiler needed
    return env


def _run_go(args: list[str], cwd: Path, *, module_mode: bool = True,
            env: dict[str, str] | None = None, nice: bool = False) -> str:
    proc = subprocess.run(
        # nice: a shared 2-core machine (some builds take minutes when cold).
        [*(["nice", "-n", "10"] if nice else []), _go(), *args],
        cwd=cwd,
        env=env if env is not None else _go_env(module_mode=module_mode),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise BuildError(f"go {' '.join(args)} failed in {cwd} (exit {proc.returncode}):\n{tail}")
    return proc.stdout


@contextlib.contextmanager
def _progress(what: str) -> Iterator[None]:
    """Log start, a heartbeat every PROGRESS_EVERY_S, and the elapsed time at the end."""
    start = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            _log(f"  ... still {what} ({time.monotonic() - start:.0f} s)")

    _log(f"{what} ...")
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    _log(f"{what}: done in {time.monotonic() - start:.1f} s")


@contextlib.contextmanager
def _build_lock(workdir: Path) -> Iterator[None]:
    """An exclusive fcntl lock per cache dir; released by the kernel if we die."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / ".build.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"another process is building in {workdir}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _version_ok(target: _Target) -> bool:
    if not target.path.is_file() or not os.access(target.path, os.X_OK):
        return False
    try:
        proc = subprocess.run(
            [str(target.path), *target.version_args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and target.expected in proc.stdout + proc.stderr


def _module_gomod(module_at_version: str) -> str:
    """Download a module (zip and go.mod) and return the text of its go.mod."""
    with tempfile.TemporaryDirectory(prefix="oras-cache-dl-") as tmp:
        out = _run_go(["mod", "download", "-json", module_at_version], Path(tmp), module_mode=False)
    info = json.loads(out)
    if info.get("Error"):
        raise BuildError(f"go mod download {module_at_version}: {info['Error']}")
    return Path(info["GoMod"]).read_text()


def _header(upstream_gomod: str, module: str) -> str:
    """``module``, ``go`` and ``godebug`` lines, copied from upstream so runtime defaults match."""
    lines = [f"module {module}", ""]
    go_match = _GO_DIRECTIVE.search(upstream_gomod)
    if go_match:
        lines.append(f"go {go_match.group(1)}")
    lines.extend(m.group(0) for m in _GODEBUG.finditer(upstream_gomod))
    return "\n".join(lines) + "\n"


def staging_modules(kubernetes_gomod: str) -> list[str]:
    """Modules that k8s.io/kubernetes replaces with ./staging/... (33 in v1.37)."""
    return sorted(set(_STAGING_REPLACE.findall(kubernetes_gomod)))


def k8s_wrapper_gomod(version: K8sVersion, kubernetes_gomod: str) -> str:
    modules = staging_modules(kubernetes_gomod)
    if not modules:
        raise BuildError(f"found no ./staging replace lines in {K8S_MODULE}@{version.version}")
    replaces = "".join(f"\t{m} => {m} {version.staging}\n" for m in modules)
    return (
        _header(kubernetes_gomod, "oras-cache.local/k8s-build")
        + f"\nrequire {K8S_MODULE} {version.version}\n\nreplace (\n{replaces})\n"
    )


def etcd_wrapper_gomod(version: str, server_gomod: str) -> str:
    replaces = "".join(f"\t{m} => {m} {version}\n" for m in ETCD_SIBLINGS)
    return (
        _header(server_gomod, "oras-cache.local/etcd-build")
        + f"\nrequire {ETCD_SERVER} {version}\n\nreplace (\n{replaces})\n"
    )


def _tools_go(packages: list[str]) -> str:
    imports = "".join(f'\t_ "{p}"\n' for p in packages)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports})\n"


def _prepare_wrapper(workdir: Path, gomod: str, packages: list[str]) -> None:
    """Write go.mod + tools.go and run `go mod tidy`, unless the same spec is already tidy."""
    spec = gomod + "\n---\n" + _tools_go(packages)
    stamp = workdir / "wrapper.spec"
    if stamp.exists() and stamp.read_text() == spec and (workdir / "go.sum").exists():
        return
    stamp.unlink(missing_ok=True)
    (workdir / "go.sum").unlink(missing_ok=True)
    (workdir / "go.mod").write_text(gomod)
    (workdir / "tools.go").write_text(_tools_go(packages))
    with _progress(f"go mod tidy in {workdir}"):
        _run_go(["mod", "tidy"], workdir)
    stamp.write_text(spec)


def go_build_to(target: Path, package: str, cwd: Path, *, ldflags: str = "-s -w",
                flags: Sequence[str] = (), env: dict[str, str] | None = None,
                nice: bool = False, what: str | None = None) -> None:
    """`go build PACKAGE` in the module at `cwd`, to a temporary name beside `target`, then
    os.replace: readers never see half a file. `env` defaults to `_go_env()`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp.{os.getpid()}"
    try:
        with _progress(f"building {what or target.name}"):
            _run_go(["build", "-trimpath", *flags, "-ldflags", ldflags, "-o", str(tmp), package],
                    cwd, env=env, nice=nice)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _go_build(target: _Target, report: BuildReport) -> None:
    start = time.monotonic()
    go_build_to(target.path, target.package, target.workdir, ldflags=target.ldflags,
                what=target.name)
    report.steps[target.name] = time.monotonic() - start
    if not _version_ok(target):
        raise BuildError(
            f"{target.path} was built but `--version` does not report {target.expected!r}"
        )


def _k8s_ldflags(version: K8sVersion) -> str:
    # component-base/version feeds `--version` and the servers' emulation version;
    # client-go/pkg/version feeds client-go's User-Agent (kubectl/v1.37.2). Set both.
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version.version}",
            f"-X {pkg}.gitMajor={version.major}",
            f"-X {pkg}.gitMinor={version.minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


def _k8s_targets(version: K8sVersion) -> list[_Target]:
    workdir = k8s_dir(version)
    ldflags = _k8s_ldflags(version)
    server_args = ("--version",)
    return [
        _Target(
            "kube-apiserver",
            workdir,
            f"{K8S_MODULE}/cmd/kube-apiserver",
            ldflags,
            server_args,
            f"Kubernetes {version.version}",
        ),
        _Target(
            "kube-controller-manager",
            workdir,
            f"{K8S_MODULE}/cmd/kube-controller-manager",
            ldflags,
            server_args,
            f"Kubernetes {version.version}",
        ),
        _Target(
            "kubectl",
            workdir,
            f"{K8S_MODULE}/cmd/kubectl",
            ldflags,
            ("version", "--client", f"--kubeconfig={os.devnull}"),
            f"Client Version: {version.version}",
        ),
    ]


def _etcd_target(version: str) -> _Target:
    return _Target(
        "etcd",
        etcd_dir(version),
        ETCD_SERVER,
        "-s -w",
        ("--version",),
        f"etcd Version: {version.removeprefix('v')}",
    )


def _build_group(
    targets: list[_Target],
    upstream_module: str,
    make_gomod: Callable[[str], str],
    report: BuildReport,
    extra_packages: tuple[str, ...] = (),
) -> None:
    """Under the dir's lock: re-check (someone may have built meanwhile), then build the rest."""
    workdir = targets[0].workdir
    with _build_lock(workdir):
        missing = [t for t in targets if not _version_ok(t)]
        if not missing:
            return
        start = time.monotonic()
        upstream = _module_gomod(upstream_module)
        packages = [t.package for t in targets]
        packages += [p for p in extra_packages if p not in packages]
        _prepare_wrapper(workdir, make_gomod(upstream), packages)
        report.steps[f"prepare {workdir.name}"] = time.monotonic() - start
        for target in missing:
            _go_build(target, report)


def ensure_binaries(report: BuildReport | None = None) -> Binaries:
    """Return verified binaries, building whatever is missing or reports the wrong version."""
    report = report if report is not None else BuildReport()
    kver, ever = k8s_version(), etcd_version()
    k8s_targets, etcd_target = _k8s_targets(kver), _etcd_target(ever)
    everything = [etcd_target, *k8s_targets]
    with ThreadPoolExecutor(max_workers=len(everything)) as pool:
        ok = dict(zip([t.name for t in everything], pool.map(_version_ok, everything), strict=True))
    if not all(ok.values()):
        total = time.monotonic()
        if not ok["etcd"]:
            _build_group(
                [etcd_target],
                f"{ETCD_SERVER}@{ever}",
                lambda up: etcd_wrapper_gomod(ever, up),
                report,
            )
        if not all(ok[t.name] for t in k8s_targets):
            _build_group(
                k8s_targets,
                f"{K8S_MODULE}@{kver.version}",
                lambda up: k8s_wrapper_gomod(kver, up),
                report,
                extra_packages=NODE_PACKAGES,
            )
        if report.steps:  # empty when another process built everything while we waited
            report.steps["total"] = time.monotonic() - total
            _log("build times: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.steps.items()))
    by_name = {t.name: t.path for t in everything}
    return Binaries(
        etcd=by_name["etcd"],
        kube_apiserver=by_name["kube-apiserver"],
        kube_controller_manager=by_name["kube-controller-manager"],
        kubectl=by_name["kubectl"],
        k8s_version=kver.version,
        etcd_version=ever,
    )
