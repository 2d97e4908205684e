"""Flux's source-controller and kustomize-controller, built from the Go module proxy and run
as host processes against a local control plane.

Build: like k8s.io/kubernetes (build.py), each controller's go.mod replaces its own ``api``
submodule with ``./api``, which a module required from outside cannot use. So each one is
built through a wrapper module that requires the controller and repeats every ``replace``
of the controller's go.mod, a local path becoming the published module at the
controller's version (``github.com/fluxcd/source-controller/api => ... v1.9.6``) and the
others (go-digest, kustomize, yaml.v3) copied as they are, so the wrapper builds the
dependency graph upstream released. One wrapper per controller: in one module the two
graphs would be merged by minimal version selection into one that neither release tested.

Versions: v1.9.6 of both, the newest whose dependencies the module proxy serves here.
v1.10.x (Go 1.27) needs modules the proxy refuses outright (fluxcd/pkg/apis/crypto,
fluxcd/pkg/spiffe: no version served) besides refused versions of others (cosign v3.1.4,
fluxcd/pkg/artifact v0.27.1, ...). v1.9.6 needs one refused version: SUBSTITUTES lists it
with the served version the wrapper uses instead (a patch release of the same minor).

No ``go mod tidy``: it resolves the test dependencies of every package too, and the proxy
refuses some (fluxcd/pkg/gittestserver, ...); ``go build -mod=mod`` resolves what the
binary links and records it in the wrapper's go.mod and go.sum.

Binaries go to ``~/.cache/oras-cache/flux-<controller>-<version>/bin`` under the same lock
and atomic rename as the other tools; a cached binary is used once its embedded build
information (``go version -m``) names the pinned controller module. The CRDs are copied
from the controller's module zip (``config/crd/bases``, the files Flux's own install is
generated from) into the same directory's ``crds/``.

``python -m tests.harness.flux build`` (``make flux-build``) builds both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.harness.build import (
    BuildError,
    _build_lock,
    _go,
    _go_env,
    _header,
    _log,
    _run_go,
    _tools_go,
    build_command,
    cache_root,
    go_build_to,
)
from tests.harness.ports import HOST, free_ports
from tests.harness.procs import Component, log_tail, spawn, terminate

SOURCE_CONTROLLER_VERSION = os.environ.get("FLUX_SOURCE_CONTROLLER_VERSION") or "v1.9.6"
KUSTOMIZE_CONTROLLER_VERSION = os.environ.get("FLUX_KUSTOMIZE_CONTROLLER_VERSION") or "v1.9.6"
# module@refused version -> the served version used instead (same minor release).
SUBSTITUTES = {
    # source-controller v1.9.6 requires v0.18.3; the proxy here serves v0.18.0 of v0.18.
    "github.com/fluxcd/pkg/artifact@v0.18.3": "v0.18.0",
}
START_TIMEOUT_S = 60.0

_REQUIRE = re.compile(r"(?m)^\s*(?:require\s+)?(\S+)\s+(v\S+)(?:\s*//.*)?$")
_REPLACE_LINE = re.compile(r"^(\S+)(?:\s+(v\S+))?\s+=>\s+(\S+)(?:\s+(v\S+))?$")


@dataclass(frozen=True)
class Controller:
    name: str  # the binary's name, as Flux's images call it
    module: str
    version: str

    @property
    def workdir(self) -> Path:
        return cache_root() / f"flux-{self.name}-{self.version}"

    @property
    def path(self) -> Path:
        return self.workdir / "bin" / self.name

    @property
    def crds(self) -> Path:
        return self.workdir / "crds"


def source_controller() -> Controller:
    return Controller("source-controller", "github.com/fluxcd/source-controller",
                      SOURCE_CONTROLLER_VERSION)


def kustomize_controller() -> Controller:
    return Controller("kustomize-controller", "github.com/fluxcd/kustomize-controller",
                      KUSTOMIZE_CONTROLLER_VERSION)


@dataclass(frozen=True)
class FluxBinaries:
    source_controller: Path
    kustomize_controller: Path
    crds: list[Path]  # every CRD file of both controllers
    versions: dict[str, str] = field(default_factory=dict)  # module -> version


def _flux_env() -> dict[str, str]:
    return _go_env()  # -mod=mod: the build records what it resolves in the wrapper


def _run(args: list[str], cwd: Path) -> str:
    return _run_go(args, cwd, env=_flux_env())


def _download(controller: Controller) -> tuple[str, Path]:
    """The controller's go.mod text and its unpacked module directory."""
    with tempfile.TemporaryDirectory(prefix="oras-cache-dl-") as tmp:
        out = _run(["mod", "download", "-json", f"{controller.module}@{controller.version}"],
                   Path(tmp))
    info = json.loads(out)
    if info.get("Error"):
        raise BuildError(f"go mod download {controller.module}: {info['Error']}")
    return Path(info["GoMod"]).read_text(), Path(info["Dir"])


def replaces(gomod: str) -> list[tuple[str, str]]:
    """(left, right) of every ``replace`` in a go.mod, in single-line and block form."""
    found: list[tuple[str, str]] = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if in_block:
            if line == ")":
                in_block = False
                continue
        elif line.startswith("replace"):
            line = line.removeprefix("replace").strip()
            if line == "(":
                in_block = True
                continue
        else:
            continue
        match = _REPLACE_LINE.match(line)
        if match:
            old, old_version, new, new_version = match.groups()
            left = f"{old} {old_version}" if old_version else old
            right = f"{new} {new_version}" if new_version else new
            found.append((left, right))
    return found


def wrapper_gomod(controller: Controller, upstream_gomod: str) -> str:
    """require the controller; its replaces, local paths pointing at the published modules."""
    lines = []
    for left, right in replaces(upstream_gomod):
        if right.startswith(("./", "../")):
            # `github.com/fluxcd/source-controller/api => ./api`: the submodule is tagged
            # with the controller's version (api/v1.9.6), so require exactly that.
            if left != f"{controller.module}/{right.removeprefix('./')}":
                raise BuildError(f"{controller.module}: cannot map `{left} => {right}`")
            lines.append(f"\t{left} => {left} {controller.version}\n")
        else:
            lines.append(f"\t{left} => {right}\n")
    required = dict(_REQUIRE.findall(upstream_gomod))
    for refused, served in SUBSTITUTES.items():
        module, version = refused.split("@")
        if required.get(module) == version:
            lines.append(f"\t{module} => {module} {served}\n")
    return (
        _header(upstream_gomod, f"oras-cache.local/flux-{controller.name}")
        + f"\nrequire {controller.module} {controller.version}\n\nreplace (\n{''.join(lines)})\n"
    )


def _prepare(workdir: Path, gomod: str, package: str) -> None:
    """go.mod + tools.go, unless the same spec is there (then go.sum is kept too)."""
    spec = gomod + "\n---\n" + _tools_go([package])
    stamp = workdir / "wrapper.spec"
    if stamp.exists() and stamp.read_text() == spec:
        return
    stamp.unlink(missing_ok=True)
    (workdir / "go.sum").unlink(missing_ok=True)
    (workdir / "go.mod").write_text(gomod)
    (workdir / "tools.go").write_text(_tools_go([package]))
    stamp.write_text(spec)


def _embedded(path: Path) -> str:
    """``go version -m``: the module versions linked into a binary."""
    proc = subprocess.run([_go(), "version", "-m", str(path)], capture_output=True, text=True,
                          timeout=60, check=False, cwd="/")
    return proc.stdout if proc.returncode == 0 else ""


def _verified(controller: Controller) -> bool:
    if not controller.path.is_file() or not os.access(controller.path, os.X_OK):
        return False
    if not any(controller.crds.glob("*.yaml")):
        return False
    # The main package's module is recorded as `mod` (built by its path from the wrapper).
    wanted = ("mod", controller.module, controller.version)
    return any(tuple(line.split()[:3]) == wanted for line in _embedded(controller.path)
               .splitlines())


def _build(controller: Controller) -> float:
    start = time.monotonic()
    workdir = controller.workdir
    upstream, moddir = _download(controller)
    _prepare(workdir, wrapper_gomod(controller, upstream), controller.module)
    crds = moddir / "config" / "crd" / "bases"
    staging = workdir / ".crds.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(crds, staging)
    for path in staging.iterdir():
        path.chmod(0o644)  # the module cache is read-only
    shutil.rmtree(controller.crds, ignore_errors=True)
    os.replace(staging, controller.crds)
    go_build_to(controller.path, controller.module, workdir, env=_flux_env(),
                what=f"{controller.name} {controller.version}")
    if not _verified(controller):
        raise BuildError(f"{controller.path} was built but its build information does not "
                         f"name {controller.module} {controller.version}")
    return time.monotonic() - start


def ensure_flux() -> FluxBinaries:
    """The verified controllers and their CRDs, built when missing (seconds spent logged)."""
    controllers = (source_controller(), kustomize_controller())
    spent: dict[str, float] = {}
    for controller in controllers:
        if _verified(controller):
            continue
        with _build_lock(controller.workdir):
            if not _verified(controller):
                spent[controller.name] = _build(controller)
    if spent:
        _log("flux build times: " + ", ".join(f"{n} {s:.1f} s" for n, s in spent.items()))
    source, kustomize = controllers
    return FluxBinaries(
        source.path, kustomize.path,
        sorted([*source.crds.glob("*.yaml"), *kustomize.crds.glob("*.yaml")]),
        {c.module: c.version for c in controllers},
    )


class FluxControllers:
    """source-controller and kustomize-controller as host processes on 127.0.0.1.

    Leader election is off (one replica each); every address is on loopback, and
    source-controller advertises its artifact server as ``127.0.0.1:PORT`` so that
    kustomize-controller, also on the host, downloads from it. Both watch all namespaces
    and act with the kubeconfig's (admin) identity, as Flux does without
    ``serviceAccountName``. ``interval`` flags keep requeues short for tests: the objects'
    own ``spec.interval`` still governs polling.
    """

    def __init__(self, kubeconfig: Path, binaries: FluxBinaries | None = None,
                 workdir: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.binaries = binaries or ensure_flux()
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="oras-cache-flux-"))
        self.components: list[Component] = []
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.storage_port = 0

    def _argv(self) -> dict[str, tuple[list[str], list[int]]]:
        sc_metrics, sc_health, storage, kc_metrics, kc_health = free_ports(5)
        self.storage_port = storage
        storage_dir = self.dir / "storage"
        storage_dir.mkdir(parents=True, exist_ok=True)
        common = ["--enable-leader-election=false", "--log-level=info",
                  "--log-encoding=json", "--watch-all-namespaces=true"]
        return {
            "source-controller": ([
                str(self.binaries.source_controller), *common,
                f"--metrics-addr={HOST}:{sc_metrics}",
                f"--health-addr={HOST}:{sc_health}",
                f"--storage-addr={HOST}:{storage}",
                f"--storage-adv-addr={HOST}:{storage}",
                f"--storage-path={storage_dir}",
                "--events-addr=",
            ], [sc_metrics, sc_health, storage]),
            "kustomize-controller": ([
                str(self.binaries.kustomize_controller), *common,
                f"--metrics-addr={HOST}:{kc_metrics}",
                f"--health-addr={HOST}:{kc_health}",
                "--events-addr=",
            ], [kc_metrics, kc_health]),
        }

    def start(self) -> FluxControllers:
        env = {"KUBECONFIG": str(self.kubeconfig), "RUNTIME_NAMESPACE": "flux-system",
               "TMPDIR": str(self.dir)}
        for name, (argv, ports) in self._argv().items():
            component = Component(name, argv, str(self.dir / f"{name}.log"), ports=ports,
                                  env=env)
            self._procs[name] = spawn(component, daemon=False)
            self.components.append(component)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        """Both /readyz, then the artifact server (it may open after /readyz answers)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        for component in self.components:
            health = component.ports[1]
            while True:
                proc = self._procs[component.name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{component.name} exited ({proc.returncode}):\n"
                                       f"{log_tail(component.log)}")
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{health}/readyz",
                                                timeout=2) as resp:
                        if resp.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{component.name} not ready on {HOST}:{health}:\n"
                                       f"{log_tail(component.log)}")
                time.sleep(0.1)
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex((HOST, self.storage_port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"source-controller's artifact server is not listening on "
                                   f"{HOST}:{self.storage_port}")
            time.sleep(0.1)

    def listening(self) -> dict[str, set[str]]:
        """controller -> the ``address:port`` of every TCP socket it listens on (from
        /proc: its socket inodes, matched against the LISTEN rows of /proc/net/tcp{,6})."""
        rows: dict[str, str] = {}
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    rows[fields[9]] = _address(fields[1])
        found: dict[str, set[str]] = {}
        for component in self.components:
            inodes = set()
            for fd in Path(f"/proc/{component.pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            found[component.name] = {rows[i] for i in inodes if i in rows}
        return found

    def log(self, name: str) -> str:
        return Path(self.dir / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for component in reversed(self.components):
            terminate(component, self._procs.get(component.name))
        self.components.clear()
        self._procs.clear()

    def __enter__(self) -> FluxControllers:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _address(hex_address: str) -> str:
    """``0100007F:1F90`` -> ``127.0.0.1:8080`` (IPv6: the 32 hex digits as they are, but
    ``::`` for any and ``::1`` for loopback)."""
    host, port = hex_address.split(":")
    if len(host) == 8:
        ip = ".".join(str(b) for b in reversed(bytes.fromhex(host)))
    else:
        ip = {"0" * 32: "::", "0" * 24 + "01000000": "::1"}.get(host, host)
    return f"{ip}:{int(port, 16)}"


def crd_paths(binaries: FluxBinaries, kinds: Sequence[str] = ()) -> list[Path]:
    """The CRD files, all or those whose file name contains one of ``kinds``."""
    return [p for p in binaries.crds if not kinds or any(k in p.name for k in kinds)]


def main(argv: list[str] | None = None) -> int:
    def paths(flux: FluxBinaries) -> dict[str, object]:
        return {"SOURCE_CONTROLLER": flux.source_controller,
                "KUSTOMIZE_CONTROLLER": flux.kustomize_controller,
                "FLUX_CRDS": " ".join(str(p) for p in flux.crds)}

    return build_command("flux", "source-controller and kustomize-controller", ensure_flux,
                         paths, argv)

if __name__ == "__main__":
    sys.exit(main())
