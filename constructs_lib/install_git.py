"""`GitSyncService`: the sync service following a git repository, rendered to
`dist/install-git/` (`sync.render.synth.install_git_files`): no CRD, no webhook, one
replica, the credentials Secret mounted by name, and RBAC for the ApplySet it applies.

`_RevisionServiceConstruct` holds what it shares with the OCI install
(`constructs_lib.install_oci`): the ApplySet members' and parent's RBAC, the metrics
Service and the single `Recreate` Deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import cdk8s
import constructs
from cdk8s_plus_34 import k8s

from constructs_lib.install import (
    DEFAULT_IMAGE,
    DEFAULT_METRICS_PORT,
    DEFAULT_NAMESPACE,
    PORT_NAME,
    REVISION_MEMORY,
    RUN_AS_USER,
    _ServiceConstruct,
    pod_spec,
    sync_labels,
)
from constructs_lib.mounts import GIT_CREDENTIALS_MOUNT
from constructs_lib.mounts import TRIGGER_MOUNT as GIT_TRIGGER_MOUNT

GIT_NAME = "oras-cache-git-sync"
GIT_COMPONENT = "git-sync"
GIT_METRICS_SERVICE = f"{GIT_NAME}-metrics"
GIT_APPLYSET_ROLE = f"{GIT_NAME}-applyset"
GIT_VOLUME_DIR = "/var/lib/orascache/git"  # the emptyDir: owned by root (group: fsGroup)
# A directory the service creates, so owned by its own user: git refuses a repository owned
# by another user ("detected dubious ownership"), and the emptyDir itself is root's.
GIT_CLONE_DIR = f"{GIT_VOLUME_DIR}/clone"
DEFAULT_GIT_REPO = "https://git.example.com/your-org/your-caches.git"  # a placeholder
DEFAULT_GIT_CREDENTIALS_SECRET = "oras-cache-git-credentials"
DEFAULT_APPLYSET_NAME = "orascache-git"
# The environment variables the container args refer to as $(NAME): a kustomize patch of
# the container's `env` (merged by name) points an install at another repo, ref or path.
GIT_ENV = {"repo": "ORASCACHE_GIT_REPO", "ref": "ORASCACHE_GIT_REF", "path": "ORASCACHE_GIT_PATH"}
GIT_MEMBER_VERBS = ["get", "list", "create", "patch", "delete"]
# The git source applies the rendered children directly (no OrasCache CRD, no watch): it
# lists the ApplySet members by label, GETs an object before applying it when its listed
# copy differs, applies (create + patch), prunes (delete).
GIT_MEMBER_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["persistentvolumeclaims", "services"],
     "verbs": GIT_MEMBER_VERBS},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": GIT_MEMBER_VERBS},
]


def git_applyset_rules(applyset_name: str) -> list[dict[str, list[str]]]:
    """In the namespace of the ApplySet parent: that one ConfigMap (read, and server-side
    applied: a PATCH that creates is authorized as `create` *with* the name, so
    `resourceNames` holds for it too) and the Events recorded on it."""
    return [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [applyset_name],
         "verbs": ["get", "create", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]


def git_labels() -> dict[str, str]:
    return {**sync_labels(), "app.kubernetes.io/component": GIT_COMPONENT}


def git_selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "oras-cache", "app.kubernetes.io/component": GIT_COMPONENT}


def git_sync_args(
    target_namespace: str,
    applyset_name: str,
    *,
    interval: str,
    metrics_port: int,
    credentials: bool,
    drift_correction: bool,
    trigger_secret: str | None = None,
) -> list[str]:
    """Container args of the git source; repo, ref and path come from the environment."""
    return [
        "sync",
        "--source",
        "git",
        "--repo",
        f"$({GIT_ENV['repo']})",
        "--ref",
        f"$({GIT_ENV['ref']})",
        "--path",
        f"$({GIT_ENV['path']})",
        "--namespace",
        target_namespace,
        "--applyset-name",
        applyset_name,
        "--interval",
        interval,
        "--http-addr",
        f":{metrics_port}",
        "--git-dir",
        GIT_CLONE_DIR,
        # One helper process (~110-125 MB while it lives) renders alongside the service
        # when a revision has ~800 new caches of distinct specs or more; the memory limit
        # below allows for one, and the node's CPU count (the default's input) says
        # nothing about it.
        "--render-workers",
        "1",
        *(["--credentials-file", GIT_CREDENTIALS_MOUNT] if credentials else []),
        *([] if drift_correction else ["--no-drift-correction"]),
        *(["--trigger-secret", trigger_secret] if trigger_secret else []),
    ]


def trigger_token_volume(trigger_secret: str) -> tuple[k8s.Volume, k8s.VolumeMount]:
    """The `token` key of `trigger_secret`, read-only at `GIT_TRIGGER_MOUNT`, where
    `--trigger-secret` reads it (POST /trigger of the git and OCI sources)."""
    volume = k8s.Volume(
        name="trigger-token",
        secret=k8s.SecretVolumeSource(
            secret_name=trigger_secret,
            default_mode=0o400,
            optional=False,
            items=[k8s.KeyToPath(key="token", path="token")],
        ),
    )
    return volume, k8s.VolumeMount(name="trigger-token", mount_path=GIT_TRIGGER_MOUNT,
                                   read_only=True)


def secret_volume(name: str, secret: str, mount_path: str) -> tuple[k8s.Volume,
                                                                  k8s.VolumeMount]:
    """A Secret mounted read-only, mode 0400 (the pod's fsGroup makes it readable)."""
    volume = k8s.Volume(name=name, secret=k8s.SecretVolumeSource(
        secret_name=secret, default_mode=0o400, optional=False))
    return volume, k8s.VolumeMount(name=name, mount_path=mount_path, read_only=True)


class _RevisionServiceConstruct(_ServiceConstruct):
    """What the git and OCI installs share: RBAC for the ApplySet's members and parent, a
    metrics Service, and one replica replaced with `Recreate` (no leader election: two
    instances must not apply and prune the same ApplySet)."""

    def _revision_access(self, *, namespace: str, target_namespace: str,
                         target_namespaces: Sequence[str] | None, applyset_role: str,
                         applyset_name: str, metrics_service: str, metrics_port: int) -> None:
        if target_namespaces is not None:
            if isinstance(target_namespaces, str):
                raise TypeError("target_namespaces must be a sequence of names, not a string")
            target_namespaces = list(dict.fromkeys([target_namespace, *target_namespaces]))
        if not 1 <= metrics_port <= 65535:
            raise ValueError("metrics_port must be a TCP port")
        self._identity(namespace)
        self._access(GIT_MEMBER_RULES, target_namespaces, "Members")
        self._role("ApplySet", applyset_role, target_namespace,
                   git_applyset_rules(applyset_name))
        self.metrics_service = self._metrics_service(
            metrics_service, self._selector_labels(), metrics_port)

    def _single_deployment(self, *, image: str, args: list[str], metrics_port: int,
                           env: list[k8s.EnvVar], volumes: list[k8s.Volume],
                           mounts: list[k8s.VolumeMount], secrets: bool) -> None:
        self.deployment = k8s.KubeDeployment(
            self,
            "Deployment",
            metadata=self._metadata(self.account),
            spec=k8s.DeploymentSpec(
                replicas=1,
                strategy=k8s.DeploymentStrategy(type="Recreate"),
                selector=k8s.LabelSelector(match_labels=self._selector_labels()),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels=self._labels()),
                    spec=pod_spec(
                        self.account, image, args,
                        [k8s.ContainerPort(name=PORT_NAME, container_port=metrics_port,
                                           protocol="TCP")],
                        env=env, volumes=volumes, mounts=mounts,
                        fs_group=RUN_AS_USER if secrets else None, memory=REVISION_MEMORY,
                    ),
                ),
            ),
        )


class GitSyncService(_RevisionServiceConstruct):
    """The sync service following a git repository (`orascache sync --source git`).

    It applies the rendered children of the OrasCache files found at `path` of `ref` as a
    KEP-3659 ApplySet whose parent is the ConfigMap `applyset_name` in `target_namespace`
    (also the namespace of caches that name none); no CRD is installed or needed.
    One replica, replaced with `Recreate`: the git source has no leader election, and two
    instances must not apply and prune the same ApplySet. Objects: the Namespace of the
    service (restricted Pod Security), its ServiceAccount, RBAC, a metrics Service, the
    Deployment. Names and the `app.kubernetes.io/component` label (`git-sync`) differ from
    `SyncService`'s, so both can be installed in the same namespace.

    RBAC: `GIT_MEMBER_RULES` where the caches may live (`target_namespaces=None`: any
    namespace, through a ClusterRole; a list: a Role in each, `target_namespace` always
    included) and `git_applyset_rules` in `target_namespace`. No Secrets API: the
    credentials Secret `credentials_secret` (keys `username` + `password` or `token`, or
    `ssh-privatekey` + `known_hosts`) is mounted read-only at `GIT_CREDENTIALS_MOUNT`
    with mode 0400; `fsGroup` makes it readable by the non-root user. `None`: no
    credentials (a public repository).

    `trigger_secret`: a Secret whose key `token` (16 bytes or more) turns on POST /trigger
    for callers that show it (bearer token, GitLab token, or GitHub signature); mounted
    like the credentials at `GIT_TRIGGER_MOUNT`. `None` (the default): no /trigger, the
    repository is fetched every `interval`.
    """

    account = GIT_NAME

    def _labels(self) -> dict[str, str]:
        return git_labels()

    def _selector_labels(self) -> dict[str, str]:
        return git_selector_labels()

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        repo: str = DEFAULT_GIT_REPO,
        ref: str = "main",
        path: str = ".",
        credentials_secret: str | None = DEFAULT_GIT_CREDENTIALS_SECRET,
        target_namespace: str = "default",
        target_namespaces: Sequence[str] | None = None,
        applyset_name: str = DEFAULT_APPLYSET_NAME,
        interval: str = "1m",
        drift_correction: bool = True,
        namespace: str = DEFAULT_NAMESPACE,
        image: str = DEFAULT_IMAGE,
        metrics_port: int = DEFAULT_METRICS_PORT,
        trigger_secret: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        url = urlsplit(repo)
        if url.password or (url.scheme in ("http", "https") and url.username):
            raise ValueError("repo must not carry credentials: put them in credentials_secret")
        self._revision_access(
            namespace=namespace, target_namespace=target_namespace,
            target_namespaces=target_namespaces, applyset_role=GIT_APPLYSET_ROLE,
            applyset_name=applyset_name, metrics_service=GIT_METRICS_SERVICE,
            metrics_port=metrics_port)
        volumes = [
            k8s.Volume(
                name="git",
                empty_dir=k8s.EmptyDirVolumeSource(size_limit=k8s.Quantity.from_string("1Gi")),
            )
        ]
        mounts = [k8s.VolumeMount(name="git", mount_path=GIT_VOLUME_DIR)]
        secrets = [secret_volume("git-credentials", credentials_secret, GIT_CREDENTIALS_MOUNT)
                   ] if credentials_secret is not None else []
        if trigger_secret is not None:
            secrets.append(trigger_token_volume(trigger_secret))
        volumes += [volume for volume, _ in secrets]
        mounts += [mount for _, mount in secrets]
        env = [
            k8s.EnvVar(name=GIT_ENV["repo"], value=repo),
            k8s.EnvVar(name=GIT_ENV["ref"], value=ref),
            k8s.EnvVar(name=GIT_ENV["path"], value=path),
        ]
        args = git_sync_args(
            target_namespace,
            applyset_name,
            interval=interval,
            metrics_port=metrics_port,
            credentials=credentials_secret is not None,
            drift_correction=drift_correction,
            trigger_secret=trigger_secret,
        )
        self._single_deployment(
            image=image, args=args, metrics_port=metrics_port, env=env, volumes=volumes,
            mounts=mounts, secrets=bool(secrets))


def render_git_install(**options: Any) -> list[dict[str, Any]]:
    """The manifests of one `GitSyncService(**options)`, in apply order."""
    app = cdk8s.App()
    chart = cdk8s.Chart(app, "install-git", disable_resource_name_hashes=True)
    GitSyncService(chart, "GitSyncService", **options)
    manifests: list[dict[str, Any]] = list(chart.to_json())
    return manifests
