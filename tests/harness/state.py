"""The cluster's state file: what ``down``/``status`` need to find a cluster started elsewhere."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.procs import Component

STATE_FILE = "state.json"


@dataclass
class ClusterState:
    """PIDs, ports and paths of one cluster; rewritten after every component starts."""

    workdir: str
    server: str = ""
    kubeconfig: str = ""
    kubectl: str = ""
    k8s_version: str = ""
    components: list[Component] = field(default_factory=list)

    def save(self) -> None:
        """Atomic write (temp file + rename): a reader never sees a torn file."""
        path = Path(self.workdir) / STATE_FILE
        tmp = path.with_suffix(f".tmp.{os.getpid()}")
        data: dict[str, Any] = {
            "workdir": self.workdir,
            "server": self.server,
            "kubeconfig": self.kubeconfig,
            "kubectl": self.kubectl,
            "k8s_version": self.k8s_version,
            "components": [c.to_json() for c in self.components],
        }
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, workdir: Path) -> ClusterState | None:
        path = workdir / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        components = [Component(**c) for c in data.pop("components", [])]
        return cls(components=components, **data)

    @staticmethod
    def remove(workdir: Path) -> None:
        (workdir / STATE_FILE).unlink(missing_ok=True)
