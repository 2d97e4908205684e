"""Typed OrasCache model, built only from documents that passed validation.

Parsing returns either an `OrasCache` or the complete list of errors, each carrying its
source (`caches/a.yaml[2]`) and field path, so a user fixes everything in one go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from constructs_lib import schema
from constructs_lib.validation import FieldError, validate_metadata, validate_spec


@dataclass(frozen=True)
class Secrets:
    oras_env: str | None = None
    registry_http: str | None = None


@dataclass(frozen=True)
class Storage:
    size: str
    storage_class_name: str | None = None
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)

    @property
    def shared(self) -> bool:
        """ReadWriteMany storage is one claim shared by every replica."""
        return "ReadWriteMany" in self.access_modes


@dataclass(frozen=True)
class Resources:
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Toleration:
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class OrasCacheSpec:
    """Defaults match the seed operator; see schema.py for each field's documentation."""

    image: str = schema.DEFAULT_IMAGE
    deploy: bool = True
    port: int = schema.DEFAULT_PORT
    replicas: int = 1
    registry: str | None = None
    secrets: Secrets = field(default_factory=Secrets)
    storage: Storage | None = None
    resources: Resources | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> OrasCacheSpec:
        """Build from an already validated and defaulted spec dictionary."""
        secrets = spec.get("secrets", {})
        storage = spec.get("storage")
        resources = spec.get("resources")
        return cls(
            image=spec["image"],
            deploy=spec["deploy"],
            port=spec["port"],
            replicas=spec["replicas"],
            registry=spec.get("registry"),
            secrets=Secrets(secrets.get("orasEnv"), secrets.get("registryHttp")),
            storage=None
            if storage is None
            else Storage(
                size=str(storage["size"]),
                storage_class_name=storage.get("storageClassName"),
                access_modes=tuple(storage["accessModes"]),
            ),
            resources=None
            if resources is None
            else Resources(
                requests={k: str(v) for k, v in resources.get("requests", {}).items()},
                limits={k: str(v) for k, v in resources.get("limits", {}).items()},
            ),
            node_selector=dict(spec.get("nodeSelector", {})),
            tolerations=tuple(
                Toleration(
                    key=t.get("key"),
                    operator=t.get("operator"),
                    value=t.get("value"),
                    effect=t.get("effect"),
                    toleration_seconds=t.get("tolerationSeconds"),
                )
                for t in spec.get("tolerations", [])
            ),
        )


@dataclass(frozen=True)
class OrasCache:
    """A named cache. `namespace` is None for namespace-less documents."""

    name: str
    namespace: str | None
    spec: OrasCacheSpec
    uid: str | None = None

    def endpoint(self) -> str:
        """The registry address workflow pods use (host:port, or the remote registry)."""
        if not self.spec.deploy:
            return self.spec.registry or ""
        return registry_address(self.name, self.namespace, self.spec.port)


def registry_address(cache: str, namespace: str | None, port: int) -> str:
    """The first replica's stable name (the StatefulSet's headless Service): the one
    definition of where an in-cluster cache's registry is reached."""
    host = f"{cache}-0.{cache}"
    if namespace:
        host = f"{host}.{namespace}.svc.cluster.local"
    return f"{host}:{port}"


@dataclass(frozen=True)
class SpecError:
    """An error in one document: `caches/a.yaml[2]: spec.replicas: must be >= 1`."""

    source: str
    error: FieldError

    def __str__(self) -> str:
        return f"{self.source}: {self.error}"


def is_oras_cache(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("kind") == schema.KIND
        and str(doc.get("apiVersion", "")).split("/")[0] == schema.GROUP
    )


def parse_oras_cache(doc: Mapping[str, Any], source: str) -> OrasCache | list[SpecError]:
    """Validate and type one OrasCache document; `source` names it in errors."""
    errors: list[FieldError] = []
    if doc.get("apiVersion") != schema.API_VERSION:
        errors.append(
            FieldError("apiVersion", f"unsupported {doc.get('apiVersion')!r}: "
                       f"expected {schema.API_VERSION}")
        )
    metadata = doc.get("metadata")
    errors.extend(validate_metadata(metadata))
    unknown = sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"})
    errors.extend(FieldError(k, "unknown field") for k in unknown)
    if "spec" not in doc:
        errors.append(FieldError("spec", "required"))
        spec: dict[str, Any] = {}
    else:
        spec, spec_errors = validate_spec(doc["spec"])
        errors.extend(spec_errors)
    if errors:
        return [SpecError(source, e) for e in errors]
    assert isinstance(metadata, dict)
    return OrasCache(
        name=metadata["name"],
        namespace=metadata.get("namespace"),
        spec=OrasCacheSpec.from_dict(spec),
        uid=metadata.get("uid"),
    )
