"""The Helm chart (`dist/chart/`), rendered from the same constructs as `dist/install/`.

`cdk8s synth --format helm` writes a chart whose templates are the synthesized manifests
as they are: no value would change anything. So the chart is made here instead, by
`make synth` (`sync.render.synth.chart_files`): `SyncService` and `GitSyncService` are
rendered with their defaults, and Helm template expressions replace the values, list items
and objects that the chart's values control, each at a path named below. Everything
else in a template is the construct's own output, so `helm template` with the default
values prints `dist/install/`'s objects byte for byte, apart from Helm's labels (a test
with the real helm checks that).

How an expression gets into the YAML: the manifest (a dict) gets a marker string at the
place (a scalar, a list item, a mapping key), is dumped by the same emitter as dist/
(`to_yaml`), and each marker's line or token is then replaced by its expression. A
marker can only land where it was put, and one left over is an error.

Not in the chart: the Namespace's restricted Pod Security labels are fixed (the service
meets them); the CRD is in `crds/`, which Helm installs before everything else and never
upgrades or deletes (docs/sync-service.md, "Helm").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from constructs_lib import schema
from constructs_lib.render import to_yaml

CHART_NAME = "oras-cache"
CHART_VERSION = "0.1.0"
CHART_DESCRIPTION = (
    "An in-cluster OCI registry for Kubernetes workflows: the OrasCache CRD, the sync "
    "service (cluster source, admission webhook) and optionally its git source")
KUBE_VERSION = ">=1.30.0-0"  # matchConditions of the admission webhook: GA in 1.30
V = "$.Values"
STR = 'include "oras-cache.str"'  # a string as PyYAML writes it: plain when it can be
NAMESPACE = f"{{{{ {STR} {V}.namespace.name }}}}"
IMAGE = f'{{{{ {STR} (include "oras-cache.image" $) }}}}'
MANAGED_BY = "app.kubernetes.io/managed-by"
CHART_LABEL = "helm.sh/chart"


@dataclass(frozen=True)
class Value:
    """One chart value: its dotted path, default and meaning (values.yaml and the docs'
    table are both written from `VALUES`)."""

    path: str
    default: Any
    meaning: str


def values() -> list[Value]:
    from constructs_lib.install import (  # noqa: PLC0415 - cdk8s-plus, as sync.render.synth
        DEFAULT_IMAGE,
        DEFAULT_NAMESPACE,
    )
    from constructs_lib.install_git import (  # noqa: PLC0415
        DEFAULT_GIT_CREDENTIALS_SECRET,
        DEFAULT_GIT_REPO,
    )

    repository, tag = DEFAULT_IMAGE.rsplit(":", 1)
    resources = _deployment(_cluster_manifests())["spec"]["template"]["spec"][
        "containers"][0]["resources"]
    return [
        Value("namespace.name", DEFAULT_NAMESPACE,
              "the service's namespace (every namespaced object of the chart goes there)"),
        Value("namespace.create", True,
              "the chart makes the Namespace, labelled for the restricted Pod Security "
              "level; false: it exists already (its labels are yours)"),
        Value("image.repository", repository, "the sync service's image"),
        Value("image.tag", tag, "its tag (empty: the chart's appVersion)"),
        Value("image.digest", "", "sha256:...: pull by digest instead of the tag"),
        Value("replicas", 2, "replicas of the cluster source (more than one needs leader "
              "election)"),
        Value("leaderElection.enabled", True, "one replica reconciles at a time, holding "
              "the Lease oras-cache-sync; the others serve the webhook and wait"),
        Value("watchNamespaces", [], "the namespaces whose OrasCaches are reconciled (a "
              "Role in each, the webhook limited to them); []: every namespace, through a "
              "ClusterRole"),
        Value("webhook.enabled", True, "the admission webhook that wires annotated Pods and "
              "Jobs (its Service, RBAC and MutatingWebhookConfiguration)"),
        Value("webhook.failurePolicy", "Fail", "Fail: an annotated Pod is refused while no "
              "replica answers (it would run unwired); Ignore: it runs unwired"),
        Value("resources", resources, "the container's resources (both sources)"),
        Value("metrics.enabled", True, "the Services oras-cache-sync-metrics (and "
              "oras-cache-git-sync-metrics) in front of /metrics, for dist/monitoring/'s "
              "ServiceMonitor"),
        Value("git.enabled", False, "also run the git source (dist/install-git/): the "
              "OrasCache files of a git repository applied as an ApplySet"),
        Value("git.repository", DEFAULT_GIT_REPO, "the repository's URL (https://, ssh:// "
              "or file://), without credentials"),
        Value("git.ref", "main", "the branch, tag or commit followed"),
        Value("git.path", ".", "the directory of the repository holding the OrasCache "
              "files"),
        Value("git.credentialsSecret", DEFAULT_GIT_CREDENTIALS_SECRET, "the Secret in "
              "namespace.name holding username + password or token, or ssh-privatekey + "
              "known_hosts (created by you, docs/git-source.md); empty: a public repository"),
        Value("git.targetNamespace", "default", "the namespace of caches that name none, "
              "and of the ApplySet's parent ConfigMap"),
    ]


def values_tree() -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for value in values():
        *parents, leaf = value.path.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value.default
    return tree


def values_yaml() -> str:
    """values.yaml: every value under its meaning, in `values()` order."""
    out: list[str] = []
    open_parents: list[str] = []
    for value in values():
        *parents, leaf = value.path.split(".")
        if parents != open_parents:
            if parents:
                out.append("")
                out.append(f"{parents[0]}:")
            open_parents = parents
        indent = "  " * len(parents)
        if not parents:
            out.append("")
        for line in _wrap(value.meaning, 90 - len(indent)):
            out.append(f"{indent}# {line}")
        dumped = yaml.safe_dump({leaf: value.default}, default_flow_style=False,
                                sort_keys=False).rstrip("\n")
        if isinstance(value.default, (list, dict)) and not value.default:
            dumped = f"{leaf}: {'[]' if isinstance(value.default, list) else '{}'}"
        out.extend(f"{indent}{line}" for line in dumped.splitlines())
    return "\n".join(out).lstrip("\n") + "\n"


# Constraints beyond the default's type, by path (values.schema.json).
SCHEMA_EXTRA: dict[str, dict[str, Any]] = {
    "namespace.name": {"pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
    "image.repository": {"minLength": 1},
    "image.digest": {"pattern": "^(sha256:[0-9a-f]{64})?$"},
    "replicas": {"minimum": 1},
    "watchNamespaces": {"items": {"type": "string",
                                  "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
                        "uniqueItems": True},
    "webhook.failurePolicy": {"enum": ["Fail", "Ignore"]},
    "resources": {"properties": {"limits": {"type": "object"},
                                 "requests": {"type": "object"}},
                  "additionalProperties": False},
    "git.targetNamespace": {"pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
}


def values_schema() -> dict[str, Any]:
    """values.schema.json: each value's type (its default's) and `SCHEMA_EXTRA`, and no
    key the chart does not know, so that a misspelt `--set` fails instead of being
    ignored (Helm validates values against it on lint, template, install and upgrade)."""
    types = {bool: "boolean", int: "integer", str: "string", list: "array", dict: "object"}
    root: dict[str, Any] = {"$schema": "https://json-schema.org/draft-07/schema#",
                            "type": "object", "properties": {},
                            "additionalProperties": False}
    for value in values():
        *parents, leaf = value.path.split(".")
        node = root
        for key in parents:
            node = node["properties"].setdefault(key, {
                "type": "object", "properties": {}, "additionalProperties": False})
        node["properties"][leaf] = {"description": value.meaning,
                                    "type": types[type(value.default)],
                                    **SCHEMA_EXTRA.get(value.path, {})}
    return root


def values_table() -> str:
    """The Markdown table of the values (docs/sync-service.md, "Helm")."""
    rows = ["| value | default | meaning |", "|---|---|---|"]
    for value in values():
        default = yaml.safe_dump(value.default, default_flow_style=True,
                                 width=1000).strip().removesuffix("...").strip()
        rows.append(f"| `{value.path}` | `{default}` | {value.meaning} |")
    return "\n".join(rows) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def chart_yaml() -> str:
    from constructs_lib.install import DEFAULT_IMAGE  # noqa: PLC0415

    chart = {
        "apiVersion": "v2",
        "name": CHART_NAME,
        "description": CHART_DESCRIPTION,
        "type": "application",
        "version": CHART_VERSION,
        "appVersion": DEFAULT_IMAGE.rsplit(":", 1)[1],
        "kubeVersion": KUBE_VERSION,
    }
    return yaml.safe_dump(chart, sort_keys=False, width=100)


HELPERS = """\
{{/* A string as the construct's YAML emitter (PyYAML) writes it: plain when that reads
back as the same string, else double-quoted. Default values print as dist/install/. */}}
{{- define "oras-cache.str" -}}
{{- $s := toString . -}}
{{- $plain := regexMatch "^[A-Za-z0-9/$(][-A-Za-z0-9._/:@$()]*$" $s -}}
{{- $other := regexMatch "^([0-9][-0-9._:]*|(?i:y|n|yes|no|on|off|true|false|null|~))$" $s -}}
{{- if and $plain (not $other) -}}
{{ $s }}
{{- else -}}
{{ $s | quote }}
{{- end -}}
{{- end -}}

{{/* REPOSITORY@DIGEST when a digest is given, else REPOSITORY:TAG. */}}
{{- define "oras-cache.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "oras-cache.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
"""

# The guard that opens the Deployment's template: values that would run two leaders.
REPLICAS_GUARD = (
    f"{{{{- if and (not {V}.leaderElection.enabled) (gt (int {V}.replicas) 1) }}}}\n"
    "{{- fail \"replicas > 1 needs leaderElection.enabled: every replica would reconcile\" }}\n"
    "{{- end }}\n"
)


class _Marks:
    """Marker strings for a manifest, and their replacement in the dumped YAML."""

    _TOKEN = re.compile(r"__helm_(\d+)__")

    def __init__(self) -> None:
        self._subs: list[tuple[str, str]] = []  # (kind, text), by token number

    def _token(self, kind: str, text: str) -> str:
        self._subs.append((kind, text))
        return f"__helm_{len(self._subs) - 1}__"

    def line(self, text: str) -> str:
        """A list item or mapping key whose whole line becomes `text` (`{{- if ... }}`)."""
        return self._token("line", text)

    def value(self, text: str) -> str:
        """A scalar replaced by `text` in place."""
        return self._token("value", text)

    def block(self, expr: str) -> str:
        """A mapping value replaced by `toYaml expr`, indented below its key."""
        return self._token("block", expr)

    def key(self, mapping: dict[str, Any], key: str, condition: str) -> dict[str, Any]:
        """`mapping` with `key` present only when `condition` holds (order kept)."""
        out: dict[str, Any] = {}
        for k, v in mapping.items():
            if k == key:
                out[self.line(f"{{{{- if {condition} }}}}")] = None
                out[k] = v
                out[self.line("{{- end }}")] = None
            else:
                out[k] = v
        return out

    def items(self, items: list[Any], start: int, stop: int, condition: str) -> list[Any]:
        """`items` with items[start:stop] present only when `condition` holds."""
        return [*items[:start], self.line(f"{{{{- if {condition} }}}}"), *items[start:stop],
                self.line("{{- end }}"), *items[stop:]]

    def apply(self, text: str) -> str:
        out: list[str] = []
        seen: set[int] = set()
        for original in text.splitlines(keepends=True):
            line = original
            for number in map(int, self._TOKEN.findall(original)):
                seen.add(number)
                kind, expr = self._subs[number]
                token = f"__helm_{number}__"
                stripped = line.strip()
                if kind == "line":
                    if stripped not in (f"- {token}", f"{token}: null"):
                        raise ValueError(f"marker {token} is not alone on its line: {line!r}")
                    line = expr + "\n"
                elif kind == "value":
                    line = line.replace(token, expr)
                else:
                    column = len(line) - len(line.lstrip(" -"))
                    line = line.replace(f" {token}", f" {{{{- toYaml {expr} | nindent "
                                                     f"{column + 2} }}}}")
            out.append(line)
        missing = set(range(len(self._subs))) - seen
        if missing:
            raise ValueError(f"markers never written: {sorted(missing)}")
        return "".join(out)


def _replace_strings(obj: Any, old: str, new: Callable[[], str]) -> Any:
    """`obj` with every string equal to `old` replaced by a fresh `new()` (a marker each)."""
    if isinstance(obj, str):
        return new() if obj == old else obj
    if isinstance(obj, dict):
        return {k: _replace_strings(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_strings(v, old, new) for v in obj]
    return obj


def _labelled(text: str) -> str:
    """Helm's labels: managed-by names the Release's service, plus helm.sh/chart (pod
    template labels too; the selectors keep name + component only)."""
    return re.sub(
        rf"(?m)^(\s*){re.escape(MANAGED_BY)}: orascache$",
        lambda m: (f"{m.group(1)}{MANAGED_BY}: {{{{ $.Release.Service }}}}\n"
                   f'{m.group(1)}{CHART_LABEL}: {{{{ include "oras-cache.chart" $ }}}}'),
        text)


def _cluster_manifests(watch: list[str] | None = None) -> list[dict[str, Any]]:
    from constructs_lib.install import render_install  # noqa: PLC0415

    return render_install(include_crd=False, watch_namespaces=watch)


def _deployment(manifests: Iterable[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == "Deployment"]
    return found


WATCH_MARK = "watch-namespace-placeholder"  # the one watched namespace of the Role variant


@dataclass(frozen=True)
class _Template:
    file: str
    condition: str | None
    build: Callable[[_Marks], dict[str, Any]]
    prefix: str = ""
    range_over: str | None = None  # one document per item, `$ns` in `build`'s markers


def _template_text(template: _Template) -> str:
    marks = _Marks()
    body = _labelled(marks.apply(to_yaml([template.build(marks)])))
    if template.range_over is None:
        body = body.removeprefix("---\n")
    else:
        body = f"{{{{- range $ns := {template.range_over} }}}}\n{body}{{{{- end }}}}\n"
    if template.condition is not None:
        body = f"{{{{- if {template.condition} }}}}\n{body}{{{{- end }}}}\n"
    return template.prefix + body


def _pod_container(manifest: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return container


def cluster_templates() -> list[_Template]:
    from constructs_lib.install import (  # noqa: PLC0415
        DEFAULT_NAMESPACE,
        LEADER_ELECTION_ROLE,
        METRICS_SERVICE,
        NAME,
        WEBHOOK_NAME,
        WEBHOOK_PORT_NAME,
    )

    default = _cluster_manifests()
    scoped = _cluster_manifests([WATCH_MARK])

    def one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
        (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
        return found

    def plain(manifests: list[dict[str, Any]], kind: str, name: str,
              ) -> Callable[[_Marks], dict[str, Any]]:
        def build(marks: _Marks) -> dict[str, Any]:
            manifest: dict[str, Any] = _replace_strings(one(manifests, kind, name),
                                                        DEFAULT_NAMESPACE,
                                                        lambda: marks.value(NAMESPACE))
            return manifest
        return build

    def watch_role(kind: str) -> Callable[[_Marks], dict[str, Any]]:
        def build(marks: _Marks) -> dict[str, Any]:
            manifest = plain(scoped, kind, NAME)(marks)
            result: dict[str, Any] = _replace_strings(
                manifest, WATCH_MARK, lambda: marks.value(f"{{{{ {STR} $ns }}}}"))
            return result
        return build

    def webhook_configuration(marks: _Marks) -> dict[str, Any]:
        manifest = one(default, "MutatingWebhookConfiguration", NAME)
        values = (f"{{{{- range (default (list \"kube-system\" {V}.namespace.name) "
                  f"{V}.watchNamespaces | uniq | sortAlpha) }}}}")
        for hook in manifest["webhooks"]:
            hook["failurePolicy"] = marks.value(f"{{{{ {V}.webhook.failurePolicy }}}}")
            (expression,) = hook["namespaceSelector"]["matchExpressions"]
            expression["operator"] = marks.value(
                f"{{{{ if {V}.watchNamespaces }}}}In{{{{ else }}}}NotIn{{{{ end }}}}")
            expression["values"] = [marks.line(values), marks.value(f"{{{{ {STR} . }}}}"),
                                    marks.line("{{- end }}")]
        return plain([manifest], "MutatingWebhookConfiguration", NAME)(marks)

    def deployment(marks: _Marks) -> dict[str, Any]:
        manifest = plain(default, "Deployment", NAME)(marks)
        manifest["spec"]["replicas"] = marks.value(f"{{{{ {V}.replicas }}}}")
        container = _pod_container(manifest)
        container["image"] = marks.value(IMAGE)
        container["resources"] = marks.block(f"{V}.resources")
        args: list[Any] = container["args"]
        hook = args.index("--webhook-addr")
        args = marks.items(args, hook, len(args), f"{V}.webhook.enabled")
        elect = args.index("--leader-elect")
        args = marks.items(args, elect, elect + 3, f"{V}.leaderElection.enabled")
        scope = args.index("--all-namespaces")
        args[scope:scope + 1] = [
            marks.line(f"{{{{- if not {V}.watchNamespaces }}}}"), "--all-namespaces",
            marks.line("{{- else }}"), marks.line(f"{{{{- range {V}.watchNamespaces }}}}"),
            "--namespace", marks.value(f"{{{{ {STR} . }}}}"), marks.line("{{- end }}"),
            marks.line("{{- end }}")]
        container["args"] = args
        ports: list[Any] = container["ports"]
        hook_port = [p["name"] for p in ports].index(WEBHOOK_PORT_NAME)
        container["ports"] = marks.items(ports, hook_port, hook_port + 1,
                                         f"{V}.webhook.enabled")
        return manifest

    webhook = f"{V}.webhook.enabled"
    return [
        _Template("namespace.yaml", f"{V}.namespace.create",
                  plain(default, "Namespace", DEFAULT_NAMESPACE)),
        _Template("serviceaccount.yaml", None, plain(default, "ServiceAccount", NAME)),
        _Template("clusterrole.yaml", f"not {V}.watchNamespaces",
                  plain(default, "ClusterRole", NAME)),
        _Template("clusterrolebinding.yaml", f"not {V}.watchNamespaces",
                  plain(default, "ClusterRoleBinding", NAME)),
        _Template("role-watch.yaml", None, watch_role("Role"), range_over=f"{V}.watchNamespaces"),
        _Template("rolebinding-watch.yaml", None, watch_role("RoleBinding"),
                  range_over=f"{V}.watchNamespaces"),
        _Template("role-leader-election.yaml", f"{V}.leaderElection.enabled",
                  plain(default, "Role", LEADER_ELECTION_ROLE)),
        _Template("rolebinding-leader-election.yaml", f"{V}.leaderElection.enabled",
                  plain(default, "RoleBinding", LEADER_ELECTION_ROLE)),
        _Template("webhook-clusterrole.yaml", webhook,
                  plain(default, "ClusterRole", WEBHOOK_NAME)),
        _Template("webhook-clusterrolebinding.yaml", webhook,
                  plain(default, "ClusterRoleBinding", WEBHOOK_NAME)),
        _Template("webhook-service.yaml", webhook, plain(default, "Service", WEBHOOK_NAME)),
        _Template("mutatingwebhookconfiguration.yaml", webhook, webhook_configuration),
        _Template("metrics-service.yaml", f"{V}.metrics.enabled",
                  plain(default, "Service", METRICS_SERVICE)),
        _Template("deployment.yaml", None, deployment, prefix=REPLICAS_GUARD),
    ]


def git_templates() -> list[_Template]:
    from constructs_lib.install import DEFAULT_NAMESPACE  # noqa: PLC0415
    from constructs_lib.install_git import (  # noqa: PLC0415
        DEFAULT_GIT_CREDENTIALS_SECRET,
        GIT_APPLYSET_ROLE,
        GIT_ENV,
        GIT_METRICS_SERVICE,
        GIT_NAME,
        render_git_install,
    )
    from constructs_lib.mounts import GIT_CREDENTIALS_MOUNT  # noqa: PLC0415

    manifests = render_git_install()
    target = "default"  # GitSyncService's default target_namespace
    git = f"{V}.git"
    credentials = f"{git}.credentialsSecret"

    def plain(kind: str, name: str) -> Callable[[_Marks], dict[str, Any]]:
        def build(marks: _Marks) -> dict[str, Any]:
            (found,) = [m for m in manifests
                        if m["kind"] == kind and m["metadata"]["name"] == name]
            manifest: dict[str, Any] = _replace_strings(
                _replace_strings(found, DEFAULT_NAMESPACE, lambda: marks.value(NAMESPACE)),
                target, lambda: marks.value(f"{{{{ {STR} {git}.targetNamespace }}}}"))
            return manifest
        return build

    def deployment(marks: _Marks) -> dict[str, Any]:
        manifest = plain("Deployment", GIT_NAME)(marks)
        pod = manifest["spec"]["template"]["spec"]
        container = _pod_container(manifest)
        container["image"] = marks.value(IMAGE)
        container["resources"] = marks.block(f"{V}.resources")
        for env in container["env"]:
            for key, name in (("repository", GIT_ENV["repo"]), ("ref", GIT_ENV["ref"]),
                              ("path", GIT_ENV["path"])):
                if env["name"] == name:
                    env["value"] = marks.value(f"{{{{ {STR} {git}.{key} }}}}")
        args: list[Any] = container["args"]
        at = args.index("--credentials-file")
        container["args"] = marks.items(args, at, at + 2, credentials)
        mounts: list[Any] = container["volumeMounts"]
        at = [m["mountPath"] for m in mounts].index(GIT_CREDENTIALS_MOUNT)
        container["volumeMounts"] = marks.items(mounts, at, at + 1, credentials)
        volumes: list[Any] = pod["volumes"]
        at = [v.get("secret", {}).get("secretName") for v in volumes].index(
            DEFAULT_GIT_CREDENTIALS_SECRET)
        volumes[at]["secret"]["secretName"] = marks.value(f"{{{{ {STR} {credentials} }}}}")
        pod["volumes"] = marks.items(volumes, at, at + 1, credentials)
        manifest["spec"]["template"]["spec"] = marks.key(pod, "securityContext", credentials)
        return manifest

    return [
        _Template("git-serviceaccount.yaml", f"{git}.enabled", plain("ServiceAccount", GIT_NAME)),
        _Template("git-clusterrole.yaml", f"{git}.enabled", plain("ClusterRole", GIT_NAME)),
        _Template("git-clusterrolebinding.yaml", f"{git}.enabled",
                  plain("ClusterRoleBinding", GIT_NAME)),
        _Template("git-role-applyset.yaml", f"{git}.enabled", plain("Role", GIT_APPLYSET_ROLE)),
        _Template("git-rolebinding-applyset.yaml", f"{git}.enabled",
                  plain("RoleBinding", GIT_APPLYSET_ROLE)),
        _Template("git-metrics-service.yaml", f"and {git}.enabled {V}.metrics.enabled",
                  plain("Service", GIT_METRICS_SERVICE)),
        _Template("git-deployment.yaml", f"{git}.enabled", deployment),
    ]


def chart_files() -> dict[str, str]:
    """dist/chart/'s files (relative path -> text, without the render header)."""
    files = {
        "Chart.yaml": chart_yaml(),
        "values.yaml": values_yaml(),
        "crds/orascache.yaml": to_yaml([schema.crd()]),
        "templates/_helpers.tpl": HELPERS,
    }
    for template in [*cluster_templates(), *git_templates()]:
        files[f"templates/{template.file}"] = _template_text(template)
    return files
