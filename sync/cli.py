"""`orascache` command line (argparse: standard library, subcommands, no extra dependency)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sync.synth import cache_files, crd_yaml, dist_files, write_atomic, write_tree


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
    if args.source != "cluster":
        print(f"error: --source {args.source} is not available yet", file=sys.stderr)
        return 2
    namespaces = None if args.all_namespaces else args.namespace
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
    )
    return SyncService(kube, options).run()


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
    sync.add_argument("--source", choices=["cluster", "git"], default="cluster")
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
    hook = sync.add_argument_group("admission webhook (served by every replica)")
    hook.add_argument("--webhook-addr", metavar="ADDR",
                      help="serve the mutating webhook over TLS here, e.g. :8443")
    hook.add_argument("--webhook-host", action="append", metavar="NAME",
                      help="DNS name or IP in the serving certificate (repeatable)")
    hook.add_argument("--webhook-config", metavar="NAME",
                      help="MutatingWebhookConfiguration whose caBundle the service keeps")
    hook.add_argument("--webhook-cert-validity", type=float, default=7 * 24 * 3600.0,
                      metavar="SECONDS", help="serving certificate lifetime; rotated when a "
                      "third is left (default 7 days)")
    sync.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    sync.add_argument("--log-format", default="json", choices=["json", "text"])
    sync.set_defaults(func=_cmd_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
