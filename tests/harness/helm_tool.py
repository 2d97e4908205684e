"""Helm v4, built from the Go module proxy, for the chart's tests (dist/chart/).

``tests/harness/helm`` is a Go module whose go.mod and go.sum pin helm.sh/helm/v4 (the one
place its version lives) and list ``helm.sh/helm/v4/cmd/helm`` as a ``tool``. Helm's
go.mod has no ``replace``, so no wrapper is generated: ``go build -mod=readonly`` compiles
exactly the graph in go.sum, nothing is resolved at build time.

The binary goes to ``~/.cache/oras-cache/helm-<version>/bin/helm``, under the same lock and
atomic rename as the other tools, with the version stamped as Helm's own Makefile does
(``-X helm.sh/helm/v4/internal/version.version=...``), so ``helm version`` reports it. A
cached binary is used once its embedded build information (``go version -m``) names the
pinned module and ``helm version`` agrees.

``python -m tests.harness.helm_tool build`` (``make helm-build``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.build import (
    BuildError,
    _build_lock,
    _go,
    _go_env,
    _log,
    build_command,
    cache_root,
    go_build_to,
)

SOURCE = Path(__file__).resolve().parent / "helm"
MODULE = "helm.sh/helm/v4"
PACKAGE = f"{MODULE}/cmd/helm"
_REQUIRE = re.compile(r"(?m)^\s*(?:require\s+)?(\S+)\s+(v\S+)(?:\s*//.*)?$")


@dataclass(frozen=True)
class Helm:
    path: Path
    version: str


def pinned_version() -> str:
    """The version of helm.sh/helm/v4 that go.mod pins."""
    return dict(_REQUIRE.findall((SOURCE / "go.mod").read_text()))[MODULE]


def workdir() -> Path:
    return cache_root() / f"helm-{pinned_version()}"


def _verified(path: Path) -> bool:
    """Executable, built from the pinned module, and `helm version` says so."""
    if not path.is_file() or not os.access(path, os.X_OK):
        return False
    version = pinned_version()
    try:
        info = subprocess.run([_go(), "version", "-m", str(path)], capture_output=True,
                              text=True, timeout=30, check=False)
        own = subprocess.run([str(path), "version", "--template", "{{.Version}}"],
                             capture_output=True, text=True, timeout=30, check=False,
                             env=isolated_env(path.parent.parent / "home"))
    except (OSError, subprocess.TimeoutExpired):
        return False
    built_from = any(line.split()[:3] in (["dep", MODULE, version], ["mod", MODULE, version])
                     for line in info.stdout.splitlines())
    return info.returncode == 0 and built_from and own.stdout.strip() == version


def isolated_env(home: Path) -> dict[str, str]:
    """Helm's configuration, cache and data under `home` (never the user's ~/.config/helm
    or repositories), and no ambient kubeconfig: callers pass --kubeconfig."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HELM_") and k != "KUBECONFIG"}
    env.update({
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    })
    return env


def _build(target: Path) -> float:
    start = time.monotonic()
    go_build_to(target, PACKAGE, SOURCE, flags=["-mod=readonly"], env=_go_env(module_mode=False),
                ldflags=f"-s -w -X {MODULE}/internal/version.version={pinned_version()}",
                nice=True)
    if not _verified(target):
        raise BuildError(f"{target} was built but does not report {MODULE} {pinned_version()}")
    return time.monotonic() - start


def ensure_helm() -> Helm:
    """The verified helm binary, built when missing (the seconds spent are logged)."""
    root = workdir()
    path = root / "bin" / "helm"
    if not _verified(path):
        with _build_lock(root):
            if not _verified(path):
                _log(f"helm build time: {_build(path):.1f} s")
    return Helm(path, pinned_version())


def run(tool: Helm, *args: str, home: Path, kubeconfig: Path | None = None,
        timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """`helm ARGS` with its state under `home` (`isolated_env`) and, when given, the
    kubeconfig; the caller checks the exit status (some tests want a failure)."""
    argv = [str(tool.path), *args, *(["--kubeconfig", str(kubeconfig)] if kubeconfig else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=isolated_env(home), check=False)


def main(argv: list[str] | None = None) -> int:
    return build_command("helm_tool", "helm", ensure_helm, lambda h: {"HELM": h.path}, argv)


if __name__ == "__main__":
    sys.exit(main())
