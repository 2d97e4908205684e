"""Rendering to files: `orascache synth`, `cdk8s synth` and the committed dist/ tree.

Everything is rendered into memory first and written only when every input is valid,
and then all at once or not at all (sync.render.outdir), so an error never leaves a
half-written output directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from constructs_lib import SpecError, schema, to_yaml
from sync.render import outdir as outdir_
from sync.render.parallel import render_parallel
from sync.sources.files import load

HEADER = "# Rendered by orascache. Do not edit: change the source and run `make synth`.\n"
NO_NAMESPACE_DIR = "_unnamespaced"
REPO_ROOT = Path(__file__).resolve().parents[2]


def crd_yaml() -> str:
    return HEADER + to_yaml([schema.crd()])


def cache_files(paths: Iterable[str | Path], render_workers: int | None = None,
                ) -> dict[str, str] | list[SpecError]:
    """`<namespace>/<name>.yaml` -> YAML for every cache under `paths`, or every error."""
    loaded = load(paths)
    if loaded.errors:
        return loaded.errors
    files: dict[str, str] = {}
    for rendered in render_parallel((c for _, c in loaded.caches), render_workers):
        if not rendered.manifests:
            continue  # deploy: false renders nothing to run in the cluster
        cache = rendered.cache
        rel = f"{cache.namespace or NO_NAMESPACE_DIR}/{cache.name}.yaml"
        files[rel] = HEADER + to_yaml(rendered.manifests)
    return with_kustomization(files)


def with_kustomization(files: Mapping[str, str]) -> dict[str, str]:
    """Add a kustomization.yaml listing every file, for `kubectl apply -k` and Argo CD."""
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    return {**files, "kustomization.yaml": HEADER + yaml.safe_dump(kustomization)}


INSTALL_KUSTOMIZATION = "Kustomization"
INSTALL_NOTE = (
    "# `kubectl apply -k dist/install/`, or an overlay's base (its `images:` and `namespace:`\n"
    "# apply; README, \"Installing\"). Named `Kustomization`, one of the three names kustomize\n"
    "# reads, and the only one without a .yaml suffix: `kubectl apply -f dist/install/` reads\n"
    "# .yaml/.yml/.json files only, so it skips this file instead of failing on its kind.\n"
)


def install_files() -> dict[str, str]:
    """dist/install/, for both `kubectl apply -f dist/install/` and `-k`.

    kubectl applies a directory's files in name order, so the CRD (`crd.yaml`, kept
    byte-identical to crds/orascache.yaml) comes before `sync-service.yaml`, whose first
    object is the Namespace the others live in. The kustomization is the file
    `Kustomization`: a `kustomization.yaml` would make `-f` fail (kubectl maps every
    .yaml document of the directory to an API resource, and `Kustomization` is none).
    """
    from constructs_lib.install import render_install  # noqa: PLC0415 - see dist_files

    service = render_install(include_crd=False)
    files = {"crd.yaml": crd_yaml(), "sync-service.yaml": HEADER + to_yaml(service)}
    kustomization = with_kustomization(files).pop("kustomization.yaml")
    return {**files, INSTALL_KUSTOMIZATION: kustomization.replace(HEADER, HEADER + INSTALL_NOTE, 1)}


GIT_INSTALL_NOTE = (
    "# The sync service following a git repository: `kubectl apply -k dist/install-git/`,\n"
    "# after pointing ORASCACHE_GIT_REPO/REF/PATH at your repository with a kustomize patch\n"
    "# and creating the Secret oras-cache-git-credentials (docs/git-source.md).\n"
)


def install_git_files() -> dict[str, str]:
    """The git source's install (`GitSyncService` with its defaults: placeholders for the
    repository, overridden by a kustomize patch of the container's env), with a
    kustomization.yaml so that an overlay can use the directory as its base."""
    from constructs_lib.install_git import render_git_install  # noqa: PLC0415 - see dist_files

    service = render_git_install()
    return with_kustomization({"git-sync-service.yaml": HEADER + GIT_INSTALL_NOTE
                               + to_yaml(service)})


OCI_INSTALL_NOTE = (
    "# The sync service following an OCI artifact: `kubectl apply -k dist/install-oci/`,\n"
    "# after pointing ORASCACHE_OCI_ARTIFACT/PATH at your artifact with a kustomize patch\n"
    "# and creating the Secret oras-cache-registry-credentials (see docs/gitops.md).\n"
)


def install_oci_files() -> dict[str, str]:
    """The OCI source's install (`OciSyncService` with its defaults: a placeholder
    artifact, overridden by a kustomize patch of the container's env)."""
    from constructs_lib.install_oci import render_oci_install  # noqa: PLC0415 - see dist_files

    service = render_oci_install()
    return with_kustomization({"oci-sync-service.yaml": HEADER + OCI_INSTALL_NOTE
                               + to_yaml(service)})


MONITORING_NOTE = (
    "# Alerts, scrape target and Grafana dashboard of the sync service (docs/monitoring.md):\n"
    "# `kubectl apply -k dist/monitoring/` where the prometheus-operator CRDs are installed.\n"
)
DASHBOARD_FILE = "grafana-dashboard.json"
DASHBOARD_CONFIGMAP = "oras-cache-dashboard"


def json_file(obj: Mapping[str, Any]) -> str:
    """A JSON file of ours: `outdir.json_marker` (the header's text as the first member,
    `__comment`, which Grafana ignores), then `obj`'s members, indented."""
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    return outdir_.json_marker(HEADER) + text[2:] + "\n"


def monitoring_files() -> dict[str, str]:
    """dist/monitoring/: the PrometheusRule and ServiceMonitor (constructs_lib.monitoring,
    through cdk8s), the Grafana dashboard as JSON (to import by hand), and a
    kustomization that also makes the dashboard a ConfigMap labelled for Grafana's
    dashboard sidecar (`grafana_dashboard: "1"`, kube-prometheus-stack's default).
    No `kubectl apply -f` here: the JSON file is no Kubernetes object."""
    from constructs_lib.install import DEFAULT_NAMESPACE  # noqa: PLC0415 - see dist_files
    from constructs_lib.monitoring import grafana_dashboard, render_monitoring  # noqa: PLC0415

    rule, monitor = render_monitoring()
    files = {
        # Multi-line expressions as `|` blocks, as people write rule files.
        "prometheus-rule.yaml": HEADER + MONITORING_NOTE + "---\n"
        + yaml.dump(rule, Dumper=_LiteralDumper, sort_keys=False, width=100),
        "service-monitor.yaml": HEADER + MONITORING_NOTE + to_yaml([monitor]),
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
        "configMapGenerator": [{
            "name": DASHBOARD_CONFIGMAP,
            "namespace": DEFAULT_NAMESPACE,
            "files": [f"oras-cache.json={DASHBOARD_FILE}"],
            "options": {"disableNameSuffixHash": True,
                        "labels": {"grafana_dashboard": "1",
                                   "app.kubernetes.io/name": "oras-cache",
                                   "app.kubernetes.io/part-of": "oras-cache"}},
        }],
    }
    return {**files, DASHBOARD_FILE: json_file(grafana_dashboard()),
            "kustomization.yaml": HEADER + MONITORING_NOTE
            + yaml.safe_dump(kustomization, sort_keys=False)}


ARGOCD_HEALTH_KEY = f"resource.customizations.health.{schema.GROUP}_{schema.KIND}"
ARGOCD_NOTE = (
    "# Argo CD health check for OrasCache (docs/gitops.md, \"Argo CD\"), rendered from\n"
    "# sync/argocd_health.lua. Merge it into argocd-cm with\n"
    "# `kubectl patch configmap argocd-cm -n argocd --type merge --patch-file <this file>`\n"
    "# or list it under `patches:` in the kustomization that installs Argo CD (no namespace\n"
    "# here: Argo CD's install.yaml has none, kustomize's `namespace:` sets it).\n"
)


def argocd_health_lua() -> str:
    """The Lua health check, shipped once as package data (sync/argocd_health.lua)."""
    return resources.files("sync").joinpath("argocd_health.lua").read_text(encoding="utf-8")


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks: the script in argocd-cm.yaml reads as Lua."""

    def represent_str(self, data: str) -> Any:
        style = "|" if "\n" in data else None
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralDumper.add_representer(str, _LiteralDumper.represent_str)


def argocd_files() -> dict[str, str]:
    """dist/argocd/: the health check under the argocd-cm key Argo CD reads
    (`resource.customizations.health.<group>_<kind>`), in a ConfigMap to merge. One YAML
    file, no .lua copy: everything under dist/ starts with the YAML render header."""
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "labels": {"app.kubernetes.io/name": "argocd-cm",
                       "app.kubernetes.io/part-of": "argocd"},
        },
        "data": {ARGOCD_HEALTH_KEY: argocd_health_lua()},
    }
    text = yaml.dump(configmap, Dumper=_LiteralDumper, sort_keys=False, width=1000)
    return {"argocd-cm.yaml": HEADER + ARGOCD_NOTE + text}


def chart_files() -> dict[str, str]:
    """dist/chart/: the Helm chart rendered from the install constructs
    (constructs_lib.helm_chart), each file under the render header."""
    from constructs_lib.helm_chart import chart_files as files  # noqa: PLC0415 - see dist_files
    from constructs_lib.helm_chart import values_schema  # noqa: PLC0415

    return {**{path: HEADER + text for path, text in files().items()},
            "values.schema.json": json_file(values_schema())}


PIPELINE_CACHE = ("workflows", "shared")  # the example cache the example pipeline uses


def pipeline_files() -> dict[str, str]:
    """The example two-step pipeline (constructs_lib.workflow_example), for review.

    Not listed in the examples' kustomization.yaml: applying it starts Jobs.
    """
    caches = {(c.namespace, c.name): c for _, c in load([REPO_ROOT / "examples"]).caches}
    cache = caches[PIPELINE_CACHE]
    note = (
        f"# Two Jobs sharing an artifact through the OrasCache {cache.namespace}/{cache.name}:"
        " see constructs_lib/workflow_example.py.\n"
    )
    from constructs_lib.workflow_example import (  # noqa: PLC0415 - see dist_files
        pipeline_yaml,
        render_pipeline,
    )

    return {"two-step.yaml": HEADER + note + pipeline_yaml(render_pipeline(cache))}


def dist_files() -> dict[str, str] | list[SpecError]:
    """The whole committed dist/ tree; a test fails when dist/ differs from it.

    The install and the example pipeline use cdk8s-plus-34, imported here rather than at
    the top: the sync service (which imports this module) never loads it into jsii's
    Node process.
    """
    examples = cache_files([REPO_ROOT / "examples"])
    if isinstance(examples, list):
        return examples
    return {
        **{f"examples/{k}": v for k, v in examples.items()},
        **{f"examples/pipelines/{k}": v for k, v in pipeline_files().items()},
        **{f"install/{k}": v for k, v in install_files().items()},
        **{f"install-git/{k}": v for k, v in install_git_files().items()},
        **{f"install-oci/{k}": v for k, v in install_oci_files().items()},
        **{f"chart/{k}": v for k, v in chart_files().items()},
        **{f"argocd/{k}": v for k, v in argocd_files().items()},
        **{f"monitoring/{k}": v for k, v in monitoring_files().items()},
    }


def write_tree(files: Mapping[str, str], outdir: Path) -> None:
    """Write `files` under `outdir`, removing the stale files we wrote before; all or
    nothing, never outside `outdir`, never over a file we did not write (sync.render.outdir).
    Raises OutputError."""
    outdir_.write_tree(files, outdir, HEADER)


def write_atomic(path: Path, text: str) -> None:
    """Raises OutputError."""
    outdir_.write_file(path, text)
