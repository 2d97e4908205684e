"""The one place that pins the control-plane versions.

Override with the environment variables ``K8S_VERSION`` (e.g. ``v1.35.4``) and
``ETCD_VERSION`` to build and test against another release.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

DEFAULT_K8S_VERSION = "v1.37.2"
DEFAULT_ETCD_VERSION = "v3.6.16"

_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class K8sVersion:
    """A Kubernetes release and the matching version of its staging modules."""

    version: str  # v1.37.2
    major: int
    minor: int
    patch: int

    @property
    def staging(self) -> str:
        """k8s.io/api etc. are tagged v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>."""
        return f"v0.{self.minor}.{self.patch}"


def _normalise(raw: str, what: str) -> tuple[str, int, int, int]:
    value = raw.strip()
    if not value.startswith("v"):
        value = "v" + value
    match = _SEMVER.match(value)
    if not match:
        raise ValueError(f"{what} must look like v1.2.3, got {raw!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return value, major, minor, patch


def k8s_version() -> K8sVersion:
    """The Kubernetes version to build and run (env ``K8S_VERSION`` wins)."""
    value, major, minor, patch = _normalise(
        os.environ.get("K8S_VERSION") or DEFAULT_K8S_VERSION, "K8S_VERSION"
    )
    if major != 1:
        raise ValueError(f"K8S_VERSION must be a v1.x.y release, got {value}")
    return K8sVersion(value, major, minor, patch)


def etcd_version() -> str:
    """The etcd version to build and run (env ``ETCD_VERSION`` wins)."""
    return _normalise(os.environ.get("ETCD_VERSION") or DEFAULT_ETCD_VERSION, "ETCD_VERSION")[0]
