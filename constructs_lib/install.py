"""`SyncService`: the construct that renders the sync service's own install manifests.

`dist/install/` is rendered from it (see `sync.render.synth.install_files`): the CRD, a
Namespace, a ServiceAccount, least-privilege RBAC, the Deployment and a metrics Service.
Like `OrasCacheRegistry` it uses the typed low-level API (`cdk8s_plus_34.k8s`), so every
field below is deliberate and visible in the rendered YAML.

RBAC, and why each rule is there (and nothing else: no wildcards, no Secrets):
- `orascaches` get/list/watch: the cluster source lists and watches the caches.
- `orascaches/status` get/patch/update: conditions, observedGeneration, endpoint,
  inventory are written on the status subresource only.
- core `services`, `persistentvolumeclaims`, apps `statefulsets`: get/list/watch to follow
  its children (drift correction), create + patch for server-side apply (applying an
  object that does not exist yet is authorized as `create` too), delete for pruning.
  No `update`: server-side apply is a PATCH.
- core `events` and `events.k8s.io` `events`: create/patch (recorders patch the count of
  a repeated event); never read.
- `admissionregistration.k8s.io` `mutatingwebhookconfigurations` get/update, only the
  one named `NAME` (a ClusterRole: the object is cluster-scoped): the webhook keeps its
  caBundle current through certificate rotations.
- `coordination.k8s.io` `leases`: a Role in the service's own namespace only. get and
  update are restricted by `resourceNames` to the lease `LEASE_NAME`; `create` cannot be:
  a create is a POST to the collection, so the authorizer sees no object name in the
  request path (the name is only in the body) and a `resourceNames` rule never matches it.
Watching all namespaces grants the namespaced rules through a ClusterRole bound by a
ClusterRoleBinding; a list of namespaces gets one Role + RoleBinding per namespace.

`GitSyncService` (`constructs_lib.install_git`) and `OciSyncService`
(`constructs_lib.install_oci`) are the revision sources' variants, built on this module's
`_ServiceConstruct` and `pod_spec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cdk8s
import constructs
from cdk8s_plus_34 import k8s

from constructs_lib import schema
from constructs_lib.annotations import PREFIX as ANNOTATION_PREFIX

NAME = "oras-cache-sync"
LEASE_NAME = NAME
LEADER_ELECTION_ROLE = f"{NAME}-leader-election"
METRICS_SERVICE = f"{NAME}-metrics"
DEFAULT_NAMESPACE = "oras-cache-system"
DEFAULT_IMAGE = "ghcr.io/converged-computing/oras-cache-sync:0.1.0"
DEFAULT_METRICS_PORT = 8080
CONTAINER_NAME = "sync"
PORT_NAME = "http"
RUN_AS_USER = 65532  # "nonroot" in distroless and chainguard images; see sync/Dockerfile
# The container's memory (Python plus the Node process that jsii runs), request and limit,
# set from the measured peak at 10,000 caches plus headroom: docs/performance.md, "Memory
# limits of the install". The revision sources (git, OCI) allow for one render helper too.
CLUSTER_MEMORY = ("192Mi", "512Mi")
REVISION_MEMORY = ("192Mi", "512Mi")
TMP = "/tmp"
RBAC_GROUP = "rbac.authorization.k8s.io"
WEBHOOK_NAME = f"{NAME}-webhook"
WEBHOOK_PORT = 8443
WEBHOOK_PORT_NAME = "webhook"
# Only annotated objects ever reach the webhook (matchConditions, GA in Kubernetes 1.30):
# an outage of the service cannot block unannotated Pods anywhere in the cluster.
MATCH_ANNOTATED = (
    "has(object.metadata.annotations) && "
    f"object.metadata.annotations.exists(k, k.startsWith('{ANNOTATION_PREFIX}'))"
)

# The rules granted in every watched namespace (or cluster-wide). Plain data so that tests
# and reviewers can compare them with the rendered YAML.
WATCH_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [schema.GROUP], "resources": [schema.PLURAL], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": [schema.GROUP],
        "resources": [f"{schema.PLURAL}/status"],
        "verbs": ["get", "patch", "update"],
    },
    {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims", "services"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["statefulsets"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
# The webhook keeps the caBundle of its own configuration, and nothing else.
WEBHOOK_RULES: list[dict[str, list[str]]] = [
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": [NAME],
        "verbs": ["get", "update"],
    },
]
LEADER_ELECTION_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": [LEASE_NAME],
        "verbs": ["get", "update"],
    },
]


def webhook_configuration(
    name: str, client_config: dict[str, Any], namespace_selector: dict[str, Any]
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration for Pods and Jobs (the caBundle is kept at run time).

    failurePolicy Fail: an annotated Pod that ran unwired would compute on missing inputs
    and lose its outputs while looking successful; refusing it is the honest failure, and
    `matchConditions` keep every unannotated Pod out of the webhook's reach.
    """

    def hook(kind: str, group: str, resource: str) -> dict[str, Any]:
        return {
            "name": f"{kind}.oras.converged-computing.github.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": 5,
            "clientConfig": client_config,
            "rules": [{"apiGroups": [group], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": [resource], "scope": "Namespaced"}],
            "matchConditions": [{"name": "oras-annotated", "expression": MATCH_ANNOTATED}],
            "namespaceSelector": namespace_selector,
        }

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": sync_labels()},
        "webhooks": [hook("pods", "", "pods"), hook("jobs", "batch", "jobs")],
    }


def sync_labels() -> dict[str, str]:
    """Recommended labels. No `app.kubernetes.io/instance`: registry Services select on
    name + instance, and an OrasCache named like this service must never select its Pods.
    """
    return {
        "app.kubernetes.io/name": "oras-cache",
        "app.kubernetes.io/component": "sync",
        "app.kubernetes.io/part-of": "oras-cache",
        "app.kubernetes.io/managed-by": "orascache",
    }


def sync_selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "oras-cache", "app.kubernetes.io/component": "sync"}


def sync_args(watch_namespaces: Sequence[str] | None, metrics_port: int) -> list[str]:
    """Container args; the image's entrypoint is `orascache`.

    The service's own namespace is `$(POD_NAMESPACE)` (the kubelet expands it from the
    container's env), never the rendered name: a kustomize `namespace:` override moves the
    objects, and the lease and the serving certificate's name follow without a patch.
    """
    scope = (
        ["--all-namespaces"]
        if watch_namespaces is None
        else [arg for ns in watch_namespaces for arg in ("--namespace", ns)]
    )
    return [
        "sync",
        "--source",
        "cluster",
        *scope,
        "--leader-elect",
        "--lease-namespace",
        "$(POD_NAMESPACE)",
        "--http-addr",
        f":{metrics_port}",
        "--webhook-addr",
        f":{WEBHOOK_PORT}",
        "--webhook-host",
        f"{WEBHOOK_NAME}.$(POD_NAMESPACE).svc",
        "--webhook-config",
        NAME,
    ]


def _rules(rules: Sequence[dict[str, list[str]]]) -> list[k8s.PolicyRule]:
    return [
        k8s.PolicyRule(
            api_groups=rule["apiGroups"],
            resources=rule["resources"],
            resource_names=rule.get("resourceNames"),
            verbs=rule["verbs"],
        )
        for rule in rules
    ]


class _ServiceConstruct(constructs.Construct):
    """What both installs share: the service's own Namespace (restricted Pod Security),
    its ServiceAccount, and RBAC either cluster-wide or as a Role per namespace."""

    account: str  # the ServiceAccount's (and the ClusterRole's) name

    def _labels(self) -> dict[str, str]:
        raise NotImplementedError

    def _selector_labels(self) -> dict[str, str]:
        raise NotImplementedError

    def _identity(self, namespace: str) -> None:
        self.namespace = namespace
        self.namespace_object = k8s.KubeNamespace(
            self,
            "Namespace",
            metadata=k8s.ObjectMeta(
                name=namespace,
                labels={
                    "app.kubernetes.io/name": "oras-cache",
                    "app.kubernetes.io/part-of": "oras-cache",
                    "app.kubernetes.io/managed-by": "orascache",
                    # The Deployment meets the "restricted" Pod Security Standard.
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            ),
        )
        self.service_account = k8s.KubeServiceAccount(
            self, "ServiceAccount", metadata=self._metadata(self.account)
        )
        self.cluster_role: k8s.KubeClusterRole | None = None
        self.cluster_role_binding: k8s.KubeClusterRoleBinding | None = None
        self.roles: list[k8s.KubeRole] = []
        self.role_bindings: list[k8s.KubeRoleBinding] = []

    def _access(self, rules: Sequence[dict[str, list[str]]],
                namespaces: Sequence[str] | None, role_id: str) -> None:
        """`rules` in every namespace (a ClusterRole) or in each of `namespaces` (Roles)."""
        if namespaces is not None:
            for ns in namespaces:
                self._role(f"{role_id}-{ns}", self.account, ns, rules)
            return
        self.cluster_role = k8s.KubeClusterRole(
            self,
            "ClusterRole",
            metadata=k8s.ObjectMeta(name=self.account, labels=self._labels()),
            rules=_rules(rules),
        )
        self.cluster_role_binding = k8s.KubeClusterRoleBinding(
            self,
            "ClusterRoleBinding",
            metadata=k8s.ObjectMeta(name=self.account, labels=self._labels()),
            role_ref=k8s.RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name=self.account),
            subjects=[self._subject()],
        )

    def _metadata(self, name: str, namespace: str | None = None) -> k8s.ObjectMeta:
        return k8s.ObjectMeta(name=name, namespace=namespace or self.namespace,
                              labels=self._labels())

    def _metrics_service(self, name: str, selector: dict[str, str],
                         port: int) -> k8s.KubeService:
        return k8s.KubeService(
            self,
            "MetricsService",
            metadata=self._metadata(name),
            spec=k8s.ServiceSpec(
                selector=selector,
                ports=[
                    k8s.ServicePort(
                        name="http-metrics",
                        port=port,
                        target_port=k8s.IntOrString.from_string(PORT_NAME),
                        protocol="TCP",
                    )
                ],
            ),
        )

    def _subject(self) -> k8s.Subject:
        return k8s.Subject(kind="ServiceAccount", name=self.account, namespace=self.namespace)

    def _role(
        self, id: str, name: str, namespace: str, rules: Sequence[dict[str, list[str]]]
    ) -> None:
        self.roles.append(
            k8s.KubeRole(
                self, f"Role-{id}", metadata=self._metadata(name, namespace), rules=_rules(rules)
            )
        )
        self.role_bindings.append(
            k8s.KubeRoleBinding(
                self,
                f"RoleBinding-{id}",
                metadata=self._metadata(name, namespace),
                role_ref=k8s.RoleRef(api_group=RBAC_GROUP, kind="Role", name=name),
                subjects=[self._subject()],
            )
        )


def _checked_options(watch_namespaces: Sequence[str] | None, replicas: int,
                     metrics_port: int) -> list[str] | None:
    """The options as a list of distinct namespaces (None: all), or ValueError/TypeError
    naming the bad one."""
    if replicas < 1:
        raise ValueError("replicas must be >= 1")
    if not 1 <= metrics_port <= 65535:
        raise ValueError("metrics_port must be a TCP port")
    if watch_namespaces is None:
        return None
    if isinstance(watch_namespaces, str):
        raise TypeError("watch_namespaces must be a sequence of names, not a string")
    if not watch_namespaces:
        raise ValueError("watch_namespaces=[] watches nothing; use None for all")
    return list(dict.fromkeys(watch_namespaces))


class SyncService(_ServiceConstruct):
    """Everything `kubectl apply -f dist/install/` installs, in apply order.

    `watch_namespaces=None` watches every namespace (ClusterRole + ClusterRoleBinding);
    a list limits the service, and its permissions, to those namespaces (a Role +
    RoleBinding in each). The raw objects are attributes, as escape hatches.
    `include_crd=False` leaves the CRD out (dist/install/ writes it as crd.yaml, straight
    from `schema.crd()`). The Namespace is labelled to enforce the "restricted" Pod
    Security level: give the service a namespace of its own.
    """

    account = NAME

    def _labels(self) -> dict[str, str]:
        return sync_labels()

    def _selector_labels(self) -> dict[str, str]:
        return sync_selector_labels()

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        image: str = DEFAULT_IMAGE,
        watch_namespaces: Sequence[str] | None = None,
        replicas: int = 2,
        metrics_port: int = DEFAULT_METRICS_PORT,
        include_crd: bool = True,
    ) -> None:
        super().__init__(scope, id)
        watch_namespaces = _checked_options(watch_namespaces, replicas, metrics_port)
        self.watch_namespaces = watch_namespaces
        self.crd: cdk8s.ApiObject | None = self._crd() if include_crd else None
        self._identity(namespace)
        self._access(WATCH_RULES, watch_namespaces, "Watch")
        self._role("LeaderElection", LEADER_ELECTION_ROLE, namespace, LEADER_ELECTION_RULES)
        self._webhook(namespace, watch_namespaces)
        self.metrics_service = self._metrics_service(METRICS_SERVICE, sync_selector_labels(),
                                                     metrics_port)
        self.deployment = self._deployment(namespace, image, watch_namespaces, replicas,
                                           metrics_port)

    def _webhook(self, namespace: str, watch_namespaces: Sequence[str] | None) -> None:
        """What the admission webhook needs: its RBAC, the Service in front of every
        replica, and the MutatingWebhookConfiguration (never the service's own namespace
        or kube-system)."""
        self.webhook_role = k8s.KubeClusterRole(
            self,
            "WebhookClusterRole",
            metadata=k8s.ObjectMeta(name=WEBHOOK_NAME, labels=sync_labels()),
            rules=_rules(WEBHOOK_RULES),
        )
        self.webhook_role_binding = k8s.KubeClusterRoleBinding(
            self,
            "WebhookClusterRoleBinding",
            metadata=k8s.ObjectMeta(name=WEBHOOK_NAME, labels=sync_labels()),
            role_ref=k8s.RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name=WEBHOOK_NAME),
            subjects=[self._subject()],
        )
        self.webhook_service = k8s.KubeService(
            self,
            "WebhookService",
            metadata=self._metadata(WEBHOOK_NAME),
            spec=k8s.ServiceSpec(
                selector=sync_selector_labels(),
                ports=[
                    k8s.ServicePort(
                        name="https",
                        port=443,
                        target_port=k8s.IntOrString.from_string(WEBHOOK_PORT_NAME),
                        protocol="TCP",
                    )
                ],
            ),
        )
        selector: dict[str, Any] = (
            {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                   "values": sorted({"kube-system", namespace})}]}
            if watch_namespaces is None
            else {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                        "values": sorted(watch_namespaces)}]}
        )
        config = webhook_configuration(
            NAME,
            {"service": {"name": WEBHOOK_NAME, "namespace": namespace, "path": "/mutate",
                         "port": 443}},
            selector,
        )
        self.webhook_configuration = cdk8s.ApiObject(
            self,
            "MutatingWebhookConfiguration",
            api_version=config["apiVersion"],
            kind=config["kind"],
            metadata=cdk8s.ApiObjectMetadata(name=NAME, labels=sync_labels()),
        )
        self.webhook_configuration.add_json_patch(
            cdk8s.JsonPatch.add("/webhooks", config["webhooks"])
        )

    def _deployment(self, namespace: str, image: str, watch_namespaces: Sequence[str] | None,
                    replicas: int, metrics_port: int) -> k8s.KubeDeployment:
        return k8s.KubeDeployment(
            self,
            "Deployment",
            metadata=self._metadata(NAME),
            spec=k8s.DeploymentSpec(
                replicas=replicas,
                selector=k8s.LabelSelector(match_labels=sync_selector_labels()),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels=sync_labels()),
                    spec=pod_spec(
                        NAME,
                        image,
                        sync_args(watch_namespaces, metrics_port),
                        [
                            k8s.ContainerPort(
                                name=PORT_NAME, container_port=metrics_port, protocol="TCP"
                            ),
                            k8s.ContainerPort(
                                name=WEBHOOK_PORT_NAME, container_port=WEBHOOK_PORT,
                                protocol="TCP",
                            ),
                        ],
                    ),
                ),
            ),
        )

    def _crd(self) -> cdk8s.ApiObject:
        """The CRD exactly as `schema.crd()` (the single source of truth): the schema is a
        plain dictionary, set with a JSON patch rather than retyped as JSONSchemaProps."""
        manifest: dict[str, Any] = schema.crd()
        crd = cdk8s.ApiObject(
            self,
            "CustomResourceDefinition",
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=cdk8s.ApiObjectMetadata(
                name=manifest["metadata"]["name"], labels=manifest["metadata"]["labels"]
            ),
        )
        crd.add_json_patch(cdk8s.JsonPatch.add("/spec", manifest["spec"]))
        return crd

def _probe(path: str, period: int) -> k8s.Probe:
    return k8s.Probe(
        http_get=k8s.HttpGetAction(path=path, port=k8s.IntOrString.from_string(PORT_NAME)),
        period_seconds=period,
        timeout_seconds=3,
        failure_threshold=3,
    )


def _field(path: str) -> k8s.EnvVarSource:
    return k8s.EnvVarSource(field_ref=k8s.ObjectFieldSelector(field_path=path))


def pod_spec(
    service_account: str,
    image: str,
    args: list[str],
    ports: list[k8s.ContainerPort],
    *,
    env: Sequence[k8s.EnvVar] = (),
    volumes: Sequence[k8s.Volume] = (),
    mounts: Sequence[k8s.VolumeMount] = (),
    fs_group: int | None = None,
    memory: tuple[str, str] = CLUSTER_MEMORY,
) -> k8s.PodSpec:
    """The sync service's Pod (both sources): one container meeting the "restricted" Pod
    Security Standard, probes on the `http` port, a writable emptyDir at /tmp."""
    return k8s.PodSpec(
        service_account_name=service_account,
        # The service talks to the API server with this token.
        automount_service_account_token=True,
        enable_service_links=False,
        # Only for mounted Secrets: their files belong to root, readable by this group.
        security_context=k8s.PodSecurityContext(fs_group=fs_group) if fs_group else None,
        containers=[
            k8s.Container(
                name=CONTAINER_NAME,
                image=image,
                args=args,
                ports=ports,
                env=[
                    # The leader-election identity and the lease's namespace.
                    k8s.EnvVar(name="POD_NAME", value_from=_field("metadata.name")),
                    k8s.EnvVar(name="POD_NAMESPACE", value_from=_field("metadata.namespace")),
                    # jsii unpacks its assemblies to a temp dir: on the writable emptyDir.
                    k8s.EnvVar(name="HOME", value=TMP),
                    k8s.EnvVar(name="TMPDIR", value=TMP),
                    # jsii's package cache (under $HOME/.cache) refuses a directory with a
                    # parent writable by others, as every emptyDir is (mode 0777): the
                    # process would exit at start-up. A Pod's cache would be empty at each
                    # start anyway.
                    k8s.EnvVar(name="JSII_RUNTIME_PACKAGE_CACHE", value="disabled"),
                    *env,
                ],
                liveness_probe=_probe("/healthz", period=20),
                readiness_probe=_probe("/readyz", period=5),
                # Python plus the Node process that jsii runs (see CLUSTER_MEMORY).
                resources=k8s.ResourceRequirements(
                    requests={
                        "cpu": k8s.Quantity.from_string("50m"),
                        "memory": k8s.Quantity.from_string(memory[0]),
                    },
                    limits={"memory": k8s.Quantity.from_string(memory[1])},
                ),
                # All of the "restricted" Pod Security Standard, in one place.
                security_context=k8s.SecurityContext(
                    run_as_non_root=True,
                    run_as_user=RUN_AS_USER,
                    run_as_group=RUN_AS_USER,
                    read_only_root_filesystem=True,
                    allow_privilege_escalation=False,
                    capabilities=k8s.Capabilities(drop=["ALL"]),
                    seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
                ),
                volume_mounts=[k8s.VolumeMount(name="tmp", mount_path=TMP), *mounts],
            )
        ],
        volumes=[
            k8s.Volume(
                name="tmp",
                # jsii's unpacked assemblies take about 35 MB.
                empty_dir=k8s.EmptyDirVolumeSource(size_limit=k8s.Quantity.from_string("256Mi")),
            ),
            *volumes,
        ],
    )


def render_install(**options: Any) -> list[dict[str, Any]]:
    """The manifests of one `SyncService(**options)`, in apply order (CRD, Namespace, ...)."""
    app = cdk8s.App()
    chart = cdk8s.Chart(app, "install", disable_resource_name_hashes=True)
    SyncService(chart, "SyncService", **options)
    manifests: list[dict[str, Any]] = list(chart.to_json())
    return manifests
