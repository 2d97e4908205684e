"""`OciSyncService` (dist/install-oci/): the OCI source's install."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from constructs_lib.install_git import render_git_install
from constructs_lib.install_oci import render_oci_install
from constructs_lib.mounts import REGISTRY_CREDENTIALS_MOUNT, TRIGGER_MOUNT
from sync.render.synth import REPO_ROOT, install_oci_files

Obj = dict[str, Any]
NS = "oras-cache-system"


@pytest.fixture(scope="module")
def default() -> list[Obj]:
    return render_oci_install()


def kinds(objs: list[Obj]) -> list[tuple[str, str, str | None]]:
    return [(m["kind"], m["metadata"]["name"], m["metadata"].get("namespace")) for m in objs]


def test_objects_and_rbac_are_the_git_installs_under_other_names(default: list[Obj]) -> None:
    assert kinds(default) == [
        ("Namespace", NS, None),
        ("ServiceAccount", "oras-cache-oci-sync", NS),
        ("ClusterRole", "oras-cache-oci-sync", None),
        ("ClusterRoleBinding", "oras-cache-oci-sync", None),
        ("Role", "oras-cache-oci-sync-applyset", "default"),
        ("RoleBinding", "oras-cache-oci-sync-applyset", "default"),
        ("Service", "oras-cache-oci-sync-metrics", NS),
        ("Deployment", "oras-cache-oci-sync", NS),
    ]
    git = {m["kind"]: m for m in render_git_install()}
    oci = {m["kind"]: m for m in default}
    assert oci["ClusterRole"]["rules"] == git["ClusterRole"]["rules"]
    role = oci["Role"]["rules"]
    assert role[0]["resourceNames"] == ["orascache-oci"]
    assert role[1:] == git["Role"]["rules"][1:]
    for obj in default:
        kubernetes_validate.validate(obj, "1.37.0", strict=True)


def test_deployment_args_env_and_credentials(default: list[Obj]) -> None:
    (deployment,) = [m for m in default if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == [
        "sync", "--source", "oci", "--artifact", "$(ORASCACHE_OCI_ARTIFACT)", "--path",
        "$(ORASCACHE_OCI_PATH)", "--namespace", "default", "--applyset-name", "orascache-oci",
        "--interval", "1m", "--http-addr", ":8080", "--render-workers", "1",
        "--registry-credentials-file", REGISTRY_CREDENTIALS_MOUNT]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ORASCACHE_OCI_ARTIFACT"] == "registry.example.com/your-org/your-caches:main"
    assert env["ORASCACHE_OCI_PATH"] == "."
    (volume,) = [v for v in pod["volumes"] if v["name"] == "registry-credentials"]
    assert volume["secret"] == {"secretName": "oras-cache-registry-credentials",
                                "defaultMode": 0o400, "optional": False}
    assert pod["securityContext"] == {"fsGroup": 65532}
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}

    public = render_oci_install(registry_credentials_secret=None, artifact="ghcr.io/o/c:v1",
                                path="caches", drift_correction=False)
    (deployment,) = [m for m in public if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert "--registry-credentials-file" not in pod["containers"][0]["args"]
    assert pod["containers"][0]["args"][-1] == "--no-drift-correction"
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert "securityContext" not in pod


def test_trigger_is_off_by_default_and_its_token_comes_from_a_mounted_secret(
    default: list[Obj],
) -> None:
    from sync.cli.parser import build_parser  # noqa: PLC0415
    from sync.serve.trigger import token_path  # noqa: PLC0415

    (deployment,) = [m for m in default if m["kind"] == "Deployment"]
    assert not any("trigger" in a for a in deployment["spec"]["template"]["spec"][
        "containers"][0]["args"])
    public = render_oci_install(registry_credentials_secret=None, trigger_secret="hook-token")
    (deployment,) = [m for m in public if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    parsed = build_parser().parse_args(
        [env.get(a[2:-1], a) if a.startswith("$(") else a for a in container["args"]])
    assert parsed.source == "oci" and parsed.trigger_secret == "hook-token"
    assert str(token_path(None, parsed.trigger_secret)) == f"{TRIGGER_MOUNT}/token"
    assert {"name": "trigger-token", "mountPath": TRIGGER_MOUNT, "readOnly": True} in (
        container["volumeMounts"])
    assert pod["volumes"][-1] == {"name": "trigger-token", "secret": {
        "secretName": "hook-token", "defaultMode": 0o400, "optional": False,
        "items": [{"key": "token", "path": "token"}]}}
    assert pod["securityContext"] == {"fsGroup": 65532}


def test_artifact_with_credentials_is_refused() -> None:
    for bad in ("user:pw@ghcr.io/o/c:v1", "oci://https://ghcr.io/o/c:v1"):
        with pytest.raises(ValueError, match="without credentials"):
            render_oci_install(artifact=bad)


def test_install_oci_files_are_dist() -> None:
    files = install_oci_files()
    assert sorted(files) == ["kustomization.yaml", "oci-sync-service.yaml"]
    docs = [d for d in yaml.safe_load_all(files["oci-sync-service.yaml"]) if d]
    assert docs == render_oci_install()
    assert (REPO_ROOT / "dist/install-oci/oci-sync-service.yaml").read_text() == files[
        "oci-sync-service.yaml"]
