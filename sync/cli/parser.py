"""The argument parser: every command's flags, the `sync` flags grouped by source.

Each command names its function as "module:function" (`command_function`), so that
`main` imports only the module of the command that runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from constructs_lib.mounts import (
    GIT_CREDENTIALS_MOUNT,
    REGISTRY_CREDENTIALS_MOUNT,
    TRIGGER_MOUNT,
)
from constructs_lib.render import CACHES_PER_CHART
from sync.cli import EXIT_CODES
from sync.options import (
    DEFAULT_HTTP_ADDR,
    DRIFT_MODES,
    SHARD_LABEL,
    LeaseOptions,
    Options,
    RevisionOptions,
)
from sync.render.parallel import MIN_CHUNKS

DESCRIPTION = """\
Turn OrasCache resources (an in-cluster OCI registry for workflow data) into Kubernetes
manifests, and keep a cluster in step with them:
  synth, crd, dist  render files to manifests (no cluster needed)
  render            render a git ref's caches to a directory, a branch or an OCI artifact
  diff              what `sync` would change, by server-side dry-run
  sync              the sync service: OrasCache objects (cluster), a git repository (git)
                    or an OCI artifact (oci), applied, pruned and reported"""

Group = Any  # argparse's parser or argument group: both take add_argument

def duration(text: str) -> float:
    """`90`, `30s`, `1m`, `2h` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 1m)") from None


def git_arguments(parser: Group, *, required: bool) -> None:
    parser.add_argument("--repo", metavar="URL", required=required,
                        help="git remote (file://, http(s)://, ssh://); credentials in the URL "
                        "are moved out of it and never printed")
    parser.add_argument("--ref", default="main", help="branch, tag or commit (default main)")
    parser.add_argument("--path", default=".", metavar="DIR",
                        help="directory of OrasCache files in the repository (default: root)")
    creds = parser.add_mutually_exclusive_group()
    creds.add_argument("--credentials-file", metavar="PATH",
                       help="a directory with one file per key (a mounted Secret: username, "
                       "password or token, ssh-privatekey, known_hosts) or a YAML mapping "
                       "of those keys")
    creds.add_argument("--credentials-secret", metavar="NAME",
                       help="in a Pod: the Secret NAME, which the Deployment mounts at "
                       f"{GIT_CREDENTIALS_MOUNT} (the service never reads the "
                       "Secrets API)")
    parser.add_argument("--render-workers", type=int, metavar="N",
                        help="helper processes (Python + Node, ~110-125 MB each) that render "
                        f"alongside this one when {(MIN_CHUNKS - 1) * CACHES_PER_CHART + 1} "
                        "caches of distinct specs or more need rendering (caches that "
                        "differ only in name share one render); they exit after the render "
                        "(default: usable CPUs - 1, at most 3; 0: render in this process)")


def registry_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OCI registry (render --push-oci, sync --source oci)")
    creds = group.add_mutually_exclusive_group()
    creds.add_argument("--registry-credentials-file", metavar="PATH",
                       help="registry credentials: a directory with one file per key (a "
                       "mounted Secret: username, password or token) or a YAML mapping of "
                       "those keys; given to oras as a 0600 config file, never as an "
                       "argument (default: oras's own login)")
    creds.add_argument("--registry-credentials-secret", metavar="NAME",
                       help="in a Pod: the Secret NAME, which the Deployment mounts at "
                       f"{REGISTRY_CREDENTIALS_MOUNT}")
    group.add_argument("--plain-http", action="store_true",
                       help="talk HTTP, not HTTPS, to the registry (local registries)")


def revision_arguments(sync: argparse.ArgumentParser) -> None:
    defaults = RevisionOptions()
    git = sync.add_argument_group("git source (--source git)")
    git_arguments(git, required=False)
    git.add_argument("--git-dir", metavar="DIR",
                     help="where to keep the clone (default: a temporary directory)")
    oci = sync.add_argument_group("OCI source (--source oci)")
    oci.add_argument("--artifact", metavar="REF",
                     help="HOST[:PORT]/REPOSITORY:TAG; every interval resolves the tag and a "
                     "new digest is a new revision (--path is inside the artifact)")
    both = sync.add_argument_group("revision sources (--source git and oci)")
    both.add_argument("--interval", type=duration, default=defaults.interval,
                      metavar="DURATION", help="fetch this often (default 1m); POST /trigger, "
                      "when configured, fetches now")
    both.add_argument("--allow-empty", action="store_true",
                      help="let a revision with no caches prune everything")
    both.add_argument("--applyset-name", default=defaults.applyset_name, metavar="NAME",
                      help="the ConfigMap that is the ApplySet parent, in the --namespace "
                      f"(default {defaults.applyset_name}); namespace-less caches go to that "
                      "namespace too")
    token = both.add_mutually_exclusive_group()
    token.add_argument("--trigger-token-file", metavar="PATH",
                       help="serve POST /trigger on --http-addr for callers that show the "
                       "token in PATH (Authorization: Bearer, X-Gitlab-Token, or a GitHub "
                       "X-Hub-Signature-256); off without it or --trigger-secret")
    token.add_argument("--trigger-secret", metavar="NAME",
                       help="in a Pod: as --trigger-token-file with the `token` key of the "
                       f"Secret NAME, which the Deployment mounts at {TRIGGER_MOUNT}")
    both.add_argument("--no-drift-correction", dest="drift_correction", action="store_false",
                      help="when the revision is unchanged, do not re-apply its objects "
                      "(by default every interval restores deleted or edited members, "
                      "with no write when nothing drifted; never prunes)")


def cluster_arguments(sync: argparse.ArgumentParser) -> None:
    defaults, lease = Options(), LeaseOptions()
    cluster = sync.add_argument_group("cluster source (--source cluster, the default)")
    cluster.add_argument("--workers", type=int, default=defaults.workers,
                         help=f"concurrent API-side reconciles (default {defaults.workers})")
    cluster.add_argument("--resync-period", type=float, default=defaults.resync_period,
                         metavar="SECONDS", help="re-check every cache this often "
                         f"(default {defaults.resync_period:g})")
    cluster.add_argument("--shard-key", metavar="KEY",
                         help="reconcile only the caches labelled "
                         f"{SHARD_LABEL}=KEY ('' : only unlabelled ones); the lease name "
                         f"defaults to {lease.name}-KEY (default: every cache, no sharding)")
    elect = sync.add_argument_group("leader election (cluster source)")
    elect.add_argument("--leader-elect", action="store_true",
                       help="run as one of several replicas; only the Lease holder writes")
    elect.add_argument("--lease-name", help=f"default {lease.name} (-KEY with --shard-key KEY)")
    elect.add_argument("--lease-namespace", help="default: $POD_NAMESPACE or default")
    elect.add_argument("--identity", help="leader identity (default: $POD_NAME or host-pid)")
    elect.add_argument("--lease-duration", type=int, default=lease.duration,
                       metavar="SECONDS")
    elect.add_argument("--renew-deadline", type=int, default=lease.renew_deadline,
                       metavar="SECONDS")
    elect.add_argument("--retry-period", type=int, default=lease.retry_period,
                       metavar="SECONDS")
    webhook_arguments(sync)


def webhook_arguments(sync: argparse.ArgumentParser) -> None:
    hook = sync.add_argument_group("admission webhook (served by every replica)")
    hook.add_argument("--webhook-addr", metavar="ADDR",
                      help="serve the mutating webhook over TLS here, e.g. :8443")
    hook.add_argument("--webhook-host", action="append", metavar="NAME",
                      help="DNS name or IP in the serving certificate (repeatable)")
    hook.add_argument("--webhook-config", metavar="NAME",
                      help="MutatingWebhookConfiguration whose caBundle the service keeps "
                      "(with --webhook-cert-dir: only when DIR has ca.crt)")
    hook.add_argument("--webhook-cert-validity", type=float,
                      default=Options.webhook_cert_validity,
                      metavar="SECONDS", help="generated serving certificate lifetime; "
                      "rotated when a third is left (default 7 days)")
    hook.add_argument("--webhook-cert-dir", metavar="DIR",
                      help="serve tls.crt/tls.key from DIR (e.g. a cert-manager "
                      "Certificate's Secret as a volume), reloaded when they change, "
                      "instead of generating a CA; --webhook-host and "
                      "--webhook-cert-validity then do not apply")
    hook.add_argument("--webhook-drain", type=float, default=Options.webhook_drain,
                      metavar="SECONDS", help="on SIGTERM, keep answering admissions up to "
                      "this long, each answer closing its connection, so that no Pod "
                      "creation is refused while a replica goes away (default 5; ends "
                      "early once no connection is open)")


def add_render_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    render = sub.add_parser(
        "render",
        help="render the caches of a git ref to a directory or a branch",
        description="Fetch --repo at --ref, render every OrasCache under --path to the "
        "dist/ layout (<namespace>/<name>.yaml and a kustomization.yaml), and write it to "
        "--out, or commit it to --push-branch of the same remote (only when it changed; "
        "the message names the source commit).",
    )
    git_arguments(render, required=True)
    target = render.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR")
    target.add_argument("--push-branch", metavar="BRANCH")
    target.add_argument("--push-oci", metavar="REF",
                        help="push the tree as an OCI artifact in Flux's layout "
                        "(HOST[:PORT]/REPOSITORY:TAG; only when the tag does not already "
                        "hold the same layer); prints REPOSITORY@DIGEST")
    registry_arguments(render)
    render.add_argument("--allow-empty", action="store_true",
                        help="write (or push) a render with no caches, which empties the "
                        "target (refused by default, as `sync` refuses to prune everything)")
    render.set_defaults(command_function="sync.cli.render:cmd_render")


def add_sync_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sync = sub.add_parser(
        "sync",
        help="run the sync service",
        description="Read OrasCache resources from the cluster, a git repository or an OCI "
        "artifact, render them, server-side apply the children, prune what is no longer "
        "rendered and report status. Uses the in-cluster configuration in a Pod, else "
        "--kubeconfig (or $KUBECONFIG, ~/.kube/config).",
    )
    sync.add_argument("--source", choices=["cluster", "git", "oci"], default="cluster",
                      help="cluster: OrasCache objects; git: files of --repo at --ref, "
                      "applied as an ApplySet (no CRD needed); oci: the same for the files "
                      "of the OCI artifact --artifact, followed by tag")
    scope = sync.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", metavar="NS",
                       help="cluster: watch this namespace (repeatable); git, oci: the "
                       "namespace of namespace-less caches and of the ApplySet parent")
    scope.add_argument("--all-namespaces", "-A", action="store_true",
                       help="cluster: watch every namespace (the default)")
    sync.add_argument("--kubeconfig", metavar="PATH")
    sync.add_argument("--http-addr", default=DEFAULT_HTTP_ADDR,
                      help="address of /healthz, /readyz and /metrics (default "
                      f"{DEFAULT_HTTP_ADDR}; in a Pod :8080, for the kubelet's probes)")
    sync.add_argument("--drift", choices=DRIFT_MODES, default=Options.drift,
                      help="a hand edit of a field the service sets (found at every check, "
                      "and after start-up or failover by one dry-run apply per object): "
                      "correct reverts it (default); report leaves the object as it is and "
                      "reports the drifted field paths (cluster: condition Drifted and an "
                      "Event on the cache; git: an Event on the ApplySet parent; both: "
                      "orascache_drifted_objects). Missing objects are created either way")
    sync.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    sync.add_argument("--log-format", default="json", choices=["json", "text"])
    cluster_arguments(sync)
    revision_arguments(sync)
    registry_arguments(sync)
    sync.set_defaults(command_function="sync.cli.service:cmd_sync")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orascache", description=DESCRIPTION, epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(error_code=1)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser(
        "synth",
        help="render OrasCache files to manifests",
        description="Render every OrasCache in PATHs (files or directories of multi-document "
        "YAML; other kinds are ignored) to DIR/<namespace>/<name>.yaml plus a "
        "kustomization.yaml, or to stdout. On any invalid input, every error is printed "
        "with its file, document and field path, and nothing is written.",
    )
    synth.add_argument("paths", nargs="+", metavar="PATH")
    synth.add_argument("-o", "--output", metavar="DIR", help="output directory")
    synth.set_defaults(command_function="sync.cli.files:cmd_synth")

    crd = sub.add_parser("crd", help="print the OrasCache CustomResourceDefinition")
    crd.add_argument("-o", "--output", metavar="FILE")
    crd.set_defaults(command_function="sync.cli.files:cmd_crd")

    dist = sub.add_parser("dist", help="render the repository's committed dist/ tree")
    dist.add_argument("-o", "--output", metavar="DIR", default="dist")
    dist.set_defaults(command_function="sync.cli.files:cmd_dist")

    add_sync_parser(sub)
    add_render_parser(sub)

    diff = sub.add_parser(
        "diff",
        help="diff what would be applied against the cluster",
        description="Render PATHs (or --repo at --ref), server-side dry-run apply each "
        "object and print a unified diff against the live object, plus ApplySet members "
        "that would be pruned. Exit 0: no differences; 1: differences; 2: errors.",
    )
    diff.add_argument("paths", nargs="*", metavar="PATH")
    git_arguments(diff, required=False)
    diff.add_argument("--kubeconfig", metavar="PATH")
    diff.add_argument("--namespace", "-n", metavar="NS",
                      help="namespace of namespace-less caches and the ApplySet parent "
                      "(default: default)")
    diff.add_argument("--applyset-name", default=RevisionOptions.applyset_name,
                      metavar="NAME")
    diff.set_defaults(command_function="sync.cli.diff:cmd_diff", error_code=2)
    return parser
