"""dist/install/ as a kustomize base: `kubectl apply -k`, an overlay that moves the install
to another namespace and image (README, "Installing"), and `-f` unaffected by the
kustomization file. Rendered by the harness's kubectl (`kubectl kustomize`), applied
server-side to the local control plane."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from constructs_lib import schema
from constructs_lib.install import DEFAULT_IMAGE, DEFAULT_NAMESPACE, NAME, render_install
from sync.render.synth import INSTALL_KUSTOMIZATION, REPO_ROOT
from tests.harness import LocalCluster
from tests.integration.test_install import APPLY, can_i, rendered_names

INSTALL = REPO_ROOT / "dist/install"
ORASCACHES = f"{schema.PLURAL}.{schema.GROUP}"
IMAGE_NAME = DEFAULT_IMAGE.rsplit(":", 1)[0]
MIRROR = "registry.example.com/mirror/oras-cache-sync"
# The overlay of README's "Installing" section, word for word apart from {base} and
# {namespace}: a test keeps README and this text equal.
OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
namespace: {namespace}
images:
  - name: ghcr.io/converged-computing/oras-cache-sync
    newName: registry.example.com/mirror/oras-cache-sync
    newTag: "0.1.0"
# `namespace:` moves every object and every reference kustomize knows (binding subjects,
# the webhook's Service), but not the webhook's namespaceSelector, which keeps the
# service's own namespace away from its webhook: carry the new namespace there too.
replacements:
  - source: {{kind: ServiceAccount, name: oras-cache-sync, fieldPath: metadata.namespace}}
    targets:
      - select: {{kind: MutatingWebhookConfiguration, name: oras-cache-sync}}
        fieldPaths:
          - "webhooks.*.namespaceSelector.matchExpressions.*.values.[=oras-cache-system]"
"""


def overlay(tmp_path: Path, namespace: str, *, replacements: bool = True) -> Path:
    directory = tmp_path / "overlay"
    directory.mkdir(exist_ok=True)
    text = OVERLAY.format(base=os.path.relpath(INSTALL, directory), namespace=namespace)
    if not replacements:
        text = text[:text.index("# `namespace:`")]
    (directory / "kustomization.yaml").write_text(text)
    return directory


def built(cluster: LocalCluster, directory: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(cluster.kubectl("kustomize", str(directory)).stdout)
            if d]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def one(docs: list[dict[str, Any]], kind: str, name: str = NAME) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_readme_shows_this_overlay() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert OVERLAY.format(base="../dist/install", namespace="oras-cache-ops") in readme


def test_kustomization_lists_every_file_and_is_not_a_yaml_file() -> None:
    files = sorted(p.name for p in INSTALL.iterdir())
    assert files == sorted(["crd.yaml", "sync-service.yaml", INSTALL_KUSTOMIZATION])
    kustomization = yaml.safe_load((INSTALL / INSTALL_KUSTOMIZATION).read_text())
    assert kustomization["resources"] == ["crd.yaml", "sync-service.yaml"]


def test_apply_f_skips_the_kustomization_and_a_yaml_one_would_fail(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """kubectl reads every .yaml/.yml/.json file of a directory as API objects: a
    `kustomization.yaml` is refused (no resource for its kind), `Kustomization` is
    not read. `kubectl create --dry-run=client`: each kind is resolved against the real
    API server's discovery, nothing is sent."""
    expected = rendered_names([schema.crd(), *render_install(include_crd=False)])
    proc = cluster.kubectl("create", "--dry-run=client", "-oname", "-f", str(INSTALL))
    assert proc.stdout.split() == expected
    renamed = tmp_path / "install"
    renamed.mkdir()
    for path in INSTALL.iterdir():
        target = "kustomization.yaml" if path.name == INSTALL_KUSTOMIZATION else path.name
        (renamed / target).write_text(path.read_text())
    proc = cluster.kubectl("create", "--dry-run=client", "-oname", "-f", str(renamed),
                           check=False)
    assert proc.returncode != 0
    assert "Kustomization" in proc.stderr, proc.stderr


def test_apply_k_equals_apply_f(cluster: LocalCluster) -> None:
    docs = built(cluster, INSTALL)
    files = [d for f in ("crd.yaml", "sync-service.yaml")
             for d in yaml.safe_load_all((INSTALL / f).read_text()) if d]

    def key(d: dict[str, Any]) -> str:
        return f"{d['kind']}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}"

    assert sorted(docs, key=key) == sorted(files, key=key)


def test_namespace_alone_leaves_the_references_that_replacements_fix(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """What kustomize's `namespace:` misses, so that the overlay's replacement is both
    needed and enough: only the webhook's namespaceSelector (the binding subjects follow
    the ServiceAccount through kustomize's name references, the args use
    $(POD_NAMESPACE))."""
    docs = built(cluster, overlay(tmp_path, "ops", replacements=False))
    left = sorted((d["kind"], d["metadata"]["name"]) for d in docs
                  if DEFAULT_NAMESPACE in set(strings(d)))
    assert left == [("MutatingWebhookConfiguration", NAME)]


@pytest.fixture
def moved(cluster: LocalCluster, tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The overlay applied for real (server-side) to namespace `ops-cache-N`; everything it
    made is deleted afterwards (its cluster-scoped objects carry the base's names)."""
    namespace = f"ops-cache-{time.time_ns() % 10**6}"  # a name never seen by earlier runs
    directory = overlay(tmp_path, namespace)
    docs = built(cluster, directory)
    try:
        proc = cluster.kubectl(*APPLY, "-oname", "-k", str(directory))
        assert sorted(proc.stdout.split()) == sorted(rendered_names(docs))
        yield namespace, docs
    finally:
        # Nothing serves this webhook here: with failurePolicy Fail it would refuse the
        # annotated Pods of later tests.
        for kind, name in (("mutatingwebhookconfiguration", NAME),
                           ("clusterrolebinding", NAME), ("clusterrolebinding", f"{NAME}-webhook"),
                           ("clusterrole", NAME), ("clusterrole", f"{NAME}-webhook"),
                           ("namespace", namespace)):
            cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")


def test_overlay_moves_image_and_namespace_everywhere(
    cluster: LocalCluster, moved: tuple[str, list[dict[str, Any]]]
) -> None:
    namespace, docs = moved
    assert not [d for d in docs if DEFAULT_NAMESPACE in set(strings(d))]
    assert one(docs, "Namespace", namespace)["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    images = [c["image"] for d in docs if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"]]
    assert images == [f"{MIRROR}:0.1.0"] and IMAGE_NAME not in "".join(strings(docs))

    def live(kind: str, name: str = NAME, ns: str | None = None) -> dict[str, Any]:
        args = ["get", kind, name, "-o", "yaml", *(["-n", ns] if ns else [])]
        loaded: dict[str, Any] = yaml.safe_load(cluster.kubectl(*args).stdout)
        return loaded

    deployment = live("deployment", ns=namespace)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{MIRROR}:0.1.0"
    # The lease and the serving certificate's name come from the Pod's own namespace.
    assert "$(POD_NAMESPACE)" in container["args"]
    assert f"{NAME}-webhook.$(POD_NAMESPACE).svc" in container["args"]
    for kind, name in (("clusterrolebinding", NAME), ("clusterrolebinding", f"{NAME}-webhook")):
        assert live(kind, name)["subjects"] == [
            {"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    binding = live("rolebinding", f"{NAME}-leader-election", namespace)
    assert binding["subjects"][0]["namespace"] == namespace
    config = live("mutatingwebhookconfiguration")
    for hook in config["webhooks"]:
        assert hook["clientConfig"]["service"]["namespace"] == namespace
        (expression,) = hook["namespaceSelector"]["matchExpressions"]
        assert sorted(expression["values"]) == sorted(["kube-system", namespace])
    # The moved ServiceAccount holds the service's permissions, and only in its namespace
    # for the lease.
    kubeconfig = cluster.kubeconfig_for_service_account(namespace, NAME)
    assert can_i(cluster, kubeconfig, "watch", ORASCACHES, "--all-namespaces")
    assert can_i(cluster, kubeconfig, "update", "leases.coordination.k8s.io/" + NAME,
                 "-n", namespace)
    assert not can_i(cluster, kubeconfig, "update", "leases.coordination.k8s.io/" + NAME,
                     "-n", DEFAULT_NAMESPACE)
    assert can_i(cluster, kubeconfig, "update",
                 "mutatingwebhookconfigurations.admissionregistration.k8s.io/" + NAME)
