"""`OrasCacheRegistry`: the construct that turns an `OrasCacheSpec` into manifests.

The objects are `cdk8s.ApiObject`s whose bodies are built here as plain dictionaries,
not cdk8s-plus constructs (those add hashed names, extra Services, default resources and
security contexts that stop the registry image) and not the typed `k8s.Kube*` classes:
jsii serializes every property of every typed struct, which made rendering several
times slower (docs/performance.md, "Design choices"). Correctness that the typed API would
check is checked more strictly by the tests: every rendered object is validated against
the Kubernetes 1.37 OpenAPI schema (tests/unit/test_registry.py). Every default below is
deliberate and visible in the golden files and dist/.
"""

from __future__ import annotations

from typing import Any

import cdk8s
import constructs

from constructs_lib.model import OrasCacheSpec

DATA_PATH = "/var/lib/registry"
PORT_NAME = "http"
INSTANCE_LABEL = "app.kubernetes.io/instance"

Json = dict[str, Any]


def recommended_labels(name: str) -> dict[str, str]:
    """Kubernetes recommended labels; `name` + `instance` select the registry Pods."""
    return {
        "app.kubernetes.io/name": "oras-cache",
        INSTANCE_LABEL: name,
        "app.kubernetes.io/component": "registry",
        "app.kubernetes.io/part-of": "oras-cache",
        "app.kubernetes.io/managed-by": "orascache",
    }


def selector_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "oras-cache", INSTANCE_LABEL: name}


def _sorted(value: Any) -> Any:
    """Keys in order and empty values dropped: stable, reviewable output."""
    if isinstance(value, dict):
        return {k: _sorted(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class OrasCacheRegistry(constructs.Construct):
    """A headless Service and a StatefulSet, both named exactly `name`.

    The Service name is a contract with workflow pods: they reach the registry at
    `<name>-0.<name>.<namespace>.svc.cluster.local:<port>`. With `deploy: false`
    nothing is rendered: pods use `spec.registry` directly. The raw objects are
    `service`, `stateful_set` and `shared_claim` (escape hatches for JSON patches);
    `api_objects` lists the ones rendered, in order, without a call into jsii.
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
        self.service: cdk8s.ApiObject | None = None
        self.stateful_set: cdk8s.ApiObject | None = None
        self.shared_claim: cdk8s.ApiObject | None = None
        self.api_objects: list[cdk8s.ApiObject] = []
        if not spec.deploy:
            return
        if spec.storage is not None and spec.storage.shared:
            self.shared_claim = self._object(
                "Data", "v1", "PersistentVolumeClaim", f"{name}-data", self._claim_spec())
        self.service = self._object("Service", "v1", "Service", name, {
            "clusterIP": "None",
            "selector": selector_labels(name),
            "ports": [{"name": PORT_NAME, "port": spec.port, "targetPort": PORT_NAME,
                       "protocol": "TCP"}],
        })
        self.stateful_set = self._object("StatefulSet", "apps/v1", "StatefulSet", name, {
            "serviceName": name,
            "replicas": spec.replicas,
            # A cache has no start-up order to respect; Parallel also lets a
            # replacement Pod start while another replica is unhealthy.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(name)},
            "template": {
                "metadata": {"labels": recommended_labels(name)},
                "spec": self._pod_spec(),
            },
            "volumeClaimTemplates": self._claim_templates(),
        })

    def _object(self, id: str, api_version: str, kind: str, name: str,
                spec: Json) -> cdk8s.ApiObject:
        obj = cdk8s.ApiObject(
            self, id, api_version=api_version, kind=kind,
            metadata=cdk8s.ApiObjectMetadata(
                name=name, namespace=self.namespace, labels=recommended_labels(self.name)),
        )
        self._attach_spec(obj, _sorted(spec))
        self.api_objects.append(obj)
        return obj

    def _attach_spec(self, obj: cdk8s.ApiObject, spec: Json) -> None:
        """The spec reaches cdk8s as a JSON patch: `ApiObjectProps` has no spec field.

        `constructs_lib.render` overrides this to keep the spec on the Python side (see
        its `_SpecsAside`); the output is the same, a unit test compares them.
        """
        obj.add_json_patch(cdk8s.JsonPatch.add("/spec", spec))

    def _claim_spec(self) -> Json:
        storage = self.spec.storage
        assert storage is not None
        return {
            "accessModes": list(storage.access_modes),
            "storageClassName": storage.storage_class_name,
            "resources": {"requests": {"storage": storage.size}},
        }

    def _claim_templates(self) -> list[Json] | None:
        if self.spec.storage is None or self.spec.storage.shared:
            return None
        return [{"metadata": {"name": "data", "labels": selector_labels(self.name)},
                 "spec": self._claim_spec()}]

    def _volumes(self) -> list[Json] | None:
        if self.shared_claim is not None:
            return [{"name": "data", "persistentVolumeClaim": {"claimName": f"{self.name}-data"}}]
        if self.spec.storage is None:
            return [{"name": "data", "emptyDir": {}}]
        return None  # the volumeClaimTemplate named "data" provides it

    def _env(self) -> list[Json]:
        env: list[Json] = [
            # distribution reads its listen address from here; the default is :5000.
            {"name": "REGISTRY_HTTP_ADDR", "value": f":{self.spec.port}"},
            # distribution v3 otherwise logs an OTLP export error every few seconds.
            {"name": "OTEL_TRACES_EXPORTER", "value": "none"},
        ]
        if self.spec.secrets.registry_http:
            env.append({"name": "REGISTRY_HTTP_SECRET", "valueFrom": {"secretKeyRef": {
                "name": self.spec.secrets.registry_http, "key": "REGISTRY_HTTP_SECRET"}}})
        return env

    @staticmethod
    def _probe(period: int, failures: int) -> Json:
        return {"httpGet": {"path": "/v2/", "port": PORT_NAME}, "periodSeconds": period,
                "failureThreshold": failures, "timeoutSeconds": 2}

    def _pod_spec(self) -> Json:
        spec = self.spec
        resources = spec.resources
        return {
            # The registry never talks to the API server.
            "automountServiceAccountToken": False,
            # Service links would inject REGISTRY_PORT=tcp://... for a Service named
            # "registry", which distribution parses as configuration and fails on.
            "enableServiceLinks": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "nodeSelector": dict(spec.node_selector) or None,
            "tolerations": [
                {"key": t.key, "operator": t.operator, "value": t.value, "effect": t.effect,
                 "tolerationSeconds": t.toleration_seconds}
                for t in spec.tolerations
            ] or None,
            "containers": [{
                "name": "registry",
                "image": spec.image,
                "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
                "env": self._env(),
                "readinessProbe": self._probe(period=5, failures=3),
                "livenessProbe": self._probe(period=10, failures=6),
                "resources": None if resources is None else {
                    "requests": dict(resources.requests) or None,
                    "limits": dict(resources.limits) or None,
                },
                # The image runs as root and needs no capability but, below port
                # 1024, the one to bind its port.
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {
                        "drop": ["ALL"],
                        "add": ["NET_BIND_SERVICE"] if spec.port < 1024 else None,
                    },
                },
                "volumeMounts": [{"name": "data", "mountPath": DATA_PATH}],
            }],
            "volumes": self._volumes(),
        }
