"""`orascache` command line (argparse: standard library, subcommands, no extra dependency)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from constructs_lib.render import CACHES_PER_CHART
from sync.outdir import OutputError
from sync.parallel_render import MIN_CHUNKS
from sync.synth import cache_files, crd_yaml, dist_files, write_atomic, write_tree
from sync.trigger import TRIGGER_MOUNT

if TYPE_CHECKING:
    from sync.git_source import GitSource
    from sync.git_sync import GitOptions
    from sync.oras_cli import Oras
    from sync.revision_source import RevisionSource
    from sync.trigger import TriggerAuth


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
    try:
        write_tree(files, Path(args.output))
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for rel in sorted(files):
        print(f"wrote {Path(args.output) / rel}", file=sys.stderr)
    return 0


def _cmd_crd(args: argparse.Namespace) -> int:
    if args.output is None:
        sys.stdout.write(crd_yaml())
        return 0
    try:
        write_atomic(Path(args.output), crd_yaml())
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_dist(args: argparse.Namespace) -> int:
    files = dist_files()
    if isinstance(files, list):
        for error in files:
            print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        write_tree(files, Path(args.output))
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    # Imported here so `synth` needs neither the kubernetes client nor a cluster.
    import os  # noqa: PLC0415
    import socket  # noqa: PLC0415

    from sync import logs  # noqa: PLC0415
    from sync.kube import Kube, load_api_client  # noqa: PLC0415
    from sync.service import Options, StartupError, SyncService, preflight  # noqa: PLC0415

    logs.setup(args.log_level, args.log_format)
    if args.source in ("git", "oci"):
        return _sync_revisions(args)
    namespaces = None if args.all_namespaces else args.namespace
    if args.trigger_token_file or args.trigger_secret:
        print("error: POST /trigger is served by --source git and oci only",
              file=sys.stderr)
        return 2
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
        own_namespace=os.environ.get("POD_NAMESPACE") or None,
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


class _UsageError(Exception):
    """A bad combination of sync options: printed as `error: ...`, exit `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _revision_setup(args: argparse.Namespace) -> tuple[GitOptions, TriggerAuth | None]:
    """What the git and OCI sources share: their options and the /trigger token."""
    from sync.git_sync import GitOptions  # noqa: PLC0415
    from sync.trigger import TriggerAuth, TriggerConfigError, token_path  # noqa: PLC0415

    if args.namespace and len(args.namespace) > 1:
        raise _UsageError(f"--source {args.source} takes one --namespace (for namespace-less "
                          "caches and the ApplySet parent)")
    trigger = None
    token = token_path(args.trigger_token_file, args.trigger_secret)
    if token is not None:
        try:
            trigger = TriggerAuth.from_file(token)
        except TriggerConfigError as err:
            raise _UsageError(str(err), 1) from None
        if not args.http_addr:
            raise _UsageError("POST /trigger needs --http-addr")
    options = GitOptions(path=args.path, namespace=_default_namespace(args),
                         applyset_name=args.applyset_name, interval=args.interval,
                         allow_empty=args.allow_empty, http_addr=args.http_addr or None,
                         drift_correction=args.drift_correction, drift=args.drift,
                         render_workers=args.render_workers)
    return options, trigger


def _sync_revisions(args: argparse.Namespace) -> int:
    """The git source, or the OCI source through the same revision pipeline."""
    import tempfile  # noqa: PLC0415

    from sync.git_source import GitSourceError  # noqa: PLC0415
    from sync.git_sync import GitSync, GitSyncService  # noqa: PLC0415
    from sync.kube import Kube, load_api_client  # noqa: PLC0415
    from sync.oci_source import OciSource  # noqa: PLC0415
    from sync.oras_cli import OciError, Reference  # noqa: PLC0415

    if args.source == "git" and not args.repo:
        print("error: --source git needs --repo URL", file=sys.stderr)
        return 2
    if args.source == "oci" and not args.artifact:
        print("error: --source oci needs --artifact REF", file=sys.stderr)
        return 2
    try:
        options, trigger = _revision_setup(args)
    except _UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    # A git clone is kept between fetches; without --git-dir it lives as long as the
    # process, as an unpacked artifact does.
    with tempfile.TemporaryDirectory(prefix=f"orascache-{args.source}-") as tmp:
        source: RevisionSource
        try:
            if args.source == "git":
                source = _git_source(args, Path(args.git_dir or tmp))
            else:
                ref = Reference.parse(args.artifact)
                source = OciSource(ref, _registry(args, ref.registry), Path(tmp))
        except (GitSourceError, OciError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        kube = Kube(load_api_client(args.kubeconfig))
        return GitSyncService(GitSync(kube, source, options), options, trigger).run()


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
                if rendered.empty and not args.allow_empty:
                    print(f"error: no OrasCache renders anything under {args.path!r} in "
                          f"{rendered.commit[:12]}: refusing to empty "
                          f"{args.out or args.push_branch or args.push_oci} "
                          "(use --allow-empty); nothing written", file=sys.stderr)
                    return 1
                if args.out:
                    try:
                        write_tree(rendered.files, Path(args.out))
                    except OutputError as err:
                        print(f"error: {err}", file=sys.stderr)
                        return 1
                    print(f"rendered {rendered.commit} to {args.out} "
                          f"({len(rendered.files)} files)", file=sys.stderr)
                    return 0
                if args.push_oci:
                    return _push_oci(args, source, rendered.files, rendered.commit)
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


def _registry(args: argparse.Namespace, registry: str) -> Oras:
    """The oras client for `registry` with the --registry-credentials-* flags."""
    from sync.git_source import GitSourceError, load_credentials  # noqa: PLC0415
    from sync.oras_cli import REGISTRY_CREDENTIALS_MOUNT, OciError, Oras  # noqa: PLC0415

    path = Path(args.registry_credentials_file) if args.registry_credentials_file else (
        Path(REGISTRY_CREDENTIALS_MOUNT) if args.registry_credentials_secret else None)
    try:
        creds = load_credentials(path)
    except GitSourceError as err:
        raise OciError(str(err)) from None
    return Oras(registry, creds, plain_http=args.plain_http)


def _push_oci(args: argparse.Namespace, source: GitSource, files: dict[str, str],
              commit: str) -> int:
    from sync.oci_render import push_artifact  # noqa: PLC0415
    from sync.oras_cli import OciError, Reference  # noqa: PLC0415

    try:
        ref = Reference.parse(args.push_oci)
        oras = _registry(args, ref.registry)
        try:
            pushed = push_artifact(oras, ref, files, source=source.display_url,
                                   revision=f"{source.ref}@sha1:{commit}")
        finally:
            oras.close()
    except OciError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if pushed.new:
        print(f"pushed {pushed.reference} as {ref} (render of {commit})", file=sys.stderr)
    else:
        print(f"{ref} already holds the render of {commit} ({pushed.reference}); "
              "nothing pushed", file=sys.stderr)
    print(pushed.reference)
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


def _registry_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OCI registry")
    creds = group.add_mutually_exclusive_group()
    creds.add_argument("--registry-credentials-file", metavar="PATH",
                       help="registry credentials: a directory with one file per key (a "
                       "mounted Secret: username, password or token) or a YAML mapping of "
                       "those keys; given to oras as a 0600 config file, never as an "
                       "argument (default: oras's own login)")
    creds.add_argument("--registry-credentials-secret", metavar="NAME",
                       help="in a Pod: the Secret NAME, which the Deployment mounts at "
                       "/etc/orascache/registry-credentials")
    group.add_argument("--plain-http", action="store_true",
                       help="talk HTTP, not HTTPS, to the registry (local registries)")


def _sync_git_arguments(sync: argparse.ArgumentParser) -> None:
    _git_arguments(sync, required=False)
    sync.add_argument("--interval", type=duration, default=60.0, metavar="DURATION",
                      help="git: fetch this often (default 1m); POST /trigger, when "
                      "configured, fetches now")
    sync.add_argument("--allow-empty", action="store_true",
                      help="git: let a revision with no caches prune everything")
    sync.add_argument("--applyset-name", default="orascache-git", metavar="NAME",
                      help="git: the ConfigMap that is the ApplySet parent, in the "
                      "--namespace (default orascache-git); namespace-less caches go "
                      "to that namespace too")
    sync.add_argument("--git-dir", metavar="DIR",
                      help="git: where to keep the clone (default: a temporary directory)")
    token = sync.add_mutually_exclusive_group()
    token.add_argument("--trigger-token-file", metavar="PATH",
                       help="git, oci: serve POST /trigger on --http-addr for callers that show "
                       "the token in PATH (Authorization: Bearer, X-Gitlab-Token, or a "
                       "GitHub X-Hub-Signature-256); off without it or --trigger-secret")
    token.add_argument("--trigger-secret", metavar="NAME",
                       help="git, oci, in a Pod: as --trigger-token-file with the `token` key of "
                       f"the Secret NAME, which the Deployment mounts at {TRIGGER_MOUNT}")
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


def _add_render_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    target.add_argument("--push-oci", metavar="REF",
                        help="push the tree as an OCI artifact in Flux's layout "
                        "(HOST[:PORT]/REPOSITORY:TAG; only when the tag does not already "
                        "hold the same layer); prints REPOSITORY@DIGEST")
    _registry_arguments(render)
    render.add_argument("--allow-empty", action="store_true",
                        help="write (or push) a render with no caches, which empties the "
                        "target (refused by default, as `sync` refuses to prune everything)")
    render.set_defaults(func=_cmd_render)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orascache", description=__doc__, epilog=EXIT_CODES,
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
    sync.add_argument("--source", choices=["cluster", "git", "oci"], default="cluster",
                      help="cluster: OrasCache objects; git: files of --repo at --ref, "
                      "applied as an ApplySet (no CRD needed); oci: the same for the files "
                      "of the OCI artifact --artifact, followed by tag")
    sync.add_argument("--artifact", metavar="REF",
                      help="oci: HOST[:PORT]/REPOSITORY:TAG; every interval resolves the tag "
                      "and a new digest is a new revision (--path is inside the artifact)")
    scope = sync.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", metavar="NS",
                       help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true",
                       help="watch every namespace (the default)")
    sync.add_argument("--kubeconfig", metavar="PATH")
    sync.add_argument("--http-addr", default="127.0.0.1:8080",
                      help="address of /healthz, /readyz and /metrics (default "
                      "127.0.0.1:8080; in a Pod :8080, for the kubelet's probes)")
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
    _registry_arguments(sync)
    sync.set_defaults(func=_cmd_sync)

    _add_render_parser(sub)

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
    diff.set_defaults(func=_cmd_diff, error_code=2)
    return parser


EXIT_CODES = """\
exit status:
  0  success (diff: no differences)
  1  an error: invalid input, a file or directory that cannot be read or written, an
     unreachable or refusing cluster or git remote (diff: differences found)
  2  a usage error (diff: any error)
every error is printed as `error: ...` on stderr."""


def describe(exc: BaseException) -> str:
    """One line for an error that reached the top: what failed, never a traceback (and
    never the bytes of a file that could hold credentials)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (invalid byte at offset {exc.start})"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror or exc}"
    kubernetes = sys.modules.get("kubernetes.config.config_exception")
    if kubernetes is not None and isinstance(exc, kubernetes.ConfigException):
        return f"kubeconfig: {exc}"
    urllib3 = sys.modules.get("urllib3.exceptions")
    if urllib3 is not None and isinstance(exc, urllib3.HTTPError):
        return f"cannot reach the API server: {getattr(exc, 'reason', None) or exc}"
    return f"unexpected {type(exc).__name__}: {exc} (a bug: please report it, with the " \
        "traceback ORASCACHE_TRACEBACK=1 prints)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failed: int = args.error_code
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`orascache synth x | head`): nothing more to say there.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("error: output closed before everything was written", file=sys.stderr)
        return failed
    except Exception as exc:  # the last stop: one line, the documented code
        if os.environ.get("ORASCACHE_TRACEBACK"):
            traceback.print_exc()
        print(f"error: {describe(exc)}", file=sys.stderr)
        return failed
    return code


if __name__ == "__main__":
    sys.exit(main())
