"""`orascache render --push-oci` against the real distribution registry and the real oras
CLI (tests/harness/oras_tools.py): Flux's artifact layout, no new manifest when nothing
changed, and registry credentials that never appear in a process's arguments or
environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.harness.oras_tools import LocalRegistry, OrasTools
from tests.integration.gitserver import WorkRepo
from tests.integration.syncproc import REPO
from tests.integration.test_sync_git import cache_yaml

pytestmark = pytest.mark.timeout(900)
FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"


@pytest.fixture
def repo(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "remote" / "caches.git")


def orascache(tools: OrasTools, *args: str, oras: Path | None = None,
              ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORASCACHE_ORAS": str(oras or tools.oras),
           "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    return subprocess.run([sys.executable, "-m", "sync.cli", *args], cwd=REPO, text=True,
                          capture_output=True, check=False, timeout=300, env=env)


def oras(tools: OrasTools, *args: str, stdin: str | None = None) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"}
    return subprocess.run([str(tools.oras), *args, "--plain-http"], env=env, input=stdin,
                          text=True, capture_output=True, check=True, timeout=60).stdout


def manifests(reg: LocalRegistry, repository: str) -> set[str]:
    """Every manifest the registry stores for `repository` (tagged or not)."""
    revisions = (reg.dir / "storage/docker/registry/v2/repositories" / repository
                 / "_manifests/revisions/sha256")
    return {p.name for p in revisions.iterdir()} if revisions.is_dir() else set()


def rendered_files(tools: OrasTools, repo: WorkRepo, out: Path) -> dict[str, bytes]:
    done = orascache(tools, "render", "--repo", repo.url, "--path", "caches", "--out",
                     str(out))
    assert done.returncode == 0, done.stderr
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file()}


def pulled_files(tools: OrasTools, ref: str, where: Path, *extra: str,
                 stdin: str | None = None) -> dict[str, bytes]:
    where.mkdir(parents=True)
    oras(tools, "pull", "--no-tty", ref, "-o", str(where), *extra, stdin=stdin)
    assert sorted(p.name for p in where.iterdir()) == ["artifact.tgz"]
    files: dict[str, bytes] = {}
    with tarfile.open(where / "artifact.tgz", mode="r:gz") as tar:
        for member in tar.getmembers():
            assert member.isfile() or member.isdir(), member.name
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                files[member.name] = handle.read()
    return files


def test_push_oci_in_flux_layout_only_when_changed(
    tools: OrasTools, registry: LocalRegistry, repo: WorkRepo, tmp_path: Path
) -> None:
    first = repo.write("caches/a.yaml", cache_yaml("a")).write(
        "caches/b.yaml", cache_yaml("b", port=6000)).commit()
    ref = f"{registry.address}/caches/rendered:main"
    args = ["render", "--repo", repo.url, "--ref", "main", "--path", "caches",
            "--push-oci", f"oci://{ref}", "--plain-http"]
    done = orascache(tools, *args)
    assert done.returncode == 0, done.stderr
    pinned = done.stdout.strip()
    assert pinned.startswith(f"{registry.address}/caches/rendered@sha256:")
    assert manifests(registry, "caches/rendered") == {pinned.split(":")[-1]}

    manifest = json.loads(oras(tools, "manifest", "fetch", ref))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == FLUX_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [FLUX_CONTENT]
    notes = manifest["annotations"]
    assert notes["org.opencontainers.image.source"] == repo.url
    assert notes["org.opencontainers.image.revision"] == f"main@sha1:{first}"
    created = datetime.strptime(notes["org.opencontainers.image.created"],
                                "%Y-%m-%dT%H:%M:%S%z")
    assert abs(time.time() - created.timestamp()) < 600
    config = json.loads(oras(tools, "blob", "fetch", "--output", "-",
                             f"{registry.address}/caches/rendered@"
                             f"{manifest['config']['digest']}"))
    assert config["rootfs"]["type"] == "layers"

    expected = rendered_files(tools, repo, tmp_path / "out")
    assert sorted(expected) == ["_unnamespaced/a.yaml", "_unnamespaced/b.yaml",
                                "kustomization.yaml"]
    assert pulled_files(tools, ref, tmp_path / "pull1") == expected

    # Unchanged: no new manifest, the tag keeps its digest (and its created time).
    again = orascache(tools, *args)
    assert again.returncode == 0, again.stderr
    assert "nothing pushed" in again.stderr
    assert again.stdout.strip() == pinned
    repo.write("README.md", "docs only").commit("docs")
    assert orascache(tools, *args).stdout.strip() == pinned
    assert manifests(registry, "caches/rendered") == {pinned.split(":")[-1]}

    second = repo.write("caches/a.yaml", cache_yaml("a", port=7000)).commit("a on 7000")
    changed = orascache(tools, *args)
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() != pinned
    assert len(manifests(registry, "caches/rendered")) == 2
    notes = json.loads(oras(tools, "manifest", "fetch", ref))["annotations"]
    assert notes["org.opencontainers.image.revision"] == f"main@sha1:{second}"
    got = pulled_files(tools, ref, tmp_path / "pull2")
    assert b"7000" in got["_unnamespaced/a.yaml"]
    assert got == rendered_files(tools, repo, tmp_path / "out2")


def test_bad_reference_and_invalid_caches_push_nothing(
    tools: OrasTools, registry: LocalRegistry, repo: WorkRepo
) -> None:
    repo.write("caches/a.yaml", cache_yaml("a", port="x")).commit()
    base = ["render", "--repo", repo.url, "--path", "caches", "--plain-http"]
    invalid = orascache(tools, *base, "--push-oci", f"{registry.address}/c/r:main")
    assert invalid.returncode == 1
    assert "a.yaml" in invalid.stderr and "nothing written" in invalid.stderr
    assert manifests(registry, "c/r") == set()
    repo.write("caches/a.yaml", cache_yaml("a")).commit()
    untagged = orascache(tools, *base, "--push-oci", f"{registry.address}/c/r")
    assert untagged.returncode == 1 and "not an OCI reference with a tag" in untagged.stderr


class Watcher:
    """Polls every process's arguments and environment for a secret while it runs."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.leaks: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                    environ = (proc / "environ").read_bytes()
                except OSError:
                    continue
                if self.secret in cmdline or self.secret in environ:
                    self.leaks.append(cmdline.decode(errors="replace"))
            time.sleep(0.002)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_registry_credentials_never_in_arguments_or_environment(
    tools: OrasTools, repo: WorkRepo, tmp_path: Path
) -> None:
    password = "reg-s3cret-" + os.urandom(6).hex()
    repo.write("caches/a.yaml", cache_yaml("a")).commit()
    with LocalRegistry(tools.registry, auth=("robot", password)) as reg:
        ref = f"{reg.address}/private/rendered:v1"
        base = ["render", "--repo", repo.url, "--path", "caches", "--push-oci", ref,
                "--plain-http"]
        anonymous = orascache(tools, *base)
        assert anonymous.returncode == 1
        assert "error: pushing" in anonymous.stderr, anonymous.stderr

        secret_dir = tmp_path / "secret"  # a mounted Secret: one file per key
        secret_dir.mkdir()
        (secret_dir / "username").write_text("robot")
        (secret_dir / "password").write_text(password + "\n")
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(yaml.safe_dump({"username": "robot", "password": "nope-" + password}))
        # Every oras call goes through a wrapper that records its arguments and
        # environment; the watcher polls every other process (git, python) meanwhile.
        calls = tmp_path / "oras-calls.log"
        wrapper = tmp_path / "oras"
        wrapper.write_text(f'#!/bin/sh\n{{ printf "%s\\n" "$@"; env; echo ---; }} >> {calls}\n'
                           f'exec {tools.oras} "$@"\n')
        wrapper.chmod(0o755)
        with Watcher(password.encode()) as watcher:
            pushed, again, refused = (
                orascache(tools, *base, "--registry-credentials-file", str(creds),
                          oras=wrapper) for creds in (secret_dir, secret_dir, wrong))
        assert pushed.returncode == 0, pushed.stderr
        assert again.returncode == 0 and "nothing pushed" in again.stderr, again.stderr
        assert refused.returncode == 1
        for done in (pushed, again, refused):
            assert password not in done.stdout + done.stderr
        assert watcher.leaks == []
        recorded = calls.read_text()
        assert recorded.count("---") >= 6 and "--registry-config" in recorded
        assert "push" in recorded.split() and password not in recorded
        assert len(manifests(reg, "private/rendered")) == 1
        files = pulled_files(tools, ref, tmp_path / "pull", "-u", "robot",
                             "--password-stdin", stdin=password)
        assert "_unnamespaced/a.yaml" in files
    # The watcher would have caught it: a process with the password in its arguments.
    with Watcher(password.encode()) as control:
        subprocess.run(["/bin/sh", "-c", "sleep 0.3", "sh", password], check=True)
    assert control.leaks, "the watcher cannot see arguments"
    # ... or in its environment.
    with Watcher(password.encode()) as control:
        subprocess.run(["/bin/sh", "-c", "sleep 0.3"], check=True,
                       env={"X": password})
    assert control.leaks, "the watcher cannot see environments"
