"""dist/chart/ checked by the real helm (v4, built from the Go module proxy): `helm lint`,
`helm template` with the default values equal to dist/install/ byte for byte apart from
Helm's labels, each value against the construct rendered with the same option, and the
non-default renders accepted by a real API server (server-side dry run)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from constructs_lib.helm_chart import CHART_LABEL, CHART_NAME, CHART_VERSION, values_tree
from constructs_lib.install import (
    CLUSTER_MEMORY,
    DEFAULT_IMAGE,
    NAME,
    REVISION_MEMORY,
    WEBHOOK_NAME,
    render_install,
)
from constructs_lib.install_git import render_git_install
from sync.render.synth import HEADER, REPO_ROOT
from tests.harness import LocalCluster
from tests.harness.helm_tool import Helm, ensure_helm, run

CHART = REPO_ROOT / "dist/chart"
INSTALL = REPO_ROOT / "dist/install"
INSTALL_GIT = REPO_ROOT / "dist/install-git"
MANAGED_BY = "app.kubernetes.io/managed-by"


@pytest.fixture(scope="module")
def helm() -> Helm:
    return ensure_helm()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def template(helm: Helm, home: Path, *args: str) -> str:
    proc = run(helm, "template", "oras-cache", str(CHART), *args, home=home)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def documents(text: str) -> list[str]:
    """The YAML documents of `text`, each without its comment lines (Helm's `# Source:`,
    our render header); comment-only documents (a template whose condition is false)
    dropped. Trailing newlines as one: Helm ends a document with one more than the file
    it came from."""
    out = []
    for doc in re.split(r"(?m)^---\n", text):
        body = "".join(line for line in doc.splitlines(keepends=True)
                       if not line.startswith("#"))
        if body.strip():
            out.append(body.rstrip("\n") + "\n")
    return out


def without_helm_labels(doc: str) -> str:
    """`helm.sh/chart` dropped and managed-by given back: the only lines Helm's labels
    change."""
    doc = re.sub(rf"(?m)^\s*{re.escape(CHART_LABEL)}: .*\n", "", doc)
    return re.sub(rf"(?m)^(\s*{re.escape(MANAGED_BY)}): Helm$", r"\1: orascache", doc)


def objects(text: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(without_helm_labels(d)) for d in documents(text)]


def key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def by_key(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keyed = {key(o): o for o in objs}
    assert len(keyed) == len(objs), "two objects with one name"
    return keyed


def test_lint(helm: Helm, home: Path) -> None:
    for values in ([], ["--set", "git.enabled=true"], ["--set", "watchNamespaces={a,b}"],
                   ["--set", "webhook.enabled=false,leaderElection.enabled=false,replicas=1"],
                   ["--set", "image.digest=sha256:" + "0" * 64]):
        proc = run(helm, "lint", "--strict", str(CHART), *values, home=home)
        assert proc.returncode == 0, (values, proc.stdout, proc.stderr)
        assert "0 chart(s) failed" in proc.stdout, proc.stdout


def test_lint_fails_on_a_broken_template(helm: Helm, home: Path, tmp_path: Path) -> None:
    """The lint above can fail: a chart whose template does not parse is refused."""
    broken = tmp_path / CHART_NAME
    for path in CHART.rglob("*"):
        if path.is_file():
            target = broken / path.relative_to(CHART)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    deployment = broken / "templates/deployment.yaml"
    deployment.write_text(deployment.read_text().replace("{{ $.Values.replicas }}",
                                                         "{{ $.Values.replicas"))
    proc = run(helm, "lint", "--strict", str(broken), home=home)
    assert proc.returncode != 0 and "1 chart(s) failed" in proc.stderr, proc.stdout


def test_default_values_print_dist_install_byte_for_byte(helm: Helm, home: Path) -> None:
    """Every document of `helm template --include-crds` equals one of dist/install/'s,
    text for text, once Helm's two label lines are taken back; nothing more, nothing less
    (Helm orders the documents by kind, so they are compared as sorted lists)."""
    rendered = template(helm, home, "--include-crds")
    expected = documents((INSTALL / "crd.yaml").read_text()
                         + (INSTALL / "sync-service.yaml").read_text())
    got = [without_helm_labels(d) for d in documents(rendered)]
    assert sorted(got) == sorted(expected)
    # Helm's labels are on every object but the CRD (crds/ is never templated).
    labelled = [d for d in documents(rendered) if f"{CHART_LABEL}: " in d]
    assert len(labelled) == len(expected) - 1
    assert f"{CHART_LABEL}: {CHART_NAME}-{CHART_VERSION}" in rendered
    assert (CHART / "crds/orascache.yaml").read_text() == (INSTALL / "crd.yaml").read_text()


def test_values_yaml_is_the_documented_tree() -> None:
    text = (CHART / "values.yaml").read_text()
    assert text.startswith(HEADER)
    assert yaml.safe_load(text) == values_tree()


def test_git_values_print_dist_install_git(helm: Helm, home: Path) -> None:
    """`git.enabled=true` adds exactly dist/install-git/'s objects (its Namespace is the
    chart's own)."""
    base = {key(o) for o in objects(template(helm, home))}
    with_git = by_key(objects(template(helm, home, "--set", "git.enabled=true")))
    added = sorted(set(with_git) - base)
    git = [yaml.safe_load(d) for d in documents((INSTALL_GIT / "git-sync-service.yaml")
                                                .read_text())]
    expected = by_key([o for o in git if o["kind"] != "Namespace"])
    assert added == sorted(expected)
    for name, obj in expected.items():
        assert with_git[name] == obj, name


@pytest.mark.parametrize("options,values", [
    ({"watch_namespaces": ["team-b", "team-a"]}, ["--set", "watchNamespaces={team-b,team-a}"]),
    ({"namespace": "ops"}, ["--set", "namespace.name=ops"]),
    ({"replicas": 3}, ["--set", "replicas=3"]),
    ({"image": "registry.example.com/mirror/oras-cache-sync:0.2.0"},
     ["--set", "image.repository=registry.example.com/mirror/oras-cache-sync",
      "--set", "image.tag=0.2.0"]),
], ids=["watchNamespaces", "namespace", "replicas", "image"])
def test_a_value_renders_as_the_construct_option(helm: Helm, home: Path,
                                                 options: dict[str, Any],
                                                 values: list[str]) -> None:
    """The chart with a value equals `SyncService` with the matching option, object for
    object (a value and an option are two ways to say one thing)."""
    got = by_key(objects(template(helm, home, *values)))
    expected = by_key(render_install(include_crd=False, **options))
    assert sorted(got) == sorted(expected)
    for name, obj in expected.items():
        assert got[name] == obj, name


def test_git_values_render_as_the_construct_options(helm: Helm, home: Path) -> None:
    got = by_key(objects(template(
        helm, home, "--set", "git.enabled=true", "--set", "git.repository=ssh://git@h/x.git",
        "--set", "git.ref=v1", "--set", "git.path=caches", "--set", "git.credentialsSecret=",
        "--set", "git.targetNamespace=team")))
    expected = by_key([o for o in render_git_install(
        repo="ssh://git@h/x.git", ref="v1", path="caches", credentials_secret=None,
        target_namespace="team") if o["kind"] != "Namespace"])
    for name, obj in expected.items():
        assert got[name] == obj, name


def deployment(objs: list[dict[str, Any]], name: str = NAME) -> dict[str, Any]:
    (found,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    return found


def container(objs: list[dict[str, Any]], name: str = NAME) -> dict[str, Any]:
    found: dict[str, Any] = deployment(objs, name)["spec"]["template"]["spec"]["containers"][0]
    return found


def test_webhook_off_leaves_no_webhook(helm: Helm, home: Path) -> None:
    objs = objects(template(helm, home, "--set", "webhook.enabled=false"))
    assert not [o for o in objs if o["kind"] == "MutatingWebhookConfiguration"
                or o["metadata"]["name"] == WEBHOOK_NAME]
    sync = container(objs)
    assert not [a for a in sync["args"] if a.startswith("--webhook")]
    assert [p["name"] for p in sync["ports"]] == ["http"]


def test_failure_policy(helm: Helm, home: Path) -> None:
    objs = objects(template(helm, home, "--set", "webhook.failurePolicy=Ignore"))
    (config,) = [o for o in objs if o["kind"] == "MutatingWebhookConfiguration"]
    assert [h["failurePolicy"] for h in config["webhooks"]] == ["Ignore", "Ignore"]


def test_leader_election_off(helm: Helm, home: Path) -> None:
    objs = objects(template(helm, home, "--set", "leaderElection.enabled=false,replicas=1"))
    assert "--leader-elect" not in container(objs)["args"]
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
    proc = run(helm, "template", "x", str(CHART), "--set", "leaderElection.enabled=false",
               home=home)
    assert proc.returncode != 0 and "needs leaderElection.enabled" in proc.stderr


def test_digest_resources_and_metrics(helm: Helm, home: Path) -> None:
    digest = "sha256:" + "ab" * 32
    objs = objects(template(
        helm, home, "--set", f"image.digest={digest}", "--set", "metrics.enabled=false",
        "--set", "resources.limits.memory=768Mi", "--set", "git.enabled=true"))
    repository = DEFAULT_IMAGE.rsplit(":", 1)[0]
    for name, (request, _) in ((NAME, CLUSTER_MEMORY), ("oras-cache-git-sync", REVISION_MEMORY)):
        assert container(objs, name)["image"] == f"{repository}@{digest}"
        assert container(objs, name)["resources"] == {
            "limits": {"memory": "768Mi"}, "requests": {"cpu": "50m", "memory": request}}
    assert not [o for o in objs if o["metadata"]["name"].endswith("-metrics")]


def test_strings_that_yaml_would_misread_stay_strings(helm: Helm, home: Path) -> None:
    objs = objects(template(helm, home, "--set", "git.enabled=true",
                            "--set-string", "git.ref=true", "--set", "git.path=a: b #c",
                            "--set-string", "watchNamespaces={123}"))
    env = {e["name"]: e.get("value") for e in container(objs, "oras-cache-git-sync")["env"]}
    assert env["ORASCACHE_GIT_REF"] == "true" and env["ORASCACHE_GIT_PATH"] == "a: b #c"
    assert "123" in container(objs)["args"]


@pytest.fixture
def scratch(cluster: LocalCluster) -> Iterator[None]:
    yield
    for ns in ("team-a", "team-b", "team-ops"):
        cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false",
                        check=False)


def test_non_default_values_pass_a_real_api_server(helm: Helm, home: Path,
                                                   cluster: LocalCluster,
                                                   scratch: None) -> None:
    """A server-side dry run of the chart with every switch turned: the API server (its
    schemas, validation and admission) accepts every object."""
    for ns in ("team-a", "team-b", "team-ops"):
        cluster.kubectl("create", "namespace", ns)
    rendered = template(helm, home, "--set", "watchNamespaces={team-a,team-b}",
                        "--set", "namespace.name=team-ops,namespace.create=false",
                        "--set", "git.enabled=true", "--set", "webhook.failurePolicy=Ignore",
                        "--set", "image.digest=sha256:" + "0" * 64)
    proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert proc.returncode == 0, proc.stderr
    assert "role.rbac.authorization.k8s.io/oras-cache-sync created (server dry run)" \
        in proc.stdout


@pytest.mark.parametrize("values,message", [
    (["--set", "replica=3"], "additional properties 'replica' not allowed"),
    (["--set", "webhook.failurePolicy=Bogus"], "failurePolicy"),
    (["--set", "replicas=0"], "replicas"),
    (["--set", "image.digest=latest"], "digest"),
    (["--set", "watchNamespaces={Team_A}"], "watchNamespaces"),
], ids=["misspelt", "failurePolicy", "replicas", "digest", "watchNamespaces"])
def test_the_schema_refuses_what_would_not_work(helm: Helm, home: Path, values: list[str],
                                                message: str) -> None:
    """values.schema.json: a misspelt key or a value the service cannot run with fails
    the render, instead of being ignored or failing in the cluster."""
    proc = run(helm, "template", "x", str(CHART), *values, home=home)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
