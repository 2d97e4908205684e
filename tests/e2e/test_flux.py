"""Flux's controllers on the real node, where registries become Ready:

- a Kustomization with `wait: true` over OrasCache files becomes Ready only once the
  caches it applied are Ready (the sync service, a host process, brings them there); a
  Stalled cache fails Flux's health check at once, one that cannot become Ready (its image
  does not exist) at Flux's timeout; removing a cache from git prunes it;
- push to Ready: the same new cache published as an OCI artifact, once rendered
  (`orascache render --push-oci`, applied by Flux's OCIRepository + Kustomization) and
  once as its source (`orascache sync --source oci`), both polling at the same interval,
  timed in the same run (docs/performance.md, "GitOps: push to Ready").
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib import schema
from sync.apply.kube import Kube
from tests.harness import LocalCluster
from tests.harness.flux import FluxControllers
from tests.harness.images import REGISTRY_IMAGE
from tests.harness.node import Node
from tests.harness.oras_tools import LocalRegistry, OrasTools, ensure_oras_tools
from tests.integration import fluxkit
from tests.integration.gitserver import GitHttpServer, WorkRepo
from tests.integration.syncproc import SyncProcess, sts, wait_for
from tests.integration.test_flux import PASSWORD, USER, git_secret
from tests.integration.test_oci_render import orascache
from tests.integration.test_sync_git import cache_yaml
from tests.integration.test_sync_oci import publish

pytestmark = pytest.mark.timeout(900)
BROKEN_IMAGE = REGISTRY_IMAGE.rsplit(":", 1)[0] + ":does-not-exist"
INTERVAL = "5s"  # both sources poll at this interval in the timing test
ROUNDS = 6


@pytest.fixture(scope="module")
def flux(cluster: LocalCluster, node: Node) -> Iterator[FluxControllers]:
    with fluxkit.running_flux(cluster) as controllers:
        yield controllers


@pytest.fixture(scope="module")
def tools() -> OrasTools:
    return ensure_oras_tools()


def cache(api: ApiClient, ns: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            schema.GROUP, schema.VERSION, ns, schema.PLURAL, name)
    except client.exceptions.ApiException as err:
        if err.status == 404:
            return None
        raise
    return obj


def is_ready(obj: dict[str, Any] | None) -> bool:
    return fluxkit.condition(obj).get("status") == "True"


def duration_s(text: str) -> float:
    return float(text.removesuffix("s"))


def _ks_condition(api: ApiClient, ns: str, name: str) -> dict[str, Any]:
    return fluxkit.condition(fluxkit.get(api, ns, "Kustomization", name))


def test_kustomization_ready_only_when_its_caches_are_ready_broken_caches_fail_it(
    flux: FluxControllers, api_client: ApiClient, namespace: str, sync: SyncProcess,
    tmp_path: Path,
) -> None:
    server = GitHttpServer(tmp_path / "remote", USER, PASSWORD).start()
    try:
        # "stalled": a Service of that name that is not ours is in the way (Conflict).
        client.CoreV1Api(api_client).create_namespaced_service(namespace, {
            "metadata": {"name": "stalled"}, "spec": {"ports": [{"port": 80}]}})
        repo = WorkRepo(tmp_path / "remote" / "caches.git")
        repo.write("good/cache.yaml", cache_yaml("good", image=REGISTRY_IMAGE))
        repo.write("stalled/cache.yaml", cache_yaml("stalled", image=REGISTRY_IMAGE))
        repo.write("broken/cache.yaml", cache_yaml("broken", image=BROKEN_IMAGE)).commit()
        source = fluxkit.git_repository("caches", server.url("caches.git"),
                                        secret=git_secret(api_client, namespace))
        fluxkit.create(api_client, namespace, source)
        began = time.monotonic()
        for name, timeout in (("good", "180s"), ("broken", "30s"), ("stalled", "180s")):
            fluxkit.create(api_client, namespace, fluxkit.kustomization(
                name, source, f"./{name}", timeout=timeout, target_namespace=namespace))

        # Sample both until the Kustomization is Ready: it never is before the cache.
        samples: list[tuple[float, bool, bool]] = []
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            ks = fluxkit.get(api_client, namespace, "Kustomization", "good")
            obj = cache(api_client, namespace, "good")
            samples.append((time.monotonic() - began, is_ready(ks), is_ready(obj)))
            if samples[-1][1]:
                break
            time.sleep(0.1)
        assert samples[-1][1], f"Kustomization never Ready: {fluxkit.condition(ks)}"
        assert all(cache_ready for _, ks_ready, cache_ready in samples if ks_ready)
        assert any(not cache_ready for _, _, cache_ready in samples), \
            "the cache was Ready before Flux applied it?"
        first_cache = next(t for t, _, ready in samples if ready)
        print(f"\ncache Ready {first_cache:.1f} s, Kustomization Ready "
              f"{samples[-1][0]:.1f} s after the Kustomizations were created")

        # Stalled (kstatus Failed): Flux fails fast, long before its 180 s timeout.
        cond = wait_for(lambda: _ks_condition(api_client, namespace, "stalled").get(
            "reason") == "HealthCheckFailed" and _ks_condition(
                api_client, namespace, "stalled"), timeout=90,
            what="the stalled cache's health check to fail")
        ours = fluxkit.condition(cache(api_client, namespace, "stalled"), "Stalled")
        assert ours.get("status") == "True" and ours["reason"] == "Conflict", ours
        assert cond["message"].startswith("health check failed after "), cond["message"]
        assert (f"failed early due to stalled resources: [OrasCache/{namespace}/stalled "
                "status: 'Failed']") in cond["message"], cond["message"]
        print(f"stalled: Flux's message: {cond['message']}\n  ours: {ours['message']}")

        # An image that does not exist: InProgress until Flux's timeout. Flux's message
        # names the cache and its kstatus status, never the cache's own message (fluxcd/
        # pkg/ssa formats only those); the reason is on the cache for `kubectl describe`.
        cond = wait_for(lambda: _ks_condition(api_client, namespace, "broken").get(
            "reason") == "HealthCheckFailed" and _ks_condition(
                api_client, namespace, "broken"), timeout=120,
            what="the broken cache's health check to fail")
        ours = fluxkit.condition(cache(api_client, namespace, "broken"), "Reconciling")
        assert ours.get("status") == "True" and ours["message"] == "0/1 replicas ready", ours
        assert cond["status"] == "False"
        assert (f"timeout waiting for: [OrasCache/{namespace}/broken status: 'InProgress']"
                in cond["message"]), cond["message"]
        print(f"broken: Flux's message: {cond['message']}\n  ours: {ours['message']}")

        # Removing a cache from git prunes it (and the sync service its registry).
        repo.remove("broken/cache.yaml").write("broken/.keep", "").commit("drop broken")
        wait_for(lambda: cache(api_client, namespace, "broken") is None, timeout=90,
                 what="the broken cache pruned")
        kube = Kube(api_client)
        wait_for(lambda: sts(kube, namespace, "broken") is None, timeout=60,
                 what="its StatefulSet removed by the sync service")
        for name in ("good", "broken", "stalled"):
            fluxkit.delete_and_wait(api_client, namespace, "Kustomization", name)
        fluxkit.delete_and_wait(api_client, namespace, "GitRepository", "caches")
    finally:
        server.stop()


def _flux_ready(api: ApiClient, ns: str, revision: str) -> bool:
    ks = fluxkit.get(api, ns, "Kustomization", "rendered")
    return is_ready(ks) and revision in (ks or {}).get("status", {}).get(
        "lastAppliedRevision", "")


def _sts_ready(kube: Kube, ns: str, name: str) -> bool:
    obj = sts(kube, ns, name)
    return obj is not None and (obj.get("status", {}).get("readyReplicas") or 0) >= 1


def _reached(api: ApiClient, kube: Kube, ns: str, name: str, digest: str) -> dict[str, bool]:
    """Which of the four milestones cache `name` of this round has reached."""
    return {
        "flux applied": sts(kube, ns, f"flux-{name}") is not None,
        "flux serving": _sts_ready(kube, ns, f"flux-{name}"),
        "flux ready": _flux_ready(api, ns, digest),
        "sync applied": sts(kube, ns, f"sync-{name}") is not None,
        "sync ready": _sts_ready(kube, ns, f"sync-{name}"),
    }


def test_push_to_ready_flux_oci_against_the_sync_services_oci_source(
    flux: FluxControllers, cluster: LocalCluster, api_client: ApiClient, namespace: str,
    tools: OrasTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = Kube(api_client)
    monkeypatch.setenv("ORASCACHE_ORAS", str(tools.oras))
    with LocalRegistry(tools.registry) as registry:
        rendered_ref = f"{registry.address}/gitops/rendered:main"
        source_ref = f"{registry.address}/gitops/source:main"
        repo = WorkRepo(tmp_path / "caches")
        files: dict[str, str] = {}

        def publish_both(name: str) -> tuple[str, float, str, float]:
            """Add cache `name` to both artifacts: (flux digest, pushed at, sync digest, ...)"""
            repo.write(f"caches/flux-{name}.yaml",
                       cache_yaml(f"flux-{name}", image=REGISTRY_IMAGE)).commit(name)
            done = orascache(tools, "render", "--repo", repo.url, "--ref", "main", "--path",
                             "caches", "--push-oci", f"oci://{rendered_ref}", "--plain-http")
            assert done.returncode == 0, done.stderr
            flux_at = time.monotonic()
            files[f"caches/sync-{name}.yaml"] = cache_yaml(f"sync-{name}",
                                                            image=REGISTRY_IMAGE)
            sync_digest = publish(tools, registry, source_ref, files)
            return done.stdout.strip().split("@")[1], flux_at, sync_digest, time.monotonic()

        flux_digest, _, _, _ = publish_both("r0")
        oci = fluxkit.oci_repository("rendered", f"oci://{registry.address}/gitops/rendered",
                                     interval=INTERVAL)
        fluxkit.create(api_client, namespace, oci)
        fluxkit.create(api_client, namespace, fluxkit.kustomization(
            "rendered", oci, "./", timeout="180s", target_namespace=namespace))
        proc = SyncProcess(cluster.kubeconfig, [
            "--source", "oci", "--artifact", source_ref, "--plain-http", "--path", "caches",
            "--namespace", namespace, "--interval", INTERVAL, "--log-format", "text"],
            tmp_path / "sync-oci.log").start().wait_ready(60)
        try:
            wait_for(lambda: _flux_ready(api_client, namespace, flux_digest), timeout=240,
                     interval=0.2, what="round 0 through Flux")
            wait_for(lambda: _sts_ready(kube, namespace, "sync-r0"), timeout=240,
                     interval=0.2, what="round 0 through the sync service")

            rows = []
            phases = random.Random(22)  # both poll every INTERVAL: push at spread phases
            for round_ in range(1, ROUNDS + 1):
                name = f"r{round_}"
                time.sleep(phases.uniform(0, duration_s(INTERVAL)))
                flux_digest, flux_at, _, sync_at = publish_both(name)
                times: dict[str, float] = {}
                deadline = time.monotonic() + 240
                while len(times) < 5 and time.monotonic() < deadline:
                    now = time.monotonic()
                    for what, done in _reached(api_client, kube, namespace, name,
                                               flux_digest).items():
                        if what not in times and done:
                            base = flux_at if what.startswith("flux") else sync_at
                            times[what] = now - base
                    time.sleep(0.1)
                assert len(times) == 5, f"round {round_}: only {times}"
                # Flux's Ready comes after the StatefulSet it waited for is Ready.
                assert times["flux ready"] >= times["flux serving"]
                rows.append(times)
                print(f"\nround {round_}: " + ", ".join(
                    f"{k} {v:.1f} s" for k, v in times.items()))
            for key in ("flux applied", "flux serving", "flux ready", "sync applied",
                        "sync ready"):
                values = [row[key] for row in rows]
                print(f"{key}: median {statistics.median(values):.1f} s, "
                      f"min {min(values):.1f} s, max {max(values):.1f} s over {ROUNDS} pushes")
        finally:
            proc.stop()
            fluxkit.delete_and_wait(api_client, namespace, "Kustomization", "rendered")
            fluxkit.delete_and_wait(api_client, namespace, "OCIRepository", "rendered")
