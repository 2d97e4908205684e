"""`OrasCacheRegistry`: the construct that turns an `OrasCacheSpec` into manifests.

Built on the typed low-level API (`cdk8s_plus_34.k8s`) rather than cdk8s-plus
constructs, so nothing is added behind the user's back (no hashed names, extra Services,
default resources or security contexts that stop the registry image): every default
below is deliberate and visible in the golden files under tests/golden/.
"""

from __future__ import annotations

from collections.abc import Mapping

import constructs
from cdk8s_plus_34 import k8s

from constructs_lib.model import OrasCacheSpec

DATA_PATH = "/var/lib/registry"
PORT_NAME = "http"


def recommended_labels(name: str) -> dict[str, str]:
    """Kubernetes recommended labels; `name` + `instance` select the registry Pods."""
    return {
        "app.kubernetes.io/name": "oras-cache",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "registry",
        "app.kubernetes.io/part-of": "oras-cache",
        "app.kubernetes.io/managed-by": "orascache",
    }


def selector_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "oras-cache", "app.kubernetes.io/instance": name}


def _quantities(values: Mapping[str, str]) -> dict[str, k8s.Quantity] | None:
    return {k: k8s.Quantity.from_string(v) for k, v in sorted(values.items())} or None


class OrasCacheRegistry(constructs.Construct):
    """A headless Service and a StatefulSet, both named exactly `name`.

    The Service name is a contract with workflow pods: they reach the registry at
    `<name>-0.<name>.<namespace>.svc.cluster.local:<port>`. With `deploy: false`
    nothing is rendered: pods use `spec.registry` directly. The raw objects are
    `service`, `stateful_set` and `shared_claim` (escape hatches for JSON patches).
    """

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        spec: OrasCacheSpec,
        name: str,
        namespace: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.spec = spec
        self.name = name
        self.namespace = namespace
        self.service: k8s.KubeService | None = None
        self.stateful_set: k8s.KubeStatefulSet | None = None
        self.shared_claim: k8s.KubePersistentVolumeClaim | None = None
        if not spec.deploy:
            return
        if spec.storage is not None and spec.storage.shared:
            self.shared_claim = k8s.KubePersistentVolumeClaim(
                self, "Data", metadata=self._metadata(f"{name}-data"), spec=self._claim_spec()
            )
        self.service = k8s.KubeService(
            self,
            "Service",
            metadata=self._metadata(name),
            spec=k8s.ServiceSpec(
                cluster_ip="None",
                selector=selector_labels(name),
                ports=[
                    k8s.ServicePort(
                        name=PORT_NAME,
                        port=spec.port,
                        target_port=k8s.IntOrString.from_string(PORT_NAME),
                        protocol="TCP",
                    )
                ],
            ),
        )
        self.stateful_set = k8s.KubeStatefulSet(
            self,
            "StatefulSet",
            metadata=self._metadata(name),
            spec=k8s.StatefulSetSpec(
                service_name=name,
                replicas=spec.replicas,
                # A cache has no start-up order to respect; Parallel also lets a
                # replacement Pod start while another replica is unhealthy.
                pod_management_policy="Parallel",
                selector=k8s.LabelSelector(match_labels=selector_labels(name)),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels=recommended_labels(name)),
                    spec=self._pod_spec(),
                ),
                volume_claim_templates=self._claim_templates(),
            ),
        )

    def _metadata(self, name: str) -> k8s.ObjectMeta:
        return k8s.ObjectMeta(
            name=name, namespace=self.namespace, labels=recommended_labels(self.name)
        )

    def _claim_spec(self) -> k8s.PersistentVolumeClaimSpec:
        storage = self.spec.storage
        assert storage is not None
        return k8s.PersistentVolumeClaimSpec(
            access_modes=list(storage.access_modes),
            storage_class_name=storage.storage_class_name,
            resources=k8s.VolumeResourceRequirements(
                requests={"storage": k8s.Quantity.from_string(storage.size)}
            ),
        )

    def _claim_templates(self) -> list[k8s.KubePersistentVolumeClaimProps] | None:
        if self.spec.storage is None or self.spec.storage.shared:
            return None
        return [
            k8s.KubePersistentVolumeClaimProps(
                metadata=k8s.ObjectMeta(name="data", labels=selector_labels(self.name)),
                spec=self._claim_spec(),
            )
        ]

    def _volumes(self) -> list[k8s.Volume] | None:
        if self.shared_claim is not None:
            claim = k8s.PersistentVolumeClaimVolumeSource(claim_name=f"{self.name}-data")
            return [k8s.Volume(name="data", persistent_volume_claim=claim)]
        if self.spec.storage is None:
            return [k8s.Volume(name="data", empty_dir=k8s.EmptyDirVolumeSource())]
        return None  # the volumeClaimTemplate named "data" provides it

    def _env(self) -> list[k8s.EnvVar]:
        env = [
            # distribution reads its listen address from here; the default is :5000.
            k8s.EnvVar(name="REGISTRY_HTTP_ADDR", value=f":{self.spec.port}"),
            # distribution v3 otherwise logs an OTLP export error every few seconds.
            k8s.EnvVar(name="OTEL_TRACES_EXPORTER", value="none"),
        ]
        if self.spec.secrets.registry_http:
            env.append(
                k8s.EnvVar(
                    name="REGISTRY_HTTP_SECRET",
                    value_from=k8s.EnvVarSource(
                        secret_key_ref=k8s.SecretKeySelector(
                            name=self.spec.secrets.registry_http, key="REGISTRY_HTTP_SECRET"
                        )
                    ),
                )
            )
        return env

    def _probe(self, period: int, failures: int) -> k8s.Probe:
        return k8s.Probe(
            http_get=k8s.HttpGetAction(path="/v2/", port=k8s.IntOrString.from_string(PORT_NAME)),
            period_seconds=period,
            failure_threshold=failures,
            timeout_seconds=2,
        )

    def _pod_spec(self) -> k8s.PodSpec:
        spec = self.spec
        resources = spec.resources
        return k8s.PodSpec(
            # The registry never talks to the API server.
            automount_service_account_token=False,
            # Service links would inject REGISTRY_PORT=tcp://... for a Service named
            # "registry", which distribution parses as configuration and fails on.
            enable_service_links=False,
            security_context=k8s.PodSecurityContext(
                seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault")
            ),
            node_selector=dict(sorted(spec.node_selector.items())) or None,
            tolerations=[
                k8s.Toleration(
                    key=t.key,
                    operator=t.operator,
                    value=t.value,
                    effect=t.effect,
                    toleration_seconds=t.toleration_seconds,
                )
                for t in spec.tolerations
            ]
            or None,
            containers=[
                k8s.Container(
                    name="registry",
                    image=spec.image,
                    ports=[
                        k8s.ContainerPort(
                            name=PORT_NAME, container_port=spec.port, protocol="TCP"
                        )
                    ],
                    env=self._env(),
                    readiness_probe=self._probe(period=5, failures=3),
                    liveness_probe=self._probe(period=10, failures=6),
                    resources=None
                    if resources is None
                    else k8s.ResourceRequirements(
                        requests=_quantities(resources.requests),
                        limits=_quantities(resources.limits),
                    ),
                    # The image runs as root and needs no capability but, below port
                    # 1024, the one to bind its port.
                    security_context=k8s.SecurityContext(
                        allow_privilege_escalation=False,
                        capabilities=k8s.Capabilities(
                            drop=["ALL"], add=["NET_BIND_SERVICE"] if spec.port < 1024 else None
                        ),
                    ),
                    volume_mounts=[k8s.VolumeMount(name="data", mount_path=DATA_PATH)],
                )
            ],
            volumes=self._volumes(),
        )
