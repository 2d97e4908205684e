"""Smoke test of the sync service image that `make image` builds, without a container engine.

The image is the cached tarball (built here when missing: minutes cold, see
docs/performance.md). skopeo reads it as an OCI archive; umoci unpacks it and derives the OCI
runtime config a container runtime would use; the commands then run in the unpacked root
filesystem as that config's user and environment, with the root read-only and a tmpfs at
/tmp, as the Deployment in dist/install/ runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import sync_image
from tests.harness.build import BuildError

REPO = Path(__file__).resolve().parents[2]
NODE = REPO / ".tools/node_modules/.bin/node"

# Cold: mmdebstrap, PyPI downloads and a pip install; beyond the default 300 s when the
# machine is busy.
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def image() -> Path:
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (mmdebstrap --mode=root, chroot, mounts)")
    try:
        sync_image.ensure_tools()
    except BuildError as err:
        pytest.skip(f"cannot install {' '.join(sync_image.TOOLS)}: {err}")
    assert NODE.exists(), f"{NODE} is missing: run `make bootstrap`"
    return sync_image.build(NODE.resolve())


@pytest.fixture(scope="module")
def unpacked(image: Path) -> tuple[Path, dict[str, Any]]:
    return sync_image.unpack(image)


def deployment_container() -> dict[str, Any]:
    for doc in yaml.safe_load_all((REPO / "dist/install/sync-service.yaml").read_text()):
        if doc and doc["kind"] == "Deployment":
            container: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
            return container
    raise AssertionError("no Deployment in dist/install/sync-service.yaml")


def skopeo_inspect(image: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", "inspect", *args, f"oci-archive:{image}"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def test_a_valid_oci_archive(image: Path) -> None:
    info = skopeo_inspect(image)
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert len(info["Layers"]) == 3  # Debian, Node, the venv
    assert info["Labels"]["org.opencontainers.image.version"] == sync_image.project_version()
    config = skopeo_inspect(image, "--config")["config"]
    assert config["Entrypoint"] == ["/opt/orascache/bin/orascache"]
    assert "JSII_NODE=/usr/local/bin/node" in config["Env"]


def test_runs_as_the_deployments_non_root_user(unpacked: tuple[Path, dict[str, Any]]) -> None:
    rootfs, runtime = unpacked
    security = deployment_container()["securityContext"]
    user = runtime["process"]["user"]
    assert (user["uid"], user["gid"]) == (security["runAsUser"], security["runAsGroup"])
    assert user["uid"] != 0
    proc = sync_image.run_in_image(rootfs, runtime, [
        "python3", "-c",
        "import os, pwd; print(os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name)"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(user["uid"]), str(user["gid"]), "nonroot"]
    # It owns nothing in the image: all it can write is /tmp.
    owned = [str(p) for p in rootfs.rglob("*")
             if not p.is_symlink() and p.lstat().st_uid == user["uid"]]
    assert owned == []


def test_entrypoint_and_command(unpacked: tuple[Path, dict[str, Any]]) -> None:
    """What a runtime starts with no args: `orascache --help` (Python, jsii and Node load:
    the CLI imports cdk8s)."""
    rootfs, runtime = unpacked
    proc = sync_image.run_in_image(rootfs, runtime)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: orascache")
    assert proc.stderr == ""


def test_renders_on_a_read_only_root(unpacked: tuple[Path, dict[str, Any]]) -> None:
    """jsii runs Node (JSII_NODE) and unpacks its assemblies under TMPDIR: a full render
    works with only /tmp writable."""
    rootfs, runtime = unpacked
    proc = sync_image.run_in_image(rootfs, runtime, ["orascache", "synth", "/tmp/in"],
                                   input_dir=REPO / "examples")
    assert proc.returncode == 0, proc.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(proc.stdout) if d]
    assert "StatefulSet" in kinds
    assert "Service" in kinds


def test_the_deployments_args_reach_the_cluster_config(
        unpacked: tuple[Path, dict[str, Any]]) -> None:
    """The Deployment sets only args: the entrypoint takes them, and with no cluster to
    talk to, the service stops at loading its configuration (not at parsing them)."""
    rootfs, runtime = unpacked
    container = deployment_container()
    assert "command" not in container
    argv = [*runtime["process"]["args"][:1], *container["args"]]
    proc = sync_image.run_in_image(rootfs, runtime, argv,
                                   env={"POD_NAME": "sync-0", "POD_NAMESPACE": "test"})
    assert proc.returncode not in (0, 2), proc.stderr  # 2: argparse's usage error
    assert "unrecognized arguments" not in proc.stderr
    assert "kube-config" in proc.stderr or "configuration" in proc.stderr, proc.stderr


def test_git_and_ssh_for_the_git_source(unpacked: tuple[Path, dict[str, Any]]) -> None:
    rootfs, runtime = unpacked
    for argv in (["git", "--version"], ["ssh", "-V"]):
        proc = sync_image.run_in_image(rootfs, runtime, argv)
        assert proc.returncode == 0, (argv, proc.stderr)


def test_oras_for_the_oci_source(unpacked: tuple[Path, dict[str, Any]]) -> None:
    rootfs, runtime = unpacked
    proc = sync_image.run_in_image(rootfs, runtime, ["oras", "version"])
    assert proc.returncode == 0, proc.stderr
    assert f"Version:    {sync_image.ORAS_VERSION}" in proc.stdout, proc.stdout
