"""`SyncService`: the install manifests (RBAC, Deployment, ...) and dist/install/."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from constructs_lib import schema
from constructs_lib.install import render_install
from constructs_lib.install_git import render_git_install
from sync.render.synth import HEADER, REPO_ROOT, install_files, install_git_files

Obj = dict[str, Any]
NS = "oras-cache-system"
SA = {"kind": "ServiceAccount", "name": "oras-cache-sync", "namespace": NS}
LABELS = {
    "app.kubernetes.io/name": "oras-cache",
    "app.kubernetes.io/component": "sync",
    "app.kubernetes.io/part-of": "oras-cache",
    "app.kubernetes.io/managed-by": "orascache",
}
GROUP = "cache.converged-computing.github.io"
CHILD_VERBS = ["get", "list", "watch", "create", "patch", "delete"]
# Written out by hand (not imported from install.py): this is the reviewed contract.
WATCH_RULES = [
    {"apiGroups": [GROUP], "resources": ["orascaches"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GROUP], "resources": ["orascaches/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims", "services"], "verbs": CHILD_VERBS},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": CHILD_VERBS},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
WEBHOOK_RULES = [
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": ["oras-cache-sync"],
        "verbs": ["get", "update"],
    }
]
LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["oras-cache-sync"],
        "verbs": ["get", "update"],
    },
]


def by_kind(manifests: list[Obj], kind: str) -> list[Obj]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Obj], kind: str) -> Obj:
    (found,) = by_kind(manifests, kind)
    return found


@pytest.fixture(scope="module")
def default() -> list[Obj]:
    return render_install()


@pytest.fixture(scope="module")
def scoped() -> list[Obj]:
    return render_install(watch_namespaces=["team-a", "team-b", "team-a"])


def container(manifests: list[Obj]) -> Obj:
    (only,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def test_objects_and_order(default: list[Obj]) -> None:
    assert [
        (m["kind"], m["metadata"]["name"], m["metadata"].get("namespace")) for m in default
    ] == [
        ("CustomResourceDefinition", f"orascaches.{GROUP}", None),
        ("Namespace", NS, None),
        ("ServiceAccount", "oras-cache-sync", NS),
        ("ClusterRole", "oras-cache-sync", None),
        ("ClusterRoleBinding", "oras-cache-sync", None),
        ("Role", "oras-cache-sync-leader-election", NS),
        ("RoleBinding", "oras-cache-sync-leader-election", NS),
        ("ClusterRole", "oras-cache-sync-webhook", None),
        ("ClusterRoleBinding", "oras-cache-sync-webhook", None),
        ("Service", "oras-cache-sync-webhook", NS),
        ("MutatingWebhookConfiguration", "oras-cache-sync", None),
        ("Service", "oras-cache-sync-metrics", NS),
        ("Deployment", "oras-cache-sync", NS),
    ]
    for m in default[2:]:
        assert m["metadata"]["labels"] == LABELS, m["kind"]
    assert render_install() == default  # deterministic


def test_crd_is_the_schema_crd(default: list[Obj]) -> None:
    assert default[0] == schema.crd()
    assert render_install(include_crd=False) == default[1:]


def named(manifests: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [m for m in by_kind(manifests, kind) if m["metadata"]["name"] == name]
    return found


def test_cluster_wide_rbac(default: list[Obj]) -> None:
    assert named(default, "ClusterRole", "oras-cache-sync")["rules"] == WATCH_RULES
    assert named(default, "ClusterRole", "oras-cache-sync-webhook")["rules"] == WEBHOOK_RULES
    binding = named(default, "ClusterRoleBinding", "oras-cache-sync")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "oras-cache-sync",
    }
    assert binding["subjects"] == [SA]
    (role,) = by_kind(default, "Role")
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == LEASE_RULES
    (role_binding,) = by_kind(default, "RoleBinding")
    assert role_binding["roleRef"]["kind"] == "Role"
    assert role_binding["roleRef"]["name"] == "oras-cache-sync-leader-election"
    assert role_binding["subjects"] == [SA]


def test_namespaced_rbac_is_one_role_per_watched_namespace(scoped: list[Obj]) -> None:
    (webhook_role,) = by_kind(scoped, "ClusterRole")  # its object is cluster-scoped
    assert webhook_role["rules"] == WEBHOOK_RULES
    assert [b["roleRef"]["name"] for b in by_kind(scoped, "ClusterRoleBinding")] == [
        "oras-cache-sync-webhook"]
    roles = {
        (r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(scoped, "Role")
    }
    assert sorted(roles) == [
        (NS, "oras-cache-sync-leader-election"),
        ("team-a", "oras-cache-sync"),
        ("team-b", "oras-cache-sync"),
    ]
    assert roles["team-a", "oras-cache-sync"]["rules"] == WATCH_RULES
    assert roles["team-b", "oras-cache-sync"]["rules"] == WATCH_RULES
    assert roles[NS, "oras-cache-sync-leader-election"]["rules"] == LEASE_RULES
    bindings = by_kind(scoped, "RoleBinding")
    assert sorted((b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings) == sorted(
        roles
    )
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [SA]


def test_watching_the_service_namespace_keeps_role_names_apart() -> None:
    manifests = render_install(watch_namespaces=[NS])
    names = sorted(r["metadata"]["name"] for r in by_kind(manifests, "Role"))
    assert names == ["oras-cache-sync", "oras-cache-sync-leader-election"]


@pytest.mark.parametrize("variant", ["default", "scoped"])
def test_no_wildcards_no_secrets_no_escalation(
    variant: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[Obj] = request.getfixturevalue(variant)
    roles = by_kind(manifests, "ClusterRole") + by_kind(manifests, "Role")
    rules = [rule for role in roles for rule in role["rules"]]
    assert rules
    for rule in rules:
        values = [v for field in rule.values() for v in field]
        assert not any("*" in v for v in values), rule
        assert "secrets" not in rule["resources"], rule
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
        assert rule.get("nonResourceURLs") is None
    # Leases only in the service's own namespace, never cluster-wide.
    for m in by_kind(manifests, "ClusterRole"):
        assert all("leases" not in r["resources"] for r in m["rules"])
    for m in by_kind(manifests, "Role"):
        if any("leases" in r["resources"] for r in m["rules"]):
            assert m["metadata"]["namespace"] == NS


def test_deployment(default: list[Obj]) -> None:
    deployment = one(default, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "oras-cache",
            "app.kubernetes.io/component": "sync",
        }
    }
    assert spec["template"]["metadata"]["labels"] == LABELS
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "oras-cache-sync"
    assert pod["automountServiceAccountToken"] is True
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
    c = container(default)
    assert c["name"] == "sync"
    assert c["image"] == "ghcr.io/converged-computing/oras-cache-sync:0.1.0"
    assert "command" not in c  # the image's entrypoint is `orascache`
    assert c["args"] == [
        "sync", "--source", "cluster", "--all-namespaces", "--leader-elect",
        "--lease-namespace", "$(POD_NAMESPACE)", "--http-addr", ":8080", "--webhook-addr",
        ":8443", "--webhook-host", "oras-cache-sync-webhook.$(POD_NAMESPACE).svc",
        "--webhook-config",
        "oras-cache-sync",
    ]  # fmt: skip
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "webhook", "containerPort": 8443, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # From the measurements at 10,000 caches (docs/performance.md, "Memory limits of the
    # install"): change them together with that section.
    assert c["resources"] == {
        "requests": {"cpu": "50m", "memory": "192Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "securityContext" not in pod  # everything is on the only container
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert c["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        # an emptyDir is mode 0777: jsii's package cache refuses to live below it
        {"name": "JSII_RUNTIME_PACKAGE_CACHE", "value": "disabled"},
    ]


def test_metrics_service_selects_only_the_sync_pods(default: list[Obj]) -> None:
    service = named(default, "Service", "oras-cache-sync-metrics")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert (
        service["spec"]["selector"] == one(default, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    # Registry Services select on name + instance: the sync Pods carry no instance label,
    # and their component differs from the registry Pods'.
    assert (
        "app.kubernetes.io/instance"
        not in one(default, "Deployment")["spec"]["template"]["metadata"]["labels"]
    )


def test_namespace_enforces_restricted_pod_security(default: list[Obj]) -> None:
    labels = one(default, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_options_propagate() -> None:
    manifests = render_install(
        namespace="ops", image="example.com/sync:1", watch_namespaces=["a"], replicas=3,
        metrics_port=9090,
    )  # fmt: skip
    c = container(manifests)
    assert c["image"] == "example.com/sync:1"
    assert c["args"] == [
        "sync", "--source", "cluster", "--namespace", "a", "--leader-elect",
        "--lease-namespace", "$(POD_NAMESPACE)", "--http-addr", ":9090", "--webhook-addr",
        ":8443", "--webhook-host", "oras-cache-sync-webhook.$(POD_NAMESPACE).svc",
        "--webhook-config",
        "oras-cache-sync",
    ]  # fmt: skip
    assert c["ports"][0]["containerPort"] == 9090
    assert named(manifests, "Service", "oras-cache-sync-metrics")["spec"]["ports"][0][
        "port"] == 9090
    assert one(manifests, "Deployment")["spec"]["replicas"] == 3
    assert one(manifests, "Namespace")["metadata"]["name"] == "ops"
    placed = sorted(
        (m["kind"], m["metadata"]["name"], m["metadata"]["namespace"]) for m in manifests[2:]
        if "namespace" in m["metadata"]
    )
    assert placed == [
        ("Deployment", "oras-cache-sync", "ops"),
        ("Role", "oras-cache-sync", "a"),
        ("Role", "oras-cache-sync-leader-election", "ops"),
        ("RoleBinding", "oras-cache-sync", "a"),
        ("RoleBinding", "oras-cache-sync-leader-election", "ops"),
        ("Service", "oras-cache-sync-metrics", "ops"),
        ("Service", "oras-cache-sync-webhook", "ops"),
        ("ServiceAccount", "oras-cache-sync", "ops"),
    ]
    for binding in by_kind(manifests, "RoleBinding"):
        assert binding["subjects"] == [{**SA, "namespace": "ops"}]


def test_scoped_args(scoped: list[Obj]) -> None:
    args = container(scoped)["args"]
    assert "--all-namespaces" not in args
    assert args[3:7] == ["--namespace", "team-a", "--namespace", "team-b"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"watch_namespaces": []}, ValueError),
        ({"watch_namespaces": "team-a"}, TypeError),
        ({"replicas": 0}, ValueError),
        ({"metrics_port": 0}, ValueError),
    ],
)
def test_invalid_options(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        render_install(**options)


@pytest.mark.parametrize("variant", ["default", "scoped"])
def test_every_object_is_valid_kubernetes_1_37(
    variant: str, request: pytest.FixtureRequest
) -> None:
    for obj in request.getfixturevalue(variant):
        kubernetes_validate.validate(obj, "1.37.0", strict=True)


def test_install_files() -> None:
    files = install_files()
    # `Kustomization`, not kustomization.yaml: `kubectl apply -f dist/install/` skips it.
    assert sorted(files) == ["Kustomization", "crd.yaml", "sync-service.yaml"]
    assert files["Kustomization"].startswith(HEADER)
    assert yaml.safe_load(files["Kustomization"]) == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["crd.yaml", "sync-service.yaml"]}
    assert files["crd.yaml"] == (REPO_ROOT / "crds/orascache.yaml").read_text()
    assert files["sync-service.yaml"].startswith(HEADER)
    docs = list(yaml.safe_load_all(files["sync-service.yaml"]))
    assert docs == render_install(include_crd=False)
    assert docs[0]["kind"] == "Namespace"


def test_webhook_configuration(default: list[Obj], scoped: list[Obj]) -> None:
    config = one(default, "MutatingWebhookConfiguration")
    pods, jobs = config["webhooks"]
    assert (pods["rules"][0]["resources"], jobs["rules"][0]["resources"]) == (["pods"], ["jobs"])
    for hook in (pods, jobs):
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["rules"][0]["operations"] == ["CREATE"]
        assert hook["clientConfig"] == {"service": {
            "name": "oras-cache-sync-webhook", "namespace": NS, "path": "/mutate", "port": 443}}
        assert "caBundle" not in hook["clientConfig"]  # kept by the service at run time
        (condition,) = hook["matchConditions"]
        assert "oras.converged-computing.github.io/" in condition["expression"]
        assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [
            "kube-system", NS]
    scoped_hook = one(scoped, "MutatingWebhookConfiguration")["webhooks"][0]
    assert scoped_hook["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]}
    service = named(default, "Service", "oras-cache-sync-webhook")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}]


# ----- GitSyncService: the git source's install (dist/install-git/) ------------------------
GIT_SA = {"kind": "ServiceAccount", "name": "oras-cache-git-sync", "namespace": NS}
GIT_LABELS = {**LABELS, "app.kubernetes.io/component": "git-sync"}
GIT_MEMBER_VERBS = ["get", "list", "create", "patch", "delete"]
# Written out by hand: what sync/revision_sync.py, sync/apply/applyset.py and
# sync/apply/applier.py call.
GIT_MEMBER_RULES = [
    {"apiGroups": [""], "resources": ["persistentvolumeclaims", "services"],
     "verbs": GIT_MEMBER_VERBS},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": GIT_MEMBER_VERBS},
]
GIT_APPLYSET_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["orascache-git"],
     "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


@pytest.fixture(scope="module")
def git_default() -> list[Obj]:
    return render_git_install()


def test_git_objects_order_and_rbac(git_default: list[Obj]) -> None:
    assert [
        (m["kind"], m["metadata"]["name"], m["metadata"].get("namespace")) for m in git_default
    ] == [
        ("Namespace", NS, None),
        ("ServiceAccount", "oras-cache-git-sync", NS),
        ("ClusterRole", "oras-cache-git-sync", None),
        ("ClusterRoleBinding", "oras-cache-git-sync", None),
        ("Role", "oras-cache-git-sync-applyset", "default"),
        ("RoleBinding", "oras-cache-git-sync-applyset", "default"),
        ("Service", "oras-cache-git-sync-metrics", NS),
        ("Deployment", "oras-cache-git-sync", NS),
    ]
    for m in git_default[1:]:
        assert m["metadata"]["labels"] == GIT_LABELS, m["kind"]
    assert one(git_default, "ClusterRole")["rules"] == GIT_MEMBER_RULES
    assert one(git_default, "Role")["rules"] == GIT_APPLYSET_RULES
    for binding in by_kind(git_default, "ClusterRoleBinding") + by_kind(git_default,
                                                                        "RoleBinding"):
        assert binding["subjects"] == [GIT_SA]
    # The cluster source's Namespace is the same object: both installs can share it.
    assert one(git_default, "Namespace") == one(render_install(), "Namespace")
    rules = [r for m in by_kind(git_default, "ClusterRole") + by_kind(git_default, "Role")
             for r in m["rules"]]
    for rule in rules:
        assert not any("*" in v for f in rule.values() for v in f), rule
        assert "secrets" not in rule["resources"]
        assert not {"watch", "update", "deletecollection", "escalate", "bind"} & set(
            rule["verbs"])


def test_git_deployment(git_default: list[Obj]) -> None:
    deployment = one(git_default, "Deployment")
    assert deployment["spec"]["replicas"] == 1  # no leader election for the git source
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "oras-cache-git-sync"
    assert pod["securityContext"] == {"fsGroup": 65532}  # the Secret's files readable
    c = container(git_default)
    assert c["args"] == [
        "sync", "--source", "git", "--repo", "$(ORASCACHE_GIT_REPO)", "--ref",
        "$(ORASCACHE_GIT_REF)", "--path", "$(ORASCACHE_GIT_PATH)", "--namespace", "default",
        "--applyset-name", "orascache-git", "--interval", "1m", "--http-addr", ":8080",
        "--git-dir", "/var/lib/orascache/git/clone", "--render-workers", "1",
        "--credentials-file", "/etc/orascache/git-credentials",
    ]  # fmt: skip
    from sync.cli.parser import build_parser  # noqa: PLC0415 - the CLI takes exactly these

    args = build_parser().parse_args(c["args"])
    assert (args.source, args.render_workers, args.git_dir) == (
        "git", 1, "/var/lib/orascache/git/clone")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["ORASCACHE_GIT_REPO"] == "https://git.example.com/your-org/your-caches.git"
    assert (env["ORASCACHE_GIT_REF"], env["ORASCACHE_GIT_PATH"]) == ("main", ".")
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    # The peak at 10,000 caches plus one render helper, with headroom (docs/performance.md,
    # "Memory limits of the install").
    assert c["resources"] == {
        "requests": {"cpu": "50m", "memory": "192Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "git", "mountPath": "/var/lib/orascache/git"},
        {"name": "git-credentials", "mountPath": "/etc/orascache/git-credentials",
         "readOnly": True},
    ]
    assert pod["volumes"][1:] == [
        {"name": "git", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "git-credentials", "secret": {"secretName": "oras-cache-git-credentials",
                                               "defaultMode": 0o400, "optional": False}},
    ]
    service = one(git_default, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "oras-cache", "app.kubernetes.io/component": "git-sync"}


def test_git_args_are_what_the_cli_and_the_source_expect(git_default: list[Obj]) -> None:
    from constructs_lib.mounts import GIT_CREDENTIALS_MOUNT  # noqa: PLC0415
    from sync.cli.parser import build_parser  # noqa: PLC0415

    c = container(git_default)
    env = {e["name"]: e.get("value", "") for e in c["env"]}
    args = [env.get(a[2:-1], a) if a.startswith("$(") else a for a in c["args"]]
    parsed = build_parser().parse_args(args)
    assert (parsed.source, parsed.repo, parsed.ref, parsed.path) == (
        "git", env["ORASCACHE_GIT_REPO"], "main", ".")
    assert parsed.credentials_file == GIT_CREDENTIALS_MOUNT
    assert parsed.namespace == ["default"] and parsed.interval == 60.0
    assert parsed.drift_correction is True
    assert not any("password" in str(v) or "token" in str(v) for v in env.values())


def test_git_options() -> None:
    manifests = render_git_install(
        repo="ssh://git@example.com/caches.git", ref="v2", path="caches", namespace="ops",
        target_namespace="team-a", target_namespaces=["team-b"], applyset_name="caches",
        credentials_secret=None, interval="5m", drift_correction=False, metrics_port=9090,
    )  # fmt: skip
    assert not by_kind(manifests, "ClusterRole")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r["rules"]
             for r in by_kind(manifests, "Role")}
    assert roles == {
        ("team-a", "oras-cache-git-sync"): GIT_MEMBER_RULES,
        ("team-b", "oras-cache-git-sync"): GIT_MEMBER_RULES,
        ("team-a", "oras-cache-git-sync-applyset"): [
            {**GIT_APPLYSET_RULES[0], "resourceNames": ["caches"]}, GIT_APPLYSET_RULES[1]],
    }
    for binding in by_kind(manifests, "RoleBinding"):
        assert binding["subjects"] == [{**GIT_SA, "namespace": "ops"}]
    c = container(manifests)
    assert "--credentials-file" not in c["args"]
    assert c["args"][-1] == "--no-drift-correction"
    assert c["args"][c["args"].index("--interval") + 1] == "5m"
    assert c["args"][c["args"].index("--namespace") + 1] == "team-a"
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert "securityContext" not in pod
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "git"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["ORASCACHE_GIT_REPO"] == "ssh://git@example.com/caches.git"
    with pytest.raises(ValueError, match="credentials"):
        render_git_install(repo="https://robot:s3cret@example.com/caches.git")
    with pytest.raises(TypeError):
        render_git_install(target_namespaces="team-a")


def test_git_trigger_is_off_by_default_and_its_token_comes_from_a_mounted_secret(
    git_default: list[Obj],
) -> None:
    from constructs_lib.mounts import TRIGGER_MOUNT  # noqa: PLC0415
    from sync.cli.parser import build_parser  # noqa: PLC0415
    from sync.serve.trigger import token_path  # noqa: PLC0415

    assert not any("trigger" in a for a in container(git_default)["args"])
    manifests = render_git_install(credentials_secret=None, trigger_secret="hook-token")
    c = container(manifests)
    env = {e["name"]: e.get("value", "") for e in c["env"]}
    parsed = build_parser().parse_args(
        [env.get(a[2:-1], a) if a.startswith("$(") else a for a in c["args"]])
    assert parsed.trigger_secret == "hook-token" and parsed.trigger_token_file is None
    assert str(token_path(None, parsed.trigger_secret)) == f"{TRIGGER_MOUNT}/token"
    assert {"name": "trigger-token", "mountPath": TRIGGER_MOUNT, "readOnly": True} in c[
        "volumeMounts"]
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["volumes"][-1] == {"name": "trigger-token", "secret": {
        "secretName": "hook-token", "defaultMode": 0o400, "optional": False,
        "items": [{"key": "token", "path": "token"}]}}
    assert pod["securityContext"] == {"fsGroup": 65532}


def test_git_every_object_is_valid_kubernetes_1_37(git_default: list[Obj]) -> None:
    for obj in git_default:
        kubernetes_validate.validate(obj, "1.37.0", strict=True)


def test_install_git_files() -> None:
    files = install_git_files()
    assert sorted(files) == ["git-sync-service.yaml", "kustomization.yaml"]
    docs = [d for d in yaml.safe_load_all(files["git-sync-service.yaml"]) if d]
    assert docs == render_git_install()
    assert yaml.safe_load(files["kustomization.yaml"])["resources"] == ["git-sync-service.yaml"]
    assert (REPO_ROOT / "dist/install-git/git-sync-service.yaml").read_text() == files[
        "git-sync-service.yaml"]


def test_the_sharding_example_is_the_install_deployment_with_a_shard_key() -> None:
    """examples/sharding/shard-b.yaml is a copy of dist/install/'s Deployment (docs/
    sync-service.md, "Sharding"): it must follow every change but its name, labels,
    shard key and the webhook it does not serve."""
    install = next(d for d in yaml.safe_load_all(
        (REPO_ROOT / "dist/install/sync-service.yaml").read_text())
        if d and d["kind"] == "Deployment")
    shard = yaml.safe_load((REPO_ROOT / "examples/sharding/shard-b.yaml").read_text())
    container, shard_container = (d["spec"]["template"]["spec"]["containers"][0]
                                  for d in (install, shard))
    args = container["args"]
    assert shard_container.pop("args") == [*args[:args.index("--webhook-addr")],
                                           "--shard-key=b"]
    assert shard_container.pop("ports") == [p for p in container.pop("ports")
                                            if p["name"] != "webhook"]
    del container["args"]
    assert shard["metadata"]["name"] == "oras-cache-sync-shard-b"
    for d in (install, shard):
        for labels in (d["metadata"]["labels"], d["spec"]["selector"]["matchLabels"],
                       d["spec"]["template"]["metadata"]["labels"]):
            assert labels.pop("app.kubernetes.io/component") == (
                "sync" if d is install else "sync-shard-b")
        del d["metadata"]["name"]
    assert shard == install
