"""Argo CD's Lua health checks and kstatus, as the real libraries run them.

Two small Go programs in ``tests/harness/gitops`` (a Go module whose go.mod and go.sum pin
github.com/yuin/gopher-lua, layeh.com/gopher-json and sigs.k8s.io/cli-utils, all from the
Go module proxy):

- ``argocd-health ARGOCD_CM_JSON``: runs the health check an argocd-cm ConfigMap holds for
  each object, as Argo CD's controller does (its key parsing, object conversion, libraries
  and result validation; see the program's comments);
- ``kstatus``: ``status.Compute`` of cli-utils on each object.

Both read a JSON array of objects on stdin and write a JSON array of results. They are
built with ``-mod=readonly`` (go.sum is committed: nothing is resolved at build time) into
``~/.cache/oras-cache/gitops-checks-<digest>/bin``, the digest covering go.mod, go.sum and
the sources, under the same lock and atomic rename as the other tools; a cached binary is
used once its ``-version`` output names the pinned modules.

``python -m tests.harness.gitops_checks build`` (``make gitops-checks-build``) builds both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness.build import (
    BuildError,
    _build_lock,
    _go_env,
    _log,
    build_command,
    go_build_to,
    module_dir,
)

SOURCE = Path(__file__).resolve().parent / "gitops"
PROGRAMS = ("argocd-health", "kstatus")
# The modules each program must report (`-version`), with the versions go.mod pins.
PINNED = {
    "argocd-health": ("github.com/yuin/gopher-lua", "layeh.com/gopher-json"),
    "kstatus": ("sigs.k8s.io/cli-utils", "k8s.io/apimachinery"),
}
_REQUIRE = re.compile(r"(?m)^\s*(?:require\s+)?(\S+)\s+(v\S+)(?:\s*//.*)?$")

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class GitopsChecks:
    argocd_health: Path
    kstatus: Path
    versions: dict[str, str]  # module -> pinned version


def pinned_versions() -> dict[str, str]:
    """module -> version, from the committed go.mod (the one place the versions live)."""
    return dict(_REQUIRE.findall((SOURCE / "go.mod").read_text()))


def workdir() -> Path:
    return module_dir("gitops-checks", SOURCE)


def _expected(program: str) -> list[str]:
    versions = pinned_versions()
    return [f"{module}@{versions[module]}" for module in PINNED[program]]


def _verified(path: Path, program: str) -> bool:
    if not path.is_file() or not os.access(path, os.X_OK):
        return False
    try:
        proc = subprocess.run([str(path), "-version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    words = proc.stdout.split()
    return proc.returncode == 0 and all(e in words for e in _expected(program))


def _build(program: str, target: Path) -> float:
    start = time.monotonic()
    go_build_to(target, f"./cmd/{program}", SOURCE, flags=["-mod=readonly"],
                env=_go_env(module_mode=False))
    if not _verified(target, program):
        raise BuildError(f"{target} was built but `-version` does not name "
                         f"{_expected(program)}")
    return time.monotonic() - start


def ensure_gitops_checks() -> GitopsChecks:
    """The verified programs, built when missing (seconds spent are logged)."""
    root = workdir()
    paths = {p: root / "bin" / p for p in PROGRAMS}
    if not all(_verified(paths[p], p) for p in PROGRAMS):
        with _build_lock(root):
            spent = {p: _build(p, paths[p]) for p in PROGRAMS if not _verified(paths[p], p)}
        if spent:
            _log("gitops checks build times: "
                 + ", ".join(f"{p} {s:.1f} s" for p, s in spent.items()))
    return GitopsChecks(paths["argocd-health"], paths["kstatus"], pinned_versions())


def _run(argv: list[str], objects: Sequence[Obj]) -> list[dict[str, str]]:
    proc = subprocess.run(argv, input=json.dumps(list(objects)), capture_output=True,
                          text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed (exit {proc.returncode}): {proc.stderr}")
    results: list[dict[str, str]] = json.loads(proc.stdout)
    if len(results) != len(objects):
        raise RuntimeError(f"{argv[0]}: {len(results)} results for {len(objects)} objects")
    return results


def argocd_health(tools: GitopsChecks, argocd_cm: Path | Obj,
                  objects: Sequence[Obj]) -> list[dict[str, str]]:
    """Argo CD's health of each object under the checks of an argocd-cm ConfigMap (a YAML
    file such as dist/argocd/argocd-cm.yaml, or the ConfigMap as a mapping)."""
    configmap = (yaml.safe_load(argocd_cm.read_text()) if isinstance(argocd_cm, Path)
                 else argocd_cm)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="argocd-cm-") as handle:
        json.dump(configmap, handle)
        handle.flush()
        return _run([str(tools.argocd_health), handle.name], objects)


def kstatus(tools: GitopsChecks, objects: Sequence[Obj]) -> list[dict[str, str]]:
    """kstatus (cli-utils' status.Compute) of each object."""
    return _run([str(tools.kstatus)], objects)


def main(argv: list[str] | None = None) -> int:
    return build_command("gitops_checks", "argocd-health and kstatus", ensure_gitops_checks,
                         lambda t: {"ARGOCD_HEALTH": t.argocd_health, "KSTATUS": t.kstatus},
                         argv)

if __name__ == "__main__":
    sys.exit(main())
