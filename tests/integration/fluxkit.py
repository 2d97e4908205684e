"""Flux objects for tests: a GitRepository or OCIRepository, a Kustomization on it, and the
controllers (tests/harness/flux.py) with their CRDs on a test cluster.

Used by tests/integration/test_flux.py (control plane only) and tests/e2e/test_flux.py
(the real node, where registries become Ready).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.harness import LocalCluster
from tests.harness.crds import install_crds
from tests.harness.flux import FluxControllers, ensure_flux

SOURCE = ("source.toolkit.fluxcd.io", "v1")
KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1")
PLURALS = {"GitRepository": "gitrepositories", "OCIRepository": "ocirepositories",
           "Kustomization": "kustomizations"}

Obj = dict[str, Any]


@contextlib.contextmanager
def running_flux(cluster: LocalCluster) -> Iterator[FluxControllers]:
    """Install every CRD of both controllers (they watch all their kinds), then run them."""
    binaries = ensure_flux()
    install_crds(cluster, binaries.crds)
    with FluxControllers(cluster.kubeconfig, binaries) as flux:
        yield flux


def git_repository(name: str, url: str, *, secret: str | None = None,
                   interval: str = "2s") -> Obj:
    spec: Obj = {"url": url, "ref": {"branch": "main"}, "interval": interval,
                 "timeout": "20s"}
    if secret:
        spec["secretRef"] = {"name": secret}
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name}, "spec": spec}


def oci_repository(name: str, url: str, *, tag: str = "main", interval: str = "2s") -> Obj:
    """``insecure: true``: the local registry speaks plain HTTP (render --plain-http)."""
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
            "metadata": {"name": name},
            "spec": {"url": url, "ref": {"tag": tag}, "interval": interval, "insecure": True,
                     "timeout": "20s"}}


def kustomization(name: str, source: Obj, path: str, *, prune: bool = True,
                  wait: bool = True, timeout: str = "30s", interval: str = "10m",
                  target_namespace: str | None = None) -> Obj:
    """`timeout` bounds the health checks of `wait: true`; Flux never waits less than 30 s
    (`GetTimeout` in its API), polling every 5 s."""
    spec: Obj = {"sourceRef": {"kind": source["kind"], "name": source["metadata"]["name"]},
                 "path": path, "prune": prune, "wait": wait, "timeout": timeout,
                 "interval": interval, "retryInterval": "2s"}
    if target_namespace:
        spec["targetNamespace"] = target_namespace
    return {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name}, "spec": spec}


def _api(kind: str) -> tuple[str, str, str]:
    group, version = KUSTOMIZE if kind == "Kustomization" else SOURCE
    return group, version, PLURALS[kind]


def create(api: ApiClient, namespace: str, obj: Obj) -> None:
    group, version, plural = _api(obj["kind"])
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, namespace, plural, obj)


def get(api: ApiClient, namespace: str, kind: str, name: str) -> Obj | None:
    group, version, plural = _api(kind)
    try:
        obj: Obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            group, version, namespace, plural, name)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return obj


def condition(obj: Obj | None, type_: str = "Ready") -> Obj:
    for cond in (obj or {}).get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return {}


def delete_and_wait(api: ApiClient, namespace: str, kind: str, name: str,
                    timeout: float = 60.0) -> None:
    """Delete a Flux object and wait until its finalizer (Flux's garbage collection) ran."""
    group, version, plural = _api(kind)
    with contextlib.suppress(ApiException):
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            group, version, namespace, plural, name)
    deadline = time.monotonic() + timeout
    while get(api, namespace, kind, name) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{kind} {namespace}/{name} still there after {timeout}s")
        time.sleep(0.2)


def inventory(obj: Obj | None) -> set[str]:
    """The Kustomization's inventory ids (``<ns>_<name>_<group>_<Kind>``)."""
    entries = (obj or {}).get("status", {}).get("inventory", {}).get("entries", [])
    return {e["id"] for e in entries}
