"""`OciSyncService`: the sync service following an OCI artifact (`orascache sync --source
oci`), rendered to `dist/install-oci/` (`sync.render.synth.install_oci_files`).

The git install's sibling (`constructs_lib.install_git.GitSyncService`) with the same shape and
the same least-privilege RBAC (`GIT_MEMBER_RULES` where the caches live, the ApplySet
parent's ConfigMap and Events in `target_namespace`): the OCI source runs the git source's
pipeline. What differs: the artifact reference and path come from the environment
(`ORASCACHE_OCI_ARTIFACT`, `ORASCACHE_OCI_PATH`: a kustomize patch of the container's env
points the install at another artifact), the registry credentials Secret is mounted at
`REGISTRY_CREDENTIALS_MOUNT`, and the names (`oras-cache-oci-sync`, component `oci-sync`,
ApplySet parent `orascache-oci`) differ, so the three installs can share a namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cdk8s
import constructs
from cdk8s_plus_34 import k8s

from constructs_lib.install import (
    DEFAULT_IMAGE,
    DEFAULT_METRICS_PORT,
    DEFAULT_NAMESPACE,
    sync_labels,
)
from constructs_lib.install_git import (
    _RevisionServiceConstruct,
    secret_volume,
    trigger_token_volume,
)
from constructs_lib.mounts import REGISTRY_CREDENTIALS_MOUNT

OCI_NAME = "oras-cache-oci-sync"
OCI_COMPONENT = "oci-sync"
OCI_METRICS_SERVICE = f"{OCI_NAME}-metrics"
OCI_APPLYSET_ROLE = f"{OCI_NAME}-applyset"
DEFAULT_ARTIFACT = "registry.example.com/your-org/your-caches:main"  # a placeholder
DEFAULT_REGISTRY_CREDENTIALS_SECRET = "oras-cache-registry-credentials"
DEFAULT_OCI_APPLYSET_NAME = "orascache-oci"
OCI_ENV = {"artifact": "ORASCACHE_OCI_ARTIFACT", "path": "ORASCACHE_OCI_PATH"}


def oci_labels() -> dict[str, str]:
    return {**sync_labels(), "app.kubernetes.io/component": OCI_COMPONENT}


def oci_selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "oras-cache", "app.kubernetes.io/component": OCI_COMPONENT}


def oci_sync_args(target_namespace: str, applyset_name: str, *, interval: str,
                  metrics_port: int, credentials: bool, drift_correction: bool,
                  trigger_secret: str | None = None) -> list[str]:
    """Container args of the OCI source; the artifact and path come from the environment."""
    return [
        "sync", "--source", "oci",
        "--artifact", f"$({OCI_ENV['artifact']})",
        "--path", f"$({OCI_ENV['path']})",
        "--namespace", target_namespace,
        "--applyset-name", applyset_name,
        "--interval", interval,
        "--http-addr", f":{metrics_port}",
        # As the git install: one render helper at most, within the memory limit.
        "--render-workers", "1",
        *(["--registry-credentials-file", REGISTRY_CREDENTIALS_MOUNT] if credentials else []),
        *([] if drift_correction else ["--no-drift-correction"]),
        *(["--trigger-secret", trigger_secret] if trigger_secret else []),
    ]


class OciSyncService(_RevisionServiceConstruct):
    """The sync service following the OCI artifact `artifact` (HOST/REPOSITORY:TAG).

    It applies the rendered children of the OrasCache files at `path` inside the artifact
    as a KEP-3659 ApplySet whose parent is the ConfigMap `applyset_name` in
    `target_namespace`; no CRD is needed. One replica, `Recreate` (no leader election).
    RBAC as `GitSyncService`'s. The Secret `registry_credentials_secret` (keys `username`
    + `password`, or `token`) is mounted read-only with mode 0400 (`fsGroup` lets the
    non-root user read it); `None`: anonymous pulls (a public artifact). The image must
    hold the oras CLI (sync/Dockerfile copies it). `trigger_secret`: as `GitSyncService`'s,
    POST /trigger for callers that show its `token`; `None` (the default): polling only.
    """

    account = OCI_NAME

    def _labels(self) -> dict[str, str]:
        return oci_labels()

    def _selector_labels(self) -> dict[str, str]:
        return oci_selector_labels()

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        artifact: str = DEFAULT_ARTIFACT,
        path: str = ".",
        registry_credentials_secret: str | None = DEFAULT_REGISTRY_CREDENTIALS_SECRET,
        target_namespace: str = "default",
        target_namespaces: Sequence[str] | None = None,
        applyset_name: str = DEFAULT_OCI_APPLYSET_NAME,
        interval: str = "1m",
        drift_correction: bool = True,
        namespace: str = DEFAULT_NAMESPACE,
        image: str = DEFAULT_IMAGE,
        metrics_port: int = DEFAULT_METRICS_PORT,
        trigger_secret: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        if "@" in artifact.split("/", 1)[0] or "://" in artifact.removeprefix("oci://"):
            raise ValueError("artifact is HOST[:PORT]/REPOSITORY:TAG, without credentials: "
                             "put them in registry_credentials_secret")
        self._revision_access(
            namespace=namespace, target_namespace=target_namespace,
            target_namespaces=target_namespaces, applyset_role=OCI_APPLYSET_ROLE,
            applyset_name=applyset_name, metrics_service=OCI_METRICS_SERVICE,
            metrics_port=metrics_port)
        secrets = [secret_volume("registry-credentials", registry_credentials_secret,
                                 REGISTRY_CREDENTIALS_MOUNT)
                   ] if registry_credentials_secret is not None else []
        if trigger_secret is not None:
            secrets.append(trigger_token_volume(trigger_secret))
        env = [k8s.EnvVar(name=OCI_ENV["artifact"], value=artifact),
               k8s.EnvVar(name=OCI_ENV["path"], value=path)]
        args = oci_sync_args(target_namespace, applyset_name, interval=interval,
                             metrics_port=metrics_port,
                             credentials=registry_credentials_secret is not None,
                             drift_correction=drift_correction, trigger_secret=trigger_secret)
        self._single_deployment(
            image=image, args=args, metrics_port=metrics_port, env=env,
            volumes=[volume for volume, _ in secrets], mounts=[mount for _, mount in secrets],
            secrets=bool(secrets))


def render_oci_install(**options: Any) -> list[dict[str, Any]]:
    """The manifests of one `OciSyncService(**options)`, in apply order."""
    app = cdk8s.App()
    chart = cdk8s.Chart(app, "install-oci", disable_resource_name_hashes=True)
    OciSyncService(chart, "OciSyncService", **options)
    manifests: list[dict[str, Any]] = list(chart.to_json())
    return manifests
