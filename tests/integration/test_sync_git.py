"""The sync service, git source, against real git remotes (file:// and smart HTTP with
basic auth) and the real control plane; plus `orascache render` and `orascache diff`."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from sync import revision_sync
from sync.apply import applyset
from sync.apply.applyset import (
    LAST_ATTEMPT,
    LAST_COMMIT,
    LAST_MESSAGE,
    LAST_RESULT,
    PART_OF_LABEL,
    applyset_id,
)
from sync.apply.kube import Kube
from sync.options import RevisionOptions
from sync.render import tree
from sync.revision_sync import RevisionSync
from sync.sources.git import GitSource
from tests.harness import LocalCluster
from tests.integration import syncproc
from tests.integration.gitserver import GitHttpServer, WorkRepo
from tests.integration.syncproc import REPO, SyncProcess, get, sts, svc, wait_for

PARENT = "orascache-git"
Start = Callable[..., SyncProcess]
SECRET = "s3cr3t-Pa55-word"


def cache_yaml(name: str, **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": "cache.converged-computing.github.io/v1alpha1",
                           "kind": "OrasCache", "metadata": {"name": name}, "spec": spec})


@pytest.fixture
def repo(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "remote" / "caches.git")


@pytest.fixture
def start_sync(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[Start]:
    procs: list[SyncProcess] = []

    def start(url: str, *args: str, ref: str = "main", path: str = "caches") -> SyncProcess:
        log = tmp_path / f"sync-git-{len(procs)}.log"
        proc = SyncProcess(cluster.kubeconfig, [
            "--source", "git", "--repo", url, "--ref", ref, "--path", path,
            "--namespace", namespace, "--interval", "1h", "--log-format", "text",
            "--git-dir", str(tmp_path / f"clone-{len(procs)}"),
            "--trigger-token-file", str(syncproc.trigger_token_file(tmp_path)), *args], log)
        procs.append(proc.start())
        return proc.wait_ready(60)

    yield start
    for proc in procs:
        if not proc.exited():
            proc.stop()





def parent(kube: Kube, ns: str) -> dict[str, str]:
    obj = get(kube, f"/api/v1/namespaces/{ns}/configmaps/{PARENT}")
    annotations: dict[str, str] = (obj or {}).get("metadata", {}).get("annotations") or {}
    return annotations


def recorded(kube: Kube, ns: str, check: Callable[[dict[str, str]], bool],
             what: str, timeout: float = 60.0) -> dict[str, str]:
    """Wait until the parent's annotations satisfy `check`; return them."""
    def ready() -> dict[str, str]:
        ann = parent(kube, ns)
        return ann if check(ann) else {}

    return wait_for(ready, timeout=timeout, what=what)


def trigger(proc: SyncProcess) -> None:
    assert syncproc.post_trigger(proc.port) == 202


def settle(proc: SyncProcess, kube: Kube, ns: str, commit: str, result: str = "Applied",
           ) -> dict[str, str]:
    """Trigger a fetch and wait until the parent records `commit` with `result`."""
    trigger(proc)
    return recorded(kube, ns, lambda a: a.get(LAST_ATTEMPT) == commit
                    and a.get(LAST_RESULT) == result, what=f"{result} {commit[:12]}")


def image(kube: Kube, ns: str, name: str) -> str:
    obj = sts(kube, ns, name)
    assert obj is not None
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def orascache(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync.cli", *args], cwd=REPO, text=True,
                          capture_output=True, check=check, timeout=180,
                          env={**os.environ, "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"})


def test_add_modify_delete_follow_and_prune(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    first = repo.write("caches/a.yaml", cache_yaml("a")).write("README.md", "x").commit()
    proc = start_sync(repo.url)
    ann = recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == first,
                   what="first revision applied")
    assert ann[LAST_RESULT] == "Applied"
    ident = applyset_id(PARENT, namespace)
    for child in (sts(kube, namespace, "a"), svc(kube, namespace, "a")):
        assert child is not None
        assert child["metadata"]["labels"][PART_OF_LABEL] == ident
        assert "orascache" in {m["manager"] for m in child["metadata"]["managedFields"]}

    second = repo.write("caches/b.yaml", cache_yaml("b")).write(
        "caches/a.yaml", cache_yaml("a", image="registry:3.0.0")).commit("add b, pin a")
    settle(proc, kube, namespace, second)
    assert image(kube, namespace, "a") == "registry:3.0.0"
    assert sts(kube, namespace, "b") is not None

    third = repo.remove("caches/a.yaml").commit("delete a")
    ann = settle(proc, kube, namespace, third)
    assert sts(kube, namespace, "a") is None and svc(kube, namespace, "a") is None
    assert sts(kube, namespace, "b") is not None
    assert "deleted StatefulSet" in ann[LAST_MESSAGE]

    # No new commit: a fetch, and zero writes (objects and the parent untouched).
    writes = sum(proc.metric(f'orascache_objects_total{{action="{a}"}}')
                 for a in ("created", "configured", "deleted"))
    version = get(kube, f"/api/v1/namespaces/{namespace}/configmaps/{PARENT}")
    fetches = proc.metric('orascache_git_fetches_total{result="ok"}')
    trigger(proc)
    wait_for(lambda: proc.metric('orascache_git_fetches_total{result="ok"}') > fetches,
             what="another fetch")
    assert sum(proc.metric(f'orascache_objects_total{{action="{a}"}}')
               for a in ("created", "configured", "deleted")) == writes
    again = get(kube, f"/api/v1/namespaces/{namespace}/configmaps/{PARENT}")
    assert version and again
    assert again["metadata"]["resourceVersion"] == version["metadata"]["resourceVersion"]
    assert proc.metric('orascache_git_revisions_total{result="Applied"}') == 3
    assert proc.metric(f'orascache_git_last_applied_commit_info{{commit="{third}"}}') == 1

    # The built kubectl sees the ApplySet: the parent by its id label, members by part-of.
    out = cluster.kubectl("-n", namespace, "get", "configmap", "-l",
                          "applyset.kubernetes.io/id", "-o", "json").stdout
    items = json.loads(out)["items"]
    assert [i["metadata"]["name"] for i in items] == [PARENT]
    meta = items[0]["metadata"]
    assert meta["labels"]["applyset.kubernetes.io/id"] == ident
    assert meta["annotations"]["applyset.kubernetes.io/tooling"] == "orascache/v0.1.0"
    assert meta["annotations"]["applyset.kubernetes.io/contains-group-kinds"] == (
        "Service,StatefulSet.apps")
    out = cluster.kubectl("-n", namespace, "get", "statefulsets,services", "-l",
                          f"{PART_OF_LABEL}={ident}", "-o", "name").stdout
    assert sorted(out.split()) == ["service/b", "statefulset.apps/b"]
    events = cluster.kubectl("-n", namespace, "get", "events", "--field-selector",
                             f"involvedObject.name={PARENT}", "-o", "json").stdout
    assert {"Applied"} <= {e["reason"] for e in json.loads(events)["items"]}


def test_trigger_is_off_without_a_token(
    cluster: LocalCluster, repo: WorkRepo, namespace: str, tmp_path: Path
) -> None:
    repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = SyncProcess(cluster.kubeconfig, [
        "--source", "git", "--repo", repo.url, "--path", "caches", "--namespace", namespace,
        "--interval", "1h", "--git-dir", str(tmp_path / "clone")],
        tmp_path / "sync.log").start()
    try:
        proc.wait_ready(60)
        assert syncproc.post_trigger(proc.port) == 404
        assert syncproc.post_trigger(proc.port, {}) == 404
    finally:
        proc.stop()


def test_trigger_needs_its_token_or_a_webhook_signature_and_is_rate_limited(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str
) -> None:
    """As Flux's Receiver: a bearer token, GitLab's X-Gitlab-Token, or GitHub's
    X-Hub-Signature-256 over the body, keyed with the token from the Secret's file."""
    first = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url)
    recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == first, what="first applied")
    second = repo.write("caches/b.yaml", cache_yaml("b")).commit("add b")
    refused = [{}, {"Authorization": "Bearer not-the-token"},
               {"X-Gitlab-Token": "not-the-token"},
               {"X-Hub-Signature-256": "sha256=" + "0" * 64}]
    assert [syncproc.post_trigger(proc.port, h) for h in refused] == [401] * 4
    time.sleep(3)  # a refused trigger fetched nothing
    assert parent(kube, namespace).get(LAST_COMMIT) == first
    payload = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
    signature = hmac.new(syncproc.TRIGGER_TOKEN.encode(), payload, hashlib.sha256)
    assert syncproc.post_trigger(proc.port, {
        "X-GitHub-Event": "push", "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature.hexdigest()}"}, payload) == 202
    recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == second,
             what="the signed push applied")
    third = repo.remove("caches/b.yaml").commit("drop b")
    assert syncproc.post_trigger(proc.port, {"X-Gitlab-Token": syncproc.TRIGGER_TOKEN}) == 202
    recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == third,
             what="the GitLab hook's push applied")
    codes = [syncproc.post_trigger(proc.port, {}) for _ in range(15)]
    assert 429 in codes, codes
    assert syncproc.TRIGGER_TOKEN not in proc.output()


def test_applyset_id_matches_kubectl(cluster: LocalCluster, namespace: str,
                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """kubectl's own ApplySet (alpha: KUBECTL_APPLYSET=true) computes the same id."""
    monkeypatch.setenv("KUBECTL_APPLYSET", "true")
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "member"}}))
    cluster.kubectl("-n", namespace, "apply", "--prune", "--applyset=configmap/kset",
                    "-f", str(manifest))
    out = cluster.kubectl("-n", namespace, "get", "configmap", "kset", "-o", "json").stdout
    assert json.loads(out)["metadata"]["labels"]["applyset.kubernetes.io/id"] == (
        applyset_id("kset", namespace))


def test_broken_yaml_or_invalid_spec_applies_nothing(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str
) -> None:
    good = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url)
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == good, what="good applied")
    before = sts(kube, namespace, "a")
    assert before is not None

    # Deletes a, adds b, and breaks a file: nothing applied, nothing pruned.
    broken = (repo.remove("caches/a.yaml").write("caches/b.yaml", cache_yaml("b"))
              .write("caches/bad.yaml", "kind: OrasCache\nspec: [unclosed\n").commit("broken"))
    ann = settle(proc, kube, namespace, broken, "Invalid")
    assert "caches/bad.yaml:" in ann[LAST_MESSAGE] and "invalid YAML" in ann[LAST_MESSAGE]
    assert ann[LAST_COMMIT] == good
    after = sts(kube, namespace, "a")
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
    assert sts(kube, namespace, "b") is None

    invalid = repo.remove("caches/bad.yaml").write(
        "caches/b.yaml", cache_yaml("b", port="http")).commit("invalid spec")
    ann = settle(proc, kube, namespace, invalid, "Invalid")
    assert "caches/b.yaml[0]: spec.port" in ann[LAST_MESSAGE]
    assert sts(kube, namespace, "a") is not None and sts(kube, namespace, "b") is None
    assert proc.metric('orascache_git_revisions_total{result="Invalid"}') == 2
    assert "caches/b.yaml[0]: spec.port" in proc.output()

    fixed = repo.write("caches/b.yaml", cache_yaml("b", port=6000)).commit("fixed")
    settle(proc, kube, namespace, fixed)
    assert sts(kube, namespace, "a") is None and sts(kube, namespace, "b") is not None


def bomb(levels: int = 12) -> str:
    """An OrasCache with a billion laughs in accessModes (whose duplicate check walked it)."""
    text = ("apiVersion: cache.converged-computing.github.io/v1alpha1\nkind: OrasCache\n"
            "metadata: {name: b}\nx: &a0 [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n")
    for level in range(1, levels):
        text += f"l{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]\n"
    return text + f"spec: {{storage: {{size: 1Gi, accessModes: [*a{levels - 1}]}}}}\n"


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("bomb", bomb(), "excessive aliasing"),
    ("duplicate", "kind: X\nspec: {port: 1, port: 2}\n", "already defined at line"),
    ("list", "- kind: OrasCache\n", "got a list"),
    ("latin1", b"kind: X\nname: caf\xe9\n", "not UTF-8"),
])
def test_hostile_yaml_is_reported_quickly_and_applies_nothing(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, name: str,
    text: str | bytes, expected: str,
) -> None:
    good = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url)
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == good, what="good applied")
    path = repo.path / "caches" / "b.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    hostile = repo.write("caches/c.yaml", cache_yaml("c")).commit(name)
    started = time.monotonic()
    ann = settle(proc, kube, namespace, hostile, "Invalid")
    assert time.monotonic() - started < 30
    assert "caches/b.yaml" in ann[LAST_MESSAGE] and expected in ann[LAST_MESSAGE]
    assert ann[LAST_COMMIT] == good
    assert sts(kube, namespace, "c") is None and sts(kube, namespace, "a") is not None


def test_http_credentials_unreachable_and_recovery(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    server = GitHttpServer(repo.path.parent, "robot", SECRET).start()
    try:
        creds = tmp_path / "creds"  # a mounted Secret: one file per key
        creds.mkdir()
        (creds / "username").write_text("robot")
        (creds / "password").write_text(SECRET)
        good = repo.write("caches/a.yaml", cache_yaml("a")).commit()
        proc = start_sync(server.url("caches.git"), "--credentials-file", str(creds))
        wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == good, what="applied")

        server.stop()
        change = repo.write("caches/a.yaml", cache_yaml("a", port=6000)).commit()
        trigger(proc)
        ann = recorded(kube, namespace, lambda a: a.get(LAST_RESULT) == "FetchFailed",
                       what="fetch failure reported")
        assert ann[LAST_COMMIT] == good and "keeping last good revision" in ann[LAST_MESSAGE]
        assert proc.metric('orascache_git_fetches_total{result="failed"}') >= 1
        assert proc.metric("orascache_git_last_sync_ok") == 0
        assert sts(kube, namespace, "a") is not None

        server.start()
        settle(proc, kube, namespace, change)
        svc_a = svc(kube, namespace, "a")
        assert svc_a is not None and svc_a["spec"]["ports"][0]["port"] == 6000
        assert proc.metric("orascache_git_last_sync_ok") == 1
        assert SECRET not in proc.output()
        assert SECRET not in " ".join(proc.argv)
    finally:
        server.stop()


def test_wrong_credentials_clear_error_without_secret(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    server = GitHttpServer(repo.path.parent, "robot", "right-one").start()
    try:
        repo.write("caches/a.yaml", cache_yaml("a")).commit()
        creds = tmp_path / "creds.yaml"
        creds.write_text(yaml.safe_dump({"username": "robot", "password": SECRET}))
        proc = start_sync(server.url("caches.git"), "--credentials-file", str(creds))
        ann = recorded(kube, namespace, lambda a: bool(a.get(LAST_RESULT)),
                       what="result recorded")
        assert ann[LAST_RESULT] == "FetchFailed"
        assert "authentication failed" in ann[LAST_MESSAGE]
        assert SECRET not in ann[LAST_MESSAGE]
        assert "authentication failed" in proc.output()
        assert SECRET not in proc.output()
        proc.stop()

        # Credentials inside the URL are moved out of it: never printed either.
        url = server.url("caches.git").replace("http://", f"http://robot:{SECRET}@")
        proc = start_sync(url)
        wait_for(lambda: "authentication failed" in proc.output(), what="auth error")
        assert SECRET not in proc.output()
        assert sts(kube, namespace, "a") is None
    finally:
        server.stop()


def test_force_pushed_branch(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str
) -> None:
    base = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url)
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == base, what="base applied")
    ahead = repo.write("caches/b.yaml", cache_yaml("b")).commit("b")
    settle(proc, kube, namespace, ahead)
    repo.reset_hard(base)  # history rewritten: b never happened, c did
    rewritten = repo.write("caches/c.yaml", cache_yaml("c")).commit("c")
    settle(proc, kube, namespace, rewritten)
    assert sts(kube, namespace, "b") is None
    assert sts(kube, namespace, "a") is not None and sts(kube, namespace, "c") is not None


def test_tag_and_commit_refs(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str
) -> None:
    v1 = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    repo.tag("v1")
    v2 = repo.write("caches/b.yaml", cache_yaml("b")).commit()
    proc = start_sync(repo.url, ref="v1")
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == v1, what="tag applied")
    assert sts(kube, namespace, "a") is not None and sts(kube, namespace, "b") is None
    repo.tag("v1", v2)  # a moved tag is followed
    settle(proc, kube, namespace, v2)
    assert sts(kube, namespace, "b") is not None
    proc.stop()

    proc = start_sync(repo.url, ref=v1)  # a commit id: exactly that commit
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == v1, what="commit applied")
    assert sts(kube, namespace, "b") is None and sts(kube, namespace, "a") is not None


def test_empty_path_refused_without_allow_empty(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str
) -> None:
    good = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url)
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == good, what="applied")
    empty = repo.remove("caches/a.yaml").write("caches/README.md", "none").commit("empty")
    ann = settle(proc, kube, namespace, empty, "EmptyRefused")
    assert "--allow-empty" in ann[LAST_MESSAGE]
    assert sts(kube, namespace, "a") is not None
    proc.stop()

    proc = start_sync(repo.url, "--allow-empty")
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == empty, what="empty applied")
    assert sts(kube, namespace, "a") is None and svc(kube, namespace, "a") is None


def test_render_to_branch_only_when_changed(repo: WorkRepo, tmp_path: Path) -> None:
    server = GitHttpServer(repo.path.parent, "robot", SECRET).start()
    try:
        creds = tmp_path / "creds.yaml"
        creds.write_text(yaml.safe_dump({"username": "robot", "token": SECRET}))
        first = repo.write("caches/a.yaml", cache_yaml("a")).commit()
        args = ["render", "--repo", server.url("caches.git"), "--ref", "main", "--path",
                "caches", "--push-branch", "rendered", "--credentials-file", str(creds)]
        for _ in range(2):
            done = orascache(*args)
            assert done.returncode == 0, done.stderr
            assert SECRET not in done.stderr + done.stdout
        log = repo.log("rendered")
        assert len(log) == 1 and first in log[0][1]
        repo.write("README.md", "docs only").commit("docs")
        assert orascache(*args).returncode == 0
        assert len(repo.log("rendered")) == 1
        second = repo.write("caches/a.yaml", cache_yaml("a", port=6000)).commit()
        assert orascache(*args).returncode == 0
        log = repo.log("rendered")
        assert len(log) == 2 and second in log[0][1]
        files = repo.repo.git.ls_tree("-r", "--name-only", "rendered").split()
        assert files == ["_unnamespaced/a.yaml", "kustomization.yaml"]
    finally:
        server.stop()


def test_kustomize_of_rendered_dir_yields_same_objects(
    repo: WorkRepo, cluster: LocalCluster, tmp_path: Path
) -> None:
    for example in sorted((REPO / "examples").glob("*.yaml")):
        repo.write(f"caches/{example.name}", example.read_text())
    repo.commit()
    out = tmp_path / "out"
    done = orascache("render", "--repo", repo.url, "--path", "caches", "--out", str(out))
    assert done.returncode == 0, done.stderr
    ours = [d for f in sorted(out.rglob("*.yaml")) if f.name != "kustomization.yaml"
            for d in yaml.safe_load_all(f.read_text()) if d]
    built = [d for d in yaml.safe_load_all(cluster.kubectl("kustomize", str(out)).stdout) if d]

    def key(doc: dict[str, Any]) -> str:
        return json.dumps(doc, sort_keys=True)

    assert len(ours) >= 4
    assert sorted(map(key, built)) == sorted(map(key, ours))


def test_diff_exit_codes(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    good = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    base = ["--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    done = orascache("diff", str(repo.path / "caches"), *base)
    assert done.returncode == 1, done.stderr
    assert "+++ merged/StatefulSet/" in done.stdout
    start_sync(repo.url)
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == good, what="applied")

    done = orascache("diff", str(repo.path / "caches"), *base)
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    done = orascache("diff", "--repo", repo.url, "--path", "caches", *base)
    assert done.returncode == 0, done.stdout + done.stderr

    repo.write("caches/a.yaml", cache_yaml("a", port=6000))
    repo.write("caches/b.yaml", cache_yaml("b"))
    done = orascache("diff", str(repo.path / "caches"), *base)
    assert done.returncode == 1
    assert "-    port: 5000\n+    port: 6000\n" in done.stdout
    assert "-        - containerPort: 5000\n+        - containerPort: 6000\n" in done.stdout
    assert f"--- /dev/null\n+++ merged/StatefulSet/{namespace}/b" in done.stdout
    repo.remove("caches/a.yaml")
    done = orascache("diff", str(repo.path / "caches"), *base)
    assert f"--- live/StatefulSet/{namespace}/a\n+++ /dev/null" in done.stdout
    repo.write("caches/b.yaml", "spec: [")
    assert orascache("diff", str(repo.path / "caches"), *base).returncode == 2


def write_requests(cluster: LocalCluster, namespace: str) -> dict[str, int]:
    """The service's writes to the kinds the git source writes (members and the parent)."""
    return syncproc.service_requests(
        cluster, namespace, {"statefulsets", "services", "configmaps", "persistentvolumeclaims"})


def our_events(kube: Kube, ns: str) -> list[dict[str, Any]]:
    events = get(kube, f"/api/v1/namespaces/{ns}/events") or {}
    return [e for e in events.get("items", []) if e.get("reportingComponent") == "orascache"]


def drift_passes(proc: SyncProcess, result: str) -> float:
    return proc.metric(f'orascache_git_drift_checks_total{{result="{result}"}}')


def drift_pass(proc: SyncProcess, result: str) -> None:
    """Trigger a fetch of the unchanged commit and wait for its drift pass to end."""
    before = drift_passes(proc, result)
    trigger(proc)
    wait_for(lambda: drift_passes(proc, result) > before, what=f"a {result} drift pass")


def test_drift_corrected_every_interval_zero_writes_when_clean(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    commit = (repo.write("caches/a.yaml", cache_yaml("a"))
              .write("caches/b.yaml", cache_yaml("b", port=6000)).commit())
    proc = start_sync(repo.url)
    recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == commit, what="applied")
    cm = f"/api/v1/namespaces/{namespace}/configmaps/{PARENT}"
    version = (get(kube, cm) or {})["metadata"]["resourceVersion"]
    kinds = parent(kube, namespace)["applyset.kubernetes.io/contains-group-kinds"]
    objects = proc.metric('orascache_objects_total{action="created"}')
    assert objects == 4  # a Service and a StatefulSet per cache
    sts_path = f"/apis/apps/v1/namespaces/{namespace}/statefulsets"
    wait_for(lambda: len((get(kube, f"/api/v1/namespaces/{namespace}/pods") or {})
                         .get("items", [])) == 2, what="the StatefulSets' Pods")

    # 1. Nothing drifted: a drift pass (list the members, compare), zero writes.
    drift_pass(proc, "clean")  # the first one after applying may only warm the caches
    writes, events = write_requests(cluster, namespace), len(our_events(kube, namespace))
    applied = proc.metric("orascache_objects_total")
    for _ in range(3):
        drift_pass(proc, "clean")
    after = write_requests(cluster, namespace)
    assert after == writes, {k: after[k] - writes.get(k, 0) for k in after}
    assert len(our_events(kube, namespace)) == events
    assert proc.metric("orascache_objects_total") - applied == 3 * objects
    assert proc.metric('orascache_objects_total{action="unchanged"}') == 4 * objects
    assert (get(kube, cm) or {})["metadata"]["resourceVersion"] == version
    assert proc.metric("orascache_git_drift_corrected_objects_total") == 0

    # 2. A member deleted and a field we set edited by hand: both restored at the next
    #    interval, without a new commit, and reported; the parent is not rewritten.
    kube.request("DELETE", f"/api/v1/namespaces/{namespace}/services/a")
    kube.request("PATCH", f"{sts_path}/b", body={"spec": {"replicas": 3}},
                 content_type="application/merge-patch+json")
    drift_pass(proc, "corrected")
    restored = svc(kube, namespace, "a")
    assert restored is not None and restored["metadata"]["labels"][PART_OF_LABEL] == (
        applyset_id(PARENT, namespace))
    assert (sts(kube, namespace, "b") or {})["spec"]["replicas"] == 1
    assert proc.metric("orascache_git_drift_corrected_objects_total") == 2
    assert proc.metric('orascache_objects_total{action="created"}') >= 1
    assert (get(kube, cm) or {})["metadata"]["resourceVersion"] == version
    ann = parent(kube, namespace)
    assert (ann[LAST_RESULT], ann[LAST_COMMIT]) == ("Applied", commit)
    wait_for(lambda: [e for e in our_events(kube, namespace)
                      if e["reason"] == "DriftCorrected"], what="a DriftCorrected event")
    assert "drift corrected" in proc.output()
    assert proc.metric('orascache_git_revisions_total{result="Applied"}') == 1

    # 3. The ApplySet parent itself deleted: recreated with the applied commit's record.
    kube.request("DELETE", cm)
    drift_pass(proc, "corrected")
    ann = parent(kube, namespace)
    assert (ann[LAST_RESULT], ann[LAST_COMMIT]) == ("Applied", commit)
    assert ann["applyset.kubernetes.io/contains-group-kinds"] == kinds
    assert svc(kube, namespace, "a") is not None


def test_no_drift_correction_flag_and_drift_after_a_restart(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str
) -> None:
    commit = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    start_sync(repo.url, "--no-drift-correction").stop()
    assert parent(kube, namespace)[LAST_COMMIT] == commit

    # --no-drift-correction: an unchanged commit is left alone.
    kube.request("DELETE", f"/api/v1/namespaces/{namespace}/services/a")
    proc = start_sync(repo.url, "--no-drift-correction")
    fetches = proc.metric('orascache_git_fetches_total{result="ok"}')
    trigger(proc)
    wait_for(lambda: proc.metric('orascache_git_fetches_total{result="ok"}') > fetches,
             what="another fetch")
    assert svc(kube, namespace, "a") is None
    assert drift_passes(proc, "clean") + drift_passes(proc, "corrected") == 0
    proc.stop()

    # After a restart (the parent says the commit is applied), the first interval
    # renders the commit once and restores the member.
    proc = start_sync(repo.url)
    wait_for(lambda: svc(kube, namespace, "a"), what="Service a restored after a restart")
    assert proc.metric("orascache_git_drift_corrected_objects_total") == 1
    assert proc.metric('orascache_git_revisions_total{result="Applied"}') == 0


# ----- hostile and broken repositories ------------------------------------------------------
def warnings_for(kube: Kube, ns: str, reason: str) -> list[str]:
    return [e["message"] for e in our_events(kube, ns)
            if e["reason"] == reason and e["type"] == "Warning"
            and e["involvedObject"]["name"] == PARENT]


def test_links_out_of_the_repository_fail_the_revision_naming_the_link(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """A link to a host file was rendered (a value of it showed in an error) and a
    `caches -> /` link walked the host: both refused, as parse errors are reported."""
    host_file = tmp_path / "host" / "leak.yaml"
    host_file.parent.mkdir()
    host_file.write_text(cache_yaml("leaked-from-host", port="host-only-value"))
    good = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url)
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == good, what="good applied")

    repo.remove("caches/a.yaml").write("caches/b.yaml", cache_yaml("b"))
    (repo.path / "caches" / "leak.yaml").symlink_to(host_file)
    linked = repo.commit("link to a host file")
    ann = settle(proc, kube, namespace, linked, "Invalid")
    message = ann[LAST_MESSAGE]
    assert "caches/leak.yaml" in message and "outside the repository" in message
    assert ann[LAST_COMMIT] == good
    assert sts(kube, namespace, "a") is not None  # nothing pruned
    assert sts(kube, namespace, "b") is None and sts(kube, namespace, "leaked-from-host") is None
    for text in (message, proc.output()):
        assert "host-only-value" not in text and "leaked-from-host" not in text
        assert str(host_file) not in text
    wait_for(lambda: [m for m in warnings_for(kube, namespace, "Invalid")
                      if "caches/leak.yaml" in m], what="an Invalid event naming the link")
    assert proc.metric('orascache_git_revisions_total{result="Invalid"}') == 1
    assert proc.metric("orascache_git_last_sync_ok") == 0

    repo.remove("caches/leak.yaml").remove("caches/b.yaml").write("caches/a.yaml",
                                                                   cache_yaml("a"))
    repo.commit("back")
    repo.repo.git.rm("-r", "-q", "caches")
    (repo.path / "caches").symlink_to("/")
    root = repo.commit("caches -> /")
    ann = settle(proc, kube, namespace, root, "Invalid")
    assert "not followed: caches" in ann[LAST_MESSAGE]
    assert sts(kube, namespace, "a") is not None
    assert proc.metric('orascache_git_revisions_total{result="Invalid"}') == 2


@pytest.mark.parametrize("bad", ["date", "latin-1"])
def test_any_error_of_a_revision_is_reported_and_nothing_pruned(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, bad: str
) -> None:
    """A YAML date like 2001-13-45 or a non-UTF-8 file raised outside the handled
    errors: the pass only logged "sync pass failed", nothing reached the parent, Events
    or metrics. Now every failure of a revision is reported (Failed, or Invalid when
    the loader names the file), and nothing is applied or pruned."""
    good = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url)
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == good, what="good applied")

    repo.remove("caches/a.yaml").write("caches/b.yaml", cache_yaml("b"))
    if bad == "date":  # text since kubectl's YAML reading: refused where a port goes
        repo.write("caches/other.yaml", cache_yaml("d").replace("spec: {}",
                                                                "spec: {port: 2001-13-45}"))
    else:
        (repo.path / "caches" / "other.yaml").write_bytes(
            b"kind: OrasCache\nmetadata: {name: caf\xe9}\n")
    broken = repo.commit("broken")
    trigger(proc)
    ann = recorded(kube, namespace, lambda a: a.get(LAST_ATTEMPT) == broken,
                   what="the broken revision reported")
    outcome = ann[LAST_RESULT]
    assert outcome in ("Failed", "Invalid"), ann
    assert ann[LAST_COMMIT] == good and ann[LAST_MESSAGE]
    assert "nothing" in ann[LAST_MESSAGE] and "pruned" in ann[LAST_MESSAGE]
    assert sts(kube, namespace, "a") is not None and sts(kube, namespace, "b") is None
    wait_for(lambda: warnings_for(kube, namespace, outcome), what=f"a {outcome} event")
    assert proc.metric(f'orascache_git_revisions_total{{result="{outcome}"}}') == 1
    assert proc.metric("orascache_git_last_sync_ok") == 0
    assert "sync pass failed" not in proc.output()

    fixed = repo.remove("caches/other.yaml").commit("fixed")
    settle(proc, kube, namespace, fixed)
    assert sts(kube, namespace, "a") is None and sts(kube, namespace, "b") is not None


def test_an_unusable_clone_is_reported_as_a_failed_fetch(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """A broken --git-dir (an empty .git) raised outside the handled errors: only
    "sync pass failed" in the log. It is a failed fetch now, on the parent and in metrics."""
    repo.write("caches/a.yaml", cache_yaml("a")).commit()
    (tmp_path / "clone-0" / ".git").mkdir(parents=True)  # start_sync's first --git-dir
    proc = start_sync(repo.url)
    ann = recorded(kube, namespace, lambda a: bool(a.get(LAST_RESULT)), what="a result")
    assert ann[LAST_RESULT] == "FetchFailed"
    assert f"the clone in {tmp_path / 'clone-0'} is not usable" in ann[LAST_MESSAGE]
    assert proc.metric('orascache_git_fetches_total{result="failed"}') >= 1
    wait_for(lambda: warnings_for(kube, namespace, "FetchFailed"), what="a FetchFailed event")
    assert "sync pass failed" not in proc.output()
    assert sts(kube, namespace, "a") is None


def test_render_of_a_revision_without_caches_needs_allow_empty(
    repo: WorkRepo, tmp_path: Path
) -> None:
    """`render` of a revision with no caches emptied --out and pushed an empty tree."""
    first = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    out = tmp_path / "out"
    to_dir = ["render", "--repo", repo.url, "--path", "caches", "--out", str(out)]
    to_branch = ["render", "--repo", repo.url, "--path", "caches", "--push-branch",
                 "rendered"]
    for args in (to_dir, to_branch):
        done = orascache(*args)
        assert done.returncode == 0, done.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["_unnamespaced/a.yaml", "kustomization.yaml"]
    assert repo.log("rendered")[0][1].endswith(first)

    empty = repo.remove("caches/a.yaml").write("caches/README.md", "none").commit("empty")
    for args in (to_dir, to_branch):
        done = orascache(*args)
        assert done.returncode == 1, done.stderr
        assert "--allow-empty" in done.stderr and empty[:12] in done.stderr
        assert "Traceback" not in done.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == (
        files)
    assert len(repo.log("rendered")) == 1

    for args in (to_dir, to_branch):
        done = orascache(*args, "--allow-empty")
        assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == (
        ["kustomization.yaml"])
    assert repo.repo.git.ls_tree("-r", "--name-only", "rendered").split() == (
        ["kustomization.yaml"])


# ----- credentials in URLs ----------------------------------------------------------------
def test_url_credentials_decoded_refused_or_redacted(repo: WorkRepo, tmp_path: Path) -> None:
    """Percent-encoded passwords were sent undecoded; `http://TOKEN@host` dropped the
    token silently; a `?private_token=` was echoed in errors."""
    password = "p@ss:w/rd%"
    server = GitHttpServer(repo.path.parent, "r@bot", password).start()
    try:
        repo.write("caches/a.yaml", cache_yaml("a")).commit()
        base = server.url("caches.git")
        encoded = base.replace("http://", f"http://{quote('r@bot', safe='')}:"
                               f"{quote(password, safe='')}@")
        done = orascache("render", "--repo", encoded, "--path", "caches", "--out",
                         str(tmp_path / "out"))
        assert done.returncode == 0, done.stderr
        assert password not in done.stderr and quote(password, safe="") not in done.stderr

        token = "glpat-0nly-T0KEN"
        done = orascache("render", "--repo", base.replace("http://", f"http://{token}@"),
                         "--path", "caches", "--out", str(tmp_path / "out2"))
        assert done.returncode == 1 and "never prompts" in done.stderr, done.stderr
        assert token not in done.stderr

        done = orascache("render", "--repo", f"{base}?private_token={token}", "--path",
                         "caches", "--out", str(tmp_path / "out3"))
        assert done.returncode == 1 and "query string" in done.stderr, done.stderr
        assert token not in done.stderr
        assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()
    finally:
        server.stop()


def replicas_and_image(kube: Kube, ns: str, name: str) -> tuple[int, str]:
    obj = sts(kube, ns, name)
    assert obj is not None
    return obj["spec"]["replicas"], obj["spec"]["template"]["spec"]["containers"][0]["image"]


def edit_by_hand(cluster: LocalCluster, ns: str, name: str) -> None:
    """The issue's reproduction: `kubectl scale` and `kubectl set image`."""
    cluster.kubectl("-n", ns, "scale", "statefulset", name, "--replicas=4")
    cluster.kubectl("-n", ns, "set", "image", f"statefulset/{name}", "registry=evil:1")


def test_hand_edits_made_while_stopped_are_corrected_on_start(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    """Fault 7 (git source): after a restart the parent says the commit is applied; the
    first drift pass checks the members instead of trusting their hash annotations."""
    commit = (repo.write("caches/a.yaml", cache_yaml("a", image="registry:3.0.0"))
              .write("caches/b.yaml", cache_yaml("b")).commit())
    proc = start_sync(repo.url)
    recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == commit, what="applied")
    assert proc.stop() == 0
    edit_by_hand(cluster, namespace, "a")
    generation = (sts(kube, namespace, "b") or {})["metadata"]["generation"]

    began = time.monotonic()
    proc = start_sync(repo.url)
    wait_for(lambda: replicas_and_image(kube, namespace, "a") == (1, "registry:3.0.0"),
             what="hand edits made while stopped reverted")
    took = time.monotonic() - began
    wait_for(lambda: drift_passes(proc, "corrected") == 1, what="a corrected drift pass")
    assert proc.metric("orascache_git_drift_corrected_objects_total") == 1
    assert (sts(kube, namespace, "b") or {})["metadata"]["generation"] == generation
    assert proc.metric('orascache_git_revisions_total{result="Applied"}') == 0
    syncproc.report_fault(
        "7. hand edits while the service is down (git source)", "first drift pass after "
        "the restart: one dry-run per member, the edited member re-applied", took,
        "1 apply", 0)


def test_restart_with_nothing_drifted_makes_zero_writes(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    """One dry-run per member, no write: the server's normalisation of quantities and
    its defaults inside our containers cancel out."""
    commit = (repo.write("caches/a.yaml", cache_yaml(
        "a", resources={"requests": {"cpu": "1000m", "memory": "1024Mi"}},
        storage={"size": "1048576Ki"})).write("caches/b.yaml", cache_yaml("b")).commit())
    start_sync(repo.url).stop()
    assert parent(kube, namespace)[LAST_COMMIT] == commit
    resources = (sts(kube, namespace, "a") or {})["spec"]["template"]["spec"]["containers"][0][
        "resources"]
    assert resources["requests"] == {"cpu": "1", "memory": "1Gi"}  # normalised

    before = write_requests(cluster, namespace)
    proc = start_sync(repo.url)
    wait_for(lambda: drift_passes(proc, "clean") == 1, what="a clean drift pass")
    after = write_requests(cluster, namespace)
    assert after == before, {k: after[k] - before.get(k, 0) for k in after}
    assert proc.metric('orascache_objects_total{action="unchanged"}') == 4


def test_drift_report_mode_leaves_members_and_reports_on_the_parent(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, cluster: LocalCluster
) -> None:
    commit = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url, "--drift", "report")
    recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == commit, what="applied")
    cluster.kubectl("-n", namespace, "scale", "statefulset", "a", "--replicas=3")
    drift_pass(proc, "drifted")
    assert replicas_and_image(kube, namespace, "a")[0] == 3
    assert proc.metric("orascache_drifted_objects") == 1
    assert proc.metric("orascache_git_drift_corrected_objects_total") == 0
    events = wait_for(lambda: [e for e in our_events(kube, namespace)
                               if e["reason"] == "Drifted"], what="a Drifted event")
    assert f"StatefulSet/{namespace}/a: spec.replicas" in events[0]["message"]
    assert events[0]["involvedObject"]["name"] == PARENT
    assert parent(kube, namespace)[LAST_RESULT] == "Applied"
    assert proc.stop() == 0

    # After a restart, the first sight reports the same drift, and writes nothing.
    edit_by_hand(cluster, namespace, "a")
    before = write_requests(cluster, namespace)
    proc = start_sync(repo.url, "--drift", "report")
    wait_for(lambda: drift_passes(proc, "drifted") == 1, what="a drifted pass")
    assert replicas_and_image(kube, namespace, "a") == (4, "evil:1")
    assert write_requests(cluster, namespace) == before
    assert f"StatefulSet/{namespace}/a: spec.replicas, spec.template.spec.containers[0]" \
        ".image" in proc.output()


def test_rollback_by_force_push_is_applied_and_pruned(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str
) -> None:
    """Fault 8: the branch force-pushed back to an older commit that was applied before."""
    base = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(repo.url)
    wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == base, what="base applied")
    ahead = (repo.write("caches/b.yaml", cache_yaml("b"))
             .write("caches/a.yaml", cache_yaml("a", port=6000)).commit("b, a on 6000"))
    settle(proc, kube, namespace, ahead)
    assert sts(kube, namespace, "b") is not None
    repo.reset_hard(base)  # the rollback: main is base again
    began = time.monotonic()
    ann = settle(proc, kube, namespace, base)
    took = time.monotonic() - began
    assert sts(kube, namespace, "b") is None and svc(kube, namespace, "b") is None
    assert (svc(kube, namespace, "a") or {})["spec"]["ports"][0]["port"] == 5000
    assert ann[LAST_COMMIT] == base
    assert proc.metric('orascache_objects_total{action="deleted"}') == 2
    syncproc.report_fault(
        "8a. git force-push back to an older, applied commit", "applied the old commit "
        "as a new revision: its member reverted, the newer cache pruned", took,
        "1 apply + 2 deletes + the parent", 0)


def test_remote_unreachable_for_three_intervals_prunes_nothing_and_recovers(
    start_sync: Start, repo: WorkRepo, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """Fault 8: fetches fail for three intervals (the commit that would prune b waits on
    the server); nothing is pruned or written meanwhile; the next fetch applies it."""
    server = GitHttpServer(repo.path.parent, "robot", SECRET).start()
    try:
        creds = tmp_path / "creds.yaml"
        creds.write_text(yaml.safe_dump({"username": "robot", "password": SECRET}))
        good = repo.write("caches/a.yaml", cache_yaml("a")).write(
            "caches/b.yaml", cache_yaml("b")).commit()
        proc = start_sync(server.url("caches.git"), "--credentials-file", str(creds),
                          "--interval", "1s")
        wait_for(lambda: parent(kube, namespace).get(LAST_COMMIT) == good, what="applied")
        server.stop()
        down = repo.remove("caches/b.yaml").commit("drop b")
        wait_for(lambda: proc.metric('orascache_git_fetches_total{result="failed"}') >= 3,
                 timeout=60, what="three failed fetches")
        ann = parent(kube, namespace)
        assert (ann[LAST_RESULT], ann[LAST_COMMIT]) == ("FetchFailed", good)
        assert sts(kube, namespace, "b") is not None and svc(kube, namespace, "b") is not None
        assert proc.metric('orascache_objects_total{action="deleted"}') == 0
        assert proc.metric("orascache_git_last_sync_ok") == 0
        server.start()
        began = time.monotonic()
        ann = recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == down,
                       what="recovered and applied")
        took = time.monotonic() - began
        assert ann[LAST_RESULT] == "Applied"
        assert sts(kube, namespace, "b") is None and sts(kube, namespace, "a") is not None
        assert proc.metric("orascache_git_last_sync_ok") == 1
        syncproc.report_fault(
            "8b. git remote unreachable for three 1 s intervals", "FetchFailed recorded "
            "once on the parent, nothing pruned or written; the next fetch applied the "
            "waiting commit", took, "0 to members while down (the parent: 1 record)", 0)
    finally:
        server.stop()


def test_members_by_pages_and_drift_by_chunks_find_every_member(
    repo: WorkRepo, kube: Kube, namespace: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At thousands of caches the members are listed by pages and the objects rendered,
    applied and kept in compressed chunks (issue 24): with pages of 2, renders of 2
    caches and chunks of 3 objects, every member is still applied, compared, restored and
    pruned exactly once (RevisionSync in this process)."""
    monkeypatch.setattr(applyset, "LIST_PAGE", 2)
    monkeypatch.setattr(revision_sync, "LIST_PAGE", 2)
    monkeypatch.setattr(tree, "RENDER_CHUNK", 2)
    monkeypatch.setattr(tree, "OBJECT_CHUNK", 3)
    for i in range(5):
        repo.write(f"caches/c{i}.yaml", cache_yaml(f"c{i}"))
    repo.commit()
    sync = RevisionSync(kube, GitSource(repo.url, "main", tmp_path / "clone"),
                        RevisionOptions(path="caches", namespace=namespace, http_addr=None))
    try:
        first = sync.sync_once()
        assert (first.outcome, first.changes.writes) == ("Applied", 10), first.message
        kept = sync.state.rendered
        assert kept is not None and len(kept.chunks) == 5  # 4 + 4 + 2 objects, by 3
        assert kept.gks == {"Service", "StatefulSet.apps"}
        assert sum(len(chunk) for chunk in kept.objects()) == 10

        clean = sync.sync_once()  # 10 members over 5 pages, 5 chunks: nothing to do
        assert (clean.outcome, clean.changes.writes) == ("UpToDate", 0), clean.message
        assert len(clean.changes.of("unchanged")) == 10

        # Drifted members in the first and the last chunk, restored and nothing else.
        kube.request("DELETE", f"/api/v1/namespaces/{namespace}/services/c0")
        kube.request("PATCH", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/c4",
                     body={"spec": {"replicas": 3}},
                     content_type="application/merge-patch+json")
        drift = sync.sync_once()
        assert drift.outcome == "DriftCorrected", drift.message
        assert sorted(str(c.ref) for c in drift.changes.of("created", "configured")) == [
            f"Service/{namespace}/c0", f"StatefulSet/{namespace}/c4"]
        assert (sts(kube, namespace, "c4") or {})["spec"]["replicas"] == 1

        # A removed cache: its two members found among the pages and pruned, only those.
        repo.remove("caches/c2.yaml").commit("remove c2")
        gone = sync.sync_once()
        assert gone.outcome == "Applied", gone.message
        assert sorted(str(c.ref) for c in gone.pruned.of("deleted")) == [
            f"Service/{namespace}/c2", f"StatefulSet/{namespace}/c2"]
        assert gone.changes.writes == 0
        left = kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets")
        assert sorted(o["metadata"]["name"] for o in left["items"]) == [
            "c0", "c1", "c3", "c4"]
    finally:
        sync.applier.close()
        sync.source.close()
