"""A real local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager).

Built from the Go module proxy (see ``build``), started on 127.0.0.1 (see ``cluster``).
"""

from __future__ import annotations

from tests.harness.build import Binaries, ensure_binaries
from tests.harness.cluster import LocalCluster
from tests.harness.health import ClusterError

__all__ = ["Binaries", "ClusterError", "LocalCluster", "ensure_binaries"]
