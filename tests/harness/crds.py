"""Install CustomResourceDefinitions and wait until their kinds can really be used.

"Established" is not quite enough: a fresh CRD answers 429 ("storage is
(re)initializing") or 404 for about a second, so we also poll its list endpoint; and
its OpenAPI v3 document (what ``kubectl explain`` reads) is published a little later.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tests.harness.cluster import LocalCluster

RETRYABLE = (
    "429",
    "TooManyRequests",
    "NotFound",
    "the server could not find",
    "connection refused",
)


@dataclass(frozen=True)
class CrdRef:
    """What we need to poll a CRD: its name, group/version and plural."""

    name: str
    group_version: str
    plural: str

    @property
    def list_path(self) -> str:
        return f"/apis/{self.group_version}/{self.plural}"


def crd_refs(files: Sequence[Path]) -> list[CrdRef]:
    """Every CustomResourceDefinition in the given YAML files (other kinds are ignored)."""
    refs = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec: dict[str, Any] = doc["spec"]
            versions = [v for v in spec.get("versions", []) if v.get("served", True)]
            version = next((v for v in versions if v.get("storage")), versions[0])["name"]
            refs.append(
                CrdRef(
                    doc["metadata"]["name"], f"{spec['group']}/{version}", spec["names"]["plural"]
                )
            )
    return refs


def install_crds(
    cluster: LocalCluster, files: Sequence[Path], timeout: float = 60.0
) -> list[CrdRef]:
    """Server-side apply the files, wait for Established, then until the kinds answer 200."""
    files = sorted(files)
    if not files:
        return []
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=oras-cache-harness"]
    for path in files:
        args += ["-f", str(path)]
    deadline = time.monotonic() + timeout
    while True:
        proc = cluster.kubectl(*args, check=False)
        if proc.returncode == 0:
            break
        if time.monotonic() > deadline or not any(r in proc.stderr for r in RETRYABLE):
            cluster.kubectl(*args)  # raises with kubectl's stderr
        time.sleep(0.3)
    refs = crd_refs(files)
    if refs:
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={int(timeout)}s",
            *(f"customresourcedefinition/{r.name}" for r in refs),
        )
    for ref in refs:
        _wait_servable(cluster, ref, deadline)
    return refs


def _openapi_published(cluster: LocalCluster, ref: CrdRef) -> bool:
    """The group/version's own OpenAPI document describes the resource (`kubectl explain`
    reads it; the root index lists the group/version a moment before it does)."""
    status, body = cluster.admin_get("/openapi/v3")
    if status != 200 or f"apis/{ref.group_version}" not in json.loads(body).get("paths", {}):
        return False
    status, body = cluster.admin_get(f"/openapi/v3/apis/{ref.group_version}")
    return status == 200 and any(
        path.endswith(f"/{ref.plural}") for path in json.loads(body).get("paths", {})
    )


def _wait_servable(cluster: LocalCluster, ref: CrdRef, deadline: float) -> None:
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = cluster.admin_get(ref.list_path)
        if status == 200 and _openapi_published(cluster, ref):
            return
        time.sleep(0.1)
    raise TimeoutError(f"CRD {ref.name}: {ref.list_path} answers {status}: {body[:300]}")
