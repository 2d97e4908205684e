"""The OrasCache OpenAPI schema: the single source of truth.

`crds/orascache.yaml` is generated from this module (`orascache crd`), and the Python
validator in `validation.py` walks the same dictionaries, so the API server and the
offline tooling cannot disagree on a field, type, default, enum or bound without a test
noticing (tests/unit/test_crd.py and the validation oracle in tests/integration).
"""

from __future__ import annotations

from typing import Any

GROUP = "cache.converged-computing.github.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "OrasCache"
PLURAL = "orascaches"
SINGULAR = "orascache"

DEFAULT_IMAGE = "ghcr.io/oras-project/registry:latest"
DEFAULT_PORT = 5000

# A StatefulSet names its first Pod `<name>-0` and labels every Pod with
# `controller-revision-hash: <name>-<hash of up to 10 chars>`, a label value capped at 63.
MAX_NAME_LENGTH = 52
NAME_PATTERN = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
# RFC 1123 subdomain, the rule for Secret and StorageClass names.
OBJECT_NAME_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# host[:port][/path], no scheme: the form oras and containerd expect for a registry.
REGISTRY_PATTERN = "^[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?(:[0-9]{1,5})?(/[a-z0-9._/-]+)?$"
# Quantities (resource.Quantity's syntax) that Kubernetes accepts where the registry uses
# them: container resources must not be negative, a claim's size must be positive.
_QUANTITY_SUFFIX = "(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?[0-9]+))?"
QUANTITY_PATTERN = "^\\+?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))" + _QUANTITY_SUFFIX + "$"
POSITIVE_QUANTITY_PATTERN = (
    "^\\+?((0*[1-9][0-9]*(\\.[0-9]*)?)|(0*\\.0*[1-9][0-9]*))" + _QUANTITY_SUFFIX + "$"
)
# Label values, and label keys (qualified names: an optional DNS subdomain prefix of at most
# 253 characters and '/', then a name of at most 63), as nodeSelector and tolerations need.
LABEL_VALUE_PATTERN = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
QUALIFIED_NAME_PATTERN = (
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
CONTAINER_RESOURCES = ["cpu", "memory", "ephemeral-storage"]


def qualified_name_rule(var: str) -> str:
    """CEL: `var` is a label key (the regex bounds the name, this bounds the prefix)."""
    return (f"{var}.matches(r'{QUALIFIED_NAME_PATTERN}') && "
            f"(!{var}.contains('/') || {var}.indexOf('/') <= 253)")

ACCESS_MODES = ["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod", "ReadOnlyMany"]


def _str(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _quantity(description: str, *, positive: bool = False) -> dict[str, Any]:
    return {
        "description": description,
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": POSITIVE_QUANTITY_PATTERN if positive else QUANTITY_PATTERN,
        "minimum": 1 if positive else 0,
        "maxLength": 64,
    }


def _secret_name(description: str) -> dict[str, Any]:
    return _str(description, minLength=1, maxLength=253, pattern=OBJECT_NAME_PATTERN)


_RESOURCE_LIST = {
    "type": "object",
    "maxProperties": len(CONTAINER_RESOURCES),
    "additionalProperties": _quantity("A resource quantity, e.g. 500m or 1Gi; not negative."),
    "x-kubernetes-validations": [
        {
            "rule": f"self.all(k, k in {CONTAINER_RESOURCES})",
            "message": "resources are cpu, memory and ephemeral-storage",
        },
    ],
}

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Desired state of an ORAS cache: an OCI registry that workflow pods "
    "pull inputs from and push outputs to.",
    "properties": {
        "image": _str(
            "Registry image. The default is frozen upstream; pin a maintained "
            "distribution image by digest in production.",
            default=DEFAULT_IMAGE,
            minLength=1,
            maxLength=512,
            **{"x-kubernetes-validations": [{
                "rule": "self == self.trim()",
                "message": "must not have leading or trailing whitespace",
            }]},
        ),
        "deploy": {
            "type": "boolean",
            "description": "Run the registry in the cluster. false: no workload is "
            "created; pods use spec.registry, or the registry their "
            "oras.converged-computing.github.io/registry annotation names.",
            "default": True,
        },
        "port": {
            "type": "integer",
            "description": "Port the registry listens on and the headless Service exposes.",
            "default": DEFAULT_PORT,
            "minimum": 1,
            "maximum": 65535,
        },
        "replicas": {
            "type": "integer",
            "description": "Registry replicas. More than one needs secrets.registryHttp and "
            "ReadWriteMany storage, so every replica serves the same content.",
            "default": 1,
            "minimum": 1,
            "maximum": 20,
        },
        "registry": _str(
            "Remote registry (host[:port][/path], no scheme) that pods use when deploy is "
            "false; reached over TLS and authenticated with secrets.orasEnv. Optional: "
            "without it each pod names its registry with the "
            "oras.converged-computing.github.io/registry annotation.",
            maxLength=512,
            pattern=REGISTRY_PATTERN,
        ),
        "secrets": {
            "type": "object",
            "description": "Secrets referenced by name; their values are never read or copied.",
            "properties": {
                "orasEnv": _secret_name(
                    "Secret whose keys become the environment (envFrom) of the workflow "
                    "containers that push and pull: ORAS_USER, ORAS_PUSH_PASS, ORAS_PULL_PASS."
                ),
                "registryHttp": _secret_name(
                    "Secret with key REGISTRY_HTTP_SECRET, injected into the registry with "
                    "secretKeyRef. Required for more than one replica."
                ),
            },
        },
        "storage": {
            "type": "object",
            "description": "Persistent storage for the registry. Absent: an emptyDir, lost "
            "when the Pod goes.",
            "required": ["size"],
            "properties": {
                "size": _quantity("Requested capacity of the volume, e.g. 10Gi; more than "
                                  "zero.", positive=True),
                "storageClassName": _str(
                    "StorageClass of the claim; absent: the cluster default.",
                    maxLength=253,
                    pattern=OBJECT_NAME_PATTERN,
                ),
                "accessModes": {
                    "type": "array",
                    "description": "Access modes of the claim. With ReadWriteMany all "
                    "replicas share one claim named <name>-data; otherwise each replica "
                    "gets its own claim from a volumeClaimTemplate.",
                    "default": ["ReadWriteOnce"],
                    "minItems": 1,
                    "maxItems": 4,
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string", "enum": ACCESS_MODES},
                    "x-kubernetes-validations": [
                        {
                            "rule": "!('ReadWriteOncePod' in self) || size(self) == 1",
                            "message": "ReadWriteOncePod cannot be combined with other access "
                            "modes",
                        },
                    ],
                },
            },
        },
        "resources": {
            "type": "object",
            "description": "Compute resources of the registry container: cpu, memory and "
            "ephemeral-storage.",
            "properties": {
                "requests": {**_RESOURCE_LIST, "description": "Minimum resources."},
                "limits": {**_RESOURCE_LIST, "description": "Maximum resources."},
            },
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                    "!(k in self.limits) || !isQuantity(string(self.requests[k])) || "
                    "!isQuantity(string(self.limits[k])) || "
                    "quantity(string(self.requests[k])).compareTo("
                    "quantity(string(self.limits[k]))) <= 0)",
                    "message": "each request must be less than or equal to its limit",
                    "fieldPath": ".requests",
                },
            ],
        },
        "nodeSelector": {
            "type": "object",
            "description": "Node labels the registry Pod must match.",
            "maxProperties": 64,
            "additionalProperties": {
                "type": "string",
                "maxLength": 63,
                "pattern": LABEL_VALUE_PATTERN,
            },
            "x-kubernetes-validations": [
                {
                    "rule": f"self.all(k, {qualified_name_rule('k')})",
                    "message": "keys must be label keys: an optional DNS subdomain prefix "
                    "and '/', then up to 63 characters of [-A-Za-z0-9_.] starting and ending "
                    "alphanumeric",
                },
            ],
        },
        "tolerations": {
            "type": "array",
            "description": "Tolerations of the registry Pod.",
            "maxItems": 32,
            "items": {
                "type": "object",
                "description": "A toleration, as in a Pod spec.",
                "properties": {
                    "key": _str("Taint key; empty with operator Exists matches all taints.",
                                maxLength=317),
                    "operator": _str("Exists or Equal.", enum=["Exists", "Equal"]),
                    "value": _str("Taint value for operator Equal; empty for Exists.",
                                  maxLength=63, pattern=LABEL_VALUE_PATTERN),
                    "effect": _str(
                        "Taint effect to match; empty matches all.",
                        enum=["NoSchedule", "PreferNoSchedule", "NoExecute"],
                    ),
                    "tolerationSeconds": {
                        "type": "integer",
                        "description": "How long a NoExecute taint is tolerated.",
                        "minimum": 0,
                    },
                },
                "x-kubernetes-validations": [
                    {
                        "rule": f"!has(self.key) || self.key == '' || "
                        f"({qualified_name_rule('self.key')})",
                        "message": "key must be a label key",
                        "fieldPath": ".key",
                    },
                    {
                        "rule": "(has(self.key) && self.key != '') || "
                        "(has(self.operator) && self.operator == 'Exists')",
                        "message": "operator must be Exists when key is empty",
                        "fieldPath": ".operator",
                    },
                    {
                        "rule": "!has(self.operator) || self.operator != 'Exists' || "
                        "!has(self.value) || self.value == ''",
                        "message": "value must be empty when operator is Exists",
                        "fieldPath": ".value",
                    },
                    {
                        "rule": "!has(self.tolerationSeconds) || "
                        "(has(self.effect) && self.effect == 'NoExecute')",
                        "message": "effect must be NoExecute when tolerationSeconds is set",
                        "fieldPath": ".effect",
                    },
                ],
            },
        },
    },
    "x-kubernetes-validations": [
        {
            "rule": "self.replicas <= 1 || (has(self.secrets) && has(self.secrets.registryHttp))",
            "message": "replicas > 1 requires secrets.registryHttp",
            "fieldPath": ".replicas",
        },
        {
            "rule": "self.replicas <= 1 || "
            "(has(self.storage) && 'ReadWriteMany' in self.storage.accessModes)",
            "message": "replicas > 1 requires storage with accessModes ReadWriteMany",
            "fieldPath": ".replicas",
        },
        {
            "rule": "!self.deploy || !has(self.registry)",
            "message": "registry is only used with deploy: false",
            "fieldPath": ".registry",
        },
    ],
}

_CONDITION = {
    "type": "object",
    "description": "A standard Kubernetes condition.",
    "required": ["type", "status", "lastTransitionTime", "reason", "message"],
    "properties": {
        "type": _str("Ready, Reconciling or Stalled.", maxLength=316),
        "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "observedGeneration": {
            "type": "integer",
            "description": "metadata.generation the condition was computed from.",
            "minimum": 0,
        },
        "lastTransitionTime": _str("When the status last changed.", format="date-time"),
        "reason": _str("CamelCase reason.", maxLength=1024, minLength=1),
        "message": _str("Human-readable explanation.", maxLength=32768),
    },
}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Observed state, written by the sync service.",
    # The API server serves a cache the sync service has not reconciled yet with
    # observedGeneration -1, never a generation (Flux's helm-controller defaults its own
    # status the same way): kstatus (Flux's `wait: true`) then says InProgress. Without any
    # status it would say Current before anything ran.
    "default": {"observedGeneration": -1},
    "properties": {
        "conditions": {
            "type": "array",
            "description": "Ready, Reconciling and Stalled conditions.",
            "items": _CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        "observedGeneration": {
            "type": "integer",
            "description": "metadata.generation last reconciled.",
        },
        "endpoint": _str("Registry address workflow pods use (host:port)."),
        "readyReplicas": {"type": "integer", "description": "Registry replicas ready."},
        "inventory": {
            "type": "array",
            "description": "Objects applied for this cache.",
            "items": {
                "type": "object",
                "description": "A reference to an applied object.",
                "properties": {
                    "apiVersion": _str("API version of the object."),
                    "kind": _str("Kind of the object."),
                    "name": _str("Name of the object."),
                    "namespace": _str("Namespace of the object."),
                },
            },
        },
    },
}


def openapi_schema() -> dict[str, Any]:
    """The whole-object schema, with the name rule that keeps StatefulSet names valid."""
    return {
        "type": "object",
        "description": "OrasCache runs an OCI registry that workflow pods use, by name, to "
        "exchange artifacts with oras.",
        "required": ["spec"],
        "properties": {
            "apiVersion": _str("API version of the object."),
            "kind": _str("Kind of the object."),
            "metadata": {"type": "object"},
            "spec": SPEC_SCHEMA,
            "status": STATUS_SCHEMA,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters, so "
                "the StatefulSet's Pod names and revision labels stay valid",
            },
            {
                "rule": f"self.metadata.name.matches('{NAME_PATTERN}')",
                "message": "metadata.name must be a DNS-1035 label (lower case letters, digits "
                "and '-', starting with a letter): it names the headless Service",
            },
        ],
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition manifest for crds/orascache.yaml."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "oras-cache",
                "app.kubernetes.io/part-of": "oras-cache",
            },
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "categories": ["oras"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"},
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }
