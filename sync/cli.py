"""`orascache` command line (argparse: standard library, subcommands, no extra dependency)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from constructs_lib.render import CACHES_PER_CHART
from sync.parallel_render import MIN_CHUNKS
from sync.synth import cache_files, crd_yaml, dist_files, write_atomic, write_tree

if TYPE_CHECKING:
    from sync.git_source import GitSource


def _cmd_synth(args: argparse.Namespace) -> int:
    files = cache_files(args.paths)
    if isinstance(files, list):
        for error in files:
            print(f"error: {error}", file=sys.stderr)
        print(f"{len(files)} error(s); nothing written", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write("".join(v for k, v in sorted(files.items()) if k != "kustomization.yaml"))
        return 0
    write_tree(files, Path(args.output))
    for rel in sorted(files):
        print(f"wrote {Path(args.output) / rel}", file=sys.stderr)
    return 0


def _cmd_crd(args: argparse.Namespace) -> int:
    if args.output is None:
        sys.stdout.write(crd_yaml())
    else:
        write_atomic(Path(args.output), crd_yaml())
    return 0


def _cmd_dist(args: argparse.Namespace) -> int:
    files = dist_files()
    if isinstance(files, list):
        for error in files:
            print(f"error: {error}", file=sys.stderr)
        return 1
    write_tree(files, Path(args.output))
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    # Imported here so `synth` needs neither the kubernetes client nor a cluster.
    import os  # noqa: PLC0415
    import socket  # noqa: PLC0415

    from sync import logs  # noqa: PLC0415
    from sync.kube import Kube, load_api_client  # noqa: PLC0415
    from sync.service import Options, StartupError, SyncService, preflight  # noqa: PLC0415

    logs.setup(args.log_level, args.log_format)
    if args.source == "git":
        return _sync_git(args)
    namespaces = None if args.all_namespaces else args.namespace
    if args.webhook_cert_dir and not args.webhook_addr:
        print("error: --webhook-cert-dir needs --webhook-addr", file=sys.stderr)
        return 2
    try:
        kube = Kube(load_api_client(args.kubeconfig))
        preflight(kube, namespaces)
    except StartupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    identity = args.identity or os.environ.get("POD_NAME") or (
        f"{socket.gethostname()}-{os.getpid()}")
    options = Options(
        namespaces=namespaces, workers=args.workers, http_addr=args.http_addr,
        resync_period=args.resync_period, leader_elect=args.leader_elect,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace or os.environ.get("POD_NAMESPACE", "default"),
        identity=identity, lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline, retry_period=args.retry_period,
        webhook_addr=args.webhook_addr, webhook_hosts=tuple(args.webhook_host or ()),
        webhook_config=args.webhook_config, webhook_cert_validity=args.webhook_cert_validity,
        webhook_cert_dir=args.webhook_cert_dir, drift=args.drift,
    )
    try:
        service = SyncService(kube, options)
    except StartupError as err:  # e.g. an unusable --webhook-cert-dir
        print(f"error: {err}", file=sys.stderr)
        return 1
    return service.run()


def duration(text: str) -> float:
    """`90`, `30s`, `1m`, `2h` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 1m)") from None


def _git_source(args: argparse.Namespace, workdir: Path) -> GitSource:
    from sync.git_source import source_from_args  # noqa: PLC0415

    return source_from_args(args.repo, args.ref, workdir, args.credentials_file,
                            args.credentials_secret)


def _default_namespace(args: argparse.Namespace) -> str:
    return str(args.namespace[0]) if args.namespace else "default"


def _sync_git(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from sync.git_source import GitSourceError  # noqa: PLC0415
    from sync.git_sync import GitOptions, GitSync, GitSyncService  # noqa: PLC0415
    from sync.kube import Kube, load_api_client  # noqa: PLC0415

    if not args.repo:
        print("error: --source git needs --repo URL", file=sys.stderr)
        return 2
    if args.namespace and len(args.namespace) > 1:
        print("error: --source git takes one --namespace (for namespace-less caches and "
              "the ApplySet parent)", file=sys.stderr)
        return 2
    options = GitOptions(path=args.path, namespace=_default_namespace(args),
                         applyset_name=args.applyset_name, interval=args.interval,
                         allow_empty=args.allow_empty, http_addr=args.http_addr or None,
                         drift_correction=args.drift_correction, drift=args.drift,
                         render_workers=args.render_workers)
    # The clone is kept between fetches; without --git-dir it lives as long as the process.
    with tempfile.TemporaryDirectory(prefix="orascache-clone-") as tmp:
        try:
            source = _git_source(args, Path(args.git_dir or tmp))
        except GitSourceError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        kube = Kube(load_api_client(args.kubeconfig))
        return GitSyncService(GitSync(kube, source, options), options).run()


def _cmd_render(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from sync.git_render import push_branch, render_commit  # noqa: PLC0415
    from sync.git_source import GitSourceError  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="orascache-render-clone-") as tmp:
        try:
            source = _git_source(args, Path(tmp))
            try:
                rendered = render_commit(source, args.path, args.render_workers)
                if rendered.errors:
                    for error in rendered.errors:
                        print(f"error: {error}", file=sys.stderr)
                    print(f"{len(rendered.errors)} error(s) in {rendered.commit[:12]}; "
                          "nothing written", file=sys.stderr)
                    return 1
                if args.out:
                    write_tree(rendered.files, Path(args.out))
                    print(f"rendered {rendered.commit} to {args.out} "
                          f"({len(rendered.files)} files)", file=sys.stderr)
                    return 0
                new = push_branch(source, rendered, args.push_branch, args.path)
            finally:
                source.close()
        except GitSourceError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if new is None:
        print(f"{args.push_branch} already holds the render of {rendered.commit}; "
              "no commit", file=sys.stderr)
    else:
        print(f"pushed {new} to {args.push_branch} (render of {rendered.commit})",
              file=sys.stderr)
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from sync.applyset import ApplySet  # noqa: PLC0415
    from sync.diff import diff_objects, exit_code, report  # noqa: PLC0415
    from sync.git_source import GitSourceError  # noqa: PLC0415
    from sync.git_sync import RenderMemo, render_paths, render_tree  # noqa: PLC0415
    from sync.kube import Kube, load_api_client  # noqa: PLC0415

    if bool(args.paths) == bool(args.repo):
        print("error: give PATHs or --repo (not both)", file=sys.stderr)
        return 2
    namespace = args.namespace or "default"
    applyset = ApplySet(args.applyset_name, namespace)
    memo = RenderMemo(args.render_workers)
    if args.repo:
        with tempfile.TemporaryDirectory(prefix="orascache-diff-clone-") as tmp:
            try:
                source = _git_source(args, Path(tmp))
                try:
                    revision = source.checkout(source.fetch())
                    desired = render_tree(revision.worktree, args.path, applyset, namespace,
                                          memo)
                finally:
                    source.close()
            except GitSourceError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
    else:
        desired = render_paths([Path(p) for p in args.paths], applyset, namespace,
                               memo=memo)
    if desired.errors:
        for error in desired.errors:
            print(f"error: {error}", file=sys.stderr)
        return 2
    kube = Kube(load_api_client(args.kubeconfig))
    diffs, errors = diff_objects(kube, desired.objects, applyset)
    sys.stdout.write(report(diffs))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    print(f"{len(diffs)} object(s) differ", file=sys.stderr)
    return exit_code(diffs, errors)


def _git_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
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
                       "/etc/orascache/git-credentials (the service never reads the "
                       "Secrets API)")
    parser.add_argument("--render-workers", type=int, metavar="N",
                        help="helper processes (Python + Node, ~110-125 MB each) that render "
                        f"alongside this one when {(MIN_CHUNKS - 1) * CACHES_PER_CHART + 1} "
                        "caches of distinct specs or more need rendering (caches that "
                        "differ only in name share one render); they exit after the render "
                        "(default: usable CPUs - 1, at most 3; 0: render in this process)")


def _sync_git_arguments(sync: argparse.ArgumentParser) -> None:
    _git_arguments(sync, required=False)
    sync.add_argument("--interval", type=duration, default=60.0, metavar="DURATION",
                      help="git: fetch this often (default 1m); POST /trigger fetches now")
    sync.add_argument("--allow-empty", action="store_true",
                      help="git: let a revision with no caches prune everything")
    sync.add_argument("--applyset-name", default="orascache-git", metavar="NAME",
                      help="git: the ConfigMap that is the ApplySet parent, in the "
                      "--namespace (default orascache-git); namespace-less caches go "
                      "to that namespace too")
    sync.add_argument("--git-dir", metavar="DIR",
                      help="git: where to keep the clone (default: a temporary directory)")
    sync.add_argument("--no-drift-correction", dest="drift_correction", action="store_false",
                      help="git: when the commit is unchanged, do not re-apply its objects "
                      "(by default every interval restores deleted or edited members, "
                      "with no write when nothing drifted; never prunes)")


def _webhook_arguments(sync: argparse.ArgumentParser) -> None:
    hook = sync.add_argument_group("admission webhook (served by every replica)")
    hook.add_argument("--webhook-addr", metavar="ADDR",
                      help="serve the mutating webhook over TLS here, e.g. :8443")
    hook.add_argument("--webhook-host", action="append", metavar="NAME",
                      help="DNS name or IP in the serving certificate (repeatable)")
    hook.add_argument("--webhook-config", metavar="NAME",
                      help="MutatingWebhookConfiguration whose caBundle the service keeps "
                      "(with --webhook-cert-dir: only when DIR has ca.crt)")
    hook.add_argument("--webhook-cert-validity", type=float, default=7 * 24 * 3600.0,
                      metavar="SECONDS", help="generated serving certificate lifetime; "
                      "rotated when a third is left (default 7 days)")
    hook.add_argument("--webhook-cert-dir", metavar="DIR",
                      help="serve tls.crt/tls.key from DIR (e.g. a cert-manager "
                      "Certificate's Secret as a volume), reloaded when they change, "
                      "instead of generating a CA; --webhook-host and "
                      "--webhook-cert-validity then do not apply")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orascache", description=__doc__)
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
    synth.set_defaults(func=_cmd_synth)

    crd = sub.add_parser("crd", help="print the OrasCache CustomResourceDefinition")
    crd.add_argument("-o", "--output", metavar="FILE")
    crd.set_defaults(func=_cmd_crd)

    dist = sub.add_parser("dist", help="render the repository's committed dist/ tree")
    dist.add_argument("-o", "--output", metavar="DIR", default="dist")
    dist.set_defaults(func=_cmd_dist)
    sync = sub.add_parser(
        "sync",
        help="run the sync service",
        description="Watch OrasCache objects, render them, server-side apply the children, "
        "prune what is no longer rendered and report status. Uses the in-cluster "
        "configuration in a Pod, else --kubeconfig (or $KUBECONFIG, ~/.kube/config).",
    )
    sync.add_argument("--source", choices=["cluster", "git"], default="cluster",
                      help="cluster: OrasCache objects; git: files of --repo at --ref, "
                      "applied as an ApplySet (no CRD needed)")
    scope = sync.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", metavar="NS",
                       help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true",
                       help="watch every namespace (the default)")
    sync.add_argument("--kubeconfig", metavar="PATH")
    sync.add_argument("--http-addr", default=":8080",
                      help="address of /healthz, /readyz and /metrics (default :8080)")
    sync.add_argument("--workers", type=int, default=8,
                      help="concurrent API-side reconciles (default 8)")
    sync.add_argument("--resync-period", type=float, default=600.0, metavar="SECONDS",
                      help="re-check every cache this often (default 600)")
    sync.add_argument("--leader-elect", action="store_true",
                      help="run as one of several replicas; only the Lease holder writes")
    sync.add_argument("--lease-name", default="oras-cache-sync")
    sync.add_argument("--lease-namespace", help="default: $POD_NAMESPACE or default")
    sync.add_argument("--identity", help="leader identity (default: $POD_NAME or host-pid)")
    sync.add_argument("--lease-duration", type=int, default=15, metavar="SECONDS")
    sync.add_argument("--renew-deadline", type=int, default=10, metavar="SECONDS")
    sync.add_argument("--retry-period", type=int, default=2, metavar="SECONDS")
    _webhook_arguments(sync)
    sync.add_argument("--drift", choices=["correct", "report"], default="correct",
                      help="a hand edit of a field the service sets (found at every check, "
                      "and after start-up or failover by one dry-run apply per object): "
                      "correct reverts it (default); report leaves the object as it is and "
                      "reports the drifted field paths (cluster: condition Drifted and an "
                      "Event on the cache; git: an Event on the ApplySet parent; both: "
                      "orascache_drifted_objects). Missing objects are created either way")
    sync.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    sync.add_argument("--log-format", default="json", choices=["json", "text"])
    _sync_git_arguments(sync)
    sync.set_defaults(func=_cmd_sync)

    render = sub.add_parser(
        "render",
        help="render the caches of a git ref to a directory or a branch",
        description="Fetch --repo at --ref, render every OrasCache under --path to the "
        "dist/ layout (<namespace>/<name>.yaml and a kustomization.yaml), and write it to "
        "--out, or commit it to --push-branch of the same remote (only when it changed; "
        "the message names the source commit).",
    )
    _git_arguments(render, required=True)
    target = render.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR")
    target.add_argument("--push-branch", metavar="BRANCH")
    render.set_defaults(func=_cmd_render)

    diff = sub.add_parser(
        "diff",
        help="diff what would be applied against the cluster",
        description="Render PATHs (or --repo at --ref), server-side dry-run apply each "
        "object and print a unified diff against the live object, plus ApplySet members "
        "that would be pruned. Exit 0: no differences; 1: differences; 2: errors.",
    )
    diff.add_argument("paths", nargs="*", metavar="PATH")
    _git_arguments(diff, required=False)
    diff.add_argument("--kubeconfig", metavar="PATH")
    diff.add_argument("--namespace", "-n", metavar="NS",
                      help="namespace of namespace-less caches and the ApplySet parent "
                      "(default: default)")
    diff.add_argument("--applyset-name", default="orascache-git", metavar="NAME")
    diff.set_defaults(func=_cmd_diff)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
