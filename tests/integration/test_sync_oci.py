"""The sync service, OCI source (`orascache sync --source oci`), against the real
distribution registry, the real oras CLI and the real control plane: a new digest of the
tag is applied; a broken artifact changes nothing; a registry outage prunes nothing and
the service recovers when it is back."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sync.apply.applyset import (
    LAST_ATTEMPT,
    LAST_COMMIT,
    LAST_MESSAGE,
    LAST_RESULT,
    PART_OF_LABEL,
    applyset_id,
)
from sync.apply.kube import Kube
from sync.publish.oci import CONTENT_MEDIA_TYPE, push_artifact
from sync.sources.git import Credentials
from sync.sources.oras import Oras, Reference
from tests.harness import LocalCluster
from tests.harness.oras_tools import LocalRegistry, OrasTools
from tests.integration import syncproc
from tests.integration.syncproc import SyncProcess, sts, svc, wait_for
from tests.integration.test_oci_render import Watcher
from tests.integration.test_sync_git import (
    PARENT,
    cache_yaml,
    image,
    our_events,
    parent,
    recorded,
    trigger,
)

pytestmark = pytest.mark.timeout(900)
Start = Callable[..., SyncProcess]


@pytest.fixture
def start_sync(cluster: LocalCluster, namespace: str, tmp_path: Path, tools: OrasTools,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Start]:
    procs: list[SyncProcess] = []
    monkeypatch.setenv("ORASCACHE_ORAS", str(tools.oras))  # the sync process's oras

    def start(ref: str, *args: str) -> SyncProcess:
        log = tmp_path / f"sync-oci-{len(procs)}.log"
        proc = SyncProcess(cluster.kubeconfig, [
            "--source", "oci", "--artifact", ref, "--plain-http", "--namespace", namespace,
            "--interval", "1h", "--log-format", "text",
            "--trigger-token-file", str(syncproc.trigger_token_file(tmp_path)), *args], log)
        procs.append(proc.start())
        return proc.wait_ready(60)

    yield start
    for proc in procs:
        if not proc.exited():
            proc.stop()


def publish(tools: OrasTools, reg: LocalRegistry, ref: str, files: dict[str, str],
            creds: Credentials | None = None) -> str:
    """Push `files` as the artifact `ref` (the layout render --push-oci writes); its digest."""
    oras = Oras(reg.address, creds or Credentials(), plain_http=True, binary=str(tools.oras))
    try:
        pushed = push_artifact(oras, Reference.parse(ref), files, source="test",
                               revision="test")
    finally:
        oras.close()
    return pushed.reference.split("@")[1]


def push_raw(tools: OrasTools, ref: str, data: bytes, where: Path) -> str:
    """Push `data` as the content layer as it is (a broken artifact); its digest."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "artifact.tgz").write_bytes(data)
    env = {"PATH": os.environ["PATH"], "HOME": str(where)}
    subprocess.run([str(tools.oras), "push", "--plain-http", "--no-tty", ref,
                    f"artifact.tgz:{CONTENT_MEDIA_TYPE}"], cwd=where, env=env, check=True,
                   capture_output=True, timeout=60)
    done = subprocess.run([str(tools.oras), "resolve", "--plain-http", ref], env=env,
                          check=True, capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def settle(proc: SyncProcess, kube: Kube, ns: str, digest: str, result: str = "Applied",
           ) -> dict[str, str]:
    trigger(proc)
    return recorded(kube, ns, lambda a: a.get(LAST_ATTEMPT) == digest
                    and a.get(LAST_RESULT) == result, what=f"{result} {digest}")


def restart(reg: LocalRegistry) -> None:
    """Start the stopped registry again on the same port, with the same storage."""
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    with open(reg.log_path, "ab") as log:
        reg.proc = subprocess.Popen([str(reg.binary), "serve", str(reg.dir / "config.yml")],
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://{reg.address}/v2/", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    wait_for(up, timeout=30, what="the registry back")


def test_new_digest_applied_broken_artifact_changes_nothing_outage_prunes_nothing(
    start_sync: Start, tools: OrasTools, registry: LocalRegistry, kube: Kube,
    namespace: str, tmp_path: Path
) -> None:
    ref = f"{registry.address}/caches/source:main"
    first = publish(tools, registry, ref, {"caches/a.yaml": cache_yaml("a")})
    proc = start_sync(ref, "--path", "caches")
    ann = recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == first,
                   what="first digest applied")
    assert ann[LAST_RESULT] == "Applied"
    a = sts(kube, namespace, "a")
    assert a is not None
    assert a["metadata"]["labels"][PART_OF_LABEL] == applyset_id(PARENT, namespace)

    # A new digest of the tag: applied.
    second = publish(tools, registry, ref, {
        "caches/a.yaml": cache_yaml("a", image="registry:3.0.0"),
        "caches/b.yaml": cache_yaml("b")})
    assert second != first
    settle(proc, kube, namespace, second)
    assert image(kube, namespace, "a") == "registry:3.0.0"
    assert sts(kube, namespace, "b") is not None
    assert proc.metric('orascache_git_revisions_total{result="Applied"}') == 2

    # The same digest again: nothing to do.
    trigger(proc)
    time.sleep(1)
    assert proc.metric('orascache_git_revisions_total{result="Applied"}') == 2

    uid_a = sts(kube, namespace, "a")["metadata"]["uid"]  # type: ignore[index]
    # Broken: the content layer is not a tar+gzip; then valid archive, invalid caches.
    broken = push_raw(tools, ref, b"this is not gzip", tmp_path / "broken")
    ann = settle(proc, kube, namespace, broken, "Failed")
    assert "not a valid tar+gzip" in ann[LAST_MESSAGE]
    assert ann[LAST_COMMIT] == second
    invalid = publish(tools, registry, ref, {"caches/a.yaml": "kind: OrasCache\nspec: [x\n"})
    ann = settle(proc, kube, namespace, invalid, "Invalid")
    assert "caches/a.yaml" in ann[LAST_MESSAGE] and ann[LAST_COMMIT] == second
    assert sts(kube, namespace, "b") is not None
    after = sts(kube, namespace, "a")
    assert after is not None and after["metadata"]["uid"] == uid_a
    assert image(kube, namespace, "a") == "registry:3.0.0"
    reasons = {e["reason"] for e in our_events(kube, namespace)}
    assert {"Applied", "Failed", "Invalid"} <= reasons

    # An outage: a fetch failure, recorded once; nothing pruned.
    registry.stop()
    trigger(proc)
    ann = recorded(kube, namespace, lambda a: a.get(LAST_RESULT) == "FetchFailed",
                   what="fetch failure reported")
    assert ann[LAST_COMMIT] == second and "keeping last good revision" in ann[LAST_MESSAGE]
    assert proc.metric("orascache_git_last_sync_ok") == 0
    assert sts(kube, namespace, "a") is not None and sts(kube, namespace, "b") is not None

    # Back, with b removed from the artifact meanwhile: applied and pruned.
    restart(registry)
    third = publish(tools, registry, ref, {"caches/a.yaml": cache_yaml("a", port=6000)})
    settle(proc, kube, namespace, third)
    assert sts(kube, namespace, "b") is None and svc(kube, namespace, "b") is None
    svc_a = svc(kube, namespace, "a")
    assert svc_a is not None and svc_a["spec"]["ports"][0]["port"] == 6000
    assert proc.metric("orascache_git_last_sync_ok") == 1
    assert parent(kube, namespace)[LAST_COMMIT] == third


def test_registry_credentials_and_empty_guard(
    start_sync: Start, tools: OrasTools, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    password = "oci-s3cret-" + os.urandom(6).hex()
    with LocalRegistry(tools.registry, auth=("robot", password)) as reg:
        ref = f"{reg.address}/private/caches:v1"
        creds = Credentials("robot", password)
        first = publish(tools, reg, ref, {"a.yaml": cache_yaml("a")}, creds)
        secret = tmp_path / "secret"
        secret.mkdir()
        (secret / "username").write_text("robot")
        (secret / "password").write_text(password)
        with Watcher(password.encode()) as watcher:
            proc = start_sync(ref, "--registry-credentials-file", str(secret))
            recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == first,
                     what="applied with credentials")
            # An artifact with no caches: refused, nothing pruned.
            empty = publish(tools, reg, ref, {"README.md": "nothing here\n"}, creds)
            ann = settle(proc, kube, namespace, empty, "EmptyRefused")
        assert watcher.leaks == []
        assert ann[LAST_COMMIT] == first
        assert sts(kube, namespace, "a") is not None
        assert password not in proc.output()
