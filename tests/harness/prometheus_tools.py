"""promtool and Prometheus's PromQL parser, built from the Go module proxy.

``tests/harness/prometheus`` is a Go module whose go.mod and go.sum pin
github.com/prometheus/prometheus (the one place its version lives). It builds:

- ``promtool``, Prometheus's own command (``go build github.com/prometheus/prometheus/
  cmd/promtool``, listed as a ``tool`` in go.mod): ``check rules`` and ``test rules``;
- ``promql-selectors`` (``cmd/promql-selectors``): reads a JSON array of PromQL
  expressions and prints, for each, its parse error or its vector selectors, parsed by
  ``promql/parser`` of the same module, so that a test can find every metric a rule or a
  dashboard panel reads in a real ``/metrics`` scrape.

Both are built with ``-mod=readonly`` (nothing is resolved at build time) into
``~/.cache/oras-cache/prometheus-tools-<digest>/bin``, the digest covering go.mod, go.sum
and the sources, under the same lock and atomic rename as the other tools. A cached binary
is used once its embedded build information (``go version -m``) names the pinned module.

``operator_crds()`` downloads prometheus-operator's module (``go mod download``, checked
against the Go checksum database like every module) for the CRDs of ``PrometheusRule``
and ``ServiceMonitor`` that it ships, so that a test can apply dist/monitoring/ to a real
API server that validates them.

``python -m tests.harness.prometheus_tools build`` (``make prometheus-tools-build``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.build import (
    BuildError,
    _build_lock,
    _go,
    _go_env,
    _log,
    build_command,
    go_build_to,
    module_dir,
)

SOURCE = Path(__file__).resolve().parent / "prometheus"
MODULE = "github.com/prometheus/prometheus"
# program -> the package `go build` compiles, inside the wrapper module.
PACKAGES = {
    "promtool": f"{MODULE}/cmd/promtool",
    "promql-selectors": "./cmd/promql-selectors",
}
OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
OPERATOR_VERSION = "v0.90.1"
OPERATOR_CRDS = ("monitoring.coreos.com_prometheusrules.yaml",
                 "monitoring.coreos.com_servicemonitors.yaml")
_REQUIRE = re.compile(r"(?m)^\s*(?:require\s+)?(\S+)\s+(v\S+)(?:\s*//.*)?$")


@dataclass(frozen=True)
class PrometheusTools:
    promtool: Path
    promql_selectors: Path
    module_version: str  # v0.316.0 is Prometheus 3.16.0

    @property
    def prometheus_version(self) -> str:
        """Prometheus 3.x is tagged v0.3xx.y as a Go module: v0.316.0 -> 3.16.0."""
        return release_of(self.module_version)


def release_of(module_version: str) -> str:
    match = re.fullmatch(r"v0\.3(\d\d)\.(\d+)", module_version)
    if not match:
        raise ValueError(f"not a Prometheus 3 module version: {module_version}")
    return f"3.{int(match.group(1))}.{match.group(2)}"


def pinned_version() -> str:
    """The version of github.com/prometheus/prometheus that go.mod pins."""
    return dict(_REQUIRE.findall((SOURCE / "go.mod").read_text()))[MODULE]


def workdir() -> Path:
    return module_dir("prometheus-tools", SOURCE)


def _verified(path: Path) -> bool:
    """Executable, and built from the pinned module (its embedded build information)."""
    if not path.is_file() or not os.access(path, os.X_OK):
        return False
    try:
        proc = subprocess.run([_go(), "version", "-m", str(path)], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    lines = [line.split() for line in proc.stdout.splitlines()]
    return proc.returncode == 0 and any(
        words[:3] in (["dep", MODULE, pinned_version()], ["mod", MODULE, pinned_version()])
        for words in lines)


def _build(program: str, target: Path) -> float:
    start = time.monotonic()
    # promtool prints this as its version (`promtool --version`); it is not set otherwise
    # when built from a module other than Prometheus's own.
    version = release_of(pinned_version())
    ldflags = f"-s -w -X github.com/prometheus/common/version.Version={version}"
    go_build_to(target, PACKAGES[program], SOURCE, flags=["-mod=readonly"],
                env=_go_env(module_mode=False), ldflags=ldflags)
    if not _verified(target):
        raise BuildError(f"{target} was built but its build information does not name "
                         f"{MODULE} {pinned_version()}")
    return time.monotonic() - start


def ensure_prometheus_tools() -> PrometheusTools:
    """The verified programs, built when missing (seconds spent are logged)."""
    root = workdir()
    paths = {p: root / "bin" / p for p in PACKAGES}
    if not all(_verified(path) for path in paths.values()):
        with _build_lock(root):
            spent = {p: _build(p, path) for p, path in paths.items() if not _verified(path)}
        if spent:
            _log("prometheus tools build times: "
                 + ", ".join(f"{p} {s:.1f} s" for p, s in spent.items()))
    return PrometheusTools(paths["promtool"], paths["promql-selectors"], pinned_version())


def promtool(tools: PrometheusTools, *args: str, cwd: Path | None = None,
             ) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller checks the exit status (failures are what some tests want)."""
    return subprocess.run([str(tools.promtool), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def selectors(tools: PrometheusTools, exprs: Sequence[str]) -> list[dict[str, Any]]:
    """For each expression: {"error": ...} or {"selectors": [{"metric", "matchers"}]}."""
    proc = subprocess.run([str(tools.promql_selectors)], input=json.dumps(list(exprs)),
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"promql-selectors failed (exit {proc.returncode}): {proc.stderr}")
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    if len(results) != len(exprs):
        raise RuntimeError(f"promql-selectors: {len(results)} results for {len(exprs)} "
                           "expressions")
    return results


def operator_crds() -> list[Path]:
    """The PrometheusRule and ServiceMonitor CRDs of prometheus-operator OPERATOR_VERSION."""
    proc = subprocess.run(
        [_go(), "mod", "download", "-json", f"{OPERATOR_MODULE}@{OPERATOR_VERSION}"],
        cwd=SOURCE, env=_go_env(module_mode=False), capture_output=True, text=True,
        timeout=600, check=False)
    if proc.returncode != 0:
        raise BuildError(f"go mod download {OPERATOR_MODULE}@{OPERATOR_VERSION} failed:\n"
                         f"{proc.stdout}{proc.stderr}")
    directory = Path(json.loads(proc.stdout)["Dir"]) / "example/prometheus-operator-crd"
    return [directory / name for name in OPERATOR_CRDS]


def main(argv: list[str] | None = None) -> int:
    return build_command(
        "prometheus_tools", "promtool and promql-selectors", ensure_prometheus_tools,
        lambda t: {"PROMTOOL": t.promtool, "PROMQL_SELECTORS": t.promql_selectors}, argv)

if __name__ == "__main__":
    sys.exit(main())
