"""Raw JSON access to the Kubernetes API through the official client's ApiClient.

The typed models of the kubernetes client lose unknown fields and turn 201s into None;
the sync service compares manifests as plain dictionaries, so it speaks JSON directly,
while keeping the client's configuration, authentication, TLS and watch machinery.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from kubernetes import client, config
from kubernetes.client import rest
from urllib3.exceptions import HTTPError

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else (
            f"/apis/{self.api_version}"
        )
        if self.namespaced and namespace:
            base = f"{base}/namespaces/{namespace}"
        base = f"{base}/{self.plural}"
        return f"{base}/{name}" if name else base


# Kinds the project renders or reads; a fixed table keeps start-up free of discovery.
RESOURCES: dict[tuple[str, str], Resource] = {
    (r.api_version, r.kind): r
    for r in (
        Resource("v1", "Service", "services"),
        Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        Resource("v1", "ConfigMap", "configmaps"),
        Resource("v1", "Namespace", "namespaces", namespaced=False),
        Resource("v1", "ServiceAccount", "serviceaccounts"),
        Resource("v1", "Event", "events"),
        Resource("apps/v1", "StatefulSet", "statefulsets"),
        Resource("apps/v1", "Deployment", "deployments"),
        Resource("coordination.k8s.io/v1", "Lease", "leases"),
        Resource("cache.converged-computing.github.io/v1alpha1", "OrasCache", "orascaches"),
        Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                 "customresourcedefinitions", namespaced=False),
    )
}


def resource_for(obj: Mapping[str, Any]) -> Resource:
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key not in RESOURCES:
        raise KeyError(f"unsupported kind {key[1]} ({key[0]})")
    return RESOURCES[key]


# Content negotiation for metadata-only lists and watches (as client-go's metadata client).
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


# Watches, reconciles, applies and admissions share one client: a pool of 10 connections
# (the default) churned ("Connection pool is full") under the service's own concurrency.
POOL_SIZE = 64


def user_agent() -> str:
    """Names the service in kube-apiserver's audit log, as kubectl/v1.x does: the client's
    default ("OpenAPI-Generator/...") is the same for every Python client."""
    try:
        release = metadata.version("oras-cache")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        release = "dev"
    return f"orascache/{release}"


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster config inside a Pod (no kubeconfig given), else the kubeconfig."""
    api: client.ApiClient | None = None
    if kubeconfig is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api = client.ApiClient()
        except config.ConfigException:
            pass
    if api is None:
        if kubeconfig is not None:
            os.stat(kubeconfig)  # a missing file is named, not "No configuration found"
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    assert api is not None
    api.user_agent = user_agent()
    api.configuration.connection_pool_maxsize = POOL_SIZE
    api.rest_client = rest.RESTClientObject(api.configuration)
    return api


class Kube:
    """Thin JSON client: one method per verb the service uses."""

    def __init__(self, api: client.ApiClient, *, timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = timeout

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: Any = None,
        stream: bool = False,
        accept: str = "application/json",
    ) -> Any:
        params = [(_camel(k), str(v).lower() if isinstance(v, bool) else v)
                  for k, v in (query or {}).items() if v is not None]
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method, path, query_params=params, header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api.call_api(*request, _request_timeout=timeout)
            if not 200 <= resp.status <= 299:
                resp.read()  # type: ignore[no-untyped-call]
                raise ApiError(resp.status, resp.reason or "", resp.data)
        except (HTTPError, OSError) as err:
            raise Unreachable(f"{self.api.configuration.host}: {err}") from err
        if stream:
            return resp.response
        resp.read()  # type: ignore[no-untyped-call]
        return resp.data

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        data = self._send(method, path, query=query, body=body, content_type=content_type,
                          timeout=self.timeout)
        parsed: Obj = json.loads(data) if data else {}
        return parsed

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.request("GET", res.path(namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(self, res: Resource, namespace: str | None = None, **query: Any) -> Obj:
        return self.request("GET", res.path(namespace), query=query)

    def apply(self, obj: Obj, *, field_manager: str, force: bool, dry_run: bool = False) -> Obj:
        """Server-side apply (a PATCH with application/apply-patch+yaml; JSON is YAML)."""
        res = resource_for(obj)
        meta = obj["metadata"]
        return self.request(
            "PATCH",
            res.path(meta.get("namespace"), meta["name"]),
            query={"fieldManager": field_manager, "force": "true" if force else None,
                   "dryRun": "All" if dry_run else None, "fieldValidation": "Strict"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        return self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def delete(
        self, res: Resource, namespace: str | None, name: str, uid: str | None,
        *, propagation: str = "Background",
    ) -> bool:
        """Delete if it is still the object we mean (uid precondition); False if gone."""
        body: Obj = {"propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", res.path(namespace, name), body=body)
        except ApiError as err:
            if err.status in (404, 409):  # gone, or replaced by a new object of that name
                return False
            raise
        return True

    def create(self, res: Resource, namespace: str | None, obj: Obj) -> Obj:
        return self.request("POST", res.path(namespace), body=obj)

    def list_function(self, res: Resource, namespace: str | None, *,
                      metadata_only: bool = False) -> Callable[..., Any]:
        """A list function for kubernetes.watch.Watch.stream (raw JSON, any kind).

        `metadata_only`: the server sends PartialObjectMetadata (names, labels, owners),
        not whole objects: what an existence check needs, at a fraction of the memory.
        """

        def list_fn(**kwargs: Any) -> Any:
            stream = not kwargs.pop("_preload_content", True)
            timeout = kwargs.pop("_request_timeout", None)
            if stream:
                accept = METADATA_WATCH if metadata_only else "application/json"
                return self._send("GET", res.path(namespace), query=kwargs, timeout=timeout,
                                  stream=True, accept=accept)
            accept = METADATA_LIST if metadata_only else "application/json"
            data = self._send("GET", res.path(namespace), query=kwargs, timeout=self.timeout,
                              accept=accept)
            return json.loads(data) if data else {}

        return list_fn


def _camel(name: str) -> str:
    """Watch.stream passes snake_case keywords (resource_version); the API wants camelCase."""
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class KubeError(Exception):
    """A request the API server did not fulfil: the only errors `Kube` raises, so that no
    other layer needs the client's or urllib3's exception types."""


class ApiError(KubeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, body: bytes | str | None) -> None:
        self.status = status
        self.reason = reason
        self.body = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        super().__init__(f"{status} {reason}: {self.message}")

    @property
    def message(self) -> str:
        """The API server's own message, e.g. a validation error with its field path."""
        try:
            return str(json.loads(self.body or "{}").get("message") or self.reason)
        except ValueError:
            return f"{self.status} {self.reason}"


class Unreachable(KubeError):
    """No answer: connection refused or reset, a timeout, a TLS failure."""
